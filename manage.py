#!/usr/bin/env python
from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A setting that is missing or wrong: one line naming it, not a traceback.
        sys.exit(f"manage.py: {exc}\nAgainst the running demo: make manage ARGS='{' '.join(sys.argv[1:])}'")


if __name__ == "__main__":
    main()
