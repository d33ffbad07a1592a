-- Rebuild a TPA's gold layer from SILVER.CLAIMS (the CLAIMS target schema): the claims the
-- reports read (GOLD.CLAIMS) and the aggregates the TPA page previews.
--
-- Delete and insert per TPA: a re-run gives the same rows, whatever ran before. All three
-- tables change in one explicit transaction, so a reader never sees the TPA's gold rows
-- missing, and a failing insert leaves the previous rows in place: a statement that fails
-- inside a transaction a procedure started ends the CALL, and Snowflake rolls back such a
-- scoped transaction ("Transactions", scoped transactions and stored procedures:
-- https://docs.snowflake.com/en/sql-reference/transactions#scoped-transactions; BEGIN
-- TRANSACTION inside Snowflake Scripting:
-- https://docs.snowflake.com/en/developer-guide/snowflake-scripting/blocks).
-- "monthly" is SQLROWCOUNT read right after the INSERT, a DML statement
-- (https://docs.snowflake.com/en/developer-guide/snowflake-scripting/dml-status).
-- DELETE and INSERT ... SELECT are DML, so they join the open transaction and commit or roll
-- back with it ("DML statements" in https://docs.snowflake.com/en/sql-reference/transactions#terminology;
-- INSERT with a query: https://docs.snowflake.com/en/sql-reference/sql/insert).
-- Returns {"monthly": rows in GOLD.CLAIMS_MONTHLY, "claims": claims summarised}.
CREATE OR REPLACE PROCEDURE GOLD.REFRESH_TPA(TPA_CODE VARCHAR)
RETURNS VARIANT
LANGUAGE SQL
EXECUTE AS OWNER
AS
$$
BEGIN
    BEGIN TRANSACTION;
    DELETE FROM GOLD.CLAIMS WHERE TPA_CODE = :tpa_code;
    INSERT INTO GOLD.CLAIMS
        (TPA_CODE, CLAIM_ID, MEMBER_ID, SERVICE_DATE, SERVICE_MONTH, PROCEDURE_CODE, DIAGNOSIS_CODE, BILLED_AMOUNT,
         PAID_AMOUNT, CLAIM_STATUS, SOURCE_FILE, REFRESHED_AT)
    SELECT TPA_CODE, CLAIM_ID, MEMBER_ID, SERVICE_DATE, DATE_TRUNC('MONTH', SERVICE_DATE), PROCEDURE_CODE,
           DIAGNOSIS_CODE, BILLED_AMOUNT, PAID_AMOUNT, CLAIM_STATUS, SOURCE_FILE, CURRENT_TIMESTAMP()
    FROM SILVER.CLAIMS
    WHERE TPA_CODE = :tpa_code;

    DELETE FROM GOLD.CLAIMS_MONTHLY WHERE TPA_CODE = :tpa_code;
    INSERT INTO GOLD.CLAIMS_MONTHLY
        (TPA_CODE, SERVICE_MONTH, CLAIM_COUNT, MEMBER_COUNT, BILLED_AMOUNT, PAID_AMOUNT, REFRESHED_AT)
    SELECT TPA_CODE, DATE_TRUNC('MONTH', SERVICE_DATE), COUNT(*), COUNT(DISTINCT MEMBER_ID),
           SUM(BILLED_AMOUNT), SUM(PAID_AMOUNT), CURRENT_TIMESTAMP()
    FROM SILVER.CLAIMS
    WHERE TPA_CODE = :tpa_code
    GROUP BY TPA_CODE, DATE_TRUNC('MONTH', SERVICE_DATE);
    LET monthly INTEGER := SQLROWCOUNT;

    DELETE FROM GOLD.TPA_SUMMARY WHERE TPA_CODE = :tpa_code;
    INSERT INTO GOLD.TPA_SUMMARY
        (TPA_CODE, CLAIM_COUNT, MEMBER_COUNT, BILLED_AMOUNT, PAID_AMOUNT, FIRST_SERVICE_DATE, LAST_SERVICE_DATE,
         REFRESHED_AT)
    SELECT TPA_CODE, COUNT(*), COUNT(DISTINCT MEMBER_ID), SUM(BILLED_AMOUNT), SUM(PAID_AMOUNT),
           MIN(SERVICE_DATE), MAX(SERVICE_DATE), CURRENT_TIMESTAMP()
    FROM SILVER.CLAIMS
    WHERE TPA_CODE = :tpa_code
    GROUP BY TPA_CODE;
    COMMIT;

    RETURN OBJECT_CONSTRUCT(
        'monthly', monthly,
        'claims', (SELECT COALESCE(SUM(CLAIM_COUNT), 0) FROM GOLD.TPA_SUMMARY WHERE TPA_CODE = :tpa_code)
    );
END;
$$;
