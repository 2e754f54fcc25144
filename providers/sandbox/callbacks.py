"""Sending the sandboxes' callbacks to the back office.

Deliberately the standard library rather than `requests`: the callbacks are another system's
traffic, and a test faking the back office's own HTTP with `responses` must not swallow them.
"""

from __future__ import annotations

import urllib.error
import urllib.request

# Straight to the receiver: a proxy configured for outbound traffic has no business here.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post_callback(url: str, body: bytes, headers: dict[str, str], *, timeout: float = 5.0) -> str:
    """POST one callback and return the receiver's answer text, or a description of the failure."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener.open(request, timeout=timeout) as response:
            return response.read().decode("utf-8", "replace").strip()
    except urllib.error.HTTPError as err:
        return f"HTTP {err.code}: {err.read().decode('utf-8', 'replace').strip()}"
    except (urllib.error.URLError, OSError, ValueError) as err:
        return f"{type(err).__name__}: {err}"
