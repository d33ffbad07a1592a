"""Filter values, file names and URLs built to inject SQL or escape paths: they are bound,
refused or cleaned, with a message that says why, and every table is still there afterwards."""

from __future__ import annotations

import asyncio
import re

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client

from reports.models import Filter, Report
from tests.reports.conftest import make_filter, make_panel, make_report
from tests.tpa.conftest import claims_file, counts, staged
from tpa.models import IngestionFile, Tpa

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = [
    "'; DROP TABLE reports_report; --",
    "1 OR 1=1",
    "a'b\"c@d/e",
    "%(other)s %s %% {0}",
    "../../etc/passwd",
    "\u202eevil\u200b",
    "tab\there\r\nnewline",
]


def tables_exist() -> None:
    names = set(connection.introspection.table_names())
    assert {"reports_report", "reports_panel", "tpa_tpa", "tpa_ingestionfile", "auth_user"} <= names


@pytest.fixture
def report(owner: User, analysts: Group) -> Report:
    report = make_report(owner, groups=[analysts], slug="hostile")
    make_filter(report, "q", Filter.Kind.TEXT)
    make_filter(report, "n", Filter.Kind.NUMBER)
    make_filter(report, "day", Filter.Kind.DATE)
    make_filter(report, "status", Filter.Kind.CHOICE, options_sql="SELECT 'PAID', 'Paid'")
    make_panel(
        report,
        # The report role cannot read the app's tables; tables_exist() looks as the app.
        "SELECT %(q)s::text AS echo, 1 AS one",
        title="Echo",
        cache_ttl=0,
    )
    return report


@pytest.mark.parametrize("value", HOSTILE)
def test_it_binds_a_hostile_text_filter_value_on_postgres(report: Report, member_client: Client, value: str) -> None:
    response = member_client.get(f"/api/reports/{report.slug}/run", {"q": value})
    assert response.status_code == 200, response.content
    panel = response.json()["panels"][0]
    assert panel["error"] is None
    assert panel["rows"] == [[value.strip(), 1]]  # the value itself, as data
    tables_exist()


def test_it_refuses_a_nul_character_in_a_filter_with_a_clear_message(report: Report, member_client: Client) -> None:
    response = member_client.get(f"/api/reports/{report.slug}/run", {"q": "a\x00b"})
    assert response.status_code in (200, 400)
    body = response.json()
    message = body.get("errors", {}).get("q") or body["panels"][0]["error"]["message"]
    assert "NUL" in message or "control" in message
    tables_exist()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("n", "1; DROP TABLE reports_report", "is not a number"),
        ("n", "1e999", "is not a number"),
        ("day", "2026-01-01'; DROP TABLE x; --", "is not a date"),
        ("status", "PAID' OR '1'='1", "Not one of the options"),
    ],
)
def test_it_refuses_a_typed_filter_value_that_is_not_of_its_type(
    report: Report, member_client: Client, name: str, value: str, message: str
) -> None:
    response = member_client.get(f"/api/reports/{report.slug}/run", {name: value})
    assert response.status_code == 400
    assert message in response.json()["errors"][name]
    page = member_client.get(f"/reports/{report.slug}/", {name: value})
    assert page.status_code == 400 and message in page.content.decode()
    tables_exist()


def test_it_binds_a_hostile_value_on_snowflake(owner: User, analysts: Group, member_client: Client, deployed) -> None:
    report = make_report(owner, groups=[analysts], slug="hostile-snowflake")
    make_filter(report, "q", Filter.Kind.TEXT)
    make_panel(
        report,
        "SELECT %(q)s AS echo, (SELECT COUNT(*) FROM BRONZE.RAW_ROWS) >= 0 AS bronze_ok",
        source="snowflake",
        title="Echo",
        cache_ttl=0,
    )
    value = "x'); DROP TABLE BRONZE.RAW_ROWS; --"
    response = member_client.get(f"/api/reports/{report.slug}/run", {"q": value})
    assert response.status_code == 200, response.content
    assert response.json()["panels"][0]["rows"] == [[value, True]]
    assert set(counts("NOSUCHTPA")) == {"bronze", "silver", "gold"}  # the pipeline's tables answer


SAFE_PATH = re.compile(r"^[a-z0-9_]+/\d{4}/\d{2}/\d{2}/[A-Za-z0-9][A-Za-z0-9_-]*\.csv$")


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "../../etc/claims.csv",
        "..\\..\\windows\\claims.csv",
        "a'b\"c@d/e.csv",
        "..claims.csv",
        "claims\x00.csv",
        "claims\r\n.csv",
        "claims\x1b[31m.csv",
        "'; DROP TABLE x; --",
    ],
)
def test_it_refuses_or_cleans_a_file_name_that_escapes_or_hides(make_tpa, owner_client: Client, name: str) -> None:
    """Django's multipart parser already cuts a name to its last path part; what reaches the app
    is refused with its reason, or staged under a name of safe characters in the TPA's folder."""
    tpa = make_tpa()
    response = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(name=name)})
    if response.status_code == 400:
        detail = response.json()["detail"]
        assert any(reason in detail for reason in ("Only .csv files", "'..'", "slash", "control characters")), detail
        assert not IngestionFile.objects.filter(tpa=tpa).exists() and staged(tpa.code) == []
    else:
        assert response.status_code == 201, response.content
        path = response.json()["stage_path"]
        assert SAFE_PATH.match(path) and path.startswith(f"{tpa.code.lower()}/"), path
        assert staged(tpa.code) == [path]
        original = IngestionFile.objects.get(tpa=tpa).original_name
        assert "/" not in original and not any(ord(c) < 32 for c in original), original
    tables_exist()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../../etc/passwd.csv", "contains a slash"),
        ("..\\..\\claims.csv", "contains a slash"),
        ("..claims.csv", "contains '..'"),
        ("claims\x00.csv", "control characters"),
        ("claims\x1b[31m.csv", "control characters"),
    ],
)
def test_it_refuses_a_hostile_name_given_on_the_command_line(name: str, message: str) -> None:
    """`manage.py tpa_upload` takes the name as given: no multipart parser cleaned it first."""
    from tpa.staging import Refused, safe_name

    with pytest.raises(Refused, match=re.escape(message)):
        safe_name(name)


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("'; DROP TABLE x; --.csv", "DROP_TABLE_x.csv"),
        ("a'b\"c@d.csv", "a_b_c_d.csv"),
        ("résumé %(x)s $$.csv", "resume_x_s.csv"),
    ],
)
def test_it_cleans_a_file_name_to_safe_characters_inside_the_tpas_folder(
    make_tpa, owner_client: Client, name: str, kept: str
) -> None:
    tpa = make_tpa()
    response = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(name=name)})
    assert response.status_code == 201, response.content
    path = response.json()["stage_path"]
    assert path.startswith(f"{tpa.code.lower()}/") and path.endswith(f"/{kept}")
    assert staged(tpa.code) == [path]
    assert IngestionFile.objects.get(tpa=tpa).original_name == name
    assert asyncio.run(_bronze_exists())


async def _bronze_exists() -> bool:
    from tpa.snowflake import count_rows

    return "bronze" in await count_rows("NOSUCHTPA")


@pytest.mark.parametrize(
    "url",
    [
        "/tpa/ACME'--/",
        "/tpa/..%2F..%2Fetc%2Fpasswd/",
        "/api/tpa/tpas/ACME%27%3B%20DROP%20TABLE%20tpa_tpa%3B--/files",
        "/api/tpa/tpas/ACME/files?status=x'%20OR%20'1'='1",
        "/api/reports/..%2Fadmin",
        "/reports/%27%3B--/",
    ],
)
def test_it_answers_hostile_urls_with_a_refusal_and_no_data(make_tpa, owner_client: Client, url: str) -> None:
    tpa = make_tpa(code="ACME")
    owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file()})
    response = owner_client.get(url)
    if response.status_code == 200:  # the status filter: bound by the ORM, it matches nothing
        assert response.json() == []
    else:
        assert response.status_code in (400, 404)
    assert Tpa.objects.filter(code="ACME").exists() and IngestionFile.objects.count() == 1
    tables_exist()
