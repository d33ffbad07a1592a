"""SYSTEM$WAIT and SYSTEM$CANCEL_QUERY, evaluated by the server before the statement runs.

A call is replaced by its result as a string literal, so `SELECT SYSTEM$WAIT(2) AS w, 1 AS x`
runs as `SELECT 'waited 2 seconds' AS w, 1 AS x`. The wait is an asyncio sleep on the event
loop: it holds no thread, any number of waits overlap, and an abort ends it at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import snowflake.connector.errors

from devtools.emulator import running
from devtools.emulator.running import RunningQuery
from devtools.emulator.sqltext import (
    Kind,
    Token,
    code,
    matching_paren,
    quote_string,
    split_top_level,
    tokenize,
    unquote_string,
)

_MENTIONED = re.compile(r"SYSTEM\$(?:WAIT|CANCEL_QUERY)\s*\(", re.IGNORECASE)

_SECONDS_PER_UNIT = {
    "SECONDS": 1.0,
    "MILLISECONDS": 1e-3,
    "MICROSECONDS": 1e-6,
    "NANOSECONDS": 1e-9,
    "MINUTES": 60.0,
    "HOURS": 3600.0,
}


def mentioned(sql: str) -> bool:
    return bool(_MENTIONED.search(sql))


async def rewrite[P](
    sql: str,
    params: list[P] | None,
    query: RunningQuery,
    value_of: Callable[[P], Any],
    describe_only: bool = False,
    deferred: list[float] | None = None,
) -> tuple[str, list[P] | None]:
    """Evaluate the system function calls in sql, returning the statement and the params still used.

    params are the statement's positional bindings (? or :1 placeholders), in whatever form the
    caller keeps them; value_of turns one into its value. A describe-only request does not wait;
    with `deferred`, each wait's seconds are appended to it for the caller to wait, not waited.
    """
    tokens = tokenize(sql)
    parts: list[str] = []
    done = 0
    consumed_qmarks: set[int] = set()
    consumed_numbers: set[int] = set()
    qmarks_seen = 0
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.kind is Kind.QMARK:
            qmarks_seen += 1
        elif token.is_word("SYSTEM$WAIT", "SYSTEM$CANCEL_QUERY") and (open_index := _next_code(tokens, i)) is not None:
            close = matching_paren(tokens, open_index)
            values: list[Any] = []
            for arg in split_top_level(tokens[open_index + 1 : close], ","):
                only = code(arg)
                if len(only) == 1 and only[0].kind is Kind.QMARK:
                    consumed_qmarks.add(qmarks_seen)
                    values.append(_bound(token.upper, params, qmarks_seen, value_of))
                    qmarks_seen += 1
                elif len(only) == 1 and only[0].kind is Kind.PARAM and only[0].text[1:].isdigit():
                    number = int(only[0].text[1:])
                    consumed_numbers.add(number)
                    values.append(_bound(token.upper, params, number - 1, value_of))
                else:
                    values.append(_literal(token.upper, only))
            result = await _evaluate(token.upper, values, query, describe_only, deferred)
            parts += [sql[done : token.start], quote_string(result)]
            done = tokens[close].end
            i = close + 1
            continue
        i += 1
    parts.append(sql[done:])
    rewritten = "".join(parts)

    if params is None or not (consumed_qmarks or consumed_numbers):
        return rewritten, params
    if consumed_qmarks:
        return rewritten, [p for n, p in enumerate(params) if n not in consumed_qmarks]
    return _renumber(rewritten, params)


def _next_code(tokens: list[Token], index: int) -> int | None:
    """Index of the ( that follows tokens[index], if it is a call."""
    for j in range(index + 1, len(tokens)):
        if tokens[j].kind in (Kind.SPACE, Kind.COMMENT):
            continue
        return j if tokens[j].text == "(" else None
    return None


def _bound[P](function: str, params: list[P] | None, index: int, value_of: Callable[[P], Any]) -> Any:
    if params is None or not 0 <= index < len(params):
        raise _not_literal(function)
    return value_of(params[index])


def _literal(function: str, arg: list[Token]) -> str:
    if len(arg) == 1 and arg[0].kind is Kind.NUMBER:
        return arg[0].text
    if len(arg) == 1 and arg[0].kind is Kind.STRING:
        return unquote_string(arg[0].text)
    raise _not_literal(function)


def _not_literal(function: str) -> snowflake.connector.errors.ProgrammingError:
    return snowflake.connector.errors.ProgrammingError(
        msg=f"SQL compilation error:\nthe emulator's {function} takes only literal or bound arguments",
        errno=1003,
        sqlstate="42000",
    )


def _renumber[P](sql: str, params: list[P]) -> tuple[str, list[P]]:
    """Number the :n placeholders still in sql from 1, as DuckDB wants every parameter used."""
    tokens = [t for t in tokenize(sql) if t.kind is Kind.PARAM and t.text[1:].isdigit()]
    used = sorted({int(t.text[1:]) for t in tokens})
    new_number = {old: new for new, old in enumerate(used, start=1)}
    parts: list[str] = []
    done = 0
    for t in tokens:
        parts += [sql[done : t.start], f":{new_number[int(t.text[1:])]}"]
        done = t.end
    parts.append(sql[done:])
    return "".join(parts), [params[old - 1] for old in used]


async def _evaluate(
    function: str, values: list[Any], query: RunningQuery, describe_only: bool, deferred: list[float] | None
) -> str:
    if function == "SYSTEM$WAIT":
        return await _wait(values, query, describe_only, deferred)
    return _cancel_query(values, query)


async def _wait(values: list[Any], query: RunningQuery, describe_only: bool, deferred: list[float] | None) -> str:
    if len(values) not in (1, 2):
        raise _invalid("SYSTEM$WAIT takes an amount and an optional time unit")
    amount = str(values[0])
    unit = str(values[1]).upper() if len(values) == 2 else "SECONDS"
    try:
        seconds = float(amount) * _SECONDS_PER_UNIT[unit]
    except (KeyError, ValueError):
        raise _invalid(f"invalid SYSTEM$WAIT arguments ({amount}, {unit})") from None
    if describe_only:
        pass
    elif deferred is not None:
        deferred.append(seconds)
    else:
        await query.wait(seconds)
    return f"waited {amount} {unit.lower()}"


def _cancel_query(values: list[Any], query: RunningQuery) -> str:
    if len(values) != 1:
        raise _invalid("SYSTEM$CANCEL_QUERY takes one query id")
    # A running query is known by its requestId: the emulator assigns query ids as it answers.
    target = running.find(str(values[0]))
    if target is None or target is query:
        return "Identified SQL statement is not currently executing."
    target.cancel()
    return f"query [{values[0]}] terminated."


def _invalid(message: str) -> snowflake.connector.errors.ProgrammingError:
    return snowflake.connector.errors.ProgrammingError(msg=message, errno=100069, sqlstate="22023")
