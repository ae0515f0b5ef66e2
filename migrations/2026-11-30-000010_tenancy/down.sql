DELETE FROM audit_logs WHERE event = 'cancel_requested';
ALTER TABLE audit_logs DROP CONSTRAINT audit_logs_event_check;
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_event_check CHECK (event IN
    ('submitted', 'started', 'succeeded', 'failed', 'cancelled', 'retried'));
ALTER TABLE audit_logs DROP COLUMN api_key_id;
DROP INDEX simulations_owner_unfinished_idx;
DROP INDEX simulations_owner_created_at_id_idx;
DROP INDEX simulations_owner_idempotency_key_idx;
CREATE UNIQUE INDEX simulations_idempotency_key_idx ON simulations (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
ALTER TABLE simulations DROP COLUMN api_key_id, DROP COLUMN owner;
DROP TABLE api_keys;
