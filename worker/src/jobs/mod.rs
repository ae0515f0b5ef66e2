//! Jobs the worker runs, one file per job, and how a job hands its run to the engine.

mod engine_task;
pub(crate) mod simulate;
pub(crate) mod work;
