"""Asynchronous queries, as Snowflake runs them for `cursor.execute_async` (asyncExec: true).

https://docs.snowflake.com/en/developer-guide/python-connector/python-connector-example#performing-an-asynchronous-query
The query-request answers at once with code 333334 and the query id; the query runs on.
`GET /monitoring/queries/<id>` reports RUNNING until it ends, then SUCCESS, FAILED_WITH_ERROR
or ABORTED (cancelled, or ended by its statement timeout); `GET /queries/<id>/result` returns
the result (or the error) a synchronous request would have returned; an abort by query id
(`POST /queries/<id>/abort-request`, `SYSTEM$CANCEL_QUERY('<id>')`) stops it.

Finished queries keep their result for RESULT_TTL seconds (Snowflake keeps them 24 hours; the
emulator bounds its memory) and at most MAX_KEPT of them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse, Response

from devtools.emulator import running
from devtools.emulator.running import CANCELLED_CODE, TIMED_OUT_CODE, RunningQuery

RESULT_TTL = 600.0
MAX_KEPT = 2000

IN_PROGRESS_ASYNC = "333334"
IN_PROGRESS = "333333"


@dataclass(eq=False)
class AsyncQuery:
    query: RunningQuery
    user: str
    status: str = "RUNNING"
    payload: dict[str, Any] | None = None  # the query-response JSON, once it ended
    ended_at: float | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


_queries: dict[str, AsyncQuery] = {}
_ended: deque[str] = deque()  # ids of the ended queries still kept, in the order they ended


def _forget_old() -> None:
    """Drop ended queries past RESULT_TTL, and the earliest ended ones past MAX_KEPT.

    Looks only at the front of `_ended`, in the order the queries ended, so a submit costs the
    same with 2,000 results kept as with none (a scan of every kept query, as first written,
    took a quarter of the emulator's time under the load benchmark). A query still running is
    never dropped.
    """
    now = time.monotonic()
    while _ended:
        item = _queries.get(_ended[0])
        if item is None:  # no longer kept (a test swapped the table while it ran)
            _ended.popleft()
            continue
        assert item.ended_at is not None
        if now - item.ended_at <= RESULT_TTL and len(_queries) <= MAX_KEPT:
            break
        del _queries[_ended.popleft()]


def submit(query: RunningQuery, user: str, answer: Callable[[], Awaitable[Response]]) -> JSONResponse:
    """Start the query in the background; answer with its id at once."""
    _forget_old()
    item = AsyncQuery(query, user)
    _queries[query.query_id] = item
    item.task = asyncio.get_running_loop().create_task(_run(item, answer), name=f"query {query.query_id}")
    return JSONResponse(
        {
            "data": {
                "queryId": query.query_id,
                "getResultUrl": f"/queries/{query.query_id}/result",
                "queryAbortsAfterSecs": 300,
                "progressDesc": None,
            },
            "code": IN_PROGRESS_ASYNC,
            "message": "Asynchronous execution in progress. Use provided query id to perform query monitoring "
            "and management.",
            "success": True,
        }
    )


async def _run(item: AsyncQuery, answer: Callable[[], Awaitable[Response]]) -> None:
    try:
        response = await answer()
        payload: dict[str, Any] = json.loads(bytes(response.body))
    except BaseException:
        payload = {"data": None, "code": "000603", "message": "SQL execution internal error", "success": False}
        raise
    finally:
        running.unregister(item.query)
        if payload.get("success"):
            if isinstance(payload.get("data"), dict):
                payload["data"]["queryId"] = item.query.query_id
            item.status = "SUCCESS"
        elif payload.get("code") in (CANCELLED_CODE, TIMED_OUT_CODE):
            item.status = "ABORTED"
        else:
            item.status = "FAILED_WITH_ERROR"
        item.payload = payload
        item.ended_at = time.monotonic()
        _ended.append(item.query.query_id)


def find(query_id: str, user: str) -> AsyncQuery | None:
    # any session of the user who ran it may monitor it, as in Snowflake
    item = _queries.get(query_id)
    return item if item is not None and item.user == user else None


def monitoring(query_id: str, user: str) -> JSONResponse:
    item = find(query_id, user)
    if item is None:
        sync = running.find(query_id)
        if sync is None:
            return JSONResponse({"data": {"queries": []}, "success": True})
        return JSONResponse({"data": {"queries": [_describe(query_id, sync.sql_text, "RUNNING")]}, "success": True})
    entry = _describe(query_id, item.query.sql_text, item.status)
    if item.payload is not None and not item.payload.get("success"):
        entry.update(errorCode=str(item.payload.get("code")), errorMessage=str(item.payload.get("message")))
    return JSONResponse({"data": {"queries": [entry]}, "success": True})


def _describe(query_id: str, sql: str, status: str) -> dict[str, Any]:
    return {"id": query_id, "status": status, "state": status, "sqlText": sql}


def result(query_id: str, user: str) -> JSONResponse:
    item = find(query_id, user)
    if item is None:
        return JSONResponse(
            {
                "data": {"errorCode": "000709", "sqlState": "02000"},
                "code": "000709",
                "message": f"Statement {query_id} not found",
                "success": False,
            }
        )
    if item.payload is None:
        return JSONResponse(
            {
                "data": {"queryId": query_id, "getResultUrl": f"/queries/{query_id}/result"},
                "code": IN_PROGRESS,
                "message": "Query execution in progress. Query will be completed in a moment.",
                "success": True,
            }
        )
    return JSONResponse(item.payload)


def abort(query_id: str, user: str) -> bool:
    item = find(query_id, user)
    if item is None or item.payload is not None:
        return False
    item.query.cancel()
    return True


def cancel_all() -> None:
    for item in list(_queries.values()):
        if item.payload is None:
            item.query.cancel()
