from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.http import Http404

from tpa.models import PipelineRun, RunStatus, Tpa, get_tpa_or_404
from tpa.pipeline import execute_run, load_run, wait_for
from tpa.runs import start_run
from tpa.staging import Refused


def describe(run: PipelineRun) -> str:
    lines = [f"run {run.pk} of {run.tpa.code}: {run.status}"]
    for step in run.steps.all():
        took = f"{step.duration:.2f} s" if step.duration is not None else ""
        lines.append(f"  {step.name:<7} {step.status:<10} {step.rows if step.rows is not None else '':>8} rows  {took}")
        if step.error:
            lines.append(f"          {step.error}")
    return "\n".join(lines)


async def tpa_for(code: str) -> Tpa:
    """The TPA a command names, through the same lookup as the pages (the command line sees all)."""
    try:
        return (await get_tpa_or_404(None, code))[0]
    except Http404:
        raise CommandError(f"No TPA with code {code!r}.") from None


async def run_for(code: str, *, wait: bool, inline: bool, seconds: float) -> PipelineRun:
    tpa = await tpa_for(code)
    try:
        run = await start_run(tpa, None, enqueue=not inline)
    except Refused as exc:
        raise CommandError(exc.message) from None
    if inline:
        await execute_run(run.pk)
    elif wait:
        return await wait_for(run.pk, seconds, interval=0.5)
    return await load_run(run.pk)


class Command(BaseCommand):
    help = "Start a pipeline run over a TPA's waiting files (a db_worker runs it, or --inline here)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("code", help="the TPA's code, e.g. ACME")
        parser.add_argument("--wait", action="store_true", help="wait for the worker to finish the run")
        parser.add_argument("--inline", action="store_true", help="run it in this process instead of a worker")
        parser.add_argument("--timeout", type=float, default=600.0, help="seconds --wait waits (default 600)")

    def handle(self, *args: Any, **options: Any) -> None:
        run = asyncio.run(
            run_for(options["code"], wait=options["wait"], inline=options["inline"], seconds=options["timeout"])
        )
        self.stdout.write(describe(run))
        if run.status == RunStatus.FAILED:
            raise CommandError(run.error)
        if (options["wait"] or options["inline"]) and not run.finished:
            raise CommandError(f"run {run.pk} still {run.status} after {options['timeout']:g} s")
