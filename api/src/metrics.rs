//! Prometheus metrics of the API: HTTP traffic by route, and at scrape time the queue's depth
//! (from Redis), workers alive and the database pool. Names live in
//! `portfolio_shared::names` because dashboards and alert rules depend on them.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::HeaderMap;
use actix_web::middleware::Next;
use actix_web::{Error, web};
use portfolio_shared::db::PgPool;
use portfolio_shared::names;
use portfolio_shared::queue::QueueDepth;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry,
    TextEncoder,
};

use crate::state::AppState;

/// Every `reason` of `portfolio_submits_refused_total` (names.rs says what each means).
const SUBMIT_REFUSAL_REASONS: [&str; 4] = ["queue_full", "unavailable", "rate_limited", "quota"];

pub(crate) struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    pub(crate) queue_jobs: GaugeVec,
    pub(crate) oldest_ready_age: Gauge,
    pub(crate) workers_alive: Gauge,
    pub(crate) queue_up: Gauge,
    pub(crate) db_pool: GaugeVec,
    pub(crate) submits_refused: IntCounterVec,
    pub(crate) result_cache: IntCounterVec,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(names::HTTP_REQUESTS_TOTAL, "HTTP requests served"),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(names::HTTP_REQUEST_DURATION_SECONDS, "HTTP request latency")
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0,
                ]),
            // `waited`: the request asked to be held until its job ends, so its time is the
            // job's (up to MAX_WAIT_SECS), not the API's; alerts and panels read "false".
            &["route", "method", "waited"],
        )
        .expect("valid metric");
        let queue_jobs =
            GaugeVec::new(Opts::new(names::QUEUE_JOBS, "Jobs in the queue by state"), &["state"])
                .expect("valid metric");
        let oldest_ready_age =
            Gauge::new(names::QUEUE_OLDEST_READY_AGE_SECONDS, "Age of the oldest ready job")
                .expect("valid metric");
        let workers_alive = Gauge::new(names::WORKERS_ALIVE, "Workers with a fresh heartbeat")
            .expect("valid metric");
        let queue_up = Gauge::new(
            names::QUEUE_UP,
            "1 when this scrape read the queue from Redis; 0 when Redis did not answer, and the \
             queue's gauges are then NaN",
        )
        .expect("valid metric");
        let db_pool = GaugeVec::new(
            Opts::new(names::DB_POOL_CONNECTIONS, "Database pool connections by state"),
            &["state"],
        )
        .expect("valid metric");
        let submits_refused = IntCounterVec::new(
            Opts::new(names::SUBMITS_REFUSED_TOTAL, "Submits refused, by reason"),
            &["reason"],
        )
        .expect("valid metric");
        let result_cache = IntCounterVec::new(
            Opts::new(
                names::RESULT_CACHE_LOOKUPS_TOTAL,
                "Result-cache lookups by layer and outcome",
            ),
            &["layer", "outcome"],
        )
        .expect("valid metric");
        // Every series exists from the start, so a hit ratio is defined before the first hit,
        // and `rate()` sees the first refusal of each reason (a series born at 1 has no rise).
        for layer in ["l1", "l2"] {
            for outcome in ["hit", "miss"] {
                result_cache.with_label_values(&[layer, outcome]);
            }
        }
        for reason in SUBMIT_REFUSAL_REASONS {
            submits_refused.with_label_values(&[reason]);
        }
        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(result_cache.clone()),
            Box::new(http_duration.clone()),
            Box::new(queue_jobs.clone()),
            Box::new(oldest_ready_age.clone()),
            Box::new(workers_alive.clone()),
            Box::new(queue_up.clone()),
            Box::new(db_pool.clone()),
            Box::new(submits_refused.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("process collector registers once");
        Self {
            registry,
            http_requests,
            http_duration,
            queue_jobs,
            oldest_ready_age,
            workers_alive,
            queue_up,
            db_pool,
            submits_refused,
            result_cache,
        }
    }

    pub(crate) fn record_depth(&self, depth: &QueueDepth) {
        for (state, value) in [
            ("ready", depth.ready),
            ("scheduled", depth.scheduled),
            ("running", depth.running),
            ("dead", depth.dead),
        ] {
            self.queue_jobs.with_label_values(&[state]).set(value as f64);
        }
        self.oldest_ready_age.set(depth.oldest_ready_age_ms.unwrap_or(0) as f64 / 1e3);
        self.workers_alive.set(depth.workers_alive as f64);
        self.queue_up.set(1.0);
    }

    /// Redis did not answer this scrape: the queue's gauges say NaN (no comparison holds), not
    /// the last figures read, which would freeze the backlog's age and the count of workers
    /// for as long as Redis stays away; `portfolio_queue_up` says why.
    pub(crate) fn record_depth_unknown(&self) {
        for state in ["ready", "scheduled", "running", "dead"] {
            self.queue_jobs.with_label_values(&[state]).set(f64::NAN);
        }
        self.oldest_ready_age.set(f64::NAN);
        self.workers_alive.set(f64::NAN);
        self.queue_up.set(0.0);
    }

    pub(crate) fn record_pool(&self, pool: &PgPool) {
        let state = pool.state();
        self.db_pool.with_label_values(&["idle"]).set(f64::from(state.idle_connections));
        self.db_pool
            .with_label_values(&["in_use"])
            .set(f64::from(state.connections - state.idle_connections));
    }

    pub(crate) fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The methods the API serves (OPTIONS for CORS preflights); any other is labelled `other`.
const SERVED_METHODS: [Method; 5] =
    [Method::GET, Method::HEAD, Method::POST, Method::DELETE, Method::OPTIONS];

/// The `method` label: a method the API serves, or `other`. A client may send any token as a
/// method, and each new one would otherwise add a series per route and status.
fn method_label(method: &Method) -> &'static str {
    SERVED_METHODS.iter().find(|m| *m == method).map_or("other", Method::as_str)
}

/// Counts and times every request by its route pattern (never the raw path: ids would explode
/// the label set; `unmatched` when no route matched) and its method (bounded the same way).
pub(crate) async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let held = asks_to_wait(
        req.match_pattern().as_deref(),
        req.method(),
        req.query_string(),
        req.headers(),
    );
    let waited = if held { "true" } else { "false" };
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let res = next.call(req).await?;
    if let Some(state) = state {
        let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".to_owned());
        let status = res.status().as_u16().to_string();
        let m = &state.metrics;
        m.http_requests.with_label_values(&[&route, method, &status]).inc();
        m.http_duration
            .with_label_values(&[&route, method, waited])
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(res)
}

/// Whether a request may be held until its job ends, where the route honours it:
/// `/run_simulation` always; a submit with `Prefer: wait=N`; a read of one job with `?wait=N`
/// (N > 0, read as the handler reads the query).
fn asks_to_wait(route: Option<&str>, method: &Method, query: &str, headers: &HeaderMap) -> bool {
    match route {
        Some("/run_simulation") => true,
        Some("/simulations") if method == Method::POST => {
            crate::prefer::wait_secs(headers).is_some_and(|n| n > 0)
        }
        Some("/results/{id}") => {
            web::Query::<Vec<(String, String)>>::from_query(query).is_ok_and(|q| {
                q.iter().any(|(k, v)| k == "wait" && v.parse::<u64>().is_ok_and(|n| n > 0))
            })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_labelled_waited_only_where_its_route_holds_it() {
        let prefer = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                actix_web::http::header::HeaderName::from_static("prefer"),
                actix_web::http::header::HeaderValue::from_str(v).unwrap(),
            );
            h
        };
        let none = HeaderMap::new();
        let (get, post) = (Method::GET, Method::POST);
        assert!(asks_to_wait(Some("/run_simulation"), &post, "", &none));
        assert!(asks_to_wait(Some("/simulations"), &post, "", &prefer("wait=5")));
        assert!(!asks_to_wait(Some("/simulations"), &post, "", &prefer("wait=0")));
        assert!(!asks_to_wait(Some("/simulations"), &post, "wait=5", &none));
        assert!(asks_to_wait(Some("/results/{id}"), &get, "wait=5", &none));
        assert!(asks_to_wait(Some("/results/{id}"), &get, "wait=%35", &none), "decoded");
        assert!(!asks_to_wait(Some("/results/{id}"), &get, "wait=0", &none));
        assert!(!asks_to_wait(Some("/results/{id}"), &get, "wait=soon", &none));
        assert!(!asks_to_wait(Some("/results/{id}"), &get, "", &prefer("wait=5")));
        assert!(!asks_to_wait(Some("/results"), &get, "wait=5", &prefer("wait=5")));
        assert!(!asks_to_wait(None, &get, "wait=5", &none));
    }

    #[test]
    fn the_method_label_is_a_served_method_or_other() {
        for (method, label) in [
            ("GET", "GET"),
            ("HEAD", "HEAD"),
            ("POST", "POST"),
            ("DELETE", "DELETE"),
            ("OPTIONS", "OPTIONS"),
            ("PUT", "other"),
            ("PATCH", "other"),
            ("TRACE", "other"),
            ("FOO", "other"),
            ("get", "other"),
        ] {
            assert_eq!(method_label(&Method::from_bytes(method.as_bytes()).unwrap()), label);
        }
    }
}
