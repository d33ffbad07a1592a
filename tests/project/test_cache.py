from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time

import pytest
from django.core.cache import cache as django_cache

from project import cache


@pytest.fixture(autouse=True)
def clean_cache():
    django_cache.clear()
    yield
    django_cache.clear()


def counting_loader(values: list[str]):
    calls = {"n": 0}

    async def loader() -> str:
        calls["n"] += 1
        await asyncio.sleep(0.05)  # long enough for the other requests to arrive meanwhile
        return values[min(calls["n"], len(values)) - 1]

    return loader, calls


async def test_it_loads_once_for_many_concurrent_misses() -> None:
    loader, calls = counting_loader(["tpas"])
    entries = await asyncio.gather(*(cache.load("tpa-list", "all", loader) for _ in range(50)))
    assert calls["n"] == 1
    assert {entry.value for entry in entries} == {"tpas"}
    assert sum(not entry.hit for entry in entries) == 1


async def test_it_serves_a_hit_until_invalidated() -> None:
    loader, calls = counting_loader(["v1", "v2"])
    assert (await cache.load("master-data", "schemas", loader)).value == "v1"
    again = await cache.load("master-data", "schemas", loader)
    assert (again.value, again.hit, calls["n"]) == ("v1", True, 1)
    await cache.ainvalidate("master-data")
    reloaded = await cache.load("master-data", "schemas", loader)
    assert (reloaded.value, reloaded.hit, calls["n"]) == ("v2", False, 2)


async def test_it_reloads_when_asked_for_fresh() -> None:
    loader, calls = counting_loader(["v1", "v2"])
    await cache.load("filter-options", "f", loader)
    assert (await cache.load("filter-options", "f", loader, fresh=True)).value == "v2"
    assert calls["n"] == 2


async def test_it_serves_stale_while_one_refresh_runs() -> None:
    loader, calls = counting_loader(["old", "new"])
    await cache.load("panel-results", "p", loader, ttl=0, stale_while_revalidate=60)
    await asyncio.sleep(0.01)
    stale = await cache.load("panel-results", "p", loader, ttl=0, stale_while_revalidate=60)
    assert (stale.value, stale.stale) == ("old", True)
    for _ in range(100):
        if calls["n"] == 2:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    assert calls["n"] == 2


async def test_it_refuses_an_unknown_namespace() -> None:
    with pytest.raises(ValueError, match="unknown cache namespace 'nope'"):
        await cache.load("nope", "k", counting_loader(["x"])[0])


def test_it_reaches_another_process_when_invalidated(settings) -> None:
    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        pytest.skip("needs a shared cache (REDIS_URL)")
    script = textwrap.dedent(
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
        return subprocess.run(
            [sys.executable, "-c", script, value], capture_output=True, text=True, check=True
        ).stdout.strip()

    assert other_process("first") == "first"
    assert other_process("second") == "first"  # cached, shared through Redis
    cache.invalidate("tpa-list")
    assert other_process("third") == "third"


async def test_it_lets_waiters_load_when_the_first_loader_is_cancelled() -> None:
    started = asyncio.Event()

    async def slow_loader() -> str:
        started.set()
        await asyncio.sleep(30)
        return "never"

    async def quick_loader() -> str:
        return "loaded by the waiter"

    first = asyncio.ensure_future(cache.load("panel-results", "k", slow_loader))
    await started.wait()
    waiter = asyncio.ensure_future(cache.load("panel-results", "k", quick_loader))
    await asyncio.sleep(0)  # the waiter now shares the first load
    first.cancel()  # the first browser tab closed
    assert (await waiter).value == "loaded by the waiter"


async def test_it_never_returns_a_value_loaded_before_an_invalidation_to_a_read_that_starts_after_it() -> None:
    loading_old = asyncio.Event()
    release_old = asyncio.Event()

    async def old_mappings() -> str:
        loading_old.set()
        await release_old.wait()  # still reading the old mappings when they are saved
        return "old mappings"

    async def new_mappings() -> str:
        return "new mappings"

    before = asyncio.ensure_future(cache.load("master-data", "ACME", old_mappings))
    await loading_old.wait()
    await cache.ainvalidate("master-data")  # the mappings were saved
    after = asyncio.ensure_future(cache.load("master-data", "ACME", new_mappings))
    await asyncio.sleep(0.05)  # give the later read every chance to join the earlier load
    release_old.set()
    assert (await before).value == "old mappings"  # started before the save: either is fine
    assert (await after).value == "new mappings"

    # And what the earlier load stored under the old generation is never served.
    async def reload() -> str:
        return "reloaded"

    assert (await cache.load("master-data", "ACME", reload)).value in {"new mappings", "reloaded"}


async def test_it_takes_the_value_another_process_stored_just_before_it_released_the_lock(monkeypatch) -> None:
    """Another process holds the load lock and finishes (stores its value, then releases the
    lock) between this process's look for the value and its look at the lock: the worst
    moment. Its value is used; nothing is loaded twice (a herd on two workers did)."""
    from project.cache import backend

    key = cache.make_key("tpa-list", "all")
    generation = cache.generation("tpa-list")
    lock = f"lock:{key}@{generation}"
    assert django_cache.add(lock, 1, 30)  # the other process won the lock
    real = backend.acall

    async def acall(operation: str, *args, **kwargs):
        if operation == "get" and args == (lock,):
            await real("set", key, {"v": "theirs", "t": time.time(), "g": generation}, 60)
            await real("delete", lock)
        return await real(operation, *args, **kwargs)

    monkeypatch.setattr(backend, "acall", acall)
    loader, calls = counting_loader(["ours"])
    entry = await cache.load("tpa-list", "all", loader)
    assert (entry.value, entry.hit, calls["n"]) == ("theirs", True, 0)
