"""How a panel's result reads: column labels, number formats in the user's locale, alignment,
chart series and a single number's comparison.

Column settings come from `Panel.columns`; a column without settings gets a label made from
its SQL name (`PAID_AMOUNT` reads "Paid amount") and a format that fits its values. Numbers
go through Django's localisation (`django.utils.formats`), so the active language decides
the separators.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import re
from dataclasses import dataclass
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils import formats, translation

from reports.models import Align, ColumnFormat, Panel
from reports.services import is_number, label

SQL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
ACRONYMS = {"id": "ID", "tpa": "TPA", "ms": "ms", "sql": "SQL", "url": "URL", "p50": "p50", "p95": "p95"}
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CAD": "CA$", "AUD": "A$", "INR": "₹"}


def humanize(name: str) -> str:
    """`PAID_AMOUNT` and `paid_amount` read "Paid amount"; a quoted "Total paid" stays as it is."""
    if not SQL_NAME.match(name) or not (name.isupper() or name.islower()):
        return name
    words = [ACRONYMS.get(word, word) for word in name.lower().split("_") if word]
    if not words:
        return name
    first = words[0]
    return " ".join([first if first in ACRONYMS.values() else first.capitalize(), *words[1:]])


def _is_identifier_column(name: str) -> bool:
    lowered = name.lower()
    return lowered == "id" or lowered.endswith("_id") or lowered in {"year", "n"}


@dataclass(frozen=True)
class Column:
    name: str
    label: str
    format: str  # a ColumnFormat value, or "" for "as the values come"
    decimals: int | None
    currency: str
    align: str
    numeric: bool

    def show(self, value: Any) -> str:
        """The value as the page shows it, in the active locale."""
        if value is None:
            return ""
        if self.format == ColumnFormat.TEXT or isinstance(value, bool):
            return label(value)
        if self.format == ColumnFormat.DATE and isinstance(value, datetime.date):
            day = value.date() if isinstance(value, datetime.datetime) else value
            return formats.date_format(day, "SHORT_DATE_FORMAT")
        if not is_number(value):
            return label(value)
        if self.format == ColumnFormat.PERCENT:
            return number(decimal.Decimal(str(value)) * 100, 1 if self.decimals is None else self.decimals) + "%"
        if self.format == ColumnFormat.CURRENCY:
            symbol = CURRENCY_SYMBOLS.get(self.currency, self.currency + " ")
            amount = number(abs(value), 2 if self.decimals is None else self.decimals)
            return ("−" if value < 0 else "") + symbol + amount
        if self.format == ColumnFormat.NUMBER:
            return number(value, self.decimals)
        if isinstance(value, int) and _is_identifier_column(self.name):
            return str(value)  # an id or a year reads without separators
        return number(value, None)


def number(value: Any, decimals: int | None) -> str:
    """A number with the locale's separators: `decimals` places, else the value's own (a
    Decimal's scale, two for a float of 1 or more, four significant digits below)."""
    if isinstance(value, decimal.Decimal) and not value.is_finite():
        return str(value)  # "Infinity" as Django writes it, and "NaN", on which Django raises
    if decimals is None:
        if isinstance(value, decimal.Decimal):
            exponent = value.as_tuple().exponent
            decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        elif isinstance(value, float):
            if value != 0 and abs(value) < 1:
                value, decimals = float(f"{value:.4g}"), None
            else:
                decimals = 2
        else:
            decimals = 0
    separators = _separators(translation.get_language())
    if decimals is not None and separators.grouping == 3 and (text := _grouped(value, decimals, separators)):
        return text
    return formats.number_format(value, decimal_pos=decimals, use_l10n=True, force_grouping=True)


@dataclass(frozen=True)
class _Separators:
    decimal: str
    thousands: str
    grouping: int | tuple[int, ...]


@receiver(setting_changed)
def _forget_separators(*, setting: str, **kwargs: Any) -> None:
    if setting in formats.FORMAT_SETTINGS or setting in ("FORMAT_MODULE_PATH", "LANGUAGES", "LANGUAGE_CODE"):
        _separators.cache_clear()


@functools.lru_cache(maxsize=64)
def _separators(language: str | None) -> _Separators:
    # Django looks these up again for every number: three lookups per table cell.
    def get(name: str) -> Any:
        return formats.get_format(name, language, use_l10n=True)

    grouping = get("NUMBER_GROUPING")
    return _Separators(get("DECIMAL_SEPARATOR"), get("THOUSAND_SEPARATOR"), grouping)


def _grouped(value: Any, decimals: int, separators: _Separators) -> str | None:
    """What `formats.number_format(value, decimals, force_grouping=True)` answers for groups
    of three digits (digits beyond `decimals` cut, not rounded, as Django does), with the
    grouping done by Python's format spec instead of Django's loop over digits (with the
    separators looked up once per language, a third of the time per numeric cell,
    bench/render.py). None where Django's own path must answer
    (a float in exponent notation or not finite, a Decimal 200 digits long)."""
    if isinstance(value, float):
        text = str(value)
        if "e" in text or "n" in text:  # 1e+16, inf, nan
            return None
    elif isinstance(value, decimal.Decimal):
        if abs(value.adjusted()) > 100:
            return None  # Django writes a Decimal of over 200 digits in exponent notation
        if abs(value) < decimal.Decimal("0." + "1".rjust(decimals, "0")):
            value = decimal.Decimal(0)  # too small for the places shown (Django's cut-off, to the digit)
        text = f"{value:f}"
        if len(text) > 100:  # then Django's "200 digits" (its exponent and digits) may be passed
            return None
    else:
        text = str(value)
    sign = "-" if text.startswith("-") else ""
    whole, _, fraction = text.removeprefix("-").partition(".")
    fraction = fraction[:decimals].ljust(decimals, "0")
    grouped = f"{int(whole):,}".replace(",", separators.thousands)
    return sign + grouped + (separators.decimal + fraction if fraction else "")


def columns_of(panel: Panel, names: list[str], rows: list[list[Any]]) -> list[Column]:
    """Each result column with its settings, or defaults that fit its values."""
    result = []
    for index, name in enumerate(names):
        setting = panel.column_setting(name)
        values = [row[index] for row in rows if row[index] is not None]
        numeric = bool(values) and all(is_number(value) for value in values)
        kind = str(setting.get("format", ""))
        numeric = numeric and kind not in (ColumnFormat.TEXT, ColumnFormat.DATE)
        align = str(setting.get("align") or (Align.RIGHT if numeric else Align.LEFT))
        result.append(
            Column(
                name=name,
                label=str(setting.get("label") or humanize(name)),
                format=kind,
                decimals=setting.get("decimals"),
                currency=str(setting.get("currency", "USD")),
                align=align,
                numeric=numeric,
            )
        )
    return result


def js_format(column: Column) -> dict[str, Any]:
    """What the chart script gives Intl.NumberFormat for this column's tooltips and axis."""
    if column.format == ColumnFormat.CURRENCY:
        return {"style": "currency", "currency": column.currency, "decimals": column.decimals}
    if column.format == ColumnFormat.PERCENT:
        return {"style": "percent", "decimals": 1 if column.decimals is None else column.decimals}
    return {"style": "decimal", "decimals": column.decimals}


def chart(panel: Panel, columns: list[Column], rows: list[list[Any]]) -> dict[str, Any] | None:
    """Labels from the chosen (or first) column, one series per chosen (or numeric) column."""
    if len(columns) < 2 or not rows:
        return None
    by_name = {column.name.lower(): index for index, column in enumerate(columns)}
    x = by_name.get(panel.chart_x.lower(), 0) if panel.chart_x else 0
    wanted = [by_name[name.lower()] for name in panel.series_columns if name.lower() in by_name]
    series = wanted or [index for index, column in enumerate(columns) if index != x and column.numeric]
    series = [index for index in series if columns[index].numeric]
    if not series:
        return None
    scatter = panel.visualization == Panel.Visualization.SCATTER
    if scatter and not columns[x].numeric:
        return None
    return {
        "kind": panel.visualization,
        "labels": [None if row[x] is None else float(row[x]) if scatter else columns[x].show(row[x]) for row in rows],
        "x_label": columns[x].label,
        "partial": panel.partial_last and panel.visualization not in _WHOLE_CHARTS,
        "datasets": [
            {
                "label": columns[index].label,
                "data": [None if row[index] is None else float(row[index]) for row in rows],
                "format": js_format(columns[index]),
            }
            for index in series
        ],
    }


# Charts of parts of a whole have no "last point".
_WHOLE_CHARTS = {Panel.Visualization.PIE, Panel.Visualization.DONUT, Panel.Visualization.SCATTER}


@dataclass(frozen=True)
class BigNumber:
    value: str
    label: str  # empty when it would only repeat the panel's title
    compared: str = ""  # "▲ 12.5 %"
    compared_with: str = ""  # the second column's label: "Previous period"
    trend: str = ""  # "up", "down" or "flat"


def big_number(panel: Panel, columns: list[Column], rows: list[list[Any]]) -> BigNumber | None:
    """The first value of the first row, and its change from the second value when there is one."""
    if not rows or not columns:
        return None
    first = columns[0]
    value = rows[0][0]
    shown = first.show(value) if first.format or not isinstance(value, float) else number(value, None)
    same = first.label.strip().lower() == panel.title.strip().lower()
    result = BigNumber(value=shown, label="" if same else first.label)
    if len(columns) < 2 or not is_number(value) or not is_number(previous := rows[0][1]):
        return result
    change = decimal.Decimal(str(value)) - decimal.Decimal(str(previous))
    trend = "up" if change > 0 else "down" if change < 0 else "flat"
    arrow = {"up": "▲", "down": "▼", "flat": "="}[trend]
    if previous:
        ratio = change / abs(decimal.Decimal(str(previous)))
        compared = f"{arrow} {number(abs(ratio) * 100, 1)}%"
    else:
        compared = f"{arrow} {columns[0].show(abs(change))}"
    return BigNumber(
        shown, result.label, compared, f"vs {columns[1].label.lower()}: {columns[1].show(previous)}", trend
    )
