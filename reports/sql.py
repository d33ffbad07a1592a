"""Checks on a panel's SQL before it is saved: one read-only statement whose parameters are filters.

The databases enforce read-only too (read-only transactions on Postgres, a statement-type
check and a read-only role on Snowflake); this check tells the author at once, in the admin.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from project.sources import placeholder_names
from project.sources.base import PLACEHOLDER

# Nodes that write, lock or change the session, wherever they appear (a CTE can DELETE).
FORBIDDEN = tuple(
    getattr(exp, name)
    for name in (
        "Insert",
        "Update",
        "Delete",
        "Merge",
        "Create",
        "Drop",
        "Alter",
        "Command",
        "Copy",
        "Into",
        "Lock",
        "Set",
        "Transaction",
        "Commit",
        "Rollback",
        "Grant",
        "TruncateTable",
        "Use",
        "Pragma",
    )
    if hasattr(exp, name)
)
QUERY = (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Subquery, exp.Values)


def for_parsing(sql: str) -> str:
    """The statement with every `%(name)s` replaced by NULL, which any dialect parses."""
    return PLACEHOLDER.sub(lambda match: "NULL" if match.group("name") else "%", sql)


def check_sql(sql: str, dialect: str, parameters: Iterable[str]) -> list[str]:
    """What is wrong with a panel's SQL; an empty list when it may be saved."""
    problems: list[str] = []
    try:
        statements = [statement for statement in sqlglot.parse(for_parsing(sql), read=dialect) if statement]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = f" (line {first.get('line')}, column {first.get('col')})" if first.get("line") else ""
        description = str(first.get("description") or exc).split(" but got ")[0].split(". Line ")[0]
        near = f" near “{first['highlight']}”" if first.get("highlight") else ""
        return [f"The SQL does not parse as {dialect}{where}: {description}{near}."]
    if len(statements) != 1:
        return [f"Write exactly one statement, not {len(statements)}."]
    statement = statements[0]
    if not isinstance(statement, QUERY):
        problems.append(f"Only read-only queries may run here; this is a {statement.key.upper()} statement.")
    elif forbidden := sorted({node.key.upper() for node in statement.walk() if isinstance(node, FORBIDDEN)}):
        problems.append(f"Only read-only queries may run here; it contains {', '.join(forbidden)}.")
    known = set(parameters)
    if unknown := [name for name in placeholder_names(sql) if name not in known]:
        offered = ", ".join(sorted(known)) or "none"
        problems.append(f"No filter provides {', '.join(unknown)} (the report's parameters: {offered}).")
    return problems
