#![doc = include_str!("../README.md")]

pub(crate) mod admission;
pub mod cli_simulate;
pub(crate) mod context;
pub(crate) mod doorbell;
pub(crate) mod engine_pools;
pub(crate) mod engine_threads;
pub(crate) mod jobs;
pub(crate) mod metrics;
pub mod supervisor;
