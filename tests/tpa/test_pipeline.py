from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync
from django.db.models import F

from project.sources import get_source
from tests.tpa.conftest import break_mapping, claims_file, counts, fix_mapping, work
from tpa.cache import master_data
from tpa.models import FileStatus, IngestionFile, PipelineRun, Tpa

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_runs_an_uploaded_file_through_bronze_silver_and_gold(make_tpa, owner_client) -> None:
    tpa = make_tpa()
    owner_client.post(f"/tpa/{tpa.code}/upload", {"file": claims_file(rows=30)})
    started = owner_client.post(f"/tpa/{tpa.code}/runs/")
    run = PipelineRun.objects.get(tpa=tpa)
    assert started.status_code == 303 and started["Location"] == f"/tpa/{tpa.code}/runs/{run.pk}/"
    page = owner_client.get(started["Location"]).content.decode()
    assert 'data-poll-url="' in page and "queued" in page

    work()

    status = owner_client.get(f"/api/tpa/tpas/{tpa.code}/runs/{run.pk}").json()
    assert status["status"] == "succeeded"
    assert [(s["name"], s["status"], s["rows"]) for s in status["steps"]] == [
        ("bronze", "succeeded", 30),
        ("silver", "succeeded", 30),
        ("gold", "succeeded", status["steps"][2]["rows"]),
    ]
    assert all(s["query_ids"] and s["duration_ms"] is not None for s in status["steps"])
    gold_rows = status["steps"][2]["rows"]
    assert counts(tpa.code) == {"bronze": 30, "silver": 30, "gold": gold_rows} and gold_rows >= 1
    assert IngestionFile.objects.get(tpa=tpa).status == FileStatus.TRANSFORMED
    # The finished run page stops polling and shows the rows; the TPA page previews each layer.
    fragment = owner_client.get(f"/tpa/{tpa.code}/runs/{run.pk}/steps").content.decode()
    assert "data-poll-url" not in fragment and "succeeded" in fragment
    detail = owner_client.get(f"/tpa/{tpa.code}/").content.decode()
    assert "ACM-0100000" in detail  # a silver claim id
    assert "SERVICE_MONTH" in detail  # the gold aggregates


def test_it_marks_the_failing_step_and_a_rerun_after_the_fix_duplicates_nothing(make_tpa, owner_client) -> None:
    clean = make_tpa()
    owner_client.post(f"/api/tpa/tpas/{clean.code}/files", {"file": claims_file(rows=25)})
    owner_client.post(f"/api/tpa/tpas/{clean.code}/runs")
    broken = make_tpa()
    owner_client.post(f"/api/tpa/tpas/{broken.code}/files", {"file": claims_file(rows=25)})
    break_mapping(broken)  # after the upload, whose check would refuse every date
    response = owner_client.post(f"/api/tpa/tpas/{broken.code}/runs")
    assert response.status_code == 202
    status_url = response.json()["status_url"]
    assert status_url == f"/api/tpa/tpas/{broken.code}/runs/{response.json()['id']}"

    work()

    failed = owner_client.get(status_url).json()
    steps = {s["name"]: s for s in failed["steps"]}
    assert failed["status"] == "failed"
    assert steps["bronze"]["status"] == "succeeded" and steps["bronze"]["rows"] == 25
    assert steps["silver"]["status"] == "failed"
    assert "Could not parse string" in steps["silver"]["error"]  # the database's own words
    # ... and where in the file: the first line whose date the changed mapping cannot read.
    assert "claims.csv: line 2, column service_date: '2026-" in steps["silver"]["error"]
    assert "cannot become SERVICE_DATE with the current mappings" in steps["silver"]["error"]
    assert steps["gold"]["status"] == "skipped"
    assert IngestionFile.objects.get(tpa=broken).status == FileStatus.FAILED
    assert counts(broken.code)["bronze"] == 25 and counts(broken.code)["silver"] == 0

    # A failed file waits for a person: no run takes it again by itself.
    assert "1 failed file waits for you" in owner_client.post(f"/api/tpa/tpas/{broken.code}/runs").json()["detail"]
    fix_mapping(broken)
    file = IngestionFile.objects.get(tpa=broken)
    assert owner_client.post(f"/api/tpa/tpas/{broken.code}/files/{file.pk}/retry").json()["status"] == "uploaded"
    rerun = owner_client.post(f"/api/tpa/tpas/{broken.code}/runs")
    assert rerun.status_code == 202
    work()

    assert owner_client.get(rerun.json()["status_url"]).json()["status"] == "succeeded"
    assert counts(broken.code) == counts(clean.code)
    assert counts(broken.code)["bronze"] == 25


def test_it_refuses_a_run_with_nothing_to_do(make_tpa, owner_client) -> None:
    tpa = make_tpa()
    response = owner_client.post(f"/api/tpa/tpas/{tpa.code}/runs")
    assert response.status_code == 409
    assert "no files waiting" in response.json()["detail"]


def test_it_applies_the_mappings_in_postgres_even_when_the_cache_holds_older_ones(make_tpa, owner_client) -> None:
    tpa = make_tpa()
    owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(rows=5)})
    cached = async_to_sync(master_data)(tpa.code)
    # A change the cache was not told about (a shell, a failed invalidation): the run must see it.
    break_mapping(tpa)
    Tpa.objects.filter(pk=tpa.pk).update(mappings_version=F("mappings_version") + 1)
    assert async_to_sync(master_data)(tpa.code) == cached  # the cache still has the old mappings

    run = owner_client.post(f"/api/tpa/tpas/{tpa.code}/runs").json()
    work()

    failed = owner_client.get(run["status_url"]).json()
    assert failed["status"] == "failed" and "Could not parse string" in failed["error"]
    recorded = PipelineRun.objects.get(pk=run["id"])
    assert recorded.mappings_version == cached.mappings_version + 1
    assert "MM/DD/YYYY" in next(iter(recorded.mapping_snapshot.values()))["select_list"]


def test_it_keeps_the_previous_gold_rows_when_the_refresh_fails(make_tpa, owner_client) -> None:
    tpa = make_tpa()
    owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(rows=20)})
    owner_client.post(f"/api/tpa/tpas/{tpa.code}/runs")
    work()
    before = gold_rows(tpa.code)
    assert before

    # Two claims whose billed amounts sum past NUMBER(18, 2): the gold insert fails after its delete.
    asyncio.run(
        get_source("snowflake").execute(
            "INSERT INTO SILVER.CLAIMS (TPA_CODE, CLAIM_ID, SERVICE_DATE, BILLED_AMOUNT)"
            " VALUES (%(tpa)s, 'HUGE-1', '2026-01-05', 9000000000000000),"
            " (%(tpa)s, 'HUGE-2', '2026-01-06', 9000000000000000)",
            {"tpa": tpa.code},
            read_only=False,
            timeout=30,
        )
    )
    owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(rows=5, seed=9, name="feb.csv")})
    run = owner_client.post(f"/api/tpa/tpas/{tpa.code}/runs").json()
    work()

    failed = owner_client.get(run["status_url"]).json()
    assert failed["status"] == "failed" and failed["error"].startswith("gold failed:")
    assert [s["status"] for s in failed["steps"]] == ["succeeded", "succeeded", "failed"]
    assert gold_rows(tpa.code) == before  # not empty, not half-refreshed
    assert IngestionFile.objects.get(tpa=tpa, original_name="feb.csv").status == FileStatus.FAILED


def gold_rows(code: str) -> list[tuple]:
    result = asyncio.run(
        get_source("snowflake").execute(
            "SELECT SERVICE_MONTH, CLAIM_COUNT, BILLED_AMOUNT, REFRESHED_AT FROM GOLD.CLAIMS_MONTHLY"
            " WHERE TPA_CODE = %(tpa)s ORDER BY 1",
            {"tpa": code},
            timeout=30,
        )
    )
    return result.rows
