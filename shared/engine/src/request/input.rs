//! The wire format of a request: what serde decodes a body into before any rule is checked.
//!
//! Every field is optional and unknown fields are refused, so that a missing field becomes a
//! validation error naming it rather than an opaque decoding error. The rules themselves
//! (ranges, defaults, messages) are in `rules`; the OpenAPI schema of these types is generated
//! from them (`schema`).

use serde::{Deserialize, Serialize};

/// Body of `POST /simulations`. Every number must be finite; unknown fields are refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulationRequestInput {
    pub starting_portfolio: Option<f64>,
    pub monthly_spending: Option<f64>,
    pub years: Option<u32>,
    pub n_scenarios: Option<u32>,
    pub seed: Option<u64>,
    pub allocation: Option<AllocationInput>,
    pub assumptions: Option<AssumptionsInput>,
    pub annual_fee: Option<f64>,
    pub return_model: Option<ReturnModelInput>,
    pub withdrawal: Option<WithdrawalInput>,
    pub income: Option<Vec<IncomeInput>>,
    pub expenses: Option<Vec<OneOffInput>>,
    pub inflows: Option<Vec<OneOffInput>>,
    pub rebalancing: Option<Rebalancing>,
    pub solve: Option<SolveInput>,
}

/// Target weights of stocks, bonds and cash.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocationInput {
    pub stocks: Option<f64>,
    pub bonds: Option<f64>,
    pub cash: Option<f64>,
}

/// Capital-market assumptions for the parametric return models.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssumptionsInput {
    pub stocks: Option<AssetAssumptionInput>,
    pub bonds: Option<AssetAssumptionInput>,
    pub cash: Option<AssetAssumptionInput>,
    /// Rows and columns: stocks, bonds, cash.
    pub correlation: Option<Vec<Vec<f64>>>,
    pub inflation: Option<InflationInput>,
}

/// Annual arithmetic mean return and annual volatility of one asset.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetAssumptionInput {
    pub mean_return: Option<f64>,
    pub volatility: Option<f64>,
}

/// Annual mean inflation and its annual volatility.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InflationInput {
    pub mean: Option<f64>,
    pub volatility: Option<f64>,
}

/// How monthly returns are generated: `kind` and that kind's parameters. A parameter of
/// another kind is refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnModelInput {
    pub kind: ReturnModelKind,
    /// `student_t` only.
    pub df: Option<f64>,
    /// `bootstrap` only.
    pub block_years: Option<u32>,
}

/// The return models (docs/model.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnModelKind {
    /// Correlated lognormal monthly returns (the foundation model).
    Lognormal,
    /// Correlated normal monthly simple returns; gross return floored at 0.
    Normal,
    /// As `lognormal`, with a unit-variance multivariate Student-t shock.
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

/// How spending is set each year: `strategy` and that strategy's parameters. A parameter of
/// another strategy is refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalInput {
    pub strategy: WithdrawalStrategy,
    /// `percent_of_portfolio`, `floor_ceiling`: the share withdrawn at the start of each year.
    pub rate: Option<f64>,
    /// `guardrails` only.
    pub upper_guardrail: Option<f64>,
    /// `guardrails` only.
    pub lower_guardrail: Option<f64>,
    /// `guardrails` only.
    pub cut: Option<f64>,
    /// `guardrails` only.
    pub raise: Option<f64>,
    /// `floor_ceiling` only.
    pub monthly_floor: Option<f64>,
    /// `floor_ceiling` only.
    pub monthly_ceiling: Option<f64>,
}

/// The withdrawal strategies (docs/model.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomeInput {
    pub name: Option<String>,
    pub monthly_amount: Option<f64>,
    pub start_year: Option<u32>,
    pub end_year: Option<u32>,
    pub inflation_adjusted: Option<bool>,
}

/// A one-off amount at the start of `year` (1-based).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneOffInput {
    pub name: Option<String>,
    pub year: Option<u32>,
    pub amount: Option<f64>,
    pub inflation_adjusted: Option<bool>,
}

/// Find the largest constant real `monthly_spending` with success probability ≥ the target.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SolveInput {
    pub target_success: Option<f64>,
}

/// When holdings are reset to the target weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rebalancing {
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
pub trait Choice: Copy + PartialEq + 'static {
    const CHOICES: &'static [(&'static str, Self)];

    /// The JSON name of this choice.
    fn name(&self) -> &'static str {
        Self::CHOICES.iter().find(|(_, c)| c == self).map_or("?", |(name, _)| name)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
                assert_eq!(choice.name(), *name);
            }
        }
        check::<ReturnModelKind>();
        check::<WithdrawalStrategy>();
        check::<Rebalancing>();
    }
}
