"""Query-request responses for the statements the emulator answers itself, in fakesnow's format."""

from __future__ import annotations

import uuid
from base64 import b64encode
from collections.abc import Sequence
from typing import Any

import snowflake.connector.errors
from fakesnow import statement_type
from fakesnow.arrow import to_ipc, to_sf
from fakesnow.cursor import FakeSnowflakeCursor
from fakesnow.fakes import FakeSnowflakeConnection
from fakesnow.rowtype import describe_as_rowtype
from starlette.responses import JSONResponse

from devtools.emulator.running import RunningQuery

# (column name, DuckDB type) for describe_as_rowtype
Columns = Sequence[tuple[str, str]]


def error_response(e: snowflake.connector.errors.Error) -> JSONResponse:
    code = f"{e.errno:06d}"
    return JSONResponse(
        {"data": {"errorCode": code, "sqlState": e.sqlstate}, "code": code, "message": e.raw_msg, "success": False}
    )


def cancelled_response(query: RunningQuery) -> JSONResponse:
    return error_response(query.cancel_error())


def _success(conn: FakeSnowflakeConnection, data: dict[str, Any]) -> JSONResponse:
    return JSONResponse(
        {
            "data": {
                "parameters": [{"name": "TIMEZONE", "value": "Etc/UTC"}],
                "queryId": str(uuid.uuid4()),
                "statementTypeId": statement_type.SELECT,
                "finalDatabaseName": conn.database,
                "finalSchemaName": conn.schema,
                **data,
            },
            "success": True,
        }
    )


def rows_response(conn: FakeSnowflakeConnection, columns: Columns, rows: Sequence[Sequence[Any]]) -> JSONResponse:
    """A result of plain text and number columns, as a json rowset (values travel as strings)."""
    rowtype = describe_as_rowtype([(name, duck_type, "YES", None, None, None) for name, duck_type in columns])
    return _success(
        conn,
        {
            "rowtype": rowtype,
            "total": len(rows),
            "returned": len(rows),
            "queryResultFormat": "json",
            "rowset": [[None if v is None else str(v) for v in row] for row in rows],
        },
    )


def cursor_response(conn: FakeSnowflakeConnection, cur: FakeSnowflakeCursor) -> JSONResponse:
    """The result a fakesnow cursor holds, encoded as fakesnow's server encodes a query's result."""
    rowtype = describe_as_rowtype(cur._describe_last_sql())  # noqa: SLF001
    arrow_table = cur._arrow_table  # noqa: SLF001
    result = (
        {"queryResultFormat": "arrow", "rowsetBase64": b64encode(to_ipc(to_sf(arrow_table, rowtype))).decode()}
        if arrow_table
        else {"queryResultFormat": "arrow", "rowsetBase64": ""}
    )
    return _success(conn, {"rowtype": rowtype, "total": arrow_table.num_rows if arrow_table else 0, **result})
