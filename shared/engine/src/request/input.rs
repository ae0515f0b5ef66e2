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
    pub(crate) starting_portfolio: Option<f64>,
    pub(crate) monthly_spending: Option<f64>,
    #[serde(default, deserialize_with = "super::whole::option")]
    pub(crate) years: Option<u32>,
    #[serde(default, deserialize_with = "super::whole::option")]
    pub(crate) n_scenarios: Option<u32>,
    #[serde(default, deserialize_with = "super::whole::option")]
    pub(crate) seed: Option<u64>,
    pub(crate) allocation: Option<AllocationInput>,
    pub(crate) assumptions: Option<AssumptionsInput>,
    pub(crate) annual_fee: Option<f64>,
    pub(crate) return_model: Option<ReturnModelInput>,
    pub(crate) withdrawal: Option<WithdrawalInput>,
    pub(crate) income: Option<Vec<IncomeInput>>,
    pub(crate) expenses: Option<Vec<OneOffInput>>,
    pub(crate) inflows: Option<Vec<OneOffInput>>,
    pub(crate) rebalancing: Option<Rebalancing>,
    pub(crate) solve: Option<SolveInput>,
}

/// Target weights of stocks, bonds and cash.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AllocationInput {
    pub(crate) stocks: Option<f64>,
    pub(crate) bonds: Option<f64>,
    pub(crate) cash: Option<f64>,
}

/// Capital-market assumptions for the parametric return models.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssumptionsInput {
    pub(crate) stocks: Option<AssetAssumptionInput>,
    pub(crate) bonds: Option<AssetAssumptionInput>,
    pub(crate) cash: Option<AssetAssumptionInput>,
    /// Rows and columns: stocks, bonds, cash.
    pub(crate) correlation: Option<Vec<Vec<f64>>>,
    pub(crate) inflation: Option<InflationInput>,
}

/// Annual arithmetic mean return and annual volatility of one asset.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssetAssumptionInput {
    pub(crate) mean_return: Option<f64>,
    pub(crate) volatility: Option<f64>,
}

/// Annual mean inflation and its annual volatility.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InflationInput {
    pub(crate) mean: Option<f64>,
    pub(crate) volatility: Option<f64>,
}

/// How monthly returns are generated: `kind` and that kind's parameters. A parameter of
/// another kind is refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReturnModelInput {
    pub(crate) kind: ReturnModelKind,
    /// `student_t` only.
    pub(crate) df: Option<f64>,
    /// `bootstrap` only.
    #[serde(default, deserialize_with = "super::whole::option")]
    pub(crate) block_years: Option<u32>,
}

/// The return models (docs/model.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ReturnModelKind {
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
pub(crate) struct WithdrawalInput {
    pub(crate) strategy: WithdrawalStrategy,
    /// `percent_of_portfolio`, `floor_ceiling`: the share withdrawn at the start of each year.
    pub(crate) rate: Option<f64>,
    /// `guardrails` only.
    pub(crate) upper_guardrail: Option<f64>,
    /// `guardrails` only.
    pub(crate) lower_guardrail: Option<f64>,
    /// `guardrails` only.
    pub(crate) cut: Option<f64>,
    /// `guardrails` only.
    pub(crate) raise: Option<f64>,
    /// `floor_ceiling` only.
    pub(crate) monthly_floor: Option<f64>,
    /// `floor_ceiling` only.
    pub(crate) monthly_ceiling: Option<f64>,
}

/// The withdrawal strategies (docs/model.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WithdrawalStrategy {
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
pub(crate) struct IncomeInput {
    pub(crate) name: Option<String>,
    pub(crate) monthly_amount: Option<f64>,
    #[serde(default, deserialize_with = "super::whole::option")]
    pub(crate) start_year: Option<u32>,
    #[serde(default, deserialize_with = "super::whole::option")]
    pub(crate) end_year: Option<u32>,
    pub(crate) inflation_adjusted: Option<bool>,
}

/// A one-off amount at the start of `year` (1-based).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OneOffInput {
    pub(crate) name: Option<String>,
    #[serde(default, deserialize_with = "super::whole::option")]
    pub(crate) year: Option<u32>,
    pub(crate) amount: Option<f64>,
    pub(crate) inflation_adjusted: Option<bool>,
}

/// Find the largest constant real `monthly_spending` with success probability ≥ the target.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SolveInput {
    pub(crate) target_success: Option<f64>,
}

/// When holdings are reset to the target weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Rebalancing {
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
pub(crate) trait Choice: Copy + PartialEq + 'static {
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
