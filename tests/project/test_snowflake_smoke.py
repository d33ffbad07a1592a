"""`manage.py snowflake_smoke` against the emulator, as CI runs it."""

from __future__ import annotations

import copy
import io
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from project.sources import get_source

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fresh_source() -> Iterator[None]:
    get_source.cache_clear()
    yield
    get_source.cache_clear()


def test_it_prints_a_table_of_passing_checks(fresh_source: None) -> None:
    call_command("snowflake_deploy", verbosity=0)  # the pipeline's objects, as a deployment has them
    out = io.StringIO()
    call_command("snowflake_smoke", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["step", "result", "ms", "detail"]
    steps = {line[:18].strip(): line for line in lines[1:]}
    assert list(steps) == ["report query", "stage PUT", "stage LIST", "stage REMOVE", "pipeline procedure"]
    assert all(" ok " in line for line in steps.values()), out.getvalue()


def test_it_exits_non_zero_and_names_what_failed_when_snowflake_is_down(fresh_source: None) -> None:
    sources = copy.deepcopy(settings.FANOUT_SOURCES)
    sources["snowflake"].update(host="127.0.0.1", port=9, login_timeout=2)
    out = io.StringIO()
    with override_settings(FANOUT_SOURCES=sources), pytest.raises(CommandError) as info:
        call_command("snowflake_smoke", "--timeout", "5", stdout=out)
    assert "5 of 5 Snowflake checks failed" in str(info.value)
    assert out.getvalue().count("FAILED") == 5
