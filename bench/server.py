"""What the HTTP benchmarks share: Django set up in this process, the data they need, a real server.

    setup()                                   # env defaults, django.setup(), migrate
    user, cookies = staff_session()           # a staff user and a signed-in session cookie
    with serve("bench.lag_asgi:application") as base:
        ...                                   # base is "http://127.0.0.1:<port>"

The server is started the way `make demo` starts it: uvicorn serving an ASGI application
as a subprocess on a free loopback port, with the environment `devtools.services`
provides (DATABASE_URL, SNOWFLAKE_*, REDIS_URL) plus SERVER_ENV. Data is created here,
through Django, in the same database the server reads.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path
from typing import Any

import httpx

from devtools import services as devservices

BASE_DIR = Path(__file__).resolve().parent.parent

# Both sources get at least 16 connections/threads, so a 16-panel report is not pool-bound.
POOL_SIZE = 16
ENV_DEFAULTS = {
    "DJANGO_SETTINGS_MODULE": "project.settings",
    "SNOWFLAKE_POOL_SIZE": str(POOL_SIZE),
    "REPORTS_POOL_MAX": str(POOL_SIZE),
}
# The server measures the request path, not the rate limiter: limits far above what a run sends.
SERVER_ENV = {
    "RATE_LIMIT_REPORT_RUN": "1000000/m",
    "RATE_LIMIT_FRESH": "1000000/m",
    "LOG_LEVEL": "WARNING",
}
PANEL_MS = 200
SLEEP_SQL = {
    "postgres": "SELECT pg_sleep(0.2) AS slept, {i} AS panel",
    "snowflake": "SELECT SYSTEM$WAIT(200, 'MILLISECONDS') AS W, {i} AS PANEL",
}
STAFF_USERNAME = "bench-staff"


def setup() -> None:
    """Set the pool sizes (unless given), set Django up and migrate (idempotent)."""
    for name, value in ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    import django

    django.setup()
    # Django's LOGGING puts the root logger at INFO: httpx would log every request we send.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from django.core.management import call_command

    call_command("migrate", "--no-input", verbosity=0)


def pool_sizes() -> dict[str, int]:
    from django.conf import settings

    sources = settings.FANOUT_SOURCES
    return {"postgres": int(sources["postgres"]["pool_max"]), "snowflake": int(sources["snowflake"]["pool_size"])}


# --- data ------------------------------------------------------------------------------


def staff_session() -> tuple[Any, dict[str, str]]:
    """A staff user and the cookie of a session signed in as them (as after a login)."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model

    user, _ = get_user_model().objects.get_or_create(
        username=STAFF_USERNAME, defaults={"email": "bench@example.com", "is_staff": True}
    )
    user.is_staff = True
    user.set_unusable_password()
    user.save()
    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return user, {settings.SESSION_COOKIE_NAME: session.session_key}


def data_sources() -> dict[str, Any]:
    from reports.models import DataSource

    return {
        name: DataSource.objects.update_or_create(
            name=f"Bench ({name})", defaults={"kind": name, "connection": name, "timeout": 30.0, "pool_share": None}
        )[0]
        for name in SLEEP_SQL
    }


def make_report(
    slug: str, owner: Any, panels: Sequence[tuple[str, str]], filters: Sequence[dict[str, Any]] = ()
) -> Any:
    """A report of `panels` (source name, SQL), never cached (TTL 0), replacing any earlier one."""
    from reports.models import Filter, Panel, Report

    sources = data_sources()
    report, _ = Report.objects.update_or_create(slug=slug, defaults={"title": f"Bench: {slug}", "owner": owner})
    report.panels.all().delete()
    report.filters.all().delete()
    for order, spec in enumerate(filters):
        Filter.objects.create(report=report, order=order, **spec)
    for order, (source, sql) in enumerate(panels):
        Panel.objects.create(
            report=report, title=f"Panel {order + 1}", sql=sql, source=sources[source], order=order, cache_ttl=0
        )
    return report


def sleep_panels(source: str, count: int) -> list[tuple[str, str]]:
    return [(source, SLEEP_SQL[source].format(i=i)) for i in range(count)]


# --- the server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(
    app: str = "project.asgi:application",
    *,
    settings_module: str | None = None,
    workers: int = 1,
    env: dict[str, str] | None = None,
    options: Sequence[str] = (),
) -> Iterator[str]:
    """uvicorn serving `app` on a free loopback port until the block ends; yields its base URL."""
    port = free_port()
    environment = {**os.environ, **SERVER_ENV, **(env or {})}
    if settings_module:
        environment["DJANGO_SETTINGS_MODULE"] = settings_module
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    if workers > 1:
        args += ["--workers", str(workers)]
    args += list(options)
    log = Path(tempfile.mkstemp(prefix="fanout-bench-server-", suffix=".log")[1])
    with open(log, "ab") as output:
        process = subprocess.Popen(
            args, cwd=BASE_DIR, env=environment, stdout=output, stderr=output, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    failed = True
    try:
        _wait_ready(base, process, workers)
        yield base
        failed = False
    finally:
        stop(process)
        if failed:
            tail = log.read_text(errors="replace")[-4000:]
            print(f"--- server log ({' '.join(args[2:4])}) ---\n{tail}", file=sys.stderr)
        log.unlink(missing_ok=True)


def _wait_ready(base: str, process: subprocess.Popen[bytes], workers: int, seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    ready = 0
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"the server exited with status {process.returncode} before it was ready")
            try:
                if client.get(f"{base}/health").status_code == 200:
                    ready += 1
                    if ready >= workers:  # every worker has had a chance to import Django
                        time.sleep(0.5 * (workers - 1))
                        return
                    continue
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    raise SystemExit(f"the server at {base} did not answer /health within {seconds:g} s")


def stop(process: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM the server's process group (a clean exit runs its atexit hooks), then SIGKILL."""
    devservices.stop(process, f"the server (pid {process.pid})", grace)


# --- figures -------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def has_wrk() -> bool:
    return shutil.which("wrk") is not None


def wrk(url: str, *, seconds: int, connections: int, headers: dict[str, str]) -> dict[str, float]:
    """Requests per second, latency p50/p99 and failed responses from Debian's wrk (one thread)."""
    args = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency", "--timeout", "10s"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    result = {"rps": float(_find(r"Requests/sec:\s+([\d.]+)", out)), "failed": 0.0}
    if non_2xx := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        result["failed"] += int(non_2xx.group(1))
    if socket_errors := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        result["failed"] += sum(int(n) for n in socket_errors.groups())
    for p in ("50", "99"):
        result[f"p{p}"] = _seconds(_find(rf"^\s+{p}%\s+(\S+)$", out))
    return result


def _find(pattern: str, text: str) -> str:
    if (match := re.search(pattern, text, re.MULTILINE)) is None:
        raise SystemExit(f"wrk output not understood (no {pattern!r}):\n{text}")
    return match.group(1)


def _seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


async def hammer(url: str, *, seconds: float, connections: int, headers: dict[str, str]) -> dict[str, float]:
    """The same figures as `wrk`, from httpx (slower client: a lower bound on the server's rate)."""
    latencies: list[float] = []
    failed = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=10) as client:
        import asyncio

        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal failed
            while (started := time.perf_counter()) < deadline:
                try:
                    response = await client.get(url)
                    ok = response.status_code < 400
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                failed += not ok

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    return {
        "rps": len(latencies) / elapsed,
        "failed": float(failed),
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
    }
