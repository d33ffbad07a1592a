from __future__ import annotations

import csv
import datetime
import io
import zipfile

import openpyxl
import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from reports.models import QueryLog
from tests.reports.conftest import make_filter, make_panel

pytestmark = pytest.mark.django_db(transaction=True)

BIG = "SELECT n, 'row ' || n AS label FROM generate_series(1, %(rows)s::int) AS n"


@pytest.fixture
async def client(member) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(member)
    return client


async def chunks(response) -> list[bytes]:
    assert response.streaming
    return [chunk async for chunk in response.streaming_content]


async def test_it_exports_a_panel_as_csv_with_the_filters_applied(report, client):
    panel = await sync_to_async(
        lambda: (make_filter(report, "rows", "number", default="3"), make_panel(report, BIG, title="Big numbers"))[1]
    )()
    response = await client.get(f"/reports/claims/panels/{panel.pk}/export.csv?rows=4")
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="claims_big-numbers_4.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(await chunks(response)).decode())))
    assert rows == [["n", "label"], ["1", "row 1"], ["2", "row 2"], ["3", "row 3"], ["4", "row 4"]]


async def test_it_streams_a_large_csv_in_batches(report, client):
    panel = await sync_to_async(lambda: (make_filter(report, "rows", "number"), make_panel(report, BIG))[1])()
    response = await client.get(f"/reports/claims/panels/{panel.pk}/export.csv?rows=23000")
    parts = await chunks(response)
    assert len(parts) == 5  # 5,000 rows a batch, each sent as soon as it is read
    assert sum(part.count(b"\n") for part in parts) == 23001
    entry = await QueryLog.objects.aget(trigger="export")
    assert (entry.rows, entry.error_kind) == (23000, "")


async def test_it_exports_xlsx_that_spreadsheets_open(report, client):
    panel = await sync_to_async(lambda: (make_filter(report, "rows", "number"), make_panel(report, BIG))[1])()
    response = await client.get(f"/reports/claims/panels/{panel.pk}/export.xlsx?rows=1200")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.openxmlformats")
    book = zipfile.ZipFile(io.BytesIO(b"".join(await chunks(response))))
    sheet = book.read("xl/worksheets/sheet1.xml").decode()
    assert sheet.count("<row ") == 1201
    assert "row 1200" in sheet  # constant-memory mode writes strings inline


async def test_it_answers_with_the_database_error_instead_of_an_empty_file(report, client):
    panel = await sync_to_async(make_panel)(report, "SELECT * FROM no_such_table")
    response = await client.get(f"/reports/claims/panels/{panel.pk}/export.csv")
    assert response.status_code == 422
    assert 'relation "no_such_table" does not exist' in response.content.decode()


async def test_it_exports_from_snowflake_too(report, client):
    panel = await sync_to_async(make_panel)(report, "SELECT * FROM range(12000)", source="snowflake")
    response = await client.get(f"/reports/claims/panels/{panel.pk}/export.csv")
    lines = b"".join(await chunks(response)).decode().splitlines()
    assert len(lines) == 12001


EXACT = (
    "SELECT 1289679.60::numeric(12, 2) AS paid, 0.1::numeric + 0.2::numeric AS tenths, "
    "12345678901234567890.123456789::numeric AS wide, DATE '2026-11-30' AS day"
)


async def test_it_exports_the_databases_exact_decimals_to_csv(report, client):
    panel = await sync_to_async(make_panel)(report, EXACT, title="Exact")
    response = await client.get(f"/reports/claims/panels/{panel.pk}/export.csv")
    rows = list(csv.reader(io.StringIO(b"".join(await chunks(response)).decode())))
    assert rows == [
        ["paid", "tenths", "wide", "day"],
        ["1289679.60", "0.3", "12345678901234567890.123456789", "2026-11-30"],
    ]


async def test_it_exports_snowflake_sums_as_exact_decimals(report, client):
    sql = (
        "SELECT SUM(PAID) AS TOTAL FROM (SELECT CAST(1289679.30 AS NUMBER(12, 2)) AS PAID "
        "UNION ALL SELECT CAST(0.10 AS NUMBER(12, 2)) UNION ALL SELECT CAST(0.20 AS NUMBER(12, 2)))"
    )
    panel = await sync_to_async(make_panel)(report, sql, source="snowflake", title="Sum")
    response = await client.get(f"/reports/claims/panels/{panel.pk}/export.csv")
    assert b"".join(await chunks(response)).decode().splitlines() == ["TOTAL", "1289679.60"]


@pytest.mark.parametrize("source", ["postgres", "snowflake"])
async def test_it_writes_the_header_of_an_empty_result(report, client, source):
    sql = "SELECT 1 AS claim_id, 'x' AS tpa WHERE 1 = 0"
    panel = await sync_to_async(make_panel)(report, sql, source=source, title="Nothing")
    response = await client.get(f"/reports/claims/panels/{panel.pk}/export.csv")
    assert response.status_code == 200
    assert [line.lower() for line in b"".join(await chunks(response)).decode().splitlines()] == ["claim_id,tpa"]
    response = await client.get(f"/reports/claims/panels/{panel.pk}/export.xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(b"".join(await chunks(response)))).active
    assert [[str(cell.value).lower() for cell in row] for row in sheet.iter_rows()] == [["claim_id", "tpa"]]


async def test_it_gives_xlsx_cells_number_and_date_formats(report, client):
    columns = {"paid": {"label": "Paid", "format": "currency", "currency": "USD"}, "tenths": {"format": "percent"}}
    panel = await sync_to_async(make_panel)(report, EXACT, title="Exact", columns=columns)
    response = await client.get(f"/reports/claims/panels/{panel.pk}/export.xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(b"".join(await chunks(response)))).active
    header, row = list(sheet.iter_rows())
    assert [cell.value for cell in header] == ["Paid", "tenths", "wide", "day"]
    assert [cell.value for cell in row] == [
        1289679.6,
        0.3,
        "12345678901234567890.123456789",  # more digits than a spreadsheet number holds: text
        datetime.datetime(2026, 11, 30),
    ]
    assert [cell.number_format for cell in row] == ['"$"#,##0.00', "0%", "General", "yyyy-mm-dd"]


async def test_it_names_the_file_after_the_report_the_panel_and_the_filter_values(report, client):
    def setup():
        make_filter(report, "period", "date_range", default="-30d..today")
        make_filter(report, "tpa", "choice", options_sql="SELECT 'ACME', 'Acme'")
        return make_panel(
            report,
            "SELECT %(tpa)s::text AS tpa, %(period_from)s::date AS since, %(period_to)s::date AS until",
            title="Paid by month",
        )

    panel = await sync_to_async(setup)()
    query = "period_from=2026-01-01&period_to=2026-03-31&tpa=ACME"
    response = await client.get(f"/reports/claims/panels/{panel.pk}/export.xlsx?{query}")
    assert response["Content-Disposition"] == (
        'attachment; filename="claims_paid-by-month_acme_2026-01-01_2026-03-31.xlsx"'
    )


async def test_it_stops_an_export_at_the_panels_deadline_and_says_the_file_is_incomplete(report, client):
    # The first 5,000 rows come at once; the next batch waits longer than the panel may take.
    slow = "SELECT n, CASE WHEN n = 6000 THEN pg_sleep(10) END AS pause FROM generate_series(1, 7000) AS n"
    panel = await sync_to_async(make_panel)(report, slow, timeout=1)
    response = await client.get(f"/reports/claims/panels/{panel.pk}/export.csv")
    assert response.status_code == 200
    lines = b"".join(await chunks(response)).decode().splitlines()
    assert len(lines) == 1 + 5000 + 1
    assert lines[-1] == "# Export cut off: timed out after 1 s. This file is incomplete (5000 rows)."
    entry = await QueryLog.objects.aget(trigger="export")
    assert (entry.rows, entry.error_kind) == (5000, "timeout")


async def test_it_says_in_the_spreadsheet_that_an_export_was_cut_off(report, client):
    slow = "SELECT n, CASE WHEN n = 6000 THEN pg_sleep(10) END AS pause FROM generate_series(1, 7000) AS n"
    panel = await sync_to_async(make_panel)(report, slow, timeout=1)
    response = await client.get(f"/reports/claims/panels/{panel.pk}/export.xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(b"".join(await chunks(response)))).active
    assert sheet.max_row == 1 + 5000 + 1
    assert (
        sheet.cell(sheet.max_row, 1).value
        == "Export cut off: timed out after 1 s. This file is incomplete (5000 rows)."
    )


async def test_it_limits_how_often_a_user_exports(report, client, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "export": "2/m"}
    panel = await sync_to_async(make_panel)(report, "SELECT 1 AS one")
    for _ in range(2):
        assert (await client.get(f"/reports/claims/panels/{panel.pk}/export.csv")).status_code == 200
    refused = await client.get(f"/reports/claims/panels/{panel.pk}/export.csv")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
