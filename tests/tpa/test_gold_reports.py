"""The pipeline and the reports meet: a file's claims reach the claims report through gold."""

from __future__ import annotations

import asyncio
import decimal
import io
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from project.sources import get_source
from reports.filters import ListMapping
from reports.models import QueryLog
from reports.runner import PanelRun
from reports.services import open_report, run_panels
from tests.tpa.conftest import claims_file, file_totals, work
from tpa.models import FileStatus, IngestionFile

pytestmark = pytest.mark.django_db(transaction=True)

# The demo files' service dates (tpa.demo.claims_csv) fall in 2026-01-01 + 180 days.
PERIOD = {"period_from": "2026-01-01", "period_to": "2026-12-31"}


def claims_report(fresh: bool, **params: str) -> dict[str, PanelRun]:
    """The demo claims report's panels, by title, as `manage.py run_report` would run them."""

    async def run() -> list[PanelRun]:
        prepared = await open_report(None, "claims-overview", ListMapping({**PERIOD, **params}))
        return await run_panels(prepared, None, trigger=QueryLog.Trigger.COMMAND, fresh=fresh)

    runs = asyncio.run(run())
    assert all(r.error is None for r in runs), [r.error for r in runs if r.error]
    return {r.title: r for r in runs}


def number(run: PanelRun) -> Any:
    return run.rows[0][0]


def upload_and_run(client: Any, code: str, data: io.BytesIO) -> dict[str, Any]:
    client.post(f"/api/tpa/tpas/{code}/files", {"file": data})
    run = client.post(f"/api/tpa/tpas/{code}/runs").json()
    work()
    return dict(client.get(run["status_url"]).json())


@pytest.fixture
def demo_reports(owner) -> None:
    call_command("load_demo_reports", stdout=StringIO())


def test_it_shows_a_run_files_claims_in_the_claims_report(make_tpa, owner_client, demo_reports) -> None:
    tpa = make_tpa()
    data = claims_file(rows=17, seed=4)
    claims, paid = file_totals(data)
    assert upload_and_run(owner_client, tpa.code, data)["status"] == "succeeded"

    panels = claims_report(fresh=True, tpa=tpa.code)
    assert number(panels["Claims"]) == claims
    assert decimal.Decimal(str(number(panels["Total paid"]))) == paid
    assert [row[0] for row in panels["Paid by TPA"].rows] == [tpa.code]
    assert {row[1] for row in panels["Largest claims"].rows} == {tpa.code}


def test_it_shows_the_numbers_through_the_json_api(make_tpa, owner_client, demo_reports) -> None:
    tpa = make_tpa()
    data = claims_file(rows=9, seed=6)
    claims, _ = file_totals(data)
    upload_and_run(owner_client, tpa.code, data)

    body = owner_client.get("/api/reports/claims-overview/run", {"fresh": "1", "tpa": tpa.code, **PERIOD}).json()
    by_title = {panel["title"]: panel for panel in body["panels"]}
    assert by_title["Claims"]["rows"] == [[claims]]


def test_it_shows_a_new_run_on_the_next_view_without_asking_for_fresh_results(
    make_tpa, owner_client, demo_reports
) -> None:
    """Cached panels and filter options from before a run never hide its claims afterwards."""
    tpa = make_tpa()
    first = claims_file(rows=10, seed=2)
    upload_and_run(owner_client, tpa.code, first)
    before = claims_report(fresh=False, tpa=tpa.code)  # cached now, with the TPA filter's options
    assert number(before["Claims"]) == 10

    second = claims_file(rows=6, seed=3, name="feb.csv")
    assert upload_and_run(owner_client, tpa.code, second)["status"] == "succeeded"

    after = claims_report(fresh=False, tpa=tpa.code)
    assert not after["Claims"].cache_hit
    assert number(after["Claims"]) == 16


def test_it_keeps_the_reports_claims_when_a_gold_refresh_fails(make_tpa, owner_client, demo_reports) -> None:
    tpa = make_tpa()
    upload_and_run(owner_client, tpa.code, claims_file(rows=8, seed=5))
    assert number(claims_report(fresh=True, tpa=tpa.code)["Claims"]) == 8

    # Two claims whose billed amounts sum past NUMBER(18, 2): the aggregates' insert fails
    # after the claims were deleted and inserted again, in the same transaction.
    asyncio.run(
        get_source("snowflake").execute(
            "INSERT INTO SILVER.CLAIMS (TPA_CODE, CLAIM_ID, SERVICE_DATE, BILLED_AMOUNT, PAID_AMOUNT)"
            " VALUES (%(tpa)s, 'HUGE-1', '2026-01-05', 9000000000000000, 1),"
            " (%(tpa)s, 'HUGE-2', '2026-01-06', 9000000000000000, 1)",
            {"tpa": tpa.code},
            read_only=False,
            timeout=30,
        )
    )
    failed = upload_and_run(owner_client, tpa.code, claims_file(rows=5, seed=9, name="feb.csv"))

    assert failed["status"] == "failed" and failed["error"].startswith("gold failed:")
    assert IngestionFile.objects.get(tpa=tpa, original_name="feb.csv").status == FileStatus.FAILED
    assert number(claims_report(fresh=True, tpa=tpa.code)["Claims"]) == 8  # not 0, not 15
