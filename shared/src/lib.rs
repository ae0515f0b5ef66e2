//! Everything the `portfolio-api` and `portfolio-worker` binaries share: the domain types
//! (what may be asked, what is answered), the Monte Carlo engine, settings, telemetry, the
//! Postgres schema and data access, and the Redis job queue.

pub mod db;
pub mod domain;
pub mod engine;
pub mod health_probe;
pub mod names;
pub mod queue;
#[rustfmt::skip]
pub mod schema;
pub mod settings;
pub mod store;
pub mod telemetry;
