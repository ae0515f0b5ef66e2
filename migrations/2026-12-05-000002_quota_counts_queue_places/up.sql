-- The quota counts queue places, not jobs: a plain job holds one while it is queued or running,
-- a sweep one per unit (its units are the queue entries), and the sweep's own row none. The
-- per-tenant quota is what keeps one tenant from filling the fleet-wide queue ceiling
-- (QUEUE_DEPTH_CEILING), which counts entries: counted once, a sweep of many units let one
-- tenant hold many times its share. Otherwise as before (2026-12-04-000002_quota_count).
CREATE OR REPLACE FUNCTION lock_quota_and_count_unfinished(job_owner text) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    unfinished bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('quota:' || job_owner, 0));
    SELECT count(*) INTO unfinished FROM simulations
     WHERE status IN ('queued', 'running') AND kind <> 'sweep' AND owner = job_owner;
    RETURN unfinished;
END
$$;
