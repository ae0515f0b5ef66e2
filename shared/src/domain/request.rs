//! A simulation request, parsed at the edge: JSON bytes become a [`SimulationRequest`] that
//! cannot hold an invalid value, or a list of [`FieldError`]s naming each field and rule.
//!
//! The API parses a body with this module before anything touches Postgres or Redis, and the
//! worker parses the stored copy again, so both sides apply exactly the same rules.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::history;
use crate::domain::FieldError;

/// Limits that depend on the deployment rather than on the model.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Largest `n_scenarios` accepted (at most [`MAX_SCENARIOS`]).
    pub max_scenarios: u32,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self { max_scenarios: MAX_SCENARIOS }
    }
}

pub const MAX_SCENARIOS: u32 = 1_000_000;
pub const DEFAULT_SCENARIOS: u32 = 10_000;
pub const MAX_YEARS: u32 = 100;
/// Seeds are stored in a signed 64-bit column, so they stay below 2^63.
pub const MAX_SEED: u64 = i64::MAX as u64;
const MAX_CASH_FLOWS: usize = 50;
const SUM_TOLERANCE: f64 = 1e-6;
const MATRIX_TOLERANCE: f64 = 1e-9;

// ---------------------------------------------------------------------------------------------
// The wire format: every field optional, unknown fields refused, so that a missing field becomes
// a validation error naming it rather than an opaque decoding error.
// ---------------------------------------------------------------------------------------------

/// Body of `POST /simulations`. Every number must be finite; unknown fields are refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulationRequestInput {
    /// Portfolio value at the start, in today's money. Required; > 0 and ≤ 1e12.
    #[schema(example = 1_000_000.0, exclusive_minimum = 0.0, maximum = 1e12)]
    pub starting_portfolio: Option<f64>,
    /// Spending per month in today's money, raised with inflation (`constant_real`), or the
    /// initial spending from which `guardrails` derives its initial withdrawal rate. Required;
    /// ≥ 0 and ≤ 1e10.
    #[schema(example = 4_000.0, minimum = 0.0, maximum = 1e10)]
    pub monthly_spending: Option<f64>,
    /// Horizon in years. Required; 1..=100 (≤ 97 for the `historical` model).
    #[schema(example = 30, minimum = 1, maximum = 100)]
    pub years: Option<u32>,
    /// Number of simulated scenarios; 1..=1,000,000 (a deployment can lower the cap).
    /// Default 10,000. Ignored by the `historical` model, which runs every window.
    #[schema(example = 10_000, minimum = 1, maximum = 1_000_000)]
    pub n_scenarios: Option<u32>,
    /// Random seed, 0..=2^63−1. Drawn at submit when absent and returned with the result, so
    /// every result can be reproduced.
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_u64)]
    pub seed: Option<u64>,
    pub allocation: Option<AllocationInput>,
    pub assumptions: Option<AssumptionsInput>,
    /// Annual fee as a fraction of the portfolio, charged monthly; 0..=0.1. Default 0.
    #[schema(minimum = 0.0, maximum = 0.1)]
    pub annual_fee: Option<f64>,
    pub return_model: Option<ReturnModelInput>,
    pub withdrawal: Option<WithdrawalInput>,
    /// Income streams (pensions, social security) that reduce the net withdrawal.
    pub income: Option<Vec<IncomeInput>>,
    /// One-off expenses taken from the portfolio at the start of a year.
    pub expenses: Option<Vec<OneOffInput>>,
    /// One-off inflows added to the portfolio at the start of a year.
    pub inflows: Option<Vec<OneOffInput>>,
    pub rebalancing: Option<Rebalancing>,
    pub solve: Option<SolveInput>,
}

/// Target weights; each ≥ 0, summing to 1 ± 1e-6. A missing asset counts as 0. Default
/// 0.6 / 0.4 / 0.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocationInput {
    pub stocks: Option<f64>,
    pub bonds: Option<f64>,
    pub cash: Option<f64>,
}

/// Capital-market assumptions for the parametric return models. Anything left out takes its
/// default, computed from the embedded 1928–2024 table (see docs/model.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssumptionsInput {
    pub stocks: Option<AssetAssumptionInput>,
    pub bonds: Option<AssetAssumptionInput>,
    pub cash: Option<AssetAssumptionInput>,
    /// 3×3 correlation of stocks, bonds, cash: symmetric, unit diagonal, positive
    /// semi-definite.
    pub correlation: Option<Vec<Vec<f64>>>,
    pub inflation: Option<InflationInput>,
}

/// Annual arithmetic mean return (−0.5..=1) and annual volatility (0..=1) of one asset.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetAssumptionInput {
    pub mean_return: Option<f64>,
    pub volatility: Option<f64>,
}

/// Annual mean inflation (−0.1..=0.5) and its annual volatility (0..=0.2).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InflationInput {
    pub mean: Option<f64>,
    pub volatility: Option<f64>,
}

/// How monthly returns are generated. Default `lognormal`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReturnModelInput {
    /// Correlated lognormal monthly returns (the foundation model).
    Lognormal {},
    /// Correlated normal monthly simple returns; gross return floored at 0.
    Normal {},
    /// As `lognormal`, with a unit-variance multivariate Student-t shock (`df` > 2).
    StudentT { df: Option<f64> },
    /// Calendar years of the 1928–2024 table drawn with replacement in blocks.
    Bootstrap { block_years: Option<u32> },
    /// Every rolling window of the 1928–2024 table; `n_scenarios` is ignored.
    Historical {},
}

/// How spending is set each year. Default `constant_real`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "strategy", rename_all = "snake_case", deny_unknown_fields)]
pub enum WithdrawalInput {
    /// `monthly_spending`, raised with inflation every month.
    ConstantReal {},
    /// At the start of each year, `rate` × portfolio, paid in twelve equal parts.
    PercentOfPortfolio { rate: Option<f64> },
    /// Guyton–Klinger decision rules around an initial withdrawal rate.
    Guardrails {
        upper_guardrail: Option<f64>,
        lower_guardrail: Option<f64>,
        cut: Option<f64>,
        raise: Option<f64>,
    },
    /// `rate` × portfolio each year, kept between a real monthly floor and ceiling.
    FloorCeiling { rate: Option<f64>, monthly_floor: Option<f64>, monthly_ceiling: Option<f64> },
}

/// A monthly income stream paid in years `start_year..=end_year` (1-based).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncomeInput {
    pub name: Option<String>,
    pub monthly_amount: Option<f64>,
    /// First year paid (1 = the first simulated year). Default 1.
    pub start_year: Option<u32>,
    /// Last year paid, inclusive. Default: the horizon.
    pub end_year: Option<u32>,
    /// `true` (default): `monthly_amount` is in today's money and rises with inflation;
    /// `false`: a fixed nominal amount.
    pub inflation_adjusted: Option<bool>,
}

/// A one-off amount at the start of `year` (1-based).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OneOffInput {
    pub name: Option<String>,
    pub year: Option<u32>,
    pub amount: Option<f64>,
    /// `true` (default): `amount` is in today's money; `false`: nominal.
    pub inflation_adjusted: Option<bool>,
}

/// Find the largest constant real `monthly_spending` with success probability ≥ the target.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SolveInput {
    /// Target success probability, strictly between 0 and 1.
    pub target_success: Option<f64>,
}

/// When holdings are reset to the target weights. Default `monthly`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rebalancing {
    #[default]
    Monthly,
    Annual,
    None,
}

// ---------------------------------------------------------------------------------------------
// The checked domain type.
// ---------------------------------------------------------------------------------------------

/// A request that passed every rule. Serialises to the normalised form (every default filled
/// in) that is stored with the job and served back in `/results/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimulationRequest {
    pub starting_portfolio: f64,
    pub monthly_spending: f64,
    pub years: u32,
    pub n_scenarios: u32,
    /// `None` until the API draws one at submit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    pub allocation: Allocation,
    pub assumptions: Assumptions,
    pub annual_fee: f64,
    pub return_model: ReturnModel,
    pub withdrawal: Withdrawal,
    pub income: Vec<IncomeStream>,
    pub expenses: Vec<OneOff>,
    pub inflows: Vec<OneOff>,
    pub rebalancing: Rebalancing,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub solve: Option<Solve>,
}

/// The three asset classes, in the order the engine indexes them.
pub const ASSETS: [&str; 3] = ["stocks", "bonds", "cash"];

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Allocation {
    pub stocks: f64,
    pub bonds: f64,
    pub cash: f64,
}

impl Allocation {
    pub fn weights(&self) -> [f64; 3] {
        [self.stocks, self.bonds, self.cash]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AssetAssumption {
    pub mean_return: f64,
    pub volatility: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct InflationAssumption {
    pub mean: f64,
    pub volatility: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Assumptions {
    pub stocks: AssetAssumption,
    pub bonds: AssetAssumption,
    pub cash: AssetAssumption,
    pub correlation: [[f64; 3]; 3],
    pub inflation: InflationAssumption,
}

impl Assumptions {
    pub fn assets(&self) -> [AssetAssumption; 3] {
        [self.stocks, self.bonds, self.cash]
    }

    /// Means, volatilities and correlations of the embedded 1928–2024 table (stocks = S&P 500,
    /// bonds = 10-year Treasury, cash = 3-month T-bill, inflation = CPI): arithmetic means and
    /// sample (n − 1) standard deviations of the annual returns.
    pub fn historical() -> Self {
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
        Self {
            stocks: asset(0),
            bonds: asset(1),
            cash: asset(2),
            correlation,
            inflation: InflationAssumption { mean: m.mean[3], volatility: m.std_dev[3] },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReturnModel {
    Lognormal,
    Normal,
    StudentT { df: f64 },
    Bootstrap { block_years: u32 },
    Historical,
}

impl ReturnModel {
    /// Whether the model draws from `assumptions` (the parametric ones) or replays the table.
    pub fn uses_assumptions(&self) -> bool {
        !matches!(self, Self::Bootstrap { .. } | Self::Historical)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Lognormal => "lognormal",
            Self::Normal => "normal",
            Self::StudentT { .. } => "student_t",
            Self::Bootstrap { .. } => "bootstrap",
            Self::Historical => "historical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "strategy", rename_all = "snake_case")]
pub enum Withdrawal {
    ConstantReal,
    PercentOfPortfolio { rate: f64 },
    Guardrails { upper_guardrail: f64, lower_guardrail: f64, cut: f64, raise: f64 },
    FloorCeiling { rate: f64, monthly_floor: f64, monthly_ceiling: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncomeStream {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub monthly_amount: f64,
    pub start_year: u32,
    pub end_year: u32,
    pub inflation_adjusted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OneOff {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub year: u32,
    pub amount: f64,
    pub inflation_adjusted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Solve {
    pub target_success: f64,
}

// ---------------------------------------------------------------------------------------------
// Parsing.
// ---------------------------------------------------------------------------------------------

/// Why a body could not become a [`SimulationRequest`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// Not JSON at all (a syntax error outside any field).
    #[error("the body is not valid JSON: {0}")]
    Malformed(String),
    /// JSON, but fields break the rules; every offending field is listed.
    #[error("{} field(s) are invalid", .0.len())]
    Invalid(Vec<FieldError>),
}

impl SimulationRequest {
    /// Parses and checks a JSON body.
    pub fn from_json(body: &[u8], limits: &RequestLimits) -> Result<Self, RequestError> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let input: SimulationRequestInput =
            serde_path_to_error::deserialize(&mut de).map_err(classify_decode_error)?;
        de.end().map_err(|e| RequestError::Malformed(strip_position(&e.to_string())))?;
        Self::from_input(input, limits)
    }

    /// Checks a decoded body against every rule, collecting all violations.
    pub fn from_input(
        input: SimulationRequestInput,
        limits: &RequestLimits,
    ) -> Result<Self, RequestError> {
        let mut v = Validator::default();
        let starting_portfolio = v.required_f64(
            "starting_portfolio",
            input.starting_portfolio,
            Range::open_closed(0.0, 1e12),
        );
        let monthly_spending =
            v.required_f64("monthly_spending", input.monthly_spending, Range::closed(0.0, 1e10));
        let years = v.required_int("years", input.years, 1, MAX_YEARS);
        let n_scenarios = v
            .optional_int("n_scenarios", input.n_scenarios, 1, limits.max_scenarios)
            .unwrap_or(DEFAULT_SCENARIOS.min(limits.max_scenarios));
        if let Some(seed) = input.seed
            && seed > MAX_SEED
        {
            v.error("seed", format!("must be at most 2^63-1 ({MAX_SEED})"));
        }
        let allocation = v.allocation(input.allocation);
        let assumptions = v.assumptions(input.assumptions);
        let annual_fee =
            v.optional_f64("annual_fee", input.annual_fee, Range::closed(0.0, 0.1)).unwrap_or(0.0);
        let return_model = v.return_model(input.return_model, years);
        let withdrawal = v.withdrawal(input.withdrawal);
        let horizon = years.unwrap_or(MAX_YEARS);
        let income = v.income(input.income, horizon);
        let expenses = v.one_offs("expenses", input.expenses, horizon);
        let inflows = v.one_offs("inflows", input.inflows, horizon);
        let solve = v.solve(input.solve, &withdrawal);

        if !v.errors.is_empty() {
            return Err(RequestError::Invalid(v.errors));
        }
        Ok(Self {
            starting_portfolio: starting_portfolio.expect("checked"),
            monthly_spending: monthly_spending.expect("checked"),
            years: years.expect("checked"),
            n_scenarios,
            seed: input.seed,
            allocation: allocation.expect("checked"),
            assumptions: assumptions.expect("checked"),
            annual_fee,
            return_model: return_model.expect("checked"),
            withdrawal: withdrawal.expect("checked"),
            income,
            expenses,
            inflows,
            rebalancing: input.rebalancing.unwrap_or_default(),
            solve,
        })
    }

    /// The number of scenarios the engine will run: every rolling window for `historical`,
    /// else `n_scenarios`.
    pub fn effective_scenarios(&self) -> u32 {
        match self.return_model {
            ReturnModel::Historical => historical_windows(self.years),
            _ => self.n_scenarios,
        }
    }

    /// The normalised JSON form, as stored and served.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a checked request always serialises")
    }
}

/// Rolling windows of `years` in the embedded table.
pub fn historical_windows(years: u32) -> u32 {
    (history::table().len() as u32 + 1).saturating_sub(years)
}

fn classify_decode_error(err: serde_path_to_error::Error<serde_json::Error>) -> RequestError {
    let path = err.path().to_string();
    let inner = err.inner();
    let message = strip_position(&inner.to_string());
    let at_root = path.is_empty() || path == ".";
    match inner.classify() {
        // A truncated document, or one that is not JSON from its first byte, is not a
        // request at all.
        serde_json::error::Category::Eof | serde_json::error::Category::Io => {
            RequestError::Malformed(message)
        }
        serde_json::error::Category::Syntax if at_root => RequestError::Malformed(message),
        category => {
            // The path already ends with the offending key, unknown keys included.
            let field = if at_root { "body".to_owned() } else { path };
            let message = if category == serde_json::error::Category::Syntax {
                // A bare NaN / Infinity inside a field is a syntax error at that field; say
                // so in words a client can act on.
                format!("must be a valid JSON value (finite numbers only): {message}")
            } else {
                message
            };
            RequestError::Invalid(vec![FieldError::new(field, message)])
        }
    }
}

/// serde_json appends " at line L column C"; clients get the field path instead.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[derive(Debug, Clone, Copy)]
struct Range {
    min: f64,
    max: f64,
    min_open: bool,
}

impl Range {
    fn closed(min: f64, max: f64) -> Self {
        Self { min, max, min_open: false }
    }

    fn open_closed(min: f64, max: f64) -> Self {
        Self { min, max, min_open: true }
    }

    fn contains(&self, x: f64) -> bool {
        x.is_finite() && (if self.min_open { x > self.min } else { x >= self.min }) && x <= self.max
    }

    fn describe(&self) -> String {
        let lower = if self.min_open { ">" } else { "≥" };
        format!("must be a finite number {lower} {} and ≤ {}", self.min, self.max)
    }
}

#[derive(Default)]
struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    fn required_f64(&mut self, field: &str, value: Option<f64>, range: Range) -> Option<f64> {
        match value {
            None => {
                self.error(field, "is required");
                None
            }
            Some(x) => self.check_f64(field, x, range),
        }
    }

    fn optional_f64(&mut self, field: &str, value: Option<f64>, range: Range) -> Option<f64> {
        value.and_then(|x| self.check_f64(field, x, range))
    }

    fn check_f64(&mut self, field: &str, x: f64, range: Range) -> Option<f64> {
        if range.contains(x) {
            Some(x)
        } else {
            self.error(field, range.describe());
            None
        }
    }

    fn required_int(&mut self, field: &str, value: Option<u32>, min: u32, max: u32) -> Option<u32> {
        match value {
            None => {
                self.error(field, "is required");
                None
            }
            Some(x) => self.check_int(field, x, min, max),
        }
    }

    fn optional_int(&mut self, field: &str, value: Option<u32>, min: u32, max: u32) -> Option<u32> {
        value.and_then(|x| self.check_int(field, x, min, max))
    }

    fn check_int(&mut self, field: &str, x: u32, min: u32, max: u32) -> Option<u32> {
        if (min..=max).contains(&x) {
            Some(x)
        } else {
            self.error(field, format!("must be an integer from {min} to {max}"));
            None
        }
    }

    fn allocation(&mut self, input: Option<AllocationInput>) -> Option<Allocation> {
        let Some(a) = input else {
            return Some(Allocation { stocks: 0.6, bonds: 0.4, cash: 0.0 });
        };
        let before = self.errors.len();
        let weight = |v: &mut Self, name: &str, x: Option<f64>| {
            v.optional_f64(&format!("allocation.{name}"), x, Range::closed(0.0, 1.0)).unwrap_or(0.0)
        };
        let stocks = weight(self, "stocks", a.stocks);
        let bonds = weight(self, "bonds", a.bonds);
        let cash = weight(self, "cash", a.cash);
        if self.errors.len() > before {
            return None;
        }
        let sum = stocks + bonds + cash;
        if (sum - 1.0).abs() > SUM_TOLERANCE {
            self.error("allocation", format!("weights must sum to 1 (± 1e-6); they sum to {sum}"));
            return None;
        }
        Some(Allocation { stocks, bonds, cash })
    }

    fn assumptions(&mut self, input: Option<AssumptionsInput>) -> Option<Assumptions> {
        let defaults = Assumptions::historical();
        let Some(a) = input else { return Some(defaults) };
        let before = self.errors.len();
        let asset =
            |v: &mut Self, name: &str, x: Option<AssetAssumptionInput>, d: AssetAssumption| {
                let x = x.unwrap_or_default();
                AssetAssumption {
                    mean_return: v
                        .optional_f64(
                            &format!("assumptions.{name}.mean_return"),
                            x.mean_return,
                            Range::closed(-0.5, 1.0),
                        )
                        .unwrap_or(d.mean_return),
                    volatility: v
                        .optional_f64(
                            &format!("assumptions.{name}.volatility"),
                            x.volatility,
                            Range::closed(0.0, 1.0),
                        )
                        .unwrap_or(d.volatility),
                }
            };
        let stocks = asset(self, "stocks", a.stocks, defaults.stocks);
        let bonds = asset(self, "bonds", a.bonds, defaults.bonds);
        let cash = asset(self, "cash", a.cash, defaults.cash);
        let infl = a.inflation.unwrap_or_default();
        let inflation = InflationAssumption {
            mean: self
                .optional_f64("assumptions.inflation.mean", infl.mean, Range::closed(-0.1, 0.5))
                .unwrap_or(defaults.inflation.mean),
            volatility: self
                .optional_f64(
                    "assumptions.inflation.volatility",
                    infl.volatility,
                    Range::closed(0.0, 0.2),
                )
                .unwrap_or(defaults.inflation.volatility),
        };
        let correlation = match a.correlation {
            None => defaults.correlation,
            Some(rows) => self.correlation(&rows)?,
        };
        if self.errors.len() > before {
            return None;
        }
        Some(Assumptions { stocks, bonds, cash, correlation, inflation })
    }

    fn correlation(&mut self, rows: &[Vec<f64>]) -> Option<[[f64; 3]; 3]> {
        const FIELD: &str = "assumptions.correlation";
        if rows.len() != 3 || rows.iter().any(|r| r.len() != 3) {
            self.error(FIELD, "must be a 3×3 matrix (rows and columns: stocks, bonds, cash)");
            return None;
        }
        let mut m = [[0.0; 3]; 3];
        for i in 0..3 {
            for j in 0..3 {
                let x = rows[i][j];
                if !(x.is_finite() && (-1.0..=1.0).contains(&x)) {
                    self.error(format!("{FIELD}[{i}][{j}]"), "must be a number from -1 to 1");
                    return None;
                }
                m[i][j] = x;
            }
        }
        for (i, row) in m.iter().enumerate() {
            if (row[i] - 1.0).abs() > MATRIX_TOLERANCE {
                self.error(format!("{FIELD}[{i}][{i}]"), "the diagonal must be 1");
                return None;
            }
        }
        for i in 0..3 {
            for j in (i + 1)..3 {
                if (m[i][j] - m[j][i]).abs() > MATRIX_TOLERANCE {
                    self.error(
                        format!("{FIELD}[{i}][{j}]"),
                        format!("the matrix must be symmetric: [{i}][{j}] ≠ [{j}][{i}]"),
                    );
                    return None;
                }
            }
        }
        if crate::engine::linalg::cholesky_psd(&m).is_none() {
            self.error(FIELD, "must be positive semi-definite (a valid correlation matrix)");
            return None;
        }
        Some(m)
    }

    fn return_model(
        &mut self,
        input: Option<ReturnModelInput>,
        years: Option<u32>,
    ) -> Option<ReturnModel> {
        let table_years = history::table().len() as u32;
        Some(match input.unwrap_or(ReturnModelInput::Lognormal {}) {
            ReturnModelInput::Lognormal {} => ReturnModel::Lognormal,
            ReturnModelInput::Normal {} => ReturnModel::Normal,
            ReturnModelInput::StudentT { df } => {
                let df = df.unwrap_or(5.0);
                if !(df.is_finite() && df > 2.0 && df <= 1e6) {
                    self.error("return_model.df", "must be a finite number > 2 and ≤ 1e6");
                    return None;
                }
                ReturnModel::StudentT { df }
            }
            ReturnModelInput::Bootstrap { block_years } => {
                let block_years = match block_years {
                    None => 1,
                    Some(b) => self.check_int("return_model.block_years", b, 1, table_years)?,
                };
                ReturnModel::Bootstrap { block_years }
            }
            ReturnModelInput::Historical {} => {
                if let Some(y) = years
                    && y > table_years
                {
                    self.error(
                        "years",
                        format!(
                            "must be at most {table_years} for the historical model (the table \
                             covers {table_years} years)"
                        ),
                    );
                    return None;
                }
                ReturnModel::Historical
            }
        })
    }

    fn withdrawal(&mut self, input: Option<WithdrawalInput>) -> Option<Withdrawal> {
        let before = self.errors.len();
        let rate = |v: &mut Self, x: Option<f64>, default: f64| {
            v.optional_f64("withdrawal.rate", x, Range::open_closed(0.0, 1.0)).unwrap_or(default)
        };
        let w = match input.unwrap_or(WithdrawalInput::ConstantReal {}) {
            WithdrawalInput::ConstantReal {} => Withdrawal::ConstantReal,
            WithdrawalInput::PercentOfPortfolio { rate: r } => {
                Withdrawal::PercentOfPortfolio { rate: rate(self, r, 0.04) }
            }
            WithdrawalInput::Guardrails { upper_guardrail, lower_guardrail, cut, raise } => {
                let mut param = |name: &str, x: Option<f64>, range: Range, default: f64| {
                    self.optional_f64(&format!("withdrawal.{name}"), x, range).unwrap_or(default)
                };
                Withdrawal::Guardrails {
                    upper_guardrail: param(
                        "upper_guardrail",
                        upper_guardrail,
                        Range::open_closed(0.0, 10.0),
                        0.2,
                    ),
                    lower_guardrail: param(
                        "lower_guardrail",
                        lower_guardrail,
                        Range::open_closed(0.0, 0.99),
                        0.2,
                    ),
                    cut: param("cut", cut, Range::closed(0.0, 0.99), 0.1),
                    raise: param("raise", raise, Range::closed(0.0, 10.0), 0.1),
                }
            }
            WithdrawalInput::FloorCeiling { rate: r, monthly_floor, monthly_ceiling } => {
                let r = rate(self, r, 0.04);
                let floor = self
                    .optional_f64(
                        "withdrawal.monthly_floor",
                        monthly_floor,
                        Range::closed(0.0, 1e10),
                    )
                    .unwrap_or(0.0);
                let ceiling = self
                    .optional_f64(
                        "withdrawal.monthly_ceiling",
                        monthly_ceiling,
                        Range::closed(0.0, 1e10),
                    )
                    .unwrap_or(1e10);
                if ceiling < floor {
                    self.error("withdrawal.monthly_ceiling", "must be ≥ withdrawal.monthly_floor");
                }
                Withdrawal::FloorCeiling { rate: r, monthly_floor: floor, monthly_ceiling: ceiling }
            }
        };
        (self.errors.len() == before).then_some(w)
    }

    fn income(&mut self, input: Option<Vec<IncomeInput>>, horizon: u32) -> Vec<IncomeStream> {
        let items = input.unwrap_or_default();
        if items.len() > MAX_CASH_FLOWS {
            self.error("income", format!("at most {MAX_CASH_FLOWS} streams"));
            return Vec::new();
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, s) in items.into_iter().enumerate() {
            let f = |name: &str| format!("income[{i}].{name}");
            let before = self.errors.len();
            let monthly_amount =
                self.required_f64(&f("monthly_amount"), s.monthly_amount, Range::closed(0.0, 1e10));
            let start_year =
                self.optional_int(&f("start_year"), s.start_year, 1, horizon).unwrap_or(1);
            let end_year =
                self.optional_int(&f("end_year"), s.end_year, 1, horizon).unwrap_or(horizon);
            if end_year < start_year {
                self.error(f("end_year"), "must be ≥ start_year");
            }
            if self.errors.len() == before {
                out.push(IncomeStream {
                    name: s.name,
                    monthly_amount: monthly_amount.expect("checked"),
                    start_year,
                    end_year,
                    inflation_adjusted: s.inflation_adjusted.unwrap_or(true),
                });
            }
        }
        out
    }

    fn one_offs(
        &mut self,
        field: &str,
        input: Option<Vec<OneOffInput>>,
        horizon: u32,
    ) -> Vec<OneOff> {
        let items = input.unwrap_or_default();
        if items.len() > MAX_CASH_FLOWS {
            self.error(field, format!("at most {MAX_CASH_FLOWS} items"));
            return Vec::new();
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, o) in items.into_iter().enumerate() {
            let f = |name: &str| format!("{field}[{i}].{name}");
            let year = self.required_int(&f("year"), o.year, 1, horizon);
            let amount = self.required_f64(&f("amount"), o.amount, Range::closed(0.0, 1e12));
            if let (Some(year), Some(amount)) = (year, amount) {
                out.push(OneOff {
                    name: o.name,
                    year,
                    amount,
                    inflation_adjusted: o.inflation_adjusted.unwrap_or(true),
                });
            }
        }
        out
    }

    fn solve(
        &mut self,
        input: Option<SolveInput>,
        withdrawal: &Option<Withdrawal>,
    ) -> Option<Solve> {
        let s = input?;
        let target = self.required_f64(
            "solve.target_success",
            s.target_success,
            Range::open_closed(0.0, 1.0),
        )?;
        if target >= 1.0 {
            self.error("solve.target_success", "must be strictly between 0 and 1");
            return None;
        }
        if !matches!(withdrawal, Some(Withdrawal::ConstantReal) | None) {
            self.error(
                "solve",
                "the solver finds a constant real monthly_spending; use withdrawal.strategy \
                 constant_real with it",
            );
            return None;
        }
        Some(Solve { target_success: target })
    }
}

/// A fresh seed for requests that did not bring one. Drawn below 2^53 (any seed up to 2^63 − 1
/// is accepted) so that JavaScript clients, whose numbers are doubles, can read it back exactly
/// and reproduce the result.
pub fn draw_seed() -> u64 {
    rand::random::<u64>() >> 11
}
