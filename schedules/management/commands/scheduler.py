from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from schedules.scheduler import claim_due


class Command(BaseCommand):
    help = (
        "Queue a run for every due schedule, every SCHEDULES_TICK_SECONDS, until stopped. "
        "Run as many as you like, on any machines: each due run is queued once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Claim what is due now, then exit.")
        parser.add_argument("--tick", type=float, default=None, help="Seconds between looks (default: settings).")

    def handle(self, *args: Any, once: bool, tick: float | None, **options: Any) -> None:
        stopping = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
        interval = tick or settings.SCHEDULES_TICK_SECONDS
        if not once:
            self.stdout.write(f"scheduler: looking for due schedules every {interval:g} s")
        while not stopping.is_set():
            for run in claim_due():
                self.stdout.write(
                    f"queued run {run.pk}: schedule {run.schedule_id} due at {run.due_at:%Y-%m-%d %H:%M:%S}"
                )
            self.stdout.flush()
            if once:
                return
            close_old_connections()
            stopping.wait(interval)
