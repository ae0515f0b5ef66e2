//! The API's queries: record a submitted job (within its owner's quota), read jobs back (one,
//! a page, by idempotency key), count the backlog, and cancel. Every read and the cancel are
//! scoped to a [`Viewer`]: a tenant sees only its own jobs, as if no other job existed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::dsl::{now, sql};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Double, Jsonb, Nullable, Text};
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Actor, AuditEvent};
use super::models::{NewSimulation, NewSimulationResult, Simulation, SimulationResultRow};
use super::statement::{Append, Statement};
use super::transition::{finish, locked};
use crate::result_cache::CachedResult;
use crate::schema::{simulation_results, simulations};
use crate::{JobKind, JobStatus};

/// Whose jobs a query may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer<'a> {
    /// One tenant: its own jobs only.
    Tenant(&'a str),
    /// An operator: every tenant's jobs (read-only; see [`cancel`]).
    Operator,
}

/// What recording a submitted job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Inserted,
    /// The owner's queued and running work already holds `unfinished` queue places, and
    /// `needed` more would take it past its quota; nothing was written. A plan holds one place,
    /// a sweep one per unit: the quota bounds what one tenant may put in the queue, whose
    /// ceiling (`QUEUE_DEPTH_CEILING`) counts entries.
    QuotaReached {
        unfinished: i64,
        needed: i64,
    },
    /// The key the job names (`api_key_id`) is revoked or gone; nothing was written.
    KeyRevoked,
}

/// Records an accepted job (status `queued`) and its `submitted` audit row, atomically, unless
/// its owner's queued and running work already holds `max_unfinished` queue places (see
/// [`Recorded::QuotaReached`]). The count and the insert run
/// under a lock of the owner's (a transaction-scoped advisory lock), so concurrent submits of
/// one tenant, through any number of API replicas, cannot overshoot the quota.
///
/// It is one statement in a transaction of its own: the lock, the count, the insert and its
/// audit row, in one round trip. The lock and the count are the database function
/// `lock_quota_and_count_unfinished` (migrations `2026-12-04-000002_quota_count` and
/// `2026-12-05-000002_quota_counts_queue_places`), whose count
/// takes its own snapshot after the lock is held; a plain subquery would count in the
/// statement's snapshot, taken before the lock, and could miss a concurrent submit.
///
/// The same statement checks that the key the job names is not revoked (a job with no key, as
/// under `AUTH_MODE=disabled`, needs none): the API may take a submit's key from its memory of
/// keys it verified, and this check is then the one that lets the job in.
///
/// `flush` says whether the commit waits for the WAL flush (see [`Flush`]).
pub fn insert_job(
    conn: &mut PgConnection,
    job: &NewSimulation<'_>,
    max_unfinished: i64,
    flush: Flush,
) -> QueryResult<Recorded> {
    #[derive(QueryableByName)]
    struct Counted {
        #[diesel(sql_type = BigInt)]
        unfinished: i64,
        #[diesel(sql_type = Bool)]
        key_valid: bool,
    }
    let Counted { unfinished, key_valid } =
        Statement::new("WITH counted AS ( SELECT lock_quota_and_count_unfinished(")
            .bind::<Text, _>(job.owner)
            .sql(") AS unfinished ), keyed AS ( SELECT ")
            .bind::<Nullable<BigInt>, _>(job.api_key_id)
            .sql(" IS NULL OR EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL AND id = ")
            .bind::<Nullable<BigInt>, _>(job.api_key_id)
            .sql(
                ") AS key_valid \
                 ), job AS ( \
                   INSERT INTO simulations \
                     (id, request, seed, request_id, idempotency_key, request_hash, owner, \
                      api_key_id, cache_key) \
                   SELECT ",
            )
            .bind::<diesel::sql_types::Uuid, _>(job.id)
            .sql(", ")
            .bind::<Jsonb, _>(job.request)
            .sql(", ")
            .bind::<BigInt, _>(job.seed)
            .sql(", ")
            .bind::<Nullable<Text>, _>(job.request_id)
            .sql(", ")
            .bind::<Nullable<Text>, _>(job.idempotency_key)
            .sql(", ")
            .bind::<Nullable<Text>, _>(job.request_hash)
            .sql(", ")
            .bind::<Text, _>(job.owner)
            .sql(", ")
            .bind::<Nullable<BigInt>, _>(job.api_key_id)
            .sql(", ")
            .bind::<Nullable<Text>, _>(job.cache_key)
            .sql(" FROM counted, keyed WHERE key_valid AND unfinished < ")
            .bind::<BigInt, _>(max_unfinished)
            .sql(
                " RETURNING id, request_id, api_key_id \
                 ), submitted AS ( \
                   INSERT INTO audit_logs \
                     (simulation_id, event, actor, request_id, data, api_key_id) \
                   SELECT id, ",
            )
            .bind::<Text, _>(AuditEvent::Submitted.as_str())
            .sql(", ")
            .bind::<Text, _>(audit::API_ACTOR)
            .sql(", request_id, ")
            .bind::<Jsonb, _>(submitted_data(job))
            .sql(
                ", api_key_id FROM job \
                 ), committing AS ( \
                   SELECT set_config('synchronous_commit', \
                     CASE WHEN ",
            )
            .bind::<Bool, _>(flush == Flush::WithCommit)
            .sql(
                " THEN current_setting('synchronous_commit') ELSE 'off' END, true) \
                 ) \
                 SELECT unfinished, key_valid FROM counted, keyed, committing",
            )
            .get_result(conn)?;
    Ok(if !key_valid {
        Recorded::KeyRevoked
    } else if unfinished >= max_unfinished {
        Recorded::QuotaReached { unfinished, needed: 1 }
    } else {
        Recorded::Inserted
    })
}

/// When a submit's commit waits for the WAL flush that makes the job durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// The commit waits for it, as the session's `synchronous_commit` says (on, unless an
    /// operator turned it off): the job is durable once the insert returns. For a job that will
    /// wait behind others in the queue, which gains nothing from being pushed before its flush.
    WithCommit,
    /// The commit does not wait, so the job can be pushed and claimed while the disk catches
    /// up: the caller must [`await_durable_job`](super::await_durable_job) before it tells
    /// anyone the job exists. For a job an idle worker may take at once.
    Separately,
}

/// Serialises the submits of one owner until the transaction ends (a transaction-scoped
/// advisory lock), so that their quota counts cannot race. The same key as
/// `lock_quota_and_count_unfinished` takes for [`insert_job`].
fn lock_quota(conn: &mut PgConnection, owner: &str) -> QueryResult<()> {
    Statement::new("SELECT pg_advisory_xact_lock(hashtextextended('quota:' || ")
        .bind::<Text, _>(owner)
        .sql(", 0))")
        .execute(conn)
        .map(drop)
}

/// Runs `insert` (which writes `job`'s rows, holding `places` queue places) and records the
/// job's `submitted` audit row, in one transaction, unless the owner's quota has no room for
/// them. The places held are those of `lock_quota_and_count_unfinished`: plans and units, not
/// the sweeps that own the units.
pub(super) fn within_quota(
    conn: &mut PgConnection,
    job: &NewSimulation<'_>,
    places: i64,
    max_unfinished: i64,
    insert: impl FnOnce(&mut PgConnection) -> QueryResult<()>,
) -> QueryResult<Recorded> {
    conn.transaction(|conn| {
        lock_quota(conn, job.owner)?;
        let unfinished: i64 = simulations::table
            .filter(simulations::owner.eq(job.owner))
            .filter(simulations::status.eq_any([JobStatus::Queued, JobStatus::Running]))
            .filter(simulations::kind.ne(JobKind::Sweep))
            .count()
            .get_result(conn)?;
        if unfinished + places > max_unfinished {
            return Ok(Recorded::QuotaReached { unfinished, needed: places });
        }
        insert(conn)?;
        record_submitted(conn, job)?;
        Ok(Recorded::Inserted)
    })
}

/// The `submitted` audit row of a job being recorded.
fn record_submitted(conn: &mut PgConnection, job: &NewSimulation<'_>) -> QueryResult<()> {
    audit::record(
        conn,
        job.id,
        AuditEvent::Submitted,
        Actor::Api(job.api_key_id),
        job.request_id,
        submitted_data(job),
    )
}

/// The `data` of a `submitted` audit row.
fn submitted_data(job: &NewSimulation<'_>) -> serde_json::Value {
    json!({ "seed": job.seed, "idempotency_key": job.idempotency_key })
}

/// Who answered a submit from the result cache, for the audit trail.
pub const CACHE_ACTOR: &str = "cache";

/// Records a submit answered from the result cache: the job, already `succeeded`, its result
/// (marked `from_cache`), and its `submitted` and `succeeded` audit rows, in one transaction.
/// The job is its owner's like any other (reads, lists, audits, idempotency keys); no quota
/// applies, since it never holds a place in the queue. `layer` (`l1`, `l2`) goes to the audit.
pub fn insert_served_from_cache(
    conn: &mut PgConnection,
    job: &NewSimulation<'_>,
    cached: &CachedResult,
    layer: &str,
) -> QueryResult<()> {
    conn.transaction(|conn| {
        diesel::insert_into(simulations::table)
            .values((
                job,
                simulations::status.eq(JobStatus::Succeeded),
                simulations::progress_done.eq(cached.batches),
                simulations::progress_total.eq(cached.batches),
                simulations::success_probability.eq(cached.success_probability),
                simulations::started_at.eq(now),
                simulations::finished_at.eq(now),
            ))
            .execute(conn)?;
        diesel::insert_into(simulation_results::table)
            .values(NewSimulationResult {
                simulation_id: job.id,
                result: super::JsonbText(&cached.result),
                worker: CACHE_ACTOR,
                from_cache: true,
            })
            .execute(conn)?;
        record_submitted(conn, job)?;
        audit::record(
            conn,
            job.id,
            AuditEvent::Succeeded,
            Actor::Api(job.api_key_id),
            job.request_id,
            json!({ "cache": "hit", "layer": layer, "success_probability": cached.success_probability }),
        )?;
        Ok(())
    })
}

/// A job and its result, if it has one. A sweep has no result row: its read carries, in the
/// result's place, the summaries of its cells done so far (a JSON list, by index), so every
/// reader of a job (long-polls included) sees a sweep's grid as it fills.
pub fn find_job(
    conn: &mut PgConnection,
    viewer: Viewer<'_>,
    id: Uuid,
) -> QueryResult<Option<(Simulation, Option<SimulationResultRow>)>> {
    find_row(conn, viewer, id)?.map(|(job, result)| with_cells(conn, job, result)).transpose()
}

/// What [`find_job_checking_key`] found.
#[derive(Debug)]
pub enum KeyedRead {
    /// The key is valid; the job and its result, as [`find_job`] reads them.
    Found(Box<Simulation>, Option<SimulationResultRow>),
    /// The job exists for this viewer, but the key is revoked or gone: nothing may be shown.
    KeyRefused,
    /// No such job for this viewer; whether the key is valid is not known.
    NotFound,
}

/// [`find_job`] for a caller whose key was only remembered as valid, not looked up: the same
/// statement checks that key `api_key_id` is not revoked, so the read costs no round trip more
/// than a plain one and a revoked key still sees nothing. Only for the primary: a replica may
/// not have the revocation yet.
pub fn find_job_checking_key(
    conn: &mut PgConnection,
    viewer: Viewer<'_>,
    id: Uuid,
    api_key_id: i64,
) -> QueryResult<KeyedRead> {
    use crate::schema::api_keys;
    let key_valid = diesel::dsl::exists(
        api_keys::table.filter(api_keys::id.eq(api_key_id)).filter(api_keys::revoked_at.is_null()),
    );
    let mut query = simulations::table
        .left_join(simulation_results::table)
        .filter(simulations::id.eq(id))
        .filter(simulations::kind.ne(JobKind::Unit))
        .select((key_valid, Simulation::as_select(), Option::<SimulationResultRow>::as_select()))
        .into_boxed();
    if let Viewer::Tenant(owner) = viewer {
        query = query.filter(simulations::owner.eq(owner));
    }
    match query.first::<(bool, Simulation, Option<SimulationResultRow>)>(conn).optional()? {
        None => Ok(KeyedRead::NotFound),
        Some((false, _, _)) => Ok(KeyedRead::KeyRefused),
        Some((true, job, result)) => {
            let (job, result) = with_cells(conn, job, result)?;
            Ok(KeyedRead::Found(Box::new(job), result))
        }
    }
}

/// A sweep's read carries its cells' summaries in its result's place.
fn with_cells(
    conn: &mut PgConnection,
    job: Simulation,
    result: Option<SimulationResultRow>,
) -> QueryResult<(Simulation, Option<SimulationResultRow>)> {
    if job.kind != JobKind::Sweep {
        return Ok((job, result));
    }
    let cells = super::sweeps::cell_summaries(conn, job.id)?;
    let result = serde_json::value::to_raw_value(&cells)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    Ok((job, Some(SimulationResultRow::new(result, false))))
}

pub(super) fn find_row(
    conn: &mut PgConnection,
    viewer: Viewer<'_>,
    id: Uuid,
) -> QueryResult<Option<(Simulation, Option<SimulationResultRow>)>> {
    let mut query = simulations::table
        .left_join(simulation_results::table)
        .filter(simulations::id.eq(id))
        .filter(simulations::kind.ne(JobKind::Unit))
        .select((Simulation::as_select(), Option::<SimulationResultRow>::as_select()))
        .into_boxed();
    if let Viewer::Tenant(owner) = viewer {
        query = query.filter(simulations::owner.eq(owner));
    }
    query.first(conn).optional()
}

/// The owner's job submitted with this idempotency key, if any.
pub fn find_by_idempotency_key(
    conn: &mut PgConnection,
    owner: &str,
    key: &str,
) -> QueryResult<Option<Simulation>> {
    simulations::table
        .filter(simulations::owner.eq(owner))
        .filter(simulations::idempotency_key.eq(key))
        .select(Simulation::as_select())
        .first(conn)
        .optional()
}

/// Frees an idempotency key whose job is older than `ttl` (by the database's clock, which
/// wrote `created_at`), so the key can name a new job.
pub fn expire_idempotency_key(
    conn: &mut PgConnection,
    owner: &str,
    key: &str,
    ttl: Duration,
) -> QueryResult<usize> {
    diesel::update(
        simulations::table
            .filter(simulations::owner.eq(owner))
            .filter(simulations::idempotency_key.eq(key))
            .filter(
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

/// The viewer's jobs, newest first, strictly older than the job `before` (when given; a job
/// the viewer cannot see is no cursor).
pub fn list_jobs(
    conn: &mut PgConnection,
    viewer: Viewer<'_>,
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
        .filter(simulations::kind.ne(JobKind::Unit))
        .order((simulations::created_at.desc(), simulations::id.desc()))
        .limit(limit)
        .into_boxed();
    if let Viewer::Tenant(owner) = viewer {
        query = query.filter(simulations::owner.eq(owner));
    }
    if let Some(cursor) = before {
        let mut at = simulations::table.find(cursor).select(simulations::created_at).into_boxed();
        if let Viewer::Tenant(owner) = viewer {
            at = at.filter(simulations::owner.eq(owner));
        }
        let at: Option<DateTime<Utc>> = at.first(conn).optional()?;
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

/// Jobs not yet finished (the API's measure of backlog when Redis cannot be asked): the
/// queue's entries, so a sweep counts as its units.
pub fn count_unfinished(conn: &mut PgConnection) -> QueryResult<i64> {
    simulations::table
        .filter(simulations::status.eq_any([JobStatus::Queued, JobStatus::Running]))
        .filter(simulations::kind.ne(JobKind::Sweep))
        .count()
        .get_result(conn)
}

/// What a cancel request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was queued (or is a sweep) and is now `cancelled`; `withdrawn`: the jobs whose queue
    /// entries can go (the job itself, or the sweep's units that were queued).
    Cancelled {
        withdrawn: Vec<Uuid>,
    },
    /// It is running; its worker stops between batches.
    Requested,
    /// Already in this terminal state.
    AlreadyFinished(JobStatus),
    NotFound,
}

/// Cancels the owner's job `id` for the key `api_key_id`; another tenant's job is
/// [`CancelOutcome::NotFound`], even for an operator (operators read every job, but cancel
/// only their own).
pub fn cancel(
    conn: &mut PgConnection,
    owner: &str,
    api_key_id: Option<i64>,
    id: Uuid,
    request_id: Option<&str>,
) -> QueryResult<CancelOutcome> {
    conn.transaction(|conn| {
        let Some(job) =
            locked(conn, id)?.filter(|job| job.owner == owner && job.kind != JobKind::Unit)
        else {
            return Ok(CancelOutcome::NotFound);
        };
        match job.status {
            s if s.is_terminal() => Ok(CancelOutcome::AlreadyFinished(s)),
            // A sweep is never held by a worker: it ends at once, and its units stop.
            status if status == JobStatus::Queued || job.kind == JobKind::Sweep => {
                let job = Simulation {
                    request_id: request_id.map(str::to_owned).or(job.request_id),
                    ..job
                };
                finish(
                    conn,
                    &job,
                    JobStatus::Cancelled,
                    Actor::Api(api_key_id),
                    None,
                    json!({ "when": status }),
                )?;
                let withdrawn = if job.kind == JobKind::Sweep {
                    super::sweeps::stop_units(conn, id, audit::API_ACTOR)?
                } else {
                    vec![id]
                };
                Ok(CancelOutcome::Cancelled { withdrawn })
            }
            // Asked already: the same answer, and nothing more to record.
            _ if job.cancel_requested => Ok(CancelOutcome::Requested),
            _ => {
                diesel::update(simulations::table.find(id))
                    .set((simulations::cancel_requested.eq(true), simulations::updated_at.eq(now)))
                    .execute(conn)?;
                audit::record(
                    conn,
                    id,
                    AuditEvent::CancelRequested,
                    Actor::Api(api_key_id),
                    request_id.or(job.request_id.as_deref()),
                    json!({}),
                )?;
                Ok(CancelOutcome::Requested)
            }
        }
    })
}
