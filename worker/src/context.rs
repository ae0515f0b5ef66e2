//! What every job handler shares in a worker process: the Postgres pool, the queue (for
//! re-scheduling), the engine's thread pool, metrics, and the jobs this process is handling
//! (with their cancel flags, which a graceful shutdown raises to hand unfinished jobs back).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use diesel::pg::PgConnection;
use diesel::result::Error as DieselError;
use portfolio_shared::db::PgPool;
use portfolio_shared::db_error;
use portfolio_shared::queue::Queue;
use portfolio_shared::settings::Settings;
use portfolio_shared::telemetry::spawn_blocking_with_tracing;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::admission::Places;
use crate::engine_pools::EnginePools;
use crate::metrics::WorkerMetrics;

/// Waits between attempts of a database call while Postgres is away: 0.2 s, doubling, at most
/// 2 s, for as long as the caller's patience lasts.
const DB_RETRY: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(200))
    .with_max_delay(Duration::from_secs(2))
    .with_factor(2.0)
    .without_max_times();
/// How long a claim keeps retrying before leaving the job to the queue and the reconciler.
const CLAIM_PATIENCE: Duration = Duration::from_secs(60);
/// How long one database call waits for a pooled connection.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct JobContext {
    pub(crate) pool: PgPool,
    pub(crate) queue: Queue,
    pub(crate) settings: Settings,
    pub(crate) metrics: Arc<WorkerMetrics>,
    pub(crate) engine_pools: Arc<EnginePools>,
    /// This process's name: the `worker` of the jobs it holds in Postgres. Stable across the
    /// restarts of its apalis worker, whose names carry a generation suffix.
    name: String,
    /// Jobs this process is handling, from delivery to outcome, with their cancel flags.
    jobs: Mutex<HashMap<Uuid, Arc<AtomicBool>>>,
    idle: Notify,
    /// Rung by the doorbell's subscriber when a job becomes ready (see `crate::doorbell`).
    pub(crate) bell: Arc<Notify>,
    /// Heavy and light places for deliveries (see `crate::admission`).
    pub(crate) places: Arc<Places>,
    /// Engines run under its read side; a job whose last attempt died with its process runs
    /// under the write side, alone, so that a crash is charged to the job that caused it and
    /// not to one that happened to share the process (which would otherwise ride along with
    /// the culprit from re-delivery to re-delivery and be failed with it). The claim, made
    /// under the read side, says when a job must run alone (`Claim::MustRunAlone`, nothing
    /// claimed); the write side is then taken before claiming again, so a job that only waits
    /// for it is charged no attempt.
    pub(crate) isolation: tokio::sync::RwLock<()>,
    handing_back: AtomicBool,
    /// When set, database calls stop retrying (the process is about to exit).
    hard_deadline: Mutex<Option<Instant>>,
}

/// Why a database call gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DbGaveUp {
    /// An error retrying cannot fix (a constraint, a query bug).
    Permanent(String),
    /// Postgres stayed unavailable past the patience or the shutdown deadline.
    Unavailable,
}

/// One job handled by this process; dropping it (the job's task ended, however) forgets it.
pub(crate) struct JobGuard {
    ctx: Arc<JobContext>,
    pub(crate) id: Uuid,
    /// Raised to stop the engine between batches (cancel requested, or hand-back).
    pub(crate) cancel: Arc<AtomicBool>,
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        // Stops an engine still running (the task was aborted or panicked).
        self.cancel.store(true, Ordering::SeqCst);
        let mut jobs = self.ctx.jobs.lock().expect("lock");
        jobs.remove(&self.id);
        if jobs.is_empty() {
            self.ctx.idle.notify_waiters();
        }
    }
}

impl JobContext {
    pub(crate) fn new(
        name: String,
        pool: PgPool,
        queue: Queue,
        settings: Settings,
        metrics: Arc<WorkerMetrics>,
        engine_pools: Arc<EnginePools>,
    ) -> Self {
        let places = Places::new(settings.worker.concurrency, settings.worker.light_concurrency);
        Self {
            pool,
            queue,
            settings,
            metrics,
            engine_pools,
            name,
            jobs: Mutex::new(HashMap::new()),
            idle: Notify::new(),
            bell: Arc::new(Notify::new()),
            places,
            isolation: tokio::sync::RwLock::new(()),
            handing_back: AtomicBool::new(false),
            hard_deadline: Mutex::new(None),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn orphan_window(&self) -> Duration {
        self.settings.worker.orphan_window()
    }

    /// Starts handling `id`; `None` if this process already is (a duplicate delivery).
    pub(crate) fn begin(self: &Arc<Self>, id: Uuid) -> Option<JobGuard> {
        let cancel = Arc::new(AtomicBool::new(self.handing_back()));
        let mut jobs = self.jobs.lock().expect("lock");
        if jobs.contains_key(&id) {
            return None;
        }
        jobs.insert(id, cancel.clone());
        Some(JobGuard { ctx: self.clone(), id, cancel })
    }

    pub(crate) fn running_jobs(&self) -> usize {
        self.jobs.lock().expect("lock").len()
    }

    pub(crate) fn running_ids(&self) -> Vec<Uuid> {
        self.jobs.lock().expect("lock").keys().copied().collect()
    }

    /// Resolves once this process handles no job.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.running_jobs() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Stops every running engine between batches; their handlers hand the jobs back, and
    /// jobs delivered from now on are handed back before they start.
    pub(crate) fn hand_back_all(&self) {
        self.handing_back.store(true, Ordering::SeqCst);
        for flag in self.jobs.lock().expect("lock").values() {
            flag.store(true, Ordering::SeqCst);
        }
    }

    pub(crate) fn handing_back(&self) -> bool {
        self.handing_back.load(Ordering::SeqCst)
    }

    pub(crate) fn set_hard_deadline(&self, at: Instant) {
        *self.hard_deadline.lock().expect("lock") = Some(at);
    }

    fn past_deadline(&self) -> bool {
        self.hard_deadline.lock().expect("lock").is_some_and(|d| Instant::now() >= d)
    }

    /// Whether shutdown has begun (the deadline is set when it does).
    fn stopping(&self) -> bool {
        self.hard_deadline.lock().expect("lock").is_some()
    }

    /// One attempt of a database call on a blocking thread.
    pub(crate) async fn db_once<T, F>(&self, f: F) -> Result<T, DbFailure>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, DieselError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let outcome = spawn_blocking_with_tracing(move || -> Result<T, DbFailure> {
            let mut conn = pool.get_timeout(CHECKOUT_TIMEOUT).map_err(|e| DbFailure {
                transient: true,
                sent: false,
                message: e.to_string(),
            })?;
            f(&mut conn).map_err(|e| DbFailure {
                sent: true,
                transient: db_error::is_transient(&e),
                message: e.to_string(),
            })
        })
        .await;
        match outcome {
            Ok(result) => result,
            Err(e) => Err(DbFailure {
                transient: false,
                sent: true,
                message: format!("database task: {e}"),
            }),
        }
    }

    /// Retries a database call with back-off while Postgres is unavailable, for up to
    /// `CLAIM_PATIENCE` (and never past the shutdown deadline).
    pub(crate) async fn db_retrying<T, F>(&self, what: &str, f: F) -> Result<T, DbGaveUp>
    where
        F: Fn(&mut PgConnection) -> Result<T, DieselError> + Send + Sync + 'static,
        T: Send + 'static,
    {
        self.retry(what, Some(Instant::now() + CLAIM_PATIENCE), false, f).await
    }

    /// [`Self::db_retrying`] for a claim, which also stops retrying once shutdown has begun and
    /// no connection could be had: the delivery goes back to the queue (for a few seconds
    /// later), rather than hold the drain for up to `CLAIM_PATIENCE` with nothing running. A
    /// claim that reached Postgres is retried as before, since it may have committed with its
    /// reply lost: found again under its token, it is handed back uncounted.
    pub(crate) async fn db_claiming<T, F>(&self, f: F) -> Result<T, DbGaveUp>
    where
        F: Fn(&mut PgConnection) -> Result<T, DieselError> + Send + Sync + 'static,
        T: Send + 'static,
    {
        self.retry("claim", Some(Instant::now() + CLAIM_PATIENCE), true, f).await
    }

    /// Retries until it succeeds or the process must exit: a computed result is kept and
    /// written once Postgres is back.
    pub(crate) async fn db_retrying_until_shutdown<T, F>(
        &self,
        what: &str,
        f: F,
    ) -> Result<T, DbGaveUp>
    where
        F: Fn(&mut PgConnection) -> Result<T, DieselError> + Send + Sync + 'static,
        T: Send + 'static,
    {
        self.retry(what, None, false, f).await
    }

    async fn retry<T, F>(
        &self,
        what: &str,
        give_up_at: Option<Instant>,
        not_when_stopping: bool,
        f: F,
    ) -> Result<T, DbGaveUp>
    where
        F: Fn(&mut PgConnection) -> Result<T, DieselError> + Send + Sync + 'static,
        T: Send + 'static,
    {
        let f = Arc::new(f);
        let call = || {
            let f = f.clone();
            self.db_once(move |conn| f(conn))
        };
        let outcome = call
            .retry(DB_RETRY)
            .when(|failure| {
                failure.transient
                    && !self.past_deadline()
                    && give_up_at.is_none_or(|t| Instant::now() < t)
                    && !(not_when_stopping && self.stopping() && !failure.sent)
            })
            .notify(|failure, wait| {
                tracing::info!(
                    what,
                    error = %failure.message,
                    retry_in_ms = wait.as_millis() as u64,
                    "database unavailable; retrying"
                );
            })
            .await;
        outcome.map_err(|failure| {
            if failure.transient {
                tracing::warn!(what, error = %failure.message, "giving up on the database for now");
                DbGaveUp::Unavailable
            } else {
                tracing::error!(what, error = %failure.message, "database call failed for good");
                DbGaveUp::Permanent(failure.message)
            }
        })
    }
}

/// A failed database call.
#[derive(Debug, Clone)]
pub(crate) struct DbFailure {
    /// Whether trying again later may succeed (Postgres away, a lost connection, a deadlock):
    /// [`db_error::is_transient`], or a connection the pool could not hand out in time.
    pub(crate) transient: bool,
    /// Whether the call reached Postgres at all (it had a connection): one that did may have
    /// taken effect though its reply was lost.
    pub(crate) sent: bool,
    pub(crate) message: String,
}
