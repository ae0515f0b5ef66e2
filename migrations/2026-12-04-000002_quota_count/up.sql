-- The quota check of a submit, callable from inside the statement that records the job, so a
-- submit is one statement (one round trip) rather than BEGIN, lock, insert, COMMIT (four).
--
-- It takes the owner's quota lock (the key every quota check uses: api_queries.rs) and then
-- counts the owner's unfinished jobs. VOLATILE is what makes that count right: in READ
-- COMMITTED each query of a volatile function takes a fresh snapshot, so the count starts
-- after the lock is held and sees every job of the owner's committed before it. (A STABLE
-- function would count in the calling statement's snapshot, taken before the lock, and two
-- concurrent submits could both find room for one job.) The lock is held until the calling
-- transaction ends.
CREATE FUNCTION lock_quota_and_count_unfinished(job_owner text) RETURNS bigint
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
