//! The worker: pulls simulation jobs from the Redis queue, runs the engine off the async
//! executor, and records results in Postgres. `simulate` runs the engine on a file instead.

pub mod simulate;
