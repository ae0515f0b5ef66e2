//! Property tests over random valid requests: every model, strategy, rebalancing rule and
//! cash flow, with at most 120 scenarios and 20 years so that 500 cases run in seconds.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::reference::assert_matches_reference;
use super::{request, simulate};
use crate::request::{SimulationRequest, Withdrawal};
use crate::result::SimulationResult;

fn model() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"kind": "lognormal"})),
        Just(json!({"kind": "normal"})),
        (3.0..40.0f64).prop_map(|df| json!({"kind": "student_t", "df": df})),
        (1u32..=12).prop_map(|b| json!({"kind": "bootstrap", "block_years": b})),
        Just(json!({"kind": "historical"})),
    ]
}

fn withdrawal() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"strategy": "constant_real"})),
        (0.01..=1.0f64).prop_map(|rate| json!({"strategy": "percent_of_portfolio", "rate": rate})),
        (0.05..1.0f64, 0.05..0.9f64, 0.0..0.5f64, 0.0..0.5f64).prop_map(|(u, l, c, r)| json!({
            "strategy": "guardrails", "upper_guardrail": u, "lower_guardrail": l, "cut": c, "raise": r
        })),
        (0.01..0.1f64, 0.0..5_000.0f64, 0.0..10_000.0f64).prop_map(|(rate, floor, extra)| json!({
            "strategy": "floor_ceiling", "rate": rate, "monthly_floor": floor,
            "monthly_ceiling": floor + extra
        })),
    ]
}

/// Up to two cash flows of a kind, each within a horizon of `years`.
fn flows(years: u32, income: bool) -> impl Strategy<Value = Value> {
    let one = (1..=years, 1..=years, 0.0..5_000.0f64, any::<bool>(), 0.0..300_000.0f64).prop_map(
        move |(a, b, monthly, indexed, amount)| {
            if income {
                json!({"monthly_amount": monthly, "start_year": a.min(b), "end_year": a.max(b), "inflation_adjusted": indexed})
            } else {
                json!({"year": a, "amount": amount, "inflation_adjusted": indexed})
            }
        },
    );
    prop::collection::vec(one, 0..=2).prop_map(Value::from)
}

fn asset() -> impl Strategy<Value = Value> {
    (-0.2..0.3f64, 0.0..0.4f64).prop_map(|(m, v)| json!({"mean_return": m, "volatility": v}))
}

prop_compose! {
    fn requests()(years in 1u32..=20)(
        years in Just(years),
        size in (10_000.0..5_000_000.0f64, 0.0..0.012f64, 1u32..=120),
        split in (0.0..=1.0f64, 0.0..=1.0f64),
        assets in (asset(), asset(), asset()),
        // |ρ| ≤ 0.45 for all three pairs keeps the matrix positive definite
        // (det ≥ 1 − 3·0.45² − 2·0.45³ > 0).
        rho in (-0.45..0.45f64, -0.45..0.45f64, -0.45..0.45f64),
        inflation in (-0.02..0.08f64, 0.0..0.05f64),
        fee in 0.0..0.02f64,
        rules in (model(), withdrawal(), prop_oneof![Just("monthly"), Just("annual"), Just("none")]),
        cash_flows in (flows(years, true), flows(years, false), flows(years, false)),
    ) -> SimulationRequest {
        let (w0, spend_rate, n) = size;
        let (model, withdrawal, rebalancing) = rules;
        let (income, expenses, inflows) = cash_flows;
        let stocks_w = split.0;
        let bonds_w = (1.0 - stocks_w) * split.1;
        request(json!({
            "starting_portfolio": w0,
            "monthly_spending": w0 * spend_rate,
            "years": years,
            "n_scenarios": n,
            "allocation": {"stocks": stocks_w, "bonds": bonds_w, "cash": 1.0 - stocks_w - bonds_w},
            "assumptions": {
                "stocks": assets.0, "bonds": assets.1, "cash": assets.2,
                "correlation": [[1.0, rho.0, rho.1], [rho.0, 1.0, rho.2], [rho.1, rho.2, 1.0]],
                "inflation": {"mean": inflation.0, "volatility": inflation.1}
            },
            "annual_fee": fee,
            "return_model": model,
            "withdrawal": withdrawal,
            "rebalancing": rebalancing,
            "income": income,
            "expenses": expenses,
            "inflows": inflows
        }))
    }
}

/// The invariants every result satisfies, whatever the request.
fn check_invariants(r: &SimulationRequest, result: &SimulationResult) -> Result<(), TestCaseError> {
    let years = r.years as usize;
    let series = [
        ("real", &result.percentiles, years + 1),
        ("nominal", &result.nominal_percentiles, years + 1),
        ("spending", &result.spending_percentiles.percentiles, years),
    ];
    for (name, s, len) in series {
        let cols = s.columns();
        for c in cols {
            prop_assert_eq!(c.len(), len, "{} length", name);
        }
        for i in 0..len {
            for (k, col) in cols.iter().enumerate() {
                let v = col[i];
                prop_assert!(v.is_finite() && v >= 0.0, "{} [{}] p-index {} = {}", name, i, k, v);
                if k > 0 {
                    prop_assert!(
                        cols[k - 1][i] <= v,
                        "{} not monotone at {}: {} > {}",
                        name,
                        i,
                        cols[k - 1][i],
                        v
                    );
                }
            }
        }
    }
    prop_assert_eq!(result.percentiles.p50[0], r.starting_portfolio);
    let success = result.success_probability;
    prop_assert!((0.0..=1.0).contains(&success));
    let depletion = &result.depletion_probability_by_year;
    prop_assert_eq!(depletion.len(), years + 1);
    prop_assert_eq!(depletion[0], 0.0);
    prop_assert!(
        depletion.windows(2).all(|w| w[0] <= w[1]),
        "depletion curve decreases: {:?}",
        depletion
    );
    prop_assert!(depletion.iter().all(|d| (0.0..=1.0).contains(d)));
    // success = survivors/n, depletion[last] = failures/n: complementary up to one rounding.
    prop_assert!((success - (1.0 - depletion[years])).abs() < 1e-12);
    prop_assert_eq!(result.median_depletion_year.is_none(), success == 1.0);
    if let Some(m) = result.median_depletion_year {
        prop_assert!((1.0..=years as f64).contains(&m));
    }
    prop_assert_eq!(result.n_scenarios, r.effective_scenarios());
    prop_assert!(result.terminal.mean.is_finite() && result.terminal.mean >= 0.0);
    prop_assert_eq!(result.terminal.p50, result.percentiles.p50[years]);
    if matches!(r.withdrawal, Withdrawal::PercentOfPortfolio { .. }) && r.expenses.is_empty() {
        prop_assert_eq!(success, 1.0, "percent of portfolio depleted");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn every_result_has_monotone_finite_percentiles_and_a_consistent_depletion_curve(
        r in requests(), seed in 0u64..=i64::MAX as u64,
    ) {
        let result = simulate(&r, seed);
        check_invariants(&r, &result)?;
    }

    #[test]
    fn every_result_agrees_with_the_scalar_reference_model(
        r in requests(), seed in 0u64..=i64::MAX as u64,
    ) {
        // The reference asserts (panics) with the statistic that differs.
        assert_matches_reference(&r, seed, &simulate(&r, seed));
    }
}
