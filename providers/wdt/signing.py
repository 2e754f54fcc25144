"""Wangdiantong open API signing: pure functions, no I/O and no settings.

The appsecret is `secret:salt`. sign = lowercase hex MD5 of
`secret + concat(name + value for every parameter sorted by name, body included, sign excluded)
+ secret`, with no `=` or `&` anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

# Timestamps count seconds from 2012-01-01 00:00:00 UTC+8 (Unix 1325347200), not from 1970.
EPOCH = 1325347200
# How far a request's timestamp may be from the server's clock.
TIMESTAMP_TOLERANCE_SECONDS = 120


def split_app_secret(app_secret: str) -> tuple[str, str]:
    """(secret, salt) of an appsecret `secret:salt`, split at the first colon."""
    secret, colon, salt = app_secret.partition(":")
    if not colon:
        raise ValueError("a Wangdiantong appsecret has the form secret:salt")
    return secret, salt


def string_to_sign(params: Mapping[str, str], secret: str) -> str:
    return secret + "".join(name + params[name] for name in sorted(params) if name != "sign") + secret


def sign(params: Mapping[str, str], secret: str) -> str:
    return hashlib.md5(string_to_sign(params, secret).encode("utf-8")).hexdigest()


def signature_matches(params: Mapping[str, str], secret: str, received: str) -> bool:
    """Constant-time comparison of a received sign with the one the parameters call for."""
    return hmac.compare_digest(sign(params, secret).encode("ascii"), received.lower().encode("utf-8"))


def timestamp(unix_seconds: float) -> str:
    return str(int(unix_seconds) - EPOCH)


def unix_seconds(wdt_timestamp: str) -> int:
    return int(wdt_timestamp) + EPOCH
