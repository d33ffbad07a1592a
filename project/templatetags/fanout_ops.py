"""Filters for the operations and cache pages: durations and ratios people can read."""

from __future__ import annotations

import time

from django import template

from project.formatting import human_seconds

register = template.Library()


@register.filter
def seconds(value: float | None) -> str:
    return human_seconds(value)


@register.filter
def ago(unix_time: float | None) -> str:
    return "-" if unix_time is None else f"{human_seconds(time.time() - unix_time)} ago"


@register.filter
def percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1%}"


@register.filter
def ms_figure(milliseconds: float | None) -> str:
    return human_seconds(None if milliseconds is None else milliseconds / 1000)
