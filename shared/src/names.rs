//! Names that cross process and deploy-file boundaries: Prometheus metric names, and the
//! CloudWatch Embedded Metric Format namespace and metrics the autoscaling policy tracks. The
//! deploy-file tests check ecs/, deploy/k8s and deploy/monitoring against these constants, so
//! renaming one here breaks the build of a stale dashboard instead of silently blanking it.
//! (The Redis keys of the queue, which KEDA's trigger names too, are `queue::Keys`.)

/// HTTP requests served, by `route` (the matched pattern), `method` and `status`.
pub const HTTP_REQUESTS_TOTAL: &str = "portfolio_http_requests_total";
/// HTTP request latency histogram, by `route`, `method` and `waited` (`true` for a request
/// held until its job ends: `?wait=`, `Prefer: wait`, `/run_simulation`).
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "portfolio_http_request_duration_seconds";
/// Jobs in the queue by `state`: `ready`, `scheduled` (delayed or backing off), `running`,
/// `dead`.
pub const QUEUE_JOBS: &str = "portfolio_queue_jobs";
/// Age of the oldest job waiting to start.
pub const QUEUE_OLDEST_READY_AGE_SECONDS: &str = "portfolio_queue_oldest_ready_age_seconds";
/// Jobs a worker brought to a terminal state, by `status`: `succeeded`, `failed`, `cancelled`
/// (a submit answered from the result cache is a hit of `RESULT_CACHE_LOOKUPS_TOTAL` instead;
/// a job cancelled while queued ends in the API). Each unit of a sweep counts as one: these
/// are the fleet's work items, where `/queue/stats` counts a sweep once.
pub const JOBS_FINISHED_TOTAL: &str = "portfolio_jobs_finished_total";
/// Submits refused, by `reason`: `queue_full`, `unavailable` (Postgres away at the key's
/// lookup or the record), and the tenants' own limits, `rate_limited` and `quota`.
pub const SUBMITS_REFUSED_TOTAL: &str = "portfolio_submits_refused_total";
/// Result-cache lookups of the API, by layer (`l1`, `l2`) and outcome (`hit`, `miss`).
pub const RESULT_CACHE_LOOKUPS_TOTAL: &str = "portfolio_result_cache_lookups_total";
/// Time from submit to a worker starting the job.
pub const JOB_QUEUE_WAIT_SECONDS: &str = "portfolio_job_queue_wait_seconds";
/// Time a worker spent running a job.
pub const JOB_RUN_SECONDS: &str = "portfolio_job_run_seconds";
/// Scenario-months simulated; its rate is the engine's throughput.
pub const ENGINE_SCENARIO_MONTHS_TOTAL: &str = "portfolio_engine_scenario_months_total";
/// Workers whose heartbeat is fresh.
pub const WORKERS_ALIVE: &str = "portfolio_workers_alive";
/// 1 when the API's scrape read the queue from Redis, 0 when Redis did not answer (the queue's
/// gauges are then NaN).
pub const QUEUE_UP: &str = "portfolio_queue_up";
/// Database pool connections by `state`: `in_use`, `idle`.
pub const DB_POOL_CONNECTIONS: &str = "portfolio_db_pool_connections";

/// CloudWatch namespace of the metrics the API publishes as Embedded Metric Format log lines.
pub const EMF_NAMESPACE: &str = "PortfolioMC";
/// Ready jobs in the queue.
pub const EMF_QUEUE_DEPTH: &str = "QueueDepth";
/// Ready jobs per running worker task: the autoscaling target-tracking metric.
pub const EMF_BACKLOG_PER_TASK: &str = "BacklogPerTask";
/// Worker processes whose heartbeat is fresh: an alarm's, when none is alive.
pub const EMF_WORKERS_ALIVE: &str = "WorkersAlive";
/// Dimension of the EMF metrics; its value is the queue namespace.
pub const EMF_DIMENSION: &str = "Queue";
