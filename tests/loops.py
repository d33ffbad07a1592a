"""Run blocking test code under a deadline that the test itself enforces.

A hang must fail the test that caused it, with a description of what was left waiting,
instead of waiting for pytest-timeout to kill the whole run.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from django.db import connections

from project.sources.postgres import conninfo_for

# Generous: one call takes milliseconds; a hang is forever.
DEADLINE = 60.0


def waiting_tasks() -> str:
    """Every task of every running event loop, with the chain of awaits it is suspended in."""
    lines = []
    for loop in [obj for obj in gc.get_objects() if isinstance(obj, asyncio.AbstractEventLoop)]:
        if not loop.is_running():
            continue
        for task in list(asyncio.all_tasks(loop)):
            lines.append(f"task {task.get_name()}:")
            coro: Any = task.get_coro()
            while coro is not None:
                if (frame := getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)) is not None:
                    lines.append(f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
                coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return "\n".join(lines) or "(no running event loop)"


def call_with_deadline(fn: Callable[[], Any], seconds: float, what: str) -> Any:
    """`fn()` on a daemon thread; fails with its stack and the waiting tasks if it is not done in time."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc
        finally:
            connections.close_all()  # this thread's ORM connections go back to Django's pool

    thread = threading.Thread(target=run, daemon=True, name=f"deadline: {what}")
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        frames = sys._current_frames()
        stacks = "\n".join(
            f"thread {t.name}:\n" + "".join(traceback.format_stack(frames[t.ident])[-8:])
            for t in threading.enumerate()
            if t.ident in frames and t is not threading.current_thread()
        )
        raise AssertionError(f"{what} did not finish within {seconds:g} s\n{waiting_tasks()}\n{stacks}")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def backends() -> int:
    """Client connections to the test database now, other than this count's own.

    A connection that a loop's end cut off while it was being opened is garbage in a
    reference cycle (psycopg's connect generator and its exception): collect it first.
    """
    gc.collect()
    with psycopg.connect(conninfo_for({}), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def keep_pool_warnings_out_of(caplog: pytest.LogCaptureFixture) -> None:
    """pytest keeps every captured record until the test ends, and psycopg-pool's "error
    connecting" warning for a connection cut off by its loop's end holds that half-open
    connection (through its exception's traceback): it would stay open for the test only."""
    caplog.set_level(logging.ERROR, logger="psycopg.pool")
