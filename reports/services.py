"""What the pages, the API and the commands share: a report with its filters read and checked."""

from __future__ import annotations

import datetime
import decimal
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404

from project.sources import SourceError
from reports import filters as filtering
from reports.filters import FilterState, MultiMapping, Options
from reports.models import Filter, Panel, Report, User
from reports.runner import load_all_options


async def visible_report(user: User, slug: str) -> Report:
    """The report with its panels and filters: 404 when there is no such report, 403 when the
    user is not in a group it is shared with (page, API and exports alike)."""
    try:
        return await Report.objects.visible_to(user).for_page().aget(slug=slug)
    except Report.DoesNotExist:
        if await Report.objects.filter(slug=slug).aexists():
            raise PermissionDenied("This report is not shared with you; ask its owner for access.") from None
        raise Http404("No such report.") from None


def find_panel(report: Report, panel_id: int) -> Panel:
    for panel in report.panels.all():
        if panel.pk == panel_id:
            return panel
    raise Http404("No such panel in this report.")


@dataclass
class Prepared:
    report: Report
    panels: list[Panel]
    filters: list[Filter]
    state: FilterState
    options: dict[str, Options]
    option_errors: dict[str, SourceError]

    @property
    def stream(self) -> bool:
        """Above six panels the browser's per-origin connection limit makes separate requests wait in rounds."""
        return len(self.panels) > 6


async def prepare(report: Report, data: MultiMapping, *, fresh_options: bool = False) -> Prepared:
    """Load choice options (cached) and read the filter values; no panel query has run yet."""
    items = list(report.filters.all())
    loaded = await load_all_options(items, fresh=fresh_options)
    options = {name: values for name, (values, error) in loaded.items() if error is None}
    state = filtering.parse(items, data, options)
    return Prepared(
        report=report,
        panels=list(report.panels.all()),
        filters=items,
        state=state,
        options=options,
        option_errors={name: error for name, (_, error) in loaded.items() if error is not None},
    )


def is_number(value: Any) -> bool:
    return isinstance(value, int | float | decimal.Decimal) and not isinstance(value, bool)


def chart_data(columns: list[str], rows: list[list[Any]]) -> dict[str, Any] | None:
    """Labels from the first column, one series per other column that holds only numbers."""
    if len(columns) < 2 or not rows:
        return None
    series = [
        index
        for index in range(1, len(columns))
        if all(row[index] is None or is_number(row[index]) for row in rows)
        and any(row[index] is not None for row in rows)
    ]
    if not series:
        return None
    return {
        "labels": [label(row[0]) for row in rows],
        "datasets": [
            {"label": columns[index], "data": [None if row[index] is None else float(row[index]) for row in rows]}
            for index in series
        ],
    }


def label(value: Any) -> str:
    """A value as a table cell or chart label: midnight timestamps as dates, floats without noise."""
    if isinstance(value, datetime.datetime):
        if value.time() == datetime.time(0) and value.tzinfo is None:
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="minutes")
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.4g}"
    if isinstance(value, datetime.date):
        return value.isoformat()
    return "" if value is None else str(value)


def ago(seconds: float | None) -> str:
    """“just now”, “12 s ago”, “4 min ago”, “2 h ago”."""
    if seconds is None:
        return ""
    if seconds < 5:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def headline(value: Any) -> str:
    """A single-number panel's value, with thousands separators."""
    if isinstance(value, bool) or not is_number(value):
        return label(value)
    if isinstance(value, int) or (isinstance(value, decimal.Decimal) and value == value.to_integral_value()):
        return f"{int(value):,}"
    return f"{float(value):,.2f}"
