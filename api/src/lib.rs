//! The portfolio-mc HTTP API: validates simulation requests, records jobs in Postgres, queues
//! them in Redis, serves progress and results, and the operators' endpoints.

pub(crate) mod background;
pub mod draw;
pub mod error;
pub(crate) mod metrics;
pub(crate) mod request_id;
pub(crate) mod routes;
pub mod sampler;
pub mod startup;
pub mod state;
