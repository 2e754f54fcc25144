from __future__ import annotations

from django.core.management.base import BaseCommand
from django.utils.translation import gettext as _

from providers.sandbox.server import serve


class Command(BaseCommand):
    help = _("Run the local fake upstreams (BEST GERP, Wangdiantong, redemption platform, 17bst).")

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8100)

    def handle(self, *args, host: str, port: int, **options):
        httpd = serve(host, port)
        vendors = ", ".join(sorted(v.name for v in httpd.sandbox.vendors.values()))
        self.stdout.write(_("Sandbox upstreams (%(vendors)s) at %(url)s") % {"vendors": vendors, "url": httpd.sandbox.base_url})
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            httpd.server_close()
