"""The WSGI application: the back office, and the upstreams' callbacks on a lean middleware stack."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
back_office = get_wsgi_application()

from config.callbacks import CALLBACKS_PATH, CallbackHandler  # noqa: E402 - needs the settings set up

callbacks = CallbackHandler()


def application(environ, start_response):
    if environ.get("PATH_INFO", "").startswith(CALLBACKS_PATH):
        return callbacks(environ, start_response)
    return back_office(environ, start_response)
