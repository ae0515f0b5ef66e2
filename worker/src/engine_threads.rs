//! The engine's threads: a rayon pool (the worker has a few, see `engine_pools`), each thread
//! held to a CPU of its own when the process may use exactly as many CPUs as the pool has
//! threads.
//!
//! Why hold them: a pool that has sat idle for a few milliseconds wakes its second thread onto
//! the CPU its first thread runs on (the kernel places a woken thread near its waker), where it
//! waits until the first is done instead of taking the idle CPU. A 1,000-scenario job, cut
//! into one batch per thread, then runs on one core: on a 2-vCPU VM the second batch was taken
//! by the other thread in about a third of such wake-ups. A thread held to its own CPU is woken
//! there. Measured in the service (docs/performance.md, "Rounds of work"): the engine alone
//! 2.4–3.1 → 1.8–2.1 ms per 1,000 × 30 y job, submit → result 0.85× (median of six rounds),
//! bursts unchanged.
//!
//! Why only when the counts match: a container limited by a CPU quota on a large node (a
//! Kubernetes pod) may use every CPU of the node with two threads' worth of time; pinning its
//! threads to the first two CPUs would put every such worker on the same two. When the process
//! has as many CPUs as threads (a Fargate task, a VM of its own, a compose replica on a host of
//! that size), one thread per CPU is what the scheduler would aim for anyway.

use anyhow::Context;
use core_affinity::CoreId;
use rayon::ThreadPool;

/// A pool of `threads` engine threads (0: one per CPU the process may use), held one per CPU
/// when `pin` is set and the counts match, named `{prefix}{i}` (`engine-` and what follows,
/// which the bench counts as the engine's).
pub fn pool(threads: usize, pin: bool, prefix: &str) -> anyhow::Result<ThreadPool> {
    let name = prefix.to_owned();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("{name}{i}"))
        .build()
        .context("starting the engine threads")?;
    let allowed = core_affinity::get_core_ids().unwrap_or_default();
    match cpus_to_hold(&allowed, pool.current_num_threads(), pin) {
        Some(cpus) => {
            let held = pool.broadcast(|ctx| core_affinity::set_for_current(cpus[ctx.index()]));
            if held.iter().all(|&ok| ok) {
                let ids: Vec<usize> = cpus.iter().map(|c| c.id).collect();
                tracing::info!(pool = %prefix, threads = cpus.len(), cpus = ?ids, "engine threads held one per CPU");
            } else {
                // The affinity call is refused only by a sandbox that forbids it; the threads
                // then run where the scheduler puts them, as without WORKER_PIN_THREADS.
                tracing::warn!("could not hold the engine threads to their CPUs; left unpinned");
            }
        }
        None => tracing::info!(
            pool = %prefix,
            threads = pool.current_num_threads(),
            cpus = allowed.len(),
            pin,
            "engine threads not held to CPUs"
        ),
    }
    Ok(pool)
}

/// The CPU each thread is held to, by thread index: the allowed ones in order when there are
/// exactly as many as threads.
fn cpus_to_hold(allowed: &[CoreId], threads: usize, pin: bool) -> Option<&[CoreId]> {
    (pin && threads > 1 && allowed.len() == threads).then_some(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(cpus: &[usize]) -> Vec<CoreId> {
        cpus.iter().map(|&id| CoreId { id }).collect()
    }

    #[test]
    fn threads_are_held_only_when_there_are_exactly_as_many_cpus() {
        let two = ids(&[3, 5]);
        assert_eq!(cpus_to_hold(&two, 2, true).map(<[_]>::len), Some(2));
        assert_eq!(cpus_to_hold(&two, 2, true).unwrap()[1].id, 5, "in the allowed order");
        assert!(cpus_to_hold(&two, 2, false).is_none(), "WORKER_PIN_THREADS=false");
        assert!(cpus_to_hold(&ids(&[0, 1, 2, 3]), 2, true).is_none(), "a quota on a larger node");
        assert!(cpus_to_hold(&two, 3, true).is_none(), "more threads than CPUs");
        assert!(cpus_to_hold(&ids(&[0]), 1, true).is_none(), "one thread has nothing to gain");
        assert!(cpus_to_hold(&[], 2, true).is_none(), "the CPUs could not be read");
    }

    /// The CPUs each engine thread may run on, by thread index.
    fn affinities(pool: &ThreadPool) -> Vec<Vec<usize>> {
        pool.broadcast(|_| {
            core_affinity::get_core_ids().unwrap_or_default().iter().map(|c| c.id).collect()
        })
    }

    #[test]
    fn a_pool_with_one_thread_per_allowed_cpu_holds_each_to_its_own() {
        let allowed: Vec<usize> =
            core_affinity::get_core_ids().expect("readable").iter().map(|c| c.id).collect();
        if allowed.len() < 2 {
            eprintln!("one CPU: nothing to hold");
            return;
        }
        let held = pool(allowed.len(), true, "engine-").expect("a pool");
        let per_thread = affinities(&held);
        assert_eq!(per_thread, allowed.iter().map(|&c| vec![c]).collect::<Vec<_>>());

        let free = pool(allowed.len(), false, "engine-").expect("a pool");
        assert!(affinities(&free).iter().all(|cpus| *cpus == allowed), "not asked: not held");
        let fewer = pool(allowed.len() - 1, true, "engine-").expect("a pool");
        assert!(affinities(&fewer).iter().all(|cpus| *cpus == allowed), "fewer threads: not held");
    }
}
