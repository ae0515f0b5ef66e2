//! Everything the `portfolio-api` and `portfolio-worker` binaries share beyond the engine:
//! settings, telemetry, the Postgres schema and data access, and the Redis job queue. The
//! request, result and engine live in `portfolio-engine`, which this crate depends on and
//! never the reverse.

pub mod db;
pub mod db_error;
pub mod health_probe;
mod job_status;
pub mod names;
pub mod queue;
#[rustfmt::skip]
pub mod schema;
pub mod settings;
pub mod store;
pub mod telemetry;

pub use job_status::JobStatus;
