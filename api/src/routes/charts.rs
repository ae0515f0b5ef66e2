//! `GET /results/{id}/charts/{fan,depletion,terminal,spending}.svg`: a result's charts, and
//! `GET /queue/charts/depth.svg`: the queue's sampled depth. SVG documents drawn on the server
//! (see `crate::charts`), which the pages inline and anyone can open or embed.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use portfolio_shared::domain::{JobStatus, SimulationResult};
use portfolio_shared::store::{self, stats};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::charts::{self, ChartError};
use crate::error::{ApiError, Problem};
use crate::routes::results::parse_id;
use crate::state::AppState;

pub const SVG: &str = "image/svg+xml";
/// A succeeded job's result never changes, so its charts can be cached; an hour bounds how long
/// a browser keeps a chart drawn by an older release.
const RESULT_CHART_CACHE: &str = "public, max-age=3600";

/// The result of a succeeded job; 404 for an unknown job, 409 for one without a result.
pub async fn succeeded_result(
    state: &AppState,
    raw_id: &str,
) -> Result<(Uuid, SimulationResult), ApiError> {
    let id = parse_id(raw_id)?;
    let Some((job, result)) = state.read(move |conn| store::find_job(conn, id)).await? else {
        return Err(ApiError::NotFound(format!("no job {id}")));
    };
    let status: JobStatus =
        job.status.parse().map_err(|e: String| ApiError::Internal(anyhow::anyhow!(e)))?;
    let Some(row) = result.filter(|_| status == JobStatus::Succeeded) else {
        return Err(ApiError::Conflict(format!(
            "job {id} is {status}: charts and tables exist once it has succeeded"
        )));
    };
    let result = serde_json::from_value(row.result).map_err(|e| {
        ApiError::Internal(anyhow::anyhow!("stored result of {id} unreadable: {e}"))
    })?;
    Ok((id, result))
}

fn svg(drawn: Result<String, ChartError>, cache: &str) -> Result<HttpResponse, ApiError> {
    let body = drawn.map_err(|e| ApiError::Internal(e.into()))?;
    Ok(HttpResponse::Ok()
        .content_type(SVG)
        .insert_header((header::CACHE_CONTROL, cache))
        .body(body))
}

async fn result_chart(
    state: web::Data<AppState>,
    id: web::Path<String>,
    draw: fn(&SimulationResult) -> Result<String, ChartError>,
) -> Result<HttpResponse, ApiError> {
    let (_, result) = succeeded_result(&state, &id).await?;
    svg(draw(&result), RESULT_CHART_CACHE)
}

/// Real wealth by year: p5–p95, p10–p90 and p25–p75 bands and the median.
#[utoipa::path(
    get,
    path = "/results/{id}/charts/fan.svg",
    tag = "charts",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "SVG with a `<title>` and `<desc>`", content_type = "image/svg+xml", body = String),
        (status = 404, description = "Unknown or malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job has not succeeded (yet)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn fan(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    result_chart(state, id, charts::results::fan).await
}

/// The cumulative share of scenarios depleted by each year.
#[utoipa::path(
    get,
    path = "/results/{id}/charts/depletion.svg",
    tag = "charts",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "SVG with a `<title>` and `<desc>`", content_type = "image/svg+xml", body = String),
        (status = 404, description = "Unknown or malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job has not succeeded (yet)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn depletion(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    result_chart(state, id, charts::results::depletion).await
}

/// Scenarios by real terminal wealth: depleted, 40 bins up to the 99th percentile, above it.
#[utoipa::path(
    get,
    path = "/results/{id}/charts/terminal.svg",
    tag = "charts",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "SVG with a `<title>` and `<desc>`", content_type = "image/svg+xml", body = String),
        (status = 404, description = "Unknown or malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job has not succeeded (yet)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn terminal(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    result_chart(state, id, charts::results::terminal).await
}

/// Real spending by year (bands and median): what the variable strategies pay out.
#[utoipa::path(
    get,
    path = "/results/{id}/charts/spending.svg",
    tag = "charts",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "SVG with a `<title>` and `<desc>`", content_type = "image/svg+xml", body = String),
        (status = 404, description = "Unknown or malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job has not succeeded (yet)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn spending(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    result_chart(state, id, charts::results::spending).await
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DepthQuery {
    /// Minutes of history, 5..=1440 (samples are kept 24 h). Default 60.
    pub minutes: Option<String>,
}

/// Jobs in the queue by state over the last hour (or `minutes`), sampled every ~10 s.
#[utoipa::path(
    get,
    path = "/queue/charts/depth.svg",
    tag = "charts",
    params(DepthQuery),
    responses(
        (status = 200, description = "SVG with a `<title>` and `<desc>`", content_type = "image/svg+xml", body = String),
        (status = 422, description = "Bad `minutes`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Postgres unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn queue_depth(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = web::Query::<DepthQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::validation("query", e.to_string()))?;
    let minutes = match query.minutes.as_deref() {
        None | Some("") => 60,
        Some(raw) => {
            raw.parse::<u32>().ok().filter(|m| (5..=1440).contains(m)).ok_or_else(|| {
                ApiError::validation("minutes", "must be an integer from 5 to 1440")
            })?
        }
    };
    let now = Utc::now();
    let since = now - chrono::Duration::minutes(i64::from(minutes));
    let samples = state.read(move |conn| stats::samples_since(conn, since)).await?;
    svg(charts::queue::depth(&samples, now, minutes), "no-cache")
}
