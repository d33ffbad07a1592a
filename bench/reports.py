"""Time to last panel of reports of 1, 4, 8 and 16 panels of 200 ms on each source, over HTTP.

    make bench                      # every benchmark, services started for you
    python -m bench.reports         # this one, with DATABASE_URL / SNOWFLAKE_* already set

Starts the service as `make demo` does (uvicorn on a free loopback port) and creates, through
Django, a staff user with a session and one report per source and size whose panels each
sleep 200 ms on the database (`pg_sleep(0.2)`, `SYSTEM$WAIT(200, 'MILLISECONDS')`), never
cached (TTL 0, and every request asks `fresh=1`). For each report it measures:

- API: `GET /api/reports/<slug>/run?fresh=1` until the whole JSON answer has arrived;
- stream: `GET /reports/<slug>/stream/?fresh=1` until the last panel's line has arrived;
- one after another: the same queries run in this process, one after the other, on the
  same sources (what a page that runs its panels in a loop would cost).

Each figure is the median of ROUNDS runs after a warm-up. The limit is DESIGN.md's: the
slowest query (200 ms) plus an overhead under 15 ms.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time

import httpx

from bench.server import (
    PANEL_MS,
    SLEEP_SQL,
    make_report,
    ms,
    pool_sizes,
    serve,
    setup,
    sleep_panels,
    staff_session,
)

SIZES = (1, 4, 8, 16)
ROUNDS = 5
SEQUENTIAL_ROUNDS = 3
OVERHEAD_LIMIT_MS = 15


def slug(source: str, size: int) -> str:
    return f"bench-{source}-{size}"


class Tally:
    """What went wrong across runs, so a figure is never quoted without its failures."""

    def __init__(self) -> None:
        self.panel_errors = 0
        self.cache_hits = 0

    def note(self) -> str:
        parts = []
        if self.panel_errors:
            parts.append(f"{self.panel_errors} panel errors")
        if self.cache_hits:
            parts.append(f"{self.cache_hits} cached panels (should be 0)")
        return "; " + ", ".join(parts) if parts else ""


async def api_run(client: httpx.AsyncClient, report: str, size: int, tally: Tally) -> tuple[float, float]:
    """Seconds until the whole answer arrived, and the server's own `duration_ms` (in seconds)."""
    started = time.perf_counter()
    response = await client.get(f"/api/reports/{report}/run", params={"fresh": "1"})
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"GET /api/reports/{report}/run answered {response.status_code}: {response.text[:500]}")
    panels = response.json()["panels"]
    if len(panels) != size:
        raise SystemExit(f"{report}: {len(panels)} panels in the answer, expected {size}")
    tally.panel_errors += sum(1 for panel in panels if panel["error"])
    tally.cache_hits += sum(1 for panel in panels if panel["cache_hit"])
    return elapsed, response.json()["duration_ms"] / 1000


async def stream_run(client: httpx.AsyncClient, report: str, size: int, tally: Tally) -> float:
    """Seconds until the last panel's line of the streamed report arrived."""
    started = time.perf_counter()
    seen, last = 0, 0.0
    async with client.stream("GET", f"/reports/{report}/stream/", params={"fresh": "1"}) as response:
        if response.status_code != 200:
            await response.aread()
            raise SystemExit(f"GET /reports/{report}/stream/ answered {response.status_code}: {response.text[:500]}")
        async for line in response.aiter_lines():
            if not line.strip():
                continue
            seen += 1
            last = time.perf_counter() - started
            tally.panel_errors += json.loads(line)["status"] != 200
    if seen != size:
        raise SystemExit(f"{report}: the stream sent {seen} panels, expected {size}")
    return last


async def one_after_another(source: str, size: int) -> float:
    from project.sources import get_source

    database = get_source(source)
    started = time.perf_counter()
    for i in range(size):
        await database.execute(SLEEP_SQL[source].format(i=i), timeout=30)
    return time.perf_counter() - started


async def run(base: str, cookies: dict[str, str]) -> list[dict[str, str]]:
    pools = pool_sizes()
    rows = []
    limits = httpx.Limits(max_connections=4)
    async with httpx.AsyncClient(base_url=base, cookies=cookies, limits=limits, timeout=60) as client:
        for source in SLEEP_SQL:
            warm = Tally()
            # Warm-up: fills both pools (server and this process) and the first-request paths.
            await api_run(client, slug(source, max(SIZES)), max(SIZES), warm)
            await stream_run(client, slug(source, max(SIZES)), max(SIZES), warm)
            await one_after_another(source, 1)
            for size in SIZES:
                tally = Tally()
                api, server, stream = [], [], []
                for _ in range(ROUNDS):
                    elapsed, inside = await api_run(client, slug(source, size), size, tally)
                    api.append(elapsed)
                    server.append(inside)
                    stream.append(await stream_run(client, slug(source, size), size, tally))
                sequential = statistics.median(
                    [await one_after_another(source, size) for _ in range(SEQUENTIAL_ROUNDS)]
                )
                for path, values, extra in (
                    ("API", api, f"; server's own duration_ms {ms(statistics.median(server))}"),
                    ("stream", stream, ""),
                ):
                    figure = statistics.median(values)
                    rows.append(
                        {
                            "benchmark": f"time to last panel, {size} × {PANEL_MS} ms on {source}, {path}",
                            "figure": ms(figure),
                            "limit": f"{PANEL_MS + OVERHEAD_LIMIT_MS} ms",
                            "note": f"overhead {ms(figure - PANEL_MS / 1000)}{extra}; one after another "
                            f"{ms(sequential)} ({sequential / figure:.1f}×); pool {pools[source]}; "
                            f"median of {ROUNDS}{tally.note()}",
                        }
                    )
    from project.sources import get_source

    await get_source("postgres").close()  # a psycopg pool belongs to this run's event loop
    return rows


def main() -> list[dict[str, str]]:
    setup()
    user, cookies = staff_session()
    for source in SLEEP_SQL:
        for size in SIZES:
            make_report(slug(source, size), user, sleep_panels(source, size))
    with serve() as base:
        return asyncio.run(run(base, cookies))


if __name__ == "__main__":
    from bench.table import print_table

    print_table(main())
