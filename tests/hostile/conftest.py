"""Shared pieces of the hostile-input tests: the app served by uvicorn in a thread, and a
bearer token for the staff user through a real introspection endpoint."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from django.contrib.auth.models import Permission, User
from django.urls import URLResolver, get_resolver, reverse

from devtools.services import free_port
from tests.project.test_tokens import IntrospectionServer, active, link


class LiveServer:
    """The ASGI app on uvicorn, in a thread of the test process (so it sees the test database)."""

    def __init__(self) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            "project.asgi:application", host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture
def live_app(transactional_db: None) -> Iterator[LiveServer]:
    server = LiveServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def staff_token(owner: User, settings) -> Iterator[str]:
    """A bearer token that an introspection server on loopback says belongs to the owner (staff,
    with the cache control permission)."""
    owner.user_permissions.add(Permission.objects.get(codename="control_cache"))
    server = IntrospectionServer()
    server.claims["staff-token"] = active(owner.username)
    link(owner)  # a staff account is reached by token only through an explicit link
    settings.TOKEN_INTROSPECTION_URL = server.url
    yield "staff-token"
    server.stop()


# The TPA fixtures of tests/tpa (deployed once on the session's emulator).
from tests.tpa.conftest import deployed, make_tpa  # noqa: E402, F401

# --- every URL of the project, with real objects in it -----------------------------------------

SECRET = "zz-secret-7f3a"  # in every object's title/name: a page that shows it has leaked data


@dataclass
class Route:
    name: str  # namespaced, or the pattern itself when it has no name
    url: str
    has_object: bool


@pytest.fixture
def secret_objects(owner: User, db: None) -> dict[str, Any]:
    """One of each object behind a URL, owned by the owner and shared with nobody."""
    from django.contrib.contenttypes.models import ContentType

    from reports.models import DataSource, Filter, QueryLog, Report
    from tests.reports.conftest import make_filter, make_panel, make_report
    from tpa import demo
    from tpa.models import FieldMapping, IngestionFile, PipelineRun, Tpa

    report = make_report(owner, slug="secret-report", title=f"Report {SECRET}")
    make_filter(report, "status", Filter.Kind.CHOICE, options_sql=f"SELECT '{SECRET}', 'x'")
    panel = make_panel(report, f"SELECT '{SECRET}' AS secret", title=f"Panel {SECRET}")
    schema = demo.claims_schema()
    tpa = Tpa.objects.create(code="SECRET", name=f"Tpa {SECRET}", target_schema=schema)
    # Master data lists mappings: this one's source column is the secret.
    FieldMapping.objects.create(tpa=tpa, target_schema=schema, source_column=SECRET, target_column="CLAIM_ID")
    file = IngestionFile.objects.create(
        tpa=tpa,
        original_name=f"{SECRET}.csv",
        stage_path="secret/2026/01/01/s.csv",
        size=1,
        sha256="1" * 64,
        columns=["claim_id"],
    )
    run = PipelineRun.objects.create(tpa=tpa, error=f"run {SECRET}")
    run.files.add(file)
    log = QueryLog.objects.create(
        report=report, panel=panel, trigger="page", source="postgres", duration_ms=1, error=SECRET
    )
    schedule, schedule_run = schedule_objects(report, panel, owner)
    by_model = {
        "schedules_schedule": schedule.pk,
        "schedules_run": schedule_run.pk,
        "schedules_delivery": schedule_run.deliveries.get().pk,
        "reports_datasource": DataSource.objects.get(name="postgres").pk,
        "reports_report": report.pk,
        "reports_panel": panel.pk,
        "reports_querylog": log.pk,
        "tpa_targetschema": schema.pk,
        "tpa_tpa": tpa.pk,
        "tpa_ingestionfile": file.pk,
        "tpa_pipelinerun": run.pk,
        "auth_user": owner.pk,
    }
    return {
        "slug": report.slug,
        "panel_id": panel.pk,
        "fmt": "csv",
        "name": "status",
        "code": tpa.code,
        "run_id": run.pk,
        "file_id": file.pk,
        "namespace": "tpa-list",
        "action": "invalidate",
        "query_id": "0" * 32,
        "app_label": "tpa",
        "content_type_id": ContentType.objects.get_for_model(Report).pk,
        "id": owner.pk,
        "schedule_id": schedule.pk,
        "kind": "schedule",
        "item_id": schedule.pk,
        "by_model": by_model,
    }


def schedule_objects(report: Any, panel: Any, owner: User) -> tuple[Any, Any]:
    """A schedule with a subscription and an alert, and a run (a PDF) with a delivery."""
    from schedules.models import Alert, Delivery, Run, Schedule, Subscription

    schedule = Schedule.objects.create(
        report=report, owner=owner, name=f"Schedule {SECRET}", kind="interval", interval_minutes=60
    )
    Subscription.objects.create(schedule=schedule, owner=owner, addresses=f"{SECRET}@example.com")
    Alert.objects.create(schedule=schedule, owner=owner, panel=panel, column=SECRET, threshold=1)
    run = Run.objects.create(
        schedule=schedule, report=report, trigger="pdf", requested_by=owner, error=f"run {SECRET}", pdf=SECRET.encode()
    )
    Delivery.objects.create(run=run, kind="email", purpose="subscription", recipients=f"{SECRET}@example.com")
    return schedule, run


def routes(samples: dict[str, Any]) -> list[Route]:
    """Every named URL of the project, its parameters filled from `samples`. A URL with a
    parameter that `samples` does not know fails here, so a new URL cannot be forgotten."""
    found: list[Route] = []

    def walk(patterns: list[Any], namespace: tuple[str, ...]) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, namespace + ((pattern.namespace,) if pattern.namespace else ()))
                continue
            if pattern.name is None:
                continue  # admin's redirects and catch-all: they lead to the named views below
            keys = list(getattr(pattern.pattern, "converters", {})) or list(pattern.pattern.regex.groupindex)
            name = ":".join((*namespace, pattern.name))
            kwargs = {}
            for key in keys:
                if key == "object_id":
                    model = pattern.name.rsplit("_", 1)[0]
                    kwargs[key] = samples["by_model"].get(model, 1)
                elif key in samples:
                    kwargs[key] = samples[key]
                else:
                    raise AssertionError(f"{name} takes {key!r}: add a sample for it to tests/hostile/conftest.py")
            found.append(Route(name, reverse(name, kwargs=kwargs), bool(keys)))

    walk(get_resolver().url_patterns, ())
    return found


@dataclass
class Operation:
    method: str
    path: str  # the template, as the OpenAPI document has it: /api/tpa/tpas/{code}/files
    has_object: bool

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path}"


def api_operations() -> list[Operation]:
    """Every operation of the API's own OpenAPI document (built without a request, so it can
    parametrize tests at collection time); each URL is filled in by `fill`."""
    from project.api import api

    found = []
    for path, operations in api.get_openapi_schema()["paths"].items():
        for method, operation in operations.items():
            names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
            found.append(Operation(method, path, bool(names)))
    return found


def fill(operation: Operation, samples: dict[str, Any]) -> str:
    """The operation's URL with each path parameter taken from `samples` (fails for a new one)."""
    url = operation.path
    for name in re.findall(r"{(\w+)}", operation.path):
        if name not in samples:
            raise AssertionError(f"{operation} takes {name!r}: add a sample for it to tests/hostile/conftest.py")
        url = url.replace(f"{{{name}}}", str(samples[name]))
    return url
