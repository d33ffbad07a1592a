"""Requests per second of the cached TPA list against a bare async view, and with the cache off.

    make bench
    python -m bench.cache           # with DATABASE_URL (and REDIS_URL) already set

Starts the service as `make demo` does and drives it with Debian's `wrk` (one thread,
CONNECTIONS keep-alive connections, SECONDS each; falls back to httpx, a slower client,
when wrk is not installed) on:

- `/health`: a bare async view, no session, no cache: the floor of any request;
- `/api/me` with a session: the session and user reads every signed-in API call pays;
- `/api/tpa/tpas` with a session, cache warm: the cached TPA list;
- `/api/tpa/tpas` on a second server whose settings (bench.settings_nocache) point CACHES
  at DummyCache: every request loads the list from Postgres.

The health / cached-list ratio is the cost of the signed-in, cached path; the cached /
uncached ratio is what the cache saves.
"""

from __future__ import annotations

import asyncio

import httpx

from bench.server import hammer, has_wrk, ms, serve, setup, staff_session, wrk

SECONDS = 8
CONNECTIONS = 16


def measure(base: str, path: str, cookies: dict[str, str]) -> dict[str, float]:
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}
    # One request first: it must answer 200 (a redirect to the login page would be fast and wrong).
    response = httpx.get(f"{base}{path}", headers=headers, timeout=30)
    if response.status_code != 200:
        raise SystemExit(f"GET {path} answered {response.status_code}: {response.text[:300]}")
    if has_wrk():
        figures = wrk(f"{base}{path}", seconds=SECONDS, connections=CONNECTIONS, headers=headers)
    else:
        figures = asyncio.run(hammer(f"{base}{path}", seconds=SECONDS, connections=CONNECTIONS, headers=headers))
    if figures["failed"]:
        # A rate of errors is no figure for the path: stop, as the first request's check does.
        raise SystemExit(f"GET {path}: {figures['failed']:.0f} requests failed (not 2xx/3xx, or socket errors)")
    return figures


def main() -> list[dict[str, str]]:
    setup()
    from django.conf import settings

    from tpa import demo

    demo.ensure_master_data()
    _, cookies = staff_session()
    with serve() as base:
        health = measure(base, "/health", {})
        me = measure(base, "/api/me", cookies)
        cached = measure(base, "/api/tpa/tpas", cookies)
    with serve(settings_module="bench.settings_nocache") as base:
        uncached = measure(base, "/api/tpa/tpas", cookies)

    backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    tool = "wrk" if has_wrk() else "httpx (wrk not installed: a lower bound)"
    how = f"{tool}, {CONNECTIONS} connections, {SECONDS} s"

    def row(name: str, figures: dict[str, float], note: str) -> dict[str, str]:
        return {
            "benchmark": name,
            "figure": f"{figures['rps']:,.0f} req/s",
            "limit": "none set",
            "note": f"{note}; p50 {ms(figures['p50'])}, p99 {ms(figures['p99'])}; {how}",
        }

    return [
        row("bare async view (`/health`)", health, "no session, no cache"),
        row("signed-in API call (`/api/me`)", me, f"session and user read; {health['rps'] / me['rps']:.1f}× /health"),
        row(
            "cached TPA list (`/api/tpa/tpas`, session)",
            cached,
            f"{backend}; /health is {health['rps'] / cached['rps']:.1f}× faster; "
            f"{cached['rps'] / uncached['rps']:.1f}× the uncached list",
        ),
        row("TPA list with the cache off (DummyCache)", uncached, "one Postgres query per request"),
    ]


if __name__ == "__main__":
    from bench.table import print_table

    print_table(main())
