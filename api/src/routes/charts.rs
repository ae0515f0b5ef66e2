//! `GET /results/{id}/charts/{fan,depletion,terminal,spending}.svg`: a result's charts, and
//! `GET /queue/charts/depth.svg`: the queue's sampled depth. SVG documents drawn on the server
//! (see `crate::draw`), which the pages inline and anyone can open or embed.

use actix_web::http::header;
use actix_web::route;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use portfolio_engine::SimulationResult;
use portfolio_shared::store::stats;
use portfolio_shared::{JobKind, JobStatus};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Caller, Scope};
use crate::draw::{self, ChartError};
use crate::error::{ApiError, Problem, quoted};
use crate::routes::results::parse_id;
use crate::state::AppState;

pub(crate) const SVG: &str = "image/svg+xml";
/// A succeeded job's result never changes, so its charts can be cached; an hour bounds how long
/// a browser keeps a chart drawn by an older release. Private: a tenant's chart is for that
/// tenant's browser, never a shared cache.
pub(crate) const RESULT_CACHE: &str = "private, max-age=3600";

/// The result of a succeeded plan; 404 for an unknown job, 409 for one without a result or a
/// sweep (whose charts and tables are its map, its CSV and its cells').
pub(crate) async fn succeeded_result(
    state: &AppState,
    caller: Caller,
    raw_id: &str,
) -> Result<(Uuid, SimulationResult), ApiError> {
    caller.require_reader()?;
    let id = parse_id(raw_id)?;
    let found = crate::routes::results::find_fresh(state, caller, id).await?;
    let Some((job, result)) = found else {
        return Err(ApiError::NotFound(format!("no job {id}")));
    };
    if job.kind == JobKind::Sweep {
        return Err(ApiError::Conflict(format!(
            "job {id} is a sweep: its charts are heatmap.svg and each cell's \
             (cells/{{index}}/charts/fan.svg), its table sweep.csv"
        )));
    }
    let status = job.status;
    let Some(row) = result.filter(|_| status == JobStatus::Succeeded) else {
        return Err(ApiError::Conflict(format!(
            "job {id} is {status}: charts and tables exist once it has succeeded"
        )));
    };
    let result = row.document().and_then(|d| serde_json::from_str(d.get())).map_err(|e| {
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

/// The charts of a result.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ResultChart {
    /// Real wealth by year: p5–p95, p10–p90 and p25–p75 bands and the median.
    Fan,
    /// The cumulative share of scenarios depleted by each year.
    Depletion,
    /// Scenarios by real terminal wealth: depleted, 40 bins up to the 99th percentile, above.
    Terminal,
    /// Real spending by year (bands and median): what the variable strategies pay out.
    Spending,
}

impl ResultChart {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "fan" => Self::Fan,
            "depletion" => Self::Depletion,
            "terminal" => Self::Terminal,
            "spending" => Self::Spending,
            _ => return None,
        })
    }

    fn draw(self, result: &SimulationResult) -> Result<String, ChartError> {
        match self {
            Self::Fan => draw::results::fan(result),
            Self::Depletion => draw::results::depletion(result),
            Self::Terminal => draw::results::terminal(result),
            Self::Spending => draw::results::spending(result),
        }
    }
}

/// One chart of a succeeded job: `fan.svg`, `depletion.svg`, `terminal.svg` or `spending.svg`.
#[utoipa::path(
    get,
    tag = "charts",
    params(
        ("id" = Uuid, Path, description = "Job id; anything that is not a UUID is no job (404)"),
        ("chart" = ResultChart, Path, description = "Which chart"),
    ),
    responses(
        (status = 200, description = "SVG with a `<title>` and `<desc>`", content_type = "image/svg+xml", body = String),
        (status = 404, description = "Unknown or malformed id, or no such chart", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job has not succeeded (yet), or is a sweep", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Postgres unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[route("/results/{id}/charts/{chart}.svg", method = "GET", method = "HEAD")]
#[tracing::instrument(skip_all, fields(job_id = %path.0, chart = %path.1))]
pub(crate) async fn result_chart(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, name) = path.into_inner();
    let chart = ResultChart::from_name(&name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no chart {}: fan.svg, depletion.svg, terminal.svg or spending.svg",
            quoted(&format!("{name}.svg"))
        ))
    })?;
    let (_, result) = succeeded_result(&state, caller, &id).await?;
    svg(chart.draw(&result), RESULT_CACHE)
}

/// Read as text and parsed by the handler, so a bad value is a 422 naming it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DepthQuery {
    /// Minutes of history (samples are kept 24 h). Default 60.
    #[param(value_type = Option<u32>, minimum = 5, maximum = 1440)]
    pub(crate) minutes: Option<String>,
}

/// Jobs in the queue by state over the last hour (or `minutes`), sampled every ~10 s.
#[utoipa::path(
    get,
    tag = "charts",
    params(DepthQuery),
    responses(
        (status = 200, description = "SVG with a `<title>` and `<desc>`", content_type = "image/svg+xml", body = String),
        (status = 422, description = "Bad `minutes`, or a query parameter the route does not take", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Postgres unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[route("/queue/charts/depth.svg", method = "GET", method = "HEAD")]
#[tracing::instrument(skip_all)]
pub(crate) async fn queue_depth(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Operator)?;
    let query = crate::query::parse::<DepthQuery>(&req)?;
    let minutes = match query.minutes.as_deref() {
        None => 60,
        Some(raw) => {
            raw.parse::<u32>().ok().filter(|m| (5..=1440).contains(m)).ok_or_else(|| {
                ApiError::validation("minutes", "must be an integer from 5 to 1440")
            })?
        }
    };
    let now = Utc::now();
    let since = now - chrono::Duration::minutes(i64::from(minutes));
    let samples = state.read(move |conn| stats::samples_since(conn, since)).await?;
    svg(draw::queue::depth(&samples, now, minutes), "private, no-cache")
}
