"""What a person does with pipeline runs: start one (and enqueue its task).

Separate from tpa.pipeline, which executes runs, so that tpa.tasks can import the pipeline
and this module can import the task without a circle.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from tpa.models import FileStatus, IngestionFile, PipelineRun, PipelineStep, Step, Tpa
from tpa.staging import Refused
from tpa.tasks import run_pipeline


async def start_run(tpa: Tpa, user: Any, *, enqueue: bool = True) -> PipelineRun:
    """Create a run over the TPA's pending files and enqueue it; Refused when there is nothing to do."""
    if not tpa.active:
        raise Refused(f"{tpa.code} is inactive.", status=409)
    if active := await PipelineRun.objects.active().filter(tpa=tpa).afirst():
        raise Refused(f"Run {active.pk} of {tpa.code} is {active.status}; wait for it to finish.", status=409)
    files = [f async for f in IngestionFile.objects.pending().filter(tpa=tpa).order_by("uploaded_at", "id")]
    if not files:
        raise Refused(f"{tpa.code} has no files waiting: upload one first.", status=409)
    run = await PipelineRun.objects.acreate(
        tpa=tpa, triggered_by=user if getattr(user, "is_authenticated", False) else None
    )
    await run.files.aset(files)
    await PipelineStep.objects.abulk_create(
        [PipelineStep(run=run, name=step, position=n) for n, step in enumerate(Step.values)]
    )
    await IngestionFile.objects.filter(pk__in=[f.pk for f in files]).aupdate(
        status=FileStatus.QUEUED, error="", updated_at=timezone.now()
    )
    if enqueue:
        result = await run_pipeline.aenqueue(run.pk)
        run.task_id = str(result.id)
        await run.asave(update_fields=["task_id"])
    return run
