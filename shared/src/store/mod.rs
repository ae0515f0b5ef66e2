//! Data access: every query the API and the worker run against Postgres, as plain synchronous
//! functions over a diesel connection (callers run them on a blocking thread). Status changes
//! are conditional updates inside transactions, which is what makes a job end exactly once
//! however often it is delivered.

pub mod models;
mod simulations;
pub mod stats;

pub use simulations::*;
