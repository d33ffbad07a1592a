"""Template helpers for report pages: a panel's render context, and filter widgets' state."""

from __future__ import annotations

import datetime
import functools
import html
from typing import Any
from urllib.parse import parse_qsl

from django import template
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince

from project.formatting import human_seconds
from reports import exports, presentation
from reports.filters import FilterState
from reports.models import Panel, Report, User
from reports.runner import PanelRun
from reports.services import ago, label

register = template.Library()

# A panel shows this many rows; the export has them all.
SHOWN_ROWS = 500


def panel_link(report: Report, panel: Panel, query: str, kind: str) -> str:
    """A panel's fragment ("url") or export ("csv", "xlsx") address with the filters."""
    path = _panel_path(get_script_prefix(), report.slug, panel.pk, kind)
    return f"{path}?{query}" if query else path


@functools.lru_cache(maxsize=8192)
def _panel_path(prefix: str, slug: str, panel_id: int, kind: str) -> str:
    # reverse() is about 0.08 ms, and a 16-panel page asks 64 times (bench/profile.py): most
    # of the layout's rendering. The answer depends only on these (the prefix is reverse's).
    args: list[object] = [slug, panel_id]
    return reverse("reports:panel", args=args) if kind == "url" else reverse("reports:export", args=[*args, kind])


def panel_urls(report: Report, panel: Panel, query: str) -> dict[str, str]:
    return {kind: panel_link(report, panel, query, kind) for kind in ("url", "csv", "xlsx")}


def panel_context(
    report: Report, panel: Panel, run: PanelRun, state: FilterState, *, user: User | None = None
) -> dict[str, Any]:
    """What `_panel.html` renders. `user` decides whether a failure shows the database's own
    message (staff) or a plain sentence and the reference to quote (everyone else)."""
    rows = run.rows[:SHOWN_ROWS]
    columns = presentation.columns_of(panel, run.columns, rows) if run.ok else []
    number = None
    if panel.visualization == Panel.Visualization.NUMBER and run.ok:
        number = presentation.big_number(panel, columns, rows)
    return {
        "report": report,
        "panel": panel,
        "run": run,
        "columns": columns,
        "rows": [[(column.show(value), column) for column, value in zip(columns, row, strict=True)] for row in rows],
        "more_rows": max(0, run.row_count - SHOWN_ROWS),
        "chart": presentation.chart(panel, columns, rows) if panel.is_chart and run.ok else None,
        "number": number,
        "updated": ago(run.age),
        "urls": panel_urls(report, panel, state.query_string()),
        "show_details": bool(user is not None and user.is_active and getattr(user, "is_staff", False)),
    }


@register.simple_tag
def panel_url(report: Report, panel: Panel, state: FilterState, kind: str = "url") -> str:
    # Only the one asked for: the layout asks three times per panel (bench/profile.py).
    return panel_link(report, panel, state.query_string(), kind)


@register.simple_tag
def table_rows(rows: list[list[tuple[str, presentation.Column]]], panel: Panel, more_rows: int) -> SafeString:
    """A shown table's rows; the last is marked as a period still in progress when the
    panel says its last period is partial and that row is the result's last.

    Built here rather than with `{% for %}` over rows and cells: the template loops cost
    about 15 µs a cell, 39 ms on the event loop for a panel of 500 rows of 6 columns, where
    this takes 6 ms (bench/render.py). Each cell is escaped as `{{ text }}` would escape it."""
    partial_last = panel.partial_last and not more_rows
    cells: dict[str, str] = {}
    parts = []
    last = len(rows) - 1
    for index, row in enumerate(rows):
        partial = partial_last and index == last
        parts.append('<tr class="partial" title="A period still in progress">' if partial else "<tr>")
        for text, column in row:
            if (opening := cells.get(column.align)) is None:
                opening = cells[column.align] = format_html('<td class="align-{}">', column.align)
            # conditional_escape's rule (Django's escape is html.escape), without a SafeString per cell
            shown = text.__html__() if hasattr(text, "__html__") else html.escape(str(text))
            parts.append(f"{opening}{shown}</td>")
        parts.append("</tr>")
    return mark_safe("".join(parts))  # noqa: S308 - every piece above is escaped or fixed markup


@register.filter
def cell(value: Any) -> str:
    return label(value)


@register.filter
def shown(state: FilterState, name: str) -> list[str]:
    return state.shown.get(name, [""])


@register.filter
def first_shown(state: FilterState, name: str) -> str:
    values = state.shown.get(name) or [""]
    return values[0]


@register.filter
def error_for(state: FilterState, name: str) -> str:
    return state.errors.get(name, "")


@register.filter
def options_for(options: dict[str, list[tuple[str, str]]], name: str) -> list[tuple[str, str]]:
    return options.get(name, [])


@register.filter
def ms(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


@register.filter
def option_error(errors: dict[str, Any], name: str) -> str:
    error = errors.get(name)
    return str(error) if error else ""


@register.filter
def filter_values(query_string: str) -> str:
    """A recent run's filter values, for reading: "2026-01-01 · 2026-03-31 · ACME"."""
    return " · ".join(value for _, value in parse_qsl(query_string) if value)


@register.filter
def since(moment: datetime.datetime) -> str:
    """“just now” under a minute, else Django's “3 hours ago”."""
    if timezone.now() - moment < datetime.timedelta(minutes=1):
        return "just now"
    return f"{timesince(moment)} ago"


@register.filter
def export_deadline(panel: Panel) -> str:
    """How long an export of the panel may run, as the page states it beside the links."""
    return human_seconds(exports.deadline(panel))
