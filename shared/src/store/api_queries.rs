//! The API's queries: record a submitted job, read jobs back (one, a page, by idempotency key),
//! count the backlog, and cancel.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::dsl::{now, sql};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Double};
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, API_ACTOR, AuditEvent};
use super::models::{NewSimulation, Simulation, SimulationResultRow};
use super::transition::{finish, locked};
use crate::JobStatus;
use crate::schema::{simulation_results, simulations};

/// Records an accepted job (status `queued`) and its `submitted` audit row, atomically.
pub fn insert_job(conn: &mut PgConnection, job: &NewSimulation<'_>) -> QueryResult<()> {
    conn.transaction(|conn| {
        diesel::insert_into(simulations::table).values(job).execute(conn)?;
        audit::record(
            conn,
            job.id,
            AuditEvent::Submitted,
            API_ACTOR,
            job.request_id,
            json!({ "seed": job.seed, "idempotency_key": job.idempotency_key }),
        )
    })
}

/// A job and its result, if it has one.
pub fn find_job(
    conn: &mut PgConnection,
    id: Uuid,
) -> QueryResult<Option<(Simulation, Option<SimulationResultRow>)>> {
    simulations::table
        .left_join(simulation_results::table)
        .filter(simulations::id.eq(id))
        .select((Simulation::as_select(), Option::<SimulationResultRow>::as_select()))
        .first(conn)
        .optional()
}

/// The job submitted with this idempotency key, if any.
pub fn find_by_idempotency_key(
    conn: &mut PgConnection,
    key: &str,
) -> QueryResult<Option<Simulation>> {
    simulations::table
        .filter(simulations::idempotency_key.eq(key))
        .select(Simulation::as_select())
        .first(conn)
        .optional()
}

/// Frees an idempotency key whose job is older than `ttl` (by the database's clock, which
/// wrote `created_at`), so the key can name a new job.
pub fn expire_idempotency_key(
    conn: &mut PgConnection,
    key: &str,
    ttl: Duration,
) -> QueryResult<usize> {
    diesel::update(
        simulations::table.filter(simulations::idempotency_key.eq(key)).filter(
            sql::<Bool>("created_at < now() - make_interval(secs => ")
                .bind::<Double, _>(ttl.as_secs_f64())
                .sql(")"),
        ),
    )
    .set(simulations::idempotency_key.eq(None::<String>))
    .execute(conn)
}

/// One row of the listing (the API answers it as a `JobSummary`).
#[derive(Debug, Clone, Queryable)]
pub struct JobListRow {
    pub id: Uuid,
    pub status: JobStatus,
    pub created_at: DateTime<Utc>,
    pub success_probability: Option<f64>,
}

/// Newest first, strictly older than the job `before` (when given).
pub fn list_jobs(
    conn: &mut PgConnection,
    limit: i64,
    before: Option<Uuid>,
) -> QueryResult<Vec<JobListRow>> {
    let mut query = simulations::table
        .select((
            simulations::id,
            simulations::status,
            simulations::created_at,
            simulations::success_probability,
        ))
        .order((simulations::created_at.desc(), simulations::id.desc()))
        .limit(limit)
        .into_boxed();
    if let Some(cursor) = before {
        let at: Option<DateTime<Utc>> = simulations::table
            .find(cursor)
            .select(simulations::created_at)
            .first(conn)
            .optional()?;
        match at {
            Some(at) => {
                query = query.filter(
                    simulations::created_at
                        .lt(at)
                        .or(simulations::created_at.eq(at).and(simulations::id.lt(cursor))),
                );
            }
            // An unknown cursor: nothing is older than a job that does not exist.
            None => return Ok(Vec::new()),
        }
    }
    query.load(conn)
}

/// Jobs not yet finished (the API's measure of backlog when Redis cannot be asked).
pub fn count_unfinished(conn: &mut PgConnection) -> QueryResult<i64> {
    simulations::table
        .filter(simulations::status.eq_any([JobStatus::Queued, JobStatus::Running]))
        .count()
        .get_result(conn)
}

/// What a cancel request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was queued and is now `cancelled`.
    Cancelled,
    /// It is running; its worker stops between batches.
    Requested,
    /// Already in this terminal state.
    AlreadyFinished(JobStatus),
    NotFound,
}

pub fn cancel(
    conn: &mut PgConnection,
    id: Uuid,
    request_id: Option<&str>,
) -> QueryResult<CancelOutcome> {
    conn.transaction(|conn| {
        let Some(job) = locked(conn, id)? else {
            return Ok(CancelOutcome::NotFound);
        };
        match job.status {
            s if s.is_terminal() => Ok(CancelOutcome::AlreadyFinished(s)),
            JobStatus::Queued => {
                let job = Simulation {
                    request_id: request_id.map(str::to_owned).or(job.request_id),
                    ..job
                };
                finish(
                    conn,
                    &job,
                    JobStatus::Cancelled,
                    API_ACTOR,
                    None,
                    json!({ "when": "queued" }),
                )?;
                Ok(CancelOutcome::Cancelled)
            }
            _ => {
                diesel::update(simulations::table.find(id))
                    .set((simulations::cancel_requested.eq(true), simulations::updated_at.eq(now)))
                    .execute(conn)?;
                Ok(CancelOutcome::Requested)
            }
        }
    })
}
