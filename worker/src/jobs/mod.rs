//! Jobs the worker runs, one file per job.

pub mod simulate;
