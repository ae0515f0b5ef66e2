//! Data access: every query the API and the worker run against Postgres, as plain synchronous
//! functions over a diesel connection (callers run them on a blocking thread). Status changes
//! are conditional updates inside transactions, which is what makes a job end exactly once
//! however often it is delivered; a worker's writes after its claim are fenced by that claim
//! ([`Lease`]); and every "is it stale yet", "is it due yet" is decided by the database's clock
//! alone, since the hosts asking may disagree with it and with each other.

mod api_keys;
mod api_queries;
mod audit;
mod durability;
mod job_lifecycle;
mod json_text;
pub mod models;
mod reconciler;
mod statement;
pub mod stats;
mod sweeps;
mod transition;

pub use api_keys::*;
pub use api_queries::*;
pub(crate) use audit::AuditEvent;
pub use durability::{await_durable, await_durable_job};
pub use job_lifecycle::*;
pub(crate) use json_text::{JsonText, JsonbText};
pub use reconciler::*;
pub use sweeps::*;
