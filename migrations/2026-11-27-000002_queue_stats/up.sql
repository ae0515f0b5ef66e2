-- What the operators' endpoints read: /queue/stats counts recently finished jobs, and
-- /dashboard charts the queue's depth over time.

-- The queue's depth, sampled every ~10 s by one API instance at a time and kept for 24 h, so
-- that every replica draws the same history.
CREATE TABLE queue_samples (
    sampled_at timestamptz PRIMARY KEY DEFAULT now(),
    ready bigint NOT NULL CHECK (ready >= 0),
    scheduled bigint NOT NULL CHECK (scheduled >= 0),
    running bigint NOT NULL CHECK (running >= 0),
    dead bigint NOT NULL CHECK (dead >= 0),
    workers_alive integer NOT NULL CHECK (workers_alive >= 0)
);

-- Throughput and latency look only at the last minutes of finished jobs; without this every
-- /queue/stats call would scan the whole table.
CREATE INDEX simulations_finished_at_idx ON simulations (finished_at)
    WHERE finished_at IS NOT NULL;
-- The latest failures, newest first (failures are few: the index stays small).
CREATE INDEX simulations_failed_idx ON simulations (finished_at DESC)
    WHERE status = 'failed';
