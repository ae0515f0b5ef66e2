//! The Redis job queue (apalis-redis 1.0): the payload, how the API pushes it, how workers
//! decode it without ever dying on a bad entry, and the queue's depth read straight from the
//! Redis keys (apalis-redis's own statistics calls are broken in 1.0).
//!
//! A job's queue entry carries only its id; the worker reads the request from Postgres, so a
//! change of request schema can never poison the queue. The queue's task id is the job's UUID
//! (v7) re-read as a ULID, so the reconciler can find a job's entry from its row alone.
//!
//! Pushes, the reconciler's view of what the queue holds, giving back an ended worker's claims
//! and freeing acknowledged deliveries are our own Lua scripts on apalis-redis's keys: its own
//! push is a no-op for an id it has seen before (docs/reliability.md lists why each exists).

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis_core::backend::codec::Codec;
use apalis_redis::{Client, ConnectionManager, RedisStorage};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use ulid::Ulid;
use uuid::Uuid;

use crate::names;
use crate::settings::{QueueSettings, WorkerSettings};

/// What the API pushes: the id of a `simulations` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimulationJob {
    pub id: Uuid,
}

/// What a worker receives: a job, or an entry it could not make sense of (kept so it can be
/// logged and acknowledged instead of crashing the worker, as a decode error would).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobEnvelope {
    Job(SimulationJob),
    Undecodable(String),
}

/// JSON codec that never fails to decode: anything that is not a job becomes
/// [`JobEnvelope::Undecodable`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LenientJsonCodec;

impl Codec<JobEnvelope> for LenientJsonCodec {
    type Error = serde_json::Error;
    type Compact = Vec<u8>;

    fn encode(&self, value: &JobEnvelope) -> Result<Vec<u8>, Self::Error> {
        match value {
            JobEnvelope::Job(job) => serde_json::to_vec(job),
            JobEnvelope::Undecodable(raw) => Ok(raw.clone().into_bytes()),
        }
    }

    fn decode(&self, bytes: &Vec<u8>) -> Result<JobEnvelope, Self::Error> {
        Ok(match serde_json::from_slice::<SimulationJob>(bytes) {
            Ok(job) => JobEnvelope::Job(job),
            Err(e) => {
                let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
                JobEnvelope::Undecodable(format!("{e}: {shown:?}"))
            }
        })
    }
}

/// The queue task id of a job.
pub fn task_id(job: Uuid) -> Ulid {
    Ulid::from(job.as_u128())
}

/// The job of a queue task id.
pub fn job_id(task: Ulid) -> Uuid {
    Uuid::from_u128(task.0)
}

/// A connection that is established on first use (so a process starts, and reports
/// not-ready, while Redis is down) and re-established after errors. Timeouts are generous:
/// apalis-redis's own `connect` uses redis-rs's 500 ms response timeout, and one slow reply
/// then ends a worker. Must be called inside a Tokio runtime.
pub fn connect(url: &str) -> redis::RedisResult<ConnectionManager> {
    let client = Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_connection_timeout(Some(Duration::from_secs(3)))
        .set_number_of_retries(2);
    ConnectionManager::new_lazy_with_config(client, config)
}

/// apalis-redis configuration shared by pushers and workers. The defaults of apalis-redis 1.0
/// are wrong for long jobs (batch 10, a 300 s orphan window), so everything is explicit.
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

/// The handle on the queue that the API and the workers share.
#[derive(Clone)]
pub struct Queue {
    conn: ConnectionManager,
    config: apalis_redis::Config,
    namespace: String,
    orphan_window: Duration,
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

/// Jobs by state, read from the Redis keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    /// Due and waiting to be claimed.
    pub ready: u64,
    /// Waiting for a future time (delayed jobs, retry back-off).
    pub scheduled: u64,
    /// Claimed by a worker.
    pub running: u64,
    /// Given up on by apalis (not used by our retry policy; should stay 0).
    pub dead: u64,
    /// Workers whose heartbeat is within the orphan window.
    pub workers_alive: u64,
    /// Age of the oldest ready job, in milliseconds.
    pub oldest_ready_age_ms: Option<u64>,
}

/// A live worker as Redis knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerHeartbeat {
    pub name: String,
    /// Epoch seconds of its last heartbeat.
    pub last_heartbeat: u64,
    /// Job ids it has claimed.
    pub jobs: Vec<Uuid>,
}

/// Moves due jobs from the scheduled set to the ready list, at most `ARGV[2]` at a time (a
/// bounded `unpack`: apalis-redis's own fetch moves every due job at once and fails at 8,000).
const PROMOTE_SCRIPT: &str = r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids > 0 then
  redis.call('RPUSH', KEYS[2], unpack(ids))
  redis.call('ZREM', KEYS[1], unpack(ids))
end
return #ids
";

/// Our push, replacing apalis-redis's. Its `batch_push.lua` writes nothing when the task id
/// already has data (`HSETNX`), and data is never deleted: pushing a job a second time (a
/// retry, a hand-back, the reconciler) was silently a no-op. This one (re)writes the payload
/// and a clean meta hash, and gives the job at most one entry: nothing is pushed while the job
/// is ready, scheduled (only moved earlier) or in a registered worker's in-flight set (except
/// the pushing worker's own, which is about to acknowledge its delivery). Due jobs go straight
/// to the ready list, so the scheduled set only ever holds delayed retries.
///
/// KEYS: data hash, meta prefix, scheduled, ready list, workers, in-flight prefix.
/// ARGV: task id, payload, run-at (epoch s), now (epoch s), worker to ignore ('' for none).
const PUSH_SCRIPT: &str = r"
local id = ARGV[1]
local run_at = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local score = redis.call('ZSCORE', KEYS[3], id)
if score then
  if run_at < tonumber(score) then
    redis.call('ZADD', KEYS[3], run_at, id)
  end
  return 1
end
if redis.call('LPOS', KEYS[4], id) then
  return 1
end
for _, w in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
  if w ~= ARGV[5] and redis.call('SISMEMBER', KEYS[6] .. ':' .. w, id) == 1 then
    return 2
  end
end
local meta = KEYS[2] .. ':' .. id
redis.call('HSET', KEYS[1], id, ARGV[2])
redis.call('DEL', meta)
redis.call('HSET', meta, 'attempts', 0, 'max_attempts', 25, 'status', 'Pending')
if run_at > now then
  redis.call('ZADD', KEYS[3], run_at, id)
else
  redis.call('RPUSH', KEYS[4], id)
end
return 0
";

/// Of the task ids in ARGV, those with no entry anywhere: not ready, not scheduled, not in any
/// registered worker's in-flight set (a dead worker's set is re-queued by apalis-redis itself).
///
/// KEYS: scheduled, ready list, workers, in-flight prefix.
const UNHELD_SCRIPT: &str = r"
local present = {}
for _, id in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do present[id] = true end
for _, w in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[4] .. ':' .. w)) do present[id] = true end
end
local missing = {}
for i = 1, #ARGV do
  local id = ARGV[i]
  if not present[id] and not redis.call('ZSCORE', KEYS[1], id) then
    table.insert(missing, id)
  end
end
return missing
";

/// Gives back what a worker that ended (apalis-redis ends a worker on any Redis error) had
/// claimed, at once rather than after the orphan window, and unregisters it. Entries whose
/// data is missing are dropped: apalis-redis's fetch fails on them, and re-queueing them would
/// end the next worker too (a crash loop across the fleet). Ids in ARGV[2..] are still being
/// run by this process and are only forgotten.
///
/// KEYS: the worker's in-flight set, workers, ready list, data hash, meta prefix, scheduled.
/// ARGV: worker name, ids to leave out.
const RELEASE_SCRIPT: &str = r"
local keep = {}
for i = 2, #ARGV do keep[ARGV[i]] = true end
local listed = {}
for _, id in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do listed[id] = true end
local requeued, dropped = 0, 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not keep[id] then
    local meta = KEYS[5] .. ':' .. id
    if redis.call('HEXISTS', KEYS[4], id) == 1 then
      if not listed[id] and not redis.call('ZSCORE', KEYS[6], id) then
        redis.call('DEL', meta)
        redis.call('HSET', meta, 'attempts', 0, 'max_attempts', 25, 'status', 'Pending')
        redis.call('RPUSH', KEYS[3], id)
        listed[id] = true
        requeued = requeued + 1
      end
    else
      redis.call('DEL', meta)
      dropped = dropped + 1
    end
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return {requeued, dropped}
";

/// Frees the data and meta of up to ARGV[1] acknowledged jobs (apalis-redis keeps both for
/// ever, about 1 KB a job), unless the job has an entry again (pushed anew since).
///
/// KEYS: done set, data hash, meta prefix, scheduled, ready list, workers, in-flight prefix.
const SWEEP_SCRIPT: &str = r"
local ids = redis.call('SPOP', KEYS[1], tonumber(ARGV[1]))
if #ids == 0 then return 0 end
local present = {}
for _, id in ipairs(redis.call('LRANGE', KEYS[5], 0, -1)) do present[id] = true end
for _, w in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[7] .. ':' .. w)) do present[id] = true end
end
local swept = 0
for _, id in ipairs(ids) do
  if not present[id] and not redis.call('ZSCORE', KEYS[4], id) then
    redis.call('HDEL', KEYS[2], id)
    redis.call('DEL', KEYS[3] .. ':' .. id)
    swept = swept + 1
  end
end
return swept
";

static PROMOTE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(PROMOTE_SCRIPT));
static PUSH: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(PUSH_SCRIPT));
static UNHELD: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(UNHELD_SCRIPT));
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RELEASE_SCRIPT));
static SWEEP: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SWEEP_SCRIPT));

impl Queue {
    pub fn new(conn: ConnectionManager, queue: &QueueSettings, worker: &WorkerSettings) -> Self {
        let config = apalis_config(queue, worker);
        let orphan_window = worker.orphan_window();
        Self { conn, config, namespace: queue.namespace.clone(), orphan_window }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Pushes a job to run now (see [`Queue::push`]).
    pub async fn enqueue(&self, job: Uuid) -> anyhow::Result<PushOutcome> {
        self.push(job, Duration::ZERO, None).await
    }

    /// Pushes a job to run no earlier than `delay` from now (a retry's back-off).
    pub async fn enqueue_after(&self, job: Uuid, delay: Duration) -> anyhow::Result<PushOutcome> {
        self.push(job, delay, None).await
    }

    /// Gives `job` an entry in the queue unless it has one (see `PUSH_SCRIPT`): due now when
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
        let mut script = PUSH.prepare_invoke();
        script.key(self.config.job_data_hash()).key(self.config.job_meta_hash());
        let outcome: i64 = self
            .presence_keys(&mut script)
            .arg(task_id(job).to_string())
            .arg(payload)
            .arg(run_at)
            .arg(now)
            .arg(from_worker.unwrap_or(""))
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
            .key(self.config.scheduled_jobs_set())
            .key(self.config.active_jobs_list())
            .key(self.config.workers_set())
            .key(self.config.inflight_jobs_set())
    }

    /// Of `jobs`, those the queue does not hold at all (not ready, not scheduled, not claimed
    /// by a registered worker): what the reconciler must push again.
    pub async fn unheld(&self, jobs: &[Uuid]) -> redis::RedisResult<Vec<Uuid>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut script = UNHELD.prepare_invoke();
        self.presence_keys(&mut script);
        for job in jobs {
            script.arg(task_id(*job).to_string());
        }
        let missing: Vec<String> = script.invoke_async(&mut conn).await?;
        Ok(missing.iter().filter_map(|s| s.parse::<Ulid>().ok()).map(job_id).collect())
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
        let mut script = RELEASE.prepare_invoke();
        script
            .key(names::inflight_key(&self.namespace, name))
            .key(self.config.workers_set())
            .key(self.config.active_jobs_list())
            .key(self.config.job_data_hash())
            .key(self.config.job_meta_hash())
            .key(self.config.scheduled_jobs_set())
            .arg(name);
        for job in running {
            script.arg(task_id(*job).to_string());
        }
        script.invoke_async(&mut conn).await
    }

    /// Frees the Redis memory of up to `limit` acknowledged jobs; returns how many.
    pub async fn sweep_done(&self, limit: usize) -> redis::RedisResult<u64> {
        let mut conn = self.conn.clone();
        let mut script = SWEEP.prepare_invoke();
        script
            .key(self.config.done_jobs_set())
            .key(self.config.job_data_hash())
            .key(self.config.job_meta_hash());
        self.presence_keys(&mut script).arg(limit).invoke_async(&mut conn).await
    }

    /// A storage handle for workers, decoding leniently.
    pub fn worker_storage(&self, config: apalis_redis::Config) -> RedisStorage<JobEnvelope> {
        RedisStorage::new(self.conn.clone()).with_config(config)
    }

    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await.map(drop)
    }

    /// Moves up to `limit` due jobs into the ready list; returns how many moved.
    pub async fn promote_due(&self, limit: usize) -> redis::RedisResult<u64> {
        let mut conn = self.conn.clone();
        PROMOTE
            .key(names::scheduled_key(&self.namespace))
            .key(names::ready_list_key(&self.namespace))
            .arg(epoch_seconds())
            .arg(limit)
            .invoke_async(&mut conn)
            .await
    }

    /// Jobs waiting to start (ready plus scheduled): two O(1) reads, cheap enough to ask on
    /// every submit.
    pub async fn backlog(&self) -> redis::RedisResult<u64> {
        let mut conn = self.conn.clone();
        let (listed, scheduled): (u64, u64) = redis::pipe()
            .llen(names::ready_list_key(&self.namespace))
            .zcard(names::scheduled_key(&self.namespace))
            .query_async(&mut conn)
            .await?;
        Ok(listed + scheduled)
    }

    /// Workers registered with the queue, newest heartbeat first.
    pub async fn workers(&self) -> redis::RedisResult<Vec<WorkerHeartbeat>> {
        let mut conn = self.conn.clone();
        let entries: Vec<(String, f64)> =
            conn.zrevrange_withscores(names::workers_key(&self.namespace), 0, -1).await?;
        let mut out = Vec::with_capacity(entries.len());
        for (name, beat) in entries {
            let ids: Vec<String> =
                conn.smembers(names::inflight_key(&self.namespace, &name)).await?;
            out.push(WorkerHeartbeat {
                name,
                last_heartbeat: beat as u64,
                jobs: ids.iter().filter_map(|s| s.parse::<Ulid>().ok()).map(job_id).collect(),
            });
        }
        Ok(out)
    }

    /// Whether a heartbeat counts as alive.
    pub fn is_alive(&self, heartbeat: &WorkerHeartbeat) -> bool {
        epoch_seconds().saturating_sub(heartbeat.last_heartbeat) <= self.orphan_window.as_secs()
    }

    pub async fn depth(&self) -> redis::RedisResult<QueueDepth> {
        let mut conn = self.conn.clone();
        let now = epoch_seconds();
        let scheduled_key = names::scheduled_key(&self.namespace);
        let ready_key = names::ready_list_key(&self.namespace);
        let (due, later, listed, dead, oldest_listed, oldest_due): (
            u64,
            u64,
            u64,
            u64,
            Option<String>,
            Vec<String>,
        ) = redis::pipe()
            .zcount(&scheduled_key, "-inf", now)
            .zcount(&scheduled_key, format!("({now}"), "+inf")
            .llen(&ready_key)
            .scard(names::dead_key(&self.namespace))
            .lindex(&ready_key, 0)
            .cmd("ZRANGEBYSCORE")
            .arg(&scheduled_key)
            .arg("-inf")
            .arg(now)
            .arg("LIMIT")
            .arg(0)
            .arg(1)
            .query_async(&mut conn)
            .await?;
        let workers = self.workers().await?;
        let now_ms = epoch_millis();
        let oldest_ready_age_ms = oldest_listed
            .iter()
            .chain(oldest_due.iter())
            .filter_map(|s| s.parse::<Ulid>().ok())
            .map(|u| now_ms.saturating_sub(u.timestamp_ms()))
            .max();
        Ok(QueueDepth {
            ready: due + listed,
            scheduled: later,
            running: workers.iter().map(|w| w.jobs.len() as u64).sum(),
            dead,
            workers_alive: workers.iter().filter(|w| self.is_alive(w)).count() as u64,
            oldest_ready_age_ms,
        })
    }
}

pub fn epoch_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn epoch_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_id_survives_the_trip_through_a_queue_task_id() {
        let id = Uuid::now_v7();
        assert_eq!(job_id(task_id(id)), id);
        // UUIDv7 and ULID both start with the millisecond timestamp.
        let ms = id.get_timestamp().unwrap().to_unix();
        let ms = ms.0 * 1000 + u64::from(ms.1) / 1_000_000;
        assert_eq!(task_id(id).timestamp_ms(), ms);
    }

    #[test]
    fn the_lenient_codec_turns_garbage_into_an_undecodable_envelope() {
        let codec = LenientJsonCodec;
        let id = Uuid::now_v7();
        let bytes = codec.encode(&JobEnvelope::Job(SimulationJob { id })).unwrap();
        assert_eq!(codec.decode(&bytes).unwrap(), JobEnvelope::Job(SimulationJob { id }));
        assert!(matches!(
            codec.decode(&b"\xff\x00garbage".to_vec()).unwrap(),
            JobEnvelope::Undecodable(_)
        ));
        assert!(matches!(codec.decode(&b"42".to_vec()).unwrap(), JobEnvelope::Undecodable(_)));
    }
}
