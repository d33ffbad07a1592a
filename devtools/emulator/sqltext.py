"""A small Snowflake SQL lexer, for the statements the emulator handles itself.

sqlglot cannot parse Snowflake Scripting, CALL, REMOVE or stage paths, and regenerating SQL
from its tree can change a statement's text, so the emulator works on tokens of the original
text instead: it finds calls, placeholders and statement boundaries, and splices the text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

import snowflake.connector.errors


class Kind(StrEnum):
    SPACE = "space"
    COMMENT = "comment"
    STRING = "string"  # 'text'
    DOLLAR = "dollar"  # $$text$$
    QUOTED = "quoted"  # "identifier"
    WORD = "word"  # identifiers and keywords, incl. SYSTEM$WAIT
    NUMBER = "number"
    QMARK = "qmark"  # ?
    PARAM = "param"  # :name or :1, a variable or numeric binding
    ASSIGN = "assign"  # :=
    STAGE = "stage"  # @stage/path, up to a space, ; , or )
    PUNCT = "punct"


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    @property
    def upper(self) -> str:
        return self.text.upper()

    def is_word(self, *words: str) -> bool:
        return self.kind is Kind.WORD and self.upper in words


_PATTERNS: list[tuple[Kind, re.Pattern[str]]] = [
    (Kind.SPACE, re.compile(r"\s+")),
    (Kind.COMMENT, re.compile(r"--[^\n]*|//[^\n]*|/\*.*?\*/", re.DOTALL)),
    # Snowflake strings escape a quote as '' or \'
    (Kind.STRING, re.compile(r"'(?:[^'\\]|\\.|'')*'", re.DOTALL)),
    (Kind.DOLLAR, re.compile(r"\$\$.*?\$\$", re.DOTALL)),
    (Kind.QUOTED, re.compile(r'"(?:[^"]|"")*"')),
    (Kind.NUMBER, re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")),
    (Kind.WORD, re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")),
    (Kind.ASSIGN, re.compile(r":=")),
    (Kind.PUNCT, re.compile(r"::")),
    (Kind.QMARK, re.compile(r"\?")),
    (Kind.STAGE, re.compile(r"@[^\s;),]*")),
]
_PARAM = re.compile(r":(?:[A-Za-z_][A-Za-z0-9_$]*|\d+)")


def syntax_error(message: str) -> snowflake.connector.errors.ProgrammingError:
    return snowflake.connector.errors.ProgrammingError(
        msg=f"SQL compilation error:\n{message}", errno=1003, sqlstate="42000"
    )


def tokenize(sql: str) -> list[Token]:
    return list(_tokens(sql))


@functools.lru_cache(maxsize=1024)
def _tokens(sql: str) -> tuple[Token, ...]:
    # Every statement that names a system function is tokenized on each run; texts repeat.
    return tuple(iter_tokens(sql))


def iter_tokens(sql: str) -> Iterator[Token]:
    """The tokens of sql, lazily: dispatch reads only the first few of every statement."""
    pos = 0
    last: Token | None = None
    while pos < len(sql):
        if sql[pos] == ":" and (m := _PARAM.match(sql, pos)) and not _follows_value(last):
            # `col:field` is a path into a VARIANT; only a colon that starts an operand is a variable
            token = Token(Kind.PARAM, m.group(), pos)
        else:
            token = _next_token(sql, pos)
        yield token
        pos = token.end
        last = token


def _next_token(sql: str, pos: int) -> Token:
    for kind, pattern in _PATTERNS:
        if m := pattern.match(sql, pos):
            return Token(kind, m.group(), pos)
    if sql[pos] in "'\"" or sql.startswith("$$", pos) or sql.startswith("/*", pos):
        raise syntax_error(f"unterminated {sql[pos]} at position {pos}")
    return Token(Kind.PUNCT, sql[pos], pos)


def _follows_value(last: Token | None) -> bool:
    if last is None:
        return False
    return last.kind in (Kind.WORD, Kind.QUOTED, Kind.NUMBER, Kind.PARAM) or last.text in (")", "]")


def code(tokens: list[Token]) -> list[Token]:
    """The tokens that carry meaning: no spaces or comments."""
    return [t for t in tokens if t.kind not in (Kind.SPACE, Kind.COMMENT)]


def first_words(sql: str, n: int) -> list[str]:
    """The first n keywords of a statement, upper-cased, for dispatch."""
    words: list[str] = []
    for token in iter_tokens(sql):
        if token.kind in (Kind.SPACE, Kind.COMMENT):
            continue
        if token.kind is not Kind.WORD:
            break
        words.append(token.upper)
        if len(words) == n:
            break
    return words


def matching_paren(tokens: list[Token], open_index: int) -> int:
    """Index of the ) closing the ( at open_index."""
    depth = 0
    for i in range(open_index, len(tokens)):
        if tokens[i].text == "(":
            depth += 1
        elif tokens[i].text == ")":
            depth -= 1
            if depth == 0:
                return i
    raise syntax_error("unbalanced parentheses")


def split_top_level(tokens: list[Token], separator: str) -> list[list[Token]]:
    """Split at separator tokens outside parentheses, eg: a call's arguments at commas."""
    parts: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        if token.text == "(":
            depth += 1
        elif token.text == ")":
            depth -= 1
        if depth == 0 and token.kind is Kind.PUNCT and token.text == separator:
            parts.append([])
        else:
            parts[-1].append(token)
    return parts


def text_of(sql: str, tokens: list[Token]) -> str:
    """The original text spanned by tokens (which must be contiguous in sql)."""
    meaningful = code(tokens)
    return sql[meaningful[0].start : meaningful[-1].end] if meaningful else ""


def unquote_string(literal: str) -> str:
    """The value of a Snowflake '...' literal or $$...$$ string."""
    if literal.startswith("$$"):
        return literal[2:-2]
    escapes = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "0": "\0"}
    body = literal[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            out.append(escapes.get(body[i + 1], body[i + 1]))
            i += 2
        elif ch == "'" and body[i + 1 : i + 2] == "'":
            out.append("'")
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def normalise_ident(text: str) -> str:
    """Snowflake identifier rules: unquoted names are upper case, quoted ones keep their case."""
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        return text[1:-1].replace('""', '"')
    return text.upper()


def line_and_position(sql: str, offset: int) -> tuple[int, int]:
    """1-based line and 0-based column of offset, as Snowflake reports them."""
    line = sql.count("\n", 0, offset) + 1
    return line, offset - (sql.rfind("\n", 0, offset) + 1)
