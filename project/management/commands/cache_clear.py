from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from project import cache
from project.management.commands._cachecli import namespaces_from


class Command(BaseCommand):
    help = (
        "Invalidate cache namespaces in every process and delete their entries (default: all). "
        "Asks first; pass --yes in scripts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("namespaces", nargs="*", metavar="NAMESPACE", help="only these namespaces")
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    def handle(self, *args: Any, namespaces: list[str], yes: bool, **options: Any) -> None:
        wanted = namespaces_from(namespaces)
        if not yes:
            if not sys.stdin.isatty():
                raise CommandError("refusing to clear caches without --yes when not run interactively")
            answer = input(f"Clear {', '.join(wanted)} in every process? Type 'yes' to continue: ")
            if answer.strip().lower() != "yes":
                raise CommandError("cancelled; nothing was cleared")
        for name in wanted:
            try:
                deleted = cache.clear(name)
            except cache.CacheUnavailable as exc:
                raise CommandError(f"{name}: {exc}; nothing more was cleared") from None
            self.stdout.write(
                f"{name}: "
                + self.style.SUCCESS("cleared")
                + f" (generation {cache.generation(name)}, {deleted} entries deleted)"
            )
