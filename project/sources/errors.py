"""Typed errors of the data-source layer.

Each carries the message a page shows and the status the API answers with, so no view
has to translate driver exceptions itself.
"""

from __future__ import annotations


class SourceError(Exception):
    """Base class: something went wrong talking to a data source."""

    http_status = 500
    kind = "error"

    def __init__(self, source: str, message: str) -> None:
        super().__init__(message)
        self.source = source
        self.message = message

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict[str, str | int]:
        return {"kind": self.kind, "source": self.source, "message": self.message, "status": self.http_status}


class SourceTimeout(SourceError):
    """The deadline passed; the query was cancelled on the server."""

    http_status = 504
    kind = "timeout"

    def __init__(self, source: str, seconds: float) -> None:
        super().__init__(source, f"timed out after {seconds:g} s")
        self.seconds = seconds


class QueryCancelled(SourceError):
    """Someone cancelled the statement before its deadline (staff, from the operations page)."""

    http_status = 409
    kind = "cancelled"

    def __init__(self, source: str) -> None:
        super().__init__(source, "cancelled before it finished")


class SourceUnavailable(SourceError):
    """The source could not be reached (down, refused, pool exhausted, login failed)."""

    http_status = 503
    kind = "unavailable"

    def __init__(self, source: str, detail: str) -> None:
        super().__init__(source, f"{source} is unavailable: {detail}")
        self.detail = detail


class QueryError(SourceError):
    """The database refused the statement; the message is the database's own."""

    http_status = 422
    kind = "query"


class ParameterError(SourceError):
    """The caller's parameters do not fit the statement (missing, unknown, wrong type)."""

    http_status = 400
    kind = "parameters"
