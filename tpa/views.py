from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import AsyncPaginator
from django.db import IntegrityError, transaction
from django.db.models import Count, Prefetch
from django.forms import modelformset_factory
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from project import cache
from project.ratelimit import ratelimit
from project.sources import SourceError
from tpa import snowflake, uploads
from tpa.cache import bump_mappings_version, invalidate, master_data, stale_warning, tpa_list
from tpa.forms import FieldMappingForm, FieldMappingFormSet
from tpa.models import (
    Access,
    FieldMapping,
    FileStatus,
    IngestionFile,
    PipelineRun,
    PipelineStep,
    Tpa,
    access_for,
    get_tpa_or_404,
)
from tpa.runs import cancel_run, discard_file, get_file_or_404, get_run_or_404, retry_file, start_run
from tpa.staging import Refused


@require_GET
async def tpa_index(request: HttpRequest) -> HttpResponse:
    access = await access_for(await request.auser())
    if access < Access.VIEW:
        raise PermissionDenied("You have no access to TPAs.")
    # TPA permissions are app-wide (Tpa.objects.visible_to): whoever may see one sees them all,
    # so the cached list needs no per-user filter, and the page no query on tpa_tpa.
    counts: dict[str, dict[str, int]] = {}
    async for row in IngestionFile.objects.values("tpa__code", "status").annotate(n=Count("id")):
        counts.setdefault(row["tpa__code"], {})[row["status"]] = row["n"]
    waiting = (FileStatus.UPLOADED, FileStatus.QUEUED, FileStatus.LOADING, FileStatus.LOADED)
    rows = [
        (tpa, counts.get(tpa.code, {}), sum(counts.get(tpa.code, {}).get(s, 0) for s in waiting))
        for tpa in await tpa_list()
    ]
    return render(request, "tpa/list.html", {"rows": rows, "statuses": FileStatus, "access": access})


async def _panel(coro: Any) -> Any:
    """A panel's result, or its error: one slow or failing panel never sinks the page."""
    try:
        return await coro
    except (SourceError, ValueError) as exc:
        return {"error": getattr(exc, "message", str(exc))}


def _page(request: HttpRequest, name: str) -> int:
    try:
        return max(1, int(request.GET.get(name, "1")))
    except ValueError:
        return 1


@dataclass(frozen=True, slots=True)
class Paged:
    """One page of a list, with what the pager (templates/tpa/_pager.html) shows."""

    items: list[Any]
    number: int
    pages: int
    count: int
    noun: str  # singular; the template adds the plural
    previous: str  # the URL of the newer page, or ""
    next: str  # the URL of the older page, or ""


async def paged(request: HttpRequest, queryset: Any, param: str, per_page: int, noun: str) -> Paged:
    """A page of `queryset` by the page number in `?<param>=`: a number past the end gives the
    last page, as a person following an old link expects."""
    paginator = AsyncPaginator(queryset, per_page)
    page = await paginator.aget_page(_page(request, param))
    pages = await paginator.anum_pages()

    def url(number: int) -> str:
        query = request.GET.copy()  # other lists' pages and filters stay as they are
        query[param] = str(number)
        return f"?{query.urlencode()}"

    return Paged(
        [item async for item in page],
        page.number,
        pages,
        await paginator.acount(),
        noun,
        url(page.number - 1) if page.number > 1 else "",
        url(page.number + 1) if page.number < pages else "",
    )


async def _bronze_file(request: HttpRequest, tpa: Tpa) -> IngestionFile | None:
    """The file whose bronze rows the page shows: ?bronze_file=<id>, else the newest staged."""
    files = tpa.files.exclude(status__in=[FileStatus.STAGING, FileStatus.DISCARDED])
    if (wanted := request.GET.get("bronze_file", "")).isdigit() and (
        chosen := await files.filter(pk=int(wanted)).afirst()
    ):
        return chosen
    return await files.order_by("-uploaded_at", "-id").afirst()


def run_button(tpa: Tpa, waiting: int, active: PipelineRun | None) -> str:
    """Why the Run button is disabled, or "" when a run can start."""
    if not tpa.active:
        return f"{tpa.code} is inactive."
    if active is not None:
        return f"Run {active.pk} is {active.get_status_display()}: wait for it or cancel it."
    if not waiting:
        return "No file is waiting: upload one first."
    return ""


@require_GET
async def tpa_detail(request: HttpRequest, code: str) -> HttpResponse:
    tpa, access = await get_tpa_or_404(await request.auser(), code)
    master = await master_data(tpa.code)
    files = await paged(request, tpa.files.select_related("uploaded_by"), "files", 25, "file")
    runs = await paged(
        request,
        tpa.runs.select_related("triggered_by").prefetch_related(
            Prefetch("steps", queryset=PipelineStep.objects.order_by("position"))
        ),
        "runs",
        10,
        "run",
    )
    waiting = await tpa.files.pending().acount()
    active = await tpa.runs.active().afirst()
    shown = await _bronze_file(request, tpa)
    columns = shown.columns if shown else master.source_columns
    # The warehouse panels load together, each under its own deadline, and are cached briefly
    # ("tpa-previews") under the state of the files and runs on the page: an upload or a run
    # that moves on changes the key, so what a person just did shows at once.
    state = [(f.pk, f.status) for f in files.items], [(r.pk, r.status) for r in runs.items]

    async def cached(what: str, loader: Callable[[], Awaitable[Any]], *key: Any) -> Any:
        async def load() -> Any:
            return (await cache.load("tpa-previews", (tpa.code, what, state, *key), loader)).value

        return await _panel(load())

    async with asyncio.TaskGroup() as group:
        staged = group.create_task(cached("stage", lambda: snowflake.list_stage(f"{tpa.stage_prefix}/")))
        previews = {
            layer: group.create_task(
                cached(
                    layer,
                    functools.partial(
                        snowflake.preview,
                        layer,
                        tpa.code,
                        _page(request, layer),
                        bronze_columns=columns,
                        silver_table=master.table_name,
                        source_file=shown.stage_path if shown else "",
                    ),
                    _page(request, layer),
                    columns,
                    master.table_name,
                    shown.stage_path if shown else "",
                )
            )
            for layer in ("bronze", "silver", "gold")
        }
    return render(
        request,
        "tpa/detail.html",
        {
            "tpa": tpa,
            "access": access,
            "master": master,
            "files": files,
            "runs": runs,
            "staged": staged.result(),
            "previews": {layer: task.result() for layer, task in previews.items()},
            "max_upload_mib": uploads.max_upload_bytes() / 2**20,
            "can_operate": access >= Access.OPERATE,
            "waiting": waiting,
            "bronze_file": shown,
            "cannot_run": run_button(tpa, waiting, active),
        },
    )


@require_POST
@ratelimit("upload")
async def tpa_upload(request: HttpRequest, code: str) -> HttpResponse:
    tpa, _ = await get_tpa_or_404(await request.auser(), code, Access.OPERATE)
    uploaded = (await sync_to_async(lambda: request.FILES)()).get("file")
    replaces = None
    if request.POST.get("replaces", "").isdigit():
        replaces = await get_file_or_404(tpa, int(request.POST["replaces"]))
    if uploaded is None:
        messages.error(request, "Choose a CSV file to upload.")
    else:
        try:
            file = await uploads.upload(tpa, uploaded.name or "", uploaded.chunks(), request.user, replaces=replaces)
        except Refused as exc:
            messages.error(request, exc.message)
        else:
            rows = f"{file.row_count} row{'' if file.row_count == 1 else 's'}"
            messages.success(request, f"Staged {file.stage_path}: {rows}. Start a run to load it.")
    return HttpResponseRedirect(tpa.get_absolute_url())


@require_POST
@ratelimit("pipeline-start")
async def run_start(request: HttpRequest, code: str) -> HttpResponse:
    tpa, _ = await get_tpa_or_404(await request.auser(), code, Access.OPERATE)
    try:
        run = await start_run(tpa, request.user)
    except Refused as exc:
        messages.error(request, exc.message)
        return HttpResponseRedirect(tpa.get_absolute_url())
    return HttpResponseRedirect(reverse("tpa:run", args=[tpa.code, run.pk]), status=303)


@require_GET
async def run_detail(request: HttpRequest, code: str, run_id: int) -> HttpResponse:
    tpa, access = await get_tpa_or_404(await request.auser(), code)
    run = await get_run_or_404(tpa, run_id)
    return render(request, "tpa/run.html", {"run": run, "tpa": run.tpa, "can_operate": access >= Access.OPERATE})


@require_GET
async def run_steps(request: HttpRequest, code: str, run_id: int) -> HttpResponse:
    """The part of the run page that polls (static/tpa/poll.js) until the run finishes."""
    tpa, access = await get_tpa_or_404(await request.auser(), code)
    run = await get_run_or_404(tpa, run_id)
    return render(request, "tpa/_run_steps.html", {"run": run, "tpa": run.tpa, "can_operate": access >= Access.OPERATE})


@require_POST
async def run_cancel(request: HttpRequest, code: str, run_id: int) -> HttpResponse:
    tpa, _ = await get_tpa_or_404(await request.auser(), code, Access.OPERATE)
    run = await get_run_or_404(tpa, run_id)
    try:
        run = await cancel_run(run, request.user)
    except Refused as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"Run {run.pk} cancelled."
            if run.finished
            else f"Run {run.pk} is stopping: its worker aborts the current step.",
        )
    return HttpResponseRedirect(reverse("tpa:run", args=[tpa.code, run.pk]), status=303)


@require_POST
async def file_action(request: HttpRequest, code: str, file_id: int, action: str) -> HttpResponse:
    """Retry or discard a failed file (the Replace form is an upload with `replaces`)."""
    tpa, _ = await get_tpa_or_404(await request.auser(), code, Access.OPERATE)
    file = await get_file_or_404(tpa, file_id)
    try:
        if action == "retry":
            await retry_file(file)
            messages.success(request, f"{file.stage_name} waits for the next run again.")
        else:
            await discard_file(file, request.user)
            messages.success(request, f"{file.stage_name} is discarded: no run takes it, and it may be uploaded again.")
    except Refused as exc:
        messages.error(request, exc.message)
    return HttpResponseRedirect(tpa.get_absolute_url(), status=303)


@require_GET
async def processing_queue(request: HttpRequest) -> HttpResponse:
    access = await access_for(await request.auser())
    if access < Access.VIEW:
        raise PermissionDenied("You have no access to TPAs.")
    status = request.GET.get("status", "")
    files = IngestionFile.objects.select_related("tpa", "uploaded_by").order_by("-updated_at", "-id")
    if status in FileStatus.values:
        files = files.filter(status=status)
    runs = PipelineRun.objects.active().select_related("tpa", "triggered_by").order_by("created_at", "id")
    return render(
        request,
        "tpa/queue.html",
        {
            "files": await paged(request, files, "page", 50, "file"),
            "runs": [r async for r in runs],  # at most one per TPA
            "status": status,
            "statuses": FileStatus.choices,
        },
    )


MappingFormSet = modelformset_factory(
    FieldMapping, form=FieldMappingForm, formset=FieldMappingFormSet, extra=2, can_delete=True
)


@require_http_methods(["GET", "POST"])
async def edit_mappings(request: HttpRequest, code: str) -> HttpResponse:
    tpa, _ = await get_tpa_or_404(await request.auser(), code, Access.EDIT)

    def handle() -> HttpResponse | None:
        # Forms read the database while validating and rendering: all of it in one thread.
        queryset = FieldMapping.objects.filter(tpa=tpa, target_schema=tpa.target_schema).order_by("id")
        names = list(tpa.target_schema.columns.order_by("position", "id").values_list("name", flat=True))
        kwargs: dict[str, Any] = {"queryset": queryset, "form_kwargs": {"tpa": tpa, "target_names": names}}
        formset = MappingFormSet(request.POST, **kwargs) if request.method == "POST" else MappingFormSet(**kwargs)
        if request.method == "POST" and formset.is_valid():
            try:
                with transaction.atomic():
                    formset.save()
                    bump_mappings_version(tpa.pk)
                return None
            except IntegrityError:
                # Someone saved the same target column at the same moment.
                formset.non_form_errors().append(
                    "The mappings changed while you edited them: reload the page and apply your change again."
                )
        return render(request, "tpa/mappings.html", {"tpa": tpa, "formset": formset})

    if (response := await sync_to_async(handle)()) is not None:
        return response
    # After the commit: a reader that misses now loads the saved rows.
    if warning := stale_warning(await sync_to_async(invalidate)(tpas=False)):
        messages.warning(request, warning)
    else:
        messages.success(request, "Mappings saved. The next run uses them.")
    return HttpResponseRedirect(reverse("tpa:mappings", args=[tpa.code]))
