from __future__ import annotations

import csv
import io
import zipfile

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
    assert response["Content-Disposition"] == 'attachment; filename="claims-big-numbers.csv"'
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
