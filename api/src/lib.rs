#![doc = include_str!("../README.md")]

pub mod auth;
pub(crate) mod background;
pub(crate) mod completions;
pub mod draw;
pub mod error;
pub(crate) mod headers;
pub(crate) mod leadership;
pub(crate) mod metrics;
pub(crate) mod prefer;
pub(crate) mod query;
pub(crate) mod request_id;
pub(crate) mod result_cache;
pub(crate) mod routes;
pub mod sampler;
pub mod startup;
pub mod state;
