"""Pipeline runs, executed step by step; and runs whose worker is gone, recovered.

A run processes the files it owns through three procedures: BRONZE.LOAD_FILE per file,
SILVER.APPLY_MAPPINGS per file, then GOLD.REFRESH_TPA once. Each step records its state,
rows, Snowflake query ids and times as it goes, so the run page shows progress.

Files are isolated: a file whose load or mapping fails is marked failed with its own
reason and drops out, and the others go on to gold (the run is then "partly failed"). A
failed file waits for a person (retry, replace, discard: tpa.runs); no later run takes it
by itself. A warehouse outage or timeout blames no file: the run fails and its files wait
for the next run. Every procedure is idempotent (load history, MERGE on the claim key,
delete-and-insert per TPA in a transaction), so a retry gives the same rows as a clean run.

Every write to a file is guarded by the run that owns it (IngestionFile.run), and every
write to a run by its status: a run that was cancelled, or declared lost while its worker
was in fact only slow, can no longer change what a newer run owns.

A worker that dies mid-run writes nothing more, so a running run beats a heartbeat;
`recover_abandoned` (run by each task as it starts, by `manage.py tpa_recover`, and by
`load_run` for the run a page or the API reads) fails a run whose heartbeat stopped, or a
queued run that has no live task, and gives its files back so the next run takes them.
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

from project import cache
from project.sources import QueryError, SourceError, SourceTimeout, SourceUnavailable, inflight
from tpa import snowflake
from tpa.cache import MasterData, load_master_data
from tpa.mapping import MappingError, SilverFragments, silver_fragments, value_probes
from tpa.models import (
    FileStatus,
    IngestionFile,
    PipelineRun,
    PipelineStep,
    RunStatus,
    Step,
    StepStatus,
    worker_name,
)

logger = logging.getLogger(__name__)

# How often a running run looks for a cancel request (and beats, every heartbeat_seconds).
CANCEL_POLL_SECONDS = 1.0


class WorkerLost(Exception):
    """Recorded on the task of a run whose worker stopped (see recover)."""


class RunCancelled(Exception):
    """Recorded on the task of a run cancelled before a worker took it."""


class FileFailed(Exception):
    """One file cannot go on; the message says why. The run goes on with the others."""


class RunFailed(Exception):
    """The warehouse is unreachable or too slow: no file is to blame, the run stops and its
    files wait for the next run."""


# What says something about the warehouse, not about a file.
OUTAGES = (SourceUnavailable, SourceTimeout)


def heartbeat_seconds() -> float:
    return float(settings.TPA_HEARTBEAT_SECONDS)


def worker_lost_after() -> float:
    """Seconds without a heartbeat after which a run's worker counts as gone."""
    return float(settings.TPA_WORKER_LOST_AFTER)


async def load_run(run_id: int) -> PipelineRun:
    """A run with its TPA, steps and files, for pages and the API (three queries). A run whose
    worker or task is gone is recovered first: no page shows it queued or running forever."""
    run = await _fetch_run(run_id)
    if (why := await abandoned(run, worker_lost_after(), timezone.now())) and await recover(run, why):
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


# --- executing a run -------------------------------------------------------------------------


class _Stop:
    """Why this process stopped its own run (a cancel request, or the run was taken from it)."""

    reason: str = ""
    cancelled: bool = False


async def execute_run(run_id: int) -> PipelineRun:
    """Run the three steps of a queued run, recording each one. Returns the finished run."""
    run = await load_run(run_id)
    if run.finished:
        return run
    now = timezone.now()
    # Only the process that moves the run from queued to running executes it.
    if not await PipelineRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).aupdate(
        status=RunStatus.RUNNING, started_at=now, worker=worker_name(), heartbeat_at=now
    ):
        return await _fetch_run(run.pk)
    run.status, run.started_at = RunStatus.RUNNING, now
    steps = {step.name: step for step in run.steps.all()}
    files = [f for f in run.files.all() if f.run_id == run.pk]
    stop = _Stop()
    watcher = _watch(run.pk, stop)
    try:
        await _execute(run, steps, files)
    except RunFailed as exc:
        await _failed(run, str(exc))
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if not stop.reason or task is None:
            raise  # the worker itself is shutting down: never swallowed; recovery takes over
        task.uncancel()
        await _stopped(run, steps, stop)
    finally:
        watcher.cancel()
    return await _fetch_run(run.pk)


async def _execute(run: PipelineRun, steps: dict[str, PipelineStep], files: list[IngestionFile]) -> None:
    master = await load_master_data(run.tpa.code)  # from Postgres: never a stale cached copy
    run.mappings_version = master.mappings_version
    with _labelled(run, Step.BRONZE):
        loaded = await _step(run, steps[Step.BRONZE], files, _bronze)
    with _labelled(run, Step.SILVER):
        merged = await _step(run, steps[Step.SILVER], loaded, lambda r, f: _silver(r, master, f))
    gold_error = ""
    if merged:
        with _labelled(run, Step.GOLD):
            gold_error = await _gold(run, steps[Step.GOLD], merged)
    else:
        await _finish_step(steps[Step.GOLD], StepStatus.SKIPPED, "no file reached silver")
    failed = len(files) - (0 if gold_error else len(merged))
    if not failed:
        status, error = RunStatus.SUCCEEDED, ""
    elif failed < len(files):
        status, error = RunStatus.PARTIAL, f"{_files(failed)} of {len(files)} failed; the others reached gold."
    else:
        reasons = [step.error for step in (steps[Step.BRONZE], steps[Step.SILVER]) if step.error]
        status, error = RunStatus.FAILED, gold_error or f"{_files(failed)} failed: " + "\n".join(reasons)
    await PipelineRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).aupdate(
        status=status,
        error=error,
        finished_at=timezone.now(),
        mapping_snapshot=run.mapping_snapshot,
        mappings_version=run.mappings_version,
    )


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


async def _failed(run: PipelineRun, message: str) -> None:
    now = timezone.now()
    if await PipelineRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).aupdate(
        status=RunStatus.FAILED, error=message, finished_at=now, mappings_version=run.mappings_version
    ):
        await _close_steps(run, message, now, StepStatus.FAILED)
        await _give_back(run, message, now)


async def _stopped(run: PipelineRun, steps: dict[str, PipelineStep], stop: _Stop) -> None:
    """Record a run this process stopped: cancelled on request, or taken over (then recover
    wrote the record already and the guarded writes below change nothing)."""
    if not stop.cancelled:
        logger.warning("run %s stopped here: %s", run.pk, stop.reason)
        return
    now = timezone.now()
    if not await PipelineRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).aupdate(
        status=RunStatus.CANCELLED, error=stop.reason, finished_at=now
    ):
        return
    await _close_steps(run, stop.reason, now, StepStatus.CANCELLED)
    await _give_back(run, stop.reason, now)


def _watch(run_id: int, stop: _Stop) -> asyncio.Task[None]:
    """Beat the run's heartbeat and look for a cancel request until cancelled. Stops this
    execution (cancels the task running it, which aborts its Snowflake call) when the run is
    cancelled, or when another process has marked it failed because a heartbeat was late."""
    owner = asyncio.current_task()
    loop = asyncio.get_running_loop()

    async def watch() -> None:
        last_beat = loop.time()
        while True:
            await asyncio.sleep(min(CANCEL_POLL_SECONDS, heartbeat_seconds()))
            try:
                if loop.time() - last_beat >= heartbeat_seconds():
                    await PipelineRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).aupdate(
                        heartbeat_at=timezone.now()
                    )
                    last_beat = loop.time()
                state = (
                    await PipelineRun.objects.filter(pk=run_id)
                    .values("status", "cancel_requested_at", "cancelled_by")
                    .afirst()
                )
            except Exception:
                logger.warning("could not record the heartbeat of run %s", run_id, exc_info=True)
                continue
            if state is None or state["status"] != RunStatus.RUNNING:
                stop.reason = "the run was marked failed elsewhere because its heartbeat was late"
            elif state["cancel_requested_at"] is not None:
                stop.reason, stop.cancelled = f"Cancelled by {state['cancelled_by'] or 'a command'}.", True
            else:
                continue
            if owner is not None:
                owner.cancel(msg=stop.reason)
            return

    return asyncio.ensure_future(watch())


def _labelled(run: PipelineRun, step: Step) -> AbstractContextManager[None]:
    """Name the step's Snowflake calls, and who started the run, on the operations page."""
    who = run.triggered_by.get_username() if run.triggered_by else ""
    return inflight.labelled(f"pipeline run {run.pk} {run.tpa.code} / {step.value}", who=who)


CallResult = tuple[int, str, dict[str, Any]]  # rows, query id, what the procedure returned


async def _step(
    run: PipelineRun,
    step: PipelineStep,
    files: list[IngestionFile],
    work: Any,
) -> list[IngestionFile]:
    """Run `work(run, file)` for each file; the files that came through. A file that fails is
    marked failed alone; the step fails only when every file did. CancelledError passes."""
    step.status, step.started_at, step.rows, step.query_ids, step.detail = StepStatus.RUNNING, timezone.now(), 0, [], {}
    await step.asave()
    passed: list[IngestionFile] = []
    errors: list[str] = []
    for file in files:
        try:
            rows, query_id, detail = await work(run, file)
        except OUTAGES as exc:
            await _finish_step(step, StepStatus.FAILED, exc.message)
            raise RunFailed(f"{step.name} failed: {exc.message}") from exc
        except (SourceError, MappingError, FileFailed) as exc:
            message = _message(exc)
            errors.append(f"{file.stage_name}: {message}")
            await _set_status(run, file, FileStatus.FAILED, f"{step.name} failed: {message}")
            step.detail = {**step.detail, file.stage_path: {"error": message}}
            continue
        passed.append(file)
        step.rows = (step.rows or 0) + rows
        step.query_ids = [*step.query_ids, query_id]
        step.detail = {**step.detail, file.stage_path: detail}
        await step.asave(update_fields=["rows", "query_ids", "detail"])
    await _finish_step(step, StepStatus.SUCCEEDED if passed else StepStatus.FAILED, "\n".join(errors))
    return passed


def _message(exc: Exception) -> str:
    if isinstance(exc, SourceError):
        return exc.message
    if isinstance(exc, MappingError):
        return f"Mapping error: {exc}"
    return str(exc)


async def _finish_step(step: PipelineStep, status: StepStatus, error: str = "") -> None:
    step.status, step.error, step.finished_at = status, error, timezone.now()
    await step.asave(update_fields=["status", "error", "finished_at", "detail", "rows", "query_ids"])


async def _set_status(run: PipelineRun, file: IngestionFile, status: FileStatus, error: str = "") -> bool:
    """Change a file the run still owns; False (and nothing written) when it no longer does."""
    file.status, file.error = status, error
    return bool(
        await IngestionFile.objects.filter(pk=file.pk, run_id=run.pk).aupdate(
            status=status, error=error, updated_at=timezone.now()
        )
    )


async def _bronze(run: PipelineRun, file: IngestionFile) -> CallResult:
    await _set_status(run, file, FileStatus.LOADING)
    result = await snowflake.call(snowflake.BRONZE_PROCEDURE, file.stage_dir, file.stage_name)
    rows = int(result.value.get("rows") or 0)
    if rows != file.row_count:
        # The stage lost the file, or a load went wrong: never call such a file transformed.
        raise FileFailed(
            f"bronze holds {rows} rows of {file.stage_path}; the file has {file.row_count}. "
            "Replace the file (upload it again) or discard it."
        )
    await _set_status(run, file, FileStatus.LOADED)
    return rows, result.query_id, result.value


async def _silver(run: PipelineRun, master: MasterData, file: IngestionFile) -> CallResult:
    fragments = silver_fragments(master, file.columns)
    run.mapping_snapshot = {**run.mapping_snapshot, file.stage_path: fragments.as_dict()}
    try:
        return await _merge(run, file, fragments)
    except QueryError as exc:
        # The procedure names its own line; the person needs the file's.
        bad = await snowflake.first_bad_value(file.stage_path, value_probes(master, file.columns))
        if bad is None:
            raise
        raise FileFailed(
            f"line {bad.line}, column {bad.column}: {bad.value[:60]!r} cannot become {bad.target} "
            f"with the current mappings (the warehouse said: {exc.message})"
        ) from exc


async def _merge(run: PipelineRun, file: IngestionFile, fragments: SilverFragments) -> CallResult:
    result = await snowflake.call(
        snowflake.SILVER_PROCEDURE,
        run.tpa.code,
        file.stage_path,
        fragments.target_table,
        fragments.key_column,
        fragments.select_list,
        fragments.update_list,
        fragments.insert_columns,
        fragments.insert_values,
    )
    return int(result.value.get("merged") or 0), result.query_id, result.value


async def _gold(run: PipelineRun, step: PipelineStep, files: list[IngestionFile]) -> str:
    """Refresh the TPA's gold layer once; "" when it did, else why not (the files then fail)."""
    step.status, step.started_at = StepStatus.RUNNING, timezone.now()
    await step.asave(update_fields=["status", "started_at"])
    try:
        result = await snowflake.call(snowflake.GOLD_PROCEDURE, run.tpa.code)
    except OUTAGES as exc:
        await _finish_step(step, StepStatus.FAILED, exc.message)
        raise RunFailed(f"gold failed: {exc.message}") from exc
    except SourceError as exc:
        for file in files:
            await _set_status(run, file, FileStatus.FAILED, f"gold failed: {exc.message}")
        await _finish_step(step, StepStatus.FAILED, exc.message)
        return f"gold failed: {exc.message}"
    for file in files:
        await _set_status(run, file, FileStatus.TRANSFORMED)
    step.rows, step.query_ids, step.detail = int(result.value.get("monthly") or 0), [result.query_id], result.value
    await _finish_step(step, StepStatus.SUCCEEDED)
    await _reports_changed(run)
    return ""


async def _reports_changed(run: PipelineRun) -> None:
    """Reports read gold (GOLD.CLAIMS): drop their cached panels and filter options, so the
    run's claims show on the next page view and its TPA is a known choice of the TPA filter."""
    for namespace in ("panel-results", "filter-options"):
        try:
            await cache.ainvalidate(namespace)
        except cache.CacheUnavailable:
            # The gold rows are committed; the reports catch up within the namespace's TTL.
            logger.warning("run %s: could not invalidate %s", run.pk, namespace, exc_info=True)


async def wait_for(run_id: int, seconds: float, interval: float = 0.25) -> PipelineRun:
    """The run once it finished, or as it is when `seconds` passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        run = await load_run(run_id)
        if run.finished or loop.time() >= deadline:
            return run
        await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())))


# --- runs whose worker or task is gone ---------------------------------------------------------


async def abandoned(run: PipelineRun, lost_after: float, now: datetime.datetime) -> str:
    """Why nothing will ever execute or finish this run, or "" when something still may."""
    if run.status == RunStatus.RUNNING:
        return run.lost_worker(lost_after, now)
    if run.status != RunStatus.QUEUED:
        return ""
    if not run.task_id:
        # Executed in a process (--inline, the demo loader) that is gone.
        return (
            f"it has had no task since {run.created_at:%Y-%m-%d %H:%M:%S} UTC"
            if _older(run.created_at, lost_after, now)
            else ""
        )
    task = await DBTaskResult.objects.filter(pk=run.task_id).afirst()
    if task is None:
        return "its task is gone from the queue"
    if task.status in (TaskResultStatus.FAILED, TaskResultStatus.SUCCESSFUL):
        return f"its task ended {task.status.lower()} without running it"
    if task.status == TaskResultStatus.RUNNING and _older(task.started_at, lost_after, now):
        return f"a worker took its task at {task.started_at:%Y-%m-%d %H:%M:%S} UTC and never started it"
    return ""


async def recover(run: PipelineRun, why: str) -> bool:
    """Fail a run whose worker or task is gone: the step it was in failed, later steps skipped,
    its unfinished files given back (the next run takes them), its task failed. False when the
    run changed meanwhile (it finished, or was recovered)."""
    now = timezone.now()
    current = await PipelineStep.objects.filter(run=run, status=StepStatus.RUNNING).order_by("position").afirst()
    where = f"during {current.name}" if current else "before its first step"
    message = f"The worker stopped {where} ({why}). Its files wait for the next run: every step is safe to repeat."
    if not await PipelineRun.objects.filter(pk=run.pk, status=run.status).aupdate(
        status=RunStatus.FAILED, error=message, finished_at=now
    ):
        return False
    logger.warning("run %s of %s: %s", run.pk, run.tpa_id, message)
    await _close_steps(run, message, now, StepStatus.FAILED)
    await _give_back(run, message, now)
    await fail_task(run, WorkerLost, message, now)
    run.status, run.error, run.finished_at = RunStatus.FAILED, message, now
    return True


async def _close_steps(run: PipelineRun, message: str, now: datetime.datetime, status: StepStatus) -> None:
    await PipelineStep.objects.filter(run=run, status=StepStatus.RUNNING).aupdate(
        status=status, error=message, finished_at=now
    )
    await PipelineStep.objects.filter(run=run, status=StepStatus.PENDING).aupdate(status=StepStatus.SKIPPED)


async def _give_back(run: PipelineRun, message: str, now: datetime.datetime) -> None:
    """The run's files that neither failed nor reached gold wait for the next run again."""
    await (
        IngestionFile.objects.filter(run=run)
        .exclude(status__in=[FileStatus.FAILED, FileStatus.TRANSFORMED])
        .aupdate(status=FileStatus.UPLOADED, error=message, run=None, updated_at=now)
    )


async def fail_task(run: PipelineRun, reason: type[Exception], message: str, now: datetime.datetime) -> None:
    """Mark the run's task failed unless it ended already, so the queue shows the truth."""
    if run.task_id:
        await DBTaskResult.objects.filter(
            pk=run.task_id, status__in=[TaskResultStatus.READY, TaskResultStatus.RUNNING]
        ).aupdate(
            status=TaskResultStatus.FAILED,
            finished_at=now,
            exception_class_path=f"{reason.__module__}.{reason.__qualname__}",
            traceback=message,
        )


async def recover_abandoned(*, lost_after: float | None = None) -> list[PipelineRun]:
    """Fail every run that nothing will finish (see `abandoned`); the runs it failed."""
    lost_after = worker_lost_after() if lost_after is None else lost_after
    now = timezone.now()
    recovered: list[PipelineRun] = []
    async for run in PipelineRun.objects.active().select_related("tpa").order_by("created_at"):
        if (why := await abandoned(run, lost_after, now)) and await recover(run, why):
            recovered.append(run)
    return recovered


def _older(moment: datetime.datetime | None, seconds: float, now: datetime.datetime) -> bool:
    return moment is not None and (now - moment).total_seconds() > seconds
