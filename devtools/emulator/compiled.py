"""A SELECT compiled once per text: fakesnow's parse and transforms, kept for the next run.

fakesnow parses every statement with sqlglot (twice: its HTTP handler first, for the
statement's type) and runs some fifty tree transforms over it
before DuckDB sees it: about 30 % of the emulator's CPU per query (py-spy on the emulator
during bench/sources.py), which on a small machine is CPU the application under test does
not get. Dashboards run the same texts over and over (the values travel as bindings), so
the emulator keeps the parsed tree of each text, and for a plain SELECT the transformed
tree too, keyed on the text and the session's current database and schema (the only
session state a SELECT's transforms read). Each use gets its own copy, so no run sees
another's changes. What is not a plain SELECT (DDL, DML, SET, SHOW, a UNION, anything
naming IDENTIFIER(), whose transform reads the bound values) is compiled every time, as
fakesnow does.

Nothing about what the emulator accepts changes: the same trees reach DuckDB, and a text
that does not parse raises each time (an exception is never kept).
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections import OrderedDict
from typing import Any

import fakesnow.cursor
from fakesnow.cursor import FakeSnowflakeCursor
from sqlglot import Expr, exp

MAX_KEPT = 512
_TEXT = "fanout_statement_text"

_fakesnow_parse_one = fakesnow.cursor.parse_one
_fakesnow_transform = FakeSnowflakeCursor._transform  # noqa: SLF001

_transformed: OrderedDict[tuple[str, str | None, str | None], Expr] = OrderedDict()
_lock = threading.Lock()


@functools.lru_cache(maxsize=MAX_KEPT)
def _parsed(command: str) -> Expr:
    return _fakesnow_parse_one(command)


def parse_one(command: str) -> Expr:
    tree = _parsed(command).copy()
    tree.meta[_TEXT] = command
    return tree


def transform(self: FakeSnowflakeCursor, expression: Expr, params: Any) -> Expr:
    text = expression.meta.get(_TEXT)
    if text is None or type(expression) is not exp.Select or "IDENTIFIER" in text.upper():
        return _fakesnow_transform(self, expression, params)
    key = (text, self._conn.database, self._conn.schema)  # noqa: SLF001
    with _lock:
        kept = _transformed.get(key)
        if kept is not None:
            _transformed.move_to_end(key)
    if kept is not None:
        return kept.copy()
    transformed = _fakesnow_transform(self, expression, params)
    with _lock:
        _transformed[key] = transformed.copy()
        while len(_transformed) > MAX_KEPT:
            _transformed.popitem(last=False)
    return transformed


def install() -> None:
    fakesnow.cursor.parse_one = parse_one  # type: ignore[assignment]
    # The module (the package's `server` attribute is a function to mypy): it reads the type first.
    server: Any = importlib.import_module("fakesnow.server")
    server.parse_one = parse_one
    FakeSnowflakeCursor._transform = transform  # type: ignore[method-assign]  # noqa: SLF001
