"""Checks on report SQL (a panel's, a filter's options query): one read-only statement whose
parameters are filters, judged from its parse tree (project.sources.readonly, which the
Snowflake source also runs on every statement).

It runs when the SQL is saved (the admin's forms, the models' `clean()`), to tell the author
at once, and again before every run (`refuse_unless_read_only`), because SQL also arrives
through the ORM, fixtures and data migrations. The databases enforce read-only as well:
a read-only role and read-only transactions on Postgres, a read-only role on Snowflake.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import sqlglot
from sqlglot.errors import ParseError, SqlglotError, TokenError

from project.sources import QueryError, placeholder_names
from project.sources.base import PLACEHOLDER
from project.sources.readonly import NotReadOnly, check_read_only


def for_parsing(sql: str) -> str:
    """The statement with every `%(name)s` replaced by NULL, which any dialect parses."""
    return PLACEHOLDER.sub(lambda match: "NULL" if match.group("name") else "%", sql)


def parameter_problems(sql: str, parameters: Iterable[str]) -> list[str]:
    """The placeholders in `sql` that no filter provides."""
    known = set(parameters)
    if unknown := [name for name in placeholder_names(sql) if name not in known]:
        offered = ", ".join(sorted(known)) or "none"
        return [f"No filter provides {', '.join(unknown)} (the report's parameters: {offered})."]
    return []


# Every run checks its statement again: parsed once per process for each text.
@lru_cache(maxsize=1024)
def read_only_problems(sql: str, dialect: str) -> tuple[str, ...]:
    """Why `sql` is not exactly one read-only query in `dialect`; empty when it is.

    Whether it only reads is project.sources.readonly's decision (the one checker, which the
    Snowflake source also runs on every statement); a text that does not parse is explained
    here for its author: where, and what."""
    try:
        check_read_only(sql, "snowflake" if dialect == "snowflake" else "postgres")
    except NotReadOnly as exc:
        reason = str(exc)
        if reason.startswith("report queries must be valid SQL") and (problem := parse_problem(sql, dialect)):
            return (problem,)
        return (reason[:1].upper() + reason[1:] + ".",)
    except RecursionError:
        return ("The SQL is nested too deeply to be checked; simplify it.",)
    return ()


def parse_problem(sql: str, dialect: str) -> str | None:
    """Where and why `sql` does not parse in `dialect`; None when it parses."""
    try:
        sqlglot.parse(for_parsing(sql), read=dialect)
    except TokenError as exc:
        # An unterminated quote, identifier, dollar-quoted string or comment: the tokenizer gives up.
        near = str(exc).removeprefix("Error tokenizing ").strip()
        return f"The SQL does not parse as {dialect}: a quote, string or comment is not closed, near {near}."
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = f" (line {first.get('line')}, column {first.get('col')})" if first.get("line") else ""
        description = str(first.get("description") or exc).split(" but got ")[0].split(". Line ")[0]
        near = f" near “{first['highlight']}”" if first.get("highlight") else ""
        return f"The SQL does not parse as {dialect}{where}: {description}{near}."
    except SqlglotError:
        return None  # the checker's own message says it
    return None


def refuse_unless_read_only(sql: str, dialect: str, source: str) -> None:
    """Raise QueryError (the page shows it, the API answers 422) unless `sql` is one read-only query."""
    if problems := read_only_problems(sql, dialect):
        raise QueryError(source, "Refused before it ran: " + " ".join(problems))
