//! Progress as the worker reports it (batches done / total): the total is known before the
//! first batch and only shrinks by passes that will not run, so the fraction never goes back,
//! whatever the passes (a memory budget that splits the recording) or the solver's iterations.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde_json::json;

use super::request;
use crate::simulation::{ProgressCounter, RunOptions, SOLVER_MAX_ITERATIONS, run};

fn options(progress: &Arc<ProgressCounter>, cancel: bool) -> RunOptions {
    RunOptions {
        // 8 recorded slots of 2,000 scenarios a pass; batches of 256 on any number of threads
        // (no share of the threads is smaller): 8 batches a pass.
        memory_budget: 8 * 2_000 * 8,
        batch_size: 256,
        progress: Some(progress.clone()),
        cancel: Some(Arc::new(AtomicBool::new(cancel))),
    }
}

#[test]
fn the_whole_total_is_known_before_the_first_batch() {
    let plan = request(json!({"starting_portfolio": 1_000_000, "monthly_spending": 4_000,
                              "years": 15, "n_scenarios": 2_000}));
    let progress = Arc::new(ProgressCounter::default());
    // Cancelled before it starts: no batch runs, but the total is already every pass's.
    assert!(run(&plan, 1, &options(&progress, true)).is_err());
    let (done, total) = progress.snapshot();
    assert_eq!(done, 0);
    // 16 real and 16 nominal year ends (constant spending needs no rows), 8 a pass: 4 passes
    // of 8 batches.
    assert_eq!(total, 4 * 8, "{total}");

    let progress = Arc::new(ProgressCounter::default());
    run(&plan, 1, &options(&progress, false)).unwrap();
    assert_eq!(progress.snapshot(), (32, 32), "every batch counted ran");
}

#[test]
fn a_solver_run_counts_its_worst_case_then_takes_off_what_it_did_not_need() {
    let plan = request(json!({"starting_portfolio": 1_000_000, "monthly_spending": 4_000,
                              "years": 15, "n_scenarios": 2_000,
                              "solve": {"target_success": 0.9}}));
    let progress = Arc::new(ProgressCounter::default());
    assert!(run(&plan, 1, &options(&progress, true)).is_err());
    let passes = 4 + SOLVER_MAX_ITERATIONS as u64;
    assert_eq!(progress.snapshot(), (0, passes * 8));

    let progress = Arc::new(ProgressCounter::default());
    let result = run(&plan, 1, &options(&progress, false)).unwrap();
    let iterations = u64::from(result.solve.unwrap().iterations);
    assert!(iterations < SOLVER_MAX_ITERATIONS as u64, "{iterations}");
    assert_eq!(progress.snapshot(), ((4 + iterations) * 8, (4 + iterations) * 8));
}
