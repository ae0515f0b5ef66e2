//! `GET /results/{id}` (a job, its progress and its result; with `?wait=N`, a long-poll) and `GET /results` (newest first,
//! paginated). Both read from Postgres only, so they keep working while Redis is down.

use actix_web::http::header;
use actix_web::route;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use std::time::Duration;

use chrono::{DateTime, Utc};
use portfolio_engine::SimulationResult;
use portfolio_engine::sweep::{self, Axis, CellSummary};
use portfolio_shared::settings::WAIT_LIMIT_SECS;
use portfolio_shared::store::{self, models::Simulation, models::SimulationResultRow};
use portfolio_shared::{JobKind, JobStatus};
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Caller;
use crate::auth::admission::Admission;
use crate::completions;
use crate::error::{ApiError, Problem, quoted};
use crate::state::AppState;

const DEFAULT_PAGE: i64 = 20;
const MAX_PAGE: i64 = 100;

/// A job as clients see it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobView {
    pub(crate) id: Uuid,
    pub(crate) status: JobStatus,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) started_at: Option<DateTime<Utc>>,
    pub(crate) finished_at: Option<DateTime<Utc>>,
    /// The normalised request: every default filled in, the seed included.
    #[schema(value_type = Object)]
    pub(crate) request: serde_json::Value,
    pub(crate) seed: u64,
    pub(crate) progress: Progress,
    /// Attempts started so far.
    pub(crate) attempts: i32,
    /// Why the job failed (or the last retryable error while it is retried).
    pub(crate) error: Option<String>,
    /// Present once the job has succeeded (a plain plan's; a sweep's figures are in `sweep`).
    #[schema(value_type = Option<ResultView>)]
    pub(crate) result: Option<ServedResult>,
    /// A sweep's grid, filled in as its cells are done; absent for a plain plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sweep: Option<SweepView>,
    pub(crate) links: Links,
}

/// A sweep's axes and the figures of its cells done so far.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SweepView {
    pub(crate) axes: Vec<Axis>,
    /// The plan's own value of each swept field, by field name (the current plan on the map).
    #[schema(value_type = Object)]
    pub(crate) base: serde_json::Map<String, serde_json::Value>,
    /// `{"target_success": t}` when each cell solves for the safe monthly spending.
    #[schema(value_type = Option<Object>)]
    pub(crate) solve: Option<serde_json::Value>,
    pub(crate) cells_total: i32,
    pub(crate) cells_done: i32,
    /// The cells done so far, by index (`index = i0 × len(axes[1].values) + i1`).
    pub(crate) cells: Vec<CellSummary>,
}

impl SweepView {
    /// From a sweep's stored request and its cells' stored summaries.
    fn new(job: &Simulation, cells: serde_json::Value) -> Result<Self, ApiError> {
        let unreadable = |e: String| {
            ApiError::Internal(anyhow::anyhow!("stored sweep {} unreadable: {e}", job.id))
        };
        let (base, spec) = sweep::from_stored(&job.request).map_err(unreadable)?;
        let cells: Vec<CellSummary> =
            serde_json::from_value(cells).map_err(|e| unreadable(e.to_string()))?;
        Ok(Self {
            base: sweep::base_values(&base, &spec),
            solve: base.solve_target().map(|t| serde_json::json!({ "target_success": t })),
            axes: spec.axes,
            cells_total: job.progress_total,
            cells_done: cells.len() as i32,
            cells,
        })
    }
}

/// A job's result: the engine's document, and whether it was served from the result cache.
// The schema the OpenAPI document gives answers (the line above is its description); they are
// written as `ServedResult`s, which a test holds to the same bytes.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ResultView {
    #[serde(flatten)]
    pub(crate) result: SimulationResult,
    /// `hit` when this job was answered from the result cache (an identical seeded request
    /// computed earlier, by the same engine version) instead of being run; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "hit")]
    pub(crate) cache: Option<&'static str>,
}

/// A job's result as it is answered: the document as the worker stored it, passed on as text
/// (the typed view parsed its 12 KB of numbers into a tree, then into the engine's types, and
/// wrote them out again), with `"cache": "hit"` added when it was served from the cache.
#[derive(Debug)]
pub(crate) struct ServedResult {
    document: Box<RawValue>,
    cache: Option<&'static str>,
}

impl Serialize for ServedResult {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.cache {
            None => self.document.serialize(serializer),
            Some(cache) => with_member(&self.document, "cache", cache)
                .map_err(serde::ser::Error::custom)?
                .serialize(serializer),
        }
    }
}

/// `document` (a JSON object) with the member `name: value` appended.
fn with_member(document: &RawValue, name: &str, value: &str) -> serde_json::Result<Box<RawValue>> {
    let text = document.get().trim_end();
    let body = text.strip_suffix('}').map(str::trim_end).ok_or_else(|| {
        serde::ser::Error::custom(format!("a stored result is not an object: {:.40}", text))
    })?;
    let separator = if body.ends_with('{') { "" } else { "," };
    let (name, value) = (serde_json::to_string(name)?, serde_json::to_string(value)?);
    RawValue::from_string(format!("{body}{separator}{name}:{value}}}"))
}

/// Batches done out of batches planned (a sweep's: cells). `total` is 0 until the job first
/// reports, within its first second of running (a job shorter than that reports only its
/// end): `0 / 0` means nothing is known yet, not a division to make.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Progress {
    pub(crate) done: i32,
    pub(crate) total: i32,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Links {
    #[serde(rename = "self")]
    pub(crate) self_: String,
}

impl JobView {
    pub(crate) fn new(
        job: Simulation,
        result: Option<SimulationResultRow>,
    ) -> Result<Self, ApiError> {
        // A sweep's read carries its cells' summaries where a plan's carries its result.
        let unreadable = |e: serde_json::Error| {
            ApiError::Internal(anyhow::anyhow!("stored result of {} unreadable: {e}", job.id))
        };
        let from_cache = result.as_ref().is_some_and(|r| r.from_cache);
        let document = result.map(SimulationResultRow::document).transpose().map_err(unreadable)?;
        let (result, sweep) = match job.kind {
            JobKind::Sweep => {
                let cells = match document {
                    Some(cells) => serde_json::from_str(cells.get()).map_err(unreadable)?,
                    None => serde_json::Value::Array(Vec::new()),
                };
                (None, Some(SweepView::new(&job, cells)?))
            }
            _ => {
                let cache = from_cache.then_some("hit");
                (document.map(|document| ServedResult { document, cache }), None)
            }
        };
        Ok(Self {
            id: job.id,
            status: job.status,
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            request: job.request,
            seed: job.seed as u64,
            progress: Progress { done: job.progress_done, total: job.progress_total },
            attempts: job.attempts,
            error: job.error,
            result,
            sweep,
            links: Links { self_: format!("/results/{}", job.id) },
        })
    }
}

/// A job id from the path; anything that is not a UUID is simply not a job (404).
///
/// Only the hyphenated form names a job (in either case, as RFC 9562 reads it): the `uuid`
/// crate also takes the simple, braced and `urn:uuid:` spellings, which would give one job
/// several addresses, each cached apart from the one its `Location` and links give.
pub(crate) fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    hyphenated(raw)
        .ok_or_else(|| ApiError::NotFound(format!("no job {}: job ids are UUIDs", quoted(raw))))
}

/// `raw` as a UUID when it is written in the hyphenated form (8-4-4-4-12 hex digits): of the
/// spellings `uuid` parses, that is the only one 36 characters long.
pub(crate) fn hyphenated(raw: &str) -> Option<Uuid> {
    (raw.len() == 36).then(|| Uuid::try_parse(raw).ok()).flatten()
}

/// The query of `GET /results/{id}`. Read as text and parsed by the handler, so a bad value is
/// a 422 naming it; the document states its real type.
#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobQuery {
    /// Long-poll: answer as soon as the job has ended, or after this many seconds, whichever
    /// comes first (`MAX_WAIT_SECS` may cut it shorter). Without it the answer is immediate.
    #[param(value_type = Option<u64>, minimum = 0, maximum = 60)]
    pub(crate) wait: Option<String>,
}

/// A job, its progress, and its result once it has one.
///
/// With `?wait=N` the answer waits until the job has ended (succeeded, failed or cancelled) or
/// N seconds have passed: a client learns of the result the moment it is stored, without
/// polling.
#[utoipa::path(
    get,
    tag = "results",
    params(("id" = Uuid, Path, description = "Job id; anything that is not a UUID is no job (404)"), JobQuery),
    responses(
        (status = 200, description = "The job. While it is not finished, `Retry-After` says when to poll again and `Cache-Control: private, no-store`; once it has ended, the document never changes: an `ETag` and `Cache-Control: private, max-age=86400, immutable`.", body = JobView,
         headers(("ETag" = String, description = "Once the job has ended"),
                 ("Cache-Control" = String, description = "`private, no-store` while the job has not ended; `private, max-age=86400, immutable` once it has"),
                 ("Retry-After" = String, description = "While the job has not ended: seconds until a poll is worth making"))),
        (status = 304, description = "The job has ended and `If-None-Match` names its current `ETag`"),
        (status = 404, description = "Unknown or malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad `wait`, or a query parameter the route does not take", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Postgres unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[route("/results/{id}", method = "GET", method = "HEAD")]
#[tracing::instrument(skip_all, fields(job_id = %path))]
pub(crate) async fn get(
    req: HttpRequest,
    path: web::Path<String>,
    caller: Caller,
    admission: Admission,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require_reader()?;
    let query = crate::query::parse::<JobQuery>(&req)?;
    let wait = match query.wait.as_deref() {
        None => None,
        Some(raw) => match raw.parse::<u64>() {
            Ok(n) if n <= WAIT_LIMIT_SECS => Some(Duration::from_secs(n)),
            _ => {
                return Err(ApiError::validation(
                    "wait",
                    format!("must be a whole number of seconds from 0 to {WAIT_LIMIT_SECS}"),
                ));
            }
        },
    };
    let id = parse_id(&path)?;
    let found = match wait {
        Some(wait) => {
            let wait = wait.min(state.settings.api.max_wait);
            completions::until_news(&state, &caller, &admission, id, wait).await?
        }
        // Without a replica every read is the primary's, where a remembered key is checked by
        // the read itself (auth/lookup.rs).
        None if !state.reads_from_replica() => {
            completions::read_on_primary(&state, &caller, Some(&admission), id).await?
        }
        None => find_fresh(&state, caller, id).await?,
    };
    let Some((job, result)) = found else {
        return Err(ApiError::NotFound(format!("no job {id}")));
    };
    let view = JobView::new(job, result)?;
    if !view.status.is_terminal() {
        let mut response = HttpResponse::Ok();
        response.insert_header((header::CACHE_CONTROL, "private, no-store"));
        if let Some(retry_after) = retry_after(view.status) {
            response.insert_header((header::RETRY_AFTER, retry_after));
        }
        return Ok(response.json(view));
    }
    // An ended job's document never changes again: a validator and a freshness lifetime let
    // a client (and the tenant's browser) keep it; a shared cache never does (`private`).
    let body = serde_json::to_vec(&view)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("serialising job {id}: {e}")))?;
    let etag = header::EntityTag::new_strong(hex::encode(&Sha256::digest(&body)[..16]));
    let unchanged = not_modified(&req, &etag);
    let mut response = if unchanged { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response
        .insert_header(header::ETag(etag))
        .insert_header((header::CACHE_CONTROL, TERMINAL_CACHE_CONTROL));
    if unchanged {
        return Ok(response.finish());
    }
    Ok(response.content_type(header::ContentType::json()).body(body))
}

/// `Cache-Control` of an ended job's document: it is immutable, and the tenant's alone.
pub(crate) const TERMINAL_CACHE_CONTROL: &str = "private, max-age=86400, immutable";

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 asks for it).
fn not_modified(req: &HttpRequest, etag: &header::EntityTag) -> bool {
    match req.get_header::<header::IfNoneMatch>() {
        Some(header::IfNoneMatch::Any) => true,
        Some(header::IfNoneMatch::Items(tags)) => tags.iter().any(|t| t.weak_eq(etag)),
        None => false,
    }
}

/// A job as the read pool has it, re-read from the primary when a replica may lag behind:
/// when the replica does not have it yet (a client polling right after its `202`) or has it
/// unfinished. Read-your-writes for every client, whatever the replica's lag; a finished job
/// never changes, so a replica's copy of it is as good as the primary's.
pub(crate) async fn find_fresh(
    state: &AppState,
    caller: Caller,
    id: Uuid,
) -> Result<Option<completions::JobRead>, ApiError> {
    let again = caller.clone();
    let found = state.read(move |conn| store::find_job(conn, caller.viewer(), id)).await?;
    let settled = found.as_ref().is_some_and(|(job, _)| job.status.is_terminal());
    if settled || !state.reads_from_replica() {
        return Ok(found);
    }
    state.read_primary(move |conn| store::find_job(conn, again.viewer(), id)).await
}

/// When to look again at a job that has not ended (seconds), for `Retry-After`.
pub(crate) fn retry_after(status: JobStatus) -> Option<&'static str> {
    match status {
        JobStatus::Queued => Some("2"),
        JobStatus::Running => Some("1"),
        _ => None,
    }
}

/// The query of a listing. Both are read as text and parsed by the handler, so a bad value is
/// a 422 naming the parameter; the document states their real types.
#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Page size (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub(crate) limit: Option<String>,
    /// A job id: list jobs created before it (the `next` link of the previous page).
    #[param(value_type = Option<String>, format = Uuid)]
    pub(crate) before: Option<String>,
}

/// One job in a listing.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobSummary {
    pub(crate) id: Uuid,
    pub(crate) status: JobStatus,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) success_probability: Option<f64>,
    pub(crate) links: Links,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobList {
    pub(crate) items: Vec<JobSummary>,
    /// The next page, or `null` on the last one.
    pub(crate) next: Option<String>,
}

/// Jobs, newest first.
#[utoipa::path(
    get,
    tag = "results",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobList),
        (status = 422, description = "Bad `limit` or `before`, or a query parameter the route does not take", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Postgres unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[route("/results", method = "GET", method = "HEAD")]
#[tracing::instrument(skip_all)]
pub(crate) async fn list(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require_reader()?;
    let query = crate::query::parse::<ListQuery>(&req)?;
    // An empty value (`?limit=`) is not a number, so it is refused like any other: the
    // document says `integer`, and a client that means "the default" leaves it out.
    let limit = match query.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::validation(
                    "limit",
                    format!("must be an integer from 1 to {MAX_PAGE}"),
                ));
            }
        },
    };
    let before = match query.before.as_deref() {
        None => None,
        Some(raw) => Some(
            hyphenated(raw)
                .ok_or_else(|| ApiError::validation("before", "must be a job id (UUID)"))?,
        ),
    };
    // One row more than the page, so a full last page says it is the last (`next: null`).
    let mut rows =
        state.read(move |conn| store::list_jobs(conn, caller.viewer(), limit + 1, before)).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = more
        .then(|| rows.last().map(|r| format!("/results?limit={limit}&before={}", r.id)))
        .flatten();
    let items = rows
        .into_iter()
        .map(|r| JobSummary {
            id: r.id,
            status: r.status,
            created_at: r.created_at,
            success_probability: r.success_probability,
            links: Links { self_: format!("/results/{}", r.id) },
        })
        .collect();
    Ok(HttpResponse::Ok().json(JobList { items, next }))
}

/// A sweep's view as `caller` may read it: 404 for no such job, 409 for a job that is no sweep.
pub(crate) async fn find_sweep(
    state: &AppState,
    caller: Caller,
    raw_id: &str,
) -> Result<(JobStatus, SweepView), ApiError> {
    caller.require_reader()?;
    let id = parse_id(raw_id)?;
    let Some((job, result)) = find_fresh(state, caller, id).await? else {
        return Err(ApiError::NotFound(format!("no job {id}")));
    };
    let status = job.status;
    match JobView::new(job, result)?.sweep {
        Some(view) => Ok((status, view)),
        None => Err(ApiError::Conflict(format!("job {id} is a single plan, not a sweep"))),
    }
}

/// One cell of a sweep, as a plain job's request and result.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CellView {
    pub(crate) index: u32,
    /// The value of each axis, in axis order.
    pub(crate) values: Vec<f64>,
    /// The plain request the cell is, seed included: a plain submit of it gives this result.
    #[schema(value_type = Object)]
    pub(crate) request: serde_json::Value,
    pub(crate) result: SimulationResult,
}

/// Cell `index` of a sweep: 404 for no such job or cell, 409 for a job that is no sweep or while
/// the cell is not done.
pub(crate) async fn find_cell(
    state: &AppState,
    caller: Caller,
    raw_id: &str,
    index: u32,
) -> Result<CellView, ApiError> {
    caller.require_reader()?;
    let id = parse_id(raw_id)?;
    let at = i32::try_from(index).unwrap_or(i32::MAX);
    // From the primary: a replica may not have the cell the map already shows.
    let found =
        state.read_primary(move |conn| store::find_cell(conn, caller.viewer(), id, at)).await?;
    let Some((job, cell)) = found else {
        return Err(ApiError::NotFound(format!("no job {id}")));
    };
    if job.kind != JobKind::Sweep {
        return Err(ApiError::Conflict(format!("job {id} is a single plan, not a sweep")));
    }
    if index >= job.progress_total as u32 {
        return Err(ApiError::NotFound(format!(
            "sweep {id} has {} cells: no cell {index}",
            job.progress_total
        )));
    }
    let Some(cell) = cell else {
        return Err(ApiError::Conflict(format!(
            "cell {index} of sweep {id} is not done (the sweep is {})",
            job.status
        )));
    };
    let unreadable = |e: serde_json::Error| {
        ApiError::Internal(anyhow::anyhow!("stored cell {index} of {id}: {e}"))
    };
    let summary: CellSummary = serde_json::from_value(cell.summary).map_err(unreadable)?;
    Ok(CellView {
        index,
        values: summary.values,
        request: cell.request,
        result: serde_json::from_value(cell.result).map_err(unreadable)?,
    })
}

#[cfg(test)]
mod tests {
    use portfolio_engine::{RequestLimits, RunOptions, SimulationRequest};

    use super::*;

    /// Real results, as the worker stores them: a solved plan (which adds `solve`) and a
    /// historical one (which adds `historical` and leaves the standard error `null`).
    fn stored(body: &str) -> (SimulationResult, Box<RawValue>) {
        let request = SimulationRequest::from_json(body.as_bytes(), &RequestLimits::default())
            .expect("a valid request");
        let result = portfolio_engine::run(&request, 11, &RunOptions::default()).expect("a result");
        let document = serde_json::value::to_raw_value(&result).expect("serialises");
        (result, document)
    }

    #[test]
    fn a_served_result_writes_the_bytes_its_typed_view_would() {
        let plans = [
            r#"{"starting_portfolio": 900000, "monthly_spending": 3500, "years": 25, "n_scenarios": 300, "solve": {"target_success": 0.9}}"#,
            r#"{"starting_portfolio": 1000000, "monthly_spending": 4000, "years": 30, "return_model": {"kind": "historical"}}"#,
        ];
        for body in plans {
            let (result, document) = stored(body);
            for cache in [None, Some("hit")] {
                let typed = ResultView { result: result.clone(), cache };
                let served = ServedResult { document: document.clone(), cache };
                assert_eq!(
                    serde_json::to_string(&served).unwrap(),
                    serde_json::to_string(&typed).unwrap(),
                    "{body} with cache {cache:?}"
                );
            }
        }
    }

    #[test]
    fn a_member_is_appended_to_any_object_and_refused_for_anything_else() {
        let with = |text: &str| {
            with_member(&RawValue::from_string(text.to_owned()).unwrap(), "cache", "hit")
                .map(|raw| raw.get().to_owned())
        };
        assert_eq!(with("{}").unwrap(), r#"{"cache":"hit"}"#);
        assert_eq!(with("{ \"a\": [1, {}] }\n").unwrap(), r#"{ "a": [1, {}],"cache":"hit"}"#);
        assert!(with("[1, 2]").is_err());
        assert!(with("\"}\"").is_err());
    }
}
