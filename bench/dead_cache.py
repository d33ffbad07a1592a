"""A 6-panel report page on a black-holed Redis: time to last panel against the slowest query.

    make bench                      # every benchmark, services started for you
    python -m bench.dead_cache      # this one, with DATABASE_URL / SNOWFLAKE_* already set

The server's REDIS_URL points at a loopback listener that accepts connections and never
answers (tests/faults/blackhole.py), the worst kind of cache outage: every call waits for
its socket timeout. The page is what a browser loads: `GET /reports/<slug>/?round=...`, one
response whose layout comes at once and whose panels follow in it as their queries finish;
the clock stops when the last panel (and the end of the document) has arrived. Each panel
is a Postgres sleep of 100 to 300 ms, cached (a panel with TTL 0 never reaches the cache
server) but with a new filter value each page, so every panel misses, runs its query and
goes through the cache's read, lock and write. The note adds what a filter change does
without reloading the page: `GET /reports/<slug>/stream/?round=...`, one line per panel. The goal (issue 10): the time
to the last panel within 1.2 × the slowest query. The first page trips the breaker (one
socket timeout, REDIS_TIMEOUT); afterwards one request per CACHE_BREAKER_SECONDS probes the
server again, so the table gives the first page, the median and the worst of ROUNDS.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

import httpx

from bench.server import make_report, ms, serve, setup, staff_session
from tests.faults.blackhole import BlackHole

SLEEPS = (0.10, 0.15, 0.20, 0.25, 0.30, 0.30)
ROUNDS = 20
GOAL = 1.2


async def page(client: httpx.AsyncClient, url: str, panels: int) -> float:
    """Seconds until the streamed page has brought its last panel and its end."""
    started = time.perf_counter()
    async with client.stream("GET", url) as response:
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
    elapsed = time.perf_counter() - started
    if response.status_code != 200 or body.count(b"data-arrival=") != panels or b'class="panel-error"' in body:
        raise SystemExit(f"the page answered {response.status_code}: {body[-600:]!r}")
    return elapsed


async def stream(client: httpx.AsyncClient, url: str, panels: int) -> float:
    """Seconds until the panel stream (a filter change) has brought its last line."""
    started = time.perf_counter()
    async with client.stream("GET", url, headers={"Accept": "application/x-ndjson"}) as response:
        lines = [json.loads(line) async for line in response.aiter_lines() if line.strip()]
    elapsed = time.perf_counter() - started
    if response.status_code != 200 or len(lines) != panels or any(line["status"] >= 400 for line in lines):
        raise SystemExit(f"the panel stream answered {response.status_code}: {lines[:1]}")
    return elapsed


class Run:
    def __init__(self, first: float, pages: list[float], streams: list[float]) -> None:
        self.first, self.pages, self.streams = first, pages, streams


async def run(base: str, cookies: dict[str, str], url: str, panels: int) -> Run:
    async with httpx.AsyncClient(base_url=base, cookies=cookies, timeout=60) as client:
        # A new value of the filter each page: a miss, so each panel goes through read, lock and write.
        def fresh(n: int) -> str:
            return f"round={time.time_ns()}{n}"

        first = await page(client, f"{url}?{fresh(0)}", panels)
        pages = [await page(client, f"{url}?{fresh(n)}", panels) for n in range(1, ROUNDS + 1)]
        streams = [await stream(client, f"{url}stream/?{fresh(n)}", panels) for n in range(ROUNDS)]
        return Run(first, pages, streams)


def main() -> list[dict[str, str]]:
    setup()
    user, cookies = staff_session()
    panels = [
        ("postgres", f"SELECT pg_sleep({seconds}) AS slept, {i} AS panel, %(round)s AS round")
        for i, seconds in enumerate(SLEEPS)
    ]
    report: Any = make_report("dead-cache", user, panels, [{"name": "round", "label": "Round"}])
    report.panels.update(cache_ttl=300)
    url = f"/reports/{report.slug}/"
    slowest = max(SLEEPS)
    with serve() as base:  # the same page on the working Redis, for comparison
        healthy = asyncio.run(run(base, cookies, url, len(SLEEPS)))
    with BlackHole() as hole, serve(env={"REDIS_URL": hole.url}) as base:
        dead = asyncio.run(run(base, cookies, url, len(SLEEPS)))
    median, worst = statistics.median(dead.pages), max(dead.pages)
    healthy_median, stream_median = statistics.median(healthy.pages), statistics.median(dead.streams)
    return [
        {
            "benchmark": f"time to last panel, 6 panels (slowest {ms(slowest)}) on a black-holed Redis",
            "figure": f"{ms(median)} ({median / slowest:.2f}×)",
            "limit": f"{ms(GOAL * slowest)} ({GOAL}×)",
            "note": f"the streamed page, median of {ROUNDS}; worst {ms(worst)} ({worst / slowest:.2f}×); "
            f"first page {ms(dead.first)} (trips the breaker); {hole.connections} connections and "
            f"{hole.requests} requests reached the black hole; on the working Redis {ms(healthy_median)} "
            f"({healthy_median / slowest:.2f}×); a filter change (the panel stream): {ms(stream_median)} "
            f"({stream_median / slowest:.2f}×), on the working Redis {ms(statistics.median(healthy.streams))}",
        }
    ]


if __name__ == "__main__":
    from bench.table import print_table

    print_table(main())
