"""100 concurrent users each loading an 8-panel report of 200 ms queries, for BENCH_LOAD_SECONDS (60).

    make bench
    BENCH_LOAD_SECONDS=20 python -m bench.load     # with DATABASE_URL / SNOWFLAKE_* already set

Starts the service as `make demo` does, but serving `bench.lag_asgi:application`: the same
Django application plus a task on the server's own event loop that sleeps 10 ms again and
again and records how late it wakes (the loop's lag, measured inside the server).

The report has 8 panels, 4 on Postgres and 4 on Snowflake, each sleeping 200 ms, never
cached. Every user passes its own filter value (`u`), so no two users' panels are the same
query and nothing is shared through the cache's single flight: each request really runs 8
queries. Each user loops `GET /api/reports/bench-load/run?fresh=1&u=<user>` until the time
is up. Figures: completed reports per second, latency percentiles, errors (HTTP failures
and panels that answered an error) and the loop lag p99 during the run.

With P connections per source and 100 × 4 queries per source in flight, a report cannot
finish before ceil(400 / P) waves of 200 ms: the note states that floor for the pool sizes
in use, so the figures can be read against it.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import Counter
from dataclasses import dataclass

import httpx

from bench.server import PANEL_MS, make_report, ms, percentile, pool_sizes, serve, setup, staff_session

USERS = 100
SECONDS = int(os.environ.get("BENCH_LOAD_SECONDS", "60"))
SLUG = "bench-load"
PANELS = [
    ("postgres", "SELECT pg_sleep(0.2) AS slept, %(u)s AS u, {i} AS panel"),
    ("snowflake", "SELECT SYSTEM$WAIT(200, 'MILLISECONDS') AS W, %(u)s AS U, {i} AS PANEL"),
] * 4
IDLE_SECONDS = 2.0
FIRST_FAILURE: list[str] = []  # the last line of the first failed answer's body


@dataclass
class Result:
    finished_at: float
    seconds: float
    ok: bool
    panel_errors: int
    failure: str = ""
    panel_ms: tuple[tuple[str, float, float], ...] = ()  # (source, waited, query) per panel
    fan_out: float = 0.0  # the server's own duration_ms of the panels' fan-out, in seconds


async def one_user(client: httpx.AsyncClient, user: int, deadline: float, results: list[Result]) -> None:
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        panel_errors, ok, failure, fan_out = 0, False, "", 0.0
        panel_ms: tuple[tuple[str, float, float], ...] = ()
        try:
            response = await client.get(f"/api/reports/{SLUG}/run", params={"fresh": "1", "u": str(user)})
            if response.status_code == 200:
                answer = response.json()
                panels, fan_out = answer["panels"], answer["duration_ms"] / 1000
                panel_errors = sum(1 for panel in panels if panel["error"])
                panel_ms = tuple((p["source"], p["duration_ms"], p["query_ms"]) for p in panels if not p["error"])
                ok = panel_errors == 0
                failure = "" if ok else "panel error: " + next(p["error"]["kind"] for p in panels if p["error"])
            else:
                failure = f"HTTP {response.status_code}"
                if not FIRST_FAILURE:  # with DEBUG on, a 500's body ends with the exception
                    lines = [line for line in response.text.splitlines() if line.strip()]
                    FIRST_FAILURE.append(lines[-1][:160] if lines else "")
        except httpx.HTTPError as exc:
            failure = type(exc).__name__
        finished = time.perf_counter()
        results.append(Result(finished, finished - started, ok, panel_errors, failure, panel_ms, fan_out))


async def lag(client: httpx.AsyncClient, *, reset: bool) -> list[float]:
    response = await client.get("/__bench__/lag", params={"reset": "1"} if reset else {})
    response.raise_for_status()
    return list(response.json()["samples"])


async def run(base: str, cookies: dict[str, str]) -> list[dict[str, str]]:
    limits = httpx.Limits(max_connections=USERS + 2, max_keepalive_connections=USERS + 2)
    async with httpx.AsyncClient(base_url=base, cookies=cookies, limits=limits, timeout=120) as client:
        # Warm-up: open both pools' connections and the first-request paths.
        warm: list[Result] = []
        await asyncio.gather(*(one_user(client, 10_000 + k, time.perf_counter(), warm) for k in range(4)))
        await asyncio.gather(*(one_user(client, 10_000 + k, time.perf_counter(), warm) for k in range(4)))
        await lag(client, reset=True)
        await asyncio.sleep(IDLE_SECONDS)
        idle = await lag(client, reset=True)

        results: list[Result] = []
        started = time.perf_counter()
        deadline = started + SECONDS
        await asyncio.gather(*(one_user(client, user, deadline, results) for user in range(USERS)))
        wall = time.perf_counter() - started
        busy = await lag(client, reset=True)
    return rows(results, wall, idle, busy)


def app_pool() -> int:
    from django.conf import settings

    return int(settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"])


def rows(results: list[Result], wall: float, idle: list[float], busy: list[float]) -> list[dict[str, str]]:
    pools = pool_sizes()
    per_source = {source: sum(1 for s, _ in PANELS if s == source) for source in pools}
    waves = max(math.ceil(USERS * count / pools[source]) for source, count in per_source.items())
    floor = waves * PANEL_MS / 1000
    ceiling = min(pools[source] / (PANEL_MS / 1000) / count for source, count in per_source.items())
    pool_text = ", ".join(f"{source} {size}" for source, size in pools.items())
    title = f"{USERS} users × 8-panel report (4 Postgres + 4 Snowflake, {PANEL_MS} ms each), {SECONDS} s"
    ok = [r.seconds for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    panel_errors = sum(r.panel_errors for r in results)
    reasons = Counter(r.failure for r in failed)
    reason_text = ", ".join(f"{n} × {reason}" for reason, n in reasons.most_common()) or "none"
    if FIRST_FAILURE and FIRST_FAILURE[0]:
        reason_text += f" (first: {FIRST_FAILURE[0]})"
    fan_out = percentile([r.fan_out for r in results if r.ok] or [0.0], 50)
    waited = {
        source: percentile([w for r in results for s, w, _ in r.panel_ms if s == source] or [0.0], 50)
        for source in pools
    }
    queried = {
        source: percentile([q for r in results for s, _, q in r.panel_ms if s == source] or [0.0], 50)
        for source in pools
    }
    split = "; ".join(
        f"{source} panel p50 {ms(waited[source] / 1000)} (source elapsed {ms(queried[source] / 1000)})"
        for source in pools
    )
    latency = " / ".join(ms(percentile(ok, p)) for p in (50, 95, 99)) if ok else "no report completed"
    return [
        {
            "benchmark": f"{title}: throughput",
            "figure": f"{len(ok) / wall:.1f} reports/s",
            "limit": f"≤ {ceiling:.0f} reports/s (pool ceiling)",
            "note": f"{len(ok)} complete reports in {wall:.0f} s ({len(ok) * len(PANELS) / wall:.0f} panel queries/s); "
            f"pools: {pool_text}",
        },
        {
            "benchmark": f"{title}: latency p50 / p95 / p99",
            "figure": latency,
            "limit": f"{PANEL_MS + 15} ms alone; ≥ {ms(floor)} with these pools",
            "note": f"{USERS} users × 4 queries per source in flight on {pool_text} connections: "
            f"at least {waves} waves of {PANEL_MS} ms; every user's filter differs, so nothing is shared; {split}; "
            f"the server's fan-out (duration_ms) p50 {ms(fan_out)}: the rest of a request is spent outside "
            f"the panels (session, report and query-log reads and writes on the app database, pool {app_pool()})",
        },
        {
            "benchmark": f"{title}: errors",
            "figure": f"{len(failed)} of {len(results)} reports",
            "limit": "0",
            "note": f"failures: {reason_text}; {panel_errors} panels answered an error",
        },
        {
            "benchmark": f"{title}: event-loop lag p99 inside the server",
            "figure": ms(percentile(busy, 99)) if busy else "no samples",
            "limit": "none set",
            "note": (
                f"max {ms(max(busy))} over {len(busy):,} samples of a 10 ms sleep; idle before the run: "
                f"p99 {ms(percentile(idle, 99))}"
            )
            if busy and idle
            else "the probe returned no samples",
        },
    ]


def main() -> list[dict[str, str]]:
    setup()
    from reports.models import Filter

    user, cookies = staff_session()
    make_report(
        SLUG,
        user,
        [(source, sql.format(i=i)) for i, (source, sql) in enumerate(PANELS)],
        filters=[{"name": "u", "label": "Bench user", "kind": Filter.Kind.NUMBER, "default": "0", "required": True}],
    )
    with serve("bench.lag_asgi:application") as base:
        return asyncio.run(run(base, cookies))


if __name__ == "__main__":
    from bench.table import print_table

    print_table(main())
