//! The API's metrics listener (`METRICS_BIND`, as the worker has one): `GET /metrics`, the
//! Prometheus scrape of `crate::metrics` as text, off the public port so that only what can
//! reach the listener (Prometheus, the platform) sees it. Queue depth and pool gauges are
//! refreshed at scrape time.

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};

use crate::state::AppState;

/// Binds `bind` and prepares the listener (it serves once awaited). Binding fails loudly: an
/// API that cannot be scraped should not pretend to be fine.
pub(crate) fn serve(bind: SocketAddr, state: web::Data<AppState>) -> anyhow::Result<(u16, Server)> {
    let listener =
        TcpListener::bind(bind).map_err(|e| anyhow::anyhow!("binding METRICS_BIND={bind}: {e}"))?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || {
        App::new().app_data(state.clone()).route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok((port, server))
}

/// Prometheus metrics.
#[tracing::instrument(skip_all)]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    match state.redis(state.queue.depth()).await {
        Ok(depth) => state.metrics.record_depth(&depth),
        Err(e) => {
            tracing::warn!(error = ?e, "queue depth unavailable for /metrics");
            state.metrics.record_depth_unknown();
        }
    }
    state.metrics.record_pool(&state.write_pool);
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}
