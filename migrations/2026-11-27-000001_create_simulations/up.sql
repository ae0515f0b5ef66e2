-- Jobs, their results, and the audit trail. Postgres is the record of every accepted job;
-- Redis only dispatches.

CREATE TABLE simulations (
    id uuid PRIMARY KEY,
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    -- The normalised request (every default filled in, seed included).
    request jsonb NOT NULL,
    seed bigint NOT NULL CHECK (seed >= 0),
    -- X-Request-Id of the submit, carried into the worker's logs and the audit rows.
    request_id text,
    idempotency_key text,
    -- SHA-256 of the submitted body, to tell a replayed submit from a conflicting one.
    request_hash text,
    attempts integer NOT NULL DEFAULT 0,
    progress_done integer NOT NULL DEFAULT 0,
    progress_total integer NOT NULL DEFAULT 0,
    error text,
    -- The worker holding the job, and when it last reported.
    worker text,
    heartbeat_at timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    -- Earliest time of the next attempt after a retryable failure.
    not_before timestamptz,
    success_probability double precision,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Listing newest first, with a (created_at, id) cursor.
CREATE INDEX simulations_created_at_id_idx ON simulations (created_at DESC, id DESC);
-- The reconciler and the queue-depth ceiling look only at unfinished jobs.
CREATE INDEX simulations_unfinished_idx ON simulations (status, created_at)
    WHERE status IN ('queued', 'running');
CREATE UNIQUE INDEX simulations_idempotency_key_idx ON simulations (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE simulation_results (
    simulation_id uuid PRIMARY KEY REFERENCES simulations (id) ON DELETE CASCADE,
    result jsonb NOT NULL,
    worker text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Partitioned by month on its timestamp, as the old app's scaling guide did: old months can be
-- detached and archived without touching live ones.
CREATE TABLE audit_logs (
    id bigserial,
    simulation_id uuid NOT NULL,
    event text NOT NULL
        CHECK (event IN ('submitted', 'started', 'succeeded', 'failed', 'cancelled', 'retried')),
    -- `api` or the worker's name.
    actor text NOT NULL,
    request_id text,
    data jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);

CREATE INDEX audit_logs_simulation_id_idx ON audit_logs (simulation_id, created_at);

-- Catches any row whose month has no partition yet, so an insert never fails for want of one.
CREATE TABLE audit_logs_default PARTITION OF audit_logs DEFAULT;

-- Creates the partition of the month containing `month` (UTC) if it is missing, moving any rows
-- of that month out of the default partition first (Postgres refuses to attach otherwise).
CREATE FUNCTION ensure_audit_log_partition(month date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    first_day timestamptz := date_trunc('month', month::timestamp) AT TIME ZONE 'UTC';
    next_first_day timestamptz :=
        (date_trunc('month', month::timestamp) + interval '1 month') AT TIME ZONE 'UTC';
    partition_name text := format('audit_logs_y%sm%s', to_char(month, 'YYYY'), to_char(month, 'MM'));
BEGIN
    IF to_regclass(partition_name) IS NOT NULL THEN
        RETURN false;
    END IF;
    -- Two processes creating the same partition would otherwise race.
    PERFORM pg_advisory_xact_lock(hashtext('portfolio-mc:audit-log-partitions'));
    IF to_regclass(partition_name) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format(
        'CREATE TABLE %I (LIKE audit_logs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
        partition_name);
    EXECUTE format(
        'WITH moved AS (DELETE FROM audit_logs_default WHERE created_at >= %L AND created_at < %L RETURNING *)
         INSERT INTO %I SELECT * FROM moved',
        first_day, next_first_day, partition_name);
    EXECUTE format(
        'ALTER TABLE audit_logs ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
        partition_name, first_day, next_first_day);
    RETURN true;
END;
$$;

-- This month's partition and the next `months_ahead` months'.
CREATE FUNCTION ensure_audit_log_partitions(months_ahead integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    created integer := 0;
BEGIN
    FOR i IN 0..months_ahead LOOP
        IF ensure_audit_log_partition(((now() AT TIME ZONE 'UTC')::date + make_interval(months => i))::date) THEN
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END;
$$;

SELECT ensure_audit_log_partitions(2);
