//! `GET /metrics`: the Prometheus scrape of the API's metrics (`crate::metrics`), as text. Queue
//! depth and pool gauges are refreshed at scrape time.

use actix_web::route;
use actix_web::{HttpResponse, web};

use crate::state::AppState;

/// Prometheus metrics.
#[utoipa::path(get, tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
#[route("/metrics", method = "GET", method = "HEAD")]
#[tracing::instrument(skip_all)]
pub(crate) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    match state.redis(state.queue.depth()).await {
        Ok(depth) => state.metrics.record_depth(&depth),
        Err(e) => tracing::warn!(error = ?e, "queue depth unavailable for /metrics"),
    }
    state.metrics.record_pool(&state.write_pool);
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}
