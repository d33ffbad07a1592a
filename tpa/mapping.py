"""Field mappings to SQL: the fragments SILVER.APPLY_MAPPINGS merges with.

Everything here ends up inside a statement the procedure runs with EXECUTE IMMEDIATE, so
nothing is trusted: identifiers must match models.IDENTIFIER (and are then used bare),
types come from ColumnType, date formats from models.DATE_FORMAT, constants are quoted
with quotes doubled and refused if they hold a backslash or a control character.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation

from tpa.cache import MasterData
from tpa.models import DATE_FORMAT, IDENTIFIER, MAX_SOURCE_COLUMNS, ColumnType, Transform


class MappingError(ValueError):
    """The mappings cannot be turned into SQL; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class SilverFragments:
    target_table: str
    key_column: str
    select_list: str
    update_list: str
    insert_columns: str
    insert_values: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def identifier(name: str) -> str:
    if not IDENTIFIER.match(name):
        raise MappingError(f"{name!r} is not a valid Snowflake identifier (A-Z, 0-9, _).")
    return name


def string_literal(value: str) -> str:
    if any(ord(c) < 32 or c == "\\" for c in value):
        raise MappingError(f"the constant {value!r} contains a backslash or a control character")
    return "'" + value.replace("'", "''") + "'"


def bronze_column(position: int) -> str:
    """The bronze column holding the file's column at `position` (0-based)."""
    if not 0 <= position < MAX_SOURCE_COLUMNS:
        raise MappingError(f"a file may have at most {MAX_SOURCE_COLUMNS} columns")
    return f"C{position + 1:02d}"


def header_problems(header: list[str], master: MasterData) -> list[str]:
    """What is wrong with a file's header for this TPA's mappings (empty when it fits)."""
    expected = master.source_columns
    if not expected:
        return [f"{master.tpa_code} has no field mappings yet: ask staff to set them up before uploading."]
    present = {name.casefold() for name in header}
    wanted = {name.casefold() for name in expected}
    problems = []
    if duplicates := sorted({name for name in header if [h.casefold() for h in header].count(name.casefold()) > 1}):
        problems.append(f"Duplicate columns: {', '.join(duplicates)}.")
    if missing := [name for name in expected if name.casefold() not in present]:
        problems.append(f"Missing columns: {', '.join(missing)}.")
    if unknown := [name for name in header if name.casefold() not in wanted]:
        problems.append(f"Unknown columns: {', '.join(unknown)}.")
    if len(header) > MAX_SOURCE_COLUMNS:
        problems.append(f"The file has {len(header)} columns; at most {MAX_SOURCE_COLUMNS} are supported.")
    return problems


def silver_fragments(master: MasterData, file_columns: list[str]) -> SilverFragments:
    """The MERGE pieces for one file, whose header (in order) is `file_columns`."""
    positions = {name.casefold(): n for n, name in enumerate(file_columns)}
    mappings = {m.target_column: m for m in master.mappings}
    key = identifier(master.key_column)
    if key not in mappings:
        raise MappingError(f"the claim key {key} has no mapping for {master.tpa_code}")
    selected: list[str] = []
    names: list[str] = []
    for column in master.columns:
        name = identifier(column.name)
        data_type = ColumnType(column.data_type).value
        mapping = mappings.get(name)
        if mapping is None:
            if column.required:
                raise MappingError(f"the required column {name} has no mapping for {master.tpa_code}")
            continue
        if mapping.transform == Transform.CONSTANT:
            expression = f"CAST({string_literal(mapping.argument)} AS {data_type})"
        else:
            position = positions.get(mapping.source_column.casefold())
            if position is None:
                raise MappingError(f"the file has no column {mapping.source_column!r} for {name}")
            source = bronze_column(position)
            if mapping.transform == Transform.COPY:
                expression = f"CAST({source} AS {data_type})"
            elif mapping.transform == Transform.TRIM:
                expression = f"CAST(TRIM({source}) AS {data_type})"
            elif mapping.transform == Transform.CAST:
                # Amounts arrive as "1,234.50" from some TPAs.
                expression = f"CAST(REPLACE(TRIM({source}), ',', '') AS {data_type})"
            elif mapping.transform == Transform.DATE:
                if not DATE_FORMAT.match(mapping.argument):
                    raise MappingError(f"{mapping.argument!r} is not an allowed date format")
                expression = f"CAST(TO_DATE(TRIM({source}), {string_literal(mapping.argument)}) AS {data_type})"
            else:
                raise MappingError(f"unknown transform {mapping.transform!r}")
        selected.append(f"{expression} AS {name}")
        names.append(name)
    others = [name for name in names if name != key]
    if not others:
        raise MappingError("map at least one column besides the claim key")
    return SilverFragments(
        target_table=identifier(master.table_name),
        key_column=key,
        select_list=", ".join(selected),
        update_list=", ".join(f"{name} = s.{name}" for name in others),
        insert_columns=", ".join(names),
        insert_values=", ".join(f"s.{name}" for name in names),
    )


# --- checking a file's rows before it is staged ---------------------------------------------

# Snowflake date format elements as strptime directives (models.DATE_FORMAT allows these).
_STRPTIME = {"YYYY": "%Y", "YY": "%y", "MM": "%m", "MON": "%b", "DD": "%d", "HH24": "%H", "MI": "%M", "SS": "%S"}
_ELEMENT = re.compile(r"YYYY|YY|MM|MON|DD|HH24|MI|SS|.", re.DOTALL)
_BOOLEANS = {"true", "false", "t", "f", "yes", "no", "y", "n", "on", "off", "1", "0"}
# NUMBER(18, 2): at most 16 digits before the point.
_MAX_DECIMAL = Decimal("1e16")


def strptime_format(snowflake_format: str) -> str:
    return "".join(_STRPTIME.get(part, part.replace("%", "%%")) for part in _ELEMENT.findall(snowflake_format))


@dataclass(frozen=True, slots=True)
class ColumnCheck:
    """What one file column must hold for the mapping that reads it."""

    name: str  # the file's column
    target: str
    data_type: str
    required: bool
    transform: str
    argument: str

    def problem(self, raw: str) -> str:
        """Why `raw` cannot become the target value, or "" when it can."""
        value = raw if self.transform == Transform.COPY else raw.strip()
        if not value:
            return f"{self.target} is required" if self.required else ""
        try:
            if self.transform == Transform.DATE:
                datetime.datetime.strptime(value, strptime_format(self.argument))
            elif self.data_type == ColumnType.DATE:
                datetime.date.fromisoformat(value)
            elif self.data_type == ColumnType.TIMESTAMP:
                datetime.datetime.fromisoformat(value)
            elif self.data_type in (ColumnType.INTEGER, ColumnType.DECIMAL):
                return self._number_problem(value.replace(",", "") if self.transform == Transform.CAST else value)
            elif self.data_type == ColumnType.BOOLEAN and value.lower() not in _BOOLEANS:
                return "not true or false"
        except ValueError:
            if self.transform == Transform.DATE:
                return f"not a date in the format {self.argument}"
            return "not a date (YYYY-MM-DD)" if self.data_type == ColumnType.DATE else "not a timestamp"
        return ""

    def _number_problem(self, value: str) -> str:
        try:
            number = Decimal(value)
        except InvalidOperation:
            return "not a number"
        if not number.is_finite():
            return "not a number"
        if self.data_type == ColumnType.INTEGER and number != number.to_integral_value():
            return "not a whole number"
        if abs(number) >= _MAX_DECIMAL:
            return "too large (at most 16 digits before the decimal point)"
        return ""


def row_checks(header: list[str], master: MasterData) -> dict[int, ColumnCheck]:
    """By position in the file's header, the check of each column a mapping reads."""
    positions = {name.casefold(): n for n, name in enumerate(header)}
    columns = {column.name: column for column in master.columns}
    checks: dict[int, ColumnCheck] = {}
    for mapping in master.mappings:
        column = columns.get(mapping.target_column)
        position = positions.get(mapping.source_column.casefold()) if mapping.source_column else None
        if column is None or position is None or mapping.transform == Transform.CONSTANT:
            continue
        checks[position] = ColumnCheck(
            header[position], column.name, column.data_type, column.required, mapping.transform, mapping.argument
        )
    return checks


@dataclass(frozen=True, slots=True)
class ValueProbe:
    """A SQL test, over BRONZE.RAW_ROWS, that a file column's values convert: `probe` is NULL
    where the silver expression would fail (TRY_ forms only take text, hence their shape)."""

    file_column: str
    bronze_column: str
    target: str
    probe: str


def value_probes(master: MasterData, file_columns: list[str]) -> list[ValueProbe]:
    """A probe per mapped, converted column of the file: silver's failures located."""
    positions = {name.casefold(): n for n, name in enumerate(file_columns)}
    types = {column.name: ColumnType(column.data_type) for column in master.columns}
    probes = []
    for mapping in master.mappings:
        data_type = types.get(mapping.target_column)
        position = positions.get(mapping.source_column.casefold()) if mapping.source_column else None
        if data_type in (None, ColumnType.TEXT) or position is None or mapping.transform == Transform.CONSTANT:
            continue
        source = bronze_column(position)
        text = source if mapping.transform == Transform.COPY else f"TRIM({source})"
        if mapping.transform == Transform.CAST:
            text = f"REPLACE({text}, ',', '')"
        if mapping.transform == Transform.DATE:
            if not DATE_FORMAT.match(mapping.argument):
                raise MappingError(f"{mapping.argument!r} is not an allowed date format")
            probe = f"TRY_TO_DATE({text}, {string_literal(mapping.argument)})"
        else:
            probe = f"TRY_CAST({text} AS {data_type.value})"
        probes.append(ValueProbe(file_columns[position], source, identifier(mapping.target_column), probe))
    return probes
