//! One typed `Settings`, read from environment variables with documented defaults that work
//! against a local Redis and Postgres. A value that does not parse stops the process at start,
//! naming the variable; secrets (the URLs may carry passwords) are never logged: they are
//! [`SecretUrl`]s, read only through [`ExposeSecret`] where a connection is opened.
//!
//! Written by hand rather than with `config`/`envy`: a page of code, exact error messages, and
//! one table ([`VARIABLES`]) that the deploy-file tests check every container definition
//! against (crates.io keeps a similar small helper, `crates_io_env_vars`).

use std::fmt::{self, Display};
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

pub use secrecy::ExposeSecret;
use secrecy::SecretString;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::ParseError;

/// Every variable any process reads, with its default (`None`: optional, no default).
pub const VARIABLES: &[(&str, Option<&str>)] = &[
    // No TLS on the loopback default: it protects nothing there and costs about 1 ms per job.
    ("DATABASE_URL", Some("postgres://postgres@127.0.0.1:5432/portfolio_mc?sslmode=disable")),
    ("DATABASE_READ_URL", None),
    ("REDIS_URL", Some("redis://127.0.0.1:6379")),
    ("REDIS_CA_FILE", None),
    ("QUEUE_NAMESPACE", Some("portfolio-mc")),
    ("API_BIND", Some("127.0.0.1:8080")),
    ("METRICS_BIND", Some("127.0.0.1:9091")),
    ("RUST_LOG", Some("info")),
    ("LOG_FORMAT", Some("json")),
    // Unset: sized per process (PoolSettings::API_*, PoolSettings::worker_max_size).
    ("DB_POOL_MAX_SIZE", None),
    ("DB_POOL_MIN_IDLE", None),
    ("DB_POOL_TIMEOUT_SECS", Some("30")),
    ("DB_POOL_MAX_LIFETIME_SECS", Some("3600")),
    ("DB_POOL_TEST_ON_CHECKOUT", Some("true")),
    ("MAX_SCENARIOS", Some("1000000")),
    ("QUEUE_DEPTH_CEILING", Some("5000")),
    ("MAX_ATTEMPTS", Some("3")),
    ("RECONCILE_INTERVAL_SECS", Some("5")),
    ("CORS_ALLOWED_ORIGINS", Some("")),
    ("METRICS_PUBLISH_INTERVAL_SECS", Some("60")),
    ("RUN_SIMULATION_WAIT_SECS", Some("30")),
    ("MAX_WAIT_SECS", Some("60")),
    ("WAIT_RECHECK_MS", Some("1000")),
    ("WORKER_CONCURRENCY", Some("2")),
    ("WORKER_FETCH_BATCH", Some("1")),
    ("WORKER_LIGHT_CONCURRENCY", None),
    ("WORKER_POLL_INTERVAL_MS", Some("1000")),
    ("WORKER_HEARTBEAT_SECS", Some("5")),
    ("WORKER_MISSED_HEARTBEATS", Some("3")),
    ("WORKER_THREADS", Some("0")),
    ("WORKER_PIN_THREADS", Some("true")),
    ("WORKER_NAME", None),
    // Unset: API_SHUTDOWN_GRACE_SECS for the API, WORKER_SHUTDOWN_GRACE_SECS for a worker.
    ("SHUTDOWN_GRACE_SECS", None),
    // A test hook, never set in production: see docs/reliability.md.
    ("WORKER_FAULT_INJECTION", Some("")),
    ("ENGINE_BATCH_SIZE", Some("1024")),
    ("ENGINE_MEMORY_BUDGET_MB", Some("256")),
    // Tenancy: who may call the API, and how much of the fleet one tenant may take.
    ("AUTH_MODE", Some("api_key")),
    ("BOOTSTRAP_API_KEY", None),
    ("RATE_LIMIT_SUBMITS_PER_MINUTE", Some("120")),
    ("RATE_LIMIT_READS_PER_MINUTE", Some("1200")),
    ("MAX_UNFINISHED_JOBS_PER_KEY", Some("200")),
    // Limits on one job, whoever submits it (docs/operations.md, "Limits on one job").
    // 480,000,000 = 1,000,000 scenarios × 40 years × 12 months, without the solver.
    ("MAX_JOB_COST", Some("480000000")),
    ("JOB_TIMEOUT_SECS", Some("600")),
    // The plan explorer (README, "The plan explorer"): cells per sweep (21 × 21), and the cost
    // (scenario-months) of one unit of a sweep's work, about 300 ms of the engine on 2 cores.
    ("MAX_SWEEP_CELLS", Some("441")),
    ("SWEEP_UNIT_COST", Some("40000000")),
    // The result cache (README, "Result cache"): 0 turns it off.
    ("RESULT_CACHE_TTL_SECS", Some("3600")),
    ("RESULT_CACHE_L1_MAX_MB", Some("64")),
    // Months of audit rows the leader keeps (0 keeps them all).
    ("AUDIT_RETENTION_MONTHS", Some("13")),
];

/// A variable that is set but cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}: {message}")]
pub struct SettingsError {
    pub(crate) name: &'static str,
    pub(crate) message: String,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub queue: QueueSettings,
    pub api: ApiSettings,
    pub worker: WorkerSettings,
    pub engine: EngineSettings,
    pub telemetry: TelemetrySettings,
    pub auth: AuthSettings,
    pub job_limits: JobLimitsSettings,
    pub result_cache: ResultCacheSettings,
}

/// The result cache: a seeded request's result is a function of the request and the engine
/// version, so an identical one is answered from here instead of running again.
#[derive(Debug, Clone, Copy)]
pub struct ResultCacheSettings {
    /// How long a result stays in either layer; `None` turns the cache off.
    pub ttl: Option<Duration>,
    /// The in-process layer's bound, in bytes of result JSON.
    pub l1_max_bytes: u64,
}

/// Limits on one job that hold whoever submits it: what it may cost (checked by the API at
/// submit) and how long it may run (enforced by the worker).
#[derive(Debug, Clone, Copy)]
pub struct JobLimitsSettings {
    /// The largest `portfolio_engine::cost` of a job: scenarios × months × solver passes.
    pub max_job_cost: u64,
    /// A job running longer is stopped and failed for good.
    pub job_timeout: Duration,
    /// The most cells a sweep may have.
    pub max_sweep_cells: u32,
    /// The cost a unit of a sweep's work is cut to (it holds at least one cell).
    pub sweep_unit_cost: u64,
}

/// Who may call the API and how much one tenant may ask of it (docs/security.md).
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub mode: AuthMode,
    /// A key given from a secret (ECS `secrets`, a Kubernetes `Secret`), recorded at start with
    /// both scopes under the tenant `bootstrap` unless it exists (a revoked one stays revoked).
    pub bootstrap_key: Option<SecretString>,
    /// Submits one tenant may make per minute, across every API replica.
    pub submits_per_minute: u32,
    /// Every other authenticated request, per tenant per minute.
    pub reads_per_minute: u32,
    /// Jobs one tenant may have queued or running at once; below `QUEUE_DEPTH_CEILING`, so
    /// that one tenant's burst cannot fill the queue for everyone.
    pub max_unfinished_per_tenant: u64,
}

/// `AUTH_MODE`: API keys (the default, and what every deploy file sets), or no identity at all
/// (every request acts as the one tenant [`LOCAL_TENANT`], for a laptop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    ApiKey,
    Disabled,
}

/// The tenant every request acts as under `AUTH_MODE=disabled`.
pub const LOCAL_TENANT: &str = "local";

impl FromStr for AuthMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "api_key" => Ok(Self::ApiKey),
            "disabled" => Ok(Self::Disabled),
            _ => Err(format!("expected `api_key` or `disabled`, got `{s}`")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// The primary: every write, and reads when no replica is configured.
    pub url: SecretUrl,
    /// A read replica for the read endpoints.
    pub read_url: Option<SecretUrl>,
    /// The API's pool (and its read pool, when it has one of its own).
    pub api_pool: PoolSettings,
    /// A worker's pool: sized from `WORKER_CONCURRENCY` unless `DB_POOL_*` says otherwise.
    pub worker_pool: PoolSettings,
}

impl DatabaseSettings {
    /// Whether `DATABASE_READ_URL` names a database other than `DATABASE_URL`. Set to the
    /// primary itself (as a deployment without a replica may do), it needs no pool of its own:
    /// a second pool would double the API's connections for nothing.
    pub fn has_separate_replica(&self) -> bool {
        self.read_url
            .as_ref()
            .is_some_and(|read| !same_url(read.expose_secret(), self.url.expose_secret()))
    }
}

/// Two connection strings that are the same, blanks around them aside: what a deployment
/// without a replica writes when it copies the primary's URL. Anything else (another host
/// name for the same server, other options) is taken for a replica of its own.
fn same_url(a: &str, b: &str) -> bool {
    a.trim() == b.trim()
}

/// A Postgres connection string with libpq's probe for GSSAPI encryption turned off, unless the
/// string sets `gssencmode` itself. libpq's default (`prefer`) asks Kerberos for credentials on
/// every connect, and a pool refills in threads of its own (r2d2): a thread connecting while
/// the process exits then runs into Kerberos' library finalizers, and a clean shutdown ends in
/// SIGABRT or SIGSEGV (seen in CI; reproduced with libpq alone in docs/reliability.md). Only
/// GSSAPI *encryption* is off: a server that asks for Kerberos *authentication* still gets it,
/// and TLS (`sslmode`) is untouched.
fn without_gss_probe(url: String) -> String {
    let url = url.trim();
    if url.contains("gssencmode") {
        return url.to_owned();
    }
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        // libpq's `key=value` form.
        return format!("{url} gssencmode=disable");
    }
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joiner}gssencmode=disable")
}

/// r2d2 pool settings: 30 s checkout timeout, recycle after an hour, pre-ping (the old app's
/// SQLAlchemy pool), with sizes per process (see [`PoolSettings::API_MAX_SIZE`] and
/// [`PoolSettings::worker_max_size`]).
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub(crate) max_size: u32,
    pub(crate) min_idle: u32,
    pub checkout_timeout: Duration,
    pub(crate) max_lifetime: Duration,
    pub(crate) test_on_checkout: bool,
}

impl PoolSettings {
    /// The API's pool when `DB_POOL_MAX_SIZE` is unset: the old app's pool of 10 plus an
    /// overflow of 20.
    pub const API_MAX_SIZE: u32 = 30;
    /// The API's idle connections kept open when `DB_POOL_MIN_IDLE` is unset (the old pool's 10).
    pub const API_MIN_IDLE: u32 = 10;
    /// A worker's idle connections kept open when `DB_POOL_MIN_IDLE` is unset: a worker at
    /// rest needs none, and one saves the first job a connect.
    pub const WORKER_MIN_IDLE: u32 = 1;

    /// A worker's pool when `DB_POOL_MAX_SIZE` is unset. Every database call of a worker is
    /// one of its jobs' (claim, progress, result, failure, hand-back), one at a time per job,
    /// so it needs one connection per job it runs at once; two spare keep a job from waiting
    /// behind a connection being recycled or re-tested. Anything larger only holds Postgres
    /// connections the worker cannot use (the deploy files' 4 for 2 jobs).
    pub fn worker_max_size(concurrency: usize) -> u32 {
        u32::try_from(concurrency).unwrap_or(u32::MAX).saturating_add(2)
    }

    pub fn max_size(&self) -> u32 {
        self.max_size
    }

    pub fn min_idle(&self) -> u32 {
        self.min_idle
    }
}

/// How long the API drains on SIGTERM when `SHUTDOWN_GRACE_SECS` is unset: in-flight requests
/// (long-polls are answered at once on SIGTERM) finish well inside it, and it fits inside every
/// orchestrator's budget (Kubernetes 30 s minus a 5 s preStop, ECS `stopTimeout` and compose's
/// `stop_grace_period` 30 s), so the API is never killed mid-drain.
pub const API_SHUTDOWN_GRACE_SECS: u64 = 20;

/// How long a worker lets its running jobs finish on SIGTERM when `SHUTDOWN_GRACE_SECS` is
/// unset: inside ECS's maximum `stopTimeout` (120 s) and a Fargate Spot notice, with a margin.
pub const WORKER_SHUTDOWN_GRACE_SECS: u64 = 100;

#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// `redis://`, `rediss://` (TLS), or `redis+sentinel://` / `rediss+sentinel://` naming
    /// Sentinels (see [`crate::queue::RedisTarget`]).
    pub redis_url: SecretUrl,
    /// A PEM file of the CA(s) a `rediss://` server's certificate is checked against, instead
    /// of the platform's roots (a private CA).
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// Prefix of every Redis key of the queue (apalis's queue name).
    pub(crate) namespace: String,
    /// Ready jobs above which submits are refused with 503 (apalis-redis 1.0 crashes its
    /// workers when one fetch sees 8,000 or more due jobs).
    pub depth_ceiling: u64,
    /// Attempts a job gets before it is failed for good.
    pub max_attempts: u32,
    pub reconcile_interval: Duration,
}

/// The longest wait a client may ask for (`?wait=`, `Prefer: wait`) or `RUN_SIMULATION_WAIT_SECS`
/// may set: below the proxies' and load balancers' idle timeouts once raised to 75 s, as
/// deploy/nginx sets its own, and ecs/README.md (the ALB) and deploy/k8s/README.md (an ingress)
/// say to.
pub const WAIT_LIMIT_SECS: u64 = 60;

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub bind: SocketAddr,
    /// Where the API serves `/metrics`: a listener of its own, off the public port.
    pub metrics_bind: SocketAddr,
    pub max_scenarios: u32,
    /// Origins allowed to call the API from a browser; empty means same-origin only.
    pub cors_allowed_origins: Vec<String>,
    pub metrics_publish_interval: Duration,
    /// How long `POST /run_simulation` waits for its job before answering `202` instead of
    /// `200` with the result (the old app's clients expect the result).
    pub run_simulation_wait: Duration,
    /// The longest any request waits for a job (`MAX_WAIT_SECS`, at most [`WAIT_LIMIT_SECS`]):
    /// longer asks are cut to it.
    pub max_wait: Duration,
    /// How often a request waiting for a job re-reads Postgres even if no announcement came:
    /// what a lost announcement costs at most.
    pub wait_recheck: Duration,
    /// Months of audit partitions the leader keeps before the current one; `None` keeps all.
    pub audit_retention_months: Option<u32>,
    /// How long in-flight requests may take to finish after SIGTERM (`SHUTDOWN_GRACE_SECS`,
    /// else [`API_SHUTDOWN_GRACE_SECS`]).
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Jobs of any size one worker process runs at once (they share its engine threads).
    pub concurrency: usize,
    /// Jobs in all, light ones filling what heavy ones leave (`WORKER_LIGHT_CONCURRENCY`,
    /// else 4 × `concurrency`; at least `concurrency`).
    pub light_concurrency: usize,
    pub(crate) fetch_batch: usize,
    /// How often an idle worker fetches on its own (`WORKER_POLL_INTERVAL_MS`): only the
    /// fallback for a lost doorbell ring, since a push rings the worker at once.
    pub poll_interval: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) missed_heartbeats: usize,
    /// Engine threads; 0 means one per CPU.
    pub threads: usize,
    /// Hold each engine thread to a CPU of its own when the process may use exactly as many
    /// CPUs as there are engine threads (`WORKER_PIN_THREADS`).
    pub pin_threads: bool,
    pub name: Option<String>,
    pub shutdown_grace: Duration,
    pub metrics_bind: SocketAddr,
    /// Faults the worker injects on purpose (`WORKER_FAULT_INJECTION`, for the fault tests).
    pub faults: FaultInjection,
}

/// A test hook: jobs whose seed is listed make the worker fail in the named way every time
/// they run. Read only by the worker from its own environment, so an API user cannot turn it
/// on; empty (the default) means none. Format: `panic:<seed>,abort:<seed>,...`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultInjection {
    faults: Vec<(Fault, u64)>,
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The engine panics (the worker catches it: a retryable failure).
    Panic,
    /// The whole worker process aborts, as a crash or an out-of-memory kill would.
    Abort,
}

impl WorkerSettings {
    /// `WORKER_HEARTBEAT_SECS`: how often a worker shows it is alive.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    /// How long a worker may go unheard before it counts as dead and its jobs as orphans:
    /// `WORKER_HEARTBEAT_SECS` × `WORKER_MISSED_HEARTBEATS`. The one definition the queue's
    /// orphan recovery, a claim's staleness test and the reconciler all use.
    pub fn orphan_window(&self) -> Duration {
        self.heartbeat_interval * self.missed_heartbeats as u32
    }
}

impl FaultInjection {
    /// The fault to inject for a job with this seed, if any.
    pub fn for_seed(&self, seed: u64) -> Option<Fault> {
        self.faults.iter().find(|(_, s)| *s == seed).map(|(f, _)| *f)
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }
}

impl FromStr for FaultInjection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let faults = s
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(|f| {
                let (kind, seed) =
                    f.split_once(':').ok_or_else(|| format!("`{f}` is not `<kind>:<seed>`"))?;
                let kind = match kind {
                    "panic" => Fault::Panic,
                    "abort" => Fault::Abort,
                    other => return Err(format!("unknown fault `{other}` (panic or abort)")),
                };
                let seed = seed.parse().map_err(|e| format!("seed `{seed}`: {e}"))?;
                Ok((kind, seed))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { faults })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct EngineSettings {
    pub batch_size: usize,
    pub memory_budget_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    pub filter: LogFilter,
    pub format: LogFormat,
}

/// A `RUST_LOG` filter that tracing accepts. Checked when read, so that a typo stops the
/// process at start, naming the variable, instead of silently logging something else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter(String);

impl FromStr for LogFilter {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EnvFilter::builder().parse(s)?;
        Ok(Self(s.to_owned()))
    }
}

impl LogFilter {
    /// The filter to install.
    pub(crate) fn env_filter(&self) -> EnvFilter {
        EnvFilter::builder().parse(&self.0).expect("a LogFilter is checked when it is read")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "pretty" | "text" => Ok(Self::Pretty),
            _ => Err(format!("expected `json` or `pretty`, got `{s}`")),
        }
    }
}

impl Settings {
    /// The rules of a request that depend on this deployment.
    pub fn request_limits(&self) -> portfolio_engine::request::RequestLimits {
        portfolio_engine::request::RequestLimits {
            max_scenarios: self.api.max_scenarios,
            max_sweep_cells: self.job_limits.max_sweep_cells,
        }
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Settings::from_env`] for a binary's `main`: a bad setting ends the process with its
    /// message alone and exit status 1. It is the operator's to fix, and the backtrace of our
    /// own code that `anyhow` adds when `RUST_BACKTRACE` is set would only bury it.
    pub fn from_env_or_exit() -> Self {
        Self::from_env().unwrap_or_else(|e| {
            eprintln!("Error: {e}");
            std::process::exit(1)
        })
    }

    /// Reads settings through `lookup` (tests pass a map instead of the environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let env = Env { lookup: &lookup };
        let concurrency: usize =
            env.parse_where("WORKER_CONCURRENCY", |n: &usize| *n >= 1, "at least 1")?;
        // Set, DB_POOL_* apply to whichever process reads them; unset, each process gets the
        // pool it needs (the API the old app's 10 + 20, a worker a handful).
        let max_size: Option<u32> =
            env.parse_optional_where("DB_POOL_MAX_SIZE", |n: &u32| *n >= 1, "at least 1")?;
        // Above a process's pool size it is the pool size (r2d2's own reading); above a size
        // set beside it, a contradiction.
        let min_idle: Option<u32> = env.parse_optional_where(
            "DB_POOL_MIN_IDLE",
            |n: &u32| max_size.is_none_or(|max| *n <= max),
            &format!("at most DB_POOL_MAX_SIZE ({})", max_size.unwrap_or_default()),
        )?;
        let pool = PoolSettings {
            max_size: max_size.unwrap_or(PoolSettings::API_MAX_SIZE),
            min_idle: min_idle.unwrap_or(PoolSettings::API_MIN_IDLE),
            // r2d2 panics on a zero timeout or lifetime.
            checkout_timeout: env.positive_seconds("DB_POOL_TIMEOUT_SECS")?,
            max_lifetime: env.positive_seconds("DB_POOL_MAX_LIFETIME_SECS")?,
            test_on_checkout: env.parse("DB_POOL_TEST_ON_CHECKOUT")?,
        };
        let worker_pool = PoolSettings {
            max_size: max_size.unwrap_or_else(|| PoolSettings::worker_max_size(concurrency)),
            min_idle: min_idle.unwrap_or(PoolSettings::WORKER_MIN_IDLE),
            ..pool
        };
        // A worker hands back what it has not finished in the grace's last third (up to 5 s),
        // and needs a second or two for it: below 2 s jobs would stay `running` until the
        // orphan window.
        let grace: Option<u64> = env.parse_optional_where(
            "SHUTDOWN_GRACE_SECS",
            |n: &u64| *n >= 2,
            "at least 2 (seconds): a worker needs them to hand its jobs back",
        )?;
        Ok(Self {
            database: DatabaseSettings {
                url: without_gss_probe(env.conninfo("DATABASE_URL")?).into(),
                read_url: match env.optional("DATABASE_READ_URL") {
                    Some(_) => Some(without_gss_probe(env.conninfo("DATABASE_READ_URL")?).into()),
                    None => None,
                },
                api_pool: pool,
                worker_pool,
            },
            queue: QueueSettings {
                redis_url: env.string("REDIS_URL")?.into(),
                redis_ca_file: env.optional("REDIS_CA_FILE").map(std::path::PathBuf::from),
                namespace: env.parse_where(
                    "QUEUE_NAMESPACE",
                    |s: &String| !s.is_empty() && !s.contains(char::is_whitespace),
                    "a non-empty name without spaces",
                )?,
                depth_ceiling: env.parse_where(
                    "QUEUE_DEPTH_CEILING",
                    |n: &u64| (1..=7_000).contains(n),
                    "from 1 to 7000 (apalis-redis fails at 8000 due jobs)",
                )?,
                max_attempts: env.parse_where("MAX_ATTEMPTS", |n: &u32| *n >= 1, "at least 1")?,
                reconcile_interval: env.positive_seconds("RECONCILE_INTERVAL_SECS")?,
            },
            api: ApiSettings {
                bind: env.parse("API_BIND")?,
                metrics_bind: env.parse("METRICS_BIND")?,
                max_scenarios: env.parse_where(
                    "MAX_SCENARIOS",
                    |n: &u32| (1..=portfolio_engine::request::MAX_SCENARIOS).contains(n),
                    "from 1 to 1000000",
                )?,
                cors_allowed_origins: env.origins("CORS_ALLOWED_ORIGINS")?,
                metrics_publish_interval: env.positive_seconds("METRICS_PUBLISH_INTERVAL_SECS")?,
                run_simulation_wait: Duration::from_secs(env.parse_where(
                    "RUN_SIMULATION_WAIT_SECS",
                    |n: &u64| *n <= WAIT_LIMIT_SECS,
                    &format!("from 0 to {WAIT_LIMIT_SECS}"),
                )?),
                max_wait: Duration::from_secs(env.parse_where(
                    "MAX_WAIT_SECS",
                    |n: &u64| *n <= WAIT_LIMIT_SECS,
                    &format!("from 0 to {WAIT_LIMIT_SECS}"),
                )?),
                wait_recheck: Duration::from_millis(env.parse_where(
                    "WAIT_RECHECK_MS",
                    |n: &u64| (10..=60_000).contains(n),
                    "from 10 to 60000",
                )?),
                audit_retention_months: Some(env.parse_where(
                    "AUDIT_RETENTION_MONTHS",
                    |n: &u32| *n <= 1200,
                    "from 0 (keep all) to 1200",
                )?)
                .filter(|n| *n > 0),
                shutdown_grace: Duration::from_secs(grace.unwrap_or(API_SHUTDOWN_GRACE_SECS)),
            },
            worker: WorkerSettings {
                concurrency,
                light_concurrency: env
                    .parse_optional_where(
                        "WORKER_LIGHT_CONCURRENCY",
                        |n: &usize| *n >= concurrency,
                        &format!("at least WORKER_CONCURRENCY ({concurrency})"),
                    )?
                    .unwrap_or(concurrency.saturating_mul(4)),
                fetch_batch: env.parse_where(
                    "WORKER_FETCH_BATCH",
                    |n: &usize| *n >= 1,
                    "at least 1",
                )?,
                poll_interval: Duration::from_millis(env.parse_where(
                    "WORKER_POLL_INTERVAL_MS",
                    |n: &u64| *n >= 10,
                    "at least 10",
                )?),
                heartbeat_interval: Duration::from_secs(env.parse_where(
                    "WORKER_HEARTBEAT_SECS",
                    |n: &u64| *n >= 1,
                    "at least 1",
                )?),
                missed_heartbeats: env.parse_where(
                    "WORKER_MISSED_HEARTBEATS",
                    |n: &usize| *n >= 2,
                    "at least 2",
                )?,
                threads: env.parse("WORKER_THREADS")?,
                pin_threads: env.parse("WORKER_PIN_THREADS")?,
                name: env.optional("WORKER_NAME"),
                shutdown_grace: Duration::from_secs(grace.unwrap_or(WORKER_SHUTDOWN_GRACE_SECS)),
                metrics_bind: env.parse("METRICS_BIND")?,
                faults: env.parse("WORKER_FAULT_INJECTION")?,
            },
            engine: EngineSettings {
                batch_size: env.parse_where(
                    "ENGINE_BATCH_SIZE",
                    |n: &usize| *n >= 1,
                    "at least 1",
                )?,
                memory_budget_bytes: env.parse_where(
                    "ENGINE_MEMORY_BUDGET_MB",
                    |n: &usize| *n >= 1,
                    "at least 1",
                )? << 20,
            },
            telemetry: TelemetrySettings {
                filter: env.parse("RUST_LOG")?,
                format: env.parse("LOG_FORMAT")?,
            },
            job_limits: JobLimitsSettings {
                max_job_cost: env.parse_where("MAX_JOB_COST", |n: &u64| *n >= 1, "at least 1")?,
                job_timeout: Duration::from_secs(env.parse_where(
                    "JOB_TIMEOUT_SECS",
                    |n: &u64| *n >= 1,
                    "at least 1",
                )?),
                max_sweep_cells: env.parse_where(
                    "MAX_SWEEP_CELLS",
                    |n: &u32| (1..=10_000).contains(n),
                    "from 1 to 10000",
                )?,
                sweep_unit_cost: env.parse_where(
                    "SWEEP_UNIT_COST",
                    |n: &u64| *n >= 1,
                    "at least 1",
                )?,
            },
            auth: AuthSettings::read(&env)?,
            result_cache: ResultCacheSettings {
                ttl: Some(Duration::from_secs(env.parse_where(
                    "RESULT_CACHE_TTL_SECS",
                    |n: &u64| *n <= 30 * 24 * 3600,
                    "from 0 (off) to 2592000 (30 days)",
                )?))
                .filter(|ttl| !ttl.is_zero()),
                l1_max_bytes: env.parse_where(
                    "RESULT_CACHE_L1_MAX_MB",
                    |n: &u64| *n <= 65_536,
                    "from 0 (no in-process layer) to 65536",
                )? << 20,
            },
        })
    }
}

impl AuthSettings {
    fn read(env: &Env<'_>) -> Result<Self, SettingsError> {
        let ceiling: u64 = env.parse("QUEUE_DEPTH_CEILING")?;
        Ok(Self {
            mode: env.parse("AUTH_MODE")?,
            bootstrap_key: env.optional("BOOTSTRAP_API_KEY").map(SecretString::from),
            submits_per_minute: env.parse_where(
                "RATE_LIMIT_SUBMITS_PER_MINUTE",
                |n: &u32| *n >= 1,
                "at least 1",
            )?,
            reads_per_minute: env.parse_where(
                "RATE_LIMIT_READS_PER_MINUTE",
                |n: &u32| *n >= 1,
                "at least 1",
            )?,
            max_unfinished_per_tenant: env.parse_where(
                "MAX_UNFINISHED_JOBS_PER_KEY",
                |n: &u64| *n >= 1 && *n < ceiling,
                &format!("from 1 to below QUEUE_DEPTH_CEILING ({ceiling})"),
            )?,
        })
    }
}

struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    fn default_of(name: &'static str) -> Option<&'static str> {
        VARIABLES
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} is missing from settings::VARIABLES"))
            .1
    }

    fn optional(&self, name: &'static str) -> Option<String> {
        (self.lookup)(name)
            .filter(|v| !v.trim().is_empty())
            .or_else(|| Self::default_of(name).map(str::to_owned))
    }

    fn string(&self, name: &'static str) -> Result<String, SettingsError> {
        (self.lookup)(name)
            .or_else(|| Self::default_of(name).map(str::to_owned))
            .ok_or(SettingsError { name, message: "is required".to_owned() })
    }

    /// Comma-separated origins, each written as a browser sends it in `Origin`
    /// (`https://app.example.com`, `http://localhost:3000`): anything else would match no
    /// request, and `*` would hand every site the tenant's key.
    fn origins(&self, name: &'static str) -> Result<Vec<String>, SettingsError> {
        let raw = self.string(name)?;
        let origins: Vec<String> =
            raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        for origin in &origins {
            let as_sent = url::Url::parse(origin)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .map(|u| u.origin().ascii_serialization());
            if as_sent.as_deref() != Some(origin.as_str()) {
                return Err(SettingsError {
                    name,
                    message: format!(
                        "cannot use `{origin}`: each origin must be scheme://host[:port] as a \
                         browser sends it (no path, no trailing slash, no wildcard)"
                    ),
                });
            }
        }
        Ok(origins)
    }

    /// A Postgres connection string, as libpq would read it.
    fn conninfo(&self, name: &'static str) -> Result<String, SettingsError> {
        let value = self.string(name)?;
        match crate::conninfo::refusal(&value) {
            None => Ok(value),
            Some(message) => Err(SettingsError { name, message }),
        }
    }

    fn parse<T>(&self, name: &'static str) -> Result<T, SettingsError>
    where
        T: FromStr,
        T::Err: Display,
    {
        let raw = self.string(name)?;
        raw.trim()
            .parse()
            .map_err(|e| SettingsError { name, message: format!("cannot use `{raw}`: {e}") })
    }

    fn parse_where<T>(
        &self,
        name: &'static str,
        ok: impl Fn(&T) -> bool,
        rule: &str,
    ) -> Result<T, SettingsError>
    where
        T: FromStr,
        T::Err: Display,
    {
        let value = self.parse(name)?;
        if ok(&value) {
            Ok(value)
        } else {
            Err(SettingsError { name, message: format!("must be {rule}") })
        }
    }

    /// A variable without a default: `None` when unset or blank, else parsed and checked.
    fn parse_optional_where<T>(
        &self,
        name: &'static str,
        ok: impl Fn(&T) -> bool,
        rule: &str,
    ) -> Result<Option<T>, SettingsError>
    where
        T: FromStr,
        T::Err: Display,
    {
        if self.optional(name).is_none() {
            return Ok(None);
        }
        self.parse_where(name, ok, rule).map(Some)
    }

    fn positive_seconds(&self, name: &'static str) -> Result<Duration, SettingsError> {
        self.parse_where::<u64>(name, |n| *n >= 1, "at least 1 (seconds)").map(Duration::from_secs)
    }
}

/// A connection URL that may carry a password. Held as a [`SecretString`] (wiped from memory
/// when dropped, read only through [`ExposeSecret`]); its `Debug` shows the URL with the
/// password and the query masked, so that logs still say which server is meant.
#[derive(Clone)]
pub struct SecretUrl(SecretString);

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        Self(url.into())
    }
}

impl ExposeSecret<str> for SecretUrl {
    fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = match url::Url::parse(self.0.expose_secret()) {
            Ok(mut url) if url.has_host() => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("***"));
                }
                if url.query().is_some() {
                    url.set_query(Some("***"));
                }
                String::from(url)
            }
            // Not a URL with a host (a libpq `key=value` string, say): a password could be
            // anywhere in it.
            _ => "[REDACTED]".to_owned(),
        };
        write!(f, "{shown:?}")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn cors_origins_are_taken_as_a_browser_sends_them_and_nothing_else() {
        let s = with(&[("CORS_ALLOWED_ORIGINS", " https://a.example, http://localhost:3000 ,")]);
        assert_eq!(
            s.unwrap().api.cors_allowed_origins,
            ["https://a.example", "http://localhost:3000"]
        );
        for bad in
            ["*", "notaurl", "https://a.example/", "https://a.example/app", "ftp://a.example"]
        {
            let e = with(&[("CORS_ALLOWED_ORIGINS", bad)]).unwrap_err();
            assert_eq!(e.name, "CORS_ALLOWED_ORIGINS", "{bad}");
            assert!(e.message.contains(bad), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn defaults_work_against_local_services() {
        let s = with(&[]).unwrap();
        assert_eq!(s.api.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(s.queue.namespace, "portfolio-mc");
        assert_eq!(s.database.api_pool.max_size, 30);
        assert!(s.database.read_url.is_none(), "reads go to the primary unless a replica is set");
        assert!(s.api.cors_allowed_origins.is_empty());
        assert_eq!(s.job_limits.max_job_cost, 1_000_000 * 40 * 12);
        assert_eq!(s.job_limits.job_timeout, Duration::from_secs(600));
    }

    #[test]
    fn the_api_keeps_the_old_pool_and_a_worker_gets_one_connection_per_job_plus_two() {
        let s = with(&[]).unwrap();
        assert_eq!((s.database.api_pool.max_size(), s.database.api_pool.min_idle()), (30, 10));
        assert_eq!((s.database.worker_pool.max_size(), s.database.worker_pool.min_idle()), (4, 1));
        let s = with(&[("WORKER_CONCURRENCY", "6")]).unwrap();
        assert_eq!(s.database.worker_pool.max_size(), 8);
        assert_eq!(s.database.api_pool.max_size(), 30, "the API's pool ignores the concurrency");
        let s = with(&[("DB_POOL_MAX_SIZE", "12"), ("DB_POOL_MIN_IDLE", "3")]).unwrap();
        for pool in [s.database.api_pool, s.database.worker_pool] {
            assert_eq!((pool.max_size(), pool.min_idle()), (12, 3), "set, they apply to both");
        }
        let s = with(&[("DB_POOL_MAX_SIZE", " ")]).unwrap();
        assert_eq!(s.database.api_pool.max_size(), 30, "blank is unset");
        assert_eq!(with(&[("DB_POOL_MAX_SIZE", "0")]).unwrap_err().name, "DB_POOL_MAX_SIZE");
        assert_eq!(with(&[("DB_POOL_MIN_IDLE", "x")]).unwrap_err().name, "DB_POOL_MIN_IDLE");
        let e = with(&[("DB_POOL_MAX_SIZE", "5"), ("DB_POOL_MIN_IDLE", "6")]).unwrap_err();
        assert_eq!(e.name, "DB_POOL_MIN_IDLE");
    }

    #[test]
    fn the_api_drains_within_a_shorter_grace_than_a_worker() {
        let s = with(&[]).unwrap();
        assert_eq!(s.api.shutdown_grace, Duration::from_secs(API_SHUTDOWN_GRACE_SECS));
        assert_eq!(s.worker.shutdown_grace, Duration::from_secs(WORKER_SHUTDOWN_GRACE_SECS));
        let s = with(&[("SHUTDOWN_GRACE_SECS", "7")]).unwrap();
        assert_eq!(s.api.shutdown_grace, Duration::from_secs(7));
        assert_eq!(s.worker.shutdown_grace, Duration::from_secs(7));
        for refused in ["-1", "0", "1"] {
            let e = with(&[("SHUTDOWN_GRACE_SECS", refused)]).unwrap_err();
            assert_eq!(e.name, "SHUTDOWN_GRACE_SECS", "{refused}");
        }
    }

    #[test]
    fn a_postgres_url_libpq_cannot_read_stops_the_process_naming_its_variable() {
        for name in ["DATABASE_URL", "DATABASE_READ_URL"] {
            for (bad, why) in
                [("mysql://x", "(missing …)"), ("postgres://db/x?nosuchparam=1", "parameter …")]
            {
                let e = with(&[(name, bad)]).unwrap_err();
                assert_eq!(e.name, name, "{bad}");
                assert!(e.message.contains(why), "{bad}: {}", e.message);
            }
        }
        assert_eq!(with(&[("DATABASE_URL", "")]).unwrap_err().name, "DATABASE_URL");
        // A blank read URL is an unset one: reads go to the primary.
        assert!(with(&[("DATABASE_READ_URL", "")]).unwrap().database.read_url.is_none());
    }

    #[test]
    fn postgres_urls_turn_gssapi_encryption_off_unless_they_choose() {
        let url_of = |url: &str| {
            let s = with(&[("DATABASE_URL", url), ("DATABASE_READ_URL", url)]).unwrap();
            let read = s.database.read_url.as_ref().unwrap().expose_secret().to_owned();
            let primary = s.database.url.expose_secret().to_owned();
            assert_eq!(primary, read, "both URLs are read alike");
            primary
        };
        assert_eq!(url_of("postgres://db/x"), "postgres://db/x?gssencmode=disable");
        assert_eq!(
            url_of(" postgresql://db/x?sslmode=require\n"),
            "postgresql://db/x?sslmode=require&gssencmode=disable"
        );
        assert_eq!(url_of("host=db dbname=x"), "host=db dbname=x gssencmode=disable");
        for chosen in ["postgres://db/x?gssencmode=require", "host=db gssencmode=prefer"] {
            assert_eq!(url_of(chosen), chosen);
        }
        let default = with(&[]).unwrap();
        assert!(
            default.database.url.expose_secret().ends_with("sslmode=disable&gssencmode=disable")
        );
    }

    #[test]
    fn a_read_url_equal_to_the_primary_is_no_replica() {
        let primary = "postgres://app:pw@db:5432/x";
        assert!(!with(&[("DATABASE_URL", primary)]).unwrap().database.has_separate_replica());
        for same in [primary, " postgres://app:pw@db:5432/x\n"] {
            let s = with(&[("DATABASE_URL", primary), ("DATABASE_READ_URL", same)]).unwrap();
            assert!(!s.database.has_separate_replica(), "{same}");
        }
        for other in [
            "postgres://app:pw@replica:5432/x",
            "postgres://app:pw@db:5432/x?application_name=reports",
        ] {
            let s = with(&[("DATABASE_URL", primary), ("DATABASE_READ_URL", other)]).unwrap();
            assert!(s.database.has_separate_replica(), "{other}");
        }
    }

    #[test]
    fn light_jobs_fill_four_times_the_heavy_places_unless_told_and_never_fewer() {
        assert_eq!(with(&[]).unwrap().worker.light_concurrency, 8);
        assert_eq!(with(&[("WORKER_CONCURRENCY", "3")]).unwrap().worker.light_concurrency, 12);
        let told = [("WORKER_CONCURRENCY", "2"), ("WORKER_LIGHT_CONCURRENCY", "2")];
        assert_eq!(with(&told).unwrap().worker.light_concurrency, 2, "today's one limit for all");
        let err =
            with(&[("WORKER_CONCURRENCY", "4"), ("WORKER_LIGHT_CONCURRENCY", "3")]).unwrap_err();
        assert_eq!(err.name, "WORKER_LIGHT_CONCURRENCY");
        assert!(err.message.contains("at least WORKER_CONCURRENCY (4)"), "{}", err.message);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = with(&[("WORKER_CONCURRENCY", "lots")]).unwrap_err();
        assert_eq!(err.name, "WORKER_CONCURRENCY");
        let err = with(&[("QUEUE_DEPTH_CEILING", "9000")]).unwrap_err();
        assert_eq!(err.name, "QUEUE_DEPTH_CEILING");
        assert!(err.to_string().contains("QUEUE_DEPTH_CEILING"));
        let err = with(&[("LOG_FORMAT", "xml")]).unwrap_err();
        assert_eq!(err.name, "LOG_FORMAT");
        let err = with(&[("JOB_TIMEOUT_SECS", "0")]).unwrap_err();
        assert_eq!(err.name, "JOB_TIMEOUT_SECS");
        let err = with(&[("MAX_JOB_COST", "-1")]).unwrap_err();
        assert_eq!(err.name, "MAX_JOB_COST");
        // r2d2 would panic on the first two; the last two would run their loops back to back.
        for name in [
            "DB_POOL_TIMEOUT_SECS",
            "DB_POOL_MAX_LIFETIME_SECS",
            "RECONCILE_INTERVAL_SECS",
            "METRICS_PUBLISH_INTERVAL_SECS",
        ] {
            let err = with(&[(name, "0")]).unwrap_err();
            assert_eq!(err.name, name);
            assert!(err.message.contains("at least 1"), "{}", err.message);
        }
    }

    #[test]
    fn a_log_filter_tracing_cannot_read_names_rust_log() {
        for bad in ["info,portfolio_api=loud", "portfolio_api[{", "=debug"] {
            let err = with(&[("RUST_LOG", bad)]).unwrap_err();
            assert_eq!(err.name, "RUST_LOG", "{bad}");
            assert!(err.to_string().contains(bad), "{err}");
        }
        for good in ["info", "warn,portfolio_api=debug,apalis=off", ""] {
            assert!(with(&[("RUST_LOG", good)]).is_ok(), "{good}");
        }
    }

    #[test]
    fn keys_are_required_by_default_and_one_tenant_stays_below_the_ceiling() {
        let s = with(&[]).unwrap();
        assert_eq!(s.auth.mode, AuthMode::ApiKey);
        assert_eq!(s.auth.submits_per_minute, 120);
        assert_eq!(s.auth.reads_per_minute, 1200);
        assert_eq!(s.auth.max_unfinished_per_tenant, 200);
        assert!(s.auth.bootstrap_key.is_none());
        let err = with(&[("MAX_UNFINISHED_JOBS_PER_KEY", "5000")]).unwrap_err();
        assert_eq!(err.name, "MAX_UNFINISHED_JOBS_PER_KEY");
        assert!(err.to_string().contains("QUEUE_DEPTH_CEILING (5000)"), "{err}");
        let err = with(&[("AUTH_MODE", "none")]).unwrap_err();
        assert_eq!(err.name, "AUTH_MODE");
        let s = with(&[("AUTH_MODE", "disabled"), ("BOOTSTRAP_API_KEY", "pmc_x")]).unwrap();
        assert_eq!(s.auth.mode, AuthMode::Disabled);
        assert!(!format!("{s:?}").contains("pmc_x"), "the bootstrap key is never shown");
    }

    #[test]
    fn fault_injection_is_off_by_default_and_parses_its_list() {
        assert!(with(&[]).unwrap().worker.faults.is_empty());
        let s = with(&[("WORKER_FAULT_INJECTION", "panic:7, abort:9")]).unwrap();
        assert_eq!(s.worker.faults.for_seed(7), Some(Fault::Panic));
        assert_eq!(s.worker.faults.for_seed(9), Some(Fault::Abort));
        assert_eq!(s.worker.faults.for_seed(8), None);
        let err = with(&[("WORKER_FAULT_INJECTION", "explode:1")]).unwrap_err();
        assert_eq!(err.name, "WORKER_FAULT_INJECTION");
    }

    #[test]
    fn passwords_never_reach_debug_output() {
        let s = with(&[("DATABASE_URL", "postgres://app:hunter2@db/x")]).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://app:***@db/x"));
    }

    #[test]
    fn a_secret_url_shows_its_server_and_masks_passwords_wherever_they_may_be() {
        let shown = |url: &str| format!("{:?}", SecretUrl::from(url.to_owned()));
        assert_eq!(shown("redis://:s3cret@cache:6379"), r#""redis://:***@cache:6379""#);
        assert_eq!(shown("postgres://app@db:5432/x"), r#""postgres://app@db:5432/x""#);
        assert_eq!(shown("postgres://app@db/x?password=s3cret"), r#""postgres://app@db/x?***""#);
        assert_eq!(shown("host=db user=app password=s3cret"), r#""[REDACTED]""#);
        let url = SecretUrl::from("postgres://app:s3cret@db/x".to_owned());
        assert_eq!(url.expose_secret(), "postgres://app:s3cret@db/x");
    }
}
