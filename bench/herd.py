"""The herd: 200 concurrent cold requests for cached master data, and for one new bearer token.

    make bench
    python -m bench.herd            # with DATABASE_URL / REDIS_URL already set

Starts the service as `make demo` does (serving `bench.lag_asgi:application`, which adds
probe paths only), once with one uvicorn worker and, when Redis is configured, once with
two (the cache's "one load per miss" is claimed across processes too). For each:

- master data: `/api/tpa/master-data` when a warmer is registered for `master-data`; if it
  answers 503 (no warmer yet) the TPA list (`/api/tpa/tpas`, namespace `tpa-list`) stands
  in, and the row says so. The namespace is invalidated, then 200 requests with a session
  are sent at once over 200 already-open connections.
- a new bearer token: 200 requests at once to `/api/me` with the same never-seen token,
  checked against a local RFC 7662 introspection server on 127.0.0.1 (answers after
  INTROSPECTION_DELAY, counts its calls). The server vouches for one subject of its issuer,
  and that identity is linked to a local user first, as an administrator links one in the
  admin (project.models.TokenIdentity): the token stands for that user.

Every answer of a herd must be 200; otherwise the run stops with the statuses it got
(a herd of 401s would be fast, and wrong).

Loads, hits and misses are each worker's `project.cache.STATS` (read through the probe path
`/__bench__/stats` before and after the herds, from every worker), not the shared
`stats:<namespace>:*` counters: those get a process's last counts only from an atexit hook,
which never runs under uvicorn (it re-raises SIGTERM after its graceful shutdown).
Without Redis (LocMem: nothing shared between processes) only the one-worker run is made.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from bench.server import free_port, ms, percentile, serve, setup, staff_session

HERD = 200
INTROSPECTION_DELAY = 0.1
TOKEN_USERNAME = "bench-token-user"
TOKEN_ISSUER = "https://idp.bench.invalid"
TOKEN_SUBJECT = "bench-token-subject"
FIELDS = ("hits", "misses", "loads")


class Introspection(BaseHTTPRequestHandler):
    """POST /introspect: every token is active for an hour, for TOKEN_SUBJECT of TOKEN_ISSUER."""

    calls = 0
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with Introspection.lock:
            Introspection.calls += 1
        time.sleep(INTROSPECTION_DELAY)
        claims = {
            "active": True,
            "iss": TOKEN_ISSUER,
            "sub": TOKEN_SUBJECT,
            "username": TOKEN_USERNAME,
            "exp": int(time.time()) + 3600,
        }
        body = json.dumps(claims).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextmanager
def introspection_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Introspection)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/introspect"
    finally:
        server.shutdown()
        server.server_close()


def link_token_user() -> None:
    """The local user the bench's tokens stand for, linked by (issuer, subject) as in the admin."""
    from django.contrib.auth import get_user_model

    from project.models import TokenIdentity

    user, _ = get_user_model().objects.get_or_create(username=TOKEN_USERNAME)
    TokenIdentity.objects.update_or_create(issuer=TOKEN_ISSUER, subject=TOKEN_SUBJECT, defaults={"user": user})


def all_ok(what: str, outcomes: Counter[str]) -> None:
    """Stop the run, with the statuses, unless every answer was 200."""
    if set(outcomes) != {"200"}:
        answers = ", ".join(f"{n} × {outcome}" for outcome, n in outcomes.most_common())
        raise SystemExit(f"{what}: expected {HERD} × 200, got {answers}")


class HerdClient:
    """HERD keep-alive HTTP/1.1 connections, spoken over asyncio streams with no HTTP library.

    The herd used to go through httpx, whose pool spent about 23 ms of CPU per request at 200
    connections: 4.6 s of client CPU for a herd the server answered with 0.6 s (`/health`),
    on the same 2 cores. Here a request is one prepared write and a response one parse of its
    head and a read of its body (Content-Length or chunked), tens of microseconds each, so
    the figure is the server's."""

    def __init__(self, base: str, cookies: dict[str, str]) -> None:
        url = httpx.URL(base)
        self.host, self.port = str(url.host), int(url.port or 80)
        self.cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
        self.streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    def request(self, path: str, headers: dict[str, str]) -> bytes:
        lines = [f"GET {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if self.cookie:
            lines.append(f"Cookie: {self.cookie}")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def open(self) -> None:
        """HERD connections, each answered once (`/health`), so every one is accepted by a
        worker and idle when the herd starts; a connection closed under us is reopened."""

        async def one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            for _ in range(3):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(self.request("/health", {}))
                try:
                    if await asyncio.wait_for(read_status(reader), 60) == 200:
                        return reader, writer
                except (OSError, asyncio.IncompleteReadError):
                    pass
                writer.close()
            raise SystemExit(f"could not open a connection to {self.host}:{self.port} that answers /health")

        self.streams = list(await asyncio.gather(*(one() for _ in range(HERD))))

    async def close(self) -> None:
        for _, writer in self.streams:
            writer.close()
        await asyncio.gather(*(writer.wait_closed() for _, writer in self.streams), return_exceptions=True)

    async def herd(self, path: str, headers: dict[str, str]) -> tuple[Counter[str], list[float]]:
        """One request on every connection, all written before any answer is read; each
        one's status (or error) and seconds from its write to the end of its body."""
        request = self.request(path, headers)
        started = []
        for _, writer in self.streams:
            started.append(time.perf_counter())
            writer.write(request)

        async def answer(reader: asyncio.StreamReader, began: float) -> tuple[str, float]:
            try:
                outcome = str(await asyncio.wait_for(read_status(reader), 60))
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                outcome = type(exc).__name__
            return outcome, time.perf_counter() - began

        results = await asyncio.gather(
            *(answer(reader, began) for (reader, _), began in zip(self.streams, started, strict=True))
        )
        return Counter(outcome for outcome, _ in results), [seconds for _, seconds in results]


async def read_status(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response to its end; its status code."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    fields = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in head[1:])}
    if "content-length" in fields:
        await reader.readexactly(int(fields["content-length"]))
    elif fields.get("transfer-encoding", "").lower() == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")  # the end of the (empty) trailer
    else:
        raise ValueError(f"response {status} has neither Content-Length nor chunked encoding")
    return status


@asynccontextmanager
async def herd_client(base: str, cookies: dict[str, str]) -> AsyncIterator[HerdClient]:
    """A client with HERD freshly opened keep-alive connections (reaching every worker), so the
    herd arrives at once and on no connection the server is about to close as idle."""
    client = HerdClient(base, cookies)
    await client.open()
    try:
        yield client
    finally:
        await client.close()


@dataclass(frozen=True)
class Herd:
    outcomes: Counter[str]
    seconds: list[float]
    client_cpu: float


async def timed_herd(client: HerdClient, path: str, headers: dict[str, str]) -> Herd:
    """The herd, with the CPU time this (client) process spent on it."""
    cpu = time.process_time()
    outcomes, seconds = await client.herd(path, headers)
    return Herd(outcomes, seconds, time.process_time() - cpu)


async def process_stats(base: str, workers: int) -> dict[int, dict[str, dict[str, int]]]:
    """Every worker's project.cache.STATS, by pid: new connections until each worker answered."""
    found: dict[int, dict[str, dict[str, int]]] = {}
    for _ in range(100):
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            answer = (await client.get("/__bench__/stats")).json()
        found[answer["pid"]] = answer["namespaces"]
        if len(found) >= workers:
            break
    if len(found) < workers:
        raise SystemExit(f"only {len(found)} of {workers} workers answered /__bench__/stats")
    return found


def added(
    before: dict[int, dict[str, dict[str, int]]], after: dict[int, dict[str, dict[str, int]]], namespace: str
) -> dict[str, int]:
    """The counts every process added to `namespace` between two snapshots."""
    zero = dict.fromkeys(FIELDS, 0)
    return {
        field: sum(
            after[pid].get(namespace, zero)[field] - before.get(pid, {}).get(namespace, zero)[field] for pid in after
        )
        for field in FIELDS
    }


async def run_herds(base: str, cookies: dict[str, str], shared: bool, workers: int) -> dict[str, object]:
    from project import cache

    async with httpx.AsyncClient(base_url=base, cookies=cookies, timeout=60) as client:
        for _ in range(4):
            (await client.get("/api/me")).raise_for_status()
    # The same registry as the server's: both ran the apps' ready().
    if cache.warmer("master-data") is not None:
        namespace, path, stand_in = "master-data", "/api/tpa/master-data", ""
    else:
        namespace, path = "tpa-list", "/api/tpa/tpas"
        stand_in = "no warmer is registered for master-data (/api/tpa/master-data answers 503): the TPA list stands in"
    if shared:
        await cache.ainvalidate(namespace)
    before = await process_stats(base, workers)
    async with herd_client(base, cookies) as client:
        data = await timed_herd(client, path, {})
    all_ok(f"the herd for {path} ({workers} worker(s))", data.outcomes)

    calls_before = Introspection.calls
    token = f"bench-{uuid.uuid4().hex}"
    async with herd_client(base, {}) as client:
        token_herd = await timed_herd(client, "/api/me", {"Authorization": f"Bearer {token}"})
        calls = Introspection.calls - calls_before
    all_ok(f"the herd with one new bearer token on /api/me ({workers} worker(s))", token_herd.outcomes)
    after = await process_stats(base, workers)
    return {
        "namespace": namespace,
        "path": path,
        "stand_in": stand_in,
        "data": data,
        "token": token_herd,
        "calls": calls,
        "counts": {ns: added(before, after, ns) for ns in (namespace, "tokens")},
    }


def main() -> list[dict[str, str]]:
    setup()
    from django.conf import settings

    from tpa import demo

    demo.ensure_master_data()
    from tpa.models import Tpa

    tpas = Tpa.objects.count()
    _, cookies = staff_session()
    link_token_user()
    shared = "redis" in settings.CACHES["default"]["BACKEND"].lower()
    rows = []
    with introspection_server() as introspection_url:
        for workers in (1, 2) if shared else (1,):
            # Keep-alive: idle connections stay open while the other herd runs (uvicorn's default is 5 s).
            with serve(
                "bench.lag_asgi:application",
                workers=workers,
                options=["--timeout-keep-alive", "60"],
                env={"TOKEN_INTROSPECTION_URL": introspection_url},
            ) as base:
                result = asyncio.run(run_herds(base, cookies, shared, workers))
            rows += herd_rows(result, workers, tpas)
    return rows


def herd_rows(result: dict[str, Any], workers: int, tpas: int) -> list[dict[str, str]]:
    where = f"{workers} uvicorn worker{'s' if workers > 1 else ''}"

    def answered(herd: Herd) -> str:
        text = ", ".join(f"{n} × {outcome}" for outcome, n in herd.outcomes.most_common())
        return (
            f"answers: {text}; p50 {ms(percentile(herd.seconds, 50))}, slowest {ms(max(herd.seconds))}; "
            f"client CPU {ms(herd.client_cpu)}"
        )

    namespace = str(result["namespace"])
    data_counts, token_counts = result["counts"][namespace], result["counts"]["tokens"]
    # Requests a worker answered from its own copy, or that joined its one read in flight
    # (project.localcache), never reach project.cache: they are neither hits nor misses there.
    source = "project.cache.STATS of every worker; the rest shared each worker's one read"
    stand_in = f"; {result['stand_in']}" if result["stand_in"] else ""
    cold = data_counts["misses"]
    if namespace == "master-data":
        # Its "all" loader reloads each TPA's own entry in the same namespace (tpa.cache), each a miss.
        limit = f"{1 + tpas} loads (1 + 1 per TPA, {tpas} TPAs)"
        cold -= tpas
    else:
        limit = "1 load"
    return [
        {
            "benchmark": f"herd: {HERD} concurrent cold requests for {namespace} (`{result['path']}`), {where}",
            "figure": f"{data_counts['loads']} load{'s' if data_counts['loads'] != 1 else ''}",
            "limit": limit,
            "note": f"{cold} requests found it cold, {data_counts['hits']} hits ({source}){stand_in}; "
            + answered(result["data"]),
        },
        {
            "benchmark": f"herd: {HERD} concurrent requests with one new bearer token (`/api/me`), {where}",
            "figure": f"{result['calls']} introspection call{'s' if result['calls'] != 1 else ''}",
            "limit": "1 call",
            "note": f"counted by the local auth server (answers in {ms(INTROSPECTION_DELAY)}); tokens namespace: "
            f"{token_counts['loads']} load, {token_counts['misses']} requests found it cold, "
            f"{token_counts['hits']} hits ({source}); " + answered(result["token"]),
        },
    ]


if __name__ == "__main__":
    from bench.table import print_table

    print_table(main())
