from __future__ import annotations

import asyncio
import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from project.sources import SourceError
from tpa import demo, snowflake, uploads
from tpa.models import IngestionFile, RunStatus, Tpa
from tpa.pipeline import execute_run
from tpa.runs import start_run
from tpa.staging import Refused


class Command(BaseCommand):
    help = (
        "Create three demo TPAs (different column layouts), the CLAIMS target schema and their mappings, "
        "then upload a generated claim file for each and run it through the real pipeline. Safe to run again."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--rows", type=int, default=250, help="claims per generated file (default 250)")

    def handle(self, *args: Any, **options: Any) -> None:
        tpas = demo.ensure_master_data()
        self.stdout.write(f"Master data ready: {', '.join(t.code for t in tpas)}.")
        try:
            asyncio.run(self.load(options["rows"]))
        except SourceError as exc:
            raise CommandError(f"Snowflake refused: {exc.message} (did `manage.py snowflake_deploy` run?)") from exc

    async def load(self, rows: int) -> None:
        for spec in demo.DEMO_TPAS:
            tpa = await Tpa.objects.aget(code=spec.code)
            if await IngestionFile.objects.filter(tpa=tpa).aexists():
                # Its files stay as they are; its gold layer is rebuilt by the pipeline's own
                # procedure, so a gold table added since (GOLD.CLAIMS, which the claims reports
                # read) holds its claims too.
                refreshed = await snowflake.call(snowflake.GOLD_PROCEDURE, tpa.code)
                claims = refreshed.value.get("claims") or 0
                self.stdout.write(f"  {tpa.code}: has files already, left as it is; gold refreshed ({claims} claims)")
                continue
            # Service dates over the 180 days from the first of the month six months ago, so
            # up to about today: inside the claims report's default period (the last 365 days)
            # whenever the demo first starts, and its "last 30 days" panel has claims.
            start = (datetime.date.today().replace(day=1) - datetime.timedelta(days=180)).replace(day=1)
            content = demo.claims_csv(spec, rows, seed=1, start=start)
            try:
                file = await uploads.upload(tpa, f"{tpa.code.lower()}_claims_{start:%Y-%m}.csv", [content], None)
            except Refused as exc:
                raise CommandError(f"{tpa.code}: {exc.message}") from exc
            run = await start_run(tpa, None, enqueue=False)
            run = await execute_run(run.pk)
            steps = ", ".join(
                f"{s.name} {s.status} {s.rows} rows {s.duration or 0:.2f} s"
                for s in run.steps.all()  # prefetched by execute_run
            )
            style = self.style.SUCCESS if run.status == RunStatus.SUCCEEDED else self.style.ERROR
            self.stdout.write(
                style(f"  {tpa.code}: {file.stage_path} ({file.row_count} rows), run {run.pk} {run.status}: {steps}")
            )
