-- A submit commits its job without waiting for the WAL flush, pushes it at once, and only then
-- waits for the flush before it answers: the worker starts while the disk catches up. The wait
-- is a synchronous commit of a row of this table, which forces every earlier WAL record (the
-- job's among them) to disk. One row per Postgres backend (its pid modulo 65536, which bounds
-- the table), so concurrent submits on different connections do not wait on each other's row
-- lock.
CREATE TABLE commit_barriers (
    backend_pid integer PRIMARY KEY,
    flushes bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 50);
