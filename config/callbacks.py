"""The handler for the upstreams' status callbacks (orders.views), with only the middleware they need.

A callback comes from an upstream's server, never from a person's browser: no session, user,
language choice, CSRF token, message, frame or login lockout applies to it, and its answer is a
word of plain text. The full stack of the back office would be much of the work of answering one,
and a callback is answered for every order. What stays: the security middleware (HTTPS redirect
and headers, as for every other URL) and the history context, which attributes the order's change
to the callback's request.
"""

from __future__ import annotations

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler

CALLBACKS_PATH = "/callbacks/"

CALLBACK_MIDDLEWARE = (
    "django.middleware.security.SecurityMiddleware",
    "config.history.HistoryContextMiddleware",
)


class CallbackHandler(WSGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        # Django builds the chain from settings.MIDDLEWARE only. This runs once, as the WSGI module
        # is imported (before any request is served), so the setting is narrowed just for the build.
        everything = settings.MIDDLEWARE
        settings.MIDDLEWARE = [path for path in everything if path in CALLBACK_MIDDLEWARE]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = everything
