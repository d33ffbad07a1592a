"""Filter values: parsed, typed and validated before any panel query runs.

A report's filter state lives in the query string, so a view can be shared by URL:

    ?tpa=ACME&region=EU&region=US&period_from=2026-01-01&period_to=2026-01-31&min_amount=100

A filter whose parameters are all absent from the query string takes its default; one
that is present but empty is empty (the filter bar submits every filter, with a hidden
empty value before each multiple choice so that clearing it is not mistaken for absence).
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

from django.utils import timezone

from reports.models import Filter

RELATIVE_DATE = re.compile(r"^(?:today)?\s*(?P<sign>[+-])\s*(?P<days>\d+)\s*d$|^today$", re.IGNORECASE)
NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
TEXT_LIMIT = 200
# Nothing a person types into a filter (tabs and line breaks pass); Postgres also refuses
# NUL in text and JSON, so it would fail the query log.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

Options = list[tuple[str, str]]


class MultiMapping(Protocol):
    def getlist(self, key: str) -> list[str]: ...

    def __contains__(self, key: object) -> bool: ...


class ListMapping:
    """A plain `{name: [values]}` dict with QueryDict's `getlist`, for the API and the command."""

    def __init__(self, data: Mapping[str, str | Iterable[str]]) -> None:
        self.data = {key: [value] if isinstance(value, str) else list(value) for key, value in data.items()}

    def getlist(self, key: str) -> list[str]:
        return self.data.get(key, [])

    def __contains__(self, key: object) -> bool:
        return key in self.data


@dataclass
class FilterState:
    """What the user asked for: typed values, the text to show back, and any errors."""

    filters: list[Filter]
    values: dict[str, Any] = field(default_factory=dict)
    shown: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def is_valid(self) -> bool:
        return not self.errors

    def params(self) -> dict[str, Any]:
        """The bound parameters every panel of the report receives."""
        params: dict[str, Any] = {}
        for item in self.filters:
            value = self.values.get(item.name)
            if item.kind == Filter.Kind.DATE_RANGE:
                start, end = value or (None, None)
                params[f"{item.name}_from"], params[f"{item.name}_to"] = start, end
            else:
                params[item.name] = value
        return params

    def query_string(self) -> str:
        """The state as a query string (for panel URLs and shared links)."""
        return urlencode([(key, value) for key, values in self.shown.items() for value in values])


def today() -> datetime.date:
    return timezone.localdate()


def parse_date(text: str, *, relative: bool = False) -> datetime.date:
    text = text.strip()
    if relative and (match := RELATIVE_DATE.match(text)):
        if not match.group("days"):
            return today()
        days = int(match.group("days"))
        return today() + datetime.timedelta(days=days if match.group("sign") == "+" else -days)
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"“{text}” is not a date (YYYY-MM-DD)") from None


def parse_number(text: str) -> int | float:
    text = text.strip().replace(",", "")
    if not NUMBER.match(text):
        raise ValueError(f"“{text}” is not a number")
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"“{text}” is not a number")
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else number


def _raw(item: Filter, data: MultiMapping, use_defaults: bool) -> list[str]:
    """The submitted text of a filter (two entries for a date range)."""
    if item.kind == Filter.Kind.DATE_RANGE:
        if use_defaults:
            start, _, end = item.default.partition("..")
            return [start.strip(), end.strip()]
        return [_first(data.getlist(f"{item.name}_from")), _first(data.getlist(f"{item.name}_to"))]
    if use_defaults:
        if item.kind == Filter.Kind.MULTI_CHOICE:
            return [part.strip() for part in item.default.split(",") if part.strip()]
        return [item.default] if item.default else []
    values = [value.strip() for value in data.getlist(item.name) if value.strip()]
    return values if item.kind == Filter.Kind.MULTI_CHOICE else values[:1]


def _first(values: list[str]) -> str:
    return values[0].strip() if values else ""


def parse(filters: list[Filter], data: MultiMapping, options: Mapping[str, Options] | None = None) -> FilterState:
    """Read and check every filter; `options` (by filter name) limits choices to known values."""
    state = FilterState(filters)
    for item in filters:
        use_default = not any(name in data for name in item.parameter_names)
        raw = _raw(item, data, use_default)
        try:
            state.values[item.name] = value = _typed(item, raw, (options or {}).get(item.name))
        except ValueError as exc:
            state.errors[item.name] = str(exc)
            value = None
        state.shown.update(_shown(item, raw, value))
    return state


def _shown(item: Filter, raw: list[str], value: Any) -> dict[str, list[str]]:
    """The text a form shows back: relative dates such as “-30d” as the dates they mean."""
    if item.kind == Filter.Kind.DATE_RANGE:
        if value:
            raw = [value[0].isoformat(), value[1].isoformat()]
        return {f"{item.name}_from": [raw[0]], f"{item.name}_to": [raw[1]]}
    if item.kind == Filter.Kind.DATE and value:
        raw = [value.isoformat()]
    return {item.name: raw or [""]}


def _typed(item: Filter, raw: list[str], options: Options | None) -> Any:
    present = [value for value in raw if value]
    if not present:
        if item.required:
            raise ValueError("This filter is required")
        return [] if item.kind == Filter.Kind.MULTI_CHOICE else None
    match item.kind:
        case Filter.Kind.DATE:
            return parse_date(present[0], relative=True)
        case Filter.Kind.DATE_RANGE:
            if len(present) < 2:
                raise ValueError("Give both ends of the range")
            start, end = parse_date(raw[0], relative=True), parse_date(raw[1], relative=True)
            if start > end:
                raise ValueError("The range ends before it starts")
            return (start, end)
        case Filter.Kind.NUMBER:
            return parse_number(present[0])
        case Filter.Kind.TEXT:
            if len(present[0]) > TEXT_LIMIT:
                raise ValueError(f"At most {TEXT_LIMIT} characters")
            if CONTROL.search(present[0]):
                raise ValueError("Control characters (such as NUL) are not allowed")
            return present[0]
        case Filter.Kind.CHOICE | Filter.Kind.MULTI_CHOICE:
            if options is not None:
                known = {value for value, _ in options}
                if unknown := [value for value in present if value not in known]:
                    raise ValueError(f"Not one of the options: {', '.join(unknown)}")
            return present if item.kind == Filter.Kind.MULTI_CHOICE else present[0]
    raise ValueError(f"Unknown filter kind {item.kind}")
