"""Is a report statement one query that only reads? Checked from its parse tree (sqlglot).

    check_read_only(sql, "snowflake")   # raises NotReadOnly with the reason, else returns None
    check_read_only(sql, "postgres")

Looking at the first keyword is not enough: `WITH x AS PROCEDURE (...) ... $$ DELETE ... $$
CALL x()` starts with WITH, and `SELECT 1; COMMIT; UPDATE ...` with SELECT. So the text must
parse as exactly one statement, that statement must be a query (or, on Snowflake, SHOW,
DESCRIBE or LIST), and no node anywhere in its tree may write, lock, call or run dynamic SQL.

This is one layer: the database role a report runs under is the guard that holds whatever the
text is (read-only role on Snowflake, read-only transaction and role on Postgres).
`%(name)s` placeholders are checked as Fanout writes them; pass the text before binding.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

Dialect = Literal["snowflake", "postgres"]

# Nodes that change data or the schema, hold locks, move files or run other code.
_FORBIDDEN: dict[type[exp.Expr], str] = {
    exp.Insert: "INSERT",
    exp.Update: "UPDATE",
    exp.Delete: "DELETE",
    exp.Merge: "MERGE",
    exp.Create: "CREATE",
    exp.Drop: "DROP",
    exp.Alter: "ALTER",
    exp.TruncateTable: "TRUNCATE",
    exp.Copy: "COPY",
    exp.Into: "SELECT ... INTO",
    exp.Lock: "FOR UPDATE / FOR SHARE",
    exp.Transaction: "a transaction statement",
    exp.Commit: "COMMIT",
    exp.Rollback: "ROLLBACK",
    exp.Set: "SET",
    exp.Command: "a command",
}
# Functions with side effects that a query may call; the role refuses most, this names them early.
_SIDE_EFFECT_FUNCTIONS = {
    "postgres": re.compile(
        r"^(pg_terminate_backend|pg_cancel_backend|pg_reload_conf|pg_rotate_logfile|pg_switch_wal|set_config|"
        r"nextval|setval|lo_import|lo_export|lo_unlink|pg_advisory\w*|pg_try_advisory\w*|dblink\w*|"
        r"pg_read_file|pg_read_binary_file|pg_ls_dir|pg_stat_reset\w*|pg_create_\w+|pg_drop_\w+)$",
        re.IGNORECASE,
    ),
    # SYSTEM$ functions cancel queries, abort sessions, change pipes and tasks... Only
    # SYSTEM$WAIT and SYSTEM$TYPEOF are harmless in a report.
    "snowflake": re.compile(r"^(?!SYSTEM\$(WAIT|TYPEOF)$)SYSTEM\$\w+$", re.IGNORECASE),
}
_SNOWFLAKE_ROOTS = (exp.Show, exp.Describe, exp.ListStage)
_PLACEHOLDER = re.compile(r"%\((?P<name>[A-Za-z_][A-Za-z0-9_]*)\)s")


class NotReadOnly(ValueError):
    """The statement may write, or cannot be shown to only read; the message says why."""


def check_read_only(sql: str, dialect: Dialect) -> None:
    """Raise NotReadOnly unless `sql` is one statement that only reads."""
    if dialect not in _SIDE_EFFECT_FUNCTIONS:
        raise ValueError(f"unknown dialect {dialect!r}")
    if reason := _refusal(sql, dialect):
        raise NotReadOnly(reason)


# A report runs the same few texts again and again (values are bound, never in the text), and
# parsing one costs milliseconds of CPU under the GIL: under load it was a fifth of the server's
# time (py-spy, bench.load). The verdict depends on the text alone, so it is remembered.
@functools.lru_cache(maxsize=1024)
def _refusal(sql: str, dialect: Dialect) -> str | None:
    """Why `sql` may not run as a report query, or None."""
    try:
        _check(sql, dialect)
    except NotReadOnly as refused:
        return str(refused)
    return None


def _check(sql: str, dialect: Dialect) -> None:
    # Fanout's %(name)s placeholders are not SQL either dialect parses; a bound value is an operand.
    text = _PLACEHOLDER.sub("NULL", sql).replace("%%", "%")
    try:
        tokens = sqlglot.tokenize(text, read=dialect)
    except SqlglotError as exc:
        raise NotReadOnly(f"report queries must be valid SQL: {_first_line(exc)}") from None
    _refuse_procedure_tokens(tokens)
    try:
        # sqlglot logs a warning for each statement it falls back to parsing as a Command.
        with _quiet_sqlglot():
            statements = [s for s in sqlglot.parse(text, read=dialect) if s is not None]
    except SqlglotError as exc:
        raise NotReadOnly(f"report queries must be valid SQL: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise NotReadOnly(f"report queries are one statement only; this text has {len(statements)}")
    (tree,) = statements
    allowed_roots: tuple[type[exp.Expr], ...] = (exp.Query,)
    if dialect == "snowflake":
        allowed_roots += _SNOWFLAKE_ROOTS
    if not isinstance(tree, allowed_roots):
        raise NotReadOnly(f"report queries are read-only: {_describe(tree)} may not run, only a query")
    for node in tree.walk():
        for kind, name in _FORBIDDEN.items():
            if isinstance(node, kind):
                raise NotReadOnly(f"report queries are read-only: {name} may not run inside a query")
        if isinstance(node, exp.Func):
            name = node.sql_name() if not isinstance(node, exp.Anonymous) else str(node.this)
            if _SIDE_EFFECT_FUNCTIONS[dialect].match(name):
                raise NotReadOnly(f"report queries are read-only: the function {name} may not be called")


def _refuse_procedure_tokens(tokens: list[sqlglot.tokens.Token]) -> None:
    """Name the constructs that run code, before a parse error could hide them."""
    words = [t.text.upper() for t in tokens if t.token_type is not TokenType.STRING]
    for before, after in zip(words, words[1:], strict=False):
        if before == "AS" and after == "PROCEDURE":
            raise NotReadOnly("report queries are read-only: anonymous procedures (WITH ... AS PROCEDURE) may not run")
        if before == "EXECUTE" and after == "IMMEDIATE":
            raise NotReadOnly("report queries are read-only: EXECUTE IMMEDIATE may not run")
    if "CALL" in words[:1]:
        raise NotReadOnly("report queries are read-only: CALL may not run")


def _describe(tree: exp.Expr) -> str:
    if isinstance(tree, exp.Command):
        return str(tree.this).upper()
    return tree.key.upper()


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class _quiet_sqlglot:  # noqa: N801 - a context manager
    def __enter__(self) -> None:
        self.logger = logging.getLogger("sqlglot")
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)
