//! Builds the application from settings: pools, queue, state, middleware, routes, the leader's
//! background loop, the queue-depth sampler, the subscriber that wakes requests waiting for a
//! job, the HTTP server bound to `API_BIND` (port 0 in
//! tests) and the metrics listener on `METRICS_BIND`; and serves them, which is all
//! `portfolio-api serve` does.

use std::net::TcpListener;
use std::sync::Arc;

use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::middleware::{Condition, from_fn};
use actix_web::{App, HttpServer, http, web};
use anyhow::Context;
use portfolio_shared::db;
use portfolio_shared::queue::{self, Keys, Queue};
use portfolio_shared::rate_limit::RateLimiter;
use portfolio_shared::settings::{AuthMode, ExposeSecret, Settings};
use portfolio_shared::state_holders::{Holders, LET_GO_WITHIN};
use tracing_actix_web::TracingLogger;

use crate::auth::{self, key::PresentedKey};
use crate::metrics::Metrics;
use crate::request_id::{self, RequestIdRootSpan};
use crate::state::{self, AppState};
use crate::{background, completions, routes, sampler};

/// How long an idle client connection stays open (actix's default is 5 s). Above the idle
/// timeouts of what fronts the API: the ALB's 75 s (ecs/README.md), nginx's upstream 60 s.
pub(crate) const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(90);

/// Serves the API until SIGTERM or SIGINT (`portfolio-api serve`), on a runtime of its own.
pub fn serve(settings: Settings) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async move {
        let app = Application::build(settings)?;
        tracing::info!(
            port = app.port(),
            metrics_port = app.metrics_port(),
            "portfolio-api listening"
        );
        app.run_until_stopped().await
    })
}

pub struct Application {
    port: u16,
    server: Server,
    metrics_port: u16,
    metrics_server: Server,
    state: web::Data<AppState>,
    bootstrap_key: Option<PresentedKey>,
    holders: Holders,
}

impl Application {
    /// Binds and prepares the server (call inside a Tokio runtime); nothing is served until
    /// [`Application::run_until_stopped`].
    pub fn build(settings: Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.api.bind)
            .with_context(|| format!("binding API_BIND={}", settings.api.bind))?;
        let port = listener.local_addr()?.port();
        let database = &settings.database;
        let pool = |url: &str| {
            db::pool_with_statement_timeout(url, &database.api_pool, state::STATEMENT_TIMEOUT)
        };
        let write_pool = pool(database.url.expose_secret());
        // A read URL that is the primary's own gets the primary's pool: a second pool would
        // hold twice the connections of the budget in docs/operations.md for nothing.
        let read_pool = match &database.read_url {
            Some(url) if database.has_separate_replica() => pool(url.expose_secret()),
            _ => write_pool.clone(),
        };
        let conn = queue::connect(&settings.queue).context("REDIS_URL")?;
        let queue = Queue::new(conn.clone(), &settings.queue, &settings.worker);
        let rate_limiter = RateLimiter::new(conn, Keys::new(queue.namespace()));
        let shutdown_grace = settings.api.shutdown_grace;
        let (holders, holder) = Holders::new();
        let state = web::Data::new(AppState::new(
            write_pool,
            read_pool,
            queue,
            rate_limiter,
            settings,
            Arc::new(Metrics::new()),
            holder,
        ));
        let bootstrap_key = auth::bootstrap::configured(&state)?;
        if state.settings.auth.mode == AuthMode::Disabled {
            tracing::warn!(
                "AUTH_MODE=disabled: no API key is asked for; every request acts as the one \
                 tenant `local` with both scopes (an operator: it reads every tenant's jobs). \
                 Never expose this API beyond your own machine."
            );
        }
        let (metrics_port, metrics_server) =
            routes::scrape::serve(state.settings.api.metrics_bind, state.clone())?;
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            let origins = &app_state.settings.api.cors_allowed_origins;
            let app = App::new()
                .wrap(from_fn(auth::guard::guard))
                .wrap(Condition::new(!origins.is_empty(), cors(origins)))
                .wrap(from_fn(crate::error::problem_for_bare_errors))
                .wrap(from_fn(crate::metrics::track))
                .wrap(TracingLogger::<RequestIdRootSpan>::new())
                .wrap(from_fn(crate::headers::secure))
                .wrap(from_fn(request_id::assign))
                .app_data(web::Data::new(app_state.for_server_thread()));
            let limits = app_state.settings.request_limits();
            routes::mount(app, limits)
        })
        .listen(listener)?
        // Longer than any load balancer's idle timeout in front (the ALB's is set to 75 s):
        // one that reuses a connection the API has just closed answers its client 502.
        .keep_alive(KEEP_ALIVE)
        // In-flight requests drain on SIGTERM within the API's own grace, which fits inside
        // every orchestrator's budget (tests/it/deploy_files checks each).
        .shutdown_timeout(shutdown_grace.as_secs())
        .run();
        Ok(Self { port, server, metrics_port, metrics_server, state, bootstrap_key, holders })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the metrics listener (`METRICS_BIND`).
    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    /// Stops the HTTP server the way SIGTERM does (tests stop an API in their own process).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// The copies of the state alive (a test checks that none is once the API has stopped).
    pub fn holders(&self) -> Holders {
        self.holders.clone()
    }

    /// Serves until the server stops (SIGTERM/SIGINT, or its handle), running the background
    /// loop and the sampler alongside.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let bootstrap = match self.bootstrap_key {
            Some(key) => auth::bootstrap::record(self.state.clone(), key).await,
            None => None,
        };
        let subscriber = completions::spawn_subscriber(&self.state).context("REDIS_URL")?;
        let closing = tokio::spawn(close_waits_on_termination(self.state.clone()));
        let background = background::spawn(self.state.clone());
        let sampler = sampler::spawn(self.state.clone());
        let metrics = self.metrics_server.handle();
        let metrics_served = tokio::spawn(self.metrics_server);
        let served = self.server.await;
        metrics.stop(true).await;
        let _ = metrics_served.await;
        background.abort();
        sampler.abort();
        subscriber.abort();
        closing.abort();
        if let Some(bootstrap) = bootstrap {
            bootstrap.abort();
        }
        drop(self.state);
        if !self.holders.released(LET_GO_WITHIN).await {
            tracing::warn!(
                left = self.holders.count(),
                "server threads still held the app state when the API stopped"
            );
        }
        served.context("HTTP server failed")
    }
}

/// On SIGTERM or SIGINT (which actix also hears, and drains on), the requests waiting for a
/// job answer at once with what they have, so the drain is not held by a long-poll.
async fn close_waits_on_termination(state: web::Data<AppState>) {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    state.completions.close();
}

/// What an allowed origin's script may send and read: every header the API's contract reads
/// (`Prefer: wait`, `If-None-Match`, `Idempotency-Key`) or answers with (`Preference-Applied`,
/// `Idempotent-Replayed`, `ETag`, `Content-Location`, the rate-limit headers).
fn cors(origins: &[String]) -> Cors {
    origins
        .iter()
        .fold(Cors::default(), |c, origin| c.allowed_origin(origin))
        .allowed_methods([http::Method::GET, http::Method::POST, http::Method::DELETE])
        .allowed_headers([
            http::header::AUTHORIZATION,
            http::header::CONTENT_TYPE,
            http::header::ACCEPT,
            http::header::IF_NONE_MATCH,
            http::header::HeaderName::from_static("idempotency-key"),
            http::header::HeaderName::from_static("prefer"),
            request_id::HEADER,
        ])
        .expose_headers([
            http::header::LOCATION,
            http::header::CONTENT_LOCATION,
            http::header::ETAG,
            http::header::RETRY_AFTER,
            http::header::WWW_AUTHENTICATE,
            http::header::HeaderName::from_static("preference-applied"),
            http::header::HeaderName::from_static("idempotent-replayed"),
            http::header::HeaderName::from_static("ratelimit"),
            http::header::HeaderName::from_static("ratelimit-policy"),
            request_id::HEADER,
        ])
        .max_age(3600)
}
