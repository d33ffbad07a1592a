from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand

from tpa.pipeline import recover_abandoned, worker_lost_after


class Command(BaseCommand):
    help = (
        "Fail the pipeline runs that nothing will finish (running with no heartbeat for --lost-after seconds, "
        "or queued with no live task), giving their files back to the next run. Safe to run at any time, "
        "e.g. from cron."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--lost-after",
            type=float,
            default=None,
            help=f"seconds without a heartbeat after which a worker counts as gone (default {worker_lost_after():g})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        runs = asyncio.run(recover_abandoned(lost_after=options["lost_after"]))
        if not runs:
            self.stdout.write("No abandoned runs.")
            return
        for run in runs:
            self.stdout.write(f"run {run.pk} of {run.tpa.code}: failed. {run.error}")
        self.stdout.write(self.style.WARNING(f"{len(runs)} abandoned run(s) marked failed; start new runs to retry."))
