//! The portfolio-mc HTTP API: validates simulation requests, records jobs in Postgres, queues
//! them in Redis, serves progress and results, and the operators' endpoints.

pub mod background;
pub mod charts;
pub mod error;
pub mod metrics;
pub mod request_id;
pub mod routes;
pub mod sampler;
pub mod startup;
pub mod state;
