"""The TPA API, mounted at /api/tpa/ (session auth; see project.api)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from ninja import File, Router, Schema, Status
from ninja.errors import HttpError
from ninja.files import UploadedFile
from pydantic import BaseModel, ConfigDict, TypeAdapter

from project import cache, localcache
from project.ratelimit import acheck, wants_fresh
from tpa import uploads
from tpa.cache import tpa_access, tpa_list_for
from tpa.models import Access, IngestionFile, PipelineRun, get_tpa_or_404
from tpa.pipeline import load_run, wait_for
from tpa.runs import cancel_run, discard_file, get_file_or_404, get_run_or_404, retry_file, start_run
from tpa.staging import Refused

router = Router(tags=["tpa"])


class TpaOut(BaseModel):
    # A plain pydantic model, not ninja's Schema: the list is read from TpaSummary dataclasses
    # (tpa.cache), whose fields are plain attributes, so ninja's per-object DjangoGetter (for
    # ORM relations and resolvers) is not needed: validating 100 of them takes 0.2 ms in
    # pydantic's core instead of 1.2 ms.
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    active: bool
    contact_name: str
    contact_email: str
    target_schema: str


class FileOut(Schema):
    id: int
    tpa: str
    original_name: str
    stage_path: str
    size: int
    sha256: str
    row_count: int
    columns: list[str]
    status: str
    error: str
    uploaded_at: datetime


class StepOut(Schema):
    name: str
    status: str
    rows: int | None
    query_ids: list[str]
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    error: str


class RunOut(Schema):
    id: int
    tpa: str
    status: str
    finished: bool
    error: str
    triggered_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    files: list[str]
    steps: list[StepOut]
    status_url: str
    page_url: str


class Error(Schema):
    detail: str


class RowErrorOut(Schema):
    line: int
    column: str
    value: str
    reason: str


class UploadError(Schema):
    detail: str
    errors: list[RowErrorOut] = []


def file_out(file: IngestionFile, code: str) -> dict[str, Any]:
    return {**{f: getattr(file, f) for f in FileOut.model_fields if f != "tpa"}, "tpa": code}


def run_out(run: PipelineRun) -> dict[str, Any]:
    """The run as the status endpoint and the sync endpoint return it (run loaded by load_run)."""
    code = run.tpa.code
    return {
        "id": run.pk,
        "tpa": code,
        "status": run.status,
        "finished": run.finished,
        "error": run.error,
        "triggered_by": run.triggered_by.get_username() if run.triggered_by else None,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "files": [f.stage_path for f in run.files.all()],
        "steps": [
            {
                "name": s.name,
                "status": s.status,
                "rows": s.rows,
                "query_ids": s.query_ids,
                "started_at": s.started_at,
                "finished_at": s.finished_at,
                "duration_ms": round(s.duration * 1000, 1) if s.duration is not None else None,
                "error": s.error,
            }
            for s in run.steps.all()
        ],
        "status_url": reverse("api:tpa_run_status", args=[code, run.pk]),
        "page_url": reverse("tpa:run", args=[code, run.pk]),
    }


MAX_LIMIT = 500


def _window(response: HttpResponse, total: int, limit: int, offset: int) -> slice:
    """The slice a list answers with; the total goes in X-Total-Count (the body stays a list)."""
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        raise HttpError(400, f"limit must be 1 to {MAX_LIMIT} and offset 0 or more.")
    response["X-Total-Count"] = str(total)
    return slice(offset, offset + limit)


# The list's body, validated and written as JSON in pydantic's core, one call each. Through
# ninja's response path (validate into a wrapper model, dump it to dicts, json.dumps them) the
# same page of three TPAs cost 0.26 ms of the request's 2.9 ms, measured with py-spy in process.
TPA_PAGE = TypeAdapter(list[TpaOut])


@router.get("/tpas", response=list[TpaOut])
async def list_tpas(request: HttpRequest, response: HttpResponse, limit: int = 100, offset: int = 0) -> HttpResponse:
    """The TPAs you may see, by code; `limit` and `offset` page them, X-Total-Count counts them."""
    access, tpas = await tpa_list_for(await request.auser())
    _may_view(access)
    page = tpas[_window(response, len(tpas), limit, offset)]
    response.content = TPA_PAGE.dump_json(TPA_PAGE.validate_python(page, from_attributes=True))
    return response


def _may_view(access: Access) -> None:
    if access < Access.VIEW:
        raise HttpError(403, "You have no access to TPAs.")


async def _visible_codes(user: Any) -> frozenset[str]:
    """The codes of the TPAs `user` may see; 403 for a user who may see none."""
    access, codes = await tpa_access(user)
    _may_view(access)
    return codes


@router.get("/tpas/{code}/files", response=list[FileOut])
async def list_files(
    request: HttpRequest, response: HttpResponse, code: str, status: str = "", limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """A TPA's files, newest first; `limit` and `offset` page them, X-Total-Count counts them."""
    tpa, _ = await get_tpa_or_404(await request.auser(), code)
    files = tpa.files.all() if not status else tpa.files.filter(status=status)
    window = _window(response, await files.acount(), limit, offset)
    return [file_out(f, tpa.code) async for f in files[window]]


@router.post(
    "/tpas/{code}/files", response={201: FileOut, 400: UploadError, 409: Error, 413: Error, 429: Error, 502: Error}
)
async def upload_file(request: HttpRequest, code: str, file: File[UploadedFile], replaces: int | None = None) -> Status:
    """Upload a CSV: checked against the TPA's mappings, refused if a duplicate, staged, recorded.
    `replaces`: the id of a failed file this one corrects (it is discarded once this is staged)."""
    await acheck(request, "upload")
    tpa, _ = await get_tpa_or_404(await request.auser(), code, Access.OPERATE)
    old = await get_file_or_404(tpa, replaces) if replaces is not None else None
    try:
        record = await uploads.upload(tpa, file.name or "", file.chunks(), request.user, replaces=old)
    except Refused as exc:
        errors = [dataclasses.asdict(error) for error in exc.errors]  # the rows that did not fit, if that was it
        return Status(exc.status, {"detail": exc.message, **({"errors": errors} if errors else {})})
    return Status(201, file_out(record, tpa.code))


@router.post("/tpas/{code}/runs", response={202: RunOut, 409: Error, 429: Error})
async def create_run(request: HttpRequest, code: str) -> Status:
    """Start a run in the background; 202 with the status URL to poll."""
    await acheck(request, "pipeline-start")
    tpa, _ = await get_tpa_or_404(await request.auser(), code, Access.OPERATE)
    try:
        run = await start_run(tpa, request.user)
    except Refused as exc:
        return Status(exc.status, {"detail": exc.message})
    return Status(202, run_out(await load_run(run.pk)))


@router.post("/tpas/{code}/runs/sync", response={200: RunOut, 202: RunOut, 409: Error, 429: Error})
async def create_run_and_wait(request: HttpRequest, code: str, timeout: float = 60.0) -> Status:  # noqa: ASYNC109 - the API's query parameter
    """Start a run and wait for it, up to `timeout` seconds (at most TPA_SYNC_MAX_WAIT, 300):
    200 with the finished run, or 202 with the status URL if it is still going."""
    await acheck(request, "pipeline-start")
    tpa, _ = await get_tpa_or_404(await request.auser(), code, Access.OPERATE)
    try:
        run = await start_run(tpa, request.user)
    except Refused as exc:
        return Status(exc.status, {"detail": exc.message})
    limit = float(getattr(settings, "TPA_SYNC_MAX_WAIT", 300.0))
    run = await wait_for(run.pk, max(0.0, min(timeout, limit)))
    return Status(200 if run.finished else 202, run_out(run))


@router.get("/tpas/{code}/runs/{run_id}", response=RunOut, url_name="tpa_run_status")
async def run_status(request: HttpRequest, code: str, run_id: int) -> dict[str, Any]:
    tpa, _ = await get_tpa_or_404(await request.auser(), code)
    return run_out(await get_run_or_404(tpa, run_id))


@router.post("/tpas/{code}/runs/{run_id}/cancel", response={202: RunOut, 409: Error})
async def cancel(request: HttpRequest, code: str, run_id: int) -> Status:
    """Cancel a queued run, or stop a running one (202: poll the status URL until it is cancelled)."""
    tpa, _ = await get_tpa_or_404(await request.auser(), code, Access.OPERATE)
    try:
        run = await cancel_run(await get_run_or_404(tpa, run_id), request.user)
    except Refused as exc:
        return Status(exc.status, {"detail": exc.message})
    return Status(202, run_out(run))


@router.post("/tpas/{code}/files/{file_id}/retry", response={200: FileOut, 409: Error})
async def retry(request: HttpRequest, code: str, file_id: int) -> Status:
    """A failed file waits for the next run again."""
    tpa, _ = await get_tpa_or_404(await request.auser(), code, Access.OPERATE)
    try:
        file = await retry_file(await get_file_or_404(tpa, file_id))
    except Refused as exc:
        return Status(exc.status, {"detail": exc.message})
    return Status(200, file_out(file, tpa.code))


@router.post("/tpas/{code}/files/{file_id}/discard", response={200: FileOut, 409: Error})
async def discard(request: HttpRequest, code: str, file_id: int) -> Status:
    """Set a failed or waiting file aside for good (its content may then be uploaded again)."""
    tpa, _ = await get_tpa_or_404(await request.auser(), code, Access.OPERATE)
    try:
        file = await discard_file(await get_file_or_404(tpa, file_id), request.user)
    except Refused as exc:
        return Status(exc.status, {"detail": exc.message})
    return Status(200, file_out(file, tpa.code))


@router.get(
    "/master-data",
    tags=["tpa"],
    summary="Master data of the TPAs you may see (or of ?tpa=CODE), cached; ?fresh=1 reloads it (rate-limited)",
)
async def master_data(request: HttpRequest, tpa: str = "") -> dict[str, Any]:
    user = await request.auser()
    if tpa:
        await get_tpa_or_404(user, tpa)  # 404 for a TPA the user may not see
        visible = frozenset([tpa])
    else:
        visible = await _visible_codes(user)
    fresh = wants_fresh(request)
    if fresh:
        await acheck(request, "fresh")
    # Fresh: reloaded for everyone; otherwise the copy this process keeps (project.localcache).
    entry = await (
        cache.load_registered("master-data", fresh=True) if fresh else localcache.load_registered("master-data")
    )
    data = {code: value for code, value in entry.value.items() if code in visible}
    return {"data": _plain(data), "cached": entry.hit, "age": round(entry.age, 3), "loaded_at": entry.stored_at}


def _plain(value: Any) -> Any:
    """Cached values are often frozen dataclasses, which the JSON renderer does not know."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value
