//! Waiting for the disk apart from committing: a submit that may find a worker idle commits its
//! job without waiting for the WAL flush (other sessions see the row at once, so a worker can
//! claim and run it), and the API answers only after [`await_durable_job`] has returned. A job
//! is thus picked up while the disk catches up, and no client is told of a job that a Postgres
//! crash could still lose. (A submit behind waiting jobs commits with the flush instead; see
//! [`Flush`](super::Flush).)
//!
//! Postgres offers no "wait until the WAL is flushed up to here" call, but a synchronous commit
//! of a transaction that wrote something waits for the flush of every WAL record before its
//! own, and WAL is flushed in order. A row per backend (its pid modulo 2¹⁶, so the table stays
//! small however many connections come and go) keeps concurrent barriers on different
//! connections from waiting on each other's row lock; they share the flushes (group commit).
//!
//! A barrier proves nothing of a row committed on a server that crashed since: the pool may hand
//! the barrier a connection to the restarted server, where it succeeds, while the row committed
//! before the crash without its flush is gone. [`await_durable_job`] flushes and looks for the
//! job in one statement, so both happen on one server.

use diesel::pg::PgConnection;
use diesel::sql_types::{Bool, Uuid as SqlUuid};
use diesel::{QueryResult, QueryableByName, RunQueryDsl};
use uuid::Uuid;

use super::statement::{Append, Statement};

/// The barrier's write: a literal, so both statements below stay static SQL that diesel
/// prepares once per connection.
macro_rules! barrier {
    () => {
        "INSERT INTO commit_barriers (backend_pid) VALUES (pg_backend_pid() % 65536) \
         ON CONFLICT (backend_pid) DO UPDATE SET flushes = commit_barriers.flushes + 1"
    };
}

/// Returns once everything this connection (or any other) committed before the call is on
/// disk. It must run outside a transaction, as its own synchronous commit.
pub fn await_durable(conn: &mut PgConnection) -> QueryResult<()> {
    Statement::new(barrier!()).execute(conn).map(drop)
}

/// [`await_durable`], then whether job `id` is there: `false` when a Postgres crash took it
/// after its commit, before the flush (the submit must then not be accepted).
pub fn await_durable_job(conn: &mut PgConnection, id: Uuid) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Kept {
        #[diesel(sql_type = Bool)]
        kept: bool,
    }
    Statement::new(concat!(
        "WITH flushed AS (",
        barrier!(),
        " RETURNING 1) SELECT EXISTS (SELECT 1 FROM simulations WHERE id = "
    ))
    .bind::<SqlUuid, _>(id)
    .sql(") AS kept FROM flushed")
    .get_result::<Kept>(conn)
    .map(|k| k.kept)
}
