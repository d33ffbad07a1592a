from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from project.sources import SourceError, get_source

# A TPA code no real TPA has: refreshing its gold aggregates touches no one's data.
SMOKE_TPA = "FANOUT_SMOKE"


class Command(BaseCommand):
    help = (
        "Check the configured Snowflake end to end: a report query under the report role, a stage "
        "PUT/LIST/REMOVE and one pipeline procedure, with timings. Exits non-zero if any step fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--timeout", type=float, default=60.0, help="seconds allowed for each step")

    def handle(self, *args: Any, timeout: float, **options: Any) -> None:
        rows = asyncio.run(self.run_steps(timeout))
        width = max(len(step) for step, *_ in rows)
        self.stdout.write(f"{'step':<{width}}  result  {'ms':>8}  detail")
        for step, ok, ms, detail in rows:
            result = self.style.SUCCESS("ok    ") if ok else self.style.ERROR("FAILED")
            self.stdout.write(f"{step:<{width}}  {result}  {ms:>8.1f}  {detail}")
        if failed := [step for step, ok, *_ in rows if not ok]:
            raise CommandError(f"{len(failed)} of {len(rows)} Snowflake checks failed: {', '.join(failed)}")

    async def run_steps(self, timeout: float) -> list[tuple[str, bool, float, str]]:  # noqa: ASYNC109
        from tpa import snowflake

        source = get_source("snowflake")
        name = f"smoke-{uuid.uuid4().hex[:12]}.csv"
        directory = f"fanout_smoke/{datetime.now(UTC):%Y/%m/%d}"

        async def report_query() -> str:
            result = await source.execute("SELECT 1 AS ok", timeout=timeout)
            return f"query id {result.query_id}"

        async def put() -> str:
            with tempfile.TemporaryDirectory() as folder:
                local = Path(folder) / name
                local.write_text("claim_id,amount\n1,10.00\n")
                await snowflake.put(local, directory, name)
            return f"@{snowflake.STAGE}/{directory}/{name}"

        async def listed() -> str:
            files = await snowflake.list_stage(directory)
            if not any(file.path.endswith(name) for file in files):
                raise SourceError("snowflake", f"{name} is not listed under {directory}")
            return f"{len(files)} file(s) under {directory}"

        async def remove() -> str:
            removed = await snowflake.remove(f"{directory}/{name}")
            if removed < 1:
                raise SourceError("snowflake", f"{name} was not removed")
            return f"{removed} file(s) removed"

        async def procedure() -> str:
            result = await snowflake.call(snowflake.GOLD_PROCEDURE, SMOKE_TPA)
            return f"{snowflake.GOLD_PROCEDURE}('{SMOKE_TPA}') returned {result.value}"

        steps: list[tuple[str, Callable[[], Awaitable[str]]]] = [
            ("report query", report_query),
            ("stage PUT", put),
            ("stage LIST", listed),
            ("stage REMOVE", remove),
            ("pipeline procedure", procedure),
        ]
        rows = []
        try:
            for step, run in steps:
                started = time.perf_counter()
                try:
                    detail, ok = await run(), True
                except (SourceError, OSError, ValueError) as exc:
                    detail, ok = str(exc), False
                rows.append((step, ok, (time.perf_counter() - started) * 1000, detail))
        finally:
            await source.close()
        return rows
