"""Who must prove a second factor, and where the login lockout finds the client's address.

A user who can move money or see secrets (SECOND_FACTOR_PERMISSIONS) gets into the admin only
once a TOTP device has verified them in this session; others sign in with their password alone.
The admin site (config.admin_site) applies this to every admin view.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode
from django_otp import user_has_device

# The one table of permissions that move money or reveal a secret, and what each does: whoever holds
# one of them signs in with a second factor. tests/security/test_second_factor_table.py runs every
# admin action and fails if one posts to the ledger or decrypts a PIN without a permission listed here.
SECOND_FACTOR_PERMISSIONS = {
    "distributors.approve_fundtransaction": "posts a fund transaction to the ledger",
    "distributors.resolve_erpsync": "records money in an ERP as arrived, or sends it again",
    "distributors.retry_erpsync": "sends a money record to an ERP again",
    "orders.place_rechargeorder": "holds an order's price on the distributor's balance",
    "orders.resolve_rechargeorder": "keeps or releases the price an order holds",
    "orders.reveal_cardsecret": "shows card PINs",
    "orders.export_cardsecret": "writes card PINs to a file",
}


def second_factor_required(user) -> bool:
    return user.is_active and any(user.has_perm(permission) for permission in SECOND_FACTOR_PERMISSIONS)


def is_verified(user) -> bool:
    # OTPMiddleware installs is_verified(); without it nobody counts as verified (fail closed).
    return bool(getattr(user, "is_verified", lambda: False)())


def second_factor_missing(request: HttpRequest) -> bool:
    """A signed-in staff user who needs a second factor and has not given one in this session."""
    user = request.user
    return user.is_authenticated and user.is_staff and second_factor_required(user) and not is_verified(user)


def second_factor_redirect(request: HttpRequest, site_name: str = "admin") -> HttpResponseRedirect:
    """To the token prompt if the user has a device, else to enrolment; back here afterwards."""
    name = "second_factor_verify" if user_has_device(request.user) else "second_factor_enrol"
    url = reverse(f"admin:{name}", current_app=site_name)
    return HttpResponseRedirect(f"{url}?{urlencode({'next': request.get_full_path()})}")


def client_ip_address(request: HttpRequest) -> str | None:
    """The address a login came from, for the lockout.

    Behind TRUSTED_PROXY_COUNT proxies that each append to X-Forwarded-For, the client is the
    entry that many places from the right; anything further left was written by the client and
    could be forged. With no proxy configured the header is ignored.
    """
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies > 0:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR")


def lockout_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """The page a locked-out login gets (HTTP 429), saying how long to wait and whom to ask."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return render(request, "admin/locked_out.html", {"cooloff_minutes": minutes}, status=429)
