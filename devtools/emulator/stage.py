"""LIST and REMOVE of internal stages, on the files fakesnow's PUT stores.

fakesnow keeps a stage's files under `LOCAL_BUCKET_PATH/<DATABASE>/<SCHEMA>/<STAGE>/<path>`
(PUT compresses `file.csv` to `file.csv.gz`) and lists only a whole stage. Here a path after
the stage name is a prefix of the files' paths, as in Snowflake, so `LIST @s/2024` lists
`2024/a.csv.gz` and `2024-01/b.csv.gz`, and PATTERN is a regular expression that must match
the whole name, either with the stage name (`s/2024/a.csv.gz`) or without it (`2024/a.csv.gz`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import snowflake.connector.errors
from fakesnow.fakes import FakeSnowflakeConnection
from fakesnow.transforms import stage as fs_stage

from devtools.emulator.sqltext import Kind, code, syntax_error, tokenize, unquote_string

LIST_COLUMNS = (("name", "VARCHAR"), ("size", "BIGINT"), ("md5", "VARCHAR"), ("last_modified", "VARCHAR"))
REMOVE_COLUMNS = (("name", "VARCHAR"), ("result", "VARCHAR"))


@dataclass(frozen=True)
class StageFile:
    name: str  # as LIST shows it, eg: claims/2024/a.csv.gz
    relative: str  # path within the stage, eg: 2024/a.csv.gz
    path: str  # on disk
    root: str  # the stage's folder


def list_files(conn: FakeSnowflakeConnection, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of LIST/LS: name, size, md5, last_modified. Blocking: run it in a thread."""
    rows = []
    for f in _matching_files(conn, sql, params):
        with open(f.path, "rb") as fh:
            md5 = hashlib.file_digest(fh, "md5").hexdigest()
        stat = os.stat(f.path)
        rows.append((f.name, stat.st_size, md5, formatdate(stat.st_mtime, usegmt=True)))
    return rows


def remove_files(conn: FakeSnowflakeConnection, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Remove the files REMOVE/RM names; rows of name, result. Blocking: run it in a thread."""
    removed = []
    for f in _matching_files(conn, sql, params):
        os.remove(f.path)
        removed.append((f.name, "removed"))
        _prune_empty_dirs(os.path.dirname(f.path), f.root)
    return removed


def _prune_empty_dirs(directory: str, root: str) -> None:
    # a removed path's folders go too, so a later LIST or COPY of the prefix finds nothing there
    root = os.path.normpath(root)
    while os.path.normpath(directory) != root and directory.startswith(root) and not os.listdir(directory):
        os.rmdir(directory)
        directory = os.path.dirname(directory)


def _matching_files(conn: FakeSnowflakeConnection, sql: str, params: Sequence[Any]) -> list[StageFile]:
    reference, pattern = _parse(sql, params)
    root = _stage_root(conn, reference)
    prefix = reference.partition("/")[2]
    try:
        regex = re.compile(pattern) if pattern is not None else None
    except re.error as e:
        raise snowflake.connector.errors.ProgrammingError(
            msg=f"Invalid regular expression '{pattern}': {e}", errno=100048, sqlstate="2201B"
        ) from None

    files = []
    for directory, _, names in os.walk(root):
        for filename in names:
            path = os.path.join(directory, filename)
            relative = os.path.relpath(path, root).replace(os.sep, "/")
            if not relative.startswith(prefix):
                continue
            name = fs_stage.internal_file_name(path)
            if regex and not (regex.fullmatch(relative) or regex.fullmatch(name)):
                continue
            files.append(StageFile(name, relative, path, root))
    return sorted(files, key=lambda f: f.name)


def _parse(sql: str, params: Sequence[Any]) -> tuple[str, str | None]:
    """The stage reference (@stage/path) and PATTERN of a LIST or REMOVE statement."""
    tokens = code(tokenize(sql))
    if tokens and tokens[-1].text == ";":
        tokens.pop()
    verb = tokens[0].upper
    if len(tokens) < 2:
        raise syntax_error(f"{verb} needs a stage, eg: {verb} @my_stage/path/")
    ref = tokens[1]
    reference = unquote_string(ref.text) if ref.kind is Kind.STRING else ref.text
    if not reference.startswith("@"):
        raise syntax_error(f"syntax error in {verb} stage reference {reference}")

    rest = tokens[2:]
    if not rest:
        return reference, None
    # PATTERN = '...' or PATTERN => '...' ('=>' lexes as '=' then '>')
    if rest[0].is_word("PATTERN") and len(rest) >= 3 and rest[1].text == "=":
        value = rest[3:] if rest[2].text == ">" else rest[2:]
        if len(value) == 1 and value[0].kind is Kind.STRING:
            return reference, unquote_string(value[0].text)
        if len(value) == 1 and value[0].kind is Kind.QMARK and len(params) == 1:
            return reference, str(params[0])
    raise syntax_error(f"the emulator's {verb} supports only an optional PATTERN = '<regex>'")


def _stage_root(conn: FakeSnowflakeConnection, reference: str) -> str:
    name = reference[1:].partition("/")[0]
    if name.startswith("~"):
        raise snowflake.connector.errors.ProgrammingError(
            msg="the emulator has no user stage (@~); use a named stage", errno=9999, sqlstate="0A000"
        )
    parts = name.count(".") + 1
    if (parts < 3 and not conn.database) or (parts < 2 and not conn.schema):
        raise snowflake.connector.errors.ProgrammingError(
            msg="Cannot perform LIST. This session does not have a current database or schema. "
            "Call 'USE DATABASE', or use a qualified name.",
            errno=90105,
            sqlstate="22000",
        )
    catalog, schema, stage_name = fs_stage.parts_from_var(name, conn.database, conn.schema)
    lookup = fs_stage.stage_lookup_sql(catalog, schema, stage_name, conn.table_stages)
    # the session's own DuckDB connection, which sees its temporary tables' stages
    row = conn._duck_conn.execute(lookup).fetchone()  # noqa: SLF001
    if row is None:
        raise fs_stage.not_found_error(f"{catalog}.{schema}.{stage_name}")
    return fs_stage.internal_dir(row[0])
