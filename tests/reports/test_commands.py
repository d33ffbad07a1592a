from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from reports.models import Filter, Panel, QueryLog, Report
from tests.loops import DEADLINE, backends, call_with_deadline, keep_pool_warnings_out_of
from tests.reports.conftest import make_filter, make_panel

pytestmark = pytest.mark.django_db(transaction=True)

# The command path many times in one process: each call runs on an event loop of its own,
# and a pool or task that outlived its loop once hung `make test` (issue 9).
ITERATIONS = 200


def test_it_installs_the_demo_reports_idempotently(owner):
    call_command("load_demo_reports", stdout=StringIO())
    counts = (Report.objects.count(), Panel.objects.count(), Filter.objects.count())
    panel_ids = set(Panel.objects.values_list("pk", flat=True))
    call_command("load_demo_reports", stdout=StringIO())
    assert (Report.objects.count(), Panel.objects.count(), Filter.objects.count()) == counts
    assert set(Panel.objects.values_list("pk", flat=True)) == panel_ids
    assert Report.objects.get(slug="claims-overview").panels.count() >= 8


def test_it_runs_the_demo_claims_report_on_the_warehouse(owner):
    # The claims report reads the TPA pipeline's gold layer, which the demo TPAs' runs fill.
    call_command("snowflake_deploy", stdout=StringIO())
    call_command("load_demo_tpas", "--rows", "12", stdout=StringIO())
    again = StringIO()  # the next `make demo`: the files stay, gold is rebuilt from silver
    call_command("load_demo_tpas", "--rows", "12", stdout=again)
    assert again.getvalue().count("gold refreshed") == 3, again.getvalue()
    call_command("load_demo_reports", stdout=StringIO())
    out = StringIO()
    call_command("run_report", "claims-overview", "--format", "json", "--param", "tpa=ACME", stdout=out)
    body = json.loads(out.getvalue())
    assert body["parameters"]["tpa"] == "ACME"
    assert all(panel["error"] is None for panel in body["panels"]), body
    by_title = {panel["title"]: panel for panel in body["panels"]}
    assert [row[0] for row in by_title["Paid by TPA"]["rows"]] == ["ACME"]


def test_it_prints_each_panel_with_its_timing_and_fails_when_one_fails(report):
    make_filter(report, "n", "number", default="1")
    make_panel(report, "SELECT %(n)s::int + 1 AS next", title="Next")
    make_panel(report, "SELECT * FROM no_such_table", title="Broken")
    out = StringIO()
    with pytest.raises(CommandError, match="1 of 3 panels failed"):
        call_command("run_report", "claims", "--param", "n=41", stdout=out)
    text = out.getvalue()
    assert "Next  [" in text and "42" in text
    assert 'relation "no_such_table" does not exist' in text
    assert QueryLog.objects.filter(trigger="command").count() == 3


def test_it_prints_json_as_one_compact_document(report):
    out = StringIO()
    call_command("run_report", "claims", "--format", "json", stdout=out)
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("}\n")  # one line, not one token per line
    assert json.loads(text)["panels"][0]["rows"] == [["ok", 42]]


def test_it_stops_quietly_when_its_reader_goes_away(report):
    """`manage.py run_report ... | head -c 10`: no BrokenPipeError traceback."""
    db = connection.settings_dict
    url = f"postgresql://{db['USER']}:{db['PASSWORD']}@/{db['NAME']}?host={db['HOST']}"
    command = [sys.executable, "manage.py", "run_report", "claims", "--format", "json"]
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "DATABASE_URL": url}
    )
    assert child.stdout is not None
    child.stdout.close()  # the reader is gone before the command writes a byte
    _, stderr = child.communicate(timeout=DEADLINE)
    assert "Traceback" not in stderr.decode() and "BrokenPipe" not in stderr.decode(), stderr.decode()
    assert child.returncode == 1


def test_it_refuses_bad_filter_values_before_running(report):
    make_filter(report, "n", "number")
    with pytest.raises(CommandError, match="is not a number"):
        call_command("run_report", "claims", "--param", "n=many", stdout=StringIO())
    assert not QueryLog.objects.exists()


def test_it_prints_csv(report):
    out = StringIO()
    call_command("run_report", "claims", "--format", "csv", stdout=out)
    assert "status,answer\r\nok,42" in out.getvalue()


def test_it_prints_the_databases_exact_numbers_as_csv(report):
    # The demo's "Paid by month" on the warehouse: a SUM of NUMBER(12, 2) once printed 1289679.5999999999.
    sql = (
        "SELECT SUM(PAID) AS PAID, 1289679.6::float AS RATIO FROM (SELECT CAST(1289679.30 AS NUMBER(12, 2)) AS PAID "
        "UNION ALL SELECT CAST(0.10 AS NUMBER(12, 2)) UNION ALL SELECT CAST(0.20 AS NUMBER(12, 2)))"
    )
    make_panel(report, sql, source="snowflake", title="Sum")
    out = StringIO()
    call_command("run_report", "claims", "--format", "csv", stdout=out)
    assert "PAID,RATIO\r\n1289679.60,1289679.6\r\n" in out.getvalue()


def test_it_runs_every_async_command_many_times_in_one_process(report, caplog) -> None:
    keep_pool_warnings_out_of(caplog)
    make_filter(report, "n", "number", default="1")
    make_panel(report, "SELECT %(n)s::int + 1 AS next", title="Next")
    make_panel(report, "SELECT * FROM no_such_table", title="Broken")
    warm = 0

    def run_report() -> str:
        out = StringIO()
        with pytest.raises(CommandError, match="1 of 3 panels failed"):
            call_command("run_report", "claims", "--param", "n=41", "--fresh", stdout=out)
        return out.getvalue()

    def cache_warm() -> str:
        out = StringIO()
        call_command("cache_warm", stdout=out)
        return out.getvalue()

    def check_sources() -> str:
        out = StringIO()
        call_command("check_sources", "postgres", stdout=out)
        return out.getvalue()

    for iteration in range(ITERATIONS):
        text = call_with_deadline(run_report, DEADLINE, f"run_report #{iteration}")
        assert "42" in text and 'relation "no_such_table" does not exist' in text
        assert "warmed" in call_with_deadline(cache_warm, DEADLINE, f"cache_warm #{iteration}")
        assert " ok " in call_with_deadline(check_sources, DEADLINE, f"check_sources #{iteration}")
        if iteration == 0:
            warm = backends()  # Django's own pool has what these commands need now
    # Each call's loop took its pool's connections with it (before the fix: one more per
    # call, until Postgres refused clients); the slack is Django's pool growing once more.
    assert backends() <= warm + 2


def test_it_runs_the_demo_activity_report_as_the_read_only_role(owner):
    """The activity report reads the `reports` schema's views, not the app's tables, which the
    report role may not read."""
    call_command("load_demo_reports", stdout=StringIO())
    out = StringIO()
    call_command("run_report", "fanout-activity", "--format", "json", stdout=out)
    body = json.loads(out.getvalue())
    assert all(panel["error"] is None for panel in body["panels"]), body
    by_title = {panel["title"]: panel for panel in body["panels"]}
    assert ["Fanout activity", "fanout-activity", "alice"] in [row[:3] for row in by_title["Reports"]["rows"]]
