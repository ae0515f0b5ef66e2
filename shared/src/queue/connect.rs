//! How a process reaches the queue: a Redis connection that survives Redis being away and
//! follows a failover, and the apalis-redis configuration pushers and workers share.
//!
//! redis-rs's `ConnectionManager` reconnects, but always to the address its `Client` was made
//! with: behind Sentinels that is the old master, dead or demoted. And it reconnects only when
//! its connection is dropped, not when a call times out: a server that went silent (a hung
//! master, or an ElastiCache primary lost with its node, whose endpoint now names the replica
//! promoted in its place) keeps every call on the silent connection until the kernel gives up
//! on it, about a quarter of an hour. [`QueueConn`] wraps one and replaces it with a manager
//! for a freshly resolved master (see [`RedisTarget`]; a single server's name is looked up
//! again on connecting) after a connection error or a timeout, or after a `READONLY` reply (a
//! write that reached a demoted master; it was not applied, so it is sent once more to the new
//! master). apalis-redis's `RedisStorage` is generic over the connection, so the workers'
//! fetches, acks and heartbeats go through the same wrapper and follow the failover too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Arg, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use super::{RedisTarget, scripts};
use crate::settings::{QueueSettings, WorkerSettings};

/// The shortest time between two resolutions of the master: while the Sentinels have not yet
/// promoted a replica they keep naming the dead master, and every request would ask again.
const RERESOLVE_MIN_INTERVAL: Duration = Duration::from_millis(500);

/// A connection that is established on first use (so a process starts, and reports
/// not-ready, while Redis is down), re-established after errors, and re-pointed at the
/// current master when the master moves. Timeouts are generous: apalis-redis's own `connect`
/// uses redis-rs's 500 ms response timeout, and one slow reply then ends a worker. Must be
/// called inside a Tokio runtime.
pub fn connect(queue: &QueueSettings) -> RedisResult<QueueConn> {
    let target = RedisTarget::new(queue)?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_connection_timeout(Some(Duration::from_secs(3)))
        .set_number_of_retries(2);
    // A single server is known now; a Sentinel service is resolved on first use, so a process
    // starts while the Sentinels are away too.
    let manager = target
        .direct_client()
        .map(|client| ConnectionManager::new_lazy_with_config(client.clone(), config.clone()))
        .transpose()?;
    Ok(QueueConn {
        shared: Arc::new(Shared {
            db: target.db(),
            target,
            config,
            current: Mutex::new(Current {
                generation: 0,
                manager,
                stale: false,
                tried_at: None,
                made_at: Instant::now(),
            }),
            answered_up_to: AtomicU64::new(0),
            resolving: tokio::sync::Mutex::new(()),
        }),
    })
}

/// The queue's Redis connection (see the module doc); clones share it.
#[derive(Clone)]
pub struct QueueConn {
    shared: Arc<Shared>,
}

struct Shared {
    target: RedisTarget,
    db: i64,
    config: ConnectionManagerConfig,
    current: Mutex<Current>,
    /// One more than the newest generation that has answered a call (0: none has).
    answered_up_to: AtomicU64,
    /// One resolution at a time: the others wait for it and use its manager.
    resolving: tokio::sync::Mutex<()>,
}

struct Current {
    /// Counts replacements, so an error seen on an old manager does not condemn a new one.
    generation: u64,
    manager: Option<ConnectionManager>,
    /// An error said this manager's server is gone or no longer the master.
    stale: bool,
    /// When the master was last resolved, or tried to be.
    tried_at: Option<Instant>,
    /// When this generation's manager was made (it connects on its first call).
    made_at: Instant,
}

impl Shared {
    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The manager to use, and its generation: the current one unless it is stale, in which
    /// case the master is resolved again (at most every [`RERESOLVE_MIN_INTERVAL`]; until
    /// then the stale one is used and fails fast).
    async fn manager(&self) -> RedisResult<(u64, ConnectionManager)> {
        if let Some(usable) = self.usable(false)? {
            return Ok(usable);
        }
        let _resolving = self.resolving.lock().await;
        if let Some(usable) = self.usable(true)? {
            return Ok(usable);
        }
        self.current().tried_at = Some(Instant::now());
        let client = self.target.client().await?;
        let manager = ConnectionManager::new_lazy_with_config(client, self.config.clone())?;
        let mut current = self.current();
        current.generation += 1;
        current.manager = Some(manager.clone());
        current.stale = false;
        current.made_at = Instant::now();
        if self.target.follows_sentinels() {
            tracing::info!(generation = current.generation, "Redis master (re)resolved");
        } else {
            tracing::info!(generation = current.generation, "Redis connection replaced");
        }
        Ok((current.generation, manager))
    }

    /// The current manager if it can be used as it is (`None`: resolve the master). With
    /// `throttled`, a resolution tried less than [`RERESOLVE_MIN_INTERVAL`] ago is not tried
    /// again: the stale manager is used (and fails fast), or, before any master was ever
    /// resolved, an error is returned, so that requests never queue up behind the Sentinels.
    fn usable(&self, throttled: bool) -> RedisResult<Option<(u64, ConnectionManager)>> {
        let current = self.current();
        let recent = current.tried_at.is_some_and(|at| at.elapsed() < RERESOLVE_MIN_INTERVAL);
        match &current.manager {
            Some(manager) if !current.stale || (throttled && recent) => {
                Ok(Some((current.generation, manager.clone())))
            }
            None if throttled && recent => Err(RedisError::from((
                ErrorKind::Io,
                "no Redis master yet: the Sentinels named none reachable",
            ))),
            _ => Ok(None),
        }
    }

    /// Condemns the manager of `generation` after `error`, if the error says its server is
    /// gone or silent, or no longer the master. Returns whether the error was `READONLY`.
    fn judge(&self, generation: u64, error: &RedisError) -> bool {
        let read_only = is_read_only(error);
        let gone = error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_timeout()
            || error.is_unrecoverable_error();
        if read_only || gone {
            self.condemn(generation, error);
        }
        read_only
    }

    /// Notes that the manager of `generation` has answered a call.
    fn answered(&self, generation: u64) {
        self.answered_up_to.fetch_max(generation + 1, Ordering::Relaxed);
    }

    /// A call on the manager of `generation` was dropped unanswered after [`ABANDONED_AFTER`]:
    /// the manager is condemned, unless it is new and has never answered. Its connection is
    /// made by the calls that wait on it (redis-rs does not spawn it), so a connect slower than
    /// the callers' patience would otherwise be thrown away, and started again, for ever. A new
    /// manager whose server never answers is condemned once [`CONNECT_GRACE`] has passed, or
    /// by its connection timeout's error.
    fn abandoned(&self, generation: u64) {
        let answered = self.answered_up_to.load(Ordering::Relaxed) > generation;
        let young = {
            let current = self.current();
            current.generation == generation && current.made_at.elapsed() < CONNECT_GRACE
        };
        if answered || !young {
            self.condemn(generation, &"a call abandoned unanswered (a timeout)");
        }
    }

    /// Marks the manager of `generation` stale: the next call resolves the master again.
    fn condemn(&self, generation: u64, why: &dyn std::fmt::Display) {
        let mut current = self.current();
        if current.generation == generation && !current.stale {
            tracing::warn!(error = %why, "Redis connection condemned; connecting again");
            current.stale = true;
        }
    }
}

/// How long a call must have waited, when its caller drops it unanswered, to count as one that
/// timed out. The API gives up on its requests' Redis calls after 1.5 s, before redis-rs's own
/// response timeout (5 s) fires: without this, a master that hangs rather than dies (stopped,
/// or cut off without a reset) never produced an error here, and the API kept sending to it
/// after the Sentinels had promoted a replica (75 s in a test, every submit's push lost), or
/// after an ElastiCache endpoint had moved to one (for as long as the kernel kept the socket).
const ABANDONED_AFTER: Duration = Duration::from_secs(1);

/// How long a new manager that has never answered may keep its callers waiting before an
/// abandoned call condemns it (see `Shared::abandoned`): longer than its connection timeout.
const CONNECT_GRACE: Duration = Duration::from_secs(4);

/// Condemns its manager if the call it watches is dropped unanswered after waiting
/// [`ABANDONED_AFTER`]. A call dropped sooner (a client that went away) says nothing of Redis.
struct Unanswered<'a> {
    shared: &'a Shared,
    generation: u64,
    since: Instant,
    answered: bool,
}

impl<'a> Unanswered<'a> {
    fn watch(shared: &'a Shared, generation: u64) -> Self {
        Self { shared, generation, since: Instant::now(), answered: false }
    }
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if !self.answered && self.since.elapsed() >= ABANDONED_AFTER {
            self.shared.abandoned(self.generation);
        }
    }
}

/// A write refused by a replica: `READONLY` itself, or inside a script's error.
fn is_read_only(error: &RedisError) -> bool {
    error.kind() == ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        || error.to_string().contains("READONLY")
}

/// Whether `cmd` may be sent again after its connection dropped, when the first may have run:
/// commands sent singly do (reads and publishes are harmless twice, a rate-limit count is off
/// by one), and so do our own scripts ([`scripts::bear_a_second_run`]), but not apalis-redis's.
/// Its fetch moves ids from the ready list into the worker's in-flight set: a second run hands
/// over the next ids, and the first run's sit in that set with no handler, held by a live
/// worker, which neither the reconciler nor apalis's orphan recovery takes back. The error
/// instead ends that apalis worker, and its restart gives its claims back (`release.lua`).
fn bears_a_second_run(cmd: &Cmd) -> bool {
    let mut args = cmd.args_iter();
    match args.next() {
        Some(Arg::Simple(name)) if name.eq_ignore_ascii_case(b"EVALSHA") => {
            matches!(args.next(), Some(Arg::Simple(sha)) if scripts::bear_a_second_run(sha))
        }
        _ => true,
    }
}

impl ConnectionLike for QueueConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut manager) = self.shared.manager().await?;
            let mut unanswered = Unanswered::watch(&self.shared, generation);
            let reply = manager.req_packed_command(cmd).await;
            unanswered.answered = true;
            if reply.is_ok() {
                self.shared.answered(generation);
            }
            match reply {
                Err(error) if self.shared.judge(generation, &error) => {
                    // A replica refused it, so nothing was written: once more, to the master.
                    let (_, mut manager) = self.shared.manager().await?;
                    manager.req_packed_command(cmd).await
                }
                Err(error) if error.is_connection_dropped() && bears_a_second_run(cmd) => {
                    // The connection was found dead (Redis restarted, a failover or an idle
                    // timeout closed it): once more, on the connection the manager makes anew.
                    // Mostly nothing was sent; if the reply was what got lost, the command ran
                    // once already, so only those that bear a second run are sent again.
                    // Without this, the first call of each connection after a restart failed,
                    // and a request's failure holds its API's Redis calls back for a few
                    // seconds (see the API's breaker).
                    tracing::debug!(error = %error, "Redis connection dropped; sending once more");
                    let (_, mut manager) = self.shared.manager().await?;
                    manager.req_packed_command(cmd).await
                }
                reply => reply,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        // Not sent again on READONLY: part of a pipeline may have been applied.
        Box::pin(async move {
            let (generation, mut manager) = self.shared.manager().await?;
            let mut unanswered = Unanswered::watch(&self.shared, generation);
            let reply = manager.req_packed_commands(pipeline, offset, count).await;
            unanswered.answered = true;
            match &reply {
                Ok(_) => self.shared.answered(generation),
                Err(error) => {
                    self.shared.judge(generation, error);
                }
            }
            reply
        })
    }

    fn get_db(&self) -> i64 {
        self.shared.db
    }
}

/// apalis-redis configuration shared by pushers and workers. The defaults of apalis-redis 1.0
/// are wrong for long jobs (batch 10, a 300 s orphan window), so everything is explicit. Its
/// queue name is the namespace, so apalis-redis's keys are those of [`super::Keys`].
pub fn apalis_config(queue: &QueueSettings, worker: &WorkerSettings) -> apalis_redis::Config {
    apalis_redis::Config::default()
        .queue(&queue.namespace)
        .batch_size(worker.fetch_batch)
        .heartbeat_interval(worker.heartbeat_interval)
        .missed_heartbeats(worker.missed_heartbeats)
        // Must stay on: in apalis 1.0 this flag also decides whether a delivery is acknowledged
        // at all (`TaskPersistService::should_ack`). Off, every job a worker ever ran stays in
        // its in-flight set: the set grows for ever, and when the worker goes away all of it is
        // re-queued at once (one `unpack`, which fails above 8,000 ids and takes every worker's
        // heartbeat down with it). The stored result is our handler's `null`.
        .persist_results(true)
        // Postgres is the lock. apalis's leases only add ways for a worker to die ("task not
        // held by this worker" after Redis lost its data).
        .lock_tasks(false)
        .emit_events(false)
}
