from __future__ import annotations

import time
from typing import Any

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand, CommandError, CommandParser

from project import cache
from project.management.commands._cachecli import namespaces_from


class Command(BaseCommand):
    help = "Reload cache namespaces now through their registered warmers (default: every one that has a warmer)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("namespaces", nargs="*", metavar="NAMESPACE", help="only these namespaces")

    def handle(self, *args: Any, namespaces: list[str], **options: Any) -> None:
        wanted = namespaces_from(namespaces)
        if namespaces:
            if missing := [name for name in wanted if cache.warmer(name) is None]:
                raise CommandError(f"no warmer is registered for {', '.join(map(repr, missing))}")
        else:
            wanted = [name for name in wanted if cache.warmer(name) is not None]
            if not wanted:
                raise CommandError("no cache namespace has a warmer registered")
        failed = 0
        for name in wanted:
            started = time.perf_counter()
            try:
                async_to_sync(cache.warm)(name)
            except Exception as exc:
                failed += 1
                self.stderr.write(f"{name}: " + self.style.ERROR(f"FAILED {exc}"))
                continue
            self.stdout.write(f"{name}: " + self.style.SUCCESS("warmed") + f" in {time.perf_counter() - started:.2f} s")
        if failed:
            raise CommandError(f"{failed} of {len(wanted)} namespaces failed to warm")
