"""Numbers and labels as a panel shows them: settings, defaults, and the user's locale."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import translation

from reports.models import Panel, check_column_settings
from reports.presentation import big_number, chart, columns_of, humanize


def panel(**kwargs) -> Panel:
    return Panel(title=kwargs.pop("title", "Paid"), **kwargs)


def shown(panel: Panel, names: list[str], rows: list[list]) -> list[list[str]]:
    columns = columns_of(panel, names, rows)
    return [[column.show(value) for column, value in zip(columns, row, strict=True)] for row in rows]


def test_it_reads_sql_names_as_labels():
    assert [humanize(name) for name in ["PAID_AMOUNT", "claim_id", "TPA", "Total paid", "camelCase"]] == [
        "Paid amount",
        "Claim ID",
        "TPA",
        "Total paid",
        "camelCase",
    ]


def test_it_formats_each_kind_of_column():
    settings = {
        "PAID": {"format": "currency", "currency": "USD"},
        "SHARE": {"format": "percent", "decimals": 1},
        "RATE": {"format": "number", "decimals": 3},
        "DAY": {"format": "date"},
        "CODE": {"format": "text"},
    }
    row = [Decimal("1289679.6"), Decimal("0.125"), 2.5, datetime.date(2026, 11, 30), 12345, 4321, Decimal("-12.50")]
    names = ["PAID", "SHARE", "RATE", "DAY", "CODE", "CLAIM_ID", "DELTA"]
    with translation.override("en-us"):
        assert shown(panel(columns=settings), names, [row]) == [
            ["$1,289,679.60", "12.5%", "2.500", "11/30/2026", "12345", "4321", "-12.50"]
        ]
    with translation.override("de"):
        assert shown(panel(columns=settings), names, [row])[0][:3] == ["$1.289.679,60", "12,5%", "2,500"]


def test_it_right_aligns_numbers_unless_told_otherwise():
    names, rows = ["TPA", "PAID", "CODE"], [["ACME", Decimal("1.00"), 7]]
    columns = columns_of(panel(columns={"CODE": {"align": "center"}}), names, rows)
    assert [(column.label, column.align) for column in columns] == [
        ("TPA", "left"),
        ("Paid", "right"),
        ("Code", "center"),
    ]


def test_it_compares_a_single_number_with_the_second_value():
    title_panel = panel(title="Claims", visualization="number")
    columns = columns_of(title_panel, ["CLAIMS", "PREVIOUS"], [[90, 120]])
    number = big_number(title_panel, columns, [[90, 120]])
    assert (number.value, number.label, number.compared, number.trend) == ("90", "", "▼ 25.0%", "down")
    assert number.compared_with == "vs previous: 120"


def test_it_plots_the_chosen_columns_and_marks_a_partial_last_point():
    line = panel(visualization="line", chart_x="month", chart_y="paid", partial_last=True)
    rows = [[5, datetime.date(2026, 10, 1), Decimal("10.5")], [7, datetime.date(2026, 11, 1), Decimal("2.25")]]
    data = chart(line, columns_of(line, ["claims", "month", "paid"], rows), rows)
    assert data["labels"] == ["2026-10-01", "2026-11-01"] and data["partial"] is True
    assert [(s["label"], s["data"]) for s in data["datasets"]] == [("Paid", [10.5, 2.25])]


@pytest.mark.parametrize(
    "value",
    [
        [],
        {"PAID": "currency"},
        {"PAID": {"format": "money"}},
        {"PAID": {"decimals": 11}},
        {"PAID": {"currency": "dollars"}},
        {"PAID": {"colour": "red"}},
    ],
)
def test_it_refuses_column_settings_it_cannot_follow(value):
    with pytest.raises(ValidationError):
        check_column_settings(value)


NUMBERS = [
    0,
    7,
    -7,
    1234567,
    -1234567,
    10**30,
    Decimal("0"),
    Decimal("1234.5"),
    Decimal("-1234.5"),
    Decimal("1234567.891"),
    Decimal("0.004"),
    Decimal("-0.004"),
    Decimal("-0.5"),
    Decimal("0.05"),
    Decimal("1E+3"),
    Decimal("12345678901234567890.123456789"),
    Decimal("Infinity"),
    Decimal("1E-250"),
    0.0,
    -0.0,
    1.5,
    -1234.5678,
    1234567.891,
    1e16,
    1e-7,
    float("inf"),
]


@pytest.mark.parametrize("language", ["en", "de", "fr", "hi", "de-ch"])
def test_it_formats_every_number_as_django_does(language):
    """A table cell's number reads exactly as Django's localisation writes it (the page's
    fast path for groups of three digits must not change a digit or a separator)."""
    from django.utils import formats

    from reports.presentation import number

    with translation.override(language):
        for value in NUMBERS:
            for decimals in (0, 1, 2, 4):
                expected = formats.number_format(value, decimal_pos=decimals, use_l10n=True, force_grouping=True)
                assert number(value, decimals) == expected, (value, decimals)


def test_it_shows_a_numeric_nan_as_nan():
    """Postgres's numeric 'NaN' arrives as Decimal("NaN"), on which Django's formatting raises."""
    from reports.presentation import number

    assert [number(Decimal("NaN"), 2), number(Decimal("-Infinity"), None)] == ["NaN", "-Infinity"]


def test_it_shows_a_decimal_with_its_own_places():
    from reports.presentation import number

    values = [Decimal("1.50"), Decimal("1E+3"), Decimal("-0.00001"), Decimal("12.0000"), Decimal("1E+120")]
    with translation.override("en"):
        assert [number(value, None) for value in values] == ["1.50", "1,000", "-0.00001", "12.0000", f"1{',000' * 40}"]
