from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from project.sources import SourceError
from tpa import snowflake


class Command(BaseCommand):
    help = "Create or update the TPA pipeline's Snowflake objects and procedures (tpa/snowflake/*.sql)."

    def handle(self, *args: Any, **options: Any) -> None:
        def report(name: str, statement: str, result: Any) -> None:
            first = " ".join(statement.split())[:90]
            self.stdout.write(f"  {name:<32} {first}  ({result.elapsed * 1000:.0f} ms)")

        try:
            count = asyncio.run(snowflake.deploy(report if options["verbosity"] > 1 else None))
        except SourceError as exc:
            raise CommandError(f"deploy failed: {exc.message}") from exc
        files = len(snowflake.deploy_files())
        self.stdout.write(self.style.SUCCESS(f"Snowflake objects deployed: {count} statements from {files} files."))
