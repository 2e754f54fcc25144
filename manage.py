#!/usr/bin/env python
"""Django's command-line utility for the back office."""

import os
import sys

# Changes typed into a shell are attributed to it in the audit history. Other commands set their
# own context (servers per request, workers per job, our commands in handle()); migrations must
# not get one, because pghistory's statement rewriting breaks raw SQL containing '%'.
ATTRIBUTED_COMMANDS = {"shell"}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    command = sys.argv[1] if len(sys.argv) > 1 else "help"
    if command not in ATTRIBUTED_COMMANDS:
        execute_from_command_line(sys.argv)
        return

    import django

    django.setup()
    from config.history import command_context

    with command_context(command):
        execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
