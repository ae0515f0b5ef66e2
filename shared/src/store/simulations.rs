//! Queries on `simulations`, `simulation_results` and `audit_logs`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::dsl::now;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use serde_json::json;
use uuid::Uuid;

use super::models::{
    AuditLog, NewAuditLog, NewSimulation, NewSimulationResult, Simulation, SimulationResultRow,
};
use crate::JobStatus;
use crate::schema::{audit_logs, simulation_results, simulations};

/// Audit actor of rows written by the API.
pub const API_ACTOR: &str = "api";

/// The audit events of the `audit_logs.event` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditEvent {
    Submitted,
    Started,
    Succeeded,
    Failed,
    Cancelled,
    Retried,
}

impl AuditEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::Started => "started",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Retried => "retried",
        }
    }
}

fn audit(
    conn: &mut PgConnection,
    id: Uuid,
    event: AuditEvent,
    actor: &str,
    request_id: Option<&str>,
    data: serde_json::Value,
) -> QueryResult<()> {
    diesel::insert_into(audit_logs::table)
        .values(NewAuditLog { simulation_id: id, event: event.as_str(), actor, request_id, data })
        .execute(conn)
        .map(drop)
}

/// Records an accepted job (status `queued`) and its `submitted` audit row, atomically.
pub fn insert_job(conn: &mut PgConnection, job: &NewSimulation<'_>) -> QueryResult<()> {
    conn.transaction(|conn| {
        diesel::insert_into(simulations::table).values(job).execute(conn)?;
        audit(
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

/// Frees an idempotency key whose job is older than `ttl`, so the key can name a new job.
pub fn expire_idempotency_key(
    conn: &mut PgConnection,
    key: &str,
    ttl: Duration,
) -> QueryResult<usize> {
    let cutoff = Utc::now() - chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    diesel::update(
        simulations::table
            .filter(simulations::idempotency_key.eq(key))
            .filter(simulations::created_at.lt(cutoff)),
    )
    .set(simulations::idempotency_key.eq(None::<String>))
    .execute(conn)
}

/// One row of the listing.
#[derive(Debug, Clone, Queryable)]
pub struct JobSummary {
    pub id: Uuid,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub success_probability: Option<f64>,
}

/// Newest first, strictly older than the job `before` (when given).
pub fn list_jobs(
    conn: &mut PgConnection,
    limit: i64,
    before: Option<Uuid>,
) -> QueryResult<Vec<JobSummary>> {
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
        .filter(
            simulations::status.eq_any([JobStatus::Queued.as_str(), JobStatus::Running.as_str()]),
        )
        .count()
        .get_result(conn)
}

/// A job a worker may run now.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: Uuid,
    pub request: serde_json::Value,
    pub seed: i64,
    pub request_id: Option<String>,
    pub attempt: i32,
    pub created_at: DateTime<Utc>,
    /// The previous attempt ended without an outcome: its worker died (crashed, killed, or a
    /// job it ran alongside took the process down).
    pub after_crash: bool,
}

/// What a worker found when it tried to take a job.
#[derive(Debug, Clone)]
pub enum Claim {
    Run(ClaimedJob),
    /// No such job: a stray queue entry.
    Missing,
    /// Already finished (a duplicate delivery), or cancelled while queued.
    Finished(JobStatus),
    /// Another worker is running it and reported within the orphan window; it counts as
    /// gone if it has not reported again by `until`.
    HeldElsewhere {
        worker: String,
        until: DateTime<Utc>,
    },
    /// This delivery would exceed the attempt limit; the job is now `failed`.
    GaveUp {
        attempts: i32,
    },
    /// A retry whose back-off has not elapsed.
    NotYet {
        not_before: DateTime<Utc>,
    },
}

/// Takes `id` for `worker`, counting the attempt, unless the job is finished, cancelled,
/// fresh in another worker's hands, backing off, or out of attempts.
pub fn claim(
    conn: &mut PgConnection,
    id: Uuid,
    worker: &str,
    max_attempts: i32,
    orphan_window: Duration,
) -> QueryResult<Claim> {
    conn.transaction(|conn| {
        let Some(job) = locked(conn, id)? else {
            return Ok(Claim::Missing);
        };
        let status: JobStatus = job.status.parse().unwrap_or(JobStatus::Failed);
        if status.is_terminal() {
            return Ok(Claim::Finished(status));
        }
        if job.cancel_requested {
            finish(conn, &job, JobStatus::Cancelled, worker, None, json!({ "when": status }))?;
            return Ok(Claim::Finished(JobStatus::Cancelled));
        }
        let now_ts = Utc::now();
        if let Some(not_before) = job.not_before
            && not_before > now_ts
        {
            return Ok(Claim::NotYet { not_before });
        }
        let window = chrono::Duration::from_std(orphan_window).unwrap_or(chrono::Duration::MAX);
        if status == JobStatus::Running
            && let (Some(holder), Some(beat)) = (&job.worker, job.heartbeat_at)
            && holder != worker
            && now_ts - beat < window
        {
            return Ok(Claim::HeldElsewhere { worker: holder.clone(), until: beat + window });
        }
        if job.attempts >= max_attempts {
            // Still `running`: the last attempt never reported back (its worker crashed or was
            // killed). `queued`: it failed and was released with its error.
            let last = if status == JobStatus::Running {
                "the last attempt ended without a result (its worker crashed or was killed)"
                    .to_owned()
            } else {
                job.error.as_deref().map_or_else(
                    || "the last attempt failed".to_owned(),
                    |e| format!("last error: {e}"),
                )
            };
            let error = format!("gave up after {} attempts; {last}", job.attempts);
            finish(
                conn,
                &job,
                JobStatus::Failed,
                worker,
                Some(&error),
                json!({ "attempts": job.attempts, "reason": "max_attempts" }),
            )?;
            return Ok(Claim::GaveUp { attempts: job.attempts });
        }
        let attempt = job.attempts + 1;
        diesel::update(simulations::table.find(id))
            .set((
                simulations::status.eq(JobStatus::Running.as_str()),
                simulations::attempts.eq(attempt),
                simulations::worker.eq(worker),
                simulations::heartbeat_at.eq(now),
                simulations::started_at.eq(job.started_at.unwrap_or(now_ts)),
                simulations::not_before.eq(None::<DateTime<Utc>>),
                simulations::updated_at.eq(now),
            ))
            .execute(conn)?;
        if attempt > 1 {
            audit(
                conn,
                id,
                AuditEvent::Retried,
                worker,
                job.request_id.as_deref(),
                json!({ "attempt": attempt, "previous_worker": job.worker, "previous_error": job.error }),
            )?;
        }
        audit(conn, id, AuditEvent::Started, worker, job.request_id.as_deref(), json!({ "attempt": attempt }))?;
        Ok(Claim::Run(ClaimedJob {
            id,
            request: job.request,
            seed: job.seed,
            request_id: job.request_id,
            attempt,
            created_at: job.created_at,
            after_crash: status == JobStatus::Running,
        }))
    })
}

/// Whether the job's last attempt died with its worker (the row says `running`, but its holder
/// stopped reporting for the orphan window, or is `worker` itself in an earlier life): what
/// [`claim`] will report as [`ClaimedJob::after_crash`], read without claiming.
pub fn previous_attempt_died(
    conn: &mut PgConnection,
    id: Uuid,
    worker: &str,
    orphan_window: Duration,
) -> QueryResult<bool> {
    let row: Option<(String, Option<String>, Option<DateTime<Utc>>)> = simulations::table
        .find(id)
        .select((simulations::status, simulations::worker, simulations::heartbeat_at))
        .first(conn)
        .optional()?;
    let window = chrono::Duration::from_std(orphan_window).unwrap_or(chrono::Duration::MAX);
    Ok(match row {
        Some((status, holder, beat)) if status == JobStatus::Running.as_str() => {
            holder.as_deref() == Some(worker) || beat.is_none_or(|b| Utc::now() - b >= window)
        }
        _ => false,
    })
}

/// Terminal transition plus its audit row; callers hold the row lock.
fn finish(
    conn: &mut PgConnection,
    job: &Simulation,
    status: JobStatus,
    actor: &str,
    error: Option<&str>,
    data: serde_json::Value,
) -> QueryResult<()> {
    diesel::update(simulations::table.find(job.id))
        .set((
            simulations::status.eq(status.as_str()),
            simulations::error.eq(error),
            simulations::finished_at.eq(now),
            simulations::updated_at.eq(now),
        ))
        .execute(conn)?;
    let event = match status {
        JobStatus::Succeeded => AuditEvent::Succeeded,
        JobStatus::Cancelled => AuditEvent::Cancelled,
        _ => AuditEvent::Failed,
    };
    audit(conn, job.id, event, actor, job.request_id.as_deref(), data)
}

/// What a progress report learned about the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressAck {
    /// Keep going.
    Continue,
    /// A cancel was requested: stop between batches.
    Cancel,
    /// The job is no longer running (finished elsewhere); stop without writing.
    Gone,
}

/// Records batches done and refreshes the job's heartbeat, while `worker` holds the job (a
/// worker whose heartbeat went stale may have been replaced: it then learns it is `Gone`).
pub fn report_progress(
    conn: &mut PgConnection,
    id: Uuid,
    worker: &str,
    done: i32,
    total: i32,
) -> QueryResult<ProgressAck> {
    let row: Option<bool> = diesel::update(
        simulations::table
            .find(id)
            .filter(simulations::status.eq(JobStatus::Running.as_str()))
            .filter(simulations::worker.eq(worker)),
    )
    .set((
        simulations::progress_done.eq(done),
        simulations::progress_total.eq(total),
        simulations::heartbeat_at.eq(now),
        simulations::updated_at.eq(now),
    ))
    .returning(simulations::cancel_requested)
    .get_result(conn)
    .optional()?;
    Ok(match row {
        None => ProgressAck::Gone,
        Some(true) => ProgressAck::Cancel,
        Some(false) => ProgressAck::Continue,
    })
}

/// Stores the result and marks the job `succeeded`, once: `false` if it was not running any
/// more (another delivery finished it first), in which case nothing is written.
pub fn complete(
    conn: &mut PgConnection,
    id: Uuid,
    worker: &str,
    result: &serde_json::Value,
    success_probability: f64,
    batches: i32,
) -> QueryResult<bool> {
    conn.transaction(|conn| {
        let Some(job) = running_for_update(conn, id)? else { return Ok(false) };
        diesel::update(simulations::table.find(id))
            .set((
                simulations::success_probability.eq(success_probability),
                simulations::progress_done.eq(batches),
                simulations::progress_total.eq(batches),
                simulations::worker.eq(worker),
                simulations::error.eq(None::<String>),
            ))
            .execute(conn)?;
        diesel::insert_into(simulation_results::table)
            .values(NewSimulationResult { simulation_id: id, result, worker })
            .on_conflict_do_nothing()
            .execute(conn)?;
        finish(
            conn,
            &job,
            JobStatus::Succeeded,
            worker,
            None,
            json!({ "attempt": job.attempts, "success_probability": success_probability }),
        )?;
        Ok(true)
    })
}

/// Marks a running job `failed` for good, once.
pub fn fail(conn: &mut PgConnection, id: Uuid, worker: &str, error: &str) -> QueryResult<bool> {
    conn.transaction(|conn| {
        let Some(job) = running_for_update(conn, id)? else { return Ok(false) };
        finish(
            conn,
            &job,
            JobStatus::Failed,
            worker,
            Some(error),
            json!({ "attempt": job.attempts }),
        )?;
        Ok(true)
    })
}

/// Marks a running job `cancelled` (its worker saw the request), once.
pub fn cancelled_by_worker(conn: &mut PgConnection, id: Uuid, worker: &str) -> QueryResult<bool> {
    conn.transaction(|conn| {
        let Some(job) = running_for_update(conn, id)? else { return Ok(false) };
        finish(conn, &job, JobStatus::Cancelled, worker, None, json!({ "when": "running" }))?;
        Ok(true)
    })
}

/// Puts a running job back to `queued` after an error worth retrying, remembering the error and
/// when the next attempt may start. `false` if it was not running.
pub fn release_for_retry(
    conn: &mut PgConnection,
    id: Uuid,
    error: &str,
    not_before: Option<DateTime<Utc>>,
) -> QueryResult<bool> {
    diesel::update(
        simulations::table.find(id).filter(simulations::status.eq(JobStatus::Running.as_str())),
    )
    .set((
        simulations::status.eq(JobStatus::Queued.as_str()),
        simulations::error.eq(error),
        simulations::not_before.eq(not_before),
        simulations::worker.eq(None::<String>),
        simulations::heartbeat_at.eq(None::<DateTime<Utc>>),
        simulations::updated_at.eq(now),
    ))
    .execute(conn)
    .map(|n| n == 1)
}

/// Gives a job back to the queue without counting the attempt (a worker shutting down).
pub fn hand_back(conn: &mut PgConnection, id: Uuid, worker: &str) -> QueryResult<bool> {
    conn.transaction(|conn| {
        let Some(job) = running_for_update(conn, id)? else { return Ok(false) };
        diesel::update(simulations::table.find(id))
            .set((
                simulations::status.eq(JobStatus::Queued.as_str()),
                simulations::attempts.eq((job.attempts - 1).max(0)),
                simulations::worker.eq(None::<String>),
                simulations::heartbeat_at.eq(None::<DateTime<Utc>>),
                simulations::updated_at.eq(now),
            ))
            .execute(conn)?;
        audit(
            conn,
            id,
            AuditEvent::Retried,
            worker,
            job.request_id.as_deref(),
            json!({ "reason": "worker shutdown", "attempt_not_counted": job.attempts }),
        )?;
        Ok(true)
    })
}

/// The job's row, locked until the transaction ends.
fn locked(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<Simulation>> {
    simulations::table.find(id).select(Simulation::as_select()).for_update().first(conn).optional()
}

fn running_for_update(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<Simulation>> {
    simulations::table
        .find(id)
        .filter(simulations::status.eq(JobStatus::Running.as_str()))
        .select(Simulation::as_select())
        .for_update()
        .first(conn)
        .optional()
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
        let status: JobStatus = job.status.parse().unwrap_or(JobStatus::Failed);
        match status {
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

/// The audit trail of a job, oldest first.
pub fn audit_trail(conn: &mut PgConnection, id: Uuid) -> QueryResult<Vec<AuditLog>> {
    audit_logs::table
        .filter(audit_logs::simulation_id.eq(id))
        .order((audit_logs::created_at.asc(), audit_logs::id.asc()))
        .select(AuditLog::as_select())
        .load(conn)
}

/// Unfinished jobs last touched before `stale_before`, oldest first: candidates for the
/// reconciler.
pub fn stale_unfinished(
    conn: &mut PgConnection,
    stale_before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<Uuid>> {
    simulations::table
        .filter(
            simulations::status.eq_any([JobStatus::Queued.as_str(), JobStatus::Running.as_str()]),
        )
        .filter(simulations::updated_at.lt(stale_before))
        .filter(simulations::heartbeat_at.is_null().or(simulations::heartbeat_at.lt(stale_before)))
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
