from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from project import cache
from project.formatting import human_seconds


class Command(BaseCommand):
    help = "Print every cache namespace: backend, TTL, keys, hits, misses, hit ratio, entry ages and last load."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def handle(self, *args: Any, json: bool, **options: Any) -> None:
        rows = cache.status()
        if json:
            import json as json_module

            self.stdout.write(json_module.dumps([row.as_dict() for row in rows], indent=2))
            return
        header: tuple[str, ...] = ("namespace", "ttl", "keys", "current", "hits", "misses", "ratio")
        header += ("oldest", "newest", "last load", "took", "warmer")
        table: list[tuple[str, ...]] = [header]
        for row in rows:
            table.append(
                (
                    row.namespace,
                    f"{row.ttl} s",
                    "?" if row.keys is None else str(row.keys),
                    "?" if row.current_keys is None else str(row.current_keys) + ("~" if row.sampled else ""),
                    str(row.hits),
                    str(row.misses),
                    "-" if row.hit_ratio is None else f"{row.hit_ratio:.0%}",
                    human_seconds(row.oldest_age),
                    human_seconds(row.newest_age),
                    "-" if row.last_load_at is None else human_seconds(time.time() - row.last_load_at) + " ago",
                    human_seconds(row.last_load_seconds),
                    "yes" if row.has_warmer else "no",
                )
            )
        widths = [max(len(line[i]) for line in table) for i in range(len(header))]
        for n, line in enumerate(table):
            text = "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
            self.stdout.write(self.style.MIGRATE_HEADING(text) if n == 0 else text)
        self.stdout.write(f"backend: {rows[0].backend}" if rows else "no cache namespaces configured")
        if rows and rows[0].note:
            self.stdout.write(self.style.WARNING(rows[0].note))
