"""Pipeline runs: start one (record it, enqueue the task), and execute it step by step.

A run processes the TPA's pending files through three procedures: BRONZE.LOAD_FILE per
file, SILVER.APPLY_MAPPINGS per file, then GOLD.REFRESH_TPA once. Each step records its
state, rows, Snowflake query ids and times as it goes, so the run page shows progress. A
failing call marks its step failed with the database's message, the files failed, and
the later steps skipped; earlier steps stay as they were. Every procedure is idempotent
(load history, MERGE on the claim key, delete-and-insert per TPA), so re-running after a
fix gives the same rows as a clean run.

A worker that dies mid-run (killed, out of memory, its machine gone) writes nothing more,
so a running run records its worker and a heartbeat; `recover_abandoned` (run by each
task as it starts, by `manage.py tpa_recover`, and by `load_run` for the run a page or the
API reads) marks a run whose worker is gone failed, and a new run retries its files.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from contextlib import AbstractContextManager
from typing import Any

from django.conf import settings
from django.db.models import Prefetch
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from project.sources import SourceError, inflight
from tpa import snowflake
from tpa.cache import load_master_data
from tpa.mapping import MappingError, silver_fragments
from tpa.models import (
    FileStatus,
    IngestionFile,
    PipelineRun,
    PipelineStep,
    RunStatus,
    Step,
    StepStatus,
    Tpa,
    worker_name,
)

logger = logging.getLogger(__name__)


class StepFailed(Exception):
    pass


class WorkerLost(Exception):
    """Recorded on the task of a run whose worker stopped (see recover)."""


def heartbeat_seconds() -> float:
    return settings.TPA_HEARTBEAT_SECONDS


def worker_lost_after() -> float:
    """Seconds without a heartbeat after which a run's worker counts as gone."""
    return settings.TPA_WORKER_LOST_AFTER


async def load_run(run_id: int) -> PipelineRun:
    """A run with its TPA, steps and files, for pages and the API (three queries). A running
    run whose worker is gone is marked failed first: no page shows it running forever."""
    run = await _fetch_run(run_id)
    if (why := run.lost_worker(worker_lost_after(), timezone.now())) and await recover(run, why):
        run = await _fetch_run(run_id)
    return run


async def _fetch_run(run_id: int) -> PipelineRun:
    return (
        await PipelineRun.objects.select_related("tpa", "triggered_by")
        .prefetch_related(
            Prefetch("steps", queryset=PipelineStep.objects.order_by("position")),
            Prefetch("files", queryset=IngestionFile.objects.order_by("uploaded_at", "id")),
        )
        .aget(pk=run_id)
    )


async def execute_run(run_id: int) -> PipelineRun:
    """Run the three steps of a queued run, recording each one. Returns the finished run."""
    run = await load_run(run_id)
    if run.finished:
        return run
    tpa = run.tpa
    steps = {step.name: step for step in run.steps.all()}
    files = list(run.files.all())
    run.status, run.started_at = RunStatus.RUNNING, timezone.now()
    run.worker, run.heartbeat_at = worker_name(), run.started_at
    await run.asave(update_fields=["status", "started_at", "worker", "heartbeat_at"])
    heartbeat = _keep_alive(run.pk)
    try:
        with _labelled(run, Step.BRONZE):
            await _step(steps[Step.BRONZE], _bronze(files))
        with _labelled(run, Step.SILVER):
            await _step(steps[Step.SILVER], _silver(run, tpa, files))
        with _labelled(run, Step.GOLD):
            await _step(steps[Step.GOLD], _gold(tpa, files))
    except StepFailed as exc:
        run.status, run.error = RunStatus.FAILED, str(exc)
        for step in steps.values():
            if step.status == StepStatus.PENDING:
                step.status = StepStatus.SKIPPED
                await step.asave(update_fields=["status"])
        for file in files:
            if file.status != FileStatus.FAILED:
                file.status, file.error = FileStatus.FAILED, str(exc)
                await file.asave(update_fields=["status", "error", "updated_at"])
    else:
        run.status = RunStatus.SUCCEEDED
    finally:
        heartbeat.cancel()
    run.finished_at = timezone.now()
    ours = await PipelineRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).aupdate(
        status=run.status,
        error=run.error,
        finished_at=run.finished_at,
        mapping_snapshot=run.mapping_snapshot,
        mappings_version=run.mappings_version,
    )
    if not ours:  # marked failed meanwhile by `recover`: that record stands
        return await _fetch_run(run.pk)
    return run


def _keep_alive(run_id: int) -> asyncio.Task[None]:
    """Refresh the run's heartbeat until cancelled. If another process has marked the run
    failed meanwhile (the heartbeat was late), stop this execution: a retry may be running."""
    owner = asyncio.current_task()

    async def beat() -> None:
        while True:
            await asyncio.sleep(heartbeat_seconds())
            try:
                alive = await PipelineRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).aupdate(
                    heartbeat_at=timezone.now()
                )
            except Exception:
                logger.warning("could not record the heartbeat of run %s", run_id, exc_info=True)
                continue
            if not alive:
                logger.warning("run %s was marked failed by another process; stopping it here", run_id)
                if owner is not None:
                    owner.cancel(msg="the run was marked failed because its heartbeat was late")
                return

    return asyncio.ensure_future(beat())


def _labelled(run: PipelineRun, step: Step) -> AbstractContextManager[None]:
    """Name the step's Snowflake calls, and who started the run, on the operations page."""
    who = run.triggered_by.get_username() if run.triggered_by else ""
    return inflight.labelled(f"pipeline run {run.pk} {run.tpa.code} / {step.value}", who=who)


async def _step(step: PipelineStep, work: Any) -> None:
    """Run one step's coroutine, which yields (rows, query_id, detail) per procedure call."""
    step.status, step.started_at, step.rows, step.query_ids, step.detail = StepStatus.RUNNING, timezone.now(), 0, [], {}
    await step.asave()
    try:
        async for rows, query_id, key, detail in work:
            step.rows = (step.rows or 0) + rows
            step.query_ids = [*step.query_ids, query_id]
            step.detail = {**step.detail, key: detail}
            await step.asave(update_fields=["rows", "query_ids", "detail"])
    except (SourceError, MappingError) as exc:
        message = exc.message if isinstance(exc, SourceError) else f"Mapping error: {exc}"
        step.status, step.error, step.finished_at = StepStatus.FAILED, message, timezone.now()
        await step.asave(update_fields=["status", "error", "finished_at"])
        raise StepFailed(f"{step.name} failed: {message}") from exc
    except (Exception, asyncio.CancelledError) as exc:
        logger.exception("step %s of run %s crashed", step.name, step.run_id)
        step.status, step.error, step.finished_at = StepStatus.FAILED, f"{type(exc).__name__}: {exc}", timezone.now()
        await step.asave(update_fields=["status", "error", "finished_at"])
        raise StepFailed(f"{step.name} failed: {step.error}") from exc
    step.status, step.finished_at = StepStatus.SUCCEEDED, timezone.now()
    await step.asave(update_fields=["status", "finished_at"])


async def _set_status(file: IngestionFile, status: FileStatus, error: str = "") -> None:
    file.status, file.error = status, error
    await file.asave(update_fields=["status", "error", "updated_at"])


async def _bronze(files: list[IngestionFile]):  # type: ignore[no-untyped-def]
    for file in files:
        await _set_status(file, FileStatus.LOADING)
        try:
            result = await snowflake.call(snowflake.BRONZE_PROCEDURE, file.stage_dir, file.stage_name)
        except SourceError as exc:
            await _set_status(file, FileStatus.FAILED, exc.message)
            raise
        await _set_status(file, FileStatus.LOADED)
        yield int(result.value.get("rows") or 0), result.query_id, file.stage_path, result.value


async def _silver(run: PipelineRun, tpa: Tpa, files: list[IngestionFile]):  # type: ignore[no-untyped-def]
    master = await load_master_data(tpa.code)  # from Postgres: never a stale cached copy
    run.mappings_version = master.mappings_version
    for file in files:
        try:
            fragments = silver_fragments(master, file.columns)
            run.mapping_snapshot = {**run.mapping_snapshot, file.stage_path: fragments.as_dict()}
            result = await snowflake.call(
                snowflake.SILVER_PROCEDURE,
                tpa.code,
                file.stage_path,
                fragments.target_table,
                fragments.key_column,
                fragments.select_list,
                fragments.update_list,
                fragments.insert_columns,
                fragments.insert_values,
            )
        except (SourceError, MappingError) as exc:
            await _set_status(file, FileStatus.FAILED, getattr(exc, "message", str(exc)))
            raise
        yield int(result.value.get("merged") or 0), result.query_id, file.stage_path, result.value


async def _gold(tpa: Tpa, files: list[IngestionFile]):  # type: ignore[no-untyped-def]
    result = await snowflake.call(snowflake.GOLD_PROCEDURE, tpa.code)
    for file in files:
        await _set_status(file, FileStatus.TRANSFORMED)
    yield int(result.value.get("monthly") or 0), result.query_id, tpa.code, result.value


async def wait_for(run_id: int, seconds: float, interval: float = 0.25) -> PipelineRun:
    """The run once it finished, or as it is when `seconds` passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        run = await load_run(run_id)
        if run.finished or loop.time() >= deadline:
            return run
        await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())))


# --- runs whose worker is gone --------------------------------------------------------------


async def recover(run: PipelineRun, why: str) -> bool:
    """Mark a run whose worker is gone failed, as a failing step would have: the step it was
    in failed, later steps skipped, its files failed (so the next run takes them again), and
    its task failed. False when the run changed meanwhile (it finished, or was recovered)."""
    now = timezone.now()
    current = await PipelineStep.objects.filter(run=run, status=StepStatus.RUNNING).order_by("position").afirst()
    where = f"during {current.name}" if current else "before its first step"
    message = f"The worker stopped {where} ({why}); start a new run to retry: every step is safe to repeat."
    if not await PipelineRun.objects.filter(pk=run.pk, status=run.status).aupdate(
        status=RunStatus.FAILED, error=message, finished_at=now
    ):
        return False
    logger.warning("run %s of %s: %s", run.pk, run.tpa_id, message)
    await PipelineStep.objects.filter(run=run, status=StepStatus.RUNNING).aupdate(
        status=StepStatus.FAILED, error=message, finished_at=now
    )
    await PipelineStep.objects.filter(run=run, status=StepStatus.PENDING).aupdate(status=StepStatus.SKIPPED)
    await (
        IngestionFile.objects.filter(runs=run)
        .exclude(status=FileStatus.FAILED)
        .aupdate(status=FileStatus.FAILED, error=message, updated_at=now)
    )
    if run.task_id:
        await DBTaskResult.objects.filter(
            pk=run.task_id, status__in=[TaskResultStatus.READY, TaskResultStatus.RUNNING]
        ).aupdate(
            status=TaskResultStatus.FAILED,
            finished_at=now,
            exception_class_path=f"{WorkerLost.__module__}.{WorkerLost.__qualname__}",
            traceback=message,
        )
    run.status, run.error, run.finished_at = RunStatus.FAILED, message, now
    return True


async def recover_abandoned(*, lost_after: float | None = None) -> list[PipelineRun]:
    """Mark failed every run whose worker is gone; the runs it marked.

    Running runs: their worker's process is gone (same host) or its heartbeat is older than
    `lost_after` seconds. Queued runs: their task ended without running them, or a worker
    claimed the task `lost_after` seconds ago and never started the run.
    """
    lost_after = worker_lost_after() if lost_after is None else lost_after
    now = timezone.now()
    recovered: list[PipelineRun] = []
    async for run in PipelineRun.objects.filter(status=RunStatus.RUNNING).select_related("tpa"):
        if (why := run.lost_worker(lost_after, now)) and await recover(run, why):
            recovered.append(run)
    queued = {
        run.task_id: run
        async for run in PipelineRun.objects.filter(status=RunStatus.QUEUED).exclude(task_id="").select_related("tpa")
    }
    if queued:
        async for task in DBTaskResult.objects.filter(pk__in=list(queued)):
            why = ""
            if task.status in (TaskResultStatus.FAILED, TaskResultStatus.SUCCESSFUL):
                why = f"its task ended {task.status.lower()} without running it"
            elif task.status == TaskResultStatus.RUNNING and _older(task.started_at, lost_after, now):
                why = f"a worker took its task at {task.started_at:%Y-%m-%d %H:%M:%S} UTC and never started it"
            run = queued[str(task.pk)]
            if why and await recover(run, why):
                recovered.append(run)
    return recovered


def _older(moment: datetime.datetime | None, seconds: float, now: datetime.datetime) -> bool:
    return moment is not None and (now - moment).total_seconds() > seconds
