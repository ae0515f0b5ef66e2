ALTER TABLE simulation_results ALTER COLUMN result TYPE jsonb USING result::jsonb;
DO $$
BEGIN
    ALTER TABLE simulation_results ALTER COLUMN result SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available on this server; results stay compressed with pglz';
END
$$;
