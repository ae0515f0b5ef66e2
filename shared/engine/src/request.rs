//! A simulation request, parsed at the edge: JSON bytes become a [`SimulationRequest`] that
//! cannot hold an invalid value, or a list of [`FieldError`]s naming each field and rule.
//!
//! The API parses a body with this module before anything touches Postgres or Redis, and the
//! worker parses the stored copy again, so both sides apply exactly the same rules.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::history;
use crate::FieldError;

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

/// How monthly returns are generated: `kind` and that kind's parameters. Default
/// `{"kind": "lognormal"}`. A parameter of another kind is refused.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnModelInput {
    pub kind: ReturnModelKind,
    /// `student_t` only: degrees of freedom, > 2 and ≤ 1e6 (fatter tails nearer 2). Default 5.
    pub df: Option<f64>,
    /// `bootstrap` only: consecutive calendar years per block drawn, 1..=97. Default 1.
    pub block_years: Option<u32>,
}

/// The return models (docs/model.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReturnModelKind {
    /// Correlated lognormal monthly returns (the foundation model).
    Lognormal,
    /// Correlated normal monthly simple returns; gross return floored at 0.
    Normal,
    /// As `lognormal`, with a unit-variance multivariate Student-t shock (`df` > 2).
    StudentT,
    /// Calendar years of the 1928–2024 table drawn with replacement in blocks.
    Bootstrap,
    /// Every rolling window of the 1928–2024 table; `n_scenarios` is ignored.
    Historical,
}

impl Choice for ReturnModelKind {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("lognormal", Self::Lognormal),
        ("normal", Self::Normal),
        ("student_t", Self::StudentT),
        ("bootstrap", Self::Bootstrap),
        ("historical", Self::Historical),
    ];
}

/// How spending is set each year: `strategy` and that strategy's parameters. Default
/// `{"strategy": "constant_real"}`. A parameter of another strategy is refused.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalInput {
    pub strategy: WithdrawalStrategy,
    /// `percent_of_portfolio`, `floor_ceiling`: the share of the portfolio withdrawn at the
    /// start of each year, 0 < rate ≤ 1. Default 0.04.
    pub rate: Option<f64>,
    /// `guardrails`: cut when the current rate exceeds the initial by this fraction (0 < x ≤
    /// 10). Default 0.2.
    pub upper_guardrail: Option<f64>,
    /// `guardrails`: raise when the current rate falls this fraction below the initial (0 < x
    /// ≤ 0.99). Default 0.2.
    pub lower_guardrail: Option<f64>,
    /// `guardrails`: the cut, as a fraction of spending (0..=0.99). Default 0.1.
    pub cut: Option<f64>,
    /// `guardrails`: the raise, as a fraction of spending (0..=10). Default 0.1.
    pub raise: Option<f64>,
    /// `floor_ceiling`: real monthly floor (0..=1e10). Default 0.
    pub monthly_floor: Option<f64>,
    /// `floor_ceiling`: real monthly ceiling (≥ the floor, ≤ 1e10). Default 1e10.
    pub monthly_ceiling: Option<f64>,
}

/// The withdrawal strategies (docs/model.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawalStrategy {
    /// `monthly_spending`, raised with inflation every month.
    ConstantReal,
    /// At the start of each year, `rate` × portfolio, paid in twelve equal parts.
    PercentOfPortfolio,
    /// Guyton–Klinger decision rules around an initial withdrawal rate.
    Guardrails,
    /// `rate` × portfolio each year, kept between a real monthly floor and ceiling.
    FloorCeiling,
}

impl Choice for WithdrawalStrategy {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("constant_real", Self::ConstantReal),
        ("percent_of_portfolio", Self::PercentOfPortfolio),
        ("guardrails", Self::Guardrails),
        ("floor_ceiling", Self::FloorCeiling),
    ];
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rebalancing {
    #[default]
    Monthly,
    Annual,
    None,
}

impl Choice for Rebalancing {
    const CHOICES: &'static [(&'static str, Self)] =
        &[("monthly", Self::Monthly), ("annual", Self::Annual), ("none", Self::None)];
}

/// A JSON string naming one of a closed set of choices. serde's derived enums answer a
/// non-string with serde_json's bare syntax error ("expected value"), which reads like broken
/// JSON; a choice says what it takes ("expected one of `monthly`, `annual`, `none`").
trait Choice: Copy + 'static {
    const CHOICES: &'static [(&'static str, Self)];
}

struct ChoiceVisitor<T>(std::marker::PhantomData<T>);

impl<T: Choice> serde::de::Visitor<'_> for ChoiceVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let names: Vec<String> = T::CHOICES.iter().map(|(n, _)| format!("`{n}`")).collect();
        write!(f, "one of {}", names.join(", "))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<T, E> {
        T::CHOICES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, choice)| *choice)
            .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(s), &self))
    }
}

macro_rules! deserialize_as_choice {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(ChoiceVisitor(std::marker::PhantomData))
            }
        }
    )*};
}

deserialize_as_choice!(ReturnModelKind, WithdrawalStrategy, Rebalancing);

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
            } else if at_root {
                "must be a JSON object (the simulation request)".to_owned()
            } else {
                in_json_terms(&message)
            };
            RequestError::Invalid(vec![FieldError::new(field, message)])
        }
    }
}

/// serde names what it expected in Rust's terms ("expected u32", "expected struct Allocation");
/// clients write JSON, so say it in JSON's.
fn in_json_terms(message: &str) -> String {
    let Some((found, expected)) = message.rsplit_once(", expected ") else {
        return message.to_owned();
    };
    let expected = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number ≥ 0",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a sequence" => "an array",
        "a map" => "an object",
        e if e.starts_with("struct ") => "an object",
        e if e.starts_with("a tuple of size ") || e.starts_with("an array of length ") => {
            return format!("{found}, expected an array of {}", e.rsplit(' ').next().unwrap_or(e));
        }
        _ => return message.to_owned(),
    };
    format!("{found}, expected {expected}")
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
        if crate::linalg::cholesky_psd(&m).is_none() {
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
        let Some(input) = input else { return Some(ReturnModel::Lognormal) };
        let kind = input.kind;
        let takes: &[&str] = match kind {
            ReturnModelKind::StudentT => &["df"],
            ReturnModelKind::Bootstrap => &["block_years"],
            _ => &[],
        };
        let given = [("df", input.df.is_some()), ("block_years", input.block_years.is_some())];
        if !self.only_parameters_of("return_model", "kind", choice_name(kind), takes, &given) {
            return None;
        }
        Some(match kind {
            ReturnModelKind::Lognormal => ReturnModel::Lognormal,
            ReturnModelKind::Normal => ReturnModel::Normal,
            ReturnModelKind::StudentT => {
                let df = input.df.unwrap_or(5.0);
                if !(df.is_finite() && df > 2.0 && df <= 1e6) {
                    self.error("return_model.df", "must be a finite number > 2 and ≤ 1e6");
                    return None;
                }
                ReturnModel::StudentT { df }
            }
            ReturnModelKind::Bootstrap => {
                let block_years = match input.block_years {
                    None => 1,
                    Some(b) => self.check_int("return_model.block_years", b, 1, table_years)?,
                };
                ReturnModel::Bootstrap { block_years }
            }
            ReturnModelKind::Historical => {
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

    /// Refuses each given parameter that the chosen kind or strategy does not take (as
    /// `deny_unknown_fields` would have, had each kind its own object).
    fn only_parameters_of(
        &mut self,
        object: &str,
        tag: &str,
        chosen: &str,
        takes: &[&str],
        given: &[(&str, bool)],
    ) -> bool {
        let before = self.errors.len();
        for (name, _) in given.iter().filter(|(name, given)| *given && !takes.contains(name)) {
            let takes = match takes {
                [] => "none".to_owned(),
                _ => takes.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", "),
            };
            self.error(
                format!("{object}.{name}"),
                format!("is not a parameter of {tag} `{chosen}` (its parameters: {takes})"),
            );
        }
        self.errors.len() == before
    }

    fn withdrawal(&mut self, input: Option<WithdrawalInput>) -> Option<Withdrawal> {
        let before = self.errors.len();
        let rate = |v: &mut Self, x: Option<f64>, default: f64| {
            v.optional_f64("withdrawal.rate", x, Range::open_closed(0.0, 1.0)).unwrap_or(default)
        };
        let Some(input) = input else { return Some(Withdrawal::ConstantReal) };
        let strategy = input.strategy;
        let takes: &[&str] = match strategy {
            WithdrawalStrategy::ConstantReal => &[],
            WithdrawalStrategy::PercentOfPortfolio => &["rate"],
            WithdrawalStrategy::Guardrails => {
                &["upper_guardrail", "lower_guardrail", "cut", "raise"]
            }
            WithdrawalStrategy::FloorCeiling => &["rate", "monthly_floor", "monthly_ceiling"],
        };
        let given = [
            ("rate", input.rate.is_some()),
            ("upper_guardrail", input.upper_guardrail.is_some()),
            ("lower_guardrail", input.lower_guardrail.is_some()),
            ("cut", input.cut.is_some()),
            ("raise", input.raise.is_some()),
            ("monthly_floor", input.monthly_floor.is_some()),
            ("monthly_ceiling", input.monthly_ceiling.is_some()),
        ];
        if !self.only_parameters_of("withdrawal", "strategy", choice_name(strategy), takes, &given)
        {
            return None;
        }
        let w = match strategy {
            WithdrawalStrategy::ConstantReal => Withdrawal::ConstantReal,
            WithdrawalStrategy::PercentOfPortfolio => {
                Withdrawal::PercentOfPortfolio { rate: rate(self, input.rate, 0.04) }
            }
            WithdrawalStrategy::Guardrails => {
                let mut param = |name: &str, x: Option<f64>, range: Range, default: f64| {
                    self.optional_f64(&format!("withdrawal.{name}"), x, range).unwrap_or(default)
                };
                Withdrawal::Guardrails {
                    upper_guardrail: param(
                        "upper_guardrail",
                        input.upper_guardrail,
                        Range::open_closed(0.0, 10.0),
                        0.2,
                    ),
                    lower_guardrail: param(
                        "lower_guardrail",
                        input.lower_guardrail,
                        Range::open_closed(0.0, 0.99),
                        0.2,
                    ),
                    cut: param("cut", input.cut, Range::closed(0.0, 0.99), 0.1),
                    raise: param("raise", input.raise, Range::closed(0.0, 10.0), 0.1),
                }
            }
            WithdrawalStrategy::FloorCeiling => {
                let r = rate(self, input.rate, 0.04);
                let floor = self
                    .optional_f64(
                        "withdrawal.monthly_floor",
                        input.monthly_floor,
                        Range::closed(0.0, 1e10),
                    )
                    .unwrap_or(0.0);
                let ceiling = self
                    .optional_f64(
                        "withdrawal.monthly_ceiling",
                        input.monthly_ceiling,
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

/// The JSON name of a choice, for messages.
fn choice_name<T: Choice + PartialEq>(choice: T) -> &'static str {
    T::CHOICES.iter().find(|(_, c)| *c == choice).map_or("?", |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only_error(body: &str) -> FieldError {
        match SimulationRequest::from_json(body.as_bytes(), &RequestLimits::default()) {
            Err(RequestError::Invalid(mut errors)) if errors.len() == 1 => errors.remove(0),
            other => panic!("expected one field error for {body}, got {other:?}"),
        }
    }

    #[test]
    fn type_errors_name_the_field_and_what_json_it_takes_not_rust_types() {
        let base = r#""starting_portfolio": 1000, "monthly_spending": 1"#;
        let cases = [
            (format!(r#"{{{base}, "years": 3.5}}"#), "years", "a whole number ≥ 0"),
            (format!(r#"{{{base}, "years": 3, "annual_fee": "x"}}"#), "annual_fee", "a number"),
            (format!(r#"{{{base}, "years": 3, "allocation": [1]}}"#), "allocation", "an object"),
            (format!(r#"{{{base}, "years": 3, "income": {{}}}}"#), "income", "an array"),
            (
                format!(r#"{{{base}, "years": 3, "rebalancing": 3}}"#),
                "rebalancing",
                "expected one of `monthly`, `annual`, `none`",
            ),
            (
                format!(r#"{{{base}, "years": 3, "return_model": {{"kind": "gaussian"}}}}"#),
                "return_model.kind",
                "`lognormal`, `normal`, `student_t`, `bootstrap`, `historical`",
            ),
            (
                format!(
                    r#"{{{base}, "years": 3, "withdrawal": {{"strategy": "guardrails", "cut": "x"}}}}"#
                ),
                "withdrawal.cut",
                "expected a number",
            ),
            ("[]".to_owned(), "body", "must be a JSON object"),
            ("null".to_owned(), "body", "must be a JSON object"),
        ];
        for (body, field, says) in cases {
            let error = only_error(&body);
            assert_eq!(error.field, field, "{body}");
            assert!(error.message.contains(says), "{body}: {}", error.message);
            for rust in ["u32", "f64", "struct", "sequence", "Input"] {
                assert!(!error.message.contains(rust), "{body}: {}", error.message);
            }
        }
    }

    #[test]
    fn a_parameter_of_another_kind_or_strategy_is_refused_naming_it() {
        let base = r#""starting_portfolio": 1000, "monthly_spending": 1, "years": 3"#;
        let error = only_error(&format!(
            r#"{{{base}, "withdrawal": {{"strategy": "percent_of_portfolio", "cut": 0.1}}}}"#
        ));
        assert_eq!(error.field, "withdrawal.cut");
        assert!(error.message.contains("`percent_of_portfolio`"), "{}", error.message);
        let error =
            only_error(&format!(r#"{{{base}, "return_model": {{"kind": "normal", "df": 4}}}}"#));
        assert_eq!(error.field, "return_model.df");
        assert!(error.message.contains("its parameters: none"), "{}", error.message);
    }

    #[test]
    fn the_stored_normalised_form_parses_back_to_the_same_request() {
        let body = r#"{"starting_portfolio": 1000, "monthly_spending": 1, "years": 3,
            "return_model": {"kind": "student_t", "df": 4},
            "withdrawal": {"strategy": "floor_ceiling", "monthly_floor": 0.5},
            "rebalancing": "annual"}"#;
        let limits = RequestLimits::default();
        let request = SimulationRequest::from_json(body.as_bytes(), &limits).unwrap();
        let stored = request.to_json().to_string();
        let again = SimulationRequest::from_json(stored.as_bytes(), &limits).unwrap();
        assert_eq!(again, request);
    }

    #[test]
    fn each_choice_is_written_as_the_name_it_is_read_by() {
        fn check<T>()
        where
            T: Choice + Serialize + serde::de::DeserializeOwned + std::fmt::Debug + PartialEq,
        {
            for (name, choice) in T::CHOICES {
                assert_eq!(serde_json::to_value(choice).unwrap(), *name, "{choice:?}");
                let read: T = serde_json::from_value(serde_json::json!(name)).unwrap();
                assert_eq!(read, *choice);
            }
        }
        check::<ReturnModelKind>();
        check::<WithdrawalStrategy>();
        check::<Rebalancing>();
    }
}
