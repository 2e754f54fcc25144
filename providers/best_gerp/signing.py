"""BEST GERP request signing: pure functions, no I/O and no settings.

sign = lowercase hex MD5 of the UTF-8 string of every field except `sign`, sorted by name and
written `name=value` with no separator, followed by the app secret:
`appId=<appId>bizParam=<bizParam>serviceType=<serviceType>timestamp=<ts><appSecret>`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

MILLISECONDS = "ms"
SECONDS = "s"


def string_to_sign(fields: Mapping[str, str], app_secret: str) -> str:
    return "".join(f"{name}={fields[name]}" for name in sorted(fields) if name != "sign") + app_secret


def sign(fields: Mapping[str, str], app_secret: str) -> str:
    return hashlib.md5(string_to_sign(fields, app_secret).encode("utf-8")).hexdigest()


def signature_matches(fields: Mapping[str, str], app_secret: str, received: str) -> bool:
    """Constant-time comparison of a received sign with the one the fields call for."""
    return hmac.compare_digest(sign(fields, app_secret).encode("ascii"), received.lower().encode("utf-8"))


def timestamp(unix_seconds: float, unit: str) -> str:
    """The `timestamp` field: milliseconds (13 digits) or seconds (10 digits) since the epoch.

    The vendor's pages disagree on the unit (the authorization page says milliseconds, the
    distribution page's example shows seconds), hence a setting.
    """
    if unit == MILLISECONDS:
        return str(int(unix_seconds * 1000))
    if unit == SECONDS:
        return str(int(unix_seconds))
    raise ValueError(f"unknown timestamp unit {unit!r}")
