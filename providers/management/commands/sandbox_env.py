from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand
from django.utils.translation import gettext as _

from providers.sandbox.vendors import demo_environment


class Command(BaseCommand):
    help = _("Write the environment that points every provider at the local sandbox (generated credentials).")

    def add_arguments(self, parser):
        parser.add_argument("--output", required=True, help="file to write, e.g. var/sandbox.env")
        parser.add_argument("--sandbox-url", default="http://127.0.0.1:8100")
        parser.add_argument("--callback-url", default="http://127.0.0.1:8000")
        parser.add_argument("--force", action="store_true", help="regenerate even if the file exists")

    def handle(self, *args, output: str, sandbox_url: str, callback_url: str, force: bool, **options):
        path = Path(output)
        if path.exists() and not force:
            self.stdout.write(_("%(path)s exists; keeping its credentials.") % {"path": path})
            return
        environment = demo_environment(sandbox_url, callback_url)
        lines = [f"{name}={_quote(value)}" for name, value in sorted(environment.items())]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text("\n".join(lines) + "\n")
        self.stdout.write(_("Wrote %(count)d variables to %(path)s") % {"count": len(lines), "path": path})


def _quote(value: str) -> str:
    # One line per variable: PEM keys keep their newlines as \n, which the provider settings undo.
    escaped = value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return f'"{escaped}"'
