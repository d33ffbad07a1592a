"""Requests served by project.asgi run their thread-sensitive sync code on kept threads
(project/requestthreads.py): one request at a time keeps using one thread instead of starting
a new one (and a second to shut it down) on the event loop for every request, and requests
in flight together still each have a thread of their own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.core.signals import request_finished, request_started
from django.db import connections

from project.asgi import application
from project.requestthreads import RequestThreads

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def request_threads() -> Iterator[list[str]]:
    """The thread each request's sync `request_started` receivers ran on, in order."""
    names: list[str] = []

    def record(**kwargs: object) -> None:
        names.append(threading.current_thread().name)

    request_started.connect(record, dispatch_uid="test_requestthreads")
    try:
        yield names
    finally:
        request_started.disconnect(dispatch_uid="test_requestthreads")


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=cast(Any, application)), base_url="http://testserver")


async def test_requests_one_after_another_use_one_thread(request_threads: list[str]):
    async with client() as http:
        for _ in range(6):
            assert (await http.get("/health")).status_code == 200
    assert len(request_threads) == 6
    assert len(set(request_threads)) == 1, request_threads


async def test_requests_in_flight_together_each_have_their_own_thread(request_threads: list[str]):
    inside = threading.Barrier(3, timeout=10)

    def hold(**kwargs: object) -> None:
        inside.wait()  # returns only once three requests run sync code at the same time

    request_finished.connect(hold, dispatch_uid="test_requestthreads_hold")
    try:
        async with client() as http:
            answers = await asyncio.gather(*(http.get("/health") for _ in range(3)))
    finally:
        request_finished.disconnect(dispatch_uid="test_requestthreads_hold")
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert len(set(request_threads)) == 3, request_threads
    async with client() as http:  # and afterwards, a kept one serves the next request
        assert (await http.get("/health")).status_code == 200
    assert request_threads[-1] in request_threads[:3]


async def test_a_request_whose_thread_is_still_busy_when_it_answers_does_not_hold_up_the_next():
    """A task the request started still runs sync code on its thread: the next request gets another."""
    release, started = threading.Event(), threading.Event()
    threads: list[str] = []
    background: list[asyncio.Future[None]] = []

    def slow() -> None:
        started.set()
        release.wait(timeout=30)

    def record() -> None:
        threads.append(threading.current_thread().name)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await sync_to_async(record)()
        if scope["path"] == "/slow":  # a task that outlives the request, on the request's thread
            background.append(asyncio.ensure_future(sync_to_async(slow)()))
            await asyncio.to_thread(started.wait, 10)

    served = RequestThreads(app)
    await served({"type": "http", "path": "/slow"}, None, None)
    try:
        # Behind the slow call this would wait until `release`; it must not wait at all.
        await asyncio.wait_for(served({"type": "http", "path": "/next"}, None, None), timeout=10)
    finally:
        release.set()
        await asyncio.gather(*background)
    assert threads[1] != threads[0]


async def test_a_cancelled_request_closes_its_threads_database_connection():
    """Cancelled, Django's request_finished never ran: the thread closes its connection and ends."""
    opened: list[Any] = []
    queried = asyncio.Event()

    def query() -> None:
        wrapper = connections["default"]  # this thread's own, not the proxy
        wrapper.ensure_connection()
        opened.append((wrapper, threading.current_thread()))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await sync_to_async(query)()
        queried.set()
        await asyncio.get_running_loop().create_future()  # waits until cancelled

    gone = asyncio.ensure_future(RequestThreads(app)({"type": "http", "path": "/"}, None, None))
    await asyncio.wait_for(queried.wait(), timeout=10)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    wrapper, thread = opened[0]
    await asyncio.to_thread(thread.join, 10)
    assert not thread.is_alive()
    assert wrapper.connection is None  # closed: back in the pool, not held by a parked thread
