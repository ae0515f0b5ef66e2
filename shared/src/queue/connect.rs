//! How a process reaches the queue: a Redis connection that survives Redis being away, and the
//! apalis-redis configuration pushers and workers share.

use std::time::Duration;

use apalis_redis::{Client, ConnectionManager};

use crate::settings::{ExposeSecret, QueueSettings, SecretUrl, WorkerSettings};

/// A connection that is established on first use (so a process starts, and reports
/// not-ready, while Redis is down) and re-established after errors. Timeouts are generous:
/// apalis-redis's own `connect` uses redis-rs's 500 ms response timeout, and one slow reply
/// then ends a worker. Must be called inside a Tokio runtime.
pub fn connect(url: &SecretUrl) -> redis::RedisResult<ConnectionManager> {
    let client = Client::open(url.expose_secret())?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_connection_timeout(Some(Duration::from_secs(3)))
        .set_number_of_retries(2);
    ConnectionManager::new_lazy_with_config(client, config)
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
