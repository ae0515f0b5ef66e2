//! The worker: pulls simulation jobs from the Redis queue, runs the engine off the async
//! executor, and records results in Postgres. [`cli_simulate`] runs the engine on a file
//! instead.
//!
//! Job → runner → worker: a queue entry names a job ([`jobs::simulate`]); the runner
//! ([`supervisor`]) supervises the apalis worker that delivers entries; [`context`] is what
//! handlers share. Jobs must be idempotent: a delivery may repeat, and Postgres decides who
//! finishes.

pub mod cli_simulate;
pub(crate) mod context;
pub(crate) mod jobs;
pub(crate) mod metrics;
pub mod supervisor;
