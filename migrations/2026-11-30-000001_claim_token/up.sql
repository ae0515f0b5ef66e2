-- The claim a running job is held under: a fresh token per claim, cleared when the job leaves
-- `running`. Every write a worker makes to the job after claiming it (progress, its outcome, a
-- release for retry, a hand-back) applies only while the row still carries that worker's token,
-- so a worker whose claim was taken over (its heartbeat had gone stale) writes nothing.
ALTER TABLE simulations ADD COLUMN claim_token uuid;
