-- Load one staged TPA file into BRONZE.RAW_ROWS.
--
-- Idempotent through the table's load history: COPY INTO skips a file it has loaded
-- before (LOAD_SKIPPED), so re-running a pipeline after a later step failed adds no rows.
-- STAGE_DIR is <tpa>/<yyyy>/<mm>/<dd> and FILE_NAME a sanitised name, both built by the
-- app (tpa.staging) from an allow-list of characters. A stage path in COPY is a prefix;
-- it names exactly one file because sanitised names have no dot but the one before
-- "csv". (FILES = ('<name>') would say so directly, but the emulator's COPY cannot
-- combine FILES with an internal stage.)
-- Returns {"loaded": rows this call loaded, "rows": rows of this file now in bronze}.
CREATE OR REPLACE PROCEDURE BRONZE.LOAD_FILE(STAGE_DIR VARCHAR, FILE_NAME VARCHAR)
RETURNS VARIANT
LANGUAGE SQL
EXECUTE AS OWNER
AS
$$
BEGIN
    EXECUTE IMMEDIATE 'COPY INTO BRONZE.RAW_ROWS FROM @BRONZE.TPA_FILES/' || stage_dir || '/' || file_name
        || ' FILE_FORMAT = (TYPE = CSV SKIP_HEADER = 1 FIELD_OPTIONALLY_ENCLOSED_BY = ''"'' ESCAPE_UNENCLOSED_FIELD = NONE)';
    LET loaded INTEGER := SQLROWCOUNT;
    LET source_file VARCHAR := stage_dir || '/' || file_name;
    RETURN OBJECT_CONSTRUCT(
        'loaded', loaded,
        'rows', (SELECT COUNT(*) FROM BRONZE.RAW_ROWS WHERE SOURCE_FILE = :source_file)
    );
END;
$$;
