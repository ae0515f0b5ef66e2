//! `POST /simulations` (and its old-app alias `POST /run_simulation`) and
//! `DELETE /simulations/{id}`.
//!
//! A submit is parsed and checked before anything is written; then the job row and its
//! `submitted` audit row are recorded in one transaction (Postgres is the record), and only
//! then is the job pushed to Redis. That commit does not wait for the disk: the push goes out
//! at once, beside a wait for the WAL flush, and the answer waits for both. If the push fails
//! the job stays recorded as `queued` and the reconciler pushes it later: a job the API
//! answered 202 for is never lost, and a job it could not record is refused with 503.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use actix_web::{delete, post};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use futures_util::StreamExt;
use portfolio_engine::request::{RequestError, SimulationRequest, draw_seed};
use portfolio_engine::sweep::Sweep;
use portfolio_engine::{FieldError, SimulationRequestInput};
use portfolio_shared::JobStatus;
use portfolio_shared::queue::Backlog;
use portfolio_shared::result_cache::CachedResult;
use portfolio_shared::store::models::{NewSimulation, Simulation, SimulationResultRow};
use portfolio_shared::store::{self, CancelOutcome, Flush, NewUnit, Recorded};
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::admission::Admission;
use crate::auth::{Caller, Scope};
use crate::error::{ApiError, Problem};
use crate::request_id::RequestId;
use crate::result_cache::Layer;
use crate::routes::results::{JobView, parse_id};
use crate::state::AppState;
use crate::{completions, prefer};

/// Largest accepted body.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;
/// An idempotency key names one job for this long.
pub(crate) const IDEMPOTENCY_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
pub(crate) const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// The answer to an accepted submit.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobAccepted {
    pub(crate) id: Uuid,
    pub(crate) status: JobStatus,
    pub(crate) links: JobLinks,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobLinks {
    /// Where to poll for the job and its result.
    #[serde(rename = "self")]
    #[schema(example = "/results/0193aa2e-2c4b-7c3e-9f1a-6d2b9c1e4f00")]
    pub(crate) self_: String,
}

impl JobAccepted {
    fn new(id: Uuid, status: JobStatus) -> Self {
        Self { id, status, links: JobLinks { self_: location(id) } }
    }
}

fn location(id: Uuid) -> String {
    format!("/results/{id}")
}

/// The refusals of both submit routes, for the document only (each a problem document).
#[derive(utoipa::IntoResponses)]
#[expect(dead_code, reason = "describes the answers in the OpenAPI document; never built")]
enum SubmitRefusals {
    #[response(status = 400, description = "Not JSON", content_type = "application/problem+json")]
    NotJson(Problem),
    #[response(
        status = 408,
        description = "The body did not arrive within 15 s of the headers; nothing was recorded",
        content_type = "application/problem+json"
    )]
    BodyTimedOut(Problem),
    #[response(
        status = 413,
        description = "Body over 64 KiB",
        content_type = "application/problem+json"
    )]
    TooLarge(Problem),
    #[response(
        status = 415,
        description = "Content-Type is not JSON",
        content_type = "application/problem+json"
    )]
    NotJsonTyped(Problem),
    #[response(
        status = 422,
        description = "Invalid fields, each named with its rule; a job over MAX_JOB_COST; a sweep of more units than MAX_UNFINISHED_JOBS_PER_KEY; a value the database refused",
        content_type = "application/problem+json"
    )]
    Invalid(Problem),
    #[response(
        status = 503,
        description = "Queue full or Postgres unavailable. See Retry-After. Nothing was recorded, except when Postgres went away between recording the job and confirming it reached the disk, or stopped answering for 10 s while it had the job: the problem's type is then `/problems/outcome-unknown`, the job may exist and run, and a retry with the same Idempotency-Key is answered with it.",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}

/// The headers a submit reads, for the document only: the handler reads them itself
/// (`idempotency_key`, `request_id`), so that a bad one is a 422 naming it.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[expect(dead_code, reason = "describes the headers in the OpenAPI document; never built")]
struct SubmitHeaders {
    /// Replaying a submit with the same key and body within 24 h returns the same job (200);
    /// the same key with another body is refused (422).
    #[param(rename = "Idempotency-Key", value_type = Option<String>, min_length = 1, max_length = 255, pattern = "^[!-~]+$")]
    idempotency_key: Option<String>,
    /// Correlates logs and audit rows; kept when it matches `^[A-Za-z0-9._:-]{1,128}$`, else
    /// (or when absent) replaced by a generated one; always echoed.
    #[param(rename = "X-Request-Id", value_type = Option<String>)]
    request_id: Option<String>,
    /// RFC 7240. `wait=N` (seconds, at most 60, cut to `MAX_WAIT_SECS`): answer `200` with the
    /// whole job if it ends within N s (`Preference-Applied: wait=N`), else the usual `202`.
    /// Other preferences, and a `wait` that is not a whole number, are ignored.
    #[param(rename = "Prefer", value_type = Option<String>, example = "wait=10")]
    prefer: Option<String>,
}

/// Submit a simulation.
///
/// The body is checked against every rule first; a job is recorded and queued only if it
/// passes. Poll `Location` for progress and the result.
#[utoipa::path(
    tag = "simulations",
    request_body(content = SimulationRequestInput, content_type = "application/json"),
    params(SubmitHeaders),
    responses(
        (status = 202, description = "Accepted and queued (`status` is `running` when a `Prefer: wait` saw the job start and outlast it). Also the replay (`Idempotent-Replayed: true`, the whole job document) of a submit with `Prefer: wait` whose job has not ended within the wait", body = JobAccepted,
         headers(("Location" = String, description = "/results/{id}"),
                  ("Preference-Applied" = String, description = "`wait=N` when `Prefer: wait` was honoured: the submit waited N s and the job had not ended"),
                  ("Idempotent-Replayed" = String, description = "`true` on the replay of an earlier submit with the same Idempotency-Key"))),
        (status = 200, description = "The job has ended within the wait asked by `Prefer: wait=N` (RFC 7240; at most 60 s, cut to MAX_WAIT_SECS): the whole job document, with `Preference-Applied: wait=N`. Also a replay of an earlier submit with the same Idempotency-Key (`Idempotent-Replayed: true`): at once without `Prefer: wait`, with it only once the job has ended within the wait; and a request that names its `seed` and whose result is in the result cache: the job is recorded as `succeeded` at once, its `result.cache` is `hit`, and no worker runs.", body = JobView,
         headers(("Location" = String, description = "/results/{id}"),
                  ("Content-Location" = String, description = "/results/{id}: the body is the document that URL serves (RFC 9110)"),
                  ("Preference-Applied" = String, description = "`wait=N` when `Prefer: wait` was honoured"),
                  ("Idempotent-Replayed" = String, description = "`true` on the replay of an earlier submit with the same Idempotency-Key"))),
        SubmitRefusals,
    )
)]
#[post("/simulations")]
#[tracing::instrument(skip_all, fields(job_id))]
pub(crate) async fn submit(
    req: HttpRequest,
    caller: Caller,
    admission: Admission,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let wait = prefer::wait_secs(req.headers()).map(Wait::Preferred);
    accept(req, Submitter { caller, admission }, payload, state, wait).await
}

/// How long a submit waits for its job before answering.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// `Prefer: wait=N` (seconds), echoed in `Preference-Applied` as honoured.
    Preferred(u64),
    /// `/run_simulation`'s `RUN_SIMULATION_WAIT_SECS`.
    Configured(std::time::Duration),
}

/// Who submits, and whether their budget and their key let them (the budget decided while the
/// body is read; a key only remembered is checked by the job's insert, or looked up first).
struct Submitter {
    caller: Caller,
    admission: Admission,
}

/// What both submit routes do: check the body, record the job, queue it; then, when asked to,
/// wait for it to end and answer with the whole job document. Nothing is recorded, replayed,
/// served or queued before the submit is admitted against its budget, and nothing is answered
/// on a key before it is known valid.
async fn accept(
    req: HttpRequest,
    submitter: Submitter,
    payload: web::Payload,
    state: web::Data<AppState>,
    wait: Option<Wait>,
) -> Result<HttpResponse, ApiError> {
    // A wait is counted from here: the push's timeout, when Redis does not answer, comes out of
    // it rather than on top of it (RFC 7240: an answer within the N seconds asked for).
    let asked = tokio::time::Instant::now();
    let Submitter { caller, admission } = submitter;
    caller.require(Scope::Simulate)?;
    require_json(&req)?;
    let body = read_body(&req, payload, MAX_BODY_BYTES).await?;
    let limits = state.settings.request_limits();
    let submitted = match Sweep::from_json(&body, &limits) {
        Some(sweep) => Submitted::Sweep(sweep.map_err(request_error)?),
        None => {
            Submitted::Plan(SimulationRequest::from_json(&body, &limits).map_err(request_error)?)
        }
    };
    submitted.check_cost(state.settings.job_limits.max_job_cost)?;
    let idempotency = idempotency_key(&req)?;
    // The fingerprint of a submit is its normalised request before a seed is drawn (a sweep's:
    // its cells'), so the same JSON with other spacing or key order is still "the same body".
    let fingerprint = hex::encode(Sha256::digest(submitted.fingerprint().to_string()));
    if let Some(key) = &idempotency {
        admission.admitted().await?;
        admission.verified(&state).await?;
        if let Some(replay) = replay(&state, &caller, key, &fingerprint, wait).await? {
            return Ok(replay);
        }
    }

    let request = match submitted {
        Submitted::Plan(request) => request,
        Submitted::Sweep(sweep) => {
            admission.admitted().await?;
            admission.verified(&state).await?;
            let job = SweepRecord { sweep, idempotency, fingerprint, wait };
            return accept_sweep(&req, &caller, &state, job).await;
        }
    };
    let id = Uuid::now_v7();
    tracing::Span::current().record("job_id", tracing::field::display(id));
    let named_seed = request.seed().is_some();
    let seed = request.seed().unwrap_or_else(draw_seed);
    let request = request.with_seed(seed);
    let job = JobRecord {
        id,
        request_json: request.to_json(),
        seed,
        request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
        idempotency_key: idempotency.clone(),
        fingerprint: fingerprint.clone(),
        cache_key: None,
    };
    // Only a request that named its seed is a function of itself; a drawn seed is a new draw.
    let job = JobRecord {
        cache_key: (named_seed && state.result_cache.is_on()).then(|| {
            portfolio_shared::result_cache::key(portfolio_engine::ENGINE_VERSION, &job.request_json)
        }),
        ..job
    };
    // Both are asked at once (one Redis connection pipelines them), while the budget's count
    // (asked before the body was read) is still on its way: the queue's depth is only needed
    // on a miss, but it then costs no round trip of its own.
    let lookup = async {
        match &job.cache_key {
            Some(key) => state.result_cache.lookup(&state, key).await,
            None => None,
        }
    };
    let (admitted, cached, depth) = tokio::join!(admission.admitted(), lookup, queue_depth(&state));
    admitted?;
    if let Some((cached, layer)) = cached {
        admission.verified(&state).await?;
        match served_from_cache(&state, &caller, job.clone(), cached, layer, wait).await {
            Ok(answer) => return Ok(answer),
            // Two submits with one new key raced; the loser answers as a replay.
            Err(ApiError::Internal(inner))
                if idempotency.is_some() && is_unique_violation(&inner) =>
            {
                if let Some(key) = &idempotency
                    && let Some(replay) = replay(&state, &caller, key, &fingerprint, wait).await?
                {
                    return Ok(replay);
                }
                return Err(ApiError::Internal(inner));
            }
            Err(e) => return Err(e),
        }
    }

    let backlog = depth?;
    refuse_when_full(&state, backlog.waiting())?;
    // A job that will wait behind others gains nothing from a push before its flush, so its
    // commit waits for the flush and no barrier follows: one statement fewer per job while a
    // burst queues up. Only a job that may find a worker idle is pushed before its flush.
    let flush = if backlog.ready == 0 { Flush::Separately } else { Flush::WithCommit };

    let quota = state.settings.auth.max_unfinished_per_tenant;
    let insert = {
        let caller = caller.clone();
        let job = job.clone();
        state
            .write(move |conn| {
                store::insert_job(
                    conn,
                    &job.new_simulation(&caller),
                    i64::try_from(quota).unwrap_or(i64::MAX),
                    flush,
                )
            })
            .await
    };
    // The insert checked the key in the same statement (if it ran).
    if let Ok(recorded) = &insert {
        admission.key_checked(&state, *recorded != Recorded::KeyRevoked);
    }
    if let Some(replay) =
        recorded(&state, &caller, insert, &idempotency, &fingerprint, wait).await?
    {
        return Ok(replay);
    }
    tracing::info!(job_id = %id, seed, scenarios = request.n_scenarios(), "job recorded");

    let limit = wait_for(&state, wait);
    let watch = (!limit.is_zero()).then(|| state.completions.watch(id));
    let (pushed, durable) = match flush {
        Flush::WithCommit => (state.redis(state.queue.enqueue(id)).await, Ok(true)),
        // The job was committed without waiting for the disk: it is pushed at once, and a
        // worker runs it while this waits for the flush that makes the answer true.
        Flush::Separately => tokio::join!(
            state.redis(state.queue.enqueue(id)),
            state.write(move |conn| store::await_durable_job(conn, id))
        ),
    };
    if let Err(e) = pushed {
        // Recorded but not pushed: accepted all the same, since Postgres is the record; the
        // reconciler pushes queued jobs the queue does not hold.
        tracing::warn!(job_id = %id, error = ?e, "push to Redis failed; the reconciler will enqueue the job");
    }
    // Not known to be on disk: not accepted. The job may still exist and run (its commit may
    // have reached the disk before the connection broke); a retry with the same
    // Idempotency-Key finds it.
    let durable = match durable {
        Ok(true) => Ok(()),
        Ok(false) => Err(ApiError::unavailable(
            "postgres",
            anyhow::anyhow!("job {id} was lost in a Postgres restart before it reached disk"),
        )),
        // Committed, perhaps flushed: whatever kept the wait from saying, the job may run.
        Err(ApiError::Unavailable { source, .. }) => Err(ApiError::unsettled("postgres", source)),
        Err(e) => Err(e),
    };
    if let Err(e) = durable {
        if let ApiError::Unavailable { .. } = e {
            state.metrics.submits_refused.with_label_values(&["unavailable"]).inc();
        }
        return Err(e);
    }
    let mut last_seen = JobStatus::Queued;
    if let Some(watch) = watch {
        let left = limit.saturating_sub(asked.elapsed());
        match completions::until_pushed_job_ends(&state, &caller, watch, left).await {
            Ok(Some((job, result))) if job.status.is_terminal() => {
                return ended(&state, job, result, wait);
            }
            Ok(Some((job, _))) => last_seen = job.status,
            Ok(None) => {}
            Err(e) => wait_failed(id, &e),
        }
    }
    queued_answer(&state, id, wait, last_seen)
}

/// A recorded and queued job's wait failed (Postgres away meanwhile): the submit answers the
/// `202` it would have had without one. A `503` would say nothing was recorded, and a client
/// that believed it would submit the job again.
fn wait_failed(id: Uuid, error: &ApiError) {
    tracing::warn!(job_id = %id, error = %error, "the wait for the job failed; answering 202");
}

/// A submit's body, checked: one plan, or a sweep of plans.
enum Submitted {
    Plan(SimulationRequest),
    Sweep(Sweep),
}

impl Submitted {
    /// Refuses a job over `MAX_JOB_COST`; a sweep costs the sum of its cells.
    fn check_cost(&self, limit: u64) -> Result<(), ApiError> {
        match self {
            Self::Plan(request) => {
                let cost = portfolio_engine::cost(request);
                if cost.total() > limit {
                    return Err(ApiError::TooCostly { cost, limit });
                }
            }
            Self::Sweep(sweep) => {
                let total: u64 = sweep_costs(sweep).iter().sum();
                if total > limit {
                    return Err(ApiError::Validation(vec![FieldError::new(
                        "sweep",
                        format!(
                            "the sweep would cost {total} scenario-months (the sum of its {} \
                             cells); at most {limit} (MAX_JOB_COST)",
                            sweep.cells.len()
                        ),
                    )]));
                }
            }
        }
        Ok(())
    }

    /// What makes two submits "the same body": the normalised request before a seed is drawn
    /// (a sweep's cells, each so).
    fn fingerprint(&self) -> serde_json::Value {
        match self {
            Self::Plan(request) => request.to_json(),
            Self::Sweep(sweep) => sweep.fingerprint(),
        }
    }
}

fn sweep_costs(sweep: &Sweep) -> Vec<u64> {
    sweep.cells.iter().map(|c| portfolio_engine::cost(&c.request).total()).collect()
}

fn request_error(e: RequestError) -> ApiError {
    match e {
        RequestError::Malformed(m) => ApiError::Malformed(m),
        RequestError::Invalid(errors) => ApiError::Validation(errors),
    }
}

/// A checked sweep on its way to be recorded.
struct SweepRecord {
    sweep: Sweep,
    idempotency: Option<String>,
    fingerprint: String,
    wait: Option<Wait>,
}

/// The units of a sweep's work: its cells in order, cut to about `unit_cost` each, every cell
/// stored as the plain request it is (seed included).
fn units_of(sweep: &Sweep, seed: u64, unit_cost: u64) -> Vec<NewUnit> {
    portfolio_engine::sweep::units(&sweep_costs(sweep), unit_cost)
        .into_iter()
        .map(|range| {
            let cells: Vec<serde_json::Value> = sweep.cells[range]
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "index": c.index,
                        "values": c.values,
                        "request": c.request.clone().with_seed(seed).to_json(),
                    })
                })
                .collect();
            NewUnit { id: Uuid::now_v7(), request: serde_json::json!({ "cells": cells }) }
        })
        .collect()
}

/// A sweep whose units could never all hold a queue place of their owner's at once: a `422`,
/// since waiting would not let it in.
fn refuse_beyond_quota(state: &AppState, units: usize) -> Result<(), ApiError> {
    let quota = state.settings.auth.max_unfinished_per_tenant;
    if units as u64 <= quota {
        return Ok(());
    }
    Err(ApiError::validation(
        "sweep",
        format!(
            "the grid splits into {units} units of about SWEEP_UNIT_COST={} scenario-months, \
             and each holds one of the {quota} queue places one tenant may hold \
             (MAX_UNFINISHED_JOBS_PER_KEY): sweep fewer cells, or fewer scenarios or years",
            state.settings.job_limits.sweep_unit_cost,
        ),
    ))
}

/// Records a sweep and its units and queues the units; then answers as a plain submit does.
async fn accept_sweep(
    req: &HttpRequest,
    caller: &Caller,
    state: &web::Data<AppState>,
    record: SweepRecord,
) -> Result<HttpResponse, ApiError> {
    let SweepRecord { sweep, idempotency, fingerprint, wait } = record;
    let id = Uuid::now_v7();
    tracing::Span::current().record("job_id", tracing::field::display(id));
    let seed = sweep.base.seed().unwrap_or_else(draw_seed);
    let units = units_of(&sweep, seed, state.settings.job_limits.sweep_unit_cost);
    refuse_beyond_quota(state, units.len())?;
    let job = JobRecord {
        id,
        request_json: sweep.to_json(seed),
        seed,
        request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
        idempotency_key: idempotency.clone(),
        fingerprint: fingerprint.clone(),
        cache_key: None,
    };
    refuse_when_full(state, queue_depth(state).await?.waiting())?;
    let quota = state.settings.auth.max_unfinished_per_tenant;
    let cells = sweep.cells.len() as i32;
    let insert = {
        let (caller, job, units) = (caller.clone(), job.clone(), units.clone());
        state
            .write(move |conn| {
                store::insert_sweep(
                    conn,
                    &job.new_simulation(&caller),
                    cells,
                    &units,
                    i64::try_from(quota).unwrap_or(i64::MAX),
                )
            })
            .await
    };
    if let Some(replay) = recorded(state, caller, insert, &idempotency, &fingerprint, wait).await? {
        return Ok(replay);
    }
    tracing::info!(job_id = %id, seed, cells, units = units.len(), "sweep recorded");
    for unit in &units {
        if let Err(e) = state.redis(state.queue.enqueue(unit.id)).await {
            // Recorded all the same: the reconciler pushes the units the queue does not hold.
            tracing::warn!(job_id = %id, error = ?e, "push to Redis failed; the reconciler will enqueue the sweep's units");
            break;
        }
    }
    accepted(state, caller, id, wait).await
}

/// What recording a submit did, as the answer: `None` once recorded; a replay when two submits
/// with one new key raced and this one lost; else the refusal (quota, outage, a value the
/// database refused).
async fn recorded(
    state: &web::Data<AppState>,
    caller: &Caller,
    insert: Result<Recorded, ApiError>,
    idempotency: &Option<String>,
    fingerprint: &str,
    wait: Option<Wait>,
) -> Result<Option<HttpResponse>, ApiError> {
    match insert {
        Ok(Recorded::Inserted) => Ok(None),
        Ok(Recorded::KeyRevoked) => Err(ApiError::Unauthorized),
        Ok(Recorded::QuotaReached { unfinished, needed }) => {
            state.metrics.submits_refused.with_label_values(&["quota"]).inc();
            let limit = state.settings.auth.max_unfinished_per_tenant;
            Err(ApiError::QuotaReached { unfinished, needed, limit })
        }
        Err(e) => {
            // Two submits with one new key raced; the loser answers as a replay.
            if let (Some(key), ApiError::Internal(inner)) = (idempotency, &e)
                && is_unique_violation(inner)
                && let Some(replay) = replay(state, caller, key, fingerprint, wait).await?
            {
                return Ok(Some(replay));
            }
            // Only an outage counts as the service refusing work: a value the database
            // refused is the request's fault (a 422, as uncounted as the validator's), and a
            // bug shows as a 500 in the HTTP metrics.
            if let ApiError::Unavailable { .. } = e {
                state.metrics.submits_refused.with_label_values(&["unavailable"]).inc();
            }
            Err(e)
        }
    }
}

/// The answer to a recorded and queued submit: the ended job if it was asked to wait and it
/// ended in time, else `202` + `Location`.
async fn accepted(
    state: &web::Data<AppState>,
    caller: &Caller,
    id: Uuid,
    wait: Option<Wait>,
) -> Result<HttpResponse, ApiError> {
    let last_seen = match waited(state, caller, id, wait).await {
        Ok(Waited::Ended(answer)) => return Ok(answer),
        Ok(Waited::Still(status)) => status,
        Err(e) => {
            wait_failed(id, &e);
            JobStatus::Queued
        }
    };
    queued_answer(state, id, wait, last_seen)
}

/// `202` + `Location` for a job that is queued or running still (`status`, as last read: a
/// job the wait saw start is `running`).
fn queued_answer(
    state: &AppState,
    id: Uuid,
    wait: Option<Wait>,
    status: JobStatus,
) -> Result<HttpResponse, ApiError> {
    let mut accepted = HttpResponse::Accepted();
    accepted.insert_header((header::LOCATION, location(id)));
    applied(&mut accepted, state, wait);
    Ok(accepted.json(JobAccepted::new(id, status)))
}

/// What a submit records of a job, whichever way it is answered.
#[derive(Debug, Clone)]
struct JobRecord {
    id: Uuid,
    /// The normalised request, seed included.
    request_json: serde_json::Value,
    seed: u64,
    request_id: Option<String>,
    idempotency_key: Option<String>,
    fingerprint: String,
    cache_key: Option<String>,
}

impl JobRecord {
    fn new_simulation<'a>(&'a self, caller: &'a Caller) -> NewSimulation<'a> {
        NewSimulation {
            id: self.id,
            request: &self.request_json,
            seed: self.seed as i64,
            request_id: self.request_id.as_deref(),
            idempotency_key: self.idempotency_key.as_deref(),
            request_hash: Some(&self.fingerprint),
            owner: &caller.tenant,
            api_key_id: caller.key_id,
            cache_key: self.cache_key.as_deref(),
        }
    }
}

/// Records a job answered from the result cache (already `succeeded`, for its owner, with its
/// audit rows) and answers `200` with the whole job document: no worker runs, and the client
/// has its result in the submit's own answer.
async fn served_from_cache(
    state: &web::Data<AppState>,
    caller: &Caller,
    job: JobRecord,
    cached: CachedResult,
    layer: Layer,
    wait: Option<Wait>,
) -> Result<HttpResponse, ApiError> {
    let id = job.id;
    let owner = caller.clone();
    let found = state
        .write(move |conn| {
            store::insert_served_from_cache(
                conn,
                &job.new_simulation(&owner),
                &cached,
                layer.as_str(),
            )?;
            store::find_job(conn, owner.viewer(), id)
        })
        .await?;
    let (job, result) = found
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("job {id} vanished after recording")))?;
    tracing::info!(job_id = %id, layer = layer.as_str(), "job answered from the result cache");
    ended(state, job, result, wait)
}

/// `200` with the whole document of a job that has ended, as a submit answers it.
fn ended(
    state: &AppState,
    job: Simulation,
    result: Option<SimulationResultRow>,
    wait: Option<Wait>,
) -> Result<HttpResponse, ApiError> {
    let id = job.id;
    let mut response = HttpResponse::Ok();
    response
        .insert_header((header::LOCATION, location(id)))
        .insert_header((header::CONTENT_LOCATION, location(id)))
        .insert_header((header::CACHE_CONTROL, "private, no-cache"));
    applied(&mut response, state, wait);
    Ok(response.json(JobView::new(job, result)?))
}

/// The wait a submit asked for, cut to `MAX_WAIT_SECS`.
fn wait_for(state: &AppState, wait: Option<Wait>) -> std::time::Duration {
    let asked = match wait {
        None => return std::time::Duration::ZERO,
        Some(Wait::Preferred(secs)) => std::time::Duration::from_secs(secs),
        Some(Wait::Configured(wait)) => wait,
    };
    asked.min(state.settings.api.max_wait)
}

/// `Preference-Applied: wait=N` with the wait honoured, when the client sent `Prefer: wait`.
fn applied(response: &mut actix_web::HttpResponseBuilder, state: &AppState, wait: Option<Wait>) {
    if let Some(Wait::Preferred(_)) = wait {
        response.insert_header((
            prefer::PREFERENCE_APPLIED,
            format!("wait={}", wait_for(state, wait).as_secs()),
        ));
    }
}

/// Waits for job `id` as asked; `200` with the whole job document once it has ended, `None` if it has not by then (or no wait was asked for).
async fn waited(
    state: &web::Data<AppState>,
    caller: &Caller,
    id: Uuid,
    wait: Option<Wait>,
) -> Result<Waited, ApiError> {
    let limit = wait_for(state, wait);
    if limit.is_zero() {
        return Ok(Waited::Still(JobStatus::Queued));
    }
    let Some((job, result)) = completions::until_terminal(state, caller, id, limit).await? else {
        return Ok(Waited::Still(JobStatus::Queued));
    };
    if !job.status.is_terminal() {
        return Ok(Waited::Still(job.status));
    }
    ended(state, job, result, wait).map(Waited::Ended)
}

/// How a wait for a job came out.
enum Waited {
    /// It ended: the answer.
    Ended(HttpResponse),
    /// It had not: its status as last read.
    Still(JobStatus),
}

/// Submit and wait for the result, as the old app's synchronous route did.
///
/// Kept for the old app's clients, which count anything but `200` as a failure: it waits up to
/// `RUN_SIMULATION_WAIT_SECS` (default 30) and answers `200` with the whole job document once
/// the job has ended, or `202` + `Location` if it is still running then. New clients use
/// `POST /simulations` (`Prefer: wait=N` to wait) and `GET /results/{id}?wait=N`.
#[utoipa::path(
    tag = "simulations",
    params(SubmitHeaders),
    request_body(content = SimulationRequestInput, content_type = "application/json"),
    responses(
        (status = 200, description = "The job ended within RUN_SIMULATION_WAIT_SECS (default 30; or the wait of `Prefer: wait=N`): the whole job document with its result, as the old app answered. Unlike `POST /simulations`, which answers `202` at once unless asked to wait. Also an idempotent replay of a job that ended within the wait, and a seeded request answered from the result cache.", body = JobView,
         headers(("Location" = String, description = "/results/{id}"),
                  ("Content-Location" = String, description = "/results/{id}: the body is the document that URL serves (RFC 9110)"),
                  ("Preference-Applied" = String, description = "`wait=N` when `Prefer: wait` was honoured"),
                  ("Idempotent-Replayed" = String, description = "`true` on the replay of an earlier submit with the same Idempotency-Key"))),
        (status = 202, description = "Not ended when the wait did: accepted, `queued` or `running` as last seen; poll `Location` (`?wait=N` long-polls). A replay (`Idempotent-Replayed: true`) carries the whole job document", body = JobAccepted,
         headers(("Location" = String, description = "/results/{id}"),
                  ("Preference-Applied" = String, description = "`wait=N` when `Prefer: wait` was honoured"),
                  ("Idempotent-Replayed" = String, description = "`true` on the replay of an earlier submit with the same Idempotency-Key"))),
        SubmitRefusals,
    )
)]
#[post("/run_simulation")]
#[tracing::instrument(skip_all, fields(job_id))]
pub(crate) async fn run_simulation(
    req: HttpRequest,
    caller: Caller,
    admission: Admission,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let wait = prefer::wait_secs(req.headers())
        .map(Wait::Preferred)
        .unwrap_or(Wait::Configured(state.settings.api.run_simulation_wait));
    accept(req, Submitter { caller, admission }, payload, state, Some(wait)).await
}

/// Cancel a job.
///
/// A queued job is cancelled at once; a running one stops between batches (within a second);
/// a finished one cannot be cancelled. A sweep is cancelled at once, running or not: its
/// plans not yet done never run, and those running stop.
#[utoipa::path(
    tag = "simulations",
    params(("id" = Uuid, Path, description = "Job id; anything that is not a UUID is no job (404)")),
    responses(
        (status = 200, description = "Cancelled: the job was queued, or it is a sweep (cancelled at once, running or not)", body = JobAccepted),
        (status = 202, description = "Cancellation requested; the running job stops between batches (within a second), unless it ends first: a job that finishes before its worker sees the request keeps its outcome, `succeeded` included", body = JobAccepted),
        (status = 404, description = "No such job of this tenant's (or a malformed id)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already finished", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Postgres unavailable; nothing was changed, unless it stopped answering while it had the cancel (the problem's type is then `/problems/outcome-unknown`): the cancel may then still be done. See Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/simulations/{id}")]
#[tracing::instrument(skip_all, fields(job_id = %path))]
pub(crate) async fn cancel(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Simulate)?;
    let id = parse_id(&path)?;
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    let operator = caller.has(Scope::Operator);
    let outcome = state
        .write(move |conn| {
            store::cancel(conn, &caller.tenant, caller.key_id, id, request_id.as_deref())
        })
        .await?;
    match outcome {
        CancelOutcome::Cancelled { withdrawn } => {
            // Out of the queue at once, so that no figure counts it as waiting (best effort: a
            // worker's claim drops whatever is left).
            if let Err(e) = state.redis(state.queue.withdraw(&withdrawn)).await {
                tracing::debug!(job_id = %id, error = %e, "could not take the job out of the queue");
            }
            // Requests waiting on it learn at once (best effort: they re-read anyway).
            if let Err(e) = state.redis(state.queue.announce_finished(id)).await {
                tracing::debug!(job_id = %id, error = %e, "could not announce the cancel");
            }
            Ok(HttpResponse::Ok().json(JobAccepted::new(id, JobStatus::Cancelled)))
        }
        CancelOutcome::Requested => Ok(HttpResponse::Accepted()
            .insert_header((header::LOCATION, location(id)))
            .json(JobAccepted::new(id, JobStatus::Running))),
        CancelOutcome::AlreadyFinished(status) => Err(ApiError::Conflict(format!(
            "job {id} already ended as {status}; nothing to cancel"
        ))),
        // An operator reads every tenant's jobs, so "no job" would deny one it has just read.
        CancelOutcome::NotFound if operator => Err(ApiError::NotFound(format!(
            "no job {id} of this key's tenant: an operator key reads every tenant's jobs but \
             cancels only its own tenant's"
        ))),
        CancelOutcome::NotFound => Err(ApiError::NotFound(format!("no job {id}"))),
    }
}

fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    // The body is read as sent: a compressed one would only fail as "not JSON" (RFC 9110 asks
    // for a 415 for a content coding the server does not take).
    if let Some(coding) = req.headers().get(header::CONTENT_ENCODING) {
        let coding = coding.to_str().unwrap_or_default().trim().to_ascii_lowercase();
        if !coding.is_empty() && coding != "identity" {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Encoding `{coding}` is not accepted; send the JSON body uncompressed"
            )));
        }
    }
    if req.headers().get_all(header::CONTENT_TYPE).nth(1).is_some() {
        return Err(ApiError::UnsupportedMediaType(
            "Content-Type is given more than once; send one, application/json".to_owned(),
        ));
    }
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Err(ApiError::UnsupportedMediaType(
            "no Content-Type; send the request as application/json".to_owned(),
        ));
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type `{essence}` is not JSON; send application/json"
        )))
    }
}

async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    let reading = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::Malformed(format!("reading the body: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    };
    actix_web::rt::time::timeout(BODY_TIMEOUT, reading)
        .await
        .map_err(|_| ApiError::BodyTimedOut { secs: BODY_TIMEOUT.as_secs() })??;
    Ok(body)
}

/// How long a submit's body may take to arrive once its headers have (actix's own timeout
/// covers the headers only). 64 KiB in 15 s is 4.3 KB/s, slower than any client means to be.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    // Two keys: which one the job answers to would be a guess (a retry with the other would
    // record it twice).
    if req.headers().get_all(IDEMPOTENCY_HEADER).nth(1).is_some() {
        return Err(ApiError::validation(
            "Idempotency-Key",
            "is given more than once; give it once",
        ));
    }
    let Some(value) = req.headers().get(IDEMPOTENCY_HEADER) else { return Ok(None) };
    match value.to_str() {
        Ok(v) if !v.is_empty() && v.len() <= 255 && v.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(v.to_owned()))
        }
        _ => Err(ApiError::validation(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        )),
    }
}

/// The caller's earlier job of an idempotency key, if the key is still live: a 200 replay
/// when the body matches, a 422 when it does not. An expired key is released for reuse. Keys
/// are the tenant's own: another tenant's use of the same key is invisible.
async fn replay(
    state: &web::Data<AppState>,
    caller: &Caller,
    key: &str,
    fingerprint: &str,
    wait: Option<Wait>,
) -> Result<Option<HttpResponse>, ApiError> {
    let key_owned = key.to_owned();
    let owner = caller.tenant.clone();
    let existing = state
        .write(move |conn| {
            store::expire_idempotency_key(conn, &owner, &key_owned, IDEMPOTENCY_TTL)?;
            let existing = store::find_by_idempotency_key(conn, &owner, &key_owned)?;
            // The first submit may not have reached the disk yet (its own answer waits for
            // that too); a replay makes no promise the first one could not keep.
            if existing.is_some() {
                store::await_durable(conn)?;
            }
            Ok(existing)
        })
        .await?;
    let Some(job) = existing else { return Ok(None) };
    if job.request_hash.as_deref() != Some(fingerprint) {
        // The job is the caller's own, but the message still does not quote its id: a key
        // reused by mistake is best fixed by a new key, not by going to the old job.
        return Err(ApiError::validation(
            "Idempotency-Key",
            "was already used within 24 h with a different body; use a new key for a new request",
        ));
    }
    // A replay answers with the whole job document (a superset of the 202's fields), after
    // the wait the submit asked for, so a client retrying a waited submit gets its result.
    let waited_for = wait_for(state, wait);
    let Some((job, result)) =
        completions::until_terminal(state, caller, job.id, waited_for).await?
    else {
        return Ok(None);
    };
    // A waited submit (`Prefer: wait`, `/run_simulation`) answers `200` only with an ended job,
    // so its replay does too: the old app's clients read any `200` as the result.
    let mut response = if wait.is_some() && !job.status.is_terminal() {
        HttpResponse::Accepted()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::LOCATION, location(job.id)))
        .insert_header((header::CONTENT_LOCATION, location(job.id)))
        .insert_header((
            header::HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        ))
        .insert_header((header::CACHE_CONTROL, "private, no-cache"));
    // Honoured whether or not the job ended within it, as on a first submit's answer.
    applied(&mut response, state, wait);
    Ok(Some(response.json(JobView::new(job, result)?)))
}

/// The jobs waiting to start, for the queue-depth ceiling and for whether a submit may find a
/// worker idle ([`Flush`]). Counted by Redis (two O(1) reads); by Postgres when Redis cannot
/// answer, since submits are still accepted then and reconciled later.
async fn queue_depth(state: &web::Data<AppState>) -> Result<Backlog, ApiError> {
    match state.redis(state.queue.backlog()).await {
        Ok(backlog) => Ok(backlog),
        Err(e) => {
            tracing::warn!(error = ?e, "queue depth unavailable from Redis; counting in Postgres");
            // Every unfinished job counts as ready: the ceiling sees them all, and a submit
            // behind them flushes with its commit.
            let unfinished = state.read(store::count_unfinished).await? as u64;
            Ok(Backlog { ready: unfinished, scheduled: 0 })
        }
    }
}

/// Refuses new work above the queue-depth ceiling.
fn refuse_when_full(state: &AppState, waiting: u64) -> Result<(), ApiError> {
    let ceiling = state.settings.queue.depth_ceiling;
    if waiting >= ceiling {
        state.metrics.submits_refused.with_label_values(&["queue_full"]).inc();
        return Err(ApiError::QueueFull { depth: waiting, retry_after_secs: 10 });
    }
    Ok(())
}

fn is_unique_violation(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<DieselError>(),
        Some(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _))
    )
}
