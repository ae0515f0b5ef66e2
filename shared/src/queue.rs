//! The Redis job queue (apalis-redis 1.0): the payload, how the API pushes it, how workers
//! decode it without ever dying on a bad entry, and the queue's depth read straight from the
//! Redis keys (apalis-redis's own statistics calls are broken in 1.0).
//!
//! A job's queue entry carries only its id; the worker reads the request from Postgres, so a
//! change of request schema can never poison the queue. The queue's task id is the job's UUID
//! (v7) re-read as a ULID, so the reconciler can find a job's entry from its row alone.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis::prelude::{TaskBuilder, TaskId, TaskSink};
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
        // Results live in Postgres; keeping them in Redis would only grow its memory.
        .persist_results(false)
        .emit_events(false)
}

/// The API's handle on the queue.
#[derive(Clone)]
pub struct Queue {
    storage: RedisStorage<SimulationJob>,
    conn: ConnectionManager,
    namespace: String,
    orphan_window: Duration,
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

impl Queue {
    pub fn new(conn: ConnectionManager, queue: &QueueSettings, worker: &WorkerSettings) -> Self {
        let config = apalis_config(queue, worker);
        let orphan_window = config.orphaned_duration();
        Self {
            storage: RedisStorage::new(conn.clone()).with_config(config),
            conn,
            namespace: queue.namespace.clone(),
            orphan_window,
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Pushes a job.
    pub async fn enqueue(&self, job: Uuid) -> anyhow::Result<()> {
        let mut storage = self.storage.clone();
        let task = TaskBuilder::new(SimulationJob { id: job })
            .task_id(TaskId::from_ulid(task_id(job)))
            .build();
        storage.push_task(task).await.map_err(|e| anyhow::anyhow!("pushing job {job}: {e}"))
    }

    /// Pushes a job to run no earlier than `delay` from now (a retry's back-off).
    pub async fn enqueue_after(&self, job: Uuid, delay: Duration) -> anyhow::Result<()> {
        let mut storage = self.storage.clone();
        let task = TaskBuilder::new(SimulationJob { id: job })
            .task_id(TaskId::from_ulid(task_id(job)))
            .run_after(delay)
            .build();
        storage.push_task(task).await.map_err(|e| anyhow::anyhow!("pushing job {job}: {e}"))
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
        redis::Script::new(PROMOTE_SCRIPT)
            .key(names::scheduled_key(&self.namespace))
            .key(names::ready_list_key(&self.namespace))
            .arg(epoch_seconds())
            .arg(limit)
            .invoke_async(&mut conn)
            .await
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

    /// Whether the job has an entry anywhere in the queue (scheduled, ready, or claimed by a
    /// live worker).
    pub async fn holds(&self, job: Uuid) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        let id = task_id(job).to_string();
        let scheduled: Option<f64> =
            conn.zscore(names::scheduled_key(&self.namespace), &id).await?;
        if scheduled.is_some() {
            return Ok(true);
        }
        let listed: Option<i64> = redis::cmd("LPOS")
            .arg(names::ready_list_key(&self.namespace))
            .arg(&id)
            .query_async(&mut conn)
            .await?;
        if listed.is_some() {
            return Ok(true);
        }
        Ok(self.workers().await?.iter().any(|w| self.is_alive(w) && w.jobs.contains(&job)))
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
