//! The result of a simulation, exactly as the worker stores it and `/results/{id}` serves it
//! under `result`. Every series is indexed by year; see docs/model.md for the definitions.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The percentiles reported for every series, as fractions.
pub const PERCENTILES: [(&str, f64); 7] = [
    ("p5", 0.05),
    ("p10", 0.10),
    ("p25", 0.25),
    ("p50", 0.50),
    ("p75", 0.75),
    ("p90", 0.90),
    ("p95", 0.95),
];

/// One value per percentile for each point of a series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PercentileSeries {
    pub p5: Vec<f64>,
    pub p10: Vec<f64>,
    pub p25: Vec<f64>,
    pub p50: Vec<f64>,
    pub p75: Vec<f64>,
    pub p90: Vec<f64>,
    pub p95: Vec<f64>,
}

impl PercentileSeries {
    pub(crate) fn with_len(n: usize) -> Self {
        let v = || vec![0.0; n];
        Self { p5: v(), p10: v(), p25: v(), p50: v(), p75: v(), p90: v(), p95: v() }
    }

    /// The series in [`PERCENTILES`] order.
    pub fn columns(&self) -> [&Vec<f64>; 7] {
        [&self.p5, &self.p10, &self.p25, &self.p50, &self.p75, &self.p90, &self.p95]
    }

    pub fn columns_mut(&mut self) -> [&mut Vec<f64>; 7] {
        [
            &mut self.p5,
            &mut self.p10,
            &mut self.p25,
            &mut self.p50,
            &mut self.p75,
            &mut self.p90,
            &mut self.p95,
        ]
    }
}

/// Real terminal wealth at the horizon.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TerminalWealth {
    /// Under `student_t` not an estimate of anything: that model's mean gross return is
    /// infinite, so the figure moves by orders of magnitude between seeds (docs/model.md §3).
    pub mean: f64,
    pub p5: f64,
    pub p50: f64,
    pub p95: f64,
    pub histogram: Histogram,
}

/// Counts of scenarios by real terminal wealth: `counts[i]` falls in
/// `[edges[i], edges[i+1])`; `depleted` ended with nothing (every depleted scenario, and any
/// that ended at zero without being depleted: a plan without spending can); `above` ended at or
/// beyond the last edge (the 99th percentile), so a few extreme paths do not flatten the
/// picture.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Histogram {
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
    pub depleted: u64,
    pub above: u64,
}

/// Real spending, one value per simulated year.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SpendingPercentiles {
    /// The years the arrays cover: 1..=years (year y is months 12(y−1)..12y−1).
    pub years: Vec<u32>,
    #[serde(flatten)]
    pub percentiles: PercentileSeries,
}

/// What happened in one rolling window of the `historical` model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct HistoricalWindow {
    pub(crate) start_year: u16,
    pub(crate) succeeded: bool,
    /// Year of the horizon (1-based) in which the portfolio ran out, if it did.
    pub(crate) depletion_year: Option<u32>,
    /// Real wealth at the horizon.
    pub(crate) terminal_real: f64,
}

/// The per-window outcome of the `historical` model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoricalOutcome {
    pub(crate) windows: u32,
    pub(crate) start_years: Vec<u16>,
    pub(crate) failed_start_years: Vec<u16>,
    pub(crate) outcomes: Vec<HistoricalWindow>,
}

/// What the safe-spending solver found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SolveOutcome {
    pub target_success: f64,
    /// Largest constant real monthly spending whose success probability ≥ the target, within
    /// 0.5 % (bisection on common random numbers).
    pub safe_monthly_spending: f64,
    /// Success probability at `safe_monthly_spending`.
    pub success_probability: f64,
    /// Simulations run by the bisection.
    pub(crate) iterations: u32,
}

/// The engine's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SimulationResult {
    /// Share of scenarios never depleted.
    pub success_probability: f64,
    /// Binomial standard error √(p(1−p)/n); `null` for `historical`, whose windows overlap.
    pub success_probability_stderr: Option<f64>,
    /// Year ends 0..=years (0 is the start).
    pub years: Vec<u32>,
    /// Real wealth (today's money) at each year end.
    pub percentiles: PercentileSeries,
    /// Nominal wealth at each year end.
    pub nominal_percentiles: PercentileSeries,
    pub terminal: TerminalWealth,
    /// Cumulative share of scenarios depleted by each year end (index 0 is 0).
    pub depletion_probability_by_year: Vec<f64>,
    /// Median year (1-based) of depletion among failed scenarios; `null` if none failed.
    pub median_depletion_year: Option<f64>,
    pub spending_percentiles: SpendingPercentiles,
    /// Scenarios actually run (the window count for `historical`).
    pub n_scenarios: u32,
    pub scenario_months: u64,
    pub elapsed_ms: f64,
    pub engine_version: String,
    pub return_model: String,
    /// Whether `assumptions` shaped the returns (`false` for `bootstrap` and `historical`).
    pub assumptions_used: bool,
    /// Notes on how the request was interpreted.
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub historical: Option<HistoricalOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub solve: Option<SolveOutcome>,
}
