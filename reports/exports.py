"""CSV and XLSX exports of a panel's full result, read from the source in batches.

Memory stays flat however many rows there are: CSV goes out batch by batch; XLSX is
written by xlsxwriter in constant-memory mode to a temporary file (the zip container
can only be finished at the end) and then sent in chunks. xlsxwriter is synchronous and
CPU-bound, so its calls run on a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime
import decimal
import io
import tempfile
import time
from collections.abc import AsyncIterator
from typing import IO, Any

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils.text import slugify

from project.sources import SourceError
from reports.models import Panel, QueryLog, Report, json_safe
from reports.runner import bind, panel_params
from reports.sql import refuse_unless_read_only

BATCH_SIZE = 5000
CHUNK_SIZE = 64 * 1024
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

Batches = AsyncIterator[tuple[list[str], list[tuple[Any, ...]]]]


def _timeout() -> float:
    return float(settings.REPORTS_EXPORT_TIMEOUT)


async def response(
    report: Report, panel: Panel, params: dict[str, Any], fmt: str, *, user_id: int | None
) -> HttpResponseBase:
    """A streaming download, or the source's error (with its status) if the query fails before any row."""
    bound = panel_params(panel, params)
    started = time.perf_counter()
    batches = panel.source.source.stream(
        panel.sql, bind(panel.source, bound), timeout=_timeout(), batch_size=BATCH_SIZE
    )
    log = QueryLog(
        user_id=user_id,
        report_id=report.pk,
        panel_id=panel.pk,
        trigger=QueryLog.Trigger.EXPORT,
        source=panel.source.connection,
        parameters=json_safe(bound),
        duration_ms=0,
    )
    try:
        # Checked before the stream starts: the generator has not connected yet.
        refuse_unless_read_only(panel.sql, panel.source.dialect, panel.source.connection)
        first = await anext(batches, None)
    except SourceError as exc:
        log.duration_ms, log.error_kind, log.error = (time.perf_counter() - started) * 1000, exc.kind, exc.message
        await log.asave()
        return HttpResponse(exc.message, status=exc.http_status, content_type="text/plain; charset=utf-8")
    body = (_csv if fmt == "csv" else _xlsx)(_counted(first, batches, log, started), panel.title)
    result = StreamingHttpResponse(body, content_type=CONTENT_TYPES[fmt])
    filename = f"{report.slug}-{slugify(panel.title) or panel.pk}.{fmt}"
    result["Content-Disposition"] = f'attachment; filename="{filename}"'
    result["Cache-Control"] = "no-store"
    return result


async def _counted(
    first: tuple[list[str], list[tuple[Any, ...]]] | None, batches: Batches, log: QueryLog, started: float
) -> Batches:
    """The batches, first one included, with the export written to the query log at the end."""
    rows = 0
    try:
        if first is not None:
            rows += len(first[1])
            yield first
            async for columns, batch in batches:
                rows += len(batch)
                yield columns, batch
    except SourceError as exc:
        log.error_kind, log.error = exc.kind, exc.message
        raise
    except BaseException as exc:  # the download was cancelled: note it, then let it end
        log.error_kind, log.error = "cancelled", f"export stopped: {type(exc).__name__}"
        raise
    finally:
        await batches.aclose()
        log.rows, log.duration_ms = rows, (time.perf_counter() - started) * 1000
        with contextlib.suppress(Exception):  # the download matters more than its log line
            await log.asave()


async def _csv(batches: Batches, title: str) -> AsyncIterator[bytes]:
    header_sent = False
    async for columns, rows in batches:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        if not header_sent:
            writer.writerow(columns)
            header_sent = True
        writer.writerows(rows)
        yield buffer.getvalue().encode()


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str | datetime.date | datetime.datetime):
        return value
    if isinstance(value, decimal.Decimal):
        return float(value)
    return str(value)


async def _xlsx(batches: Batches, title: str) -> AsyncIterator[bytes]:
    import xlsxwriter

    with tempfile.TemporaryFile() as output:
        workbook = xlsxwriter.Workbook(
            output, {"constant_memory": True, "remove_timezone": True, "default_date_format": "yyyy-mm-dd"}
        )
        sheet = workbook.add_worksheet(title[:31].translate(str.maketrans("[]:*?/\\", "       ")) or "Export")
        bold = workbook.add_format({"bold": True})
        next_row = 0

        def write(columns: list[str], rows: list[tuple[Any, ...]], start: int) -> None:
            if start == 0:
                sheet.write_row(0, 0, columns, bold)
                start = 1
            for offset, row in enumerate(rows):
                sheet.write_row(start + offset, 0, [_cell(value) for value in row])

        async for columns, rows in batches:
            await asyncio.to_thread(write, columns, rows, next_row)
            next_row = (next_row or 1) + len(rows)
        await asyncio.to_thread(workbook.close)
        await asyncio.to_thread(output.seek, 0)
        while chunk := await asyncio.to_thread(_read, output):
            yield chunk


def _read(output: IO[bytes]) -> bytes:
    return output.read(CHUNK_SIZE)
