"""schemathesis against the API's own OpenAPI document: no 500s, no answers that break it.

Run in-process against uvicorn in a thread, authenticated as staff by a bearer token that a
real introspection endpoint on loopback vouches for; bounded examples per operation.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import Group, User
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from requests.structures import CaseInsensitiveDict
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance, status_code_conformance

from reports.models import Filter
from tests.hostile.conftest import LiveServer
from tests.reports.conftest import make_filter, make_panel, make_report
from tpa import demo
from tpa.models import IngestionFile, Tpa
from tpa.runs import start_run

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = 12


def failures_of(live_app: LiveServer, token: str, mode: GenerationMode, **validate: Any) -> list[str]:
    """Every operation's failure, described (the first per operation; no shrinking)."""
    schema = schemathesis.openapi.from_url(f"{live_app.url}/api/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    found: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid document fails here, as it should

        @given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis_settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        def run(case: schemathesis.Case) -> None:
            case.headers = CaseInsensitiveDict(case.headers or {})
            case.headers.update(headers)
            case.call_and_validate(base_url=live_app.url, **validate)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis raises a FailureGroup
            found.append(f"{operation.label}: {exc}")
    return found


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_it_answers_generated_requests_without_errors_or_broken_responses(
    live_app: LiveServer, staff_token: str, mode: GenerationMode
) -> None:
    # Whether each status is documented is the next test's question; the token is always the
    # staff one here (the outsider's view is tests/hostile/test_access.py).
    found = failures_of(
        live_app, staff_token, mode, excluded_checks=[status_code_conformance, positive_data_acceptance, ignored_auth]
    )
    assert not found, "\n\n".join(found)


def test_it_documents_every_status_it_answers(live_app: LiveServer, staff_token: str) -> None:
    found = failures_of(live_app, staff_token, GenerationMode.POSITIVE, checks=[status_code_conformance])
    assert not found, "\n\n".join(found)


@pytest.fixture
def objects(owner: User, analysts: Group, settings) -> dict[str, object]:
    """Real objects for the path parameters, so generated requests reach past the 404s."""
    settings.TPA_SYNC_MAX_WAIT = 0.5  # runs/sync waits at most this, whatever `timeout` is generated
    report = make_report(owner, groups=[analysts], slug="claims")
    options = "SELECT 'PAID', 'Paid' UNION ALL SELECT 'DENIED', 'Denied'"
    make_filter(report, "status", Filter.Kind.CHOICE, options_sql=options)
    make_filter(report, "min_paid", Filter.Kind.NUMBER)
    panel = make_panel(report, "SELECT %(status)s::text AS status, %(min_paid)s::numeric AS min_paid, 1 AS n")
    tpa = Tpa.objects.create(code="ACME", name="Acme", target_schema=demo.claims_schema())
    IngestionFile.objects.create(
        tpa=tpa,
        original_name="jan.csv",
        stage_path="acme/2026/01/01/jan.csv",
        size=10,
        sha256="0" * 64,
        row_count=1,
        columns=["claim_id"],
    )
    run = asyncio.run(start_run(tpa, owner, enqueue=False))
    return {
        "slug": report.slug,
        "panel_id": panel.pk,
        "name": "status",
        "code": tpa.code,
        "run_id": run.pk,
        "namespace": "tpa-list",
    }


def test_it_answers_generated_requests_on_real_objects(
    live_app: LiveServer, staff_token: str, objects: dict[str, object]
) -> None:
    schema = schemathesis.openapi.from_url(f"{live_app.url}/api/openapi.json")
    headers = {"Authorization": f"Bearer {staff_token}"}
    found: list[str] = []
    reached: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid document fails here, as it should
        names = [parameter.name for parameter in operation.path_parameters]
        if not names or not all(name in objects for name in names):
            continue
        reached.append(operation.label)

        @given(case=operation.as_strategy(path_parameters={name: objects[name] for name in names}))
        @hypothesis_settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        def run(case: schemathesis.Case) -> None:
            case.headers = CaseInsensitiveDict(case.headers or {})
            case.headers.update(headers)
            case.call_and_validate(
                base_url=live_app.url, excluded_checks=[status_code_conformance, positive_data_acceptance, ignored_auth]
            )

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:
            found.append(f"{operation.label}: {exc}")
    assert len(reached) >= 10, reached  # every operation with an object in its path
    assert not found, "\n\n".join(found)
