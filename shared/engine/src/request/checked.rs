//! The checked request: types that only the validator builds, so that holding one is proof
//! that every rule held. Their fields are private to the engine; other crates read the few
//! they need through accessors, and serialise the rest as the normalised request.

use std::sync::LazyLock;

use rand_distr::ChiSquared;
use serde::{Serialize, Serializer};

use super::correlation::Correlation;
use super::input::Rebalancing;
use crate::history;

/// A request that passed every rule. Serialises to the normalised form (every default filled
/// in) that is stored with the job and served back in `/results/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimulationRequest {
    pub(crate) starting_portfolio: f64,
    pub(crate) monthly_spending: f64,
    pub(crate) years: u32,
    pub(crate) n_scenarios: u32,
    /// `None` until the API draws one at submit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) seed: Option<u64>,
    pub(crate) allocation: Allocation,
    pub(crate) assumptions: Assumptions,
    pub(crate) annual_fee: f64,
    pub(crate) return_model: ReturnModel,
    pub(crate) withdrawal: Withdrawal,
    pub(crate) income: Vec<IncomeStream>,
    pub(crate) expenses: Vec<OneOff>,
    pub(crate) inflows: Vec<OneOff>,
    pub(crate) rebalancing: Rebalancing,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) solve: Option<Solve>,
}

impl SimulationRequest {
    /// The seed the request brought, if any.
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// The success probability the solver is asked to find the safe spending for, if any.
    pub fn solve_target(&self) -> Option<f64> {
        self.solve.map(|s| s.target_success)
    }

    /// The same request with `seed` (any `u64` is a valid seed for the engine; the API draws
    /// one for a request that brought none).
    pub fn with_seed(self, seed: u64) -> Self {
        Self { seed: Some(seed), ..self }
    }

    /// The number of scenarios asked for (the `historical` model runs every window instead:
    /// see `SimulationRequest::effective_scenarios`).
    pub fn n_scenarios(&self) -> u32 {
        self.n_scenarios
    }

    /// The number of scenarios the engine will run: every rolling window for `historical`,
    /// else `n_scenarios`.
    pub(crate) fn effective_scenarios(&self) -> u32 {
        match self.return_model {
            ReturnModel::Historical => historical_windows(self.years),
            _ => self.n_scenarios,
        }
    }

    /// The normalised JSON form, as stored and served.
    pub fn to_json(&self) -> serde_json::Value {
        // Plain structs of numbers, strings and lists: serialising to a `Value` cannot fail.
        serde_json::to_value(self).expect("a checked request always serialises")
    }
}

/// Rolling windows of `years` in the embedded table.
pub(crate) fn historical_windows(years: u32) -> u32 {
    (history::table().len() as u32 + 1).saturating_sub(years)
}

/// Target weights: each within [0, 1], summing to 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Allocation {
    pub(crate) stocks: f64,
    pub(crate) bonds: f64,
    pub(crate) cash: f64,
}

impl Allocation {
    pub(crate) fn weights(&self) -> [f64; 3] {
        [self.stocks, self.bonds, self.cash]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct AssetAssumption {
    pub(crate) mean_return: f64,
    pub(crate) volatility: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct InflationAssumption {
    pub(crate) mean: f64,
    pub(crate) volatility: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Assumptions {
    pub(crate) stocks: AssetAssumption,
    pub(crate) bonds: AssetAssumption,
    pub(crate) cash: AssetAssumption,
    pub(crate) correlation: Correlation,
    pub(crate) inflation: InflationAssumption,
}

static HISTORICAL: LazyLock<Assumptions> = LazyLock::new(|| {
    let t = history::table();
    let col = |f: fn(&history::HistoricalYear) -> f64| t.iter().map(f).collect::<Vec<_>>();
    let m = history::sample_moments(&[
        col(|r| r.stocks),
        col(|r| r.bonds),
        col(|r| r.cash),
        col(|r| r.inflation),
    ]);
    let asset = |i: usize| AssetAssumption { mean_return: m.mean[i], volatility: m.std_dev[i] };
    let mut correlation = [[0.0; 3]; 3];
    for (i, row) in correlation.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            *cell = m.correlation[i][j];
        }
    }
    Assumptions {
        stocks: asset(0),
        bonds: asset(1),
        cash: asset(2),
        // Sample correlations of the embedded table: a unit diagonal, symmetric by
        // construction, and positive semi-definite as every sample correlation is (a test
        // checks it).
        correlation: Correlation::try_from(correlation)
            .expect("the embedded table's correlation matrix is a valid one"),
        inflation: InflationAssumption { mean: m.mean[3], volatility: m.std_dev[3] },
    }
});

impl Assumptions {
    pub(crate) fn assets(&self) -> [AssetAssumption; 3] {
        [self.stocks, self.bonds, self.cash]
    }

    /// Means, volatilities and correlations of the embedded 1928–2024 table (stocks = S&P 500,
    /// bonds = 10-year Treasury, cash = 3-month T-bill, inflation = CPI): arithmetic means and
    /// sample (n − 1) standard deviations of the annual returns. Computed once.
    pub(crate) fn historical() -> &'static Self {
        &HISTORICAL
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum ReturnModel {
    Lognormal,
    Normal,
    StudentT { df: DegreesOfFreedom },
    Bootstrap { block_years: u32 },
    Historical,
}

impl ReturnModel {
    /// Whether the model draws from `assumptions` (the parametric ones) or replays the table.
    pub(crate) fn uses_assumptions(&self) -> bool {
        !matches!(self, Self::Bootstrap { .. } | Self::Historical)
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Lognormal => "lognormal",
            Self::Normal => "normal",
            Self::StudentT { .. } => "student_t",
            Self::Bootstrap { .. } => "bootstrap",
            Self::Historical => "historical",
        }
    }
}

/// The Student-t model's degrees of freedom, with the chi-square distribution that scales its
/// shocks (built once, when the request is checked). Serialises as the number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DegreesOfFreedom {
    df: f64,
    chi_squared: ChiSquared<f64>,
}

impl DegreesOfFreedom {
    /// `None` where no chi-square distribution has `df` degrees of freedom (`df` ≤ 0); the
    /// request's own rule (`rules::DF`) is narrower.
    pub(crate) fn new(df: f64) -> Option<Self> {
        ChiSquared::new(df).ok().map(|chi_squared| Self { df, chi_squared })
    }

    pub(crate) fn get(&self) -> f64 {
        self.df
    }

    pub(crate) fn chi_squared(&self) -> &ChiSquared<f64> {
        &self.chi_squared
    }
}

impl Serialize for DegreesOfFreedom {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.df.serialize(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "strategy", rename_all = "snake_case")]
pub(crate) enum Withdrawal {
    ConstantReal,
    PercentOfPortfolio { rate: f64 },
    Guardrails { upper_guardrail: f64, lower_guardrail: f64, cut: f64, raise: f64 },
    FloorCeiling { rate: f64, monthly_floor: f64, monthly_ceiling: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct IncomeStream {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    pub(crate) monthly_amount: f64,
    pub(crate) start_year: u32,
    pub(crate) end_year: u32,
    pub(crate) inflation_adjusted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct OneOff {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    pub(crate) year: u32,
    pub(crate) amount: f64,
    pub(crate) inflation_adjusted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Solve {
    pub(crate) target_success: f64,
}
