-- Load one staged TPA file into BRONZE.RAW_ROWS.
--
-- Idempotent through the table's load history: COPY INTO skips a file it has loaded
-- before (LOAD_SKIPPED), so re-running a pipeline after a later step failed adds no rows.
-- STAGE_DIR is <tpa>/<yyyy>/<mm>/<dd> and FILE_NAME a sanitised name, both built by the
-- app (tpa.staging) from an allow-list of characters. A stage path in COPY is a prefix;
-- it names exactly one file because sanitised names have no dot but the one before
-- "csv". (FILES = ('<name>') would say so directly, but the emulator's COPY cannot
-- combine FILES with an internal stage.)
--
-- Row counts come from the table itself, before and after the COPY: COPY INTO is not a
-- DML statement, so SQLROWCOUNT is NULL after it ("Determining the number of rows
-- affected by DML commands", 2025_01 behaviour:
-- https://docs.snowflake.com/en/developer-guide/snowflake-scripting/dml-status). A
-- subquery assigned with LET is documented in
-- https://docs.snowflake.com/en/developer-guide/snowflake-scripting/variables.
-- Returns {"loaded": rows this call loaded, "rows": rows of this file now in bronze}; the
-- app compares "rows" with the rows it counted in the file.
CREATE OR REPLACE PROCEDURE BRONZE.LOAD_FILE(STAGE_DIR VARCHAR, FILE_NAME VARCHAR)
RETURNS VARIANT
LANGUAGE SQL
EXECUTE AS OWNER
AS
$$
BEGIN
    LET source_file VARCHAR := stage_dir || '/' || file_name;
    LET before INTEGER := (SELECT COUNT(*) FROM BRONZE.RAW_ROWS WHERE SOURCE_FILE = :source_file);
    EXECUTE IMMEDIATE 'COPY INTO BRONZE.RAW_ROWS FROM @BRONZE.TPA_FILES/' || stage_dir || '/' || file_name
        || ' FILE_FORMAT = (TYPE = CSV SKIP_HEADER = 1 FIELD_OPTIONALLY_ENCLOSED_BY = ''"'' ESCAPE_UNENCLOSED_FIELD = NONE)';
    LET after INTEGER := (SELECT COUNT(*) FROM BRONZE.RAW_ROWS WHERE SOURCE_FILE = :source_file);
    RETURN OBJECT_CONSTRUCT('loaded', after - before, 'rows', after);
END;
$$;
