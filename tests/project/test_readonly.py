"""The read-only check of report SQL, from the parse tree, for both dialects."""

from __future__ import annotations

import pytest

from project.sources.readonly import NotReadOnly, check_read_only


@pytest.mark.parametrize(
    ("dialect", "sql"),
    [
        ("snowflake", "SELECT tpa, COUNT(*) FROM claims WHERE tpa = %(tpa)s GROUP BY tpa"),
        ("snowflake", "WITH a AS (SELECT 1 AS n) SELECT * FROM a"),
        ("snowflake", "(SELECT 1) UNION ALL (SELECT 2)"),
        ("snowflake", "SELECT SYSTEM$WAIT(200, 'MILLISECONDS') AS w, 'as procedure; delete' AS text"),
        ("snowflake", "LIST @BRONZE.TPA_FILES/acme/"),
        ("snowflake", "SHOW TABLES"),
        ("postgres", "SELECT pg_sleep(0.2), %(i)s AS i, 'a%%b' AS literal"),
        ("postgres", "SELECT * FROM reports_report -- ; DELETE FROM reports_report"),
    ],
)
def test_it_lets_a_query_that_only_reads_run(dialect, sql: str) -> None:
    check_read_only(sql, dialect)


@pytest.mark.parametrize(
    ("dialect", "sql", "reason"),
    [
        (
            "snowflake",
            "WITH x AS PROCEDURE () RETURNS INT LANGUAGE SQL AS $$ BEGIN DELETE FROM t; RETURN 1; END $$ CALL x()",
            "anonymous procedures",
        ),
        ("snowflake", "EXECUTE IMMEDIATE 'DELETE FROM t'", "EXECUTE"),
        ("snowflake", "CALL gold.refresh_tpa('ACME')", "CALL may not run"),
        ("snowflake", "SELECT 1; DELETE FROM t", "one statement only; this text has 2"),
        ("snowflake", "SELECT SYSTEM$CANCEL_QUERY('01b2')", "SYSTEM$CANCEL_QUERY may not be called"),
        ("snowflake", "CREATE TABLE x AS SELECT 1", "CREATE may not run"),
        ("snowflake", "SELECT 'unterminated", "must be valid SQL"),
        (
            "postgres",
            "SELECT 1; COMMIT; UPDATE auth_user SET is_superuser = true",
            "one statement only; this text has 3",
        ),
        ("postgres", "WITH gone AS (DELETE FROM t RETURNING *) SELECT * FROM gone", "DELETE may not run inside"),
        ("postgres", "SELECT * INTO copied FROM t", "SELECT ... INTO"),
        ("postgres", "SELECT * FROM t FOR UPDATE", "FOR UPDATE"),
        ("postgres", "SELECT set_config('default_transaction_read_only', 'off', false)", "set_config"),
        ("postgres", "COPY t TO STDOUT", "COPY"),
    ],
)
def test_it_refuses_a_statement_that_may_write_and_says_why(dialect, sql: str, reason: str) -> None:
    # Asked twice: the second answer comes from the remembered verdict and must be the same.
    for _ in range(2):
        with pytest.raises(NotReadOnly) as info:
            check_read_only(sql, dialect)
        assert reason in str(info.value)


def test_it_judges_the_same_text_differently_in_each_dialect() -> None:
    # The verdict is remembered per text and dialect: `LIST` is a Snowflake stage listing only.
    check_read_only("LIST @BRONZE.TPA_FILES/acme/", "snowflake")
    with pytest.raises(NotReadOnly):
        check_read_only("LIST @BRONZE.TPA_FILES/acme/", "postgres")
