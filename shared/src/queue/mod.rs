//! The Redis job queue (apalis-redis 1.0): what an entry carries and how workers decode it
//! without ever dying on a bad one (`codec`), every Redis key (`keys`), our Lua scripts
//! (`lua/`, run by `handle`), the [`Queue`] handle the API and the workers share, and the
//! queue's depth read straight from the Redis keys (`depth`; apalis-redis's own statistics
//! calls are broken in 1.0).
//!
//! A job's queue entry carries only its id; the worker reads the request from Postgres, so a
//! change of request schema can never poison the queue. The queue's task id is the job's UUID
//! (v7) re-read as a ULID, so the reconciler can find a job's entry from its row alone.
//!
//! Pushes, the reconciler's view of what the queue holds, giving back an ended worker's claims
//! and freeing acknowledged deliveries are our own Lua scripts on apalis-redis's keys: its own
//! push is a no-op for an id it has seen before (docs/reliability.md lists why each exists).

pub mod announcement;
pub(crate) mod codec;
mod connect;
pub(crate) mod depth;
pub(crate) mod handle;
pub(crate) mod keys;
mod scripts;
pub(crate) mod subscription;
mod target;

use std::time::{SystemTime, UNIX_EPOCH};

pub use codec::{JobEnvelope, LenientJsonCodec, SimulationJob, job_id, task_id};
pub use connect::{QueueConn, apalis_config, connect};
pub use depth::{Backlog, QueueDepth, WorkerHeartbeat};
pub use handle::{PushOutcome, Queue};
pub use keys::{Keys, QUEUE_REGISTRY};
pub use subscription::subscribe;
pub use target::RedisTarget;

pub fn epoch_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn epoch_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
