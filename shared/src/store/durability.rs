//! Waiting for the disk apart from committing: a submit commits its job without waiting for the
//! WAL flush (other sessions see the row at once, so a worker can claim and run it), and the
//! API answers only after [`await_durable`] has returned. A job is thus picked up while the
//! disk catches up, and no client is told of a job that a Postgres crash could still lose.
//!
//! Postgres offers no "wait until the WAL is flushed up to here" call, but a synchronous commit
//! of a transaction that wrote something waits for the flush of every WAL record before its
//! own, and WAL is flushed in order. A row per backend (its pid modulo 2¹⁶, so the table stays
//! small however many connections come and go) keeps concurrent barriers on different
//! connections from waiting on each other's row lock; they share the flushes (group commit).

use diesel::pg::PgConnection;
use diesel::{QueryResult, RunQueryDsl};

use super::statement::Statement;

/// Returns once everything this connection (or any other) committed before the call is on
/// disk. It must run outside a transaction, as its own synchronous commit.
pub fn await_durable(conn: &mut PgConnection) -> QueryResult<()> {
    Statement::new(
        "INSERT INTO commit_barriers (backend_pid) VALUES (pg_backend_pid() % 65536) \
         ON CONFLICT (backend_pid) DO UPDATE SET flushes = commit_barriers.flushes + 1",
    )
    .execute(conn)
    .map(drop)
}
