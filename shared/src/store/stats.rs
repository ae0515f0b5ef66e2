//! Queries behind the operators' views (`/queue/stats`, `/dashboard`): how many jobs finished
//! lately and how long they took, the latest failures, and the sampled history of the queue's
//! depth. They read only recent rows through the partial indexes of the `queue_stats`
//! migration, so an operator refreshing a page costs the database next to nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Double, Integer, Nullable};
use uuid::Uuid;

use crate::JobStatus;
use crate::schema::{queue_samples, simulations};

/// Jobs that reached a terminal state within the last `minutes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub struct FinishedInWindow {
    #[diesel(sql_type = Integer)]
    pub minutes: i32,
    #[diesel(sql_type = BigInt)]
    pub finished: i64,
    #[diesel(sql_type = BigInt)]
    pub succeeded: i64,
    #[diesel(sql_type = BigInt)]
    pub failed: i64,
    #[diesel(sql_type = BigInt)]
    pub cancelled: i64,
}

/// Leaves out a job `s` answered from the result cache: it took no worker and no time, so it
/// counts in no figure of work done (it would dilute the error rate and the latency).
const NOT_A_CACHE_HIT: &str =
    "NOT EXISTS (SELECT 1 FROM simulation_results r WHERE r.simulation_id = s.id AND r.from_cache)";

/// Counts of finished jobs for each window (in minutes, ascending), by the database's clock.
/// Submits answered from the result cache are left out ([`NOT_A_CACHE_HIT`]).
pub fn finished_in_windows(
    conn: &mut PgConnection,
    windows_minutes: &[i32],
) -> QueryResult<Vec<FinishedInWindow>> {
    diesel::sql_query(format!(
        "SELECT w.minutes,
                count(s.id) AS finished,
                count(s.id) FILTER (WHERE s.status = 'succeeded') AS succeeded,
                count(s.id) FILTER (WHERE s.status = 'failed') AS failed,
                count(s.id) FILTER (WHERE s.status = 'cancelled') AS cancelled
         FROM unnest($1::int[]) AS w(minutes)
         LEFT JOIN simulations s
           ON s.finished_at IS NOT NULL
          AND s.finished_at > now() - make_interval(mins => w.minutes)
          AND s.kind <> 'unit'
          AND {NOT_A_CACHE_HIT}
         GROUP BY w.minutes
         ORDER BY w.minutes"
    ))
    .bind::<Array<Integer>, _>(windows_minutes)
    .load(conn)
}

/// Submit-to-result time of the jobs that succeeded within a window.
#[derive(Debug, Clone, Copy, PartialEq, QueryableByName)]
pub struct LatencySummary {
    #[diesel(sql_type = BigInt)]
    pub jobs: i64,
    /// Median of `finished_at − created_at`, in seconds; `None` without jobs.
    #[diesel(sql_type = Nullable<Double>)]
    pub p50_seconds: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    pub p95_seconds: Option<f64>,
}

/// Median and 95th percentile (linear interpolation) of submit-to-result time of the jobs
/// that succeeded in the last `minutes`, result-cache hits left out ([`NOT_A_CACHE_HIT`]).
pub fn latency(conn: &mut PgConnection, minutes: i32) -> QueryResult<LatencySummary> {
    diesel::sql_query(format!(
        "SELECT count(*) AS jobs,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY t) AS p50_seconds,
                percentile_cont(0.95) WITHIN GROUP (ORDER BY t) AS p95_seconds
         FROM (SELECT extract(epoch FROM finished_at - created_at)::float8 AS t
               FROM simulations s
               WHERE finished_at IS NOT NULL
                 AND finished_at > now() - make_interval(mins => $1)
                 AND status = 'succeeded'
                 AND kind <> 'unit'
                 AND {NOT_A_CACHE_HIT}) AS recent"
    ))
    .bind::<Integer, _>(minutes)
    .get_result(conn)
}

/// A job that failed for good.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct RecentFailure {
    pub id: Uuid,
    pub error: Option<String>,
    pub failed_at: DateTime<Utc>,
    pub attempts: i32,
}

/// The sweep of each of `ids` that is a sweep's unit, as (unit, sweep): a unit is no job of its
/// owner's (it is read through its sweep), so the queue's statistics show its sweep instead.
pub fn sweeps_of_units(conn: &mut PgConnection, ids: &[Uuid]) -> QueryResult<Vec<(Uuid, Uuid)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    simulations::table
        .filter(simulations::id.eq_any(ids))
        .filter(simulations::kind.eq(crate::JobKind::Unit))
        .select((simulations::id, simulations::parent_id.assume_not_null()))
        .load(conn)
}

/// The latest `limit` failed jobs, newest first. A sweep's attempts are those of its unit that
/// tried most (its own row runs nothing, and counts none).
pub fn recent_failures(conn: &mut PgConnection, limit: i64) -> QueryResult<Vec<RecentFailure>> {
    simulations::table
        .filter(simulations::status.eq(JobStatus::Failed))
        .filter(simulations::kind.ne(crate::JobKind::Unit))
        .filter(simulations::finished_at.is_not_null())
        .order(simulations::finished_at.desc())
        .limit(limit)
        .select((
            simulations::id,
            simulations::error,
            simulations::finished_at.assume_not_null(),
            sql::<Integer>(
                "CASE WHEN simulations.kind = 'sweep' THEN (SELECT coalesce(max(u.attempts), 0) \
                 FROM simulations u WHERE u.parent_id = simulations.id) \
                 ELSE simulations.attempts END",
            ),
        ))
        .load(conn)
}

/// One observation of the queue's depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = queue_samples, check_for_backend(diesel::pg::Pg))]
pub struct QueueSample {
    pub sampled_at: DateTime<Utc>,
    pub ready: i64,
    pub scheduled: i64,
    pub running: i64,
    pub dead: i64,
    pub workers_alive: i32,
}

/// A sample to record; its time is the database's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Insertable)]
#[diesel(table_name = queue_samples)]
pub struct NewQueueSample {
    pub ready: i64,
    pub scheduled: i64,
    pub running: i64,
    pub dead: i64,
    pub workers_alive: i32,
}

#[derive(QueryableByName)]
struct Flag {
    #[diesel(sql_type = Bool)]
    flag: bool,
}

/// Records `sample` unless another process holds the sampling lock (`lock_key`, a transaction
/// advisory lock) or recorded one less than `min_gap` ago, then forgets samples older than
/// `keep`. Returns whether this call recorded it. With every API replica calling this on its
/// own timer, the table still gets one sample per `min_gap`, from whichever replica came first.
pub fn record_sample(
    conn: &mut PgConnection,
    lock_key: i64,
    sample: &NewQueueSample,
    min_gap: Duration,
    keep: Duration,
) -> QueryResult<bool> {
    conn.transaction(|conn| {
        let locked: Flag = diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS flag")
            .bind::<BigInt, _>(lock_key)
            .get_result(conn)?;
        if !locked.flag {
            return Ok(false);
        }
        // The database's clock, not this process's: replicas' clocks may disagree.
        let recent: Vec<Flag> = diesel::sql_query(
            "SELECT true AS flag FROM queue_samples
             WHERE sampled_at > now() - make_interval(secs => $1) LIMIT 1",
        )
        .bind::<Double, _>(min_gap.as_secs_f64())
        .load(conn)?;
        if !recent.is_empty() {
            return Ok(false);
        }
        diesel::insert_into(queue_samples::table).values(sample).execute(conn)?;
        diesel::sql_query(
            "DELETE FROM queue_samples WHERE sampled_at < now() - make_interval(secs => $1)",
        )
        .bind::<Double, _>(keep.as_secs_f64())
        .execute(conn)?;
        Ok(true)
    })
}

/// Samples taken since `since`, oldest first.
pub fn samples_since(
    conn: &mut PgConnection,
    since: DateTime<Utc>,
) -> QueryResult<Vec<QueueSample>> {
    queue_samples::table
        .filter(queue_samples::sampled_at.ge(since))
        .order(queue_samples::sampled_at.asc())
        .select(QueueSample::as_select())
        .load(conn)
}
