"""Template helpers for report pages: a panel's render context, and filter widgets' state."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

from reports.filters import FilterState
from reports.models import Panel, Report
from reports.runner import PanelRun
from reports.services import ago, chart_data, headline, label

register = template.Library()

# A panel shows this many rows; the export has them all.
SHOWN_ROWS = 500


def panel_link(report: Report, panel: Panel, query: str, kind: str) -> str:
    """A panel's fragment ("url") or export ("csv", "xlsx") address with the filters."""
    args: list[object] = [report.slug, panel.pk]
    path = reverse("reports:panel", args=args) if kind == "url" else reverse("reports:export", args=[*args, kind])
    return f"{path}?{query}" if query else path


def panel_urls(report: Report, panel: Panel, query: str) -> dict[str, str]:
    return {kind: panel_link(report, panel, query, kind) for kind in ("url", "csv", "xlsx")}


def panel_context(report: Report, panel: Panel, run: PanelRun, state: FilterState) -> dict[str, Any]:
    number = None
    if panel.visualization == Panel.Visualization.NUMBER and run.rows and run.columns:
        number = {"label": run.columns[0], "value": run.rows[0][0]}
    return {
        "report": report,
        "panel": panel,
        "run": run,
        "rows": run.rows[:SHOWN_ROWS],
        "more_rows": max(0, run.row_count - SHOWN_ROWS),
        "chart": chart_data(run.columns, run.rows) if panel.is_chart and run.ok else None,
        "number": number,
        "updated": ago(run.age),
        "urls": panel_urls(report, panel, state.query_string()),
    }


@register.simple_tag
def panel_url(report: Report, panel: Panel, state: FilterState, kind: str = "url") -> str:
    # Only the one asked for: the layout asks three times per panel (bench/profile.py).
    return panel_link(report, panel, state.query_string(), kind)


@register.filter
def cell(value: Any) -> str:
    return label(value)


@register.filter
def big(value: Any) -> str:
    return headline(value)


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
