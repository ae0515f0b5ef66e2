//! `GET /openapi.json`: the OpenAPI 3 document. Its paths are collected from the handlers as
//! they are registered (`routes::mount`); this module adds what no handler carries (title,
//! tags, shared schemas) and the request body's rules under this deployment's limits.

use actix_web::{HttpResponse, route, web};
use portfolio_engine::request::{RequestLimits, request_schema};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};

use crate::error::Problem;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "portfolio-mc",
        description = "Retirement-portfolio Monte Carlo simulations as a job queue: submit a \
                       request, poll its result. Errors are RFC 9457 problem documents."
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
pub(crate) struct ApiDoc;

/// The request body's schema, generated from the engine's rules with this deployment's cap on
/// `n_scenarios`.
pub(crate) struct RequestRules(pub(crate) RequestLimits);

impl Modify for RequestRules {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .schemas
            .insert("SimulationRequestInput".to_owned(), request_schema(&self.0).into());
    }
}

/// The finished document, as `/openapi.json` serves it.
pub(crate) struct Served(pub(crate) Document);

/// This document.
#[utoipa::path(get, tag = "operations",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json")))]
#[route("/openapi.json", method = "GET", method = "HEAD")]
#[tracing::instrument(skip_all)]
pub(crate) async fn openapi_json(document: web::Data<Served>) -> HttpResponse {
    HttpResponse::Ok().json(&document.0)
}
