"""How long the task worker takes to print the 9-panel claims report as a PDF, and its peak memory.

    make bench
    python -m bench.pdf             # with DATABASE_URL / SNOWFLAKE_* already set

Installs the demo reports (`load_demo_reports`: "claims-overview", 9 panels on Snowflake),
queues ROUNDS PDF runs of it as a staff user, the way the report page's "Download PDF" does,
and lets one real `manage.py db_worker --batch` process run them. The render time is what
each run records (`Run.pdf_ms`: Chromium launched, the page set, charts drawn, printed);
the first run also queries the warehouse, the others read the cache, neither is counted.
Memory is sampled every SAMPLE_SECONDS: the proportional set size (PSS) of the worker and of
every process under it (Chromium's), summed, and the worker's own resident set.
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from pypdf import PdfReader

from bench.server import setup, staff_session

ROUNDS = 5
SAMPLE_SECONDS = 0.02
SLUG = "claims-overview"
BASE_DIR = Path(__file__).resolve().parent.parent


class Peak:
    """The largest resident set seen of a process and of its whole tree, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.own = self.tree = 0
        self.idle: int | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self) -> None:
        while not self.done.is_set():
            try:
                own = self.process.memory_info().rss
                # PSS: Chromium's processes share pages; summing their RSS would count those many times.
                tree = self.process.memory_full_info().pss
                for child in self.process.children(recursive=True):
                    with contextlib.suppress(psutil.NoSuchProcess):  # it ended between the two calls
                        tree += child.memory_full_info().pss
            except psutil.NoSuchProcess:
                return
            self.own, self.tree = max(self.own, own), max(self.tree, tree)
            time.sleep(SAMPLE_SECONDS)

    def __enter__(self) -> Peak:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


def mib(size: float) -> str:
    return f"{size / 2**20:,.0f} MiB"


def main() -> list[dict[str, str]]:
    setup()
    from django.core.management import call_command

    from reports.models import Report
    from schedules.models import Run
    from schedules.tasks import execute_run

    user, _ = staff_session()
    user.is_superuser = True  # load_demo_reports gives the reports to the first superuser
    user.save(update_fields=["is_superuser"])
    call_command("load_demo_reports", verbosity=0)
    report = Report.objects.get(slug=SLUG)
    panels = report.panels.count()
    runs = [Run.objects.create(report=report, requested_by=user, trigger=Run.Trigger.PDF) for _ in range(ROUNDS)]
    for run in runs:
        execute_run.enqueue(run.pk)

    worker = subprocess.Popen(
        [sys.executable, "manage.py", "db_worker", "--batch", "--no-reload", "--no-startup-delay", "--interval", "0.1"],
        cwd=BASE_DIR,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    with Peak(worker.pid) as peak:
        _, errors = worker.communicate(timeout=600)
    if worker.returncode:
        raise SystemExit(f"db_worker exited {worker.returncode}:\n{errors.decode()[-2000:]}")

    finished = [Run.objects.get(pk=run.pk) for run in runs]
    failed = [run for run in finished if run.status != Run.Status.DONE]
    if failed:
        raise SystemExit(f"{len(failed)} PDF runs failed: {failed[0].error}")
    times = [run.pdf_ms or 0.0 for run in finished]
    pages = len(PdfReader(io.BytesIO(bytes(finished[0].pdf or b""))).pages)
    size = len(finished[0].pdf or b"")
    errors_in_panels = sum(1 for run in finished for panel in run.panels if panel["error"])
    return [
        {
            "benchmark": f"PDF of the {panels}-panel claims report, rendered in the task worker",
            "figure": f"{statistics.median(times) / 1000:.2f} s",
            "limit": "none set",
            "note": f"median of {ROUNDS}; min {min(times) / 1000:.2f} s, max {max(times) / 1000:.2f} s; "
            f"Chromium launched per PDF, page set, charts drawn, printed; {pages} pages, {size / 1024:,.0f} KiB; "
            f"{errors_in_panels} panel errors",
        },
        {
            "benchmark": "task worker's peak memory while rendering that PDF",
            "figure": mib(peak.tree),
            "limit": "none set",
            "note": f"PSS of the worker and its Chromium processes, summed, sampled every "
            f"{SAMPLE_SECONDS * 1000:.0f} ms; the worker's Python process alone {mib(peak.own)} (RSS)",
        },
    ]


if __name__ == "__main__":
    from bench.table import markdown

    # Alone, it prints its rows; `make bench` (bench/__main__.py) writes the whole table.
    print(markdown(main()))
