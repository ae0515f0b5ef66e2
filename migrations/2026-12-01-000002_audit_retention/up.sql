-- Audit retention: detaches and drops the monthly audit partitions whose whole month lies
-- before `keep_from` (a date; the caller passes the first day of the oldest month to keep), and
-- deletes the default partition's rows from before it. Returns how many partitions it dropped.
-- Partitions are recognised by the names `ensure_audit_log_partition` gives them.
CREATE FUNCTION drop_audit_log_partitions_before(keep_from date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    cutoff timestamptz := date_trunc('month', keep_from::timestamp) AT TIME ZONE 'UTC';
    part record;
    dropped integer := 0;
BEGIN
    -- One process at a time, and never beside a partition being created.
    PERFORM pg_advisory_xact_lock(hashtext('portfolio-mc:audit-log-partitions'));
    FOR part IN
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'audit_logs'::regclass
          AND c.relname ~ '^audit_logs_y[0-9]{4}m[0-9]{2}$'
        ORDER BY c.relname
    LOOP
        IF (to_date(substr(part.relname, 13, 4) || substr(part.relname, 18, 2), 'YYYYMM')
                + interval '1 month') AT TIME ZONE 'UTC' <= cutoff THEN
            EXECUTE format('ALTER TABLE audit_logs DETACH PARTITION %I', part.relname);
            EXECUTE format('DROP TABLE %I', part.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    DELETE FROM audit_logs_default WHERE created_at < cutoff;
    RETURN dropped;
END;
$$;
