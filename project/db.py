"""Helpers for the app's own database connection in async views."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import connection


async def release_connection() -> None:
    """Hand this request's connection back to the pool before a long wait.

    Django returns a request's connection only when the request ends, and in an async view
    that includes every second spent awaiting a warehouse. A hundred report runs would
    then hold a hundred connections of the app's pool while doing nothing with them (bench:
    PoolTimeout after 10 s under load). The next ORM call takes a connection again.
    """
    await sync_to_async(_close)()


def _close() -> None:
    # Looked up here, in the thread that owns the request's connection, not on the loop.
    # Inside a transaction (the admin's, a test's) the connection must stay.
    if not connection.in_atomic_block:
        connection.close()
