"""Each request's thread-sensitive sync code runs on a kept thread, not on a new one (ASGI middleware).

Django's async ORM calls (`aget`, `acreate`, ...) and its sync signal receivers run through
`sync_to_async(thread_sensitive=True)`. Inside a request, asgiref sends them to a
one-thread executor of that request's `ThreadSensitiveContext`, so a request's sync code
and its database connection stay on one thread, as under WSGI. asgiref makes that executor
when the request first needs it and, when the request ends, starts one more thread to shut
it down: two `Thread.start()` calls per request, each made on the event loop and each
waiting there until the new thread has run. Under load the new thread waits its turn for
the GIL behind the Snowflake connector's threads, and the loop waits with it: the load
benchmark caught the loop inside `Thread.start` in 8 % of its samples.

This hands each request an executor from a list of idle ones instead (made on first
need, then kept for the next request, like the threads of a WSGI server), in the request's
own `ThreadSensitiveContext`, which Django's handler then finds and uses. When the request
has answered, its executor goes back to the list; Django's `request_finished` receivers
have already closed or returned the thread's database connection by then, as they do for a
WSGI thread. A request that raised or was cancelled may have skipped them: its thread closes
its connections and ends instead of being kept.

Only an idle executor goes back on the list. A request that answers while its thread is
still busy (with work queued by a task it started) leaves that executor to finish and end,
as asgiref's would: the next request never waits behind it. A task that outlives its
request gets an executor of its own from asgiref for its next thread-sensitive call,
because the request's context no longer names one.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from asgiref.sync import SyncToAsync, ThreadSensitiveContext
from django.db import connections

from project.bodylimit import ASGIApp, Receive, Scope, Send

KEEP = 256  # idle executors kept; beyond that (a burst of more concurrent requests) they end


class _RequestExecutor(ThreadPoolExecutor):
    """One thread, which counts the calls submitted to it that have not finished."""

    def __init__(self, name: str) -> None:
        super().__init__(max_workers=1, thread_name_prefix=name)
        self._pending = 0
        self._pending_lock = threading.Lock()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._pending_lock:
            self._pending += 1
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._finished(None)
            raise
        future.add_done_callback(self._finished)
        return future

    def _finished(self, future: Future[Any] | None) -> None:
        with self._pending_lock:
            self._pending -= 1

    @property
    def idle(self) -> bool:
        with self._pending_lock:
            return self._pending == 0


class RequestThreads:
    def __init__(self, app: ASGIApp, keep: int = KEEP) -> None:
        self.app = app
        self.keep = keep
        self._idle: list[_RequestExecutor] = []
        self._lock = threading.Lock()  # one list for every event loop of the process
        self._numbers = itertools.count(1)  # names the threads apart, for a profile or a traceback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        context = ThreadSensitiveContext()
        async with context:
            if context.token is None:  # an enclosing context is in charge (an outer app, a test)
                return await self.app(scope, receive, send)
            executor = self._take()
            SyncToAsync.context_to_thread_executor[context] = executor
            answered = False
            try:
                await self.app(scope, receive, send)
                answered = True
            finally:
                # Taken back before the context exits, which would otherwise shut it down.
                if SyncToAsync.context_to_thread_executor.get(context) is executor:
                    del SyncToAsync.context_to_thread_executor[context]
                if answered:
                    self._give_back(executor)
                else:
                    self._retire(executor)

    def _take(self) -> _RequestExecutor:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return _RequestExecutor(f"fanout-request-{next(self._numbers)}")

    def _give_back(self, executor: _RequestExecutor) -> None:
        if executor.idle:
            with self._lock:
                if len(self._idle) < self.keep:
                    self._idle.append(executor)
                    return
        executor.shutdown(wait=False)  # its thread ends after what is queued; nobody waits

    @staticmethod
    def _retire(executor: _RequestExecutor) -> None:
        """A request that raised or was cancelled may have skipped Django's request_finished,
        which closes (returns to the pool) the database connections of its thread: close them
        on that thread, after whatever is still queued there, and let the thread end."""
        executor.submit(connections.close_all)
        executor.shutdown(wait=False)
