"""A report query that waits until the test lets it go: no timing decides what happens first.

The panel reads a table the test holds an ACCESS EXCLUSIVE lock on, from its own connection;
the report role may read it (a plain SELECT, which the read-only checks allow).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.conf import settings
from django.db import connection

from project.sources.postgres import conninfo_for

GATED_SQL = "SELECT count(*) AS waited FROM report_gate"


def report_role() -> str:
    url = settings.FANOUT_SOURCES["postgres"]["url"]
    return str(psycopg.conninfo.conninfo_to_dict(url).get("user") or "") if url else ""


@contextmanager
def closed_gate() -> Iterator[psycopg.Connection]:
    """While inside, GATED_SQL waits; leaving (or `.commit()` on the yielded connection) lets it run."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS report_gate (n int)")
        if role := report_role():
            cursor.execute(f"GRANT SELECT ON report_gate TO {psycopg.sql.Identifier(role).as_string()}")
    with psycopg.connect(conninfo_for({})) as gate:
        gate.execute("LOCK TABLE report_gate IN ACCESS EXCLUSIVE MODE")
        yield gate
