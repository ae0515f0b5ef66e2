//! `GET /openapi.json`: the OpenAPI 3 document, generated from the handlers' annotations.

use actix_web::HttpResponse;
use utoipa::OpenApi;

use crate::error::Problem;
use crate::routes::{charts, exports, health, metrics, pages, queue_stats, results, simulations};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "portfolio-mc",
        description = "Retirement-portfolio Monte Carlo simulations as a job queue: submit a \
                       request, poll its result. Errors are RFC 9457 problem documents."
    ),
    paths(
        simulations::submit,
        simulations::run_simulation,
        simulations::cancel,
        results::get,
        results::list,
        exports::table_csv,
        charts::result_chart,
        charts::queue_depth,
        queue_stats::queue_stats,
        pages::index,
        pages::dashboard,
        pages::asset,
        health::health,
        health::ready,
        metrics::metrics,
        openapi_json,
    ),
    components(schemas(Problem, portfolio_engine::FieldError)),
    tags(
        (name = "simulations", description = "Submit and cancel jobs"),
        (name = "results", description = "Jobs, progress and results"),
        (name = "charts", description = "Charts of a result and of the queue, as SVG"),
        (name = "operations", description = "Health, readiness, metrics, queue statistics"),
        (name = "web", description = "The web frontend and the operators' dashboard"),
    )
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
