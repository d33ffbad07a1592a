"""What every data source offers: run one SQL statement with bound parameters and a deadline."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from project.sources.errors import ParameterError

# Named parameters are written `%(name)s` on every source; a literal percent is `%%`.
PLACEHOLDER = re.compile(r"%\((?P<name>[A-Za-z_][A-Za-z0-9_]*)\)s|%%")

Params = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class QueryResult:
    source: str
    columns: list[str]
    rows: list[tuple[Any, ...]]
    row_count: int
    elapsed: float  # seconds, measured around the database round trip
    query_id: str  # the source's own id: a Snowflake query id, or "<backend pid>" on Postgres
    truncated: bool = False  # more rows existed than max_rows
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "columns": self.columns,
            "rows": [list(row) for row in self.rows],
            "row_count": self.row_count,
            "elapsed_ms": round(self.elapsed * 1000, 1),
            "query_id": self.query_id,
            "truncated": self.truncated,
        }


class Source(Protocol):
    name: str
    kind: str

    async def execute(
        self,
        sql: str,
        params: Params | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the interface; sources enforce it inside
        max_rows: int | None = None,
        read_only: bool = True,
        workload: str | None = None,
    ) -> QueryResult: ...

    def stream(
        self,
        sql: str,
        params: Params | None = None,
        *,
        timeout: float | None = None,
        batch_size: int = 5000,
        workload: str | None = "exports",
    ) -> AsyncGenerator[tuple[list[str], list[tuple[Any, ...]]]]: ...

    async def ping(self) -> float: ...

    async def cancel(self, running: Any) -> None: ...

    async def close(self) -> None: ...


def placeholder_names(sql: str) -> list[str]:
    """The distinct `%(name)s` parameters of a statement, in order of first use."""
    names: list[str] = []
    for match in PLACEHOLDER.finditer(sql):
        if (name := match.group("name")) and name not in names:
            names.append(name)
    return names


def check_params(source: str, sql: str, params: Params | None) -> dict[str, Any]:
    """Refuse missing parameters before anything reaches the database."""
    params = dict(params or {})
    if missing := [name for name in placeholder_names(sql) if name not in params]:
        raise ParameterError(source, f"missing value for parameter {', '.join(missing)}")
    return params


def to_qmark(source: str, sql: str, params: Params | None) -> tuple[str, list[Any]]:
    """Rewrite `%(name)s` placeholders as server-side `?` bindings, in order."""
    params = check_params(source, sql, params)
    values: list[Any] = []

    def replace(match: re.Match[str]) -> str:
        if (name := match.group("name")) is None:
            return "%"
        values.append(params[name])
        return "?"

    return PLACEHOLDER.sub(replace, sql), values
