from __future__ import annotations

import asyncio

import pytest
import redis

from project import localcache
from reports import runner
from reports.models import Panel
from tests.reports.conftest import make_panel, make_report, source_calls

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = {"postgres": "SELECT pg_sleep(0.3), %(i)s::int AS i", "snowflake": "SELECT SYSTEM$WAIT(0.3) AS W, %(i)s AS I"}


def panels_of(report) -> list[Panel]:
    return list(report.panels.select_related("source"))


@pytest.mark.parametrize("source", ["postgres", "snowflake"])
def test_it_returns_every_panel_of_an_eight_panel_report(owner, analysts, member_client, source):
    report = make_report(owner, groups=[analysts], slug="eight")
    for i in range(8):
        make_panel(report, SLOW[source].replace("%(i)s", str(i)), source=source, title=f"Panel {i}")
    body = member_client.get("/api/reports/eight/run").json()
    assert body["ok"] is True
    assert [panel["rows"][0][-1] for panel in body["panels"]] == list(range(8))


def test_it_isolates_a_failing_and_a_timed_out_panel(owner, analysts, member_client):
    report = make_report(owner, groups=[analysts], slug="mixed")
    make_panel(report, "SELECT 1 AS fine", title="Fine")
    make_panel(report, "SELECT * FROM no_such_table", title="Broken")
    make_panel(report, "SELECT pg_sleep(30)", title="Slow", timeout=1)
    make_panel(report, "SELECT SYSTEM$WAIT(30) AS W", source="snowflake", title="Slow warehouse", timeout=1)
    make_panel(report, "SELECT 2 AS ALSO_FINE", source="snowflake", title="Also fine")
    body = member_client.get("/api/reports/mixed/run").json()
    by_title = {panel["title"]: panel for panel in body["panels"]}
    assert body["ok"] is False
    assert by_title["Fine"]["rows"] == [[1]] and by_title["Also fine"]["rows"] == [[2]]
    assert by_title["Broken"]["error"]["kind"] == "query"
    assert 'relation "no_such_table" does not exist' in by_title["Broken"]["error"]["message"]
    for title in ("Slow", "Slow warehouse"):
        assert by_title[title]["error"] == {"kind": "timeout", "message": "timed out after 1 s", "status": 504}


async def test_it_runs_identical_concurrent_requests_once(owner):
    report = await make_report_async(owner)
    panel = await make_panel_async(report, "SELECT pg_sleep(0.2), %(n)s::int AS n")
    before = source_calls()
    runs = await asyncio.gather(*(runner.run_panel(panel, {"n": 7}) for _ in range(10)))
    assert source_calls() - before == 1
    assert {run.rows[0][1] for run in runs} == {7}
    assert sum(not run.cache_hit for run in runs) == 1


async def test_it_serves_a_cached_result_without_a_query_until_asked_for_fresh(owner):
    report = await make_report_async(owner)
    panel = await make_panel_async(report, "SELECT now() AS at, %(n)s::int AS n")
    before = source_calls()
    first = await runner.run_panel(panel, {"n": 1})
    cached = await runner.run_panel(panel, {"n": 1})
    assert (source_calls() - before, cached.cache_hit, cached.rows) == (1, True, first.rows)
    other_value = await runner.run_panel(panel, {"n": 2})
    assert not other_value.cache_hit
    fresh = await runner.run_panel(panel, {"n": 1}, fresh=True)
    assert (source_calls() - before, fresh.cache_hit) == (3, False)
    assert fresh.rows != first.rows  # a new now()


async def test_it_never_caches_a_panel_with_a_zero_ttl(owner):
    report = await make_report_async(owner)
    panel = await make_panel_async(report, "SELECT 1 AS one", cache_ttl=0)
    before = source_calls()
    await runner.run_panel(panel, {})
    second = await runner.run_panel(panel, {})
    assert (source_calls() - before, second.cache_hit) == (2, False)


class RedisCommands:
    """The commands the Redis server received inside the block, as MONITOR printed them."""

    def __init__(self) -> None:
        self.url = str(localcache.redis_url())
        self.commands: list[str] = []

    def __enter__(self) -> RedisCommands:
        # A read that never comes fails the test in 10 s instead of hanging it.
        self.monitor = redis.Redis.from_url(self.url, socket_timeout=10).monitor()
        self.monitor.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        end = f"end-of-block-{id(self)}"
        redis.Redis.from_url(self.url).echo(end)  # MONITOR prints it after whatever came before
        while end not in (command := self.monitor.next_command()["command"]):
            self.commands.append(command)
        self.monitor.__exit__(None, None, None)


@pytest.mark.skipif(localcache.redis_url() is None, reason="watches the commands Redis receives")
async def test_it_runs_a_zero_ttl_panel_once_for_concurrent_callers_without_the_cache_server(owner):
    report = await make_report_async(owner)
    panel = await make_panel_async(report, "SELECT pg_sleep(0.2), 1 AS one", cache_ttl=0)
    before = source_calls()
    with RedisCommands() as seen:
        runs = await asyncio.gather(*(runner.run_panel(panel, {}) for _ in range(5)))
    # Nothing is kept, so the panel's value, lock and generation are never read or written
    # (the process's hit-and-miss counters are shared on their own schedule).
    assert [command for command in seen.commands if "panel-results" in command and "stats:" not in command] == []
    assert source_calls() - before == 1 and [run.rows[0][1] for run in runs] == [1] * 5


@pytest.mark.skipif(localcache.redis_url() is None, reason="watches the commands Redis receives")
async def test_it_reads_and_writes_a_kept_panel_on_the_cache_server(owner):
    report = await make_report_async(owner)
    panel = await make_panel_async(report, "SELECT 1 AS one", cache_ttl=60)
    with RedisCommands() as seen:
        await runner.run_panel(panel, {})
    # One read of the value with its generation, a lock for the one load, then the value.
    assert any(command.startswith("MGET ") and ":panel-results:" in command for command in seen.commands)
    assert any(command.startswith("SET ") and ":panel-results:" in command for command in seen.commands)


async def test_it_serves_a_stale_result_while_one_refresh_runs(owner):
    report = await make_report_async(owner)
    panel = await make_panel_async(report, "SELECT now() AS at", cache_ttl=0, stale_while_revalidate=60)
    first = await runner.run_panel(panel, {})
    await asyncio.sleep(0.05)
    stale = await runner.run_panel(panel, {})
    assert (stale.cache_hit, stale.stale, stale.rows) == (True, True, first.rows)
    await asyncio.sleep(0.3)  # let the background refresh finish inside this test's loop


async def test_it_streams_panels_in_the_order_they_finish(owner):
    report = await make_report_async(owner)
    slow = await make_panel_async(report, "SELECT pg_sleep(0.5), 'slow' AS which", title="slow")
    quick = await make_panel_async(report, "SELECT 'quick' AS which", title="quick")
    titles = [run.title async for run in runner.iter_report([slow, quick], {})]
    assert titles == ["quick", "slow"]


async def make_report_async(owner):
    from asgiref.sync import sync_to_async

    return await sync_to_async(make_report)(owner, slug="async")


async def make_panel_async(report, sql, **kwargs):
    from asgiref.sync import sync_to_async

    def create():
        panel = make_panel(report, sql, **kwargs)
        return Panel.objects.select_related("source").get(pk=panel.pk)

    return await sync_to_async(create)()
