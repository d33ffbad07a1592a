"""Where a request's time goes: pyinstrument over requests sent straight to the ASGI app.

    make profile PROFILE_ARGS="/api/me"                    # services started for you
    python -m bench.profile /api/me /api/tpa/tpas -n 500   # with DATABASE_URL (and REDIS_URL) set

Sets Django up as the benchmarks do, signs a staff user in, and calls the ASGI application
in this process (no network, no server: only the request's own work) N times, one after
another, for each path, after a warm-up. Prints the mean wall time per request and
pyinstrument's call tree of the event loop's thread. Time the loop spends waiting for a
thread (`sync_to_async`) or a socket shows as the awaiting frame (or `[await]`); the
thread's own work is not sampled.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.server import setup, staff_session


async def call(app: Any, path: str, cookie: str) -> int:
    """One GET through the ASGI app; the response's status."""
    headers = [(b"host", b"127.0.0.1"), (b"cookie", cookie.encode())]
    scope = {"type": "http", "method": "GET", "path": path, "headers": headers, "client": ("127.0.0.1", 1)}
    status = 0
    received = False
    finished = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            finished.set()

    await app(scope, receive, send)
    return status


async def measure(path: str, cookie: str, count: int, show_all: bool = False) -> tuple[float, str]:
    from django.core.asgi import get_asgi_application
    from pyinstrument import Profiler

    app = get_asgi_application()
    for _ in range(20):  # warm-up: pools, templates, first-request paths
        if (status := await call(app, path, cookie)) != 200:
            raise SystemExit(f"GET {path} answered {status}")
    profiler = Profiler(interval=0.0005, async_mode="enabled")
    started = time.perf_counter()
    with profiler:
        for _ in range(count):
            await call(app, path, cookie)
    elapsed = time.perf_counter() - started
    return elapsed / count, profiler.output_text(unicode=True, show_all=show_all, short_mode=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+")
    parser.add_argument("-n", "--count", type=int, default=300)
    parser.add_argument("--all", action="store_true", help="show library frames too (Django, asgiref, ninja)")
    args = parser.parse_args()
    setup()
    from tpa import demo

    demo.ensure_master_data()
    _, cookies = staff_session()
    cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
    for path in args.paths:
        mean, tree = asyncio.run(measure(path, cookie, args.count, args.all))
        print(f"=== GET {path}: {mean * 1000:.2f} ms per request (mean of {args.count}, one at a time)\n{tree}")


if __name__ == "__main__":
    main()
