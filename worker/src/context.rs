//! What every job handler shares in a worker process: the Postgres pool, the queue (for
//! re-scheduling), the engine's thread pool, metrics, and the running jobs' cancel flags (which
//! a graceful shutdown raises to hand unfinished jobs back).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::pg::PgConnection;
use diesel::result::Error as DieselError;
use portfolio_shared::db::PgPool;
use portfolio_shared::queue::Queue;
use portfolio_shared::settings::Settings;
use portfolio_shared::telemetry::spawn_blocking_with_tracing;
use uuid::Uuid;

use crate::metrics::WorkerMetrics;

/// Waits between attempts of a database call while Postgres is away.
const DB_RETRY_MIN: Duration = Duration::from_millis(200);
const DB_RETRY_MAX: Duration = Duration::from_secs(5);
/// How long a claim keeps retrying before leaving the job to the reconciler.
const CLAIM_PATIENCE: Duration = Duration::from_secs(60);

pub struct JobContext {
    pub pool: PgPool,
    pub queue: Queue,
    pub settings: Settings,
    pub metrics: Arc<WorkerMetrics>,
    pub engine_pool: Arc<rayon::ThreadPool>,
    running: Mutex<HashMap<Uuid, Arc<AtomicBool>>>,
    handing_back: AtomicBool,
    /// When set, writes stop retrying (the process is about to exit).
    hard_deadline: Mutex<Option<Instant>>,
}

impl JobContext {
    pub fn new(
        pool: PgPool,
        queue: Queue,
        settings: Settings,
        metrics: Arc<WorkerMetrics>,
        engine_pool: Arc<rayon::ThreadPool>,
    ) -> Self {
        Self {
            pool,
            queue,
            settings,
            metrics,
            engine_pool,
            running: Mutex::new(HashMap::new()),
            handing_back: AtomicBool::new(false),
            hard_deadline: Mutex::new(None),
        }
    }

    pub fn orphan_window(&self) -> Duration {
        self.settings.worker.heartbeat_interval * self.settings.worker.missed_heartbeats as u32
    }

    pub fn register(&self, id: Uuid, cancel: Arc<AtomicBool>) {
        self.running.lock().expect("lock").insert(id, cancel);
    }

    pub fn unregister(&self, id: Uuid) {
        self.running.lock().expect("lock").remove(&id);
    }

    pub fn running_jobs(&self) -> usize {
        self.running.lock().expect("lock").len()
    }

    /// Stops every running engine between batches; their handlers hand the jobs back.
    pub fn hand_back_all(&self) {
        self.handing_back.store(true, Ordering::SeqCst);
        for flag in self.running.lock().expect("lock").values() {
            flag.store(true, Ordering::SeqCst);
        }
    }

    pub fn handing_back(&self) -> bool {
        self.handing_back.load(Ordering::SeqCst)
    }

    pub fn set_hard_deadline(&self, at: Instant) {
        *self.hard_deadline.lock().expect("lock") = Some(at);
    }

    fn past_deadline(&self) -> bool {
        self.hard_deadline.lock().expect("lock").is_some_and(|d| Instant::now() >= d)
    }

    /// One attempt of a database call on a blocking thread; `None` if it failed (logged).
    pub async fn db_once<T, F>(&self, f: F) -> Option<T>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, DieselError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let outcome = spawn_blocking_with_tracing(move || -> anyhow::Result<T> {
            let mut conn = pool.get_timeout(Duration::from_secs(5))?;
            Ok(f(&mut conn)?)
        })
        .await;
        match outcome {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "database call failed");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "database task panicked");
                None
            }
        }
    }

    /// Retries a database call with back-off for up to a minute (Postgres restarting); `None`
    /// if it never succeeded.
    pub async fn db_retrying<T, F>(&self, what: &str, f: F) -> Option<T>
    where
        F: Fn(&mut PgConnection) -> Result<T, DieselError> + Send + Sync + 'static,
        T: Send + 'static,
    {
        self.retry(what, Some(Instant::now() + CLAIM_PATIENCE), f).await
    }

    /// Retries until it succeeds or the process must exit: a computed result is kept and
    /// written once Postgres is back.
    pub async fn db_retrying_until_shutdown<T, F>(&self, what: &str, f: F) -> Option<T>
    where
        F: Fn(&mut PgConnection) -> Result<T, DieselError> + Send + Sync + 'static,
        T: Send + 'static,
    {
        self.retry(what, None, f).await
    }

    async fn retry<T, F>(&self, what: &str, give_up_at: Option<Instant>, f: F) -> Option<T>
    where
        F: Fn(&mut PgConnection) -> Result<T, DieselError> + Send + Sync + 'static,
        T: Send + 'static,
    {
        let f = Arc::new(f);
        let mut wait = DB_RETRY_MIN;
        loop {
            let call = f.clone();
            if let Some(v) = self.db_once(move |conn| call(conn)).await {
                return Some(v);
            }
            if self.past_deadline() || give_up_at.is_some_and(|t| Instant::now() >= t) {
                tracing::warn!(what, "giving up on the database for now");
                return None;
            }
            tracing::info!(
                what,
                retry_in_ms = wait.as_millis() as u64,
                "database unavailable; retrying"
            );
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(DB_RETRY_MAX);
        }
    }
}
