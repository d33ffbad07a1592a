"""What a person does with runs and files: start a run, cancel it; retry or discard a file.

Separate from tpa.pipeline, which executes runs, so that tpa.tasks imports the pipeline and
this module imports the task, without a circle. Pages, the API and the commands call these.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction
from django.http import Http404
from django.utils import timezone

from tpa import snowflake
from tpa.models import FileStatus, IngestionFile, PipelineRun, PipelineStep, RunStatus, Step, StepStatus, Tpa
from tpa.pipeline import RunCancelled, abandoned, fail_task, load_run, recover, worker_lost_after
from tpa.staging import Refused
from tpa.tasks import run_pipeline


def _who(user: Any) -> Any:
    return user if getattr(user, "is_authenticated", False) else None


async def start_run(tpa: Tpa, user: Any, *, enqueue: bool = True) -> PipelineRun:
    """Create a run over the TPA's waiting files and enqueue its task, all or nothing; Refused
    (409) when the TPA is inactive, has an active run, or has nothing waiting."""
    await _recover_blocking_run(tpa)
    try:
        return await sync_to_async(_start_run)(tpa.pk, _who(user), enqueue)
    except IntegrityError:
        # Another start won at the same moment (tpa_one_active_run): say which run.
        active = await PipelineRun.objects.active().filter(tpa_id=tpa.pk).afirst()
        raise Refused(_busy(tpa, active), status=409) from None


async def _recover_blocking_run(tpa: Tpa) -> None:
    """An active run that nothing will finish must not block the TPA: recover it first."""
    active = await PipelineRun.objects.active().filter(tpa_id=tpa.pk).select_related("tpa").afirst()
    if active and (why := await abandoned(active, worker_lost_after(), timezone.now())):
        await recover(active, why)


def _busy(tpa: Tpa, active: PipelineRun | None) -> str:
    if active is None:
        return f"Another run of {tpa.code} was just started; wait for it to finish."
    return f"Run {active.pk} of {tpa.code} is {active.status}; wait for it to finish or cancel it."


def _start_run(tpa_id: int, user: Any, enqueue: bool) -> PipelineRun:
    with transaction.atomic():
        # The TPA's row lock serialises starts: the second one sees the first one's run.
        tpa = Tpa.objects.select_for_update().get(pk=tpa_id)
        if not tpa.active:
            raise Refused(f"{tpa.code} is inactive.", status=409)
        if active := PipelineRun.objects.active().filter(tpa=tpa).first():
            raise Refused(_busy(tpa, active), status=409)
        files = list(IngestionFile.objects.pending().filter(tpa=tpa).order_by("uploaded_at", "id"))
        if not files:
            raise Refused(_nothing_waiting(tpa), status=409)
        run = PipelineRun.objects.create(tpa=tpa, triggered_by=user)
        run.files.set(files)
        PipelineStep.objects.bulk_create(PipelineStep(run=run, name=step, position=n) for n, step in enumerate(Step))
        IngestionFile.objects.filter(pk__in=[f.pk for f in files]).update(
            status=FileStatus.QUEUED, error="", run=run, updated_at=timezone.now()
        )
        if enqueue:
            # django-tasks-db stores the task in this same transaction: the run and its task
            # exist together or not at all, and no worker sees the task before the commit.
            run.task_id = str(run_pipeline.enqueue(run.pk).id)
            run.save(update_fields=["task_id"])
    return run


def _nothing_waiting(tpa: Tpa) -> str:
    failed = IngestionFile.objects.filter(tpa=tpa, status=FileStatus.FAILED).count()
    if failed:
        return (
            f"{tpa.code} has no files waiting; {failed} failed "
            f"{'file waits' if failed == 1 else 'files wait'} for you to retry, replace or discard "
            f"{'it' if failed == 1 else 'them'}."
        )
    return f"{tpa.code} has no files waiting: upload one first."


async def cancel_run(run: PipelineRun, user: Any) -> PipelineRun:
    """Cancel a queued run at once, or ask a running one to stop (its worker aborts the
    Snowflake call within a second). Its unfinished files wait for the next run."""
    who = user.get_username() if _who(user) else "a command"
    now = timezone.now()
    if run.status == RunStatus.QUEUED:
        message = f"Cancelled by {who} before it started."
        if await PipelineRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).aupdate(
            status=RunStatus.CANCELLED, error=message, finished_at=now, cancelled_by=who, cancel_requested_at=now
        ):
            await PipelineStep.objects.filter(run=run, status=StepStatus.PENDING).aupdate(status=StepStatus.SKIPPED)
            await (
                IngestionFile.objects.filter(run=run)
                .exclude(status__in=[FileStatus.FAILED, FileStatus.TRANSFORMED])
                .aupdate(status=FileStatus.UPLOADED, error="", run=None, updated_at=now)
            )
            await fail_task(run, RunCancelled, message, now)
    elif run.status == RunStatus.RUNNING:
        if why := run.lost_worker(worker_lost_after(), now):
            await recover(run, why)  # nobody is there to stop it
        else:
            await PipelineRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).aupdate(
                cancel_requested_at=now, cancelled_by=who
            )
    else:
        raise Refused(f"Run {run.pk} is {run.get_status_display()} already; there is nothing to cancel.", status=409)
    return await load_run(run.pk)


async def retry_file(file: IngestionFile) -> IngestionFile:
    """A failed file waits for the next run again (after its cause was fixed, e.g. the mappings)."""
    if not await IngestionFile.objects.filter(pk=file.pk, status=FileStatus.FAILED).aupdate(
        status=FileStatus.UPLOADED, run=None, updated_at=timezone.now()
    ):
        raise Refused(f"{file.stage_name} is {file.status}, not failed: there is nothing to retry.", status=409)
    return await IngestionFile.objects.aget(pk=file.pk)


async def discard_file(file: IngestionFile, user: Any) -> IngestionFile:
    """A failed or waiting file is set aside for good: no run takes it, its content may be
    uploaded again, and its staged copy is removed."""
    who = user.get_username() if _who(user) else "a command"
    if not await IngestionFile.objects.filter(pk=file.pk, status__in=[FileStatus.FAILED, FileStatus.UPLOADED]).aupdate(
        status=FileStatus.DISCARDED,
        run=None,
        error=f"Discarded by {who}. {file.error}".strip(),
        updated_at=timezone.now(),
    ):
        raise Refused(
            f"{file.stage_name} is {file.status}: only a failed or waiting file can be discarded.", status=409
        )
    await snowflake.remove(file.stage_path)
    return await IngestionFile.objects.aget(pk=file.pk)


async def get_run_or_404(tpa: Tpa, run_id: int) -> PipelineRun:
    """The TPA's run `run_id`, loaded for a page or the API; Http404 for another TPA's run."""
    try:
        run = await load_run(run_id)
    except PipelineRun.DoesNotExist:
        raise Http404("No such run.") from None
    if run.tpa_id != tpa.pk:
        raise Http404("No such run.")
    return run


async def get_file_or_404(tpa: Tpa, file_id: int) -> IngestionFile:
    file = await IngestionFile.objects.filter(tpa=tpa, pk=file_id).select_related("tpa").afirst()
    if file is None:
        raise Http404("No such file.")
    return file
