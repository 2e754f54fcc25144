"""The admin site of the back office: Django's, plus the second factor (config.security).

Every admin view refuses a user who needs a second factor until a device has verified them in
this session: they are sent to enrolment if they have no device yet, to the token prompt if they
do. The two second-factor pages and logout stay open to them.
"""

from __future__ import annotations

from functools import update_wrapper

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect

from config import second_factor
from config.security import second_factor_missing, second_factor_redirect


class BackOfficeAdminSite(admin.AdminSite):
    site_header = _("Distributor funds back office")
    site_title = _("Back office")
    index_title = _("Finance desk")
    def has_permission(self, request) -> bool:
        return super().has_permission(request) and not second_factor_missing(request)

    def admin_view(self, view, cacheable=False):
        checked = super().admin_view(view, cacheable)

        def inner(request, *args, **kwargs):
            if second_factor_missing(request):
                if request.path == reverse("admin:logout", current_app=self.name):
                    return view(request, *args, **kwargs)  # LogoutView: POST only, CSRF-protected
                return second_factor_redirect(request, self.name)
            return checked(request, *args, **kwargs)

        return update_wrapper(inner, view)

    def login(self, request, extra_context=None):
        if request.method == "GET" and second_factor_missing(request):
            return second_factor_redirect(request, self.name)
        return super().login(request, extra_context)

    def second_factor_view(self, view):
        """For signed-in staff only, whether or not they have given their second factor yet."""

        def inner(request, *args, **kwargs):
            if not (request.user.is_active and request.user.is_staff):
                return redirect_to_login(request.get_full_path(), reverse("admin:login", current_app=self.name))
            return view(request, self, *args, **kwargs)

        return update_wrapper(csrf_protect(never_cache(inner)), view)

    def index(self, request, extra_context=None):
        from config.dashboard import dashboard

        return super().index(request, {**(extra_context or {}), "dashboard": dashboard()})

    def get_urls(self):
        return [
            path("second-factor/", self.second_factor_view(second_factor.enrol), name="second_factor_enrol"),
            path("second-factor/verify/", self.second_factor_view(second_factor.verify), name="second_factor_verify"),
            *super().get_urls(),
        ]
