//! The [`Queue`] handle the API and the workers share: our push (never apalis-redis's), what
//! the reconciler asks, giving back an ended worker's claims, freeing acknowledged deliveries,
//! promoting due jobs, and the storage the workers fetch through.

use std::time::Duration;

use apalis_redis::RedisStorage;
use ulid::Ulid;
use uuid::Uuid;

use super::QueueConn;
use super::codec::{JobEnvelope, SimulationJob, job_id, task_id};
use super::keys::Keys;
use super::{epoch_seconds, scripts};
use crate::settings::{QueueSettings, WorkerSettings};

/// The handle on the queue that the API and the workers share.
#[derive(Clone)]
pub struct Queue {
    pub(crate) conn: QueueConn,
    pub(crate) keys: Keys,
    pub(super) orphan_window: Duration,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// The job now has an entry (ready, or scheduled for later).
    Pushed,
    /// It already had one waiting (ready or scheduled); a scheduled one was moved earlier if
    /// this push asked for an earlier time.
    AlreadyQueued,
    /// A worker has claimed it (its in-flight set holds it).
    Held,
}

impl Queue {
    pub fn new(conn: QueueConn, queue: &QueueSettings, worker: &WorkerSettings) -> Self {
        let orphan_window = worker.orphan_window();
        Self { conn, keys: Keys::new(queue.namespace.clone()), orphan_window }
    }

    pub fn namespace(&self) -> &str {
        self.keys.namespace()
    }

    /// Pushes a job to run now (see [`Queue::push`]).
    pub async fn enqueue(&self, job: Uuid) -> anyhow::Result<PushOutcome> {
        self.push(job, Duration::ZERO, None).await
    }

    /// Gives `job` an entry in the queue unless it has one (see `lua/push.lua`): due now when
    /// `delay` is zero, otherwise scheduled (whole seconds, rounded up). `from_worker` is the
    /// pushing worker, whose own claim of the job is about to be acknowledged.
    pub async fn push(
        &self,
        job: Uuid,
        delay: Duration,
        from_worker: Option<&str>,
    ) -> anyhow::Result<PushOutcome> {
        let mut conn = self.conn.clone();
        let payload = serde_json::to_vec(&SimulationJob { id: job })?;
        let now = epoch_seconds();
        let run_at = if delay.is_zero() {
            now
        } else {
            now + delay.as_secs() + u64::from(delay.subsec_nanos() > 0)
        };
        let mut script = scripts::PUSH.prepare_invoke();
        script.key(self.keys.data_hash()).key(self.keys.meta_prefix());
        let outcome: i64 = self
            .presence_keys(&mut script)
            .arg(task_id(job).to_string())
            .arg(payload)
            .arg(run_at)
            .arg(now)
            .arg(from_worker.unwrap_or(""))
            .arg(self.keys.doorbell())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| anyhow::anyhow!("pushing job {job}: {e}"))?;
        Ok(match outcome {
            0 => PushOutcome::Pushed,
            1 => PushOutcome::AlreadyQueued,
            _ => PushOutcome::Held,
        })
    }

    /// Adds the keys the scripts read a job's presence from, in the order they all take them:
    /// scheduled set, ready list, workers, in-flight prefix.
    fn presence_keys<'a, 'b>(
        &self,
        script: &'a mut redis::ScriptInvocation<'b>,
    ) -> &'a mut redis::ScriptInvocation<'b> {
        script
            .key(self.keys.scheduled_set())
            .key(self.keys.ready_list())
            .key(self.keys.workers_set())
            .key(self.keys.inflight_prefix())
    }

    /// Of `jobs`, those the queue does not hold at all (not ready, not scheduled, not claimed
    /// by a registered worker): what the reconciler must push again.
    pub async fn unheld(&self, jobs: &[Uuid]) -> redis::RedisResult<Vec<Uuid>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut script = scripts::UNHELD.prepare_invoke();
        self.presence_keys(&mut script);
        for job in jobs {
            script.arg(task_id(*job).to_string());
        }
        let missing: Vec<String> = script.invoke_async(&mut conn).await?;
        Ok(missing.iter().filter_map(|s| s.parse::<Ulid>().ok()).map(job_id).collect())
    }

    /// Refreshes worker `name`'s heartbeat in the workers set, if it is still registered
    /// there (never registers it again once it was let go).
    pub async fn keep_registered(&self, name: &str) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("ZADD")
            .arg(self.keys.workers_set())
            .arg("XX")
            .arg(epoch_seconds())
            .arg(name)
            .query_async(&mut conn)
            .await
    }

    /// Deletes the metadata hashes of workers that are gone: not in the workers set, or
    /// silent for longer than `gone_after`. apalis-redis writes one whenever a worker process
    /// registers and never frees it, so with Spot churn they grew without bound (about 1 KB a
    /// process start, on a Redis that evicts nothing). Only apalis's own listing of workers
    /// reads them (ours reads the workers set), so one deleted as its worker registers again
    /// costs nothing. Walks the keyspace (`SCAN`, a thousand keys a round trip) and deletes
    /// page by page, so a run cut short keeps what it did; the leader runs it rarely. Returns
    /// how many it deleted.
    pub async fn sweep_worker_metadata(&self, gone_after: Duration) -> redis::RedisResult<u64> {
        let mut conn = self.conn.clone();
        let prefix = format!("{}:", self.keys.worker_metadata_prefix());
        let pattern = format!("{}*", glob_escaped(&prefix));
        let now = self.redis_now().await?;
        let (mut cursor, mut deleted) = (0u64, 0u64);
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .arg("TYPE")
                .arg("hash")
                .query_async(&mut conn)
                .await?;
            let names: Vec<&str> = keys.iter().filter_map(|k| k.strip_prefix(&prefix)).collect();
            if !names.is_empty() {
                let beats: Vec<Option<f64>> = redis::cmd("ZMSCORE")
                    .arg(self.keys.workers_set())
                    .arg(&names)
                    .query_async(&mut conn)
                    .await?;
                let gone: Vec<String> = names
                    .iter()
                    .zip(beats)
                    .filter(|(_, beat)| {
                        beat.is_none_or(|b| now.saturating_sub(b as u64) > gone_after.as_secs())
                    })
                    .map(|(name, _)| format!("{prefix}{name}"))
                    .collect();
                if !gone.is_empty() {
                    deleted +=
                        redis::cmd("UNLINK").arg(&gone).query_async::<u64>(&mut conn).await?;
                }
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// Re-queues what the ended worker `name` had claimed, except `running` (jobs this process
    /// still runs), drops entries without data, and unregisters the worker. Returns (re-queued,
    /// dropped).
    pub async fn release_worker(
        &self,
        name: &str,
        running: &[Uuid],
    ) -> redis::RedisResult<(u64, u64)> {
        let mut conn = self.conn.clone();
        let mut script = scripts::RELEASE.prepare_invoke();
        script
            .key(self.keys.inflight_set(name))
            .key(self.keys.workers_set())
            .key(self.keys.ready_list())
            .key(self.keys.data_hash())
            .key(self.keys.meta_prefix())
            .key(self.keys.scheduled_set())
            .key(self.keys.seen_workers())
            .arg(name)
            .arg(self.keys.doorbell());
        for job in running {
            script.arg(task_id(*job).to_string());
        }
        script.invoke_async(&mut conn).await
    }

    /// Takes `jobs`, cancelled while queued, out of the queue where no worker holds them yet
    /// (see `lua/withdraw.lua`); returns how many entries it took out.
    pub async fn withdraw(&self, jobs: &[Uuid]) -> redis::RedisResult<u64> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn.clone();
        let mut script = scripts::WITHDRAW.prepare_invoke();
        script
            .key(self.keys.data_hash())
            .key(self.keys.meta_prefix())
            .key(self.keys.scheduled_set())
            .key(self.keys.ready_list());
        for job in jobs {
            script.arg(task_id(*job).to_string());
        }
        script.invoke_async(&mut conn).await
    }

    /// Frees the Redis memory of up to `limit` acknowledged jobs; returns how many.
    pub async fn sweep_done(&self, limit: usize) -> redis::RedisResult<u64> {
        let mut conn = self.conn.clone();
        let mut script = scripts::SWEEP.prepare_invoke();
        script.key(self.keys.done_set()).key(self.keys.data_hash()).key(self.keys.meta_prefix());
        self.presence_keys(&mut script).arg(limit).invoke_async(&mut conn).await
    }

    /// The doorbell channel workers listen on (see [`Keys::doorbell`]).
    pub fn doorbell(&self) -> String {
        self.keys.doorbell()
    }

    /// Moves up to `limit` due jobs into the ready list; returns how many moved.
    pub async fn promote_due(&self, limit: usize) -> redis::RedisResult<u64> {
        let mut conn = self.conn.clone();
        scripts::PROMOTE
            .key(self.keys.scheduled_set())
            .key(self.keys.ready_list())
            .arg(epoch_seconds())
            .arg(limit)
            .arg(self.keys.doorbell())
            .invoke_async(&mut conn)
            .await
    }

    /// A storage handle for workers, decoding leniently. `config` comes from
    /// [`super::apalis_config`], so apalis-redis uses this queue's keys.
    pub fn worker_storage(
        &self,
        config: apalis_redis::Config,
    ) -> RedisStorage<JobEnvelope, QueueConn> {
        RedisStorage::new(self.conn.clone()).with_config(config)
    }

    /// Tells API processes waiting on `job` that its outcome is recorded (see
    /// [`Keys::finished`]). Best effort: a waiter that misses it re-reads Postgres.
    pub async fn announce_finished(&self, job: Uuid) -> redis::RedisResult<()> {
        self.announce_ended_plan(job, None).await
    }

    /// Announces a plan's success with its document if there is one, then by its id
    /// ([`super::announcement`]), in one round trip.
    pub async fn announce_ended_plan(
        &self,
        job: Uuid,
        document: Option<&[u8]>,
    ) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        super::announcement::publish(&mut pipe, &self.keys, job, document);
        pipe.query_async::<()>(&mut conn).await
    }

    /// Whether Redis takes a write: a tiny key with a 10 s lifetime. A `PING` passes where
    /// every push, heartbeat and claim fails: a Redis at `maxmemory` under `noeviction` (OOM),
    /// or a replica that a failover left behind (READONLY).
    pub async fn write_probe(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(self.keys.ready_probe())
            .arg(epoch_seconds())
            .arg("PX")
            .arg(10_000)
            .query_async::<()>(&mut conn)
            .await
    }
}

/// `text` with the characters `SCAN MATCH` reads as a pattern escaped.
fn glob_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
