from __future__ import annotations

import datetime

import pytest

from tpa.staging import Refused, safe_name, stage_dir


@pytest.mark.parametrize(
    ("given", "staged"),
    [
        ("claims.csv", "claims.csv"),
        ("Claims Jan 2026.CSV", "Claims_Jan_2026.csv"),
        ('it\'s "quoted".csv', "it_s_quoted.csv"),
        ("x'; DROP TABLE BRONZE.RAW_ROWS; --.csv", "x_DROP_TABLE_BRONZE_RAW_ROWS.csv"),
        ("@BRONZE.TPA_FILES.csv", "BRONZE_TPA_FILES.csv"),
        ("reçu été.csv", "recu_ete.csv"),
        ("a.b.c.csv", "a_b_c.csv"),
        ("%(tpa)s.csv", "tpa_s.csv"),
    ],
)
def test_it_cleans_names_that_would_break_a_stage_statement(given: str, staged: str) -> None:
    assert safe_name(given) == staged


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("../../other_tpa/claims.csv", "slash"),
        ("..claims.csv", "'..'"),
        ("evil\\..\\claims.csv", "slash"),
        ("claims\n.csv", "control characters"),
        ("claims\x00.csv", "control characters"),
        ("claims.xlsx", "Only .csv files"),
        ("'@'.csv", "Only .csv files"),
    ],
)
def test_it_refuses_hostile_names_with_a_clear_message(given: str, message: str) -> None:
    with pytest.raises(Refused, match=message.replace(".", r"\.").replace("(", r"\(")):
        safe_name(given)


def test_it_builds_stage_paths_under_the_tpa_and_the_day() -> None:
    assert stage_dir("ACME", datetime.date(2026, 3, 4)) == "acme/2026/03/04"
