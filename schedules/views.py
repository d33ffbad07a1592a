"""Schedules on the report page: the section (refresh times, management, history), its forms,
and the on-demand PDF (202 with a status URL, polled)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError
from django.db.models import Model
from django.forms import ModelForm
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse, QueryDict
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from reports.models import Report
from reports.services import InvalidFilters, open_report, visible_report
from schedules.forms import AlertForm, ScheduleForm, SubscriptionForm, errors_text
from schedules.history import section_context
from schedules.models import Alert, Run, Schedule, Subscription, user_is_report_owner
from schedules.runs import expire_lost
from schedules.scheduler import AlreadyQueued, run_now

KINDS: dict[str, type[Schedule | Subscription | Alert]] = {
    "schedule": Schedule,
    "subscription": Subscription,
    "alert": Alert,
}


async def owned_report(request: HttpRequest, slug: str) -> tuple[Report, Any]:
    """The report, for its owner (or a superuser) only: others may see it but not schedule it."""
    user = await request.auser()
    report = await visible_report(user, slug)
    if not user_is_report_owner(report, user):
        raise PermissionDenied("Only the report's owner can change its schedules; staff can in the admin.")
    return report, user


def back(report: Report, query: str = "") -> HttpResponseRedirect:
    return HttpResponseRedirect(report.get_absolute_url() + (f"?{query}" if query else "") + "#schedules")


async def save(request: HttpRequest, form: ModelForm[Any], what: str, done: Callable[[Any], str]) -> None:
    """Validate and save on a thread (model forms query), and say how it went."""
    if not await sync_to_async(form.is_valid)():
        messages.error(request, f"The {what} was not saved. {errors_text(form)}")
        return
    try:
        saved = await sync_to_async(form.save)()
    except IntegrityError as exc:
        # A constraint on fields the form does not show (the report, the filters), or two
        # submissions at once: the database decides, and its constraint says why.
        messages.error(request, f"The {what} was not saved. Form: {violated(form.instance, exc)}")
        return
    messages.success(request, done(saved))


def violated(instance: Model, exc: IntegrityError) -> str:
    for constraint in instance._meta.constraints:
        if constraint.name in str(exc):
            return str(constraint.get_violation_error_message())
    return "it conflicts with one saved already."


def scheduled(schedule: Schedule) -> str:
    return f"Scheduled {schedule.describe()}; first run {schedule.next_run_at:%Y-%m-%d %H:%M} UTC."


@require_GET
async def section(request: HttpRequest, slug: str) -> HttpResponse:
    user = await request.auser()
    prepared = await open_report(user, slug, request.GET, check=False)
    context = await section_context(prepared, user)
    # The forms' choice fields read their options while rendering: on a thread, not the loop.
    html = await sync_to_async(render_to_string)("schedules/_section.html", context, request)
    return HttpResponse(html)


@require_POST
async def add_schedule(request: HttpRequest, slug: str) -> HttpResponse:
    report, user = await owned_report(request, slug)
    query = request.POST.get("filters", "")
    values = QueryDict(query)
    try:
        await open_report(user, slug, values)
    except InvalidFilters as invalid:
        problems = "; ".join(f"{name}: {message}" for name, message in invalid.errors.items())
        messages.error(request, f"Fix the filters before scheduling: {problems}")
        return back(report, query)
    form = ScheduleForm(request.POST, instance=Schedule(report=report, owner=user, filters=dict(values.lists())))
    await save(request, form, "schedule", scheduled)
    return back(report, query)


async def _schedule_of(report: Report, schedule_id: int) -> Schedule:
    try:
        return await Schedule.objects.select_related("report").aget(pk=schedule_id, report=report)
    except Schedule.DoesNotExist:
        raise Http404("No such schedule on this report.") from None


@require_POST
async def add_subscription(request: HttpRequest, slug: str) -> HttpResponse:
    report, user = await owned_report(request, slug)
    form = SubscriptionForm(request.POST, report=report, instance=Subscription(owner=user))
    await save(request, form, "subscription", lambda it: f"Subscribed: the PDF goes out {it.schedule.describe()}.")
    return back(report, request.POST.get("filters", ""))


@require_POST
async def add_alert(request: HttpRequest, slug: str) -> HttpResponse:
    report, user = await owned_report(request, slug)
    form = AlertForm(request.POST, report=report, instance=Alert(owner=user))
    await save(request, form, "alert", lambda it: f"Alert saved: {it}, checked {it.schedule.describe()}.")
    return back(report, request.POST.get("filters", ""))


@require_POST
async def remove(request: HttpRequest, slug: str, kind: str, item_id: int) -> HttpResponse:
    report, _ = await owned_report(request, slug)
    model = KINDS.get(kind)
    if model is None:
        raise Http404("Nothing of that kind to remove.")
    lookup = {"report": report} if model is Schedule else {"schedule__report": report}
    deleted, _ = await model.objects.filter(pk=item_id, **lookup).adelete()
    if deleted:
        messages.success(request, f"The {kind} was removed.")
    else:
        messages.info(request, f"That {kind} was already gone.")
    return back(report, request.POST.get("filters", ""))


@require_POST
async def run_schedule(request: HttpRequest, slug: str, schedule_id: int) -> HttpResponse:
    report, _ = await owned_report(request, slug)
    schedule = await _schedule_of(report, schedule_id)
    try:
        run = await sync_to_async(run_now)(schedule)
    except AlreadyQueued as queued:
        messages.info(request, str(queued))
    else:
        messages.success(request, f"Run {run.pk} queued; its outcome shows in the history below.")
    return back(report, request.POST.get("filters", ""))


def _status(run: Run) -> dict[str, Any]:
    slug = run.report.slug
    return {
        "id": run.pk,
        "status": run.status,
        "error": run.error,
        "status_url": reverse("schedules:pdf_status", args=[slug, run.pk]),
        "pdf_url": reverse("schedules:pdf_file", args=[slug, run.pk]) if run.status == Run.Status.DONE else None,
    }


@require_POST
async def request_pdf(request: HttpRequest, slug: str) -> JsonResponse:
    """Queue the page as a PDF, with the page's filter values; 202 and the URL to poll."""
    from schedules.tasks import execute_run

    user = await request.auser()
    try:
        prepared = await open_report(user, slug, request.GET)
    except InvalidFilters as invalid:
        return JsonResponse({"errors": invalid.errors}, status=400)
    filters = {key: values for key, values in request.GET.lists() if key != "fresh"}
    run = await Run.objects.acreate(
        report=prepared.report, requested_by_id=user.pk, trigger=Run.Trigger.PDF, filters=filters
    )
    run.task_id = str((await execute_run.aenqueue(run.pk)).id)
    await run.asave(update_fields=["task_id"])
    return JsonResponse(_status(run), status=202)


async def _pdf_run(request: HttpRequest, slug: str, run_id: int) -> Run:
    user = await request.auser()
    try:
        # Only the person who asked: the PDF holds what they may see.
        return await Run.objects.select_related("report").aget(
            pk=run_id, report__slug=slug, trigger=Run.Trigger.PDF, requested_by_id=user.pk
        )
    except Run.DoesNotExist:
        raise Http404("No such PDF.") from None


@require_GET
async def pdf_status(request: HttpRequest, slug: str, run_id: int) -> JsonResponse:
    await expire_lost()  # a worker that died must not leave the page polling forever
    run = await _pdf_run(request, slug, run_id)
    return JsonResponse(_status(run), status=200 if run.finished else 202)


@require_GET
async def pdf_file(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    run = await _pdf_run(request, slug, run_id)
    if run.status != Run.Status.DONE or not run.pdf:
        raise Http404("This PDF is not ready.")
    response = HttpResponse(bytes(run.pdf), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{slug}-{run.created_at:%Y%m%d-%H%M}.pdf"'
    return response
