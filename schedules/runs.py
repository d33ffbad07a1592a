"""What a run does, in the task worker: refresh the report, then send and check.

    await execute(run_id)

1. The report is opened as the schedule's owner (`open_report`: their access, today's
   filter defaults); an owner who lost access stops the schedule with a note.
2. Every panel runs with `fresh=True` through the report runner, which stores each result
   under the very key the page reads (panel-results): the next person with these filters
   gets every panel from the cache.
3. Subscriptions whose owner still sees the report get one e-mail each (the PDF, rendered
   here from these runs, and the panels' CSV); alerts compare a panel's first-row value and
   notify only when their state changes. Each message is a Delivery, sent by its own task.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404
from django.utils import timezone

from reports.filters import ListMapping
from reports.models import QueryLog, User
from reports.runner import PanelRun
from reports.services import InvalidFilters, Prepared, open_report, run_panels
from schedules.models import Alert, Delivery, Run, Schedule, Subscription, split_addresses
from schedules.pdf import PdfError, render_pdf

logger = logging.getLogger(__name__)


class RunFailed(Exception):
    """The run cannot go on; the message is what its history shows."""


def lost_access(user: Any, what: str) -> str:
    return f"Stopped {timezone.now():%Y-%m-%d %H:%M} UTC: {user.get_username()} may no longer see this report ({what})."


async def open_as(user: User, run: Run) -> Prepared:
    """The report as `user` may see it now, with the run's filter values."""
    return await open_report(user, run.report.slug, ListMapping(run.filters))


async def can_see(user: User, run: Run) -> bool:
    try:
        await open_report(user, run.report.slug, ListMapping({}), check=False)
    except (PermissionDenied, Http404):
        return False
    return True


def json_value(value: Any) -> Any:
    """Decimals, dates and the like as the JSON columns store them."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def panel_summary(runs: list[PanelRun]) -> list[dict[str, Any]]:
    """What the history shows and the CSV attachments are written from (JSON-safe)."""
    data = [
        {
            "panel_id": run.panel_id,
            "title": run.title,
            "columns": run.columns,
            "rows": run.rows,
            "row_count": run.row_count,
            "duration_ms": run.duration_ms,
            "error": run.error["message"] if run.error else "",
        }
        for run in runs
    ]
    return list(json_value(data))


def lost_after() -> datetime.timedelta:
    return datetime.timedelta(seconds=settings.SCHEDULES_RUN_LOST_AFTER)


async def expire_lost() -> int:
    """Runs and deliveries whose worker died in the middle (killed, out of memory) fail with a
    note instead of showing "running" or "pending" forever; the number of them."""
    from django_tasks_db.models import DBTaskResult

    now = timezone.now()
    cutoff = now - lost_after()
    runs = await Run.objects.filter(status=Run.Status.RUNNING, started_at__lt=cutoff).aupdate(
        status=Run.Status.FAILED,
        finished_at=now,
        error=f"No result {settings.SCHEDULES_RUN_LOST_AFTER:g} s after it started: its worker stopped. "
        "The next run starts afresh.",
    )
    # A delivery's task that a worker took and never finished (django-tasks-db leaves it RUNNING).
    stuck = [
        args_kwargs["args"][0]
        async for args_kwargs in DBTaskResult.objects.filter(
            task_path="schedules.tasks.deliver", status="RUNNING", started_at__lt=cutoff
        ).values_list("args_kwargs", flat=True)
    ]
    deliveries = 0
    if stuck:
        deliveries = await Delivery.objects.filter(
            pk__in=stuck, status__in=[Delivery.Status.PENDING, Delivery.Status.RETRYING]
        ).aupdate(
            status=Delivery.Status.FAILED,
            next_attempt_at=None,
            error="Its worker stopped while sending; not tried again, so that nobody gets it twice. "
            "It may or may not have arrived.",
        )
    return runs + deliveries


async def execute(run_id: int) -> str:
    await expire_lost()
    # The task may be delivered twice (a retried worker): only the first start counts.
    if not await Run.objects.filter(pk=run_id, status=Run.Status.QUEUED).aupdate(
        status=Run.Status.RUNNING, started_at=timezone.now()
    ):
        return str(await Run.objects.filter(pk=run_id).values_list("status", flat=True).aget())
    run = await Run.objects.select_related("report", "schedule__owner", "requested_by").aget(pk=run_id)
    try:
        await _execute(run)
    except RunFailed as failed:
        run.status, run.error = Run.Status.FAILED, str(failed)
    except Exception as exc:
        logger.exception("run %s failed", run.pk)
        run.status, run.error = Run.Status.FAILED, f"{type(exc).__name__}: {exc}"
    else:
        run.status = Run.Status.DONE
    run.finished_at = timezone.now()
    await run.asave(update_fields=["status", "error", "finished_at", "panels", "pdf", "pdf_ms"])
    if run.schedule_id:
        await Schedule.objects.filter(pk=run.schedule_id).aupdate(last_run_at=run.finished_at)
    await _enqueue_deliveries(run)
    return str(run.status)


async def _execute(run: Run) -> None:
    owner = run.schedule.owner if run.schedule else run.requested_by
    if owner is None:
        raise RunFailed("Nobody to run the report as.")
    try:
        prepared = await open_as(owner, run)
    except (PermissionDenied, Http404):
        note = lost_access(owner, "schedule" if run.schedule else "PDF")
        if run.schedule is not None:
            await Schedule.objects.filter(pk=run.schedule.pk).aupdate(enabled=False, note=note)
        raise RunFailed(note) from None
    except InvalidFilters as invalid:
        errors = "; ".join(f"{name}: {message}" for name, message in invalid.errors.items())
        raise RunFailed(f"The saved filter values no longer check out: {errors}") from None
    runs = await run_panels(prepared, owner, trigger=QueryLog.Trigger.SCHEDULE, fresh=run.trigger != Run.Trigger.PDF)
    run.panels = panel_summary(runs)
    if run.trigger == Run.Trigger.PDF:
        await _render(run, prepared, runs)
        return
    assert run.schedule is not None
    subscriptions = [item async for item in run.schedule.subscriptions.filter(active=True).select_related("owner")]
    if subscriptions:
        await _subscriptions(run, prepared, runs, subscriptions)
    async for alert in run.schedule.alerts.filter(active=True).select_related("owner", "panel"):
        await check_alert(run, alert, runs)


async def _render(run: Run, prepared: Prepared, runs: list[PanelRun]) -> None:
    started = time.perf_counter()
    try:
        run.pdf = await render_pdf(prepared, runs)
    except PdfError as exc:
        raise RunFailed(f"The PDF could not be made: {exc}") from exc
    run.pdf_ms = round((time.perf_counter() - started) * 1000, 1)


async def _subscriptions(run: Run, prepared: Prepared, runs: list[PanelRun], items: list[Subscription]) -> None:
    rendered = False
    for subscription in items:
        if not await can_see(subscription.owner, run):
            subscription.active, subscription.note = False, lost_access(subscription.owner, "subscription")
            await subscription.asave(update_fields=["active", "note"])
            await Delivery.objects.acreate(
                run=run,
                kind=Delivery.Kind.EMAIL,
                purpose=Delivery.Purpose.SUBSCRIPTION,
                subscription=subscription,
                recipients="",
                status=Delivery.Status.SKIPPED,
                error=subscription.note,
            )
            continue
        if not rendered:
            # One PDF per run, from the runs that refreshed the cache: every subscriber gets the same.
            await _render(run, prepared, runs)
            await run.asave(update_fields=["panels", "pdf", "pdf_ms"])
            rendered = True
        await Delivery.objects.acreate(
            run=run,
            kind=Delivery.Kind.EMAIL,
            purpose=Delivery.Purpose.SUBSCRIPTION,
            subscription=subscription,
            recipients=", ".join(await sync_to_async(subscription.recipient_list)()),
        )


def first_value(alert: Alert, runs: list[PanelRun]) -> tuple[bool, Any]:
    """(found, value) of the alert's column in its panel's first row."""
    for run in runs:
        if run.panel_id == alert.panel_id and run.ok and run.rows and alert.column in run.columns:
            value = run.rows[0][run.columns.index(alert.column)]
            return True, json_value(value)
    return False, None


async def check_alert(run: Run, alert: Alert, runs: list[PanelRun]) -> None:
    """Notify once per change of state: on crossing, and once more on clearing."""
    if not await can_see(alert.owner, run):
        alert.active, alert.note = False, lost_access(alert.owner, "alert")
        await alert.asave(update_fields=["active", "note"])
        return
    found, value = first_value(alert, runs)
    if not found:
        return  # a failed or empty panel says nothing about the condition: keep the state
    new = Alert.State.TRIGGERED if alert.holds(value) else Alert.State.OK
    # Conditional on the state read: two runs checking at once notify once.
    changed = await Alert.objects.filter(pk=alert.pk, state=alert.state).aupdate(state=new, last_value=value)
    if not changed or new == alert.state or (alert.state == Alert.State.UNKNOWN and new == Alert.State.OK):
        return
    purpose = Delivery.Purpose.ALERT_FIRED if new == Alert.State.TRIGGERED else Delivery.Purpose.ALERT_CLEARED
    payload = {
        "alert": alert.pk,
        "report": run.report.slug,
        "report_title": run.report.title,
        "panel": alert.panel.title,
        "column": alert.column,
        "condition": alert.condition,
        "threshold": alert.threshold_text or None,
        "value": value,
        "previous_value": alert.last_value,
        "state": new,
        "run": run.pk,
        "checked_at": timezone.now().isoformat(),
    }
    owner = [alert.owner.email] if alert.owner.email else []
    addresses = list(dict.fromkeys([*owner, *split_addresses(alert.addresses)]))
    if addresses:
        await Delivery.objects.acreate(
            run=run,
            kind=Delivery.Kind.EMAIL,
            purpose=purpose,
            alert=alert,
            recipients=", ".join(addresses),
            payload=payload,
        )
    if alert.webhook_url:
        await Delivery.objects.acreate(
            run=run,
            kind=Delivery.Kind.WEBHOOK,
            purpose=purpose,
            alert=alert,
            recipients=alert.webhook_url,
            payload=payload,
        )


async def _enqueue_deliveries(run: Run) -> None:
    from schedules.tasks import deliver

    async for delivery in Delivery.objects.filter(run=run, status=Delivery.Status.PENDING):
        await deliver.aenqueue(delivery.pk)
