//! The worker's side of a job's life: claim it, report progress, and record its outcome (done,
//! failed, cancelled, released for a retry, handed back at shutdown).
//!
//! A claim gives the job a fresh token, and every later write names it (a [`Lease`]): it
//! applies only while the row is `running` under that token. A worker whose heartbeat went
//! stale may have been replaced by another that claimed the job since; whatever the stale one
//! writes then is fenced out — logged and dropped — and the row stays the new holder's.
//!
//! Whether a heartbeat is stale and whether a back-off is over are decided by the database's
//! clock, the one that wrote `heartbeat_at`; waits are returned as durations Postgres computed,
//! never as instants for a host to subtract its own clock from.

use std::time::Duration;

use diesel::dsl::{now, sql};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Double, Integer, Json, Jsonb, Nullable, Text, Timestamptz};
use serde_json::json;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::JsonText;
use super::audit::{self, Actor, AuditEvent};
use super::models::Simulation;
use super::statement::{Append, Statement};
use super::transition::{finish, record_end};
use crate::JobStatus;
use crate::schema::simulations;

/// A worker's hold on a running job, as its claim recorded it; every write the worker makes to
/// the job afterwards is fenced by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job: Uuid,
    pub(crate) worker: String,
    /// The token the claim wrote to `simulations.claim_token`.
    pub token: Uuid,
    /// The attempt this claim counted (1-based).
    pub attempt: i32,
}

/// What a write under a [`Lease`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Write {
    Applied,
    /// The job is no longer held under this lease (finished, or claimed by another worker):
    /// nothing was written.
    FencedOut,
}

/// A job a worker may run now.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub lease: Lease,
    pub request: serde_json::Value,
    pub seed: i64,
    pub request_id: Option<String>,
    /// From submit to this claim.
    pub waited: Duration,
    /// The previous attempt ended without an outcome: its worker died (crashed, killed, or a
    /// job it ran alongside took the process down).
    pub after_crash: bool,
    /// Where to cache the result once it is stored, when the request named its seed.
    pub cache_key: Option<String>,
    /// The sweep this job is a unit of.
    pub sweep: Option<Uuid>,
}

/// What a worker found when it tried to take a job.
#[derive(Debug, Clone)]
pub enum Claim {
    Run(ClaimedJob),
    /// No such job: a stray queue entry.
    Missing,
    /// Already finished (a duplicate delivery), or cancelled while queued.
    Finished(JobStatus),
    /// Another worker is running it and reported within the orphan window; it counts as gone
    /// if it has not reported again `recheck_in` from now.
    HeldElsewhere {
        worker: String,
        recheck_in: Duration,
    },
    /// This delivery would exceed the attempt limit; the job is now `failed`.
    GaveUp {
        attempts: i32,
    },
    /// A retry whose back-off ends `wait` from now.
    NotYet {
        wait: Duration,
    },
    /// The last attempt died with its process ([`ClaimedJob::after_crash`]): the job must run
    /// alone, and was not claimed because the caller shares its process's engine
    /// ([`claim_beside_others`]). Nothing was written.
    MustRunAlone,
}

/// A claim's look at the row, with the times that matter measured by the database.
#[derive(Queryable)]
struct Candidate {
    job: Simulation,
    /// The token of the claim that holds it, if one does.
    claim_token: Option<Uuid>,
    /// Seconds until the retry back-off ends (positive while it lasts).
    due_in: Option<f64>,
    /// Seconds until the holder's heartbeat goes stale (positive while it is fresh).
    fresh_for: Option<f64>,
    /// Seconds since the job was submitted.
    waited: f64,
}

/// Takes `id` for `worker` under `token`, counting the attempt, unless the job is finished,
/// cancelled, fresh in another worker's hands, backing off, or out of attempts. For a caller
/// that runs the job alone in its process, or does not care (see [`claim_beside_others`]).
///
/// The caller draws `token` once per delivery and sends every retry of the claim with it: a
/// claim that committed but whose reply was lost is then found again as the caller's own, not
/// taken for an attempt whose worker died (which would count a second attempt for one run).
pub fn claim(
    conn: &mut PgConnection,
    id: Uuid,
    worker: &str,
    token: Uuid,
    max_attempts: i32,
    orphan_window: Duration,
) -> QueryResult<Claim> {
    claim_with(conn, id, worker, token, max_attempts, orphan_window, true)
}

/// [`claim`] for a caller that would run the job beside others: when the last attempt died
/// with its process, it answers [`Claim::MustRunAlone`] without claiming (or counting an
/// attempt), so the caller takes its process's engine alone and claims again. One transaction
/// for the usual case, where a separate look ([`previous_attempt_died`]) used to come first.
pub fn claim_beside_others(
    conn: &mut PgConnection,
    id: Uuid,
    worker: &str,
    token: Uuid,
    max_attempts: i32,
    orphan_window: Duration,
) -> QueryResult<Claim> {
    claim_with(conn, id, worker, token, max_attempts, orphan_window, false)
}

fn claim_with(
    conn: &mut PgConnection,
    id: Uuid,
    worker: &str,
    token: Uuid,
    max_attempts: i32,
    orphan_window: Duration,
    alone: bool,
) -> QueryResult<Claim> {
    if let Some(job) = claim_first_attempt(conn, id, worker, token, max_attempts)? {
        return Ok(Claim::Run(job));
    }
    conn.transaction(|conn| {
        super::sweeps::lock_sweep_of(conn, id)?;
        let candidate: Option<Candidate> = simulations::table
            .find(id)
            .select((
                Simulation::as_select(),
                simulations::claim_token,
                sql::<Nullable<Double>>("extract(epoch FROM not_before - now())::float8"),
                sql::<Nullable<Double>>("extract(epoch FROM heartbeat_at + make_interval(secs => ")
                    .bind::<Double, _>(orphan_window.as_secs_f64())
                    .sql(") - now())::float8"),
                sql::<Double>("extract(epoch FROM now() - created_at)::float8"),
            ))
            .for_update()
            .first(conn)
            .optional()?;
        let Some(Candidate { job, claim_token, due_in, fresh_for, waited }) = candidate else {
            return Ok(Claim::Missing);
        };
        let status = job.status;
        if status.is_terminal() {
            return Ok(Claim::Finished(status));
        }
        if job.cancel_requested {
            finish(conn, &job, JobStatus::Cancelled, Actor::Worker(worker), None, json!({ "when": status }))?;
            return Ok(Claim::Finished(JobStatus::Cancelled));
        }
        if status == JobStatus::Running && claim_token == Some(token) {
            // This very claim, sent again because its reply was lost after it committed: the
            // job is the caller's already (under the lone turn only if the claim that ran
            // was made under it, after a crash).
            let lease = Lease { job: id, worker: worker.to_owned(), token, attempt: job.attempts };
            return Ok(Claim::Run(ClaimedJob::of(job, lease, waited, alone)));
        }
        if let Some(wait) = positive(due_in) {
            return Ok(Claim::NotYet { wait });
        }
        if status == JobStatus::Running
            && let Some(holder) = &job.worker
            && holder != worker
            && let Some(recheck_in) = positive(fresh_for)
        {
            return Ok(Claim::HeldElsewhere { worker: holder.clone(), recheck_in });
        }
        // Still `running` and not fresh elsewhere: its holder died (or is this worker in an
        // earlier life), exactly what `previous_attempt_died` reports. Asked before the
        // attempt limit, as when that look came first: the job gives up under the lone turn.
        if status == JobStatus::Running && !alone {
            return Ok(Claim::MustRunAlone);
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
                Actor::Worker(worker),
                Some(&error),
                json!({ "attempts": job.attempts, "reason": "max_attempts" }),
            )?;
            return Ok(Claim::GaveUp { attempts: job.attempts });
        }
        let attempt = job.attempts + 1;
        diesel::update(simulations::table.find(id))
            .set((
                simulations::status.eq(JobStatus::Running),
                simulations::attempts.eq(attempt),
                simulations::worker.eq(worker),
                simulations::claim_token.eq(token),
                simulations::heartbeat_at.eq(now),
                simulations::started_at
                    .eq(sql::<Nullable<Timestamptz>>("coalesce(started_at, now())")),
                simulations::not_before.eq(None::<chrono::DateTime<chrono::Utc>>),
                simulations::updated_at.eq(now),
            ))
            .execute(conn)?;
        if let Some(sweep) = job.parent_id {
            super::sweeps::unit_started(conn, sweep, worker)?;
        }
        if attempt > 1 {
            audit::record(
                conn,
                id,
                AuditEvent::Retried,
                Actor::Worker(worker),
                job.request_id.as_deref(),
                json!({ "attempt": attempt, "previous_worker": job.worker, "previous_error": job.error }),
            )?;
        }
        audit::record(
            conn,
            id,
            AuditEvent::Started,
            Actor::Worker(worker),
            job.request_id.as_deref(),
            json!({ "attempt": attempt }),
        )?;
        let lease = Lease { job: id, worker: worker.to_owned(), token, attempt };
        Ok(Claim::Run(ClaimedJob::of(job, lease, waited, status == JobStatus::Running)))
    })
}

impl ClaimedJob {
    /// The job of a row the full claim read, run under `lease`; `waited` is seconds since the
    /// submit.
    fn of(job: Simulation, lease: Lease, waited: f64, after_crash: bool) -> Self {
        Self {
            lease,
            request: job.request,
            seed: job.seed,
            request_id: job.request_id,
            waited: Duration::try_from_secs_f64(waited).unwrap_or_default(),
            after_crash,
            cache_key: job.cache_key,
            sweep: job.parent_id,
        }
    }
}

/// The claim of nearly every delivery, in one statement (no transaction of its own, no row read
/// first): a plan's first attempt, queued, due and not cancelled. The update's own conditions
/// decide it under the row lock, as the full claim decides under `FOR UPDATE`, and it writes
/// the same columns and the same `started` audit row. `None`: anything else (a retry, a
/// crash, a unit of a sweep, a job held elsewhere, finished or missing), for the full claim.
///
/// Its commit does not wait for the WAL to reach disk (`synchronous_commit` off for this
/// transaction alone). A claim lost with a Postgres crash costs nothing but time: the row is
/// `queued` again, the reconciler pushes it, and the result this worker then tries to store
/// is fenced out by the token it no longer holds.
fn claim_first_attempt(
    conn: &mut PgConnection,
    id: Uuid,
    worker: &str,
    token: Uuid,
    max_attempts: i32,
) -> QueryResult<Option<ClaimedJob>> {
    #[derive(QueryableByName)]
    struct Claimed {
        #[diesel(sql_type = Jsonb)]
        request: serde_json::Value,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        seed: i64,
        #[diesel(sql_type = Nullable<Text>)]
        request_id: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        cache_key: Option<String>,
        #[diesel(sql_type = Double)]
        waited: f64,
    }
    let claimed: Option<Claimed> = Statement::new(
        "WITH claimed AS ( \
           UPDATE simulations \
              SET status = 'running', attempts = 1, worker = ",
    )
    .bind::<Text, _>(worker)
    .sql(", claim_token = ")
    .bind::<diesel::sql_types::Uuid, _>(token)
    .sql(
        ", heartbeat_at = now(), started_at = coalesce(started_at, now()), \
           not_before = NULL, updated_at = now() \
           WHERE id = ",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .sql(" AND status = 'queued' AND attempts = 0 AND ")
    .bind::<Integer, _>(max_attempts)
    .sql(
        " > 0 AND NOT cancel_requested AND parent_id IS NULL \
            AND (not_before IS NULL OR not_before <= now()) \
           RETURNING id, request, seed, request_id, cache_key, \
                     extract(epoch FROM now() - created_at)::float8 AS waited \
         ), started AS ( \
           INSERT INTO audit_logs (simulation_id, event, actor, request_id, data) \
           SELECT id, ",
    )
    .bind::<Text, _>(AuditEvent::Started.as_str())
    .sql(", ")
    .bind::<Text, _>(worker)
    .sql(", request_id, ")
    .bind::<Jsonb, _>(json!({ "attempt": 1 }))
    .sql(
        " FROM claimed \
         ), unflushed AS ( \
           SELECT set_config('synchronous_commit', 'off', true) \
         ) \
         SELECT request, seed, request_id, cache_key, waited FROM claimed, unflushed",
    )
    .get_result(conn)
    .optional()?;
    Ok(claimed.map(|c| ClaimedJob {
        lease: Lease { job: id, worker: worker.to_owned(), token, attempt: 1 },
        request: c.request,
        seed: c.seed,
        request_id: c.request_id,
        waited: Duration::try_from_secs_f64(c.waited).unwrap_or_default(),
        after_crash: false,
        cache_key: c.cache_key,
        sweep: None,
    }))
}

/// A wait Postgres measured, if there is any left.
fn positive(seconds: Option<f64>) -> Option<Duration> {
    seconds.filter(|s| *s > 0.0).and_then(|s| Duration::try_from_secs_f64(s).ok())
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
    let row: Option<(JobStatus, Option<String>, bool)> = simulations::table
        .find(id)
        .select((
            simulations::status,
            simulations::worker,
            sql::<Bool>("heartbeat_at IS NULL OR heartbeat_at <= now() - make_interval(secs => ")
                .bind::<Double, _>(orphan_window.as_secs_f64())
                .sql(")"),
        ))
        .first(conn)
        .optional()?;
    Ok(match row {
        Some((JobStatus::Running, holder, stale)) => holder.as_deref() == Some(worker) || stale,
        _ => false,
    })
}

/// The job's row while it is running under the claim that wrote `token`: the fence of every
/// write a worker makes after its claim.
#[diesel::dsl::auto_type(no_type_alias)]
fn held_under(job: Uuid, token: Uuid) -> _ {
    let running: JobStatus = JobStatus::Running;
    simulations::table
        .find(job)
        .filter(simulations::status.eq(running))
        .filter(simulations::claim_token.eq(token))
}

/// The job's row, locked, if it is still running under `lease`.
fn held(conn: &mut PgConnection, lease: &Lease) -> QueryResult<Option<Simulation>> {
    held_under(lease.job, lease.token)
        .select(Simulation::as_select())
        .for_update()
        .first(conn)
        .optional()
}

/// Logs a write `lease` no longer allows, with what the row says now, and drops it.
fn fenced_out(conn: &mut PgConnection, lease: &Lease, write: &str) -> QueryResult<Write> {
    let now_held: Option<(JobStatus, Option<String>)> = simulations::table
        .find(lease.job)
        .select((simulations::status, simulations::worker))
        .first(conn)
        .optional()?;
    let (status, holder) = now_held.unzip();
    let holder = holder.flatten();
    // A progress report that lost the race with this worker's own outcome is no news.
    let own_end = write == "progress"
        && status.is_some_and(JobStatus::is_terminal)
        && holder.as_deref() == Some(lease.worker.as_str());
    if own_end {
        tracing::debug!(job_id = %lease.job, "progress report after the job's own end; dropped");
    } else {
        tracing::warn!(
            job_id = %lease.job,
            worker = lease.worker,
            attempt = lease.attempt,
            write,
            status = status.map(JobStatus::as_str),
            holder,
            "write fenced out: the job is no longer held under this worker's claim; dropped"
        );
    }
    Ok(Write::FencedOut)
}

/// What a progress report learned about the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressAck {
    /// Keep going.
    Continue,
    /// A cancel was requested: stop between batches.
    Cancel,
    /// The job is no longer held under this lease (finished, or taken over after this
    /// worker's heartbeat went stale): stop without writing anything.
    FencedOut,
}

/// Records batches done and refreshes the job's heartbeat. The count never goes back: an
/// attempt after a failed or lost one starts from its first batch, and shows the furthest any
/// attempt got until it passes it (the README promises `done / total` only moves forward).
pub fn report_progress(
    conn: &mut PgConnection,
    lease: &Lease,
    done: i32,
    total: i32,
) -> QueryResult<ProgressAck> {
    let furthest = sql::<Integer>("greatest(progress_done, ").bind::<Integer, _>(done).sql(")");
    let row: Option<bool> = diesel::update(held_under(lease.job, lease.token))
        .set((
            simulations::progress_done.eq(furthest),
            simulations::progress_total.eq(total),
            simulations::heartbeat_at.eq(now),
            simulations::updated_at.eq(now),
        ))
        .returning(simulations::cancel_requested)
        .get_result(conn)
        .optional()?;
    Ok(match row {
        None => {
            let _ = fenced_out(conn, lease, "progress")?;
            ProgressAck::FencedOut
        }
        Some(true) => ProgressAck::Cancel,
        Some(false) => ProgressAck::Continue,
    })
}

/// What storing a result did.
#[derive(Debug, Clone)]
pub struct Completed {
    pub write: Write,
    /// The job's row as the write committed it, when applied: what a waiting request answers
    /// (`crate::queue::announcement`).
    pub job: Option<Simulation>,
}

/// The columns of [`Simulation`], for a statement that returns one by name.
macro_rules! simulation_columns {
    () => {
        "id, status, request, seed, request_id, request_hash, attempts, progress_done, \
         progress_total, error, worker, cancel_requested, created_at, started_at, finished_at, \
         owner, cache_key, kind, parent_id"
    };
}

/// Stores the result and marks the job `succeeded`, once: one update of the row (status,
/// result columns, `finished_at`, fenced by the lease), the result row and the audit row, in
/// one transaction. Returns the row as committed.
pub fn complete(
    conn: &mut PgConnection,
    lease: &Lease,
    result: &RawValue,
    success_probability: Option<f64>,
    batches: i32,
) -> QueryResult<Completed> {
    // One statement, so one round trip and no transaction of its own: the fenced update, the
    // result row and the audit row commit together or not at all. The claim that wrote the
    // token counted `lease.attempt`, so the audit row can be built here.
    let ended = Statement::new(
        "WITH ended AS ( \
           UPDATE simulations \
              SET status = ",
    )
    .bind::<Text, _>(JobStatus::Succeeded.as_str())
    .sql(", success_probability = ")
    .bind::<Nullable<Double>, _>(success_probability)
    .sql(", progress_done = ")
    .bind::<Integer, _>(batches)
    .sql(", progress_total = ")
    .bind::<Integer, _>(batches)
    .sql(
        ", error = NULL, claim_token = NULL, finished_at = now(), updated_at = now() \
           WHERE id = ",
    )
    .bind::<diesel::sql_types::Uuid, _>(lease.job)
    .sql(" AND status = 'running' AND claim_token = ")
    .bind::<diesel::sql_types::Uuid, _>(lease.token)
    .sql(concat!(
        " RETURNING ",
        simulation_columns!(),
        " ), stored AS ( \
           INSERT INTO simulation_results (simulation_id, document, worker, from_cache) \
           SELECT id, ",
    ))
    .bind::<Json, _>(JsonText(result))
    .sql(", ")
    .bind::<Text, _>(&lease.worker)
    .sql(
        ", false FROM ended \
           ON CONFLICT DO NOTHING \
         ), audited AS ( \
           INSERT INTO audit_logs (simulation_id, event, actor, request_id, data) \
           SELECT id, ",
    )
    .bind::<Text, _>(AuditEvent::Succeeded.as_str())
    .sql(", ")
    .bind::<Text, _>(&lease.worker)
    .sql(", request_id, ")
    .bind::<Jsonb, _>(
        json!({ "attempt": lease.attempt, "success_probability": success_probability }),
    )
    .sql(concat!(" FROM ended ) SELECT ", simulation_columns!(), " FROM ended"))
    .get_result::<Simulation>(conn)
    .optional()?;
    match ended {
        Some(job) => Ok(Completed { write: Write::Applied, job: Some(job) }),
        None => Ok(Completed { write: fenced_out(conn, lease, "complete")?, job: None }),
    }
}

/// Marks the job `failed` for good, once.
pub fn fail(conn: &mut PgConnection, lease: &Lease, error: &str) -> QueryResult<Write> {
    end_held(
        conn,
        lease,
        JobStatus::Failed,
        Some(error),
        "fail",
        |attempt| json!({ "attempt": attempt }),
    )
}

/// Marks the job `cancelled` (its worker saw the request), once.
pub fn cancelled_by_worker(conn: &mut PgConnection, lease: &Lease) -> QueryResult<Write> {
    end_held(
        conn,
        lease,
        JobStatus::Cancelled,
        None,
        "cancelled by worker",
        |_| json!({ "when": "running" }),
    )
}

/// Ends a job held under `lease` as `status` in one update and its audit row (whose data
/// `data` makes from the attempt), in one transaction.
fn end_held(
    conn: &mut PgConnection,
    lease: &Lease,
    status: JobStatus,
    error: Option<&str>,
    write: &str,
    data: impl FnOnce(i32) -> serde_json::Value,
) -> QueryResult<Write> {
    conn.transaction(|conn| {
        if status == JobStatus::Failed {
            // A unit's failure fails its sweep: the sweep's row first, as everywhere.
            super::sweeps::lock_sweep_of(conn, lease.job)?;
        }
        let ended: Option<(i32, Option<String>, Option<Uuid>)> =
            diesel::update(held_under(lease.job, lease.token))
                .set((
                    simulations::status.eq(status),
                    simulations::error.eq(error),
                    simulations::claim_token.eq(None::<Uuid>),
                    simulations::finished_at.eq(now),
                    simulations::updated_at.eq(now),
                ))
                .returning((simulations::attempts, simulations::request_id, simulations::parent_id))
                .get_result(conn)
                .optional()?;
        let Some((attempt, request_id, sweep)) = ended else {
            return fenced_out(conn, lease, write);
        };
        if let (Some(sweep), JobStatus::Failed) = (sweep, status) {
            let actor = Actor::Worker(&lease.worker);
            super::sweeps::unit_failed(conn, lease.job, sweep, actor, error.unwrap_or("failed"))?;
        }
        record_end(
            conn,
            lease.job,
            status,
            Actor::Worker(&lease.worker),
            request_id.as_deref(),
            data(attempt),
        )?;
        Ok(Write::Applied)
    })
}

/// Puts the job back to `queued` after an error worth retrying, remembering the error; the
/// next attempt may start `delay` from now (the database's now).
pub fn release_for_retry(
    conn: &mut PgConnection,
    lease: &Lease,
    error: &str,
    delay: Duration,
) -> QueryResult<Write> {
    let released = diesel::update(held_under(lease.job, lease.token))
        .set((
            simulations::status.eq(JobStatus::Queued),
            simulations::error.eq(error),
            simulations::not_before.eq(sql::<Nullable<Timestamptz>>(
                "now() + make_interval(secs => ",
            )
            .bind::<Double, _>(delay.as_secs_f64())
            .sql(")")),
            simulations::worker.eq(None::<String>),
            simulations::claim_token.eq(None::<Uuid>),
            simulations::heartbeat_at.eq(None::<chrono::DateTime<chrono::Utc>>),
            simulations::updated_at.eq(now),
        ))
        .execute(conn)?;
    if released == 1 { Ok(Write::Applied) } else { fenced_out(conn, lease, "release for retry") }
}

/// Gives the job back to the queue without counting the attempt (a worker shutting down).
pub fn hand_back(conn: &mut PgConnection, lease: &Lease) -> QueryResult<Write> {
    conn.transaction(|conn| {
        let Some(job) = held(conn, lease)? else { return fenced_out(conn, lease, "hand back") };
        diesel::update(simulations::table.find(job.id))
            .set((
                simulations::status.eq(JobStatus::Queued),
                simulations::attempts.eq((job.attempts - 1).max(0)),
                simulations::worker.eq(None::<String>),
                simulations::claim_token.eq(None::<Uuid>),
                simulations::heartbeat_at.eq(None::<chrono::DateTime<chrono::Utc>>),
                simulations::updated_at.eq(now),
            ))
            .execute(conn)?;
        audit::record(
            conn,
            job.id,
            AuditEvent::Retried,
            Actor::Worker(&lease.worker),
            job.request_id.as_deref(),
            json!({ "reason": "worker shutdown", "attempt_not_counted": job.attempts }),
        )?;
        Ok(Write::Applied)
    })
}
