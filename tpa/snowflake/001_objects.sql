-- Warehouse objects of the TPA pipeline. Applied by `manage.py snowflake_deploy`; every
-- statement is idempotent, so the command can run on every deploy.
-- Names are schema-qualified and resolve in the connection's database (SNOWFLAKE_DATABASE).

CREATE SCHEMA IF NOT EXISTS BRONZE;
CREATE SCHEMA IF NOT EXISTS SILVER;
CREATE SCHEMA IF NOT EXISTS GOLD;

-- Uploaded TPA files, at <tpa>/<yyyy>/<mm>/<dd>/<name> (paths are built by the app).
CREATE STAGE IF NOT EXISTS BRONZE.TPA_FILES
    COMMENT = 'TPA claim files uploaded through Fanout';

-- Raw rows of every TPA file, as text. TPA layouts differ, so a row keeps its source
-- columns by position (C01..C40, in the order of the file's header, which the app records
-- with the file); the app writes the lineage columns into the staged copy of the file.
CREATE TABLE IF NOT EXISTS BRONZE.RAW_ROWS (
    TPA_CODE VARCHAR NOT NULL,
    SOURCE_FILE VARCHAR NOT NULL,
    LINE_NO INTEGER NOT NULL,
    C01 VARCHAR, C02 VARCHAR, C03 VARCHAR, C04 VARCHAR, C05 VARCHAR,
    C06 VARCHAR, C07 VARCHAR, C08 VARCHAR, C09 VARCHAR, C10 VARCHAR,
    C11 VARCHAR, C12 VARCHAR, C13 VARCHAR, C14 VARCHAR, C15 VARCHAR,
    C16 VARCHAR, C17 VARCHAR, C18 VARCHAR, C19 VARCHAR, C20 VARCHAR,
    C21 VARCHAR, C22 VARCHAR, C23 VARCHAR, C24 VARCHAR, C25 VARCHAR,
    C26 VARCHAR, C27 VARCHAR, C28 VARCHAR, C29 VARCHAR, C30 VARCHAR,
    C31 VARCHAR, C32 VARCHAR, C33 VARCHAR, C34 VARCHAR, C35 VARCHAR,
    C36 VARCHAR, C37 VARCHAR, C38 VARCHAR, C39 VARCHAR, C40 VARCHAR
);

-- The CLAIMS target schema, version 1 (the `CLAIMS` target schema in the app's master
-- data describes the same columns). TPA_CODE, SOURCE_FILE and UPDATED_AT are lineage,
-- written by SILVER.APPLY_MAPPINGS; the rest come from each TPA's field mappings.
CREATE TABLE IF NOT EXISTS SILVER.CLAIMS (
    TPA_CODE VARCHAR NOT NULL,
    CLAIM_ID VARCHAR NOT NULL,
    MEMBER_ID VARCHAR,
    SERVICE_DATE DATE,
    PROCEDURE_CODE VARCHAR,
    DIAGNOSIS_CODE VARCHAR,
    BILLED_AMOUNT NUMBER(18, 2),
    PAID_AMOUNT NUMBER(18, 2),
    CLAIM_STATUS VARCHAR,
    SOURCE_FILE VARCHAR,
    UPDATED_AT TIMESTAMP_NTZ
);

-- Every claim of every TPA as the reports read it (the demo's claims-overview report),
-- rebuilt per TPA by GOLD.REFRESH_TPA in the same transaction as the aggregates below, so a
-- report never mixes claims of one refresh with totals of another. A table, not a view over
-- SILVER.CLAIMS: readers see a TPA's claims as of its last successful gold step, never a
-- silver MERGE half-way through a run. SERVICE_MONTH is kept so reports group by month
-- without a function on every row.
CREATE TABLE IF NOT EXISTS GOLD.CLAIMS (
    TPA_CODE VARCHAR NOT NULL,
    CLAIM_ID VARCHAR NOT NULL,
    MEMBER_ID VARCHAR,
    SERVICE_DATE DATE,
    SERVICE_MONTH DATE,
    PROCEDURE_CODE VARCHAR,
    DIAGNOSIS_CODE VARCHAR,
    BILLED_AMOUNT NUMBER(18, 2),
    PAID_AMOUNT NUMBER(18, 2),
    CLAIM_STATUS VARCHAR,
    SOURCE_FILE VARCHAR,
    REFRESHED_AT TIMESTAMP_NTZ
);

-- Claims per TPA and month of service, rebuilt per TPA by GOLD.REFRESH_TPA.
CREATE TABLE IF NOT EXISTS GOLD.CLAIMS_MONTHLY (
    TPA_CODE VARCHAR NOT NULL,
    SERVICE_MONTH DATE,
    CLAIM_COUNT INTEGER,
    MEMBER_COUNT INTEGER,
    BILLED_AMOUNT NUMBER(18, 2),
    PAID_AMOUNT NUMBER(18, 2),
    REFRESHED_AT TIMESTAMP_NTZ
);

-- One row per TPA: totals and the span of service dates.
CREATE TABLE IF NOT EXISTS GOLD.TPA_SUMMARY (
    TPA_CODE VARCHAR NOT NULL,
    CLAIM_COUNT INTEGER,
    MEMBER_COUNT INTEGER,
    BILLED_AMOUNT NUMBER(18, 2),
    PAID_AMOUNT NUMBER(18, 2),
    FIRST_SERVICE_DATE DATE,
    LAST_SERVICE_DATE DATE,
    REFRESHED_AT TIMESTAMP_NTZ
);
