"""Runs start exactly once and atomically, failed files wait for a person, and a run can be
cancelled; nothing a person clicks blocks a TPA."""

from __future__ import annotations

import asyncio
import io
import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from tests.tpa.conftest import ACME, break_mapping, claims_file, counts, staged, work
from tpa import demo
from tpa.cache import invalidate
from tpa.models import FieldMapping, FileStatus, IngestionFile, PipelineRun, RunStatus
from tpa.runs import start_run

pytestmark = pytest.mark.django_db(transaction=True)


def bad_dates_file(name: str = "bad.csv", rows: int = 6) -> io.BytesIO:
    """A claim file whose service_date column holds something that is not a date."""
    lines = demo.claims_csv(ACME, rows, seed=7).decode().splitlines()
    header = lines[0].split(",")
    at = header.index("service_date")
    body = []
    for line in lines[1:]:
        values = line.split(",")
        values[at] = "not-a-date"
        body.append(",".join(values))
    data = io.BytesIO("\n".join([lines[0], *body, ""]).encode())
    data.name = name
    return data


def test_it_never_blocks_a_tpa_after_a_bad_file_and_a_good_one_sent_again(make_tpa, owner_client) -> None:
    # The sequence from issue 11: a bad file and a good one, run, the good one again, Run.
    tpa = make_tpa()
    refused = owner_client.post(f"/tpa/{tpa.code}/upload", {"file": bad_dates_file()}, follow=True)
    assert "line 2, column service_date: &#x27;not-a-date&#x27; is not a date in the format YYYY-MM-DD" in (
        refused.content.decode()
    )
    good = claims_file(rows=9, name="good.csv")
    assert owner_client.post(f"/tpa/{tpa.code}/upload", {"file": good}).status_code == 302
    assert owner_client.post(f"/tpa/{tpa.code}/runs/").status_code == 303
    work()
    assert PipelineRun.objects.get(tpa=tpa).status == RunStatus.SUCCEEDED

    again = owner_client.post(f"/tpa/{tpa.code}/upload", {"file": claims_file(rows=9, name="good.csv")}, follow=True)
    page = again.content.decode()
    assert "This file has the same content as good.csv" in page and "its claims are in gold" in page
    assert IngestionFile.objects.filter(tpa=tpa).count() == 1 and len(staged(tpa.code)) == 1

    second = owner_client.post(f"/tpa/{tpa.code}/runs/", follow=True)
    assert second.status_code == 200 and "has no files waiting: upload one first" in second.content.decode()
    assert not PipelineRun.objects.active().exists()
    owner_client.post(f"/tpa/{tpa.code}/upload", {"file": claims_file(rows=3, seed=5, name="next.csv")})
    assert owner_client.post(f"/api/tpa/tpas/{tpa.code}/runs").status_code == 202  # not blocked


def rename_procedure_column(tpa) -> None:
    """Staff rename the file column PROCEDURE_CODE comes from, as the mappings page saves it."""
    FieldMapping.objects.filter(tpa=tpa, target_column="PROCEDURE_CODE").update(source_column="procedure")
    invalidate()


def test_it_fails_a_bad_file_alone_and_takes_the_good_one_to_gold(make_tpa, owner_client) -> None:
    tpa = make_tpa()
    owner_client.post(f"/tpa/{tpa.code}/upload", {"file": claims_file(rows=6, seed=1, name="old.csv")})
    rename_procedure_column(tpa)
    renamed = io.BytesIO(demo.claims_csv(ACME, 9, seed=2).replace(b",cpt,", b",procedure,", 1))
    renamed.name = "new.csv"
    assert owner_client.post(f"/tpa/{tpa.code}/upload", {"file": renamed}).status_code == 302
    assert owner_client.post(f"/tpa/{tpa.code}/runs/").status_code == 303
    work()

    run = PipelineRun.objects.get(tpa=tpa)
    assert run.status == RunStatus.PARTIAL and run.error == "1 file of 2 failed; the others reached gold."
    files = {f.original_name: f for f in IngestionFile.objects.filter(tpa=tpa)}
    assert (files["new.csv"].status, files["new.csv"].error) == (FileStatus.TRANSFORMED, "")
    assert files["old.csv"].status == FileStatus.FAILED
    assert (
        files["old.csv"].error == "silver failed: Mapping error: the file has no column 'procedure' for PROCEDURE_CODE"
    )
    assert counts(tpa.code)["silver"] == 9 and counts(tpa.code)["gold"] >= 1  # the good file reached gold
    page = owner_client.get(f"/tpa/{tpa.code}/runs/{run.pk}/").content.decode()
    assert "partly failed" in page

    # Bronze shows one file at a time, under that file's own header.
    def bronze(query: str = "") -> str:
        html = owner_client.get(f"/tpa/{tpa.code}/{query}").content.decode()
        return html[html.index('<div id="bronze">') : html.index('<div id="silver">')]

    assert files["new.csv"].stage_path in bronze() and "<th>procedure</th>" in bronze()
    older = bronze(f"?bronze_file={files['old.csv'].pk}")
    assert files["old.csv"].stage_path in older and "<th>cpt</th>" in older and "<th>procedure</th>" not in older

    # A failed file waits for a person; replacing it with a corrected file runs again.
    second = owner_client.post(f"/tpa/{tpa.code}/runs/", follow=True)
    assert "1 failed file waits for you to retry, replace or discard it" in second.content.decode()
    old = files["old.csv"]
    corrected = io.BytesIO(demo.claims_csv(ACME, 6, seed=1).replace(b",cpt,", b",procedure,", 1))
    corrected.name = "old.csv"
    assert owner_client.post(f"/tpa/{tpa.code}/upload", {"file": corrected, "replaces": old.pk}).status_code == 302
    old.refresh_from_db()
    assert old.status == FileStatus.DISCARDED and old.stage_path not in staged(tpa.code)
    assert owner_client.post(f"/api/tpa/tpas/{tpa.code}/runs").status_code == 202
    work()
    assert PipelineRun.objects.filter(tpa=tpa).order_by("-id")[0].status == RunStatus.SUCCEEDED
    assert counts(tpa.code)["silver"] == 15


def test_it_starts_one_run_when_two_starts_arrive_together(make_tpa) -> None:
    tpa = make_tpa()
    from asgiref.sync import async_to_sync

    from tpa import uploads

    async_to_sync(uploads.upload)(tpa, "claims.csv", [claims_file().getvalue()], None)
    barrier = threading.Barrier(2)
    answers: list[str] = []

    def start() -> None:
        barrier.wait()
        try:
            run = asyncio.run(start_run(tpa, None))
            answers.append(f"run {run.pk}")
        except Exception as exc:
            answers.append(getattr(exc, "message", repr(exc)))
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert PipelineRun.objects.filter(tpa=tpa).count() == 1
    run = PipelineRun.objects.get(tpa=tpa)
    assert sorted(answers) == sorted(
        [f"run {run.pk}", f"Run {run.pk} of {tpa.code} is queued; wait for it to finish or cancel it."]
    )
    assert DBTaskResult.objects.filter(pk=run.task_id).exists()  # the run and its task, together


def test_it_keeps_one_active_run_per_tpa_in_the_database_itself(make_tpa) -> None:
    tpa = make_tpa()
    PipelineRun.objects.create(tpa=tpa)
    with pytest.raises(IntegrityError, match="tpa_one_active_run"), transaction.atomic():
        PipelineRun.objects.create(tpa=tpa, status=RunStatus.RUNNING)
    PipelineRun.objects.create(tpa=tpa, status=RunStatus.FAILED)  # finished runs: any number


def test_it_records_no_run_when_the_task_cannot_be_enqueued(make_tpa, owner_client, monkeypatch) -> None:
    tpa = make_tpa()
    owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file()})

    class Unreachable:
        """The task backend failing as the run is started (its table gone, say)."""

        def enqueue(self, *args: object) -> None:
            raise RuntimeError("the task table is not there")

    monkeypatch.setattr("tpa.runs.run_pipeline", Unreachable())
    with pytest.raises(RuntimeError):
        owner_client.post(f"/api/tpa/tpas/{tpa.code}/runs")
    assert not PipelineRun.objects.exists()
    assert IngestionFile.objects.get(tpa=tpa).status == FileStatus.UPLOADED  # still waiting


def queued_without_task(tpa, *, task: str = "gone") -> PipelineRun:
    """A queued run as a crash left it: its task deleted, or never enqueued (an --inline run)."""
    IngestionFile.objects.create(
        tpa=tpa,
        original_name="c.csv",
        stage_path=f"{tpa.code.lower()}/2026/01/01/c.csv",
        size=1,
        sha256="0" * 64,
        row_count=1,
    )
    run = asyncio.run(start_run(tpa, None, enqueue=task == "gone"))
    if task == "gone":
        DBTaskResult.objects.filter(pk=run.task_id).delete()
    else:
        PipelineRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(hours=1))
    return run


def test_it_recovers_a_queued_run_without_a_task_on_its_page_in_tpa_recover_and_on_the_next_start(
    make_tpa, owner_client
) -> None:
    page_tpa, command_tpa, start_tpa = make_tpa(), make_tpa(), make_tpa()
    on_page = queued_without_task(page_tpa)
    body = owner_client.get(f"/tpa/{page_tpa.code}/runs/{on_page.pk}/").content.decode()
    assert "its task is gone from the queue" in body and "data-poll-url" not in body
    assert IngestionFile.objects.get(tpa=page_tpa).status == FileStatus.UPLOADED

    by_command = queued_without_task(command_tpa, task="inline")
    out = io.StringIO()
    call_command("tpa_recover", stdout=out)
    assert f"run {by_command.pk} of {command_tpa.code}: failed." in out.getvalue()
    assert "it has had no task since" in PipelineRun.objects.get(pk=by_command.pk).error

    blocked = queued_without_task(start_tpa)
    started = owner_client.post(f"/api/tpa/tpas/{start_tpa.code}/runs")
    assert started.status_code == 202, started.content
    assert PipelineRun.objects.get(pk=blocked.pk).status == RunStatus.FAILED


def test_it_cancels_a_queued_run_from_the_page_the_api_and_a_command(make_tpa, owner_client) -> None:
    for how in ("page", "api", "command"):
        tpa = make_tpa()
        owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file()})
        run = owner_client.post(f"/api/tpa/tpas/{tpa.code}/runs").json()
        if how == "page":
            answer = owner_client.post(f"/tpa/{tpa.code}/runs/{run['id']}/cancel", follow=True)
            assert f"Run {run['id']} cancelled." in answer.content.decode()
        elif how == "api":
            answer = owner_client.post(f"/api/tpa/tpas/{tpa.code}/runs/{run['id']}/cancel")
            assert answer.status_code == 202 and answer.json()["status"] == "cancelled"
        else:
            out = io.StringIO()
            call_command("tpa_cancel", tpa.code, str(run["id"]), stdout=out)
            assert f"run {run['id']} of {tpa.code}: cancelled" in out.getvalue()
        recorded = PipelineRun.objects.get(pk=run["id"])
        assert recorded.status == RunStatus.CANCELLED
        assert DBTaskResult.objects.get(pk=recorded.task_id).status == TaskResultStatus.FAILED  # never runs
        file = IngestionFile.objects.get(tpa=tpa)
        assert (file.status, file.run_id) == (FileStatus.UPLOADED, None)  # waits for the next run
        again = owner_client.post(f"/api/tpa/tpas/{tpa.code}/runs/{run['id']}/cancel")
        assert again.status_code == 409 and "nothing to cancel" in again.json()["detail"]
    work()  # the cancelled tasks do nothing
    assert not PipelineRun.objects.exclude(status=RunStatus.CANCELLED).exists()


def failed_file(client, tpa) -> IngestionFile:
    """A file of `tpa` that a run failed: its mapping's date format changed after the upload."""
    client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(rows=6, name="jan.csv")})
    break_mapping(tpa)
    client.post(f"/api/tpa/tpas/{tpa.code}/runs")
    work()
    return IngestionFile.objects.get(tpa=tpa)


def test_it_lets_an_operator_retry_and_discard_a_failed_file_and_upload_its_content_again(
    make_tpa, owner_client
) -> None:
    tpa = make_tpa()
    file = failed_file(owner_client, tpa)
    assert file.status == FileStatus.FAILED

    again = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(rows=6, name="jan-again.csv")})
    assert again.status_code == 409
    assert "which failed: silver failed:" in again.json()["detail"]
    assert "Retry that file once the cause is fixed" in again.json()["detail"]

    retried = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files/{file.pk}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "uploaded"
    assert owner_client.post(f"/api/tpa/tpas/{tpa.code}/files/{file.pk}/retry").status_code == 409
    owner_client.post(f"/api/tpa/tpas/{tpa.code}/runs")
    work()
    file.refresh_from_db()
    assert file.status == FileStatus.FAILED  # the same cause, the same end

    discarded = owner_client.post(f"/tpa/{tpa.code}/files/{file.pk}/discard", follow=True)
    assert "is discarded" in discarded.content.decode()
    file.refresh_from_db()
    assert file.status == FileStatus.DISCARDED and staged(tpa.code) == []
    again = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(rows=6, name="jan.csv")})
    assert again.status_code == 201  # a discarded file's content may come again


def test_it_shows_failed_files_with_their_actions_and_hides_them_from_a_viewer(
    make_tpa, owner_client, member, member_client
) -> None:
    from django.contrib.auth.models import Permission

    tpa = make_tpa()
    file = failed_file(owner_client, tpa)
    page = owner_client.get(f"/tpa/{tpa.code}/").content.decode()
    row = page[page.index(f'id="file-{file.pk}"') :]
    row = row[: row.index("</tr>")]
    assert "Retry" in row and "Replace" in row and "Discard" in row
    member.user_permissions.add(Permission.objects.get(codename="view_tpa"))
    assert "Retry</button>" not in member_client.get(f"/tpa/{tpa.code}/").content.decode()
    assert member_client.post(f"/tpa/{tpa.code}/files/{file.pk}/retry").status_code == 403
    assert member_client.post(f"/api/tpa/tpas/{tpa.code}/files/{file.pk}/discard").status_code == 403
