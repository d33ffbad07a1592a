"""Real peers for schedules: an SMTP server and a webhook receiver on loopback, and the
scheduler and task worker as processes of their own on the test database."""

from __future__ import annotations

import datetime
import email
import email.policy
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.contrib.auth.models import User
from django.core.cache import cache as django_cache
from django.db import connection
from django.utils import timezone

from devtools.services import free_port
from reports.models import Report
from schedules.models import Alert, Run, Schedule, Subscription
from schedules.scheduler import claim_due
from tests.reports.conftest import make_panel, make_report
from tests.tpa.conftest import work

BASE_DIR = Path(__file__).resolve().parents[2]
BOUND = 90  # seconds: how long a test waits for a process, never a measure


@pytest.fixture(autouse=True)
def clean_cache() -> Iterator[None]:
    django_cache.clear()
    yield
    django_cache.clear()


class Inbox:
    """What the SMTP server received, as parsed messages."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.arrived = threading.Condition()
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.arrived:
            self.messages.append(message)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.arrived.notify_all()
        return "250 OK"

    def wait_for(self, count: int, seconds: float = BOUND) -> list[EmailMessage]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.messages) >= count, seconds):
                pytest.fail(f"{len(self.messages)} of {count} messages arrived within {seconds:g} s")
        return list(self.messages)


@pytest.fixture
def smtp(settings: Any) -> Iterator[Inbox]:
    """aiosmtpd on a free loopback port; Django's SMTP backend pointed at it."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": port, "timeout": 10},
        }
    }
    inbox.port = port
    yield inbox
    controller.stop()


@dataclass
class Hook:
    body: bytes
    headers: dict[str, str]
    payload: dict[str, Any]


@dataclass
class WebhookReceiver:
    """A real HTTP server that checks each call's signature and answers as told."""

    url: str = ""
    secret: str = ""
    calls: list[Hook] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # status codes to give first, then 204
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def verified(self, hook: Hook) -> bool:
        expected = hmac.new(
            self.secret.encode(), hook.headers["x-fanout-timestamp"].encode() + b"." + hook.body, hashlib.sha256
        ).hexdigest()
        return hmac.compare_digest(hook.headers["x-fanout-signature"], f"sha256={expected}")

    def wait_for(self, count: int, seconds: float = BOUND) -> list[Hook]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.calls) >= count, seconds):
                pytest.fail(f"{len(self.calls)} of {count} webhook calls arrived within {seconds:g} s")
        return list(self.calls)


@pytest.fixture
def webhook(settings: Any) -> Iterator[WebhookReceiver]:
    settings.SCHEDULES_WEBHOOK_PRIVATE_OK = True  # the receiver is on loopback
    receiver = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook = Hook(body, {key.lower(): value for key, value in self.headers.items()}, json.loads(body))
            with receiver.arrived:
                receiver.calls.append(hook)
                status = receiver.answers.pop(0) if receiver.answers else 204
                receiver.arrived.notify_all()
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/fanout"
    yield receiver
    server.shutdown()
    server.server_close()


def process_env(**extra: str) -> dict[str, str]:
    """The test's database (and Redis, when the run has one) for a manage.py child."""
    db = connection.settings_dict
    return {
        **os.environ,
        "DATABASE_URL": f"postgresql://{db['USER']}:@/{db['NAME']}?host={db['HOST']}",
        "SCHEDULES_RETRY_BASE_SECONDS": "0.2",
        **extra,
    }


class Processes:
    """manage.py children of one test, each with its log, all stopped at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.children: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = self.directory / f"{name}.log"
        with open(log, "ab") as output:
            process = subprocess.Popen(
                [sys.executable, "manage.py", *args],
                cwd=BASE_DIR,
                env=env or process_env(),
                stdout=output,
                stderr=output,
                start_new_session=True,
            )
        self.children.append((process, log))
        return process

    def worker(self, name: str = "worker", env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self.start(name, "db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.1", env=env)

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL, as a crash or the OOM killer would; no longer watched for exiting early."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        self.children = [child for child in self.children if child[0] is not process]

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for _, log in self.children if log.exists())

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + BOUND
        while not condition():
            for process, log in self.children:
                if process.poll() not in (None, 0):
                    pytest.fail(f"{log.stem} exited ({process.returncode}) before {what}:\n{self.logs()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {BOUND} s:\n{self.logs()}")
            time.sleep(0.1)

    def stop_all(self) -> None:
        for process, _ in self.children:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    running = Processes(tmp_path)
    yield running
    running.stop_all()


# Numbers a reader can find in the PDF text and the CSV: fixed, not random.
CLAIMS_SQL = "SELECT region, paid FROM (VALUES ('North', 1250), ('South', 980), ('East', 4321)) AS t(region, paid)"
TOTAL_SQL = "SELECT 6551 AS total_paid, 3 AS regions"


def make_claims_report(owner: User, **kwargs: Any) -> Report:
    """A report with a number panel and a table panel, both on the test Postgres."""
    report = make_report(owner, **kwargs)
    make_panel(report, TOTAL_SQL, title="Total paid", visualization="number", order=1)
    make_panel(report, CLAIMS_SQL, title="Paid by region", visualization="bar", order=2)
    return report


def make_schedule(report: Report, owner: User | None = None, **kwargs: Any) -> Schedule:
    kwargs.setdefault("kind", Schedule.Kind.INTERVAL)
    kwargs.setdefault("interval_minutes", 60)
    return Schedule.objects.create(report=report, owner=owner or report.owner, **kwargs)


def make_subscription(schedule: Schedule, owner: User, **kwargs: Any) -> Subscription:
    users = kwargs.pop("users", [])
    subscription = Subscription.objects.create(schedule=schedule, owner=owner, **kwargs)
    subscription.users.set(users)
    return subscription


def make_alert(schedule: Schedule, owner: User, **kwargs: Any) -> Alert:
    panel = kwargs.pop("panel", None) or schedule.report.panels.get(title="Total paid")
    kwargs.setdefault("column", "total_paid")
    return Alert.objects.create(schedule=schedule, owner=owner, panel=panel, **kwargs)


def due_now(schedule: Schedule) -> None:
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=timezone.now() - datetime.timedelta(seconds=1))


def run_due() -> list[Run]:
    """What one scheduler tick and the real task worker (in this process) make of due schedules."""
    runs = claim_due()
    work()
    return [Run.objects.get(pk=run.pk) for run in runs]


def work_until(condition: Callable[[], bool], what: str) -> None:
    """Run queued tasks, retries included (they wait for their backoff), until `condition`."""
    deadline = time.monotonic() + BOUND
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {BOUND} s")
        work()
        time.sleep(0.05)
