"""A task worker killed in the middle of a run leaves the run failed and retryable, never
"running" forever."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.tasks import TaskResultStatus
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from project.sources import get_source
from tests.faults.conftest import BASE_DIR, Emulator
from tests.tpa.conftest import claims_file, work
from tpa import snowflake
from tpa.models import FileStatus, IngestionFile, PipelineRun, PipelineStep, RunStatus, StepStatus, Tpa, worker_name
from tpa.runs import start_run

pytestmark = pytest.mark.django_db(transaction=True)

# Gold made slow: the run is certainly inside it when the worker is killed.
SLOW_GOLD = """
CREATE OR REPLACE PROCEDURE GOLD.REFRESH_TPA(TPA_CODE VARCHAR)
RETURNS VARIANT
LANGUAGE SQL
AS
$$
BEGIN
    SELECT SYSTEM$WAIT(600);
    RETURN OBJECT_CONSTRUCT('monthly', 0);
END;
$$
"""
GOLD_FILE = snowflake.SQL_DIR / "030_gold_refresh_tpa.sql"
BOUND = 90  # seconds: the test's own limit on waiting for the worker, never a measure


def deploy(sql: str) -> None:
    for statement in snowflake.split_statements(sql):
        asyncio.run(get_source("snowflake").execute(statement.replace("%", "%%"), read_only=False, timeout=60))


@pytest.fixture
def slow_gold(on_emulator: Emulator) -> Iterator[None]:
    deploy(SLOW_GOLD)
    yield
    deploy(GOLD_FILE.read_text())


def start_worker(emulator: Emulator, log: Path) -> subprocess.Popen[bytes]:
    """`manage.py db_worker` in its own process, on the test database and the private emulator."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgresql://{db['USER']}:@/{db['NAME']}?host={db['HOST']}",
        "SNOWFLAKE_HOST": "127.0.0.1",
        "SNOWFLAKE_PORT": str(emulator.port),
        "SNOWFLAKE_PROTOCOL": "http",
        "SNOWFLAKE_ACCOUNT": "fakesnow",
        "SNOWFLAKE_USER": "fake",
        "SNOWFLAKE_PASSWORD": "snow",
        # Beats often, so the test's short TPA_WORKER_LOST_AFTER never mistakes it for lost.
        "TPA_HEARTBEAT_SECONDS": "0.2",
    }
    with open(log, "ab") as output:
        return subprocess.Popen(
            [sys.executable, "manage.py", "db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.1"],
            cwd=BASE_DIR,
            env=env,
            stdout=output,
            stderr=output,
            start_new_session=True,
        )


def wait_until(condition: Callable[[], bool], what: str, worker: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + BOUND
    while not condition():
        if worker.poll() is not None:
            pytest.fail(f"the worker exited ({worker.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {BOUND} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


@pytest.fixture
def lost_after_3s(settings) -> None:
    settings.TPA_WORKER_LOST_AFTER = 3.0


def test_it_fails_the_run_of_a_killed_worker_and_a_retry_loads_each_row_once(
    slow_gold: None, lost_after_3s: None, on_emulator: Emulator, owner_client: Client, make_tpa, tmp_path: Path
) -> None:
    tpa = make_tpa()
    assert owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(rows=12)}).status_code == 201
    started = owner_client.post(f"/api/tpa/tpas/{tpa.code}/runs").json()
    run_id, status_url = started["id"], started["status_url"]
    gold = PipelineStep.objects.filter(run_id=run_id, name="gold")

    worker = start_worker(on_emulator, tmp_path / "worker.log")
    try:
        wait_until(lambda: gold.get().status == StepStatus.RUNNING, "gold running", worker, tmp_path / "worker.log")
        alive = owner_client.get(status_url).json()
        assert alive["status"] == "running"  # a live worker's run is left alone
        assert PipelineRun.objects.get(pk=run_id).worker.endswith(f":{worker.pid}")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()

    # Nothing wrote after the kill: without recovery this run would say "running" forever.
    assert PipelineRun.objects.get(pk=run_id).status == RunStatus.RUNNING

    # Reading the run (page, poll or API) notices that its heartbeat stopped.
    deadline = time.monotonic() + BOUND
    while (failed := owner_client.get(status_url).json())["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert failed["status"] == "failed" and failed["finished"]
    assert failed["error"].startswith(
        f"The worker stopped during gold (no heartbeat from {worker_host()}:{worker.pid} since"
    )
    assert failed["error"].endswith("Its files wait for the next run: every step is safe to repeat.")
    assert [(s["name"], s["status"]) for s in failed["steps"]] == [
        ("bronze", "succeeded"),
        ("silver", "succeeded"),
        ("gold", "failed"),
    ]
    page = owner_client.get(f"/tpa/{tpa.code}/runs/{run_id}/").content.decode()
    assert "The worker stopped during gold" in page and "data-poll-url" not in page
    assert IngestionFile.objects.get(tpa=tpa).status == FileStatus.UPLOADED  # the next run takes it
    task = DBTaskResult.objects.get(pk=PipelineRun.objects.get(pk=run_id).task_id)
    assert task.status == TaskResultStatus.FAILED  # not "running" on the operations page either

    deploy(GOLD_FILE.read_text())
    retried = owner_client.post(f"/api/tpa/tpas/{tpa.code}/runs")
    assert retried.status_code == 202, retried.content
    work()

    done = owner_client.get(retried.json()["status_url"]).json()
    assert done["status"] == "succeeded", done
    counts = asyncio.run(snowflake.count_rows(tpa.code))
    assert counts["bronze"] == 12 and counts["silver"] == 12 and counts["gold"] >= 1  # nothing twice
    assert IngestionFile.objects.get(tpa=tpa).status == FileStatus.TRANSFORMED


def worker_host() -> str:
    return worker_name().rpartition(":")[0]


def start_slow_run(client: Client, tpa: Tpa, worker: subprocess.Popen[bytes], log: Path) -> dict:
    """Upload a file and start a run; once the worker is inside the slow gold step."""
    assert client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(rows=12)}).status_code == 201
    run = client.post(f"/api/tpa/tpas/{tpa.code}/runs").json()
    gold = PipelineStep.objects.filter(run_id=run["id"], name="gold")
    wait_until(lambda: gold.get().status == StepStatus.RUNNING, "gold running", worker, log)
    return run


def wait_for_status(client: Client, url: str, status: str, worker: subprocess.Popen[bytes], log: Path) -> dict:
    wait_until(lambda: client.get(url).json()["status"] == status, f"the run {status}", worker, log)
    return client.get(url).json()


@pytest.fixture
def worker(on_emulator: Emulator, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A live db_worker process and its log, killed after the test."""
    log = tmp_path / "worker.log"
    process = start_worker(on_emulator, log)
    yield process, log
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_it_cancels_a_running_run_from_the_page_and_its_worker_goes_on_with_the_next(
    slow_gold: None, worker: tuple[subprocess.Popen[bytes], Path], owner_client: Client, make_tpa
) -> None:
    tpa, (process, log) = make_tpa(), worker
    run = start_slow_run(owner_client, tpa, process, log)
    # Gold waits 600 s in the warehouse: only a cancel that reaches the call ends it now.
    answer = owner_client.post(f"/tpa/{tpa.code}/runs/{run['id']}/cancel", follow=True)
    assert f"Run {run['id']} is stopping" in answer.content.decode()
    cancelled = wait_for_status(owner_client, run["status_url"], "cancelled", process, log)
    assert cancelled["error"] == "Cancelled by alice."
    # The cancel is not a failure of the step it interrupted.
    assert [(s["name"], s["status"]) for s in cancelled["steps"]] == [
        ("bronze", "succeeded"),
        ("silver", "succeeded"),
        ("gold", "cancelled"),
    ]
    file = IngestionFile.objects.get(tpa=tpa)
    assert (file.status, file.run_id) == (FileStatus.UPLOADED, None)  # retryable
    assert owner_client.post(f"/api/tpa/tpas/{tpa.code}/runs/{run['id']}/cancel").status_code == 409

    deploy(GOLD_FILE.read_text())
    retried = owner_client.post(f"/api/tpa/tpas/{tpa.code}/runs").json()
    done = wait_for_status(owner_client, retried["status_url"], "succeeded", process, log)
    assert done["files"] == [file.stage_path]
    counts = asyncio.run(snowflake.count_rows(tpa.code))
    assert counts["bronze"] == 12 and counts["silver"] == 12


def test_it_never_lets_a_run_taken_from_a_slow_worker_overwrite_the_newer_runs_files(
    slow_gold: None, worker: tuple[subprocess.Popen[bytes], Path], owner_client: Client, make_tpa
) -> None:
    tpa, (process, log) = make_tpa(), worker
    stale = start_slow_run(owner_client, tpa, process, log)
    # The worker is alive but counted lost (as after a long pause): the run is failed and
    # its file given back, and a new run takes the file at once.
    call_command("tpa_recover", "--lost-after", "0", stdout=io.StringIO())
    newer = owner_client.post(f"/api/tpa/tpas/{tpa.code}/runs").json()
    file = IngestionFile.objects.get(tpa=tpa)
    assert (file.status, file.run_id) == (FileStatus.QUEUED, newer["id"])

    deploy(GOLD_FILE.read_text())
    done = wait_for_status(owner_client, newer["status_url"], "succeeded", process, log)
    wait_until(lambda: "the run was marked failed elsewhere" in log.read_text(), "the stale run stopping", process, log)
    old = owner_client.get(stale["status_url"]).json()
    assert old["status"] == "failed" and old["error"].startswith("The worker stopped during gold (no heartbeat")
    file.refresh_from_db()
    assert (file.status, file.run_id, file.error) == (FileStatus.TRANSFORMED, newer["id"], "")
    assert done["steps"][0]["rows"] == 12


def running_run(tpa: Tpa, *, worker: str, seen_ago: timedelta) -> PipelineRun:
    IngestionFile.objects.create(
        tpa=tpa,
        original_name="claims.csv",
        stage_path=f"{tpa.code.lower()}/2026/01/01/{worker.replace(':', '-')}.csv",
        size=10,
        sha256=worker.ljust(64, "0")[:64],
        row_count=1,
        columns=["claim_id"],
    )
    run = asyncio.run(start_run(tpa, None, enqueue=False))
    seen = timezone.now() - seen_ago
    PipelineRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, worker=worker, started_at=seen, heartbeat_at=seen
    )
    PipelineStep.objects.filter(run=run, name="bronze").update(status=StepStatus.RUNNING, started_at=seen)
    return run


def test_tpa_recover_fails_runs_without_a_heartbeat_and_leaves_live_ones(make_tpa) -> None:
    lost = running_run(make_tpa(), worker="worker-7.example:4242", seen_ago=timedelta(hours=1))
    live = running_run(make_tpa(), worker=worker_name(), seen_ago=timedelta(seconds=1))

    out = io.StringIO()
    call_command("tpa_recover", stdout=out)

    assert f"run {lost.pk} of {lost.tpa.code}: failed." in out.getvalue()
    assert "1 abandoned run(s) marked failed" in out.getvalue()
    lost.refresh_from_db()
    assert lost.status == RunStatus.FAILED
    assert lost.error.startswith("The worker stopped during bronze (no heartbeat from worker-7.example:4242 since ")
    steps = dict(PipelineStep.objects.filter(run=lost).values_list("name", "status"))
    assert steps == {"bronze": "failed", "silver": "skipped", "gold": "skipped"}
    assert IngestionFile.objects.get(tpa=lost.tpa).status == FileStatus.UPLOADED  # the next run takes it
    live.refresh_from_db()
    assert live.status == RunStatus.RUNNING

    again = io.StringIO()
    call_command("tpa_recover", stdout=again)
    assert again.getvalue().strip() == "No abandoned runs."
