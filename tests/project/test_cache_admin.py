from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest
from django.contrib.admin.models import LogEntry

from project import cache
from tests.project.test_cache_api import other_process

pytestmark = pytest.mark.usefixtures("clean_cache")


def shared_cache(settings) -> None:
    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        pytest.skip("needs a shared cache (REDIS_URL)")


def cell(html: str, namespace: str, column: str) -> str:
    row = re.search(rf'<tr id="cache-{namespace}">(.*?)</tr>', html, re.S)
    assert row, f"no row for {namespace}"
    found = re.search(rf'<td class="{column}">(.*?)</td>', row.group(1), re.S)
    assert found, f"no {column} cell for {namespace}"
    return found.group(1).strip()


def test_it_links_the_caches_page_from_the_admin_index(cache_admin, owner_client) -> None:
    html = owner_client.get("/admin/").content.decode()
    assert 'href="/admin/caches/"' in html
    assert 'href="/ops/"' in html


def test_it_shows_real_counts_from_every_process(settings, cache_admin, owner_client) -> None:
    shared_cache(settings)
    script = textwrap.dedent(
        """
        import asyncio, django
        django.setup()
        from project import cache
        async def loader():
            return "rows"
        async def main():
            for key in ("a", "b", "c", "a", "b"):
                await cache.load("panel-results", key, loader)
        asyncio.run(main())
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True)  # counts reach Redis when it exits
    html = owner_client.get("/admin/caches/").content.decode()
    assert (cell(html, "panel-results", "keys"), cell(html, "panel-results", "current")) == ("3", "3")
    assert (cell(html, "panel-results", "hits"), cell(html, "panel-results", "misses")) == ("2", "3")
    assert cell(html, "tpa-list", "keys") == "0"
    assert "Local-memory cache" not in html


def test_it_says_what_it_cannot_show_with_locmem(settings, cache_admin, owner_client) -> None:
    if "redis" in settings.CACHES["default"]["BACKEND"].lower():
        pytest.skip("runs on the LocMem cache")
    html = owner_client.get("/admin/caches/").content.decode()
    assert "key counts and entry ages are not visible here" in html
    assert cell(html, "tpa-list", "keys") == "n/a"


def test_it_reloads_in_another_process_after_invalidation_from_the_admin(settings, cache_admin, owner_client) -> None:
    shared_cache(settings)
    assert other_process("first") == "first"
    response = owner_client.post("/admin/caches/tpa-list/invalidate/", follow=True)
    assert response.status_code == 200
    assert "Invalidated tpa-list" in response.content.decode()
    assert other_process("second") == "second"
    entry = LogEntry.objects.get()
    assert (entry.user, entry.object_repr, entry.is_change()) == (cache_admin, "cache tpa-list", True)


def test_it_warms_a_namespace_from_the_admin(settings, cache_admin, owner_client) -> None:
    async def load_tpas() -> list[str]:
        return ["Acme TPA"]

    cache.register_warmer("tpa-list", load_tpas)
    html = owner_client.get("/admin/caches/").content.decode()
    assert 'action="/admin/caches/tpa-list/warm/"' in html
    assert 'action="/admin/caches/panel-results/warm/"' not in html  # no warmer, no button
    response = owner_client.post("/admin/caches/tpa-list/warm/", follow=True)
    assert "Warmed tpa-list" in response.content.decode()
    if "redis" in settings.CACHES["default"]["BACKEND"].lower():
        assert other_process("unused") == "['Acme TPA']"
    assert "Warmed tpa-list" in LogEntry.objects.get().change_message


def test_it_flushes_every_namespace_from_the_admin(settings, cache_admin, owner_client) -> None:
    shared_cache(settings)
    assert other_process("first") == "first"
    response = owner_client.post("/admin/caches/flush/", follow=True)
    assert "Flushed every cache namespace (1 entries deleted)" in response.content.decode()
    assert cell(response.content.decode(), "tpa-list", "keys") == "0"
    assert other_process("second") == "second"
    assert LogEntry.objects.get().is_deletion()


def test_it_refuses_everyone_else(owner_client, member_client) -> None:
    # Staff without the permission, and non-staff, get 403 from the page and its buttons.
    for client in (owner_client, member_client):
        assert client.get("/admin/caches/").status_code == 403
        assert client.post("/admin/caches/tpa-list/invalidate/").status_code == 403
        assert client.post("/admin/caches/flush/").status_code == 403
    assert LogEntry.objects.count() == 0


def test_it_requires_csrf_for_the_buttons(cache_admin) -> None:
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(cache_admin)
    assert client.post("/admin/caches/tpa-list/invalidate/").status_code == 403
    assert LogEntry.objects.count() == 0


def test_it_accepts_only_post_for_the_buttons(cache_admin, owner_client) -> None:
    assert owner_client.get("/admin/caches/tpa-list/invalidate/").status_code == 405
    assert owner_client.post("/admin/caches/tpa-list/explode/").status_code == 404
