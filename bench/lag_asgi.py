"""project.asgi's application with probes the benchmarks read from inside the server process.

    uvicorn bench.lag_asgi:application

- Event-loop lag: a task on the server's own loop sleeps 10 ms again and again and records
  how late it wakes. Anything that blocks the loop (a sync call in `async def`, heavy
  rendering, a GIL-holding thread) shows up here. `GET /__bench__/lag` answers the samples
  in seconds; `?reset=1` also clears them.
- `GET /__bench__/stats`: this process's `project.cache.STATS` (hits, misses, loads).
- `GET /__bench__/memory`: this process's resident memory now and at its peak (VmRSS and
  VmHWM of /proc/self/status, in bytes); `?reset=1` first resets the peak to now.

Only the benchmarks serve this module; the app itself is unchanged. The probe paths never
reach Django, so they need no login and are not counted by the app.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import deque
from typing import Any

from project.asgi import application as django_application

INTERVAL = 0.010
PREFIX = "/__bench__/"

_samples: deque[float] = deque(maxlen=500_000)
_probe: asyncio.Task[None] | None = None


async def _sample_lag() -> None:
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(INTERVAL)
        _samples.append(max(0.0, loop.time() - started - INTERVAL))


def _start_probe() -> None:
    global _probe
    if _probe is None:
        _probe = asyncio.get_running_loop().create_task(_sample_lag())


async def _lifespan(receive: Any, send: Any) -> None:
    # Django's handler has no lifespan support; answering here starts the probe with the server.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _start_probe()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _probe is not None:
                _probe.cancel()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _answer(scope: dict[str, Any], send: Any) -> None:
    path = scope["path"][len(PREFIX) :]
    status = 200
    if path == "lag":
        body: Any = {"pid": os.getpid(), "interval": INTERVAL, "samples": list(_samples)}
        if b"reset=1" in scope.get("query_string", b""):
            _samples.clear()
    elif path == "stats":
        from project.cache import STATS

        body = {
            "pid": os.getpid(),
            "namespaces": {ns: {"hits": s.hits, "misses": s.misses, "loads": s.loads} for ns, s in STATS.items()},
        }
    elif path == "memory":
        if b"reset=1" in scope.get("query_string", b""):
            _reset_peak()
        body = {"pid": os.getpid(), **_memory()}
    else:
        body, status = {"detail": "unknown probe"}, 404
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _reset_peak() -> None:
    # "5" resets the peak resident set size (proc(5), /proc/pid/clear_refs).
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def _memory() -> dict[str, int]:
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status if line.startswith(("VmRSS", "VmHWM")))
    return {"rss": int(fields["VmRSS"].split()[0]) * 1024, "peak": int(fields["VmHWM"].split()[0]) * 1024}


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    _start_probe()  # also when the server runs with --lifespan off
    if scope["type"] == "http" and scope["path"].startswith(PREFIX):
        return await _answer(scope, send)
    return await django_application(scope, receive, send)
