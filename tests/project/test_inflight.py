from __future__ import annotations

import asyncio
import sys
import textwrap

import pytest

from project.sources import QueryCancelled, get_source, inflight

pytestmark = pytest.mark.django_db(transaction=True)


async def wait_until_running(what: str) -> inflight.Running:
    for _ in range(200):
        if found := [running for running in inflight.running_now() if running.what == what]:
            return found[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what} never showed up as running")


@pytest.mark.parametrize(
    ("source", "sql"), [("postgres", "SELECT pg_sleep(60)"), ("snowflake", "SELECT SYSTEM$WAIT(60) AS w")]
)
async def test_it_lists_a_running_query_and_cancels_it_on_the_database(source: str, sql: str) -> None:
    with inflight.labelled(f"report demo / panel slow on {source}", who="bob"):
        task = asyncio.ensure_future(get_source(source).execute(sql, timeout=60))
    running = await wait_until_running(f"report demo / panel slow on {source}")
    assert (running.source, running.who, running.sql) == (source, "bob", sql)
    assert await inflight.cancel(running.id) is not None
    with pytest.raises(QueryCancelled, match="cancelled before it finished"):
        await task
    assert all(r.id != running.id for r in inflight.running_now())
    # The source keeps working after the cancel.
    assert (await get_source(source).execute("SELECT 1 AS one")).rows == [(1,)]


async def test_it_says_when_the_query_already_ended() -> None:
    assert await inflight.cancel("no-such-id") is None


async def test_it_lists_and_cancels_a_query_of_another_process(settings) -> None:
    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        pytest.skip("needs a shared cache (REDIS_URL)")
    script = textwrap.dedent(
        """
        import asyncio, django
        django.setup()
        from project.sources import SourceError, get_source, inflight
        async def main():
            with inflight.labelled("pipeline run 7 / silver", who="ops"):
                try:
                    await get_source("snowflake").execute("SELECT SYSTEM$WAIT(60) AS w", timeout=60)
                except SourceError as exc:
                    print(exc.kind)
        asyncio.run(main())
        """
    )
    other = await asyncio.create_subprocess_exec(sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE)
    try:
        running = await wait_until_running("pipeline run 7 / silver")
        assert running.process == other.pid
        await inflight.cancel(running.id)
        out, _ = await asyncio.wait_for(other.communicate(), 30)
        assert out.decode().strip() == "cancelled"
    finally:
        if other.returncode is None:
            other.kill()
