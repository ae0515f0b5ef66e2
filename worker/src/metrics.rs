//! Prometheus metrics of a worker, served with `/health` on `METRICS_BIND`.

use actix_web::{App, HttpResponse, HttpServer, web};
use portfolio_shared::db::PgPool;
use portfolio_shared::names;
use portfolio_shared::state_holders::Holder;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry,
};

pub(crate) struct WorkerMetrics {
    registry: Registry,
    pub(crate) finished: IntCounterVec,
    pub(crate) queue_wait: Histogram,
    pub(crate) run_time: Histogram,
    pub(crate) scenario_months: IntCounter,
    pub(crate) db_pool: GaugeVec,
}

impl WorkerMetrics {
    pub(crate) fn new() -> Self {
        let registry = Registry::new();
        let seconds =
            vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0];
        let finished = IntCounterVec::new(
            Opts::new(names::JOBS_FINISHED_TOTAL, "Jobs this worker brought to a terminal state"),
            &["status"],
        )
        .expect("valid metric");
        // Every series from the start: `rate()` never sees a series' first value rise, so a
        // failure counted by a series born at 1 would go unseen by a panel or an alert.
        for status in ["succeeded", "failed", "cancelled"] {
            finished.with_label_values(&[status]);
        }
        let queue_wait = Histogram::with_opts(
            HistogramOpts::new(names::JOB_QUEUE_WAIT_SECONDS, "Submit to start")
                .buckets(seconds.clone()),
        )
        .expect("valid metric");
        let run_time = Histogram::with_opts(
            HistogramOpts::new(names::JOB_RUN_SECONDS, "Time spent running a job").buckets(seconds),
        )
        .expect("valid metric");
        let scenario_months =
            IntCounter::new(names::ENGINE_SCENARIO_MONTHS_TOTAL, "Scenario-months simulated")
                .expect("valid metric");
        let db_pool = GaugeVec::new(
            Opts::new(names::DB_POOL_CONNECTIONS, "Database pool connections by state"),
            &["state"],
        )
        .expect("valid metric");
        for c in [
            Box::new(finished.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(queue_wait.clone()),
            Box::new(run_time.clone()),
            Box::new(scenario_months.clone()),
            Box::new(db_pool.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("process collector registers once");
        Self { registry, finished, queue_wait, run_time, scenario_months, db_pool }
    }

    fn render(&self, pool: &PgPool) -> String {
        let state = pool.state();
        self.db_pool.with_label_values(&["idle"]).set(f64::from(state.idle_connections));
        self.db_pool
            .with_label_values(&["in_use"])
            .set(f64::from(state.connections - state.idle_connections));
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves `/metrics` and `/health` until the process ends. Binding fails loudly: a worker
/// that cannot be scraped or health-checked should not pretend to be fine.
pub(crate) fn serve(
    bind: std::net::SocketAddr,
    metrics: std::sync::Arc<WorkerMetrics>,
    pool: PgPool,
    holder: Holder,
) -> anyhow::Result<(u16, actix_web::dev::Server)> {
    let listener = std::net::TcpListener::bind(bind)
        .map_err(|e| anyhow::anyhow!("binding METRICS_BIND={bind}: {e}"))?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || {
        let metrics = metrics.clone();
        let pool = pool.clone();
        // Counts the server thread's share of the pool until it is dropped (`state_holders`).
        let holder = holder.clone();
        App::new()
            .app_data(web::Data::new(holder))
            .route(
                "/health",
                web::get()
                    .to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
            )
            .route(
                "/metrics",
                web::get().to(move || {
                    let body = metrics.render(&pool);
                    async move {
                        HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(body)
                    }
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok((port, server))
}
