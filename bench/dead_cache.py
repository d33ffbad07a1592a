"""A 6-panel report page on a black-holed Redis: time to last panel against the slowest query.

    make bench                      # every benchmark, services started for you
    python -m bench.dead_cache      # this one, with DATABASE_URL / SNOWFLAKE_* already set

The server's REDIS_URL points at a loopback listener that accepts connections and never
answers (tests/faults/blackhole.py), the worst kind of cache outage: every call waits for
its socket timeout. The page is what a browser does: the six panel fragments requested at
once (`GET /reports/<slug>/panels/<id>/`, no `fresh`, so no rate-limit counter is touched),
each panel a Postgres sleep of 100 to 300 ms, cached (a panel with TTL 0 never reaches the
cache server) but with a new filter value each page, so every request misses, runs its
query and goes through the cache's read, lock and write. The goal (issue 10): the time
to the last panel within 1.2 × the slowest query. The first page trips the breaker (one
socket timeout, REDIS_TIMEOUT); afterwards one request per CACHE_BREAKER_SECONDS probes the
server again, so the table gives the first page, the median and the worst of ROUNDS.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import httpx

from bench.server import make_report, ms, serve, setup, staff_session
from tests.faults.blackhole import BlackHole

SLEEPS = (0.10, 0.15, 0.20, 0.25, 0.30, 0.30)
ROUNDS = 20
GOAL = 1.2


async def page(client: httpx.AsyncClient, urls: list[str]) -> float:
    """Seconds until the last of the page's panel fragments has arrived."""
    started = time.perf_counter()
    responses = await asyncio.gather(*(client.get(url) for url in urls))
    elapsed = time.perf_counter() - started
    if bad := [r.status_code for r in responses if r.status_code != 200]:
        raise SystemExit(f"panel fragments answered {bad}: {responses[0].text[:300]}")
    return elapsed


async def run(base: str, cookies: dict[str, str], urls: list[str]) -> tuple[float, list[float]]:
    limits = httpx.Limits(max_connections=len(urls))  # a browser's six connections
    async with httpx.AsyncClient(base_url=base, cookies=cookies, limits=limits, timeout=60) as client:
        # A new value of the filter each page: a miss, so each panel goes through read, lock and write.
        pages = [[f"{url}?round={time.time_ns()}{n}" for url in urls] for n in range(ROUNDS + 1)]
        first = await page(client, pages[0])
        return first, [await page(client, page_urls) for page_urls in pages[1:]]


def main() -> list[dict[str, str]]:
    setup()
    user, cookies = staff_session()
    panels = [
        ("postgres", f"SELECT pg_sleep({seconds}) AS slept, {i} AS panel, %(round)s AS round")
        for i, seconds in enumerate(SLEEPS)
    ]
    report: Any = make_report("dead-cache", user, panels, [{"name": "round", "label": "Round"}])
    report.panels.update(cache_ttl=300)
    urls = [f"/reports/{report.slug}/panels/{panel.pk}/" for panel in report.panels.order_by("order")]
    slowest = max(SLEEPS)
    with serve() as base:  # the same page on the working Redis, for comparison
        _, healthy = asyncio.run(run(base, cookies, urls))
    with BlackHole() as hole, serve(env={"REDIS_URL": hole.url}) as base:
        first, rounds = asyncio.run(run(base, cookies, urls))
    median, worst = statistics.median(rounds), max(rounds)
    return [
        {
            "benchmark": f"time to last panel, 6 panels (slowest {ms(slowest)}) on a black-holed Redis",
            "figure": f"{ms(median)} ({median / slowest:.2f}×)",
            "limit": f"{ms(GOAL * slowest)} ({GOAL}×)",
            "note": f"median of {ROUNDS}; worst {ms(worst)} ({worst / slowest:.2f}×); first page {ms(first)} "
            f"(trips the breaker); {hole.connections} connections and {hole.requests} requests reached the black hole; "
            f"on the working Redis {ms(statistics.median(healthy))} ({statistics.median(healthy) / slowest:.2f}×)",
        }
    ]


if __name__ == "__main__":
    from bench.table import print_table

    print_table(main())
