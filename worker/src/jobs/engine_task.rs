//! Hands a job's engine run to the engine's thread pool and its outcome back to the job's
//! task. The run is spawned on the pool itself: through `spawn_blocking` and `install`, a
//! blocking thread woke only to wait for the pool and to wake the job's task in turn, two
//! more hand-offs between sleeping threads on every job (about 0.1 ms each on a 2-vCPU VM, on
//! the path of every answer).

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::engine_pools::EnginePool;

/// What a run that did not return left: its panic's payload.
pub(crate) type Panicked = Box<dyn Any + Send>;

/// Runs `f` on a thread of `pool`, in the caller's span, and resolves to what it returned,
/// or to the payload of its panic (caught there, so a bug in a job never reaches the pool).
/// The run holds `pool` until it ends, whatever becomes of the future.
pub(crate) fn spawn<R, F>(pool: EnginePool, f: F) -> impl Future<Output = Result<R, Panicked>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let (answer, outcome) = tokio::sync::oneshot::channel();
    let span = tracing::Span::current();
    let runner = pool.handle();
    runner.spawn(move || {
        let _held = pool;
        let _ = answer.send(catch_unwind(AssertUnwindSafe(|| span.in_scope(f))));
    });
    async move {
        outcome
            .await
            .unwrap_or_else(|_| Err(Box::new("the engine's thread ended without an answer")))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine_pools::EnginePools;

    fn pools() -> Arc<EnginePools> {
        EnginePools::new(2, false, 1).expect("pools")
    }

    #[tokio::test]
    async fn a_run_answers_with_what_it_returned_from_a_thread_of_the_pool() {
        let pools = pools();
        let answer = spawn(pools.take(true), || {
            (rayon::current_thread_index(), rayon::current_num_threads())
        });
        let (index, threads) = answer.await.expect("no panic");
        assert!(index.is_some(), "ran outside the pool");
        assert_eq!(threads, 2);
    }

    #[tokio::test]
    async fn a_panic_comes_back_as_its_payload_and_the_pool_goes_on() {
        let pools = pools();
        let payload =
            spawn(pools.take(false), || -> u32 { panic!("boom") }).await.expect_err("a panic");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
        assert_eq!(spawn(pools.take(false), || 7).await.expect("the pool still runs"), 7);
    }
}
