//! The queue's depth and its workers, read straight from the Redis keys: apalis-redis's own
//! statistics calls are broken in 1.0.

use std::time::Duration;

use redis::AsyncCommands;
use serde::Serialize;
use ulid::Ulid;
use uuid::Uuid;

use super::codec::job_id;
use super::handle::Queue;
use super::{epoch_millis, epoch_seconds};

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
    /// Epoch seconds of its last heartbeat, by the worker's clock.
    pub last_heartbeat: u64,
    /// Seconds since then by Redis's clock, when it was read: the one clock every reader of
    /// the workers set shares, so an API host whose clock is off does not judge live workers
    /// dead (and, leading, free their metadata).
    pub silent_for: u64,
    /// Job ids it has claimed.
    pub jobs: Vec<Uuid>,
}

/// Jobs waiting to start, as a submit asks for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Due and waiting to be claimed: while there are any, no worker is idle for long.
    pub ready: u64,
    /// Waiting for a future time.
    pub scheduled: u64,
}

impl Backlog {
    /// Every job waiting to start, ready or scheduled (what the queue-depth ceiling counts).
    pub fn waiting(&self) -> u64 {
        self.ready + self.scheduled
    }
}

impl Queue {
    /// Jobs waiting to start: two O(1) reads, cheap enough to ask on every submit.
    pub async fn backlog(&self) -> redis::RedisResult<Backlog> {
        let mut conn = self.conn.clone();
        let (ready, scheduled): (u64, u64) = redis::pipe()
            .llen(self.keys.ready_list())
            .zcard(self.keys.scheduled_set())
            .query_async(&mut conn)
            .await?;
        Ok(Backlog { ready, scheduled })
    }

    /// Workers registered with the queue, newest heartbeat first.
    pub async fn workers(&self) -> redis::RedisResult<Vec<WorkerHeartbeat>> {
        let (now, entries) = self.heartbeats_in(self.keys.workers_set()).await?;
        let mut conn = self.conn.clone();
        let mut out = Vec::with_capacity(entries.len());
        for (name, beat) in entries {
            let ids: Vec<String> = conn.smembers(self.keys.inflight_set(&name)).await?;
            out.push(WorkerHeartbeat {
                name,
                last_heartbeat: beat as u64,
                silent_for: now.saturating_sub(beat as u64),
                jobs: ids.iter().filter_map(|s| s.parse::<Ulid>().ok()).map(job_id).collect(),
            });
        }
        Ok(out)
    }

    /// Redis's clock (epoch seconds) and the heartbeats of sorted set `set`, newest first, in
    /// one round trip: a heartbeat's age is judged by the one clock every API replica shares.
    async fn heartbeats_in(&self, set: String) -> redis::RedisResult<(u64, Vec<(String, f64)>)> {
        let mut conn = self.conn.clone();
        let ((now, _micros), beats): ((u64, u64), Vec<(String, f64)>) = redis::pipe()
            .cmd("TIME")
            .zrevrange_withscores(set, 0, -1)
            .query_async(&mut conn)
            .await?;
        Ok((now, beats))
    }

    /// Epoch seconds by Redis's clock: for the judgements every API replica must make alike.
    pub(super) async fn redis_now(&self) -> redis::RedisResult<u64> {
        let mut conn = self.conn.clone();
        let (seconds, _micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
        Ok(seconds)
    }

    /// Copies every heartbeat in the workers set into [`Keys::seen_workers`], keeping each
    /// name's latest, and forgets the names silent for longer than `remember_for`.
    pub async fn remember_workers(&self, remember_for: Duration) -> redis::RedisResult<()> {
        let seen = self.keys.seen_workers();
        let forget_before = self.redis_now().await?.saturating_sub(remember_for.as_secs());
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .cmd("ZUNIONSTORE")
            .arg(&seen)
            .arg(2)
            .arg(&seen)
            .arg(self.keys.workers_set())
            .arg("AGGREGATE")
            .arg("MAX")
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&seen)
            .arg("-inf")
            .arg(format!("({forget_before}"))
            .ignore()
            .query_async(&mut conn)
            .await
    }

    /// Workers seen lately ([`Self::remember_workers`]) that are no longer in the workers set
    /// (`listed`): gone, with whatever they held back in the queue. Newest heartbeat first.
    pub async fn gone_workers(
        &self,
        listed: &[WorkerHeartbeat],
    ) -> redis::RedisResult<Vec<WorkerHeartbeat>> {
        let (now, seen) = self.heartbeats_in(self.keys.seen_workers()).await?;
        Ok(seen
            .into_iter()
            .filter(|(name, _)| !listed.iter().any(|w| &w.name == name))
            .map(|(name, beat)| WorkerHeartbeat {
                name,
                last_heartbeat: beat as u64,
                silent_for: now.saturating_sub(beat as u64),
                jobs: Vec::new(),
            })
            .collect())
    }

    /// Whether a heartbeat counts as alive.
    pub fn is_alive(&self, heartbeat: &WorkerHeartbeat) -> bool {
        heartbeat.silent_for <= self.orphan_window.as_secs()
    }

    pub async fn depth(&self) -> redis::RedisResult<QueueDepth> {
        let workers = self.workers().await?;
        self.depth_with(&workers).await
    }

    /// [`Self::depth`] for a caller that has read the workers already ([`Self::workers`]).
    pub async fn depth_with(&self, workers: &[WorkerHeartbeat]) -> redis::RedisResult<QueueDepth> {
        let mut conn = self.conn.clone();
        let now = epoch_seconds();
        let scheduled_key = self.keys.scheduled_set();
        let ready_key = self.keys.ready_list();
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
            .scard(self.keys.dead_set())
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
