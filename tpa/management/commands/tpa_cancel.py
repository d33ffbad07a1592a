from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.http import Http404

from tpa.management.commands.tpa_run import describe, tpa_for
from tpa.models import PipelineRun
from tpa.pipeline import wait_for
from tpa.runs import cancel_run, get_run_or_404
from tpa.staging import Refused


async def cancel(code: str, run_id: int, seconds: float) -> PipelineRun:
    tpa = await tpa_for(code)
    try:
        run = await get_run_or_404(tpa, run_id)
    except Http404:
        raise CommandError(f"{tpa.code} has no run {run_id}.") from None
    try:
        run = await cancel_run(run, None)
    except Refused as exc:
        raise CommandError(exc.message) from None
    return run if run.finished else await wait_for(run.pk, seconds, interval=0.5)


class Command(BaseCommand):
    help = (
        "Cancel a queued or running pipeline run: a queued one at once, a running one by its worker, which aborts "
        "the current Snowflake call. The run's unfinished files wait for the next run."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("code", help="the TPA's code, e.g. ACME")
        parser.add_argument("run", type=int, help="the run's number")
        parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a running run to stop")

    def handle(self, *args: Any, **options: Any) -> None:
        run = asyncio.run(cancel(options["code"], options["run"], options["timeout"]))
        self.stdout.write(describe(run))
        if not run.finished:
            raise CommandError(
                f"run {run.pk} still {run.status} after {options['timeout']:g} s; its worker may be gone"
            )
