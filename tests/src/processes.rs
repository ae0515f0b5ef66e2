//! The API and workers as real processes (the built binaries, started with a test's
//! environment), for the fault tests: they are killed with SIGKILL, stopped with SIGTERM, and
//! their exit codes and logs are asserted on. Every process is killed when its handle drops;
//! a failing test prints the tail of each process's log.
//!
//! Also the contract every fault test ends with, checked in SQL: each accepted job reached
//! exactly one terminal state, with exactly one terminal audit row and a result row exactly when
//! it succeeded, and no job the API did not accept exists.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use portfolio_shared::queue::{Keys, RedisTarget};
use portfolio_shared::settings::Settings;
use serde_json::Value;
use tempfile::TempDir;
use uuid::Uuid;

use crate::throwaway::free_port;
use crate::{ApiClient, binary, eventually};

/// Where the processes of one test write their logs; lives as long as any of them.
#[derive(Clone)]
pub struct LogDir(Arc<TempDir>);

impl LogDir {
    pub fn new() -> Self {
        Self(Arc::new(tempfile::tempdir().expect("temp dir for process logs")))
    }

    fn path(&self, label: &str) -> PathBuf {
        self.0.path().join(format!("{label}.log"))
    }
}

impl Default for LogDir {
    fn default() -> Self {
        Self::new()
    }
}

/// A child process of the test; SIGKILLed on drop.
pub struct Proc {
    pub(crate) label: String,
    child: Child,
    log: PathBuf,
    exit: Option<ExitStatus>,
    _dir: LogDir,
}

impl Proc {
    /// Starts `binary` with exactly `vars` as its environment (plus PATH), logging to a file.
    pub fn spawn(
        name: &str,
        args: &[&str],
        vars: &HashMap<String, String>,
        logs: &LogDir,
        label: &str,
    ) -> Self {
        let log = logs.path(label);
        let out = File::create(&log).expect("create the process log");
        let err = out.try_clone().expect("clone the log handle");
        let child = command(name, args, vars)
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self { label: label.to_owned(), child, log, exit: None, _dir: logs.clone() }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (what ECS and Kubernetes send to stop a task).
    pub fn sigterm(&self) {
        self.signal("-TERM");
    }

    /// Freezes it (`SIGSTOP`): it keeps its connections and does nothing, as a paused VM does,
    /// until [`Self::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().expect("run kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// SIGKILL: the process dies at once, flushing nothing (a crash, an OOM kill, a lost host).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        self.exit = self.child.wait().ok();
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("try_wait");
        }
        self.exit.is_none()
    }

    /// Waits for it to exit, at most `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        while self.is_running() {
            assert!(Instant::now() < deadline, "{} still running after {within:?}", self.label);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.exit.expect("exited")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "----- last lines of {} ({}) -----\n{}",
                self.label,
                self.log.display(),
                tail.join("\n")
            );
        }
    }
}

/// Runs one of the binaries to its end (a command line tool, like `portfolio-api keys`) with
/// exactly `vars` as its environment (plus PATH), keeping standard output and error apart.
pub fn run_to_end(name: &str, args: &[&str], vars: &HashMap<String, String>) -> Output {
    command(name, args, vars).output().unwrap_or_else(|e| panic!("running {name}: {e}"))
}

/// One of the binaries with `args`, exactly `vars` as its environment (plus PATH), no input.
fn command(name: &str, args: &[&str], vars: &HashMap<String, String>) -> Command {
    let mut command = Command::new(binary(name));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .envs(vars)
        .stdin(Stdio::null());
    command
}

/// `portfolio-api` as a process, on a port of its own.
pub struct ApiProc {
    pub proc: Proc,
    api: ApiClient,
}

impl ApiProc {
    /// Starts it and waits until it answers /health.
    pub async fn spawn(vars: &HashMap<String, String>, logs: &LogDir) -> Self {
        let port = free_port();
        let metrics_port = free_port();
        let mut vars = vars.clone();
        vars.insert("API_BIND".into(), format!("127.0.0.1:{port}"));
        vars.insert("METRICS_BIND".into(), format!("127.0.0.1:{metrics_port}"));
        let proc = Proc::spawn("portfolio-api", &["serve"], &vars, logs, "api");
        let api = ApiClient::connect(
            format!("http://127.0.0.1:{port}"),
            format!("http://127.0.0.1:{metrics_port}"),
            vars.get(crate::KEY_VAR).map(String::as_str),
            Duration::from_secs(20),
        )
        .await;
        Self { proc, api }
    }
}

/// Tests talk to the process through its client.
impl std::ops::Deref for ApiProc {
    type Target = ApiClient;

    fn deref(&self) -> &ApiClient {
        &self.api
    }
}

/// The job id of a 202 body.
pub fn accepted_id(body: &str) -> Uuid {
    let json: Value = serde_json::from_str(body).expect("JSON");
    json["id"].as_str().expect("id").parse().expect("uuid")
}

/// `portfolio-worker` as a process, with a name of its own.
pub struct WorkerProc {
    pub proc: Proc,
    pub name: String,
}

impl WorkerProc {
    /// Starts it and waits until it has registered with the queue.
    pub async fn spawn(vars: &HashMap<String, String>, logs: &LogDir, label: &str) -> Self {
        let name = format!("{label}-{}", &Uuid::new_v4().simple().to_string()[..8]);
        let mut vars = vars.clone();
        vars.insert("WORKER_NAME".into(), name.clone());
        let proc = Proc::spawn("portfolio-worker", &["run"], &vars, logs, label);
        let me = Self { proc, name };
        // Read as the worker reads it: REDIS_URL may name Sentinels or need REDIS_CA_FILE.
        let settings = Settings::from_lookup(|name| vars.get(name).cloned()).expect("settings");
        let target = RedisTarget::new(&settings.queue).expect("REDIS_URL");
        let key = Keys::new(vars["QUEUE_NAMESPACE"].as_str()).workers_set();
        let name = me.name.clone();
        eventually(Duration::from_secs(20), || {
            let (target, key, name) = (target.clone(), key.clone(), name.clone());
            async move {
                let mut conn =
                    target.client().await.ok()?.get_multiplexed_async_connection().await.ok()?;
                let score: Option<f64> =
                    redis::cmd("ZSCORE").arg(key).arg(name).query_async(&mut conn).await.ok()?;
                score.map(drop)
            }
        })
        .await;
        me
    }

    /// Log lines saying the apalis worker inside was restarted (it ended on an error).
    pub fn restarts(&self) -> usize {
        self.proc.log().matches("worker ended; restarting under a new name").count()
    }
}

/// A simulation request that takes roughly `scenarios × years × 12` scenario-months.
pub fn job_body(scenarios: u32, years: u32) -> Value {
    serde_json::json!({
        "starting_portfolio": 1_000_000,
        "monthly_spending": 4_000,
        "years": years,
        "n_scenarios": scenarios,
    })
}

/// One job as the contract sees it.
#[derive(Debug, Clone, QueryableByName)]
pub struct JobRecord {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    #[expect(dead_code, reason = "shown when a job breaks the contract")]
    pub(crate) error: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub worker: Option<String>,
    #[diesel(sql_type = Integer)]
    pub progress_done: i32,
    /// Rows in `simulation_results`.
    #[diesel(sql_type = BigInt)]
    pub(crate) results: i64,
    /// `succeeded`, `failed` and `cancelled` audit rows.
    #[diesel(sql_type = BigInt)]
    pub(crate) terminal_audits: i64,
    /// The terminal audit event (the first, if there were several).
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) terminal_event: Option<String>,
    /// `started` audit rows: one per attempt that ran.
    #[diesel(sql_type = BigInt)]
    pub starts: i64,
}

/// Every job in the database, with what the contract counts.
pub fn job_records(conn: &mut PgConnection) -> Vec<JobRecord> {
    diesel::sql_query(
        "SELECT s.id, s.status, s.attempts, s.error, s.worker, s.progress_done,
                CASE WHEN s.kind = 'sweep'
                     -- A sweep's result is its cells: all of them, or it has none.
                     THEN (SELECT (count(*) = s.progress_total)::int::int8 FROM sweep_cells c
                           WHERE c.sweep_id = s.id)
                     ELSE (SELECT count(*) FROM simulation_results r WHERE r.simulation_id = s.id)
                END AS results,
                (SELECT count(*) FROM audit_logs a WHERE a.simulation_id = s.id
                   AND a.event IN ('succeeded', 'failed', 'cancelled')) AS terminal_audits,
                (SELECT a.event FROM audit_logs a WHERE a.simulation_id = s.id
                   AND a.event IN ('succeeded', 'failed', 'cancelled')
                   ORDER BY a.id LIMIT 1) AS terminal_event,
                (SELECT count(*) FROM audit_logs a WHERE a.simulation_id = s.id
                   AND a.event = 'started') AS starts
         FROM simulations s WHERE s.kind <> 'unit' ORDER BY s.created_at",
    )
    .load(conn)
    .expect("read the jobs")
}

/// Jobs not yet in a terminal state.
pub(crate) fn unfinished(conn: &mut PgConnection) -> i64 {
    count(conn, "SELECT count(*) AS n FROM simulations WHERE status IN ('queued', 'running')")
}

/// The one `bigint` column `n` of the one row `sql` returns: a count.
pub fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query(sql).get_result::<Count>(conn).unwrap_or_else(|e| panic!("{sql}: {e}")).n
}

/// Waits until no job of the database at `url` is queued or running (tolerating Postgres
/// being away meanwhile).
pub async fn wait_settled(url: &str, within: Duration) {
    eventually(within, || async {
        let mut conn = PgConnection::establish(url).ok()?;
        (unfinished(&mut conn) == 0).then_some(())
    })
    .await;
}

/// The guarantee of issue 4, asserted in SQL: the jobs in the database are exactly `accepted`;
/// each is terminal, with exactly one terminal audit row matching its status, and one result
/// row if it succeeded (none otherwise). Returns the records for further assertions.
pub fn assert_contract(url: &str, accepted: &[Uuid]) -> Vec<JobRecord> {
    let mut conn = PgConnection::establish(url).expect("connect to the test database");
    let records = job_records(&mut conn);
    let mut stored: Vec<Uuid> = records.iter().map(|r| r.id).collect();
    let mut expected = accepted.to_vec();
    stored.sort();
    expected.sort();
    assert_eq!(stored.len(), expected.len(), "jobs recorded vs jobs accepted (202)");
    assert_eq!(stored, expected, "the recorded jobs are not the accepted ones");
    let mut broken = Vec::new();
    for r in &records {
        let terminal = matches!(r.status.as_str(), "succeeded" | "failed" | "cancelled");
        let results_ok = if r.status == "succeeded" { r.results == 1 } else { r.results == 0 };
        if !terminal
            || !results_ok
            || r.terminal_audits != 1
            || r.terminal_event.as_deref() != Some(r.status.as_str())
        {
            broken.push(format!("{r:?}"));
        }
    }
    assert!(
        broken.is_empty(),
        "{} job(s) break the contract:\n{}",
        broken.len(),
        broken.join("\n")
    );
    records
}

/// Serialises the fault tests across test processes (nextest runs each test in a process of
/// its own): they start several processes each and assert on timings, which two of them
/// sharing a small machine would make flaky.
pub struct FaultLock(#[expect(dead_code, reason = "held for its lock")] File);

pub fn fault_lock() -> FaultLock {
    let path = std::env::temp_dir().join("portfolio-mc-fault-tests.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .expect("open the fault-test lock file");
    file.lock().expect("take the fault-test lock");
    FaultLock(file)
}

/// One audit row.
#[derive(Debug, Clone, QueryableByName)]
pub struct AuditRow {
    #[diesel(sql_type = Text)]
    pub event: String,
    #[diesel(sql_type = Text)]
    pub actor: String,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    pub data: Value,
}

/// The audit trail of a job, oldest first.
pub fn audit_rows(url: &str, id: Uuid) -> Vec<AuditRow> {
    let mut conn = PgConnection::establish(url).expect("connect to the test database");
    diesel::sql_query(
        "SELECT event, actor, created_at, data FROM audit_logs WHERE simulation_id = $1 ORDER BY id",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .load(&mut conn)
    .expect("read the audit trail")
}

/// A job's record, if Postgres answers.
pub fn job_record(url: &str, id: Uuid) -> Option<JobRecord> {
    let mut conn = PgConnection::establish(url).ok()?;
    job_records(&mut conn).into_iter().find(|r| r.id == id)
}
