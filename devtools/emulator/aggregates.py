"""SUM and AVG keep a fixed-point argument's type, as Snowflake's do.

fakesnow wraps every numeric aggregate's argument in TRY_CAST(... AS DOUBLE) so that a
VARCHAR column sums as it does in Snowflake; that turns SUM of NUMBER(12, 2) into a DOUBLE
(1289679.5999999999) where Snowflake returns NUMBER(38, 2): "If the input is a fixed-point
number, the output is NUMBER(38, s) with the input's scale"
(https://docs.snowflake.com/en/sql-reference/functions/sum, /functions/avg). Here the cast
is only added to a string literal or an expression already cast to text; a VARCHAR column
then fails with DuckDB's error (stricter than Snowflake, never looser).
"""

from __future__ import annotations

from fakesnow import transforms
from sqlglot import exp

_fakesnow_cast = transforms.numeric_agg_implicit_cast


def _is_text(arg: exp.Expr) -> bool:
    if isinstance(arg, exp.Literal):
        return arg.is_string
    return isinstance(arg, exp.Cast | exp.TryCast) and arg.to.is_type(*exp.DataType.TEXT_TYPES)


def numeric_agg_keeps_type(expression: exp.Expr) -> exp.Expr:
    if not isinstance(expression, transforms.transforms._NUMERIC_ONLY_AGGS):
        return expression
    argument = expression.this
    result = _fakesnow_cast(expression)  # also names the column as Snowflake does: "SUM(X)"
    if not _is_text(argument):
        # The result is the aggregate itself or an alias of a copy of it.
        aggregate = result.this if isinstance(result, exp.Alias) else result
        aggregate.set("this", argument.copy())
    return result


def install() -> None:
    # fakesnow's cursor looks the transform up on the module at every statement.
    transforms.numeric_agg_implicit_cast = numeric_agg_keeps_type
