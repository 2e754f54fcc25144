"""Where a view may send the browser back to when a form or a link names the page (`next`)."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme


def next_url(request: HttpRequest, *, default: str) -> str:
    """The `next` of the request (POST, then GET) if it stays on this host, else `default`.

    Over HTTPS a plain-HTTP `next` is refused too. Anything else (another host, a scheme-relative
    `//host`, `javascript:`) would let a page elsewhere use our redirect to send a clerk to theirs.
    """
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    on_this_site = url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return candidate if on_this_site else default
