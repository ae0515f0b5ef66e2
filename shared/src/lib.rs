#![doc = include_str!("../README.md")]

pub mod conninfo;
pub mod db;
pub mod db_error;
pub mod health_probe;
mod job_kind;
mod job_status;
pub mod names;
pub mod queue;
pub mod rate_limit;
pub mod result_cache;
#[rustfmt::skip]
pub mod schema;
pub mod settings;
pub mod state_holders;
pub mod store;
pub mod telemetry;

pub use job_kind::JobKind;
pub use job_status::JobStatus;
