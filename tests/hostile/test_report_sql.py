"""Report SQL built to write to the app's own database or read its secrets, on every path
(panel, filter options, admin, export, command): refused with a message that says why,
and nothing in auth_user changed. Everything runs on the real Postgres, as the read-only
role that `make test` creates."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client

from project.sources import QueryError, get_source
from reports.models import Filter, Panel, QueryLog, Report
from tests.reports.conftest import make_filter, make_panel, make_report, make_source

pytestmark = pytest.mark.django_db(transaction=True)

ESCALATE = "SELECT 1; COMMIT; UPDATE auth_user SET is_superuser = true, is_staff = true"
REFUSED = "Refused before it ran: Report queries are one statement only; this text has 3."


def privileged() -> list[tuple[str, bool, bool]]:
    return list(User.objects.order_by("username").values_list("username", "is_superuser", "is_staff"))


@pytest.fixture
def shared(owner: User, member: User, analysts: Group) -> Report:
    return make_report(owner, groups=[analysts], slug="attack")


def test_it_refuses_a_multi_statement_options_query_saved_through_the_orm(
    shared: Report, member_client: Client
) -> None:
    before = privileged()
    make_filter(shared, "status", Filter.Kind.CHOICE, options_sql=ESCALATE)
    make_panel(shared, "SELECT 1 AS one", title="One")

    page = member_client.get(f"/reports/{shared.slug}/")
    api = member_client.get(f"/api/reports/{shared.slug}/filters/status/options")

    assert page.status_code == 200
    assert f"Options unavailable: {REFUSED}" in b"".join(page).decode()  # the page streams
    assert api.status_code == 422
    assert api.json()["detail"] == REFUSED
    assert privileged() == before


def test_it_refuses_a_multi_statement_panel_saved_through_the_orm_on_every_path(
    shared: Report, member_client: Client
) -> None:
    before = privileged()
    panel = make_panel(shared, ESCALATE, title="Sneaky", cache_ttl=0)

    run = member_client.get(f"/api/reports/{shared.slug}/run")
    fragment = member_client.get(f"/reports/{shared.slug}/panels/{panel.pk}/")
    export = member_client.get(f"/reports/{shared.slug}/panels/{panel.pk}/export.csv")
    with pytest.raises(CommandError, match="1 of 1 panels failed"):
        call_command("run_report", shared.slug, stdout=(out := StringIO()))

    assert run.status_code == 200
    assert run.json()["panels"][0]["error"] == {"kind": "query", "message": REFUSED, "status": 422}
    # An analyst's page says it failed and gives the reference; the log has the refusal.
    found = re.search(r"Reference <code>(\w+)</code>", fragment.content.decode())
    assert found is not None
    reference = found.group(1)
    assert QueryLog.objects.get(reference=reference).error == REFUSED
    assert export.status_code == 422
    assert export.content.decode() == REFUSED
    assert REFUSED in out.getvalue()
    assert privileged() == before


def test_it_refuses_the_same_text_in_the_admin_preview(shared: Report, owner: User) -> None:
    owner.is_superuser = True
    owner.save()
    client = Client()
    client.force_login(owner)
    panel = make_panel(shared, ESCALATE, title="Sneaky")
    before = privileged()

    page = client.get(f"/admin/reports/panel/{panel.pk}/change/")

    assert page.status_code == 200
    assert REFUSED in page.content.decode()
    assert privileged() == before


def test_it_sends_every_report_statement_on_the_extended_protocol(db: None) -> None:
    """Below the parse-tree check: the source itself runs one statement, whatever the text."""
    before = privileged()
    with pytest.raises(QueryError, match="cannot insert multiple commands into a prepared statement"):
        async_to_sync(get_source("postgres").execute)(ESCALATE)
    assert privileged() == before


def test_it_runs_report_queries_as_a_role_that_cannot_write_or_read_the_apps_tables(owner: User) -> None:
    """Below both: the role. Asked for a writable transaction it still gets a read-only one (the
    role's default), and it has no grant on the app's tables at all."""
    source = get_source("postgres")
    with pytest.raises(QueryError, match="cannot execute UPDATE in a read-only transaction"):
        async_to_sync(source.execute)("UPDATE auth_user SET is_superuser = true", read_only=False)
    with pytest.raises(QueryError, match="permission denied for table auth_user"):
        async_to_sync(source.execute)("SELECT password FROM auth_user")
    assert not User.objects.filter(is_superuser=True).exists()


def test_it_never_shows_a_panel_the_apps_password_hashes(shared: Report, member_client: Client, owner: User) -> None:
    make_panel(shared, "SELECT username, password FROM auth_user", title="Hashes", cache_ttl=0)

    response = member_client.get(f"/api/reports/{shared.slug}/run")

    panel = response.json()["panels"][0]
    assert panel["error"]["message"] == "permission denied for table auth_user"
    assert panel["rows"] == []
    assert owner.password not in response.content.decode()


def test_it_refuses_to_save_write_or_multi_statement_sql_in_any_field(shared: Report) -> None:
    source = make_source("postgres")
    panel = Panel(report=shared, title="P", source=source, sql=ESCALATE)
    with pytest.raises(ValidationError) as panel_error:
        panel.full_clean()
    assert panel_error.value.message_dict["sql"] == ["Report queries are one statement only; this text has 3."]

    options = Filter(report=shared, name="status", label="Status", kind=Filter.Kind.CHOICE, options_source=source)
    for sql, message in [
        (ESCALATE, "Report queries are one statement only; this text has 3."),
        (
            "WITH x AS (UPDATE auth_user SET is_staff = true RETURNING 1) SELECT 1, 1",
            "UPDATE may not run inside a query",
        ),
        ("SELECT %(tpa)s, 1", "An options query takes no parameters: remove %(tpa)s."),
        ("SELECT 'open, 1", "a quote, string or comment is not closed"),
    ]:
        options.options_sql = sql
        with pytest.raises(ValidationError) as options_error:
            options.full_clean()
        assert any(message in text for text in options_error.value.message_dict["options_sql"]), sql
    assert not Panel.objects.exists() and not Filter.objects.exists()


def test_it_keeps_the_tables_and_the_users_as_they_were(shared: Report, member_client: Client) -> None:
    """After every attack above is tried at once, as the app sees the database."""
    before = privileged()
    make_filter(shared, "status", Filter.Kind.CHOICE, options_sql=ESCALATE)
    make_panel(shared, ESCALATE, title="Sneaky", cache_ttl=0)
    make_panel(shared, "DELETE FROM auth_user", title="Delete", cache_ttl=0)
    member_client.get(f"/reports/{shared.slug}/")
    member_client.get(f"/api/reports/{shared.slug}/run")
    assert privileged() == before
    assert "auth_user" in connection.introspection.table_names()
