//! Jobs the worker runs, one file per job.

pub(crate) mod simulate;
pub(crate) mod work;
