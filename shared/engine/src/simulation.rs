//! One run of the model: batches of scenarios in parallel, the statistics of what they
//! recorded, and the safe-spending solver. The worker calls [`run`] from a blocking thread
//! inside a rayon pool; `portfolio-worker simulate` calls it directly.
//!
//! A run is split into batches of scenarios simulated in parallel. Only what the statistics
//! need is kept: one value per scenario for each (quantity, year) being recorded, and the month
//! each scenario ran out. When that would exceed the memory budget (a million scenarios over
//! decades), the run is repeated in passes that each record a share of the years; every
//! scenario has its own random stream, so each pass sees the same paths.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use crate::history;
use crate::kernel::{NEVER, Quantity, Recording, simulate_batch};
use crate::plan::Plan;
use crate::request::{ReturnModel, SimulationRequest, Withdrawal, historical_windows};
use crate::result::{
    HistoricalOutcome, HistoricalWindow, PERCENTILES, PercentileSeries, SimulationResult,
    SolveOutcome, SpendingPercentiles, TerminalWealth,
};
use crate::stats;

/// Identifies the model and its random-number layout; results with the same version, request
/// and seed are bit-identical. The model revision (`model 2`: the solver's answer capped at the
/// largest spending a plan takes, the `student_t` note; `model 3`: the terminal histogram bins
/// every scenario where it lies; `model 4`: money paid into an empty or nearly empty portfolio
/// that is not rebalanced every month is invested, not lost or overflowed) changes with any
/// change to what a result holds, so the result cache never serves an older engine's answer.
pub const ENGINE_VERSION: &str = concat!(
    "portfolio-mc-engine/",
    env!("CARGO_PKG_VERSION"),
    " (model 4, pcg32-per-scenario, box-muller-f32)"
);

/// Precision of the safe-spending bisection, relative to the answer: the bracket [lo, hi]
/// ends with hi ≤ lo·(1 + tolerance), so spending 0.5 % above the answer fails the target.
const SOLVER_TOLERANCE: f64 = 0.005;
/// A bracket whose upper end is below a cent a month is not narrowed further (it only arises
/// when every positive spending misses the target, e.g. scenarios whose wealth hits exactly 0).
const SOLVER_SMALLEST: f64 = 0.01;
/// The largest answer of the solver: the largest `monthly_spending` a plan may ask for.
pub(crate) const SOLVER_LARGEST: f64 = crate::request::rules::MONTHLY_SPENDING.max;
/// The most runs the solver makes (bracketing and bisection together); `cost` counts on it.
pub(crate) const SOLVER_MAX_ITERATIONS: u32 = 80;
/// Bins of the terminal-wealth histogram.
const HISTOGRAM_BINS: usize = 40;

/// How to run (none of it changes the result).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Scenarios per batch: the unit of parallel work, progress and cancellation.
    pub batch_size: usize,
    /// Bytes the recorded per-scenario values may occupy at once.
    pub memory_budget: usize,
    pub progress: Option<Arc<ProgressCounter>>,
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { batch_size: 1024, memory_budget: 256 << 20, progress: None, cancel: None }
    }
}

/// Batches done out of batches planned, shared with whoever reports progress.
#[derive(Debug, Default)]
pub struct ProgressCounter {
    done: AtomicU64,
    total: AtomicU64,
}

impl ProgressCounter {
    /// `(done, total)`.
    pub fn snapshot(&self) -> (u64, u64) {
        (self.done.load(Ordering::Relaxed), self.total.load(Ordering::Relaxed))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("the simulation was cancelled")]
    Cancelled,
}

/// Runs `request` with `seed` (the request's own seed is ignored here; the caller decides).
pub fn run(
    request: &SimulationRequest,
    seed: u64,
    options: &RunOptions,
) -> Result<SimulationResult, EngineError> {
    run_with_plan(request, Plan::new(request, seed), options)
}

/// [`run`] with a plan already built from `request`. Crate-internal: the tests use it to switch
/// the fused kernel off (`plan.allow_fused`) and check it against the general one.
pub(crate) fn run_with_plan(
    request: &SimulationRequest,
    plan: Plan,
    options: &RunOptions,
) -> Result<SimulationResult, EngineError> {
    let started = Instant::now();
    let runner = Runner::new(request, plan, options);
    let mut notes = Vec::new();
    // Every batch the run may take is counted before the first, so progress (done / total)
    // only ever moves forward: the passes of the full run, and the solver's worst case, whose
    // unused part is taken off once it has its answer.
    let solver_passes = if request.solve.is_some() { SOLVER_MAX_ITERATIONS } else { 0 };
    runner.expect_passes(runner.full_run_passes() + solver_passes as usize);

    let (spending, solve) = match request.solve {
        Some(solve) => {
            let outcome = runner.solve(solve.target_success)?;
            runner.unexpect_passes(solver_passes.saturating_sub(outcome.iterations) as usize);
            notes.push(format!(
                "monthly_spending was replaced by the solver's safe_monthly_spending ({:.2}) \
                 for every series in this result",
                outcome.safe_monthly_spending
            ));
            if outcome.safe_monthly_spending >= SOLVER_LARGEST {
                notes.push(format!(
                    "the target is met even at {SOLVER_LARGEST:.0} a month, the largest \
                     monthly_spending a plan may ask for: the solver looked no higher"
                ));
            }
            (outcome.safe_monthly_spending, Some(outcome))
        }
        None => (request.monthly_spending, None),
    };
    let mut result = runner.full_run(spending)?;
    match request.return_model {
        ReturnModel::Bootstrap { block_years } => notes.push(format!(
            "assumptions are not used by the bootstrap model: returns and inflation are calendar \
             years of the 1928–2024 table drawn in circular blocks of {block_years} year(s)"
        )),
        ReturnModel::Historical => notes.push(format!(
            "assumptions and n_scenarios are not used by the historical model: it ran all {} \
             rolling {}-year windows of the 1928–2024 table",
            historical_windows(request.years),
            request.years
        )),
        ReturnModel::StudentT { .. } => notes.push(
            "terminal.mean is not an estimate under student_t: the mean of its gross returns is \
             infinite, so the figure is set by the run's most extreme draws and moves by orders \
             of magnitude between seeds; read the percentiles"
                .to_owned(),
        ),
        _ => {}
    }
    result.notes = notes;
    result.solve = solve;
    result.elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(result)
}

/// Real spending by year under constant real spending without cash flows: `spending` times the
/// months paid, which is 12 before the depletion year, the months before depletion in it, and
/// 0 after. Percentiles come from the counts of each value, exactly as numpy's would from the
/// full rows.
fn constant_spending_percentiles(
    depletion: &[u32],
    spending: f64,
    years: usize,
    ps: &[f64],
) -> PercentileSeries {
    let months = years * 12;
    let mut by_month = vec![0u64; months + 1];
    for &d in depletion {
        by_month[(d as usize).min(months)] += 1;
    }
    let n = depletion.len() as u64;
    let mut out = PercentileSeries::with_len(years);
    let mut depleted_before = 0u64;
    for y in 0..years {
        // counts[k] scenarios paid k months in year y + 1.
        let mut counts = [0u64; 13];
        counts[0] = depleted_before;
        for k in 0..12 {
            counts[k] += by_month[12 * y + k];
        }
        let this_year: u64 = by_month[12 * y..12 * y + 12].iter().sum();
        counts[12] = n - depleted_before - this_year;
        depleted_before += this_year;
        let values: Vec<f64> = (0..=12).map(|k| spending * k as f64).collect();
        for (column, v) in
            out.columns_mut().into_iter().zip(stats::percentiles_of_counts(&values, &counts, ps))
        {
            column[y] = v;
        }
    }
    out
}

struct Runner<'a> {
    plan: Plan,
    request: &'a SimulationRequest,
    scenarios: usize,
    batch: usize,
    options: &'a RunOptions,
}

/// What one simulation of every scenario leaves behind.
struct Simulated {
    /// Per batch, `slots × batch_len` values, batch after batch.
    values: Vec<f64>,
    depletion: Vec<u32>,
}

/// The smallest batch a run is cut into to keep every thread busy: below it the fixed cost of a
/// batch outweighs the work.
const SMALLEST_SHARE: usize = 256;

/// The batch size a run uses: `batch_size`, or less when that would leave threads idle. A plan
/// of 1,000 scenarios is one batch of 1,024 and ran on one core; cut into two of 504 it runs on
/// both, in about half the time. Results do not depend on it (each scenario has its own random
/// stream), only progress counts do.
fn share_of_threads(batch_size: usize, scenarios: usize, threads: usize) -> usize {
    let share = scenarios.div_ceil(threads.max(1)).next_multiple_of(8).max(SMALLEST_SHARE);
    batch_size.min(share)
}

impl<'a> Runner<'a> {
    fn new(request: &'a SimulationRequest, plan: Plan, options: &'a RunOptions) -> Self {
        let scenarios = request.effective_scenarios() as usize;
        let batch =
            share_of_threads(options.batch_size.max(1), scenarios, rayon::current_num_threads());
        Self { plan, request, scenarios, batch, options }
    }

    fn batches(&self) -> usize {
        self.scenarios.div_ceil(self.batch)
    }

    /// Adds `passes` passes' batches to the progress total.
    fn expect_passes(&self, passes: usize) {
        if let Some(p) = &self.options.progress {
            p.total.fetch_add((passes * self.batches()) as u64, Ordering::Relaxed);
        }
    }

    /// Takes `passes` passes' batches off the progress total: passes that will not run.
    fn unexpect_passes(&self, passes: usize) {
        if let Some(p) = &self.options.progress {
            p.total.fetch_sub((passes * self.batches()) as u64, Ordering::Relaxed);
        }
    }

    /// What the full run records of each scenario: real and nominal wealth at each year end,
    /// and spending in each year unless it follows from the depletion months (constant real
    /// spending without cash flows spends exactly `spending` in every month a scenario is
    /// alive, so its spending percentiles need no per-scenario rows).
    fn recorded_slots(&self) -> Vec<(Quantity, usize)> {
        let years = self.plan.years;
        let spending_from_depletion = self.spending_from_depletion();
        (0..=years)
            .map(|y| (Quantity::Real, y))
            .chain((0..=years).map(|y| (Quantity::Nominal, y)))
            .chain(
                (1..=years).filter(|_| !spending_from_depletion).map(|y| (Quantity::Spending, y)),
            )
            .collect()
    }

    fn spending_from_depletion(&self) -> bool {
        matches!(self.plan.withdrawal, Withdrawal::ConstantReal) && !self.plan.flows.any
    }

    /// Slots recorded per pass, so that one pass's values fit the memory budget.
    fn slots_per_pass(&self) -> usize {
        (self.options.memory_budget / (8 * self.scenarios)).max(1)
    }

    fn full_run_passes(&self) -> usize {
        self.recorded_slots().len().div_ceil(self.slots_per_pass())
    }

    fn simulate(
        &self,
        spending: f64,
        slots: &[(Quantity, usize)],
    ) -> Result<Simulated, EngineError> {
        let recording = Recording::new(self.plan.years, slots);
        let width = recording.slots();
        let mut values = vec![0.0; width * self.scenarios];
        let mut depletion = vec![NEVER; self.scenarios];
        let value_chunks: Vec<&mut [f64]> = if width == 0 {
            (0..self.batches()).map(|_| &mut [][..]).collect()
        } else {
            values.chunks_mut(width * self.batch).collect()
        };
        value_chunks
            .into_par_iter()
            .zip(depletion.par_chunks_mut(self.batch))
            .enumerate()
            .with_max_len(1)
            .try_for_each(|(b, (vals, dep))| {
                if self.options.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
                    return Err(EngineError::Cancelled);
                }
                simulate_batch(&self.plan, spending, b * self.batch, &recording, vals, dep);
                if let Some(p) = &self.options.progress {
                    p.done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })?;
        Ok(Simulated { values, depletion })
    }

    /// The values of slot `k` of every scenario, in scenario order.
    fn gather(&self, sim: &Simulated, width: usize, k: usize) -> Vec<f64> {
        let mut row = Vec::with_capacity(self.scenarios);
        let mut offset = 0;
        for start in (0..self.scenarios).step_by(self.batch) {
            let len = self.batch.min(self.scenarios - start);
            row.extend_from_slice(&sim.values[offset + k * len..offset + (k + 1) * len]);
            offset += width * len;
        }
        row
    }

    fn full_run(&self, spending: f64) -> Result<SimulationResult, EngineError> {
        let years = self.plan.years;
        let n = self.scenarios;
        let spending_from_depletion = self.spending_from_depletion();
        let slots = self.recorded_slots();
        let per_pass = self.slots_per_pass();
        let ps: Vec<f64> = PERCENTILES.iter().map(|(_, p)| *p).collect();

        let mut real = PercentileSeries::with_len(years + 1);
        let mut nominal = PercentileSeries::with_len(years + 1);
        let mut spent = PercentileSeries::with_len(years);
        let mut terminal_row = Vec::new();
        let mut depletion = Vec::new();
        for pass in slots.chunks(per_pass) {
            let sim = self.simulate(spending, pass)?;
            let rows: Vec<(Vec<f64>, Option<Vec<f64>>)> = pass
                .par_iter()
                .enumerate()
                .map(|(k, &slot)| {
                    let mut row = self.gather(&sim, pass.len(), k);
                    let keep = (slot == (Quantity::Real, years)).then(|| row.clone());
                    (stats::percentiles(&mut row, &ps), keep)
                })
                .collect();
            for (&(q, y), (values, keep)) in pass.iter().zip(rows) {
                let (series, index) = match q {
                    Quantity::Real => (&mut real, y),
                    Quantity::Nominal => (&mut nominal, y),
                    Quantity::Spending => (&mut spent, y - 1),
                };
                for (column, v) in series.columns_mut().into_iter().zip(values) {
                    column[index] = v;
                }
                if let Some(row) = keep {
                    terminal_row = row;
                }
            }
            if depletion.is_empty() {
                depletion = sim.depletion;
            }
        }

        if spending_from_depletion {
            spent = constant_spending_percentiles(&depletion, spending, years, &ps);
        }

        let survived = depletion.iter().filter(|&&m| m == NEVER).count();
        let success = survived as f64 / n as f64;
        let depletion_year = |m: u32| (m != NEVER).then(|| m / 12 + 1);
        let mut by_year = vec![0usize; years + 1];
        for y in depletion.iter().filter_map(|&m| depletion_year(m)) {
            by_year[y as usize] += 1;
        }
        let mut cumulative = 0usize;
        let depletion_probability_by_year = by_year
            .iter()
            .map(|&c| {
                cumulative += c;
                cumulative as f64 / n as f64
            })
            .collect();
        let mut failed: Vec<f64> =
            depletion.iter().filter_map(|&m| depletion_year(m)).map(f64::from).collect();
        let median_depletion_year =
            (!failed.is_empty()).then(|| stats::percentiles(&mut failed, &[0.5])[0]);

        let historical = matches!(self.request.return_model, ReturnModel::Historical).then(|| {
            let first_year = history::table()[0].year;
            let outcomes: Vec<HistoricalWindow> = (0..n)
                .map(|j| HistoricalWindow {
                    start_year: first_year + j as u16,
                    succeeded: depletion[j] == NEVER,
                    depletion_year: depletion_year(depletion[j]),
                    terminal_real: terminal_row[j],
                })
                .collect();
            HistoricalOutcome {
                windows: n as u32,
                start_years: outcomes.iter().map(|o| o.start_year).collect(),
                failed_start_years: outcomes
                    .iter()
                    .filter(|o| !o.succeeded)
                    .map(|o| o.start_year)
                    .collect(),
                outcomes,
            }
        });

        Ok(SimulationResult {
            success_probability: success,
            success_probability_stderr: (historical.is_none())
                .then(|| (success * (1.0 - success) / n as f64).sqrt()),
            years: (0..=years as u32).collect(),
            terminal: TerminalWealth {
                mean: stats::mean(&terminal_row),
                histogram: stats::histogram(&terminal_row, HISTOGRAM_BINS),
                p5: real.p5[years],
                p50: real.p50[years],
                p95: real.p95[years],
            },
            percentiles: real,
            nominal_percentiles: nominal,
            depletion_probability_by_year,
            median_depletion_year,
            spending_percentiles: SpendingPercentiles {
                years: (1..=years as u32).collect(),
                percentiles: spent,
            },
            n_scenarios: n as u32,
            scenario_months: (n * self.plan.months) as u64,
            elapsed_ms: 0.0,
            engine_version: ENGINE_VERSION.to_owned(),
            return_model: self.request.return_model.name().to_owned(),
            assumptions_used: self.request.return_model.uses_assumptions(),
            notes: Vec::new(),
            historical,
            solve: None,
        })
    }

    fn success_at(&self, spending: f64) -> Result<f64, EngineError> {
        let sim = self.simulate(spending, &[])?;
        let survived = sim.depletion.iter().filter(|&&m| m == NEVER).count();
        Ok(survived as f64 / self.scenarios as f64)
    }

    /// Bisection on common random numbers: every candidate replays the same scenario streams,
    /// so success is a non-increasing step function of spending and the bracket is exact.
    fn solve(&self, target: f64) -> Result<SolveOutcome, EngineError> {
        let mut iterations = 1;
        let at_zero = self.success_at(0.0)?;
        if at_zero < target {
            return Ok(SolveOutcome {
                target_success: target,
                safe_monthly_spending: 0.0,
                success_probability: at_zero,
                iterations,
            });
        }
        let (mut lo, mut lo_success) = (0.0, at_zero);
        // Paying the whole portfolio out over the horizon at zero return: a spending twice
        // that rarely survives, so the bracket seldom needs widening.
        // The bracket stops at the largest spending a plan may ask for, so the answer can be
        // submitted as a plan's `monthly_spending`; a target met even there answers it.
        let cap = SOLVER_LARGEST;
        let mut hi = (2.0 * self.plan.starting_portfolio / self.plan.months as f64).clamp(1.0, cap);
        loop {
            iterations += 1;
            let s = self.success_at(hi)?;
            if s < target || hi >= cap || iterations >= SOLVER_MAX_ITERATIONS {
                if s >= target {
                    (lo, lo_success) = (hi, s);
                }
                break;
            }
            (lo, lo_success) = (hi, s);
            hi = (2.0 * hi).min(cap);
        }
        // Relative to lo, not hi: success is non-increasing in spending and fails at hi, so
        // hi ≤ 1.005·lo makes 0.5 % above the answer fail too (a rule relative to hi allowed
        // hi up to lo/0.995 ≈ 1.005025·lo).
        while hi - lo > SOLVER_TOLERANCE * lo
            && hi > SOLVER_SMALLEST
            && iterations < SOLVER_MAX_ITERATIONS
        {
            iterations += 1;
            let mid = 0.5 * (lo + hi);
            let s = self.success_at(mid)?;
            if s >= target {
                (lo, lo_success) = (mid, s);
            } else {
                hi = mid;
            }
        }
        Ok(SolveOutcome {
            target_success: target,
            safe_monthly_spending: lo,
            success_probability: lo_success,
            iterations,
        })
    }
}

#[cfg(test)]
mod share_tests {
    use super::share_of_threads;

    #[test]
    fn a_small_run_is_cut_into_a_share_per_thread_and_a_large_one_keeps_its_batch_size() {
        assert_eq!(share_of_threads(1024, 1_000, 2), 504, "two batches of 504 and 496");
        assert_eq!(share_of_threads(1024, 1_000, 1), 1000usize.next_multiple_of(8));
        assert_eq!(share_of_threads(1024, 100_000, 2), 1024);
        assert_eq!(share_of_threads(1024, 300, 8), 256, "no share below the smallest");
        assert_eq!(share_of_threads(100, 1_000, 2), 100, "a smaller configured batch stands");
        assert_eq!(share_of_threads(1024, 1_000, 0), 1000usize.next_multiple_of(8));
    }
}
