//! Which engine threads a job runs on: light jobs share one pool, and each heavy job has a pool
//! of its own for as long as it runs (at most `WORKER_CONCURRENCY` of them at once).
//!
//! Why apart: a rayon thread that waits for the rest of its job's batches runs other work of
//! its pool meanwhile, another job's whole run included, and its own job goes on only when that
//! run has ended. Two heavy jobs on one pool: one stood still at the end of a pass for as long
//! as the other ran (17 s of a 1,000,000-scenario plan), and a cancel of it, which the engine
//! reads between batches, waited as long (37 s, where the docs promise under a second). Its
//! timeout and its fencing waited alike. On pools of their own, heavy jobs share the CPUs by
//! the kernel's time slices instead, each at its own pace. Light jobs last tens of milliseconds,
//! so one held up inside another waits that long at most; they keep sharing one pool, where a
//! burst of them runs on as many threads as there are CPUs.

use std::sync::{Arc, Mutex};

use rayon::ThreadPool;

use crate::engine_threads;

/// The engine's pools (see the module's doc).
pub struct EnginePools {
    shared: Arc<ThreadPool>,
    /// The heavy pools no job runs on now.
    free: Mutex<Vec<Arc<ThreadPool>>>,
}

impl EnginePools {
    /// A shared pool and `heavy` pools of their own, each of `threads` threads (0: one per
    /// CPU), held to CPUs as [`engine_threads::pool`] says.
    pub fn new(threads: usize, pin: bool, heavy: usize) -> anyhow::Result<Arc<Self>> {
        let shared = Arc::new(engine_threads::pool(threads, pin, "engine-")?);
        let free = (0..heavy)
            .map(|k| engine_threads::pool(threads, pin, &format!("engine-h{k}-")).map(Arc::new))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Arc::new(Self { shared, free: Mutex::new(free) }))
    }

    /// The pool a job runs on: the shared one for a light job, a free one of its own for a
    /// heavy job, given back when the [`EnginePool`] drops (the run holds it until it ends). A
    /// heavy job that finds none free (a run still ending after its job gave up on it) shares.
    pub fn take(self: &Arc<Self>, light: bool) -> EnginePool {
        if !light && let Some(own) = self.free.lock().expect("lock").pop() {
            return EnginePool { pool: own, back_to: Some(self.clone()) };
        }
        EnginePool { pool: self.shared.clone(), back_to: None }
    }
}

/// One job's pool, for as long as its run holds it.
pub struct EnginePool {
    pool: Arc<ThreadPool>,
    /// Where a heavy job's own pool goes back.
    back_to: Option<Arc<EnginePools>>,
}

impl EnginePool {
    /// The pool itself, to spawn on while the run holds `self`.
    pub(crate) fn handle(&self) -> Arc<ThreadPool> {
        self.pool.clone()
    }
}

impl Drop for EnginePool {
    fn drop(&mut self) {
        if let Some(pools) = self.back_to.take() {
            pools.free.lock().expect("lock").push(self.pool.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use rayon::prelude::*;

    use super::*;

    #[test]
    fn heavy_jobs_run_on_pools_of_their_own_and_give_them_back() {
        let pools = EnginePools::new(2, false, 2).unwrap();
        let (a, b) = (pools.take(false), pools.take(false));
        assert!(!Arc::ptr_eq(&a.pool, &b.pool));
        let light = pools.take(true);
        assert!(Arc::ptr_eq(&light.pool, &pools.shared));
        assert!(!Arc::ptr_eq(&a.pool, &pools.shared) && !Arc::ptr_eq(&b.pool, &pools.shared));
        let third = pools.take(false);
        assert!(Arc::ptr_eq(&third.pool, &pools.shared), "none free: it shares");
        let a_pool = a.pool.clone();
        drop(a);
        assert!(Arc::ptr_eq(&pools.take(false).pool, &a_pool), "given back when it ended");
    }

    /// An engine-like run: passes of many short batches, each first reading the cancel flag.
    fn run(passes: usize, batches: usize, cancel: &AtomicBool) -> Result<(), ()> {
        for _ in 0..passes {
            (0..batches).into_par_iter().with_max_len(1).try_for_each(|_| {
                if cancel.load(Ordering::Relaxed) {
                    return Err(());
                }
                std::thread::sleep(Duration::from_millis(5));
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Two heavy jobs at once, the first cancelled while the second runs: it stops within a few
    /// batches. With both on one shared pool this failed three runs out of three: in some
    /// rounds a thread waiting inside the first run had taken up the second, and the first
    /// stopped only once the second had ended (about 1 s later).
    #[test]
    fn a_heavy_job_is_cancelled_between_batches_while_another_runs() {
        let pools = EnginePools::new(2, false, 2).unwrap();
        let mut slowest = Duration::ZERO;
        for _ in 0..6 {
            let (first, second) =
                (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
            let (done, ended) = std::sync::mpsc::channel();
            for (cancel, passes, name) in [(&first, 3, "first"), (&second, 6, "second")] {
                let (pool, cancel, done) = (pools.take(false), cancel.clone(), done.clone());
                let runner = pool.handle();
                runner.spawn(move || {
                    let _held = pool;
                    let _ = run(passes, 100, &cancel);
                    done.send((name, Instant::now())).unwrap();
                });
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(100));
            let asked = Instant::now();
            first.store(true, Ordering::Relaxed);
            let (name, at) = ended.recv().unwrap();
            second.store(true, Ordering::Relaxed);
            ended.recv().unwrap();
            assert_eq!(name, "first", "the other job ended first");
            slowest = slowest.max(at - asked);
        }
        assert!(slowest < Duration::from_millis(250), "a cancel waited {slowest:?}");
    }
}
