CREATE OR REPLACE FUNCTION lock_quota_and_count_unfinished(job_owner text) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    unfinished bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('quota:' || job_owner, 0));
    SELECT count(*) INTO unfinished FROM simulations
     WHERE status IN ('queued', 'running') AND kind <> 'unit' AND owner = job_owner;
    RETURN unfinished;
END
$$;
