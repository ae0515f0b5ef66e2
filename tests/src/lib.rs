#![doc = include_str!("../README.md")]

pub mod browser;
pub mod leftovers;
pub mod processes;
pub mod throwaway;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use diesel::pg::PgConnection;
use diesel::{Connection, RunQueryDsl};
use portfolio_api::auth::key::PresentedKey;
use portfolio_shared::queue::{Keys, QUEUE_REGISTRY};
use portfolio_shared::settings::{ExposeSecret, Settings};
use serde_json::Value;
use uuid::Uuid;

/// The shared server's admin database. TLS is off, as in the service's local default (the
/// Debian server has `ssl = on`), and so is libpq's probe for GSSAPI encryption, as the
/// service's settings turn it off: a test's own connections are then made as the service makes
/// its. With the probe on, a thread connecting while the process exits (an aborted `TestApp`'s
/// pool refilling against the test database its `TestDb` just dropped) is the likeliest cause
/// of the two test processes that crashed in CI after `test result: ok` (see
/// `settings::without_gss_probe`).
pub(crate) fn admin_url() -> String {
    std::env::var("TEST_PG_ADMIN_URL").unwrap_or_else(|_| {
        "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable&gssencmode=disable".into()
    })
}

pub(crate) fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Logs of the code under test go to the test's output when `RUST_LOG` is set.
pub(crate) fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("RUST_LOG") {
            portfolio_shared::telemetry::init(&portfolio_shared::settings::TelemetrySettings {
                filter: filter.parse().expect("RUST_LOG is a filter tracing can read"),
                format: portfolio_shared::settings::LogFormat::Pretty,
            });
        }
    });
}

/// A database of its own, dropped (with its connections) when the value is.
pub struct TestDb {
    pub(crate) name: String,
    pub url: String,
    admin: String,
}

impl TestDb {
    /// An empty database.
    pub fn empty() -> Self {
        Self::empty_on(&admin_url())
    }

    /// An empty database on the server of `admin` (a URL to any database there).
    pub fn empty_on(admin: &str) -> Self {
        let name = format!("pmc_test_{}", Uuid::new_v4().simple());
        let mut conn =
            PgConnection::establish(admin).expect("connect to the Postgres admin database");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .expect("create test database");
        Self { url: database_url(admin, &name), name, admin: admin.to_owned() }
    }

    /// A database with every migration applied.
    pub fn migrated() -> Self {
        let db = Self::empty();
        portfolio_shared::db::migrate(&db.url).expect("migrate test database");
        db
    }

    pub fn connect(&self) -> PgConnection {
        PgConnection::establish(&self.url).expect("connect to the test database")
    }
}

/// `url` naming database `name` instead, its query (`?sslmode=…`) kept.
fn database_url(url: &str, name: &str) -> String {
    let mut url = url::Url::parse(url).expect("the admin URL is a URL");
    url.set_path(name);
    url.into()
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&self.admin) {
            let _ =
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
                    .execute(&mut conn);
        }
    }
}

/// A queue namespace of its own; its Redis keys are deleted when the value is dropped.
pub struct TestQueue {
    pub namespace: String,
    pub redis_url: String,
    /// `REDIS_CA_FILE` of a `rediss://` server with a private CA.
    pub ca_file: Option<std::path::PathBuf>,
}

impl TestQueue {
    pub fn new() -> Self {
        Self::on(&redis_url())
    }

    pub fn on(redis_url: &str) -> Self {
        Self {
            namespace: format!("pmc-test-{}", Uuid::new_v4().simple()),
            redis_url: redis_url.to_owned(),
            ca_file: None,
        }
    }

    /// On a `rediss://` server whose certificate `ca_file` signed.
    pub fn on_tls(redis_url: &str, ca_file: &std::path::Path) -> Self {
        let mut queue = Self::on(redis_url);
        queue.ca_file = Some(ca_file.to_owned());
        queue
    }

    /// A client of the queue's server, trusting its CA file if it has one.
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        match &self.ca_file {
            None => redis::Client::open(self.redis_url.as_str()),
            Some(ca) => redis::Client::build_with_tls(
                self.redis_url.as_str(),
                redis::TlsCertificates { client_tls: None, root_cert: Some(std::fs::read(ca)?) },
            ),
        }
    }

    /// The Redis keys of this namespace.
    pub fn keys(&self) -> Keys {
        Keys::new(self.namespace.as_str())
    }

    pub fn connection(&self) -> redis::Connection {
        self.client().and_then(|c| c.get_connection()).expect("connect to Redis")
    }
}

impl Default for TestQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        let Ok(mut conn) = self.client().and_then(|c| c.get_connection()) else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.namespace))
            .query(&mut conn)
            .unwrap_or_default();
        for chunk in keys.chunks(500) {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query(&mut conn);
        }
        let _: redis::RedisResult<()> =
            redis::cmd("ZREM").arg(QUEUE_REGISTRY).arg(self.keys().workers_set()).query(&mut conn);
    }
}

/// Everything one test needs: its database, its queue namespace, and settings pointing at both.
/// When dropped it asserts that the test left no job unfinished and no queue entry behind
/// (see [`leftovers`]), unless the test said why it does ([`TestEnv::leaves_unfinished_jobs`]).
///
/// Every API it starts records the environment's own key ([`TestEnv::api_key`], tenant
/// `bootstrap`, both scopes; given as `BOOTSTRAP_API_KEY`), and every client sends it, so a
/// test that is not about identity need not think of it; [`TestEnv::key`] makes others.
pub struct TestEnv {
    pub db: TestDb,
    pub queue: TestQueue,
    overrides: HashMap<String, String>,
    leaves_unfinished: OnceLock<String>,
    api_key: String,
}

/// The tenant of [`TestEnv::api_key`].
pub const TEST_TENANT: &str = "bootstrap";

impl TestEnv {
    pub fn new() -> Self {
        init_logs();
        Self::with(TestDb::migrated(), TestQueue::new())
    }

    pub fn with(db: TestDb, queue: TestQueue) -> Self {
        Self {
            db,
            queue,
            overrides: HashMap::new(),
            leaves_unfinished: OnceLock::new(),
            api_key: PresentedKey::generate().reveal().to_owned(),
        }
    }

    /// The key every client of this environment sends (both scopes, tenant [`TEST_TENANT`]).
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// A new key of `tenant` with `scopes` (`simulate`, `operator`), recorded in this
    /// environment's database (migrated by then).
    pub fn key(&self, tenant: &str, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let (_, key) =
            portfolio_api::auth::keys_cli::issue(&mut self.db.connect(), tenant, &scopes)
                .expect("make a test key");
        key.reveal().to_owned()
    }

    /// Says that this test leaves jobs unfinished or entries in its queue on purpose, and why;
    /// the check when the environment is dropped is then skipped.
    pub fn leaves_unfinished_jobs(&self, why: &str) {
        let _ = self.leaves_unfinished.set(why.to_owned());
    }

    /// Sets a settings variable for every app and worker started from this environment.
    pub fn set(&mut self, name: &str, value: impl ToString) -> &mut Self {
        self.overrides.insert(name.to_owned(), value.to_string());
        self
    }

    /// The environment variables a process of this test runs with.
    pub fn vars(&self) -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = [
            ("DATABASE_URL", self.db.url.clone()),
            ("REDIS_URL", self.queue.redis_url.clone()),
            ("QUEUE_NAMESPACE", self.queue.namespace.clone()),
            ("API_BIND", "127.0.0.1:0".into()),
            ("METRICS_BIND", "127.0.0.1:0".into()),
            ("DB_POOL_MAX_SIZE", "4".into()),
            ("DB_POOL_MIN_IDLE", "0".into()),
            ("DB_POOL_TIMEOUT_SECS", "5".into()),
            ("WORKER_POLL_INTERVAL_MS", "50".into()),
            ("WORKER_HEARTBEAT_SECS", "1".into()),
            ("WORKER_MISSED_HEARTBEATS", "3".into()),
            ("WORKER_THREADS", "2".into()),
            ("RECONCILE_INTERVAL_SECS", "1".into()),
            ("SHUTDOWN_GRACE_SECS", "10".into()),
            ("LOG_FORMAT", "pretty".into()),
            ("BOOTSTRAP_API_KEY", self.api_key.clone()),
            // Limits a test does not meet unless it is about them.
            ("RATE_LIMIT_SUBMITS_PER_MINUTE", "1000000".into()),
            ("RATE_LIMIT_READS_PER_MINUTE", "1000000".into()),
            // Off unless a test is about it: most tests resubmit one seeded request on purpose
            // and mean each submit to run (tests/it/result_cache.rs turns it on).
            ("RESULT_CACHE_TTL_SECS", "0".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(ca) = &self.queue.ca_file {
            vars.insert("REDIS_CA_FILE".to_owned(), ca.display().to_string());
        }
        vars.extend(self.overrides.clone());
        // One tenant may fill the queue up to just below its ceiling, unless the test says.
        if !self.overrides.contains_key("MAX_UNFINISHED_JOBS_PER_KEY") {
            let ceiling: u64 =
                vars.get("QUEUE_DEPTH_CEILING").and_then(|c| c.parse().ok()).unwrap_or(5000);
            vars.insert("MAX_UNFINISHED_JOBS_PER_KEY".into(), (ceiling - 1).max(1).to_string());
        }
        vars
    }

    pub fn settings(&self) -> Settings {
        let vars = self.vars();
        Settings::from_lookup(|k| vars.get(k).cloned()).expect("test settings are valid")
    }

    /// Starts an API in this process.
    pub async fn spawn_app(&self) -> TestApp {
        TestApp::spawn(self.settings()).await
    }

    /// Starts a worker in this process.
    pub async fn spawn_worker(&self) -> TestWorker {
        TestWorker::spawn(self.settings()).await
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if std::thread::panicking() || self.leaves_unfinished.get().is_some() {
            return;
        }
        let left =
            self.queue.client().map_err(|e| format!("Redis: {e}")).and_then(|redis| {
                leftovers::left_behind_on(&self.db.url, &redis, &self.queue.keys())
            });
        match left {
            Ok(left) if left.is_empty() => {}
            Ok(left) => panic!(
                "the test left {} thing(s) behind:\n  {}\nWait for the jobs to end, or say why \
                 with `env.leaves_unfinished_jobs(\"...\")`.",
                left.len(),
                left.join("\n  ")
            ),
            Err(e) => panic!(
                "could not check what the test left behind ({e}); if the test takes a server \
                 away for good, say so with `env.leaves_unfinished_jobs(\"...\")`"
            ),
        }
    }
}

/// An HTTP client of one API, in this process ([`TestApp`]) or a child process
/// ([`processes::ApiProc`]). It sends its key (`Authorization: Bearer`) with every request.
#[derive(Clone)]
pub struct ApiClient {
    pub address: String,
    pub client: reqwest::Client,
    /// Where the API serves `/metrics` (its `METRICS_BIND`).
    pub metrics_address: String,
}

/// The environment variable under which a process's vars carry its clients' key.
pub(crate) const KEY_VAR: &str = "BOOTSTRAP_API_KEY";

impl ApiClient {
    /// A client of the API at `address`, sending `key` (none if `None`), once the API answers
    /// /health.
    pub(crate) async fn connect(
        address: String,
        metrics_address: String,
        key: Option<&str>,
        within: Duration,
    ) -> Self {
        let me = Self { address, client: http_client(key), metrics_address };
        eventually(within, || async {
            me.client.get(me.url("/health")).send().await.ok().filter(|r| r.status().is_success())
        })
        .await;
        me
    }

    /// The same API through a client that sends `key` instead.
    pub fn as_key(&self, key: &str) -> Self {
        Self { client: http_client(Some(key)), ..self.clone() }
    }

    /// The same API through a client that sends no key.
    pub fn anonymous(&self) -> Self {
        Self { client: http_client(None), ..self.clone() }
    }

    /// The API's Prometheus metrics, as text, from its metrics listener (`METRICS_BIND`): the
    /// one place tests read them from.
    pub async fn metrics_text(&self) -> String {
        let response = self
            .client
            .get(format!("{}/metrics", self.metrics_address))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), 200, "GET /metrics");
        response.text().await.expect("metrics text")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// POSTs a JSON body to /simulations; `Err` if no HTTP answer came.
    pub async fn try_submit(&self, body: &Value) -> reqwest::Result<reqwest::Response> {
        self.client.post(self.url("/simulations")).json(body).send().await
    }

    /// POSTs a JSON body to /simulations.
    pub async fn submit(&self, body: &Value) -> reqwest::Response {
        self.try_submit(body).await.expect("POST /simulations")
    }

    /// Submits and returns the job id, asserting the 202.
    pub async fn submit_ok(&self, body: &Value) -> Uuid {
        let response = self.submit(body).await;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, 202, "submit refused: {text}");
        processes::accepted_id(&text)
    }

    /// GET /results/{id} as JSON, asserting the 200.
    pub async fn job(&self, id: Uuid) -> Value {
        let response = self
            .client
            .get(self.url(&format!("/results/{id}")))
            .send()
            .await
            .expect("GET /results");
        assert_eq!(response.status(), 200, "GET /results/{id}");
        response.json().await.expect("JSON")
    }

    /// Polls until the job is in a terminal state; returns it.
    pub async fn wait_terminal(&self, id: Uuid, within: Duration) -> Value {
        eventually(within, || async {
            let job = self.job(id).await;
            matches!(job["status"].as_str(), Some("succeeded" | "failed" | "cancelled"))
                .then_some(job)
        })
        .await
    }
}

/// An API served from this process on a free port.
pub struct TestApp {
    api: ApiClient,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    pub(crate) async fn spawn(settings: Settings) -> Self {
        let key = settings.auth.bootstrap_key.as_ref().map(|k| k.expose_secret().to_owned());
        let app = portfolio_api::startup::Application::build(settings).expect("build the API");
        let address = format!("http://127.0.0.1:{}", app.port());
        let metrics_address = format!("http://127.0.0.1:{}", app.metrics_port());
        let task = tokio::spawn(app.run_until_stopped());
        let api =
            ApiClient::connect(address, metrics_address, key.as_deref(), Duration::from_secs(10))
                .await;
        Self { api, task }
    }

    /// Stops serving (like a crash of the API process: nothing is flushed).
    pub fn kill(self) {
        self.task.abort();
    }
}

/// Tests talk to the app through its client.
impl std::ops::Deref for TestApp {
    type Target = ApiClient;

    fn deref(&self) -> &ApiClient {
        &self.api
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A worker running in this process.
pub struct TestWorker {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub name: String,
}

impl TestWorker {
    pub(crate) async fn spawn(settings: Settings) -> Self {
        let worker =
            portfolio_worker::supervisor::Worker::build(settings).expect("build the worker");
        let name = worker.name().to_owned();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(worker.run_until(async move {
            let _ = rx.await;
        }));
        Self { stop: Some(tx), task: Some(task), name }
    }

    /// Signals a graceful shutdown and waits for the worker to finish it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.take().expect("running").await.context("worker task")?
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A reqwest client sending `key` as a Bearer token with every request.
fn http_client(key: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = key {
        let value = format!("Bearer {key}").parse().expect("a key is a valid header value");
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .default_headers(headers)
        .build()
        .expect("client")
}

/// Calls `probe` until it returns `Some`, at most for `within`; panics with a timeout
/// otherwise. The interval is short: this awaits a condition, it does not pace the test.
pub async fn eventually<T, F, Fut>(within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "condition not met within {within:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Path of one of the workspace's binaries (built by the test script before the suite).
pub(crate) fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/it-<hash>
    let dir = exe.parent().and_then(|p| p.parent()).expect("target profile directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --bins`, as deploy/scripts/test does)",
        path.display()
    );
    path
}

/// Asserts that `response` is a problem document (RFC 9457) of `status`, and returns it.
pub async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem JSON");
    for key in ["type", "title", "status", "detail"] {
        assert!(body.get(key).is_some(), "problem lacks `{key}`: {body}");
    }
    assert_eq!(body["status"], status);
    body
}

/// A small valid request.
pub fn small_request() -> Value {
    serde_json::json!({
        "starting_portfolio": 1_000_000,
        "monthly_spending": 4_000,
        "years": 30,
        "n_scenarios": 2_000,
    })
}

/// A job's stored result as the text of each column that can hold it:
/// `(result, document)`, the jsonb column of earlier releases and the json one of this.
pub fn stored_result_columns(
    conn: &mut PgConnection,
    id: Uuid,
) -> (Option<String>, Option<String>) {
    #[derive(diesel::QueryableByName)]
    struct Columns {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        result: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        document: Option<String>,
    }
    let columns: Columns = diesel::sql_query(
        "SELECT result::text AS result, document::text AS document FROM simulation_results \
         WHERE simulation_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .get_result(conn)
    .expect("the job's result row");
    (columns.result, columns.document)
}
