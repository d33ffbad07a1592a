"""What the report page's section and /ops/ show: refresh times, schedules, and run history."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch

from reports import filters as filtering
from reports.filters import ListMapping
from reports.models import User
from reports.services import Prepared
from schedules.forms import AlertForm, ScheduleForm, SubscriptionForm
from schedules.models import Delivery, Run, Schedule, user_is_report_owner
from schedules.runs import expire_lost

HISTORY = 10


def same_filters(prepared: Prepared, schedule: Schedule) -> bool:
    """Whether the schedule refreshes what the page shows now (the same bound values)."""
    state = filtering.parse(prepared.filters, ListMapping(schedule.filters), prepared.options)
    return state.is_valid and state.params() == prepared.state.params()


def shown_filters(prepared: Prepared, schedule: Schedule) -> str:
    state = filtering.parse(prepared.filters, ListMapping(schedule.filters), prepared.options)
    labels = {name: item.label for item in prepared.filters for name in item.parameter_names}
    parts = [f"{labels.get(name, name)}: {', '.join(v for v in values if v)}" for name, values in state.shown.items()]
    return " · ".join(part for part in parts if not part.endswith(": ")) or "defaults"


async def section_context(prepared: Prepared, user: User) -> dict[str, Any]:
    report = prepared.report
    can_edit = user_is_report_owner(report, user)
    schedules = [
        schedule
        async for schedule in Schedule.objects.for_report(report).prefetch_related(
            "subscriptions__users", "subscriptions__owner", "alerts__panel"
        )
    ]
    # The page reuses a panel's result for its cache TTL only: a schedule further apart than
    # that leaves the page querying again in between, which the owner should know.
    ttl = min((panel.effective_ttl for panel in prepared.panels), default=None)
    for schedule in schedules:
        schedule.matches_page = same_filters(prepared, schedule)  # type: ignore[attr-defined]
        schedule.filters_text = shown_filters(prepared, schedule)  # type: ignore[attr-defined]
        period = schedule.period_seconds()
        schedule.outlives_cache = ttl is not None and period is not None and period > ttl  # type: ignore[attr-defined]
    matching = [schedule for schedule in schedules if schedule.matches_page and schedule.enabled]  # type: ignore[attr-defined]
    last_refresh = max((s.last_run_at for s in matching if s.last_run_at), default=None)
    next_refresh = min((s.next_run_at for s in matching if s.next_run_at), default=None)
    runs = []
    if can_edit:
        await expire_lost()
        runs = [
            run
            async for run in Run.objects.filter(report=report, schedule__isnull=False)
            .select_related("schedule")
            .prefetch_related(Prefetch("deliveries", Delivery.objects.order_by("pk")))[:HISTORY]
        ]
    latest = {"schedule": schedules[-1].pk} if schedules else {}
    return {
        "report": report,
        "query": prepared.state.query_string(),
        "can_edit": can_edit,
        "schedules": schedules,
        "last_refresh": last_refresh,
        "next_refresh": next_refresh,
        "runs": runs,
        "ttl": ttl,
        # Three forms on one page: ids of their own (both of the last two have "addresses").
        "schedule_form": ScheduleForm(auto_id="schedule_%s") if can_edit else None,
        "subscription_form": SubscriptionForm(report=report, auto_id="subscription_%s", initial=latest)
        if can_edit
        else None,
        "alert_form": AlertForm(report=report, auto_id="alert_%s", initial=latest) if can_edit else None,
    }


async def ops_context() -> dict[str, Any]:
    """Recent runs of every report, and deliveries that are failing or gave up."""
    await expire_lost()
    runs = [run async for run in Run.objects.select_related("report", "schedule").prefetch_related("deliveries")[:20]]
    troubled = [
        delivery
        async for delivery in Delivery.objects.filter(status__in=[Delivery.Status.RETRYING, Delivery.Status.FAILED])
        .select_related("run__report")
        .order_by("-created_at")[:20]
    ]
    return {"schedule_runs": runs, "troubled_deliveries": troubled}
