-- Results are stored as `json` (the worker's text, checked but not parsed into jsonb's binary
-- form) in a new column, `document`. Parsing a 12 KB result into jsonb was about 0.37 ms of
-- Postgres time in the statement that stores it, on the path between the engine finishing and
-- the client hearing of it; nothing queries inside a result, so jsonb bought nothing.
--
-- A new column rather than `ALTER COLUMN result TYPE json`: that rewrites the table under an
-- exclusive lock (about 0.46 ms per stored result on the 2-core machine, 20,000 in 9.3 s),
-- stalling every stored result and every read for as long. Rows stored before keep their jsonb
-- `result`; each row has exactly one of the two (checked for new rows; NOT VALID skips a scan
-- of the old ones, which all have `result`). Readers take `coalesce(document, result::json)`.
-- The release order (API before workers, docs/operations.md) keeps an older API from reading a
-- row with `document` only.
ALTER TABLE simulation_results
    ADD COLUMN document json,
    ALTER COLUMN result DROP NOT NULL,
    ADD CONSTRAINT simulation_results_one_document
        CHECK (num_nonnulls(result, document) = 1) NOT VALID;

DO $$
BEGIN
    ALTER TABLE simulation_results ALTER COLUMN document SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available on this server; result documents are compressed with pglz';
END
$$;
