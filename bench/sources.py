"""16 concurrent 200 ms queries on each source: is the total the slowest query, not the sum?

    make bench                      # every benchmark, services started for you
    python -m bench.sources         # this one, with DATABASE_URL / SNOWFLAKE_* already set

Prints a Markdown table. Each figure is the median of ROUNDS runs after one warm-up.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

import django

QUERIES = {
    "postgres": "SELECT pg_sleep(0.2), %(i)s AS i",
    "snowflake": "SELECT SYSTEM$WAIT(200, 'MILLISECONDS') AS w, %(i)s AS i",
}
CONCURRENCY = 16
ROUNDS = 5
LIMIT_MS = 200.0


async def measure(name: str, concurrent: bool) -> float:
    from project.sources import get_source

    source = get_source(name)
    sql = QUERIES[name]
    start = time.perf_counter()
    if concurrent:
        await asyncio.gather(*(source.execute(sql, {"i": i}, timeout=30) for i in range(CONCURRENCY)))
    else:
        for i in range(CONCURRENCY):
            await source.execute(sql, {"i": i}, timeout=30)
    return (time.perf_counter() - start) * 1000


async def run() -> list[dict[str, str]]:
    from django.conf import settings

    rows = []
    for name in QUERIES:
        await measure(name, concurrent=True)  # warm-up: open pool connections and sessions
        concurrent = statistics.median([await measure(name, concurrent=True) for _ in range(ROUNDS)])
        sequential = await measure(name, concurrent=False)
        size = settings.FANOUT_SOURCES[name].get("pool_max") or settings.FANOUT_SOURCES[name].get("pool_size")
        rows.append(
            {
                "benchmark": f"{CONCURRENCY} × 200 ms on {name} (pool {size})",
                "figure": f"{concurrent:.0f} ms",
                "limit": f"{LIMIT_MS:.0f} ms + overhead",
                "note": f"overhead {concurrent - LIMIT_MS:.0f} ms; one after another: {sequential:.0f} ms",
            }
        )
    return rows


def main() -> list[dict[str, str]]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.setdefault("SNOWFLAKE_POOL_SIZE", str(CONCURRENCY))
    os.environ.setdefault("REPORTS_POOL_MAX", str(CONCURRENCY))
    django.setup()
    return asyncio.run(run())


if __name__ == "__main__":
    from bench.table import print_table

    print_table(main())
