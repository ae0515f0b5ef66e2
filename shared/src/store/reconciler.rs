//! The reconciler's queries: which unfinished jobs have been quiet long enough to be looked at,
//! and marking them looked at.

use std::time::Duration;

use diesel::dsl::{now, sql};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Double};
use uuid::Uuid;

use crate::schema::simulations;
use crate::{JobKind, JobStatus};

/// Unfinished jobs neither touched nor heard from for `quiet` (by the database's clock, which
/// wrote both times), oldest first: candidates for the reconciler.
pub fn stale_unfinished(
    conn: &mut PgConnection,
    quiet: Duration,
    limit: i64,
) -> QueryResult<Vec<Uuid>> {
    let quiet = quiet.as_secs_f64();
    simulations::table
        .filter(simulations::status.eq_any([JobStatus::Queued, JobStatus::Running]))
        // A sweep has no queue entry of its own: its units do.
        .filter(simulations::kind.ne(JobKind::Sweep))
        .filter(
            sql::<Bool>("updated_at < now() - make_interval(secs => ")
                .bind::<Double, _>(quiet)
                .sql(") AND (heartbeat_at IS NULL OR heartbeat_at < now() - make_interval(secs => ")
                .bind::<Double, _>(quiet)
                .sql("))"),
        )
        .order(simulations::created_at.asc())
        .limit(limit)
        .select(simulations::id)
        .load(conn)
}

/// Marks jobs as looked at by the reconciler, so they are not re-pushed every round.
pub fn touch_all(conn: &mut PgConnection, ids: &[Uuid]) -> QueryResult<usize> {
    diesel::update(simulations::table.filter(simulations::id.eq_any(ids)))
        .set(simulations::updated_at.eq(now))
        .execute(conn)
}
