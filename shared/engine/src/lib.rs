#![doc = include_str!("../README.md")]

mod cost;
pub(crate) mod fastmath;
mod field_error;
pub(crate) mod history;
mod kernel;
pub mod linalg;
mod plan;
pub mod request;
pub mod result;
pub mod rng;
mod simulation;
pub mod stats;
pub mod sweep;
#[cfg(test)]
mod tests;

pub use cost::{JobCost, SOLVER_PASSES, cost};
pub use field_error::FieldError;
pub use request::{RequestError, RequestLimits, SimulationRequest, SimulationRequestInput};
pub use result::SimulationResult;
#[cfg(test)]
pub(crate) use simulation::run_with_plan;
pub use simulation::{ENGINE_VERSION, EngineError, ProgressCounter, RunOptions, run};
