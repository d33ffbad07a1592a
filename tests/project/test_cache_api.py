from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from project import cache

pytestmark = pytest.mark.usefixtures("clean_cache")


def shared_cache(settings) -> None:
    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        pytest.skip("needs a shared cache (REDIS_URL)")


READ_TPA_LIST = textwrap.dedent(
    """
    import asyncio, django, sys
    django.setup()
    from project import cache
    async def loader():
        return sys.argv[1]
    print(asyncio.run(cache.load("tpa-list", "all", loader)).value)
    """
)


def other_process(value: str) -> str:
    """What another web process reads from tpa-list (`value` if it has to load)."""
    run = subprocess.run([sys.executable, "-c", READ_TPA_LIST, value], capture_output=True, text=True, check=True)
    return run.stdout.strip()


def test_it_reloads_in_another_process_after_invalidation_through_the_api(settings, cache_admin, owner_client) -> None:
    shared_cache(settings)
    assert other_process("first") == "first"
    assert other_process("second") == "first"
    response = owner_client.post("/api/cache/tpa-list/invalidate")
    assert response.status_code == 200
    assert response.json()["namespace"] == "tpa-list"
    assert other_process("third") == "third"


def test_it_reloads_in_another_process_after_cache_clear(settings) -> None:
    shared_cache(settings)
    assert other_process("first") == "first"
    call_command("cache_clear", "tpa-list", "--yes")
    assert other_process("second") == "second"


def test_it_shows_status_to_staff_with_the_permission_only(
    settings, cache_admin, owner_client, member_client, outsider_client
) -> None:
    response = owner_client.get("/api/cache")
    assert response.status_code == 200
    rows = {row["namespace"]: row for row in response.json()["namespaces"]}
    assert set(rows) == set(settings.CACHE_TTLS)
    assert rows["tokens"]["ttl"] == settings.CACHE_TTLS["tokens"]
    assert member_client.get("/api/cache").status_code == 403
    assert outsider_client.post("/api/cache/tpa-list/invalidate").status_code == 403


def test_it_refuses_staff_without_the_permission(owner_client) -> None:
    assert owner_client.get("/api/cache").status_code == 403
    assert owner_client.post("/api/cache/tpa-list/invalidate").status_code == 403


def test_it_answers_401_to_anonymous_api_clients(db) -> None:
    from django.test import Client

    assert Client().get("/api/cache").status_code == 401


def test_it_names_an_unknown_namespace(cache_admin, owner_client) -> None:
    response = owner_client.post("/api/cache/tpa-lists/invalidate")
    assert response.status_code == 404
    assert "No cache namespace 'tpa-lists'" in response.json()["detail"]


def test_it_records_api_invalidation_in_the_admin_log(cache_admin, owner_client) -> None:
    from django.contrib.admin.models import LogEntry

    owner_client.post("/api/cache/master-data/invalidate")
    entry = LogEntry.objects.get()
    assert (entry.user, entry.object_repr) == (cache_admin, "cache master-data")
    assert "Invalidated through the API" in entry.change_message


def test_it_answers_503_for_master_data_until_a_loader_is_registered(owner_client) -> None:
    cache._warmers.clear()  # as in a deployment without the tpa app
    response = owner_client.get("/api/tpa/master-data")
    assert response.status_code == 503
    assert "no warmer is registered for the cache namespace 'master-data'" in response.json()["detail"]


@dataclasses.dataclass(frozen=True)
class Schema:
    name: str
    version: int


def test_it_serves_master_data_from_the_cache_and_reloads_when_fresh(owner_client) -> None:
    from tpa.demo import claims_schema
    from tpa.models import Tpa

    Tpa.objects.create(code="ACME", name="Acme", target_schema=claims_schema())
    loads = {"n": 0}

    async def load_master_data() -> dict[str, object]:
        loads["n"] += 1
        return {"ACME": Schema("claims", loads["n"]), "GONE": Schema("not a TPA the user may see", 0)}

    cache.register_warmer("master-data", load_master_data)
    first = owner_client.get("/api/tpa/master-data").json()
    second = owner_client.get("/api/tpa/master-data").json()
    fresh = owner_client.get("/api/tpa/master-data?fresh=1").json()
    assert (first["data"], first["cached"]) == ({"ACME": {"name": "claims", "version": 1}}, False)
    assert (second["data"], second["cached"]) == ({"ACME": {"name": "claims", "version": 1}}, True)
    assert (fresh["data"], fresh["cached"]) == ({"ACME": {"name": "claims", "version": 2}}, False)


# --- manage.py ----------------------------------------------------------------------------


def test_it_refuses_to_clear_without_yes_when_not_interactive(monkeypatch) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    with pytest.raises(CommandError, match="refusing to clear caches without --yes"):
        call_command("cache_clear")


def test_it_names_an_unknown_namespace_in_commands() -> None:
    with pytest.raises(CommandError, match="unknown cache namespace 'nope'"):
        call_command("cache_clear", "nope", "--yes")
    with pytest.raises(CommandError, match="unknown cache namespace 'nope'"):
        call_command("cache_warm", "nope")


def test_it_warms_registered_namespaces_from_the_command(capsys, settings) -> None:
    async def load_tpas() -> list[str]:
        return ["Acme TPA"]

    cache._warmers.clear()
    cache.register_warmer("tpa-list", load_tpas)
    call_command("cache_warm")
    assert "tpa-list: warmed" in capsys.readouterr().out
    if "redis" in settings.CACHES["default"]["BACKEND"].lower():
        assert other_process("unused") == "['Acme TPA']"  # what web processes now read
    with pytest.raises(CommandError, match="no warmer is registered for 'panel-results'"):
        call_command("cache_warm", "panel-results")


def test_it_prints_a_status_table(capsys) -> None:
    call_command("cache_status")
    out = capsys.readouterr().out
    for namespace in cache.namespaces():
        assert namespace in out
    assert "hits" in out and "misses" in out
