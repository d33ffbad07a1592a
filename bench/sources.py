"""Concurrent queries on each source: is the total the slowest query, not the sum?

    make bench                      # every benchmark, services started for you
    python -m bench.sources         # this one, with DATABASE_URL / SNOWFLAKE_* already set

Two figures per source family:
- 16 concurrent 200 ms queries on each source (pool 16), and one after another;
- 64 concurrent 1 s `SYSTEM$WAIT` queries on a Snowflake source with 8 threads: a running
  query must hold no thread, so the total should stay near 1 s, not 8 waves of 1 s.

Prints a Markdown table. Each figure is the median of ROUNDS runs after one warm-up. The
Snowflake rows also say where the CPU went per round: this process (the connector) and, when
the source is the local emulator, the emulator's process: on a small machine the two share
the cores, and CPU is what the wall-clock figure runs out of.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

import django
import psutil

QUERIES = {
    "postgres": "SELECT pg_sleep(0.2), %(i)s AS i",
    "snowflake": "SELECT SYSTEM$WAIT(200, 'MILLISECONDS') AS w, %(i)s AS i",
}
CONCURRENCY = 16
ROUNDS = 5
LIMIT_MS = 200.0

WIDE_QUERY = "SELECT SYSTEM$WAIT(1) AS w, %(i)s AS i"
WIDE_CONCURRENCY = 64
WIDE_THREADS = 8
WIDE_ROUNDS = 3


def emulator_process() -> psutil.Process | None:
    """The local emulator serving SNOWFLAKE_PORT, or None (a real account, or not found)."""
    if os.environ.get("SNOWFLAKE_HOST") not in ("127.0.0.1", "localhost"):
        return None
    port = int(os.environ.get("SNOWFLAKE_PORT") or 0)
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    return None


class CpuSplit:
    """CPU seconds spent by this process and by the emulator's, from start() to per_round()."""

    def __init__(self) -> None:
        self.emulator = emulator_process()

    def _now(self) -> tuple[float, float]:
        emulator = sum(self.emulator.cpu_times()[:2]) if self.emulator else 0.0
        return time.process_time(), emulator

    def start(self) -> None:
        self.started = self._now()

    def per_round(self, rounds: int) -> str:
        (app, emulator), (app0, emulator0) = self._now(), self.started
        text = f"CPU per round: app {(app - app0) / rounds * 1000:.0f} ms"
        if self.emulator:
            text += f", emulator {(emulator - emulator0) / rounds * 1000:.0f} ms"
        return text


async def measure(source: Any, sql: str, concurrent: bool, count: int = CONCURRENCY) -> float:
    start = time.perf_counter()
    if concurrent:
        await asyncio.gather(*(source.execute(sql, {"i": i}, timeout=60) for i in range(count)))
    else:
        for i in range(count):
            await source.execute(sql, {"i": i}, timeout=60)
    return (time.perf_counter() - start) * 1000


async def wide() -> dict[str, str]:
    """64 concurrent 1 s queries on a Snowflake source with 8 threads."""
    from django.conf import settings

    from project.sources.snowflake import SnowflakeSource

    config = {**settings.FANOUT_SOURCES["snowflake"], "pool_size": WIDE_THREADS}
    source = SnowflakeSource("snowflake", config)
    try:
        await measure(source, WIDE_QUERY, concurrent=True, count=WIDE_CONCURRENCY)  # warm-up: sessions
        cpu, polls = CpuSplit(), source.polls
        cpu.start()
        figure = statistics.median(
            [await measure(source, WIDE_QUERY, True, WIDE_CONCURRENCY) for _ in range(WIDE_ROUNDS)]
        )
        per_query = (source.polls - polls) / WIDE_ROUNDS / WIDE_CONCURRENCY
        split = f"{cpu.per_round(WIDE_ROUNDS)}; {per_query:.1f} status polls a query"
    finally:
        await source.close()
    return {
        "benchmark": f"{WIDE_CONCURRENCY} × 1 s on snowflake ({WIDE_THREADS} threads)",
        "figure": f"{figure:.0f} ms",
        "limit": "about 1000 ms",
        "note": f"overhead {figure - 1000:.0f} ms; median of {WIDE_ROUNDS}; {split}",
    }


async def run() -> list[dict[str, str]]:
    from django.conf import settings

    from project.sources import get_source

    rows = []
    for name in QUERIES:
        source = get_source(name)
        sql = QUERIES[name]
        await measure(source, sql, concurrent=True)  # warm-up: open pool connections and sessions
        cpu, polls = CpuSplit(), getattr(source, "polls", 0)
        cpu.start()
        concurrent = statistics.median([await measure(source, sql, concurrent=True) for _ in range(ROUNDS)])
        split = ""
        if name == "snowflake":
            per_query = (getattr(source, "polls", 0) - polls) / ROUNDS / CONCURRENCY
            split = f"; {cpu.per_round(ROUNDS)}; {per_query:.1f} status polls a query"
        sequential = await measure(source, sql, concurrent=False)
        size = settings.FANOUT_SOURCES[name].get("pool_max") or settings.FANOUT_SOURCES[name].get("pool_size")
        rows.append(
            {
                "benchmark": f"{CONCURRENCY} × 200 ms on {name} (pool {size})",
                "figure": f"{concurrent:.0f} ms",
                "limit": f"{LIMIT_MS:.0f} ms + overhead",
                "note": f"overhead {concurrent - LIMIT_MS:.0f} ms; one after another: {sequential:.0f} ms{split}",
            }
        )
    rows.append(await wide())
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
