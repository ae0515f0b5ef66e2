-- A job's result is stored as `json` (its text, checked to be JSON) rather than `jsonb`: nothing
-- queries inside it, and jsonb cost a parse into its binary form on every write and a
-- conversion back to text on every read. On the 2-core machine a default plan's 12 KB result
-- took 0.46 ms to store and 0.61 ms to read back as jsonb, 0.34 ms and 0.25 ms as json, both on
-- the path between the engine finishing and the client hearing of it.
--
-- Changing the type rewrites the table under an exclusive lock (reads of results wait for it);
-- on a large table, run it in a quiet hour. The rewrite resets the column's compression, so
-- lz4 is set again (as 2026-12-02-000001_lz4_results does, skipped where the server lacks it).
ALTER TABLE simulation_results ALTER COLUMN result TYPE json USING result::json;
DO $$
BEGIN
    ALTER TABLE simulation_results ALTER COLUMN result SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available on this server; results stay compressed with pglz';
END
$$;
