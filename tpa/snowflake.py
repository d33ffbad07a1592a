"""Everything the TPA pipeline says to Snowflake: deploy, stage PUT/LIST/REMOVE, CALL, previews.

Each call goes through the snowflake source (project.sources), so it runs on the bounded
executor with a deadline that aborts the statement on the server. Stage paths and names
reach SQL only after tpa.staging built them from an allow-list of characters; values
travel as bound parameters.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from project.sources import QueryResult, get_source
from project.sources.errors import QueryError

SQL_DIR = Path(__file__).resolve().parent / "snowflake"
STAGE = "BRONZE.TPA_FILES"
_SAFE_PATH = re.compile(r"^[a-z0-9_]+(?:/[0-9]{4}/[0-9]{2}/[0-9]{2}(?:/[A-Za-z0-9][A-Za-z0-9._-]*)?)?/?$")

BRONZE_PROCEDURE = "BRONZE.LOAD_FILE"
SILVER_PROCEDURE = "SILVER.APPLY_MAPPINGS"
GOLD_PROCEDURE = "GOLD.REFRESH_TPA"


def _timeout(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def stage_timeout() -> float:
    return _timeout("TPA_STAGE_TIMEOUT", 120.0)


def procedure_timeout() -> float:
    return _timeout("TPA_PROCEDURE_TIMEOUT", 900.0)


def _source() -> Any:
    return get_source("snowflake")


def _checked_path(path: str) -> str:
    # Defence in depth: tpa.staging builds these; nothing else may reach a stage statement.
    if not _SAFE_PATH.match(path) or ".." in path:
        raise ValueError(f"not a stage path the app builds: {path!r}")
    return path


# --- deploy --------------------------------------------------------------------------------


def split_statements(sql: str) -> list[str]:
    """Split a SQL file on top-level semicolons (not inside quotes, $$ bodies or comments)."""
    statements: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(sql):
        if sql.startswith("$$", i):
            end = sql.find("$$", i + 2)
            end = len(sql) if end < 0 else end + 2
            current.append(sql[i:end])
            i = end
        elif sql[i] == "'":
            end = i + 1
            while end < len(sql):
                if sql[end] == "'" and sql.startswith("''", end):
                    end += 2
                    continue
                if sql[end] == "'":
                    break
                end += 1
            current.append(sql[i : end + 1])
            i = end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = len(sql) if end < 0 else end + 1
            current.append("\n")
        elif sql[i] == ";":
            if text := "".join(current).strip():
                statements.append(text)
            current = []
            i += 1
        else:
            current.append(sql[i])
            i += 1
    if text := "".join(current).strip():
        statements.append(text)
    return statements


def deploy_files() -> list[Path]:
    return sorted(SQL_DIR.glob("*.sql"))


async def deploy(on_statement: Any = None) -> int:
    """Apply every file under tpa/snowflake/ in order; each statement is idempotent."""
    count = 0
    for path in deploy_files():
        for statement in split_statements(path.read_text()):
            # A literal % in a SQL file must not be read as a parameter placeholder.
            result = await _source().execute(statement.replace("%", "%%"), timeout=stage_timeout(), read_only=False)
            count += 1
            if on_statement:
                on_statement(path.name, statement, result)
    return count


# --- stage ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StagedFile:
    path: str  # within the stage, e.g. acme/2026/11/27/claims.csv
    size: int
    md5: str
    last_modified: str


async def put(local: Path, directory: str, name: str) -> QueryResult:
    """PUT a file on disk to @BRONZE.TPA_FILES/<directory>/<name>, streamed from the open file.
    OVERWRITE = TRUE: the caller holds the path in Postgres (tpa.uploads), so a file already
    there is a leftover of an attempt that was never recorded, and a repeated PUT is safe."""
    _checked_path(f"{directory}/{name}")
    statement = f"PUT 'file://{name}' @{STAGE}/{directory}/ AUTO_COMPRESS = FALSE OVERWRITE = TRUE"
    stream = await asyncio.to_thread(open, local, "rb")
    try:
        result = await _source().execute(statement, timeout=stage_timeout(), read_only=False, file_stream=stream)
    finally:
        stream.close()
    status = str(result.rows[0][6]).upper() if result.rows and len(result.rows[0]) > 6 else "UPLOADED"
    if status != "UPLOADED":
        raise QueryError(
            "snowflake", f"the stage answered {status} for {directory}/{name}: a file of that name is there"
        )
    return result


async def list_stage(prefix: str) -> list[StagedFile]:
    """The files under a prefix of the stage (LIST @stage/<prefix>)."""
    prefix = _checked_path(prefix)
    result = await _source().execute(f"LIST @{STAGE}/{prefix}", timeout=stage_timeout())
    root = STAGE.split(".")[-1].lower() + "/"
    return [
        StagedFile(
            str(name)[len(root) :] if str(name).lower().startswith(root) else str(name), int(size), md5, str(modified)
        )
        for name, size, md5, modified in result.rows
    ]


async def remove(path: str) -> int:
    """REMOVE @stage/<path>; the number of files removed."""
    result = await _source().execute(f"REMOVE @{STAGE}/{_checked_path(path)}", timeout=stage_timeout(), read_only=False)
    return result.row_count


# --- procedures ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallResult:
    value: dict[str, Any] = field(default_factory=dict)
    query_id: str = ""
    elapsed: float = 0.0


async def call(procedure: str, *args: Any) -> CallResult:
    """CALL one of the pipeline's procedures with bound arguments; its VARIANT result as a dict."""
    if procedure not in (BRONZE_PROCEDURE, SILVER_PROCEDURE, GOLD_PROCEDURE):
        raise ValueError(f"unknown procedure {procedure}")
    params = {f"a{n}": value for n, value in enumerate(args)}
    placeholders = ", ".join(f"%({name})s" for name in params)
    result = await _source().execute(
        f"CALL {procedure}({placeholders})", params, timeout=procedure_timeout(), read_only=False
    )
    raw = result.rows[0][0] if result.rows else None
    value = json.loads(raw) if isinstance(raw, str) else (raw or {})
    return CallResult(value if isinstance(value, dict) else {"value": value}, result.query_id, result.elapsed)


# --- previews ------------------------------------------------------------------------------

PREVIEW_PAGE = 20


@dataclass(frozen=True, slots=True)
class Preview:
    layer: str
    columns: list[str]
    rows: list[tuple[Any, ...]]
    page: int
    has_next: bool
    error: str = ""


def preview_sql(layer: str, width: int, silver_table: str) -> str:
    if layer == "bronze":
        # One file at a time: each file's positions mean its own header's columns.
        positions = "".join(f", C{n:02d}" for n in range(1, min(width, 40) + 1))
        return (
            f"SELECT SOURCE_FILE, LINE_NO{positions} FROM BRONZE.RAW_ROWS"
            " WHERE TPA_CODE = %(tpa)s AND SOURCE_FILE = %(file)s ORDER BY LINE_NO"
        )
    if layer == "silver":
        if not re.fullmatch(r"[A-Z][A-Z0-9_]{0,62}", silver_table):
            raise ValueError(f"bad table {silver_table!r}")
        return f"SELECT * FROM SILVER.{silver_table} WHERE TPA_CODE = %(tpa)s ORDER BY SOURCE_FILE, 2"
    if layer == "gold":
        return "SELECT * FROM GOLD.CLAIMS_MONTHLY WHERE TPA_CODE = %(tpa)s ORDER BY SERVICE_MONTH"
    raise ValueError(f"unknown layer {layer!r}")


async def preview(
    layer: str, tpa_code: str, page: int, *, bronze_columns: list[str], silver_table: str, source_file: str = ""
) -> Preview:
    """One page of a layer's rows for a TPA. Bronze shows one file (`source_file`), its columns
    labelled with that file's header here, after the query: a header never becomes SQL."""
    sql = preview_sql(layer, len(bronze_columns), silver_table)
    offset = (page - 1) * PREVIEW_PAGE
    params = {"tpa": tpa_code, "file": source_file} if layer == "bronze" else {"tpa": tpa_code}
    result = await _source().execute(
        f"{sql} LIMIT {PREVIEW_PAGE + 1} OFFSET {offset}",
        params,
        timeout=_timeout("TPA_PREVIEW_TIMEOUT", 15.0),
    )
    columns = result.columns
    if layer == "bronze":
        columns = [*columns[:2], *bronze_columns[: len(columns) - 2]]
    return Preview(layer, columns, result.rows[:PREVIEW_PAGE], page, len(result.rows) > PREVIEW_PAGE)


async def count_rows(tpa_code: str, silver_table: str = "CLAIMS") -> dict[str, int]:
    """Rows of a TPA in each layer (for tests, the run page and the demo)."""
    if not re.fullmatch(r"[A-Z][A-Z0-9_]{0,62}", silver_table):
        raise ValueError(f"bad table {silver_table!r}")
    result = await _source().execute(
        "SELECT (SELECT COUNT(*) FROM BRONZE.RAW_ROWS WHERE TPA_CODE = %(tpa)s),"
        f" (SELECT COUNT(*) FROM SILVER.{silver_table} WHERE TPA_CODE = %(tpa)s),"
        " (SELECT COUNT(*) FROM GOLD.CLAIMS_MONTHLY WHERE TPA_CODE = %(tpa)s)",
        {"tpa": tpa_code},
        timeout=_timeout("TPA_PREVIEW_TIMEOUT", 15.0),
    )
    bronze, silver, gold = result.rows[0]
    return {"bronze": int(bronze), "silver": int(silver), "gold": int(gold)}


@dataclass(frozen=True, slots=True)
class BadValue:
    line: int
    column: str
    value: str
    target: str


async def first_bad_value(source_file: str, probes: list[Any]) -> BadValue | None:
    """The first line of a file in bronze whose value a probe (tpa.mapping.value_probes)
    cannot convert, or None. The probes are built from checked identifiers and literals."""
    if not probes:
        return None
    parts = [
        f"SELECT LINE_NO, {n} AS PROBE, {p.bronze_column} AS VALUE FROM BRONZE.RAW_ROWS"
        f" WHERE SOURCE_FILE = %(file)s AND NULLIF(TRIM({p.bronze_column}), '') IS NOT NULL AND {p.probe} IS NULL"
        for n, p in enumerate(probes)
    ]
    result = await _source().execute(
        " UNION ALL ".join(parts) + " ORDER BY LINE_NO, PROBE LIMIT 1",
        {"file": source_file},
        timeout=_timeout("TPA_PREVIEW_TIMEOUT", 15.0),
    )
    if not result.rows:
        return None
    line, index, value = result.rows[0]
    probe = probes[int(index)]
    return BadValue(int(line), probe.file_column, str(value), probe.target)
