"""The Snowflake emulator stopped: queries answer "unavailable" within their deadline, a
pipeline run is marked failed with a clear message, and both work again once it returns."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import urllib.request

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client, override_settings

from project.sources import SourceUnavailable, get_source
from tests.faults.conftest import Emulator, reset_source
from tests.reports.conftest import make_panel, make_report
from tests.tpa.conftest import claims_file, work
from tpa import snowflake
from tpa.models import FileStatus, IngestionFile

pytestmark = pytest.mark.django_db(transaction=True)

# The test's own bound on "answers within its deadline": generous, never the measure.
BOUND = 60


def test_it_answers_503_unavailable_for_a_snowflake_panel_and_recovers(
    on_emulator: Emulator, owner: User, analysts: Group, owner_client: Client
) -> None:
    report = make_report(owner, groups=[analysts], slug="fault-snowflake")
    panel = make_panel(report, "SELECT 7 AS n", source="snowflake", title="Warehouse", timeout=20, cache_ttl=0)
    url = f"/api/reports/{report.slug}/panels/{panel.pk}/run"

    on_emulator.stop()
    response = owner_client.get(url)
    assert response.status_code == 503
    body = response.json()
    assert body["error"]["kind"] == "unavailable"
    assert body["error"]["message"].startswith("snowflake is unavailable:")
    assert body["rows"] == []
    fragment = owner_client.get(f"/reports/{report.slug}/panels/{panel.pk}/")
    assert fragment.status_code == 503 and "Source unavailable" in fragment.content.decode()

    on_emulator.start()
    # The same source (its failed logins left nothing behind) answers again.
    again = owner_client.get(url)
    assert again.status_code == 200 and again.json()["rows"] == [[7]]


def test_it_answers_a_panel_after_the_warehouse_expired_every_session(
    on_emulator: Emulator, owner: User, analysts: Group, owner_client: Client
) -> None:
    report = make_report(owner, groups=[analysts], slug="fault-expired")
    panel = make_panel(report, "SELECT 8 AS n", source="snowflake", title="Warehouse", timeout=20, cache_ttl=0)
    url = f"/api/reports/{report.slug}/panels/{panel.pk}/run"
    assert owner_client.get(url).json()["rows"] == [[8]]

    # As after a quiet night: the pooled session's tokens have expired on the server.
    expire = urllib.request.Request(
        f"http://127.0.0.1:{on_emulator.port}/emulator/expire-sessions", data=b"{}", method="POST"
    )
    with urllib.request.urlopen(expire, timeout=10) as answer:
        assert json.loads(answer.read())["expired"] >= 1
    again = owner_client.get(url)
    assert again.status_code == 200 and again.json()["rows"] == [[8]]


async def test_it_raises_source_unavailable_within_the_deadline(on_emulator: Emulator) -> None:
    source = get_source("snowflake")
    on_emulator.stop()
    with pytest.raises(SourceUnavailable, match="snowflake is unavailable") as info:
        await asyncio.wait_for(source.execute("SELECT 1 AS n", timeout=30), BOUND)
    assert info.value.http_status == 503


# A source that already holds a session when the warehouse goes away. Run in a child
# process: its executor threads stay stuck in the connector's retries for minutes, which
# would hold up this test process's exit.
SESSION_HELD = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys, time
    import django
    django.setup()
    from django.conf import settings
    from project.sources.snowflake import SnowflakeSource

    config = {**settings.FANOUT_SOURCES["snowflake"], "host": "127.0.0.1", "port": int(sys.argv[1]),
              "protocol": "http", "account": "fakesnow", "user": "fake", "password": "snow", "pool_size": 1,
              "login_timeout": 5}

    async def main():
        source = SnowflakeSource("snowflake", config)
        await source.execute("SELECT 1 AS n", timeout=10)
        print("READY", flush=True)
        sys.stdin.readline()  # the test stops the emulator, then says go
        outcomes = []
        for _ in range(2):
            started = time.monotonic()
            try:
                await source.execute("SELECT 1 AS n", timeout=4)
                outcomes.append(["ok", time.monotonic() - started])
            except Exception as exc:
                outcomes.append([type(exc).__name__, time.monotonic() - started])
        print(json.dumps(outcomes), flush=True)
        os._exit(0)  # do not wait for the executor's stuck thread

    asyncio.run(main())
    """
)


def test_it_answers_unavailable_from_a_source_that_held_a_session_before_the_outage(on_emulator: Emulator) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", SESSION_HELD, str(on_emulator.port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "READY"
        on_emulator.stop()
        child.stdin.write("go\n")
        child.stdin.flush()
        outcomes = json.loads(child.communicate(timeout=BOUND)[0].strip().splitlines()[-1])
    finally:
        child.kill()
        child.wait()
    assert [kind for kind, _ in outcomes] == ["SourceUnavailable", "SourceUnavailable"], outcomes


@override_settings(TPA_PROCEDURE_TIMEOUT=30, TPA_STAGE_TIMEOUT=30)
def test_it_fails_a_run_clearly_while_snowflake_is_down_and_retries_it_after(
    on_emulator: Emulator, owner_client: Client, make_tpa
) -> None:
    tpa = make_tpa()
    uploaded = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(rows=20)})
    assert uploaded.status_code == 201, uploaded.content
    reset_source()  # the worker is another process: it holds no session to the emulator
    on_emulator.stop()

    started = owner_client.post(f"/api/tpa/tpas/{tpa.code}/runs")
    assert started.status_code == 202
    work()

    failed = owner_client.get(started.json()["status_url"]).json()
    assert failed["status"] == "failed"
    assert failed["error"].startswith("bronze failed: snowflake is unavailable:"), failed["error"]
    assert [(s["name"], s["status"]) for s in failed["steps"]] == [
        ("bronze", "failed"),
        ("silver", "skipped"),
        ("gold", "skipped"),
    ]
    file = IngestionFile.objects.get(tpa=tpa)
    # No file is to blame for an outage: it waits for the next run, saying what happened.
    assert file.status == FileStatus.UPLOADED and "unavailable" in file.error
    page = owner_client.get(f"/tpa/{tpa.code}/runs/{failed['id']}/").content.decode()
    assert "snowflake is unavailable" in page

    on_emulator.start()
    retried = owner_client.post(f"/api/tpa/tpas/{tpa.code}/runs")
    assert retried.status_code == 202, retried.content
    work()

    done = owner_client.get(retried.json()["status_url"]).json()
    assert done["status"] == "succeeded", done
    assert done["files"] == failed["files"]
    counts = asyncio.run(snowflake.count_rows(tpa.code))
    assert counts["bronze"] == 20 and counts["silver"] == 20 and counts["gold"] >= 1
    assert IngestionFile.objects.get(tpa=tpa).status == FileStatus.TRANSFORMED


def test_it_records_nothing_when_an_upload_meets_snowflake_down(
    on_emulator: Emulator, owner_client: Client, make_tpa
) -> None:
    tpa = make_tpa()
    on_emulator.stop()
    response = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(rows=5)})
    assert response.status_code == 502
    assert response.json()["detail"].startswith("The file could not be staged, nothing was recorded:")
    assert not IngestionFile.objects.filter(tpa=tpa).exists()
    on_emulator.start()
    again = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(rows=5)})
    assert again.status_code == 201
    assert IngestionFile.objects.filter(tpa=tpa).count() == 1
