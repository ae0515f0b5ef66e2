//! What every handler shares: the database pools (writes go to the primary, reads to the
//! replica when one is configured), the queue, the settings and the metrics registry, plus the
//! one way request paths run database work (on a blocking thread, with a bounded wait).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::pg::PgConnection;
use diesel::result::Error as DieselError;
use portfolio_shared::db::PgPool;
use portfolio_shared::db_error;
use portfolio_shared::queue::{self, Keys, Queue};
use portfolio_shared::rate_limit::RateLimiter;
use portfolio_shared::settings::Settings;
use portfolio_shared::state_holders::Holder;
use portfolio_shared::telemetry::spawn_blocking_with_tracing;

use crate::auth::lookup::VerifiedKeys;
use crate::completions::Completions;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::result_cache::ResultCache;

/// A request never waits longer than this for a database connection, whatever the pool's
/// own checkout timeout: a client is better served by a quick 503 than a 30 s hang.
const REQUEST_CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest a request waits for a statement, its checkout included. A Postgres that hangs
/// (stopped or paused rather than down) still has its kernel acknowledge every byte, so no TCP
/// timeout fires and the statement would hold the request until Postgres answered again. The
/// statement is not stopped, only no longer waited for: it keeps its blocking thread and its
/// connection and ends when Postgres answers, so a submit refused this way may still record its
/// job (docs/reliability.md: a retry with the same `Idempotency-Key` finds it).
const STATEMENT_DEADLINE: Duration = Duration::from_secs(10);

/// The API's sessions' `statement_timeout`, under [`STATEMENT_DEADLINE`]: a Postgres that is
/// slow rather than hung (a statement waiting on a lock, a runaway query) cancels the
/// statement itself, so the request learns that nothing was done, and the connection is free
/// again, instead of the deadline giving up on it not knowing.
pub(crate) const STATEMENT_TIMEOUT: Duration = Duration::from_secs(8);

pub(crate) struct AppState {
    pub(crate) write_pool: PgPool,
    pub(crate) read_pool: PgPool,
    pub(crate) queue: Queue,
    pub(crate) rate_limiter: RateLimiter,
    pub(crate) settings: Settings,
    pub(crate) metrics: Arc<Metrics>,
    /// The requests waiting for jobs to end, woken by the finished channel.
    pub(crate) completions: Arc<Completions>,
    /// Results of seeded requests, answered without a worker (`crate::result_cache`).
    pub(crate) result_cache: ResultCache,
    /// The keys found valid in the last minute (`crate::auth::lookup`).
    pub(crate) verified_keys: VerifiedKeys,
    /// Until when the requests' Redis calls are skipped after one failed (a tiny circuit
    /// breaker, so that while Redis is down a submit costs no timeout at all). Requests alone
    /// trip it: the background work has none (see [`AppState::redis_in_background`]). The
    /// server threads' states share one, as they share Redis.
    redis_down_until: Arc<Mutex<Option<Instant>>>,
    /// Counts this copy of the state until it is dropped, so the process returns only once
    /// every server thread has closed its share of the pools (`state_holders`).
    holder: Holder,
}

/// How long a Redis call waits for an answer.
const REDIS_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long the request path leaves Redis alone after a failure.
const REDIS_BACKOFF: Duration = Duration::from_secs(3);

impl AppState {
    pub(crate) fn new(
        write_pool: PgPool,
        read_pool: PgPool,
        queue: Queue,
        rate_limiter: RateLimiter,
        settings: Settings,
        metrics: Arc<Metrics>,
        holder: Holder,
    ) -> Self {
        let result_cache = ResultCache::new(&settings.result_cache);
        Self {
            write_pool,
            read_pool,
            queue,
            rate_limiter,
            settings,
            metrics,
            completions: Arc::default(),
            result_cache,
            verified_keys: VerifiedKeys::new(),
            redis_down_until: Arc::default(),
            holder,
        }
    }

    /// This state for one of the HTTP server's threads: the same pools, settings, metrics,
    /// waiters, result cache, verified keys and breaker, and a Redis connection of the thread's own. Each
    /// server thread runs its own single-threaded runtime, and a connection's I/O runs on the
    /// runtime that first used it: through a shared one, every Redis call of a request was
    /// handed to another thread and its answer handed back, two wake-ups of a sleeping thread
    /// per round trip (about 0.1 ms each on a 2-vCPU VM), and a submit makes three. Call it on
    /// the thread that will use it (in the server's app factory); the connection is made on
    /// first use. If the connection cannot even be configured, the shared one serves.
    pub(crate) fn for_server_thread(&self) -> Self {
        let (queue, rate_limiter) = match queue::connect(&self.settings.queue) {
            Ok(conn) => (
                Queue::new(conn.clone(), &self.settings.queue, &self.settings.worker),
                RateLimiter::new(conn, Keys::new(self.queue.namespace())),
            ),
            Err(_) => (self.queue.clone(), self.rate_limiter.clone()),
        };
        Self {
            write_pool: self.write_pool.clone(),
            read_pool: self.read_pool.clone(),
            queue,
            rate_limiter,
            settings: self.settings.clone(),
            metrics: self.metrics.clone(),
            completions: self.completions.clone(),
            result_cache: self.result_cache.clone(),
            verified_keys: self.verified_keys.clone(),
            redis_down_until: self.redis_down_until.clone(),
            holder: self.holder.clone(),
        }
    }

    /// Runs a request's Redis call with a short timeout, failing fast while Redis is known to
    /// be down.
    pub(crate) async fn redis<T, E>(
        &self,
        call: impl Future<Output = Result<T, E>>,
    ) -> anyhow::Result<T>
    where
        E: Into<anyhow::Error>,
    {
        if let Some(until) = *self.redis_down_until.lock().expect("lock")
            && Instant::now() < until
        {
            anyhow::bail!("Redis is unavailable (failed recently; retrying after a back-off)");
        }
        let outcome = with_timeout(call).await;
        *self.redis_down_until.lock().expect("lock") =
            outcome.is_err().then(|| Instant::now() + REDIS_BACKOFF);
        outcome
    }

    /// Runs a Redis call of the background work (the leader's promote, sweep and reconcile,
    /// the sampler) with the same timeout and no breaker. Sharing the requests' breaker let a
    /// sweep that failed on every tick make every submit skip its push; and a breaker of the
    /// background's own would let one failing operation hold back the others (promotion
    /// behind a broken sweep). A tick costs at most a timeout per call while Redis is away.
    pub(crate) async fn redis_in_background<T, E>(
        &self,
        call: impl Future<Output = Result<T, E>>,
    ) -> anyhow::Result<T>
    where
        E: Into<anyhow::Error>,
    {
        with_timeout(call).await
    }

    /// Runs a request's `f` with a primary connection on a blocking thread. A statement whose
    /// connection was lost in flight, or that Postgres did not answer within the deadline, may
    /// still take effect, and its `503` says so ([`ApiError::unsettled`]).
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, DieselError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.write_pool.clone();
        run(pool, self.checkout_timeout(), Some(Effect::Writes), f).await
    }

    /// Runs a request's `f`, which only reads (or writes nothing the request asked for, as a
    /// key's time of last use), with a primary connection on a blocking thread: for what a
    /// replica's lag must not hide (a job just written, a key just revoked).
    pub(crate) async fn read_primary<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, DieselError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.write_pool.clone();
        run(pool, self.checkout_timeout(), Some(Effect::Reads), f).await
    }

    /// Runs a request's `f` with a read connection (the replica when configured) on a blocking
    /// thread.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, DieselError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.read_pool.clone();
        run(pool, self.checkout_timeout(), Some(Effect::Reads), f).await
    }

    /// Runs `f` of the background work (the leader's loops, the sampler, the bootstrap key) with
    /// a primary connection, waiting as long as Postgres takes: no client waits on it, and a
    /// loop that gave up on a statement still running would start another beside it.
    pub(crate) async fn write_in_background<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, DieselError> + Send + 'static,
        T: Send + 'static,
    {
        run(self.write_pool.clone(), self.checkout_timeout(), None, f).await
    }

    /// Whether reads go to a replica (another server than the primary), which may lag.
    pub(crate) fn reads_from_replica(&self) -> bool {
        self.settings.database.has_separate_replica()
    }

    fn checkout_timeout(&self) -> Duration {
        self.settings.database.api_pool.checkout_timeout.min(REQUEST_CHECKOUT_TIMEOUT)
    }
}

async fn with_timeout<T, E>(call: impl Future<Output = Result<T, E>>) -> anyhow::Result<T>
where
    E: Into<anyhow::Error>,
{
    match tokio::time::timeout(REDIS_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(anyhow::anyhow!("Redis did not answer within {REDIS_TIMEOUT:?}")),
    }
}

/// What a failed statement may have done, for the words of its `503`.
#[derive(Clone, Copy)]
enum Effect {
    Reads,
    Writes,
}

/// Runs `f` on a blocking thread with a connection of `pool`, waiting at most `timeout` for the
/// connection and, when `deadline_for` says what `f` does, at most [`STATEMENT_DEADLINE`] in
/// all.
async fn run<T, F>(
    pool: PgPool,
    timeout: Duration,
    deadline_for: Option<Effect>,
    f: F,
) -> Result<T, ApiError>
where
    F: FnOnce(&mut PgConnection) -> Result<T, DieselError> + Send + 'static,
    T: Send + 'static,
{
    let writes = matches!(deadline_for, Some(Effect::Writes));
    let statement = spawn_blocking_with_tracing(move || {
        let mut conn =
            pool.get_timeout(timeout).map_err(|e| ApiError::unavailable("postgres", e))?;
        f(&mut conn).map_err(|e| {
            if writes && db_error::outcome_unknown(&e) {
                ApiError::unsettled("postgres", e)
            } else {
                db_error(e)
            }
        })
    });
    let done = match deadline_for {
        None => statement.await,
        Some(effect) => match tokio::time::timeout(STATEMENT_DEADLINE, statement).await {
            Ok(done) => done,
            Err(_) => {
                let late = anyhow::anyhow!("Postgres did not answer within {STATEMENT_DEADLINE:?}");
                return Err(match effect {
                    Effect::Reads => ApiError::unavailable("postgres", late),
                    Effect::Writes => ApiError::unsettled("postgres", late),
                });
            }
        },
    };
    done.map_err(|e| ApiError::Internal(anyhow::anyhow!("database task panicked: {e}")))?
}

/// An error that may pass (Postgres away or restarting, a lost connection, a deadlock; see
/// [`db_error::is_transient`]) means Postgres is unavailable for now (503); a data exception
/// (SQLSTATE class 22) means the database refused a value of the request (422: the input's
/// fault, the same on every try, so neither a bug nor an outage); anything else is our bug
/// (500).
pub fn db_error(e: DieselError) -> ApiError {
    if db_error::is_transient(&e) {
        ApiError::unavailable("postgres", e)
    } else if let Some(sqlstate) = db_error::data_exception(&e) {
        tracing::info!(%sqlstate, error = %e, "the database refused a value of the request");
        ApiError::RefusedByDatabase { sqlstate: sqlstate.to_string() }
    } else {
        ApiError::Internal(e.into())
    }
}
