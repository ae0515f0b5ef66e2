DROP INDEX simulations_failed_idx;
DROP INDEX simulations_finished_at_idx;
DROP TABLE queue_samples;
