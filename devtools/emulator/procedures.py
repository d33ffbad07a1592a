"""Stored procedures in Snowflake Scripting (LANGUAGE SQL): CREATE, DROP and CALL.

A procedure is stored as its source in `_fs_global._fs_information_schema._emu_procedures`
(a file under the data dir, so it survives a restart) and interpreted statement by statement
when called: each SQL statement runs through the session's fakesnow cursor, so it is
transpiled like any other query, and a cancelled CALL stops at once. The subset supported is
described in devtools/emulator/__init__.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any

import duckdb
import snowflake.connector.errors
from fakesnow.cursor import FakeSnowflakeCursor

from devtools.emulator import stage, system_functions
from devtools.emulator.running import QueryCancelled, RunningQuery
from devtools.emulator.sqltext import (
    Kind,
    Token,
    code,
    first_words,
    line_and_position,
    matching_paren,
    normalise_ident,
    split_top_level,
    syntax_error,
    text_of,
    tokenize,
    unquote_string,
)

TABLE = "_fs_global._fs_information_schema._emu_procedures"
_CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    database_name VARCHAR,
    schema_name VARCHAR,
    name VARCHAR,
    arity INTEGER,
    arguments VARCHAR,
    returns VARCHAR,
    body VARCHAR,
    created_on TIMESTAMPTZ,
    PRIMARY KEY (database_name, schema_name, name, arity)
)
"""

# nested CALLs (directly or through EXECUTE IMMEDIATE) deeper than this are a runaway recursion
_MAX_DEPTH = 32

# The statements after which SQLROWCOUNT, SQLFOUND and SQLNOTFOUND hold a count: DML only.
# COPY INTO, REMOVE, TRUNCATE and queries are not DML, and since the 2025_01 behaviour
# change (enabled by default) the variables are NULL after any non-DML statement:
# https://docs.snowflake.com/en/developer-guide/snowflake-scripting/dml-status
# https://docs.snowflake.com/en/sql-reference/transactions#terminology (DML: INSERT, UPDATE,
# DELETE, MERGE, TRUNCATE)
_DML = {"INSERT", "UPDATE", "DELETE", "MERGE"}

# Snowflake Scripting statements outside the supported subset, named in the error
_UNSUPPORTED_STATEMENTS = {
    "IF",
    "ELSEIF",
    "ELSE",
    "CASE",
    "FOR",
    "WHILE",
    "REPEAT",
    "LOOP",
    "OPEN",
    "FETCH",
    "CLOSE",
    "RAISE",
    "BREAK",
    "CONTINUE",
    "EXIT",
    "EXCEPTION",
    "DECLARE",
    "AWAIT",
    "CANCEL",
}
_UNSUPPORTED_TYPES = {"RESULTSET", "CURSOR", "EXCEPTION"}

# the words that end the type after RETURNS
_CLAUSE_KEYWORDS = (
    "NOT",
    "NULL",
    "LANGUAGE",
    "CALLED",
    "RETURNS",
    "STRICT",
    "VOLATILE",
    "IMMUTABLE",
    "COMMENT",
    "EXECUTE",
)


def unsupported(construct: str) -> snowflake.connector.errors.ProgrammingError:
    return snowflake.connector.errors.ProgrammingError(
        msg=f"SQL compilation error:\nthe Snowflake emulator does not support {construct} in procedures",
        errno=1003,
        sqlstate="0A000",
    )


@dataclass(frozen=True)
class Argument:
    name: str
    type: str
    default: str | None = None


@dataclass(frozen=True)
class Procedure:
    database: str
    schema: str
    name: str
    arguments: tuple[Argument, ...]
    returns: str
    body: str

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.database, self.schema, self.name, len(self.arguments))

    def accepts(self, count: int) -> bool:
        required = sum(1 for a in self.arguments if a.default is None)
        return required <= count <= len(self.arguments)


# -- CREATE and DROP --------------------------------------------------------------------------


async def create(query: RunningQuery, sql: str) -> str:
    """Store the procedure a CREATE PROCEDURE defines; the status message."""
    procedure, replace, if_not_exists = _parse_create(query, sql)
    parse_body(procedure.body)  # reject what CALL could not run now, not at the first call
    return await query.run_in_thread(_store, query, procedure, replace, if_not_exists)


async def drop(query: RunningQuery, sql: str) -> str:
    tokens = code(tokenize(sql))
    if tokens and tokens[-1].text == ";":
        tokens.pop()
    i = 2
    if_exists = len(tokens) > 4 and tokens[2].is_word("IF") and tokens[3].is_word("EXISTS")
    if if_exists:
        i = 4
    name_tokens, i = _name_tokens(tokens, i)
    if i >= len(tokens) or tokens[i].text != "(":
        raise syntax_error("DROP PROCEDURE needs the argument types, eg: DROP PROCEDURE p(VARCHAR)")
    close = matching_paren(tokens, i)
    arity = len([p for p in split_top_level(tokens[i + 1 : close], ",") if p])
    database, schema, name = _qualify(query, name_tokens)
    return await query.run_in_thread(_delete, query, (database, schema, name, arity), if_exists)


def _store(query: RunningQuery, procedure: Procedure, replace: bool, if_not_exists: bool) -> str:
    # A cursor of its own: the write commits at once, whatever transaction the session has open.
    with query.conn._duck_conn.cursor() as duck:  # noqa: SLF001
        duck.execute(_CREATE_TABLE)
        where = "database_name = ? AND schema_name = ? AND name = ? AND arity = ?"
        if duck.execute(f"SELECT 1 FROM {TABLE} WHERE {where}", list(procedure.key)).fetchone() and not replace:
            if if_not_exists:
                return f"{procedure.name} already exists, statement succeeded."
            raise snowflake.connector.errors.ProgrammingError(
                msg=f"SQL compilation error:\nObject '{procedure.name}' already exists.", errno=2002, sqlstate="42710"
            )
        arguments = json.dumps([[a.name, a.type, a.default] for a in procedure.arguments])
        duck.execute(
            f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, now())",
            [*procedure.key, arguments, procedure.returns, procedure.body],
        )
    return f"Function {procedure.name} successfully created."


def _delete(query: RunningQuery, key: tuple[str, str, str, int], if_exists: bool) -> str:
    with query.conn._duck_conn.cursor() as duck:  # noqa: SLF001
        duck.execute(_CREATE_TABLE)
        where = "database_name = ? AND schema_name = ? AND name = ? AND arity = ?"
        if not duck.execute(f"SELECT 1 FROM {TABLE} WHERE {where}", list(key)).fetchone():
            if if_exists:
                return "Drop statement executed successfully (procedure already dropped)."
            raise _unknown(key[:3])
        duck.execute(f"DELETE FROM {TABLE} WHERE {where}", list(key))
    return f"{key[2]} successfully dropped."


def _load(query: RunningQuery, database: str, schema: str, name: str) -> list[Procedure]:
    with query.conn._duck_conn.cursor() as duck:  # noqa: SLF001
        duck.execute(_CREATE_TABLE)
        rows = duck.execute(
            f"SELECT arguments, returns, body FROM {TABLE} WHERE database_name = ? AND schema_name = ? AND name = ? "
            "ORDER BY arity",
            [database, schema, name],
        ).fetchall()
    return [
        Procedure(database, schema, name, tuple(Argument(*a) for a in json.loads(arguments)), returns, body)
        for arguments, returns, body in rows
    ]


def _unknown(name: tuple[str, ...]) -> snowflake.connector.errors.ProgrammingError:
    return snowflake.connector.errors.ProgrammingError(
        msg=f"SQL compilation error:\nUnknown function {'.'.join(name)}", errno=2140, sqlstate="42601"
    )


def _parse_create(query: RunningQuery, sql: str) -> tuple[Procedure, bool, bool]:
    tokens = tokenize(sql)
    meaningful = code(tokens)
    if meaningful and meaningful[-1].text == ";":
        meaningful.pop()
    body_token = meaningful[-1] if len(meaningful) >= 3 else None
    if not body_token or body_token.kind not in (Kind.DOLLAR, Kind.STRING) or not meaningful[-2].is_word("AS"):
        raise syntax_error("CREATE PROCEDURE must end with AS $$ <body> $$ or AS '<body>'")

    header = meaningful[:-2]
    procedure_at = next(n for n, t in enumerate(header) if t.is_word("PROCEDURE"))
    replace = any(t.is_word("REPLACE") for t in header[:procedure_at])
    i = procedure_at + 1
    if_not_exists = len(header) > i + 2 and header[i].is_word("IF") and header[i + 2].is_word("EXISTS")
    if if_not_exists:
        i += 3
    name_tokens, i = _name_tokens(header, i)
    if i >= len(header) or header[i].text != "(":
        raise syntax_error("CREATE PROCEDURE needs an argument list, eg: p(path VARCHAR)")
    close = matching_paren(header, i)
    arguments = tuple(_argument(sql, part) for part in split_top_level(header[i + 1 : close], ",") if part)

    # RETURNS <type> [NOT NULL] LANGUAGE SQL [EXECUTE AS ...] and other clauses, in any order
    clauses = header[close + 1 :]
    returns_at = next((n for n, t in enumerate(clauses) if t.is_word("RETURNS")), None)
    if returns_at is None:
        raise syntax_error("CREATE PROCEDURE needs RETURNS <type>")
    type_end = next(
        (n for n in range(returns_at + 1, len(clauses)) if clauses[n].is_word(*_CLAUSE_KEYWORDS)), len(clauses)
    )
    return_type = text_of(sql, clauses[returns_at + 1 : type_end])
    if not return_type:
        raise syntax_error("CREATE PROCEDURE needs RETURNS <type>")
    if return_type.upper().startswith("TABLE"):
        raise unsupported("RETURNS TABLE")
    language_at = next((n for n, t in enumerate(clauses) if t.is_word("LANGUAGE")), None)
    if language_at is not None and language_at + 1 < len(clauses) and not clauses[language_at + 1].is_word("SQL"):
        raise unsupported(f"LANGUAGE {clauses[language_at + 1].upper}")

    database, schema, name = _qualify(query, name_tokens)
    body = unquote_string(body_token.text)
    return Procedure(database, schema, name, arguments, return_type, body), replace, if_not_exists


def _argument(sql: str, tokens: list[Token]) -> Argument:
    tokens = code(tokens)
    if tokens[0].kind not in (Kind.WORD, Kind.QUOTED) or len(tokens) < 2:
        raise syntax_error(f"invalid procedure argument {text_of(sql, tokens)}")
    default_at = next((n for n, t in enumerate(tokens) if t.is_word("DEFAULT")), None)
    type_tokens = tokens[1:default_at]
    if not type_tokens:
        raise syntax_error(f"procedure argument {tokens[0].text} needs a type")
    default = text_of(sql, tokens[default_at + 1 :]) if default_at is not None else None
    return Argument(normalise_ident(tokens[0].text), text_of(sql, type_tokens), default)


def _name_tokens(tokens: list[Token], i: int) -> tuple[list[Token], int]:
    """The [db.][schema.]name starting at tokens[i], and the index after it."""
    parts = []
    while i < len(tokens) and tokens[i].kind in (Kind.WORD, Kind.QUOTED):
        parts.append(tokens[i])
        i += 1
        if i < len(tokens) and tokens[i].text == ".":
            i += 1
        else:
            break
    if not 1 <= len(parts) <= 3:
        raise syntax_error("invalid procedure name")
    return parts, i


def _qualify(query: RunningQuery, name_tokens: list[Token]) -> tuple[str, str, str]:
    names = [normalise_ident(t.text) for t in name_tokens]
    database = names[-3] if len(names) == 3 else query.conn.database
    schema = names[-2] if len(names) >= 2 else query.conn.schema
    if not database or not schema:
        raise snowflake.connector.errors.ProgrammingError(
            msg="This session does not have a current database or schema. Call 'USE DATABASE', or use a "
            "qualified name.",
            errno=90105,
            sqlstate="22000",
        )
    return database, schema, names[-1]


# -- the body ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    kind: str  # sql, let, assign, return, execute, null
    offset: int  # in the body, for the line an error reports
    text: str = ""  # the SQL of a sql statement, else the expression
    target: str = ""  # the variable a let or assign sets
    type: str = ""  # the type a let declares
    using: tuple[str, ...] = ()  # EXECUTE IMMEDIATE ... USING (variables)


@dataclass(frozen=True)
class Program:
    declarations: tuple[Statement, ...]
    statements: tuple[Statement, ...]


def parse_body(body: str) -> Program:
    """Parse `[DECLARE ...] BEGIN ... END`, rejecting what the interpreter cannot run."""
    chunks = [chunk for chunk in (code(c) for c in split_top_level(tokenize(body), ";")) if chunk]
    if not chunks:
        raise syntax_error("empty procedure body")

    declarations: list[Statement] = []
    position = 0
    if chunks[0][0].is_word("DECLARE"):
        chunks[0] = chunks[0][1:]
        while position < len(chunks) and chunks[position] and not _opens_block(chunks[position]):
            declarations.append(_declaration(body, chunks[position]))
            position += 1
    if position == len(chunks) or not _opens_block(chunks[position]):
        raise unsupported("a body that is not [DECLARE ...] BEGIN ... END")
    chunks[position] = chunks[position][1:]

    last = chunks[-1]
    if len(last) != 1 or not last[0].is_word("END"):
        raise unsupported("a body that does not end with END (nested blocks, IF, loops or EXCEPTION)")
    chunks[-1] = []
    return Program(tuple(declarations), tuple(_statement(body, c) for c in chunks[position:] if c))


def _opens_block(tokens: list[Token]) -> bool:
    """BEGIN of a block, not BEGIN TRANSACTION."""
    if not tokens or not tokens[0].is_word("BEGIN"):
        return False
    return not (len(tokens) > 1 and tokens[1].is_word("TRANSACTION", "WORK", "NAME"))


def _declaration(body: str, tokens: list[Token]) -> Statement:
    # name [TYPE] [DEFAULT expr | := expr]
    return _assignment(body, tokens, "DECLARE", required=False)


def _assignment(body: str, tokens: list[Token], keyword: str, required: bool = True) -> Statement:
    if not tokens or tokens[0].kind not in (Kind.WORD, Kind.QUOTED):
        raise syntax_error(f"invalid {keyword} statement")
    operator = next((n for n, t in enumerate(tokens) if t.kind is Kind.ASSIGN or t.is_word("DEFAULT")), None)
    type_tokens = tokens[1:operator]
    if type_tokens and type_tokens[0].upper in _UNSUPPORTED_TYPES:
        raise unsupported(f"{type_tokens[0].upper} variables")
    if operator is None and required:
        raise syntax_error(f"{keyword} {tokens[0].text} needs := <expression>")
    return Statement(
        kind="let",
        offset=tokens[0].start,
        text=text_of(body, tokens[operator + 1 :]) if operator is not None else "",
        target=normalise_ident(tokens[0].text),
        type=text_of(body, type_tokens),
    )


def _statement(body: str, tokens: list[Token]) -> Statement:
    first = tokens[0]
    offset = first.start
    if first.is_word("LET"):
        return _assignment(body, tokens[1:], "LET")
    if len(tokens) > 1 and tokens[1].kind is Kind.ASSIGN and first.kind in (Kind.WORD, Kind.QUOTED):
        return Statement("assign", offset, text_of(body, tokens[2:]), target=normalise_ident(first.text))
    if first.is_word("RETURN"):
        if len(tokens) > 1 and tokens[1].is_word("TABLE"):
            raise unsupported("RETURN TABLE")
        return Statement("return", offset, text_of(body, tokens[1:]))
    if first.is_word("EXECUTE") and len(tokens) > 1 and tokens[1].is_word("IMMEDIATE"):
        return _execute_immediate(body, tokens)
    if first.is_word("NULL") and len(tokens) == 1:
        return Statement("null", offset)
    if first.kind is Kind.WORD and first.upper in _UNSUPPORTED_STATEMENTS:
        raise unsupported(f"{first.upper} statements")
    if _opens_block(tokens) or first.is_word("END"):
        raise unsupported("nested BEGIN ... END blocks")
    if first.is_word("SELECT", "WITH") and any(
        t.is_word("INTO") and n + 1 < len(tokens) and tokens[n + 1].kind is Kind.PARAM for n, t in enumerate(tokens)
    ):
        raise unsupported("SELECT ... INTO :variable (use LET v := (SELECT ...))")
    return Statement("sql", offset, text_of(body, tokens))


def _execute_immediate(body: str, tokens: list[Token]) -> Statement:
    using_at = next((n for n, t in enumerate(tokens) if t.is_word("USING")), None)
    expression = tokens[2:using_at]
    using: tuple[str, ...] = ()
    if using_at is not None:
        names = tokens[using_at + 1 :]
        if not names or names[0].text != "(" or names[-1].text != ")":
            raise syntax_error("EXECUTE IMMEDIATE ... USING needs (variable, ...)")
        using = tuple(
            normalise_ident(text_of(body, part).lstrip(":")) for part in split_top_level(names[1:-1], ",") if part
        )
    return Statement("execute", tokens[0].start, text_of(body, expression), using=using)


# -- CALL -------------------------------------------------------------------------------------


@dataclass
class Variable:
    value: Any
    type: str = ""  # declared type: assignments are cast to it


@dataclass
class Frame:
    variables: dict[str, Variable] = field(default_factory=dict)
    # A BEGIN TRANSACTION of this procedure not yet committed or rolled back.
    in_transaction: bool = False

    def __post_init__(self) -> None:
        self.set_rowcount(None)

    def set_rowcount(self, rowcount: int | None) -> None:
        self.variables["SQLROWCOUNT"] = Variable(rowcount)
        self.variables["SQLFOUND"] = Variable(None if rowcount is None else rowcount > 0)
        self.variables["SQLNOTFOUND"] = Variable(None if rowcount is None else rowcount == 0)


async def call(query: RunningQuery, sql: str, params: list[Any], depth: int = 0) -> FakeSnowflakeCursor:
    """Run CALL proc(args); the cursor holds its one-row result, a column named after the procedure."""
    if depth > _MAX_DEPTH:
        raise snowflake.connector.errors.ProgrammingError(
            msg=f"Stored procedure call depth exceeds {_MAX_DEPTH}", errno=100180, sqlstate="P0000"
        )
    procedure, arguments = await _resolve(query, sql)
    frame = Frame()
    for argument, value in zip(
        procedure.arguments, await _argument_values(query, procedure, arguments, params), strict=False
    ):
        frame.variables[argument.name] = Variable(value, argument.type)

    program = parse_body(procedure.body)
    returned = Statement("return", 0)  # falling off the end returns NULL
    for statement in (*program.declarations, *program.statements):
        if statement.kind == "return":
            returned = statement
            break
        try:
            await _run(query, frame, statement, depth)
        except BaseException as e:
            await _roll_back_scoped(query, frame)
            if isinstance(e, QueryCancelled | asyncio.CancelledError) or not isinstance(e, Exception):
                raise
            raise _uncaught(procedure, statement, e) from e
    if frame.in_transaction:
        # A transaction a procedure starts must end in it; Snowflake rolls back one left open
        # and fails the CALL: https://docs.snowflake.com/en/sql-reference/transactions#scoped-transactions
        await _roll_back_scoped(query, frame)
        raise snowflake.connector.errors.ProgrammingError(
            msg="Stored procedure execution error: Scoped transaction started in stored procedure is incomplete "
            "and it was rolled back.",
            errno=100110,
            sqlstate="P0000",
        )

    try:
        expression, values = bind_variables(returned.text or "NULL", frame, scalar=True)
        select = f'SELECT CAST(({expression}) AS {procedure.returns}) AS "{procedure.name}"'
        cur = await _run_on_duckdb(query, select, values)
    except QueryCancelled:
        raise
    except Exception as e:
        raise _uncaught(procedure, returned, e) from e
    return cur


async def describe_call(query: RunningQuery, sql: str) -> FakeSnowflakeCursor:
    """The empty result a CALL would return, for a describe-only request: nothing runs."""
    procedure, _ = await _resolve(query, sql)
    cur = query.conn.cursor()
    select = f'SELECT CAST(NULL AS {procedure.returns}) AS "{procedure.name}" LIMIT 0'
    await query.run_in_thread(cur.execute, select)
    return cur


async def _resolve(query: RunningQuery, sql: str) -> tuple[Procedure, list[str]]:
    tokens = tokenize(sql)
    meaningful = code(tokens)
    if meaningful and meaningful[-1].text == ";":
        meaningful.pop()
    name_tokens, i = _name_tokens(meaningful, 1)
    if i >= len(meaningful) or meaningful[i].text != "(":
        raise syntax_error("CALL needs an argument list, eg: CALL p(1)")
    close = matching_paren(meaningful, i)
    if close != len(meaningful) - 1:
        raise unsupported("CALL ... INTO and anything after the argument list")
    arguments = [text_of(sql, part) for part in split_top_level(meaningful[i + 1 : close], ",") if code(part)]
    if any(re.match(r"^[\w$]+\s*=>", a) for a in arguments):
        raise unsupported("named arguments (name => value)")

    name = _qualify(query, name_tokens)
    candidates = await query.run_in_thread(_load, query, *name)
    for procedure in candidates:
        if procedure.accepts(len(arguments)):
            return procedure, arguments
    if candidates:
        raise snowflake.connector.errors.ProgrammingError(
            msg=f"SQL compilation error:\nInvalid argument types for function '{name[2]}': "
            f"{len(arguments)} arguments given",
            errno=1044,
            sqlstate="42P13",
        )
    raise _unknown(name)


async def _argument_values(
    query: RunningQuery, procedure: Procedure, arguments: list[str], params: list[Any]
) -> list[Any]:
    """Evaluate the call's arguments, cast to the declared types, in one query."""
    expressions = [*arguments, *(a.default or "NULL" for a in procedure.arguments[len(arguments) :])]
    if not expressions:
        return []
    casts = ", ".join(f"CAST(({e}) AS {a.type})" for e, a in zip(expressions, procedure.arguments, strict=True))
    cur = query.conn.cursor()
    await query.run_in_thread(cur.execute, f"SELECT {casts}", binding_params=list(params), server=True)
    row = cur.fetchone()
    assert isinstance(row, tuple)
    return list(row)


async def _roll_back_scoped(query: RunningQuery, frame: Frame) -> None:
    """Undo the procedure's open transaction: a CALL that fails inside BEGIN TRANSACTION
    leaves nothing of it behind, as on Snowflake (the scoped transaction is rolled back:
    https://docs.snowflake.com/en/sql-reference/transactions#scoped-transactions)."""
    if not frame.in_transaction:
        return
    frame.in_transaction = False
    cur = query.conn.cursor()
    await asyncio.shield(query.run_in_thread(cur.execute, "ROLLBACK"))


_BEGIN = re.compile(r"^\s*BEGIN\s+(TRANSACTION|WORK)\b|^\s*START\s+TRANSACTION\b", re.IGNORECASE)
_END = re.compile(r"^\s*(COMMIT|ROLLBACK)\b", re.IGNORECASE)


async def _run(query: RunningQuery, frame: Frame, statement: Statement, depth: int) -> None:
    if statement.kind == "sql" and (_BEGIN.match(statement.text) or _END.match(statement.text)):
        frame.in_transaction = bool(_BEGIN.match(statement.text))
    if statement.kind == "null":
        return
    if statement.kind == "let":
        value = await _evaluate(query, frame, statement.text, statement.type) if statement.text else None
        frame.variables[statement.target] = Variable(value, statement.type)
    elif statement.kind == "assign":
        if statement.target not in frame.variables:
            raise syntax_error(f"undeclared variable '{statement.target}'")
        variable = frame.variables[statement.target]
        variable.value = await _evaluate(query, frame, statement.text, variable.type)
    elif statement.kind == "execute":
        sql = await _evaluate(query, frame, statement.text, "")
        if not isinstance(sql, str):
            raise syntax_error("EXECUTE IMMEDIATE needs a string")
        if _opens_block(code(tokenize(sql))) or re.match(r"\s*DECLARE\b", sql, re.IGNORECASE):
            raise unsupported("EXECUTE IMMEDIATE of a Snowflake Scripting block")
        values = [_value(frame, name) for name in statement.using]
        frame.set_rowcount(await execute(query, sql, values, depth))
    else:
        sql, values = bind_variables(statement.text, frame, scalar=False)
        frame.set_rowcount(await execute(query, sql, values, depth))


async def execute(query: RunningQuery, sql: str, params: list[Any], depth: int) -> int | None:
    """Run one SQL statement of a procedure; the rows it affected (SQLROWCOUNT) if it is DML."""
    words = code(tokenize(sql))[:1]
    first = words[0].upper if words else ""
    if first == "CALL":
        await call(query, sql, params, depth + 1)
        return None
    if first in ("LIST", "LS"):
        await query.run_in_thread(stage.list_files, query.conn, sql, params)
        return None
    if first in ("REMOVE", "RM"):
        await query.run_in_thread(stage.remove_files, query.conn, sql, params)
        return None  # not DML
    if is_create_procedure(sql):
        await create(query, sql)
        return None
    cur = await _run_on_duckdb(query, sql, params)
    return cur.rowcount if first in _DML else None


async def _run_on_duckdb(query: RunningQuery, sql: str, params: list[Any]) -> FakeSnowflakeCursor:
    """Run one statement or expression of a procedure; its cursor.

    SYSTEM$WAIT and SYSTEM$CANCEL_QUERY are evaluated first, wherever they appear: in a
    statement, and in an expression (LET, :=, RETURN), as Snowflake Scripting allows
    (https://docs.snowflake.com/en/developer-guide/snowflake-scripting/variables).
    DuckDB knows neither function.
    """
    if system_functions.mentioned(sql):
        sql, rewritten = await system_functions.rewrite(sql, params, query, lambda p: p)
        params = rewritten or []
    cur = query.conn.cursor()
    await query.run_in_thread(cur.execute, sql, binding_params=list(params), server=True)
    return cur


def is_create_procedure(sql: str) -> bool:
    words = first_words(sql, 6)
    if words[:1] != ["CREATE"]:
        return False
    modifiers = {"OR", "REPLACE", "TEMP", "TEMPORARY", "SECURE"}
    return next((w for w in words[1:] if w not in modifiers), None) == "PROCEDURE"


async def _evaluate(query: RunningQuery, frame: Frame, expression: str, type_: str) -> Any:
    text, values = bind_variables(expression, frame, scalar=True)
    select = f"SELECT CAST(({text}) AS {type_})" if type_ else f"SELECT ({text})"
    cur = await _run_on_duckdb(query, select, values)
    row = cur.fetchone()
    return row[0] if isinstance(row, tuple) else None


def _value(frame: Frame, name: str) -> Any:
    if name not in frame.variables:
        raise syntax_error(f"undeclared variable '{name}'")
    return frame.variables[name].value


def bind_variables(text: str, frame: Frame, scalar: bool) -> tuple[str, list[Any]]:
    """Replace variable references with ? placeholders; the text and the values to bind.

    `:name` is a variable anywhere. In a scalar expression (LET, :=, RETURN, EXECUTE IMMEDIATE)
    a bare name is one too, except inside a (SELECT ...) subquery, where names are columns, as
    in Snowflake.
    """
    tokens = tokenize(text)
    meaningful = code(tokens)
    index_of = {id(t): n for n, t in enumerate(meaningful)}
    parts: list[str] = []
    values: list[Any] = []
    done = 0
    # one entry per open parenthesis: is it a subquery, or inside one?
    in_subquery = [False]
    for token in tokens:
        n = index_of.get(id(token))
        if token.text == "(" and n is not None:
            following = meaningful[n + 1] if n + 1 < len(meaningful) else None
            in_subquery.append(in_subquery[-1] or bool(following and following.is_word("SELECT", "WITH")))
        elif token.text == ")" and len(in_subquery) > 1:
            in_subquery.pop()

        name = None
        if token.kind is Kind.PARAM and not token.text[1:].isdigit():
            name = normalise_ident(token.text[1:])
        elif scalar and not in_subquery[-1] and token.kind is Kind.WORD and n is not None:
            before = meaningful[n - 1] if n > 0 else None
            after = meaningful[n + 1] if n + 1 < len(meaningful) else None
            qualified = (before and before.text == ".") or (after and after.text in (".", "("))
            if not qualified and token.upper in frame.variables:
                name = token.upper
        if name is None:
            continue
        values.append(_value(frame, name))
        parts += [text[done : token.start], "?"]
        done = token.end
    parts.append(text[done:])
    return "".join(parts), values


def _uncaught(procedure: Procedure, statement: Statement, e: Exception) -> snowflake.connector.errors.ProgrammingError:
    """The error a CALL reports for a failing statement: Snowflake's wording, the database's message."""
    if isinstance(e, _Uncaught):
        return e  # from a nested CALL, already located
    line, position = line_and_position(procedure.body, statement.offset)
    if isinstance(e, snowflake.connector.errors.Error):
        message, errno, sqlstate = e.raw_msg, e.errno, e.sqlstate
    elif isinstance(e, duckdb.Error):
        message, errno, sqlstate = str(e), 100132, "P0000"
    else:
        message, errno, sqlstate = f"{type(e).__name__}: {e}", 100132, "P0000"
    return _Uncaught(
        msg=f"Uncaught exception of type 'STATEMENT_ERROR' on line {line} at position {position} : {message}",
        errno=errno or 100132,
        sqlstate=sqlstate or "P0000",
    )


class _Uncaught(snowflake.connector.errors.ProgrammingError):
    pass
