-- Tenancy: API keys, the owner of every job, and who acted in the audit trail.
--
-- A key is `pmc_<prefix>_<secret>`. Only its SHA-256 is kept; the prefix is public and finds
-- the row, then the hash is compared in constant time. A key's tenant is its name: keys that
-- share a name (a rotation: the new key made before the old one is revoked) share the jobs and
-- the limits.
CREATE TABLE api_keys (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CHECK (name ~ '^[A-Za-z0-9._-]{1,64}$'),
    prefix text NOT NULL UNIQUE CHECK (prefix ~ '^[a-z0-9]{8}$'),
    secret_sha256 text NOT NULL,
    scopes text[] NOT NULL CHECK (scopes <@ ARRAY['simulate', 'operator'] AND cardinality(scopes) > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz
);

-- Jobs made before tenancy belong to no key; they are kept under a tenant of their own, which
-- only an operator key sees.
ALTER TABLE simulations
    ADD COLUMN owner text NOT NULL DEFAULT 'legacy',
    ADD COLUMN api_key_id bigint REFERENCES api_keys (id);
ALTER TABLE simulations ALTER COLUMN owner DROP DEFAULT;

-- An Idempotency-Key names one job of its owner: another tenant's keys never collide with it.
DROP INDEX simulations_idempotency_key_idx;
CREATE UNIQUE INDEX simulations_owner_idempotency_key_idx ON simulations (owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- A tenant's listing, newest first, and its count of unfinished jobs (the quota).
CREATE INDEX simulations_owner_created_at_id_idx ON simulations (owner, created_at DESC, id DESC);
CREATE INDEX simulations_owner_unfinished_idx ON simulations (owner)
    WHERE status IN ('queued', 'running');

-- The key that acted (a submit, a cancel); NULL for the workers' rows and AUTH_MODE=disabled.
ALTER TABLE audit_logs ADD COLUMN api_key_id bigint;
-- A cancel of a running job is a request the worker carries out later: its row names the key.
ALTER TABLE audit_logs DROP CONSTRAINT audit_logs_event_check;
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_event_check CHECK (event IN
    ('submitted', 'started', 'succeeded', 'failed', 'cancelled', 'retried', 'cancel_requested'));
