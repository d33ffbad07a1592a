from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from project.sources import get_source


@pytest.mark.django_db(transaction=True)
def test_it_prints_each_source_with_its_latency(capsys) -> None:
    call_command("check_sources")
    out = capsys.readouterr().out
    assert "postgres" in out and "snowflake" in out
    assert out.count(" ok ") == 2
    assert "ms" in out


@pytest.mark.django_db(transaction=True)
def test_it_fails_with_the_error_when_a_source_is_down(settings) -> None:
    settings.FANOUT_SOURCES = {
        **settings.FANOUT_SOURCES,
        "postgres": {
            **settings.FANOUT_SOURCES["postgres"],
            "url": "postgresql://nobody@127.0.0.1:9/none",
            "connect_timeout": 1,
        },
    }
    get_source.cache_clear()
    try:
        with pytest.raises(CommandError, match="1 of 1 sources failed"):
            call_command("check_sources", "postgres")
    finally:
        get_source.cache_clear()


def test_it_refuses_an_unknown_source() -> None:
    with pytest.raises(CommandError, match="unknown source nope"):
        call_command("check_sources", "nope")
