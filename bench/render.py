"""What showing a large table costs the event loop: one panel of 500 rows of 6 columns.

    make bench                      # every benchmark, services started for you
    python -m bench.render          # this one, with DATABASE_URL / SNOWFLAKE_* already set

A panel's result becomes HTML on the event loop, in the page's own response: the cell texts
in the user's locale (`panel_context`, every number through the locale's separators), then
the panel template. While that runs, no other request of the process moves. The panel here
is the largest a page shows (`SHOWN_ROWS`, 500 rows) of six columns of mixed kinds (ids,
text, decimals, dates, small integers, hashes), from a real Postgres query; the figure is
the process's CPU time per panel, the median of ROUNDS batches.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench.server import make_report, setup, staff_session

SQL = (
    "SELECT g AS id, 'name ' || g AS name, g * 1.5 AS amount, DATE '2026-01-01' + g AS day, "
    "mod(g, 7) AS bucket, md5(g::text) AS hash FROM generate_series(1, 500) g"
)
ROUNDS = 5
PER_ROUND = 10


async def measure(user: Any) -> tuple[float, float, int]:
    """CPU seconds per panel for the cell texts and for the template, and the HTML's size."""
    from django.http import QueryDict
    from django.template.loader import render_to_string

    from reports import runner
    from reports.services import open_report
    from reports.templatetags.reports import panel_context

    prepared = await open_report(user, "bench-render", QueryDict(), check=False)
    [run] = await runner.run_report(prepared.panels, prepared.state.params())
    if not run.ok or len(run.rows) != 500:
        raise SystemExit(f"the 500-row panel did not run: {run.error}")
    panel = prepared.panels[0]
    contexts, renders = [], []
    html = ""
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(PER_ROUND):
            context = panel_context(prepared.report, panel, run, prepared.state, user=user)
        middle = time.process_time()
        for _ in range(PER_ROUND):
            html = render_to_string("reports/report.html#arrival", context)
        contexts.append((middle - started) / PER_ROUND)
        renders.append((time.process_time() - middle) / PER_ROUND)
    return statistics.median(contexts), statistics.median(renders), len(html)


def main() -> list[dict[str, str]]:
    setup()
    user, _ = staff_session()
    make_report("bench-render", user, [("postgres", SQL)])
    context, render, size = asyncio.run(measure(user))
    return [
        {
            "benchmark": "a 500-row × 6-column table panel made HTML, on the event loop",
            "figure": f"{(context + render) * 1000:.1f} ms",
            "limit": "none set",
            "note": f"cell texts (panel_context) {context * 1000:.1f} ms, template {render * 1000:.1f} ms; "
            f"{size / 1024:.0f} KiB of HTML; CPU time, median of {ROUNDS} batches of {PER_ROUND}",
        }
    ]


if __name__ == "__main__":
    from bench.table import print_table

    print_table(main())
