"""The second-factor pages of the admin: enrol a TOTP authenticator, and give a code at sign-in.

Enrolment shows a QR code (an inline SVG drawn here, no network call) and the otpauth URI and
secret for typing in; the first code from the app confirms the device and verifies the session.
Ten single-use backup codes are shown once, for a lost phone; the token prompt accepts them too.
"""

from __future__ import annotations

from base64 import b32encode

import qrcode
import qrcode.image.svg
from django import forms
from django.db import transaction
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_otp import login as otp_login
from django_otp import match_token, user_has_device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from config.redirects import next_url
from config.security import is_verified

BACKUP_CODE_COUNT = 10


class TokenForm(forms.Form):
    token = forms.CharField(
        label=gettext_lazy("Code"),
        max_length=16,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True, "inputmode": "numeric"}),
    )


def _next_url(request, site) -> str:
    return next_url(request, default=reverse("admin:index", current_app=site.name))


def qr_code_svg(data: str) -> str:
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2)
    return image.to_string(encoding="unicode")


def backup_codes_replace(*, user) -> list[str]:
    """New single-use backup codes for `user`; any earlier ones stop working."""
    device, _created = StaticDevice.objects.get_or_create(
        user=user, name="backup codes", defaults={"confirmed": True}
    )
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(BACKUP_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def enrol(request, site):
    user = request.user
    if user_has_device(user) and not is_verified(user):
        # Adding a device needs the second factor already given: a stolen password is not enough.
        url = reverse("admin:second_factor_verify", current_app=site.name)
        return HttpResponseRedirect(f"{url}?{request.GET.urlencode()}" if request.GET else url)

    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=_("authenticator app"), confirmed=False)
    form = TokenForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        with transaction.atomic():
            if device.verify_token(form.cleaned_data["token"].strip()):
                device.confirmed = True
                device.save(update_fields=["confirmed"])
                otp_login(request, device)
                codes = backup_codes_replace(user=user)
                context = {
                    **site.each_context(request),
                    "title": _("Second factor enrolled"),
                    "backup_codes": codes,
                    "next": _next_url(request, site),
                }
                return TemplateResponse(request, "admin/second_factor/enrolled.html", context)
        form.add_error("token", _(
            "That code is not right, or too many wrong codes were tried: wait a moment, check the time on "
            "your phone and try the newest code."
        ))

    context = {
        **site.each_context(request),
        "title": _("Enrol a second factor"),
        "form": form,
        "qr_code": mark_safe(qr_code_svg(device.config_url)),  # SVG built here from our own URI
        "config_url": device.config_url,
        "secret": b32encode(device.bin_key).decode(),
        "next": _next_url(request, site),
        "required": not is_verified(user),
    }
    return TemplateResponse(request, "admin/second_factor/enrol.html", context)


def verify(request, site):
    user = request.user
    if not user_has_device(user):
        url = reverse("admin:second_factor_enrol", current_app=site.name)
        return HttpResponseRedirect(f"{url}?{request.GET.urlencode()}" if request.GET else url)
    form = TokenForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        device = match_token(user, form.cleaned_data["token"].strip())
        if device is not None:
            otp_login(request, device)
            return HttpResponseRedirect(_next_url(request, site))
        form.add_error("token", _("That code is not right, or too many wrong codes were tried: wait and try again."))
    context = {
        **site.each_context(request),
        "title": _("Second factor"),
        "form": form,
        "next": _next_url(request, site),
    }
    return TemplateResponse(request, "admin/second_factor/verify.html", context)
