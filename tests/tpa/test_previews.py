"""The TPA page's warehouse previews: loaded together, each under its deadline, cached briefly."""

from __future__ import annotations

import pytest
from django.core.cache import cache as django_cache

from tests.reports.conftest import source_calls
from tests.tpa.conftest import claims_file

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def empty_cache():
    django_cache.clear()
    yield
    django_cache.clear()


def test_it_serves_a_second_look_at_the_tpa_page_from_the_cache(make_tpa, owner_client) -> None:
    tpa = make_tpa()
    assert owner_client.get(f"/tpa/{tpa.code}/").status_code == 200
    queries = source_calls("snowflake")
    page = owner_client.get(f"/tpa/{tpa.code}/")
    assert page.status_code == 200
    assert source_calls("snowflake") == queries  # the stage listing and three previews, from the cache


def test_it_shows_a_new_upload_at_once_despite_the_cache(make_tpa, owner_client) -> None:
    tpa = make_tpa()
    owner_client.get(f"/tpa/{tpa.code}/")
    upload = claims_file(rows=3, name="claims-2026-02.csv")
    owner_client.post(f"/tpa/{tpa.code}/upload", {"file": upload})
    queries = source_calls("snowflake")
    page = owner_client.get(f"/tpa/{tpa.code}/").content.decode()
    # The files changed, so the previews and the stage listing are read again.
    assert source_calls("snowflake") > queries
    assert page.count("claims-2026-02.csv") >= 2  # in the files table and in the stage listing
