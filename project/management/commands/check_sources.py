from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from project.sources import SourceError, get_source, source_names


class Command(BaseCommand):
    help = "Connect to each configured data source and print its round-trip latency or the error."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", metavar="SOURCE", help="only these sources (default: all)")

    def handle(self, *args: Any, names: list[str], **options: Any) -> None:
        wanted = names or source_names()
        if unknown := sorted(set(wanted) - set(source_names())):
            raise CommandError(f"unknown source {', '.join(unknown)}; configured: {', '.join(source_names())}")
        results = asyncio.run(self.check_all(wanted))
        width = max(len(name) for name in wanted)
        failed = 0
        for name, (ok, detail) in zip(wanted, results, strict=True):
            kind = get_source(name).kind
            if ok:
                self.stdout.write(f"{name:<{width}}  {kind:<9}  " + self.style.SUCCESS("ok") + f"  {detail}")
            else:
                failed += 1
                self.stdout.write(f"{name:<{width}}  {kind:<9}  " + self.style.ERROR("FAILED") + f"  {detail}")
        if failed:
            raise CommandError(f"{failed} of {len(wanted)} sources failed")

    async def check_all(self, names: list[str]) -> list[tuple[bool, str]]:
        async def check(name: str) -> tuple[bool, str]:
            source = get_source(name)
            try:
                return True, f"{await source.ping() * 1000:.1f} ms"
            except SourceError as exc:
                return False, exc.message
            finally:
                await source.close()

        return list(await asyncio.gather(*(check(name) for name in names)))
