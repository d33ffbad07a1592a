"""CSV and XLSX exports of a panel's full result, read from the source in batches.

Values are the database's own: a NUMERIC stays a Decimal (CSV writes its digits, XLSX a
number with a format of its scale, or the panel's column format), dates are dates, and an
empty result still has its header row. The file name says which report, panel and filter
values it holds. Memory stays flat however many rows there are: CSV goes out batch by batch; XLSX is
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
from collections.abc import AsyncGenerator, AsyncIterator
from typing import IO, Any

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils.text import slugify

from project.sources import SourceError
from reports.models import Panel, QueryLog, Report, json_safe
from reports.presentation import CURRENCY_SYMBOLS
from reports.runner import bind, panel_params
from reports.sql import refuse_unless_read_only

BATCH_SIZE = 5000
CHUNK_SIZE = 64 * 1024
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

Batches = AsyncGenerator[tuple[list[str], list[tuple[Any, ...]]]]


def deadline(panel: Panel) -> float:
    """How long an export of `panel` may take: the panel's own timeout when its author set one
    (an export reads every row, not a page's worth, but the author's limit holds), else
    REPORTS_EXPORT_TIMEOUT. The report page states it beside the export links."""
    return panel.effective_timeout if panel.timeout else float(settings.REPORTS_EXPORT_TIMEOUT)


def cut_off(exc: SourceError, rows: int) -> str:
    """The last line of a file whose export stopped half-way, so nobody takes it for the whole."""
    return f"Export cut off: {exc.message or 'it failed'}. This file is incomplete ({rows} rows)."


async def response(
    report: Report, panel: Panel, params: dict[str, Any], fmt: str, *, user_id: int | None
) -> HttpResponseBase:
    """A streaming download, or the source's error (with its status) if the query fails before any row."""
    bound = panel_params(panel, params)
    started = time.perf_counter()
    batches = panel.source.source.stream(
        panel.sql, bind(panel.source, bound), timeout=deadline(panel), batch_size=BATCH_SIZE
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
    body = (_csv if fmt == "csv" else _xlsx)(_counted(first, batches, log, started), panel)
    result = StreamingHttpResponse(body, content_type=CONTENT_TYPES[fmt])
    result["Content-Disposition"] = f'attachment; filename="{file_name(report, panel, bound, fmt)}"'
    result["Cache-Control"] = "no-store"
    return result


def file_name(report: Report, panel: Panel, bound: dict[str, Any], fmt: str) -> str:
    """report_panel_value_value.fmt: the filter values this panel's query used, in its SQL's order."""
    parts = [report.slug, slugify(panel.title) or str(panel.pk)]
    for value in bound.values():
        values = value if isinstance(value, list | tuple) else [value]
        text = "+".join(slugify(_text(item)) for item in values if item not in (None, ""))
        if text:
            parts.append(text)
    return "_".join(parts)[:200] + f".{fmt}"


def _text(value: Any) -> str:
    """A value as CSV writes it: a Decimal's own digits (never an exponent), ISO dates."""
    if isinstance(value, decimal.Decimal):
        return f"{value:f}"
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    return "" if value is None else str(value)


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


async def _csv(batches: Batches, panel: Panel) -> AsyncIterator[bytes]:
    header_sent, written = False, 0
    try:
        async for columns, rows in batches:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            if not header_sent:
                writer.writerow([panel.column_label(column) for column in columns])
                header_sent = True
            writer.writerows([csv_cell(value) for value in row] for row in rows)
            written += len(rows)
            yield buffer.getvalue().encode()
    except SourceError as exc:  # the deadline or the database stopped it after the first rows
        yield f"# {cut_off(exc, written)}\r\n".encode()


def csv_cell(value: Any) -> Any:
    """What csv.writer gets: text and numbers as they are, a Decimal's exact digits."""
    return value if isinstance(value, str | int | float) else _text(value)


# A spreadsheet's numbers are doubles, which Excel shows to 15 significant digits.
EXCEL_DIGITS = 15


def number_format(setting: dict[str, Any], sample: Any) -> str | None:
    """The XLSX number format for a column: its panel setting, else one that fits its values."""
    kind = setting.get("format")
    decimals = setting.get("decimals")
    if kind is None and isinstance(sample, decimal.Decimal):
        exponent = sample.as_tuple().exponent
        kind, decimals = "number", decimals if decimals is not None else (-exponent if isinstance(exponent, int) else 2)
    places = "." + "0" * decimals if decimals else ""
    if kind == "number":
        return f"#,##0{places}"
    if kind == "currency":
        code = setting.get("currency", "USD")
        places = "." + "0" * (2 if decimals is None else decimals) if decimals != 0 else ""
        return f'"{CURRENCY_SYMBOLS.get(code, code + " ")}"#,##0{places}'
    if kind == "percent":
        return f"0{places}%"
    if kind == "text":
        return "@"
    if kind == "date" or type(sample) is datetime.date:
        return "yyyy-mm-dd"
    if isinstance(sample, datetime.datetime):
        return "yyyy-mm-dd hh:mm:ss"
    return None


async def _xlsx(batches: Batches, panel: Panel) -> AsyncIterator[bytes]:
    import xlsxwriter

    with tempfile.TemporaryFile() as output:
        workbook = xlsxwriter.Workbook(output, {"constant_memory": True, "remove_timezone": True})
        title = panel.title[:31].translate(str.maketrans("[]:*?/\\", "       ")).strip()
        sheet = workbook.add_worksheet(title or "Export")
        bold = workbook.add_format({"bold": True})
        formats: dict[str, Any] = {}
        cell_formats: list[Any] = []
        next_row = 0

        def cell_format(code: str | None) -> Any:
            if code is None:
                return None
            return formats.setdefault(code, workbook.add_format({"num_format": code}))

        def write(columns: list[str], rows: list[tuple[Any, ...]], start: int) -> None:
            if start == 0:
                # Formats from the panel's settings, else from the first value seen in each column.
                samples = [next((row[i] for row in rows if row[i] is not None), None) for i in range(len(columns))]
                cell_formats.extend(
                    cell_format(number_format(panel.column_setting(column), sample))
                    for column, sample in zip(columns, samples, strict=True)
                )
                sheet.freeze_panes(1, 0)
                for index, column in enumerate(columns):
                    sheet.set_column(index, index, max(10, min(40, len(panel.column_label(column)) + 2)))
                sheet.write_row(0, 0, [panel.column_label(column) for column in columns], bold)
                start = 1
            for offset, row in enumerate(rows):
                for index, value in enumerate(row):
                    _write_cell(sheet, start + offset, index, value, cell_formats[index])

        try:
            async for columns, rows in batches:
                await asyncio.to_thread(write, columns, rows, next_row)
                next_row = (next_row or 1) + len(rows)
        except SourceError as exc:  # the deadline or the database stopped it after the first rows
            sheet.write_string(next_row or 1, 0, cut_off(exc, max(next_row - 1, 0)), bold)
        await asyncio.to_thread(workbook.close)
        await asyncio.to_thread(output.seek, 0)
        while chunk := await asyncio.to_thread(_read, output):
            yield chunk


def _write_cell(sheet: Any, row: int, column: int, value: Any, cell_format: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        sheet.write_boolean(row, column, value)
    elif isinstance(value, decimal.Decimal) and len(value.as_tuple().digits) > EXCEL_DIGITS:
        sheet.write_string(row, column, _text(value))  # a number would lose digits: keep them all
    elif isinstance(value, decimal.Decimal | int | float):
        sheet.write_number(row, column, float(value), cell_format)
    elif isinstance(value, datetime.date | datetime.datetime):
        sheet.write_datetime(row, column, value, cell_format)
    else:
        sheet.write_string(row, column, value if isinstance(value, str) else str(value), cell_format)


def _read(output: IO[bytes]) -> bytes:
    return output.read(CHUNK_SIZE)
