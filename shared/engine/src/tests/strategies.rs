//! What each withdrawal strategy promises, whatever the markets do.

use serde_json::json;

use super::{PS, assert_close, at, request, simulate};

#[test]
fn percent_of_portfolio_never_depletes_even_in_the_worst_markets() {
    // The largest rate allowed, the wildest assets, and every model and rebalancing rule: the
    // withdrawal is capped at the balance, and income and inflows only add, so no scenario
    // may ever be marked depleted. (One-off expenses can still exhaust it; they are left out.)
    let models = [
        json!({"kind": "lognormal"}),
        json!({"kind": "normal"}),
        json!({"kind": "student_t", "df": 2.5}),
        json!({"kind": "bootstrap", "block_years": 3}),
        json!({"kind": "historical"}),
    ];
    for model in models {
        for rebalancing in ["monthly", "annual", "none"] {
            for rate in [0.04, 1.0] {
                let r = request(json!({
                    "starting_portfolio": 100_000.0,
                    "monthly_spending": 0.0,
                    "years": 40,
                    "n_scenarios": 2_000,
                    "allocation": {"stocks": 0.9, "cash": 0.1},
                    "assumptions": {"stocks": {"mean_return": -0.05, "volatility": 0.9}},
                    "return_model": model,
                    "rebalancing": rebalancing,
                    "withdrawal": {"strategy": "percent_of_portfolio", "rate": rate},
                    "income": [{"monthly_amount": 500.0, "start_year": 10}],
                    "inflows": [{"year": 5, "amount": 20_000.0}]
                }));
                let result = simulate(&r, 77);
                let what = format!("{model} {rebalancing} rate {rate}");
                assert_eq!(result.success_probability, 1.0, "{what}");
                assert!(result.depletion_probability_by_year.iter().all(|&d| d == 0.0), "{what}");
                assert_eq!(result.median_depletion_year, None, "{what}");
            }
        }
    }
}

#[test]
fn constant_real_spending_is_exactly_the_requested_amount_every_year_it_is_paid() {
    // Real spending = monthly_spending × 12 in every year of a scenario that survives it (the
    // nominal amount is the request's indexed by the scenario's own price index). Scenarios
    // that run out spend less, so only the percentiles above the failure share are pinned;
    // 1e-9 relative covers the rounding of dividing by the index again.
    let s = 4_000.0;
    let r = request(json!({
        "starting_portfolio": 1_000_000.0, "monthly_spending": s, "years": 30, "n_scenarios": 4_000,
    }));
    let result = simulate(&r, 8);
    for y in 1..=30usize {
        let failed_by = result.depletion_probability_by_year[y];
        for (k, &p) in PS.iter().enumerate() {
            if p > failed_by + 1e-3 {
                let got = at(&result.spending_percentiles.percentiles, y - 1)[k];
                assert_close(got, 12.0 * s, 1e-9, 0.0, &format!("spending p{p} year {y}"));
            }
        }
    }
}

#[test]
fn floor_and_ceiling_keep_real_spending_between_them_while_the_portfolio_lasts() {
    // The year's spending is set at its start: rate × portfolio / 12, clamped to the floor
    // and ceiling in that day's prices (× the price index), then paid as a fixed nominal
    // amount for 12 months. With inflation deterministic at q = (1.03)^(1/12) a month, a year
    // of it is worth Σ_{m<12} q^{−m} monthly amounts in start-of-year prices, so real spending
    // lies in [floor, ceiling] × that sum while the portfolio lasts. 1e-9 relative for
    // rounding.
    let (floor, ceiling) = (3_000.0, 4_500.0);
    let q = 1.03f64.powf(1.0 / 12.0);
    let year_of_months: f64 = (0..12).map(|m| q.powi(-m)).sum();
    // Parametric models only: bootstrap and historical take inflation from the table.
    for model in [json!({"kind": "lognormal"}), json!({"kind": "student_t", "df": 4.0})] {
        let r = request(json!({
            "starting_portfolio": 1_200_000.0, "monthly_spending": 0.0, "years": 30, "n_scenarios": 3_000,
            "assumptions": {"inflation": {"mean": 0.03, "volatility": 0.0}},
            "return_model": model,
            "withdrawal": {"strategy": "floor_ceiling", "rate": 0.04, "monthly_floor": floor, "monthly_ceiling": ceiling}
        }));
        let result = simulate(&r, 9);
        for y in 1..=30usize {
            let failed_by = result.depletion_probability_by_year[y];
            let spent = at(&result.spending_percentiles.percentiles, y - 1);
            for (k, &p) in PS.iter().enumerate() {
                // Every percentile is at most the ceiling; those above the failure share (the
                // scenarios still paying all year) at least the floor.
                let s = spent[k] / year_of_months;
                assert!(
                    s <= ceiling * (1.0 + 1e-9),
                    "{model} p{p} year {y}: {s} above the ceiling"
                );
                if p > failed_by + 1e-3 {
                    assert!(
                        s >= floor * (1.0 - 1e-9),
                        "{model} p{p} year {y}: {s} below the floor"
                    );
                }
            }
            if y == 1 {
                // The first year: 4 % of 1.2 M is 4,000 a month, inside the band.
                assert_close(spent[3], 4_000.0 * year_of_months, 1e-9, 0.0, "first-year median");
            }
        }
    }
}

#[test]
fn guardrails_spend_no_more_than_constant_real_in_a_market_that_only_falls() {
    // With zero volatility and a negative return, every year is a losing year and the
    // withdrawal rate climbs: Guyton–Klinger skips inflation raises and cuts, so it can never
    // spend more in real terms than constant real spending, and it must cut at some point.
    let base = json!({
        "starting_portfolio": 1_000_000.0, "monthly_spending": 4_000.0, "years": 15, "n_scenarios": 3,
        "allocation": {"stocks": 1.0},
        "assumptions": {
            "stocks": {"mean_return": -0.01, "volatility": 0.0},
            "inflation": {"mean": 0.02, "volatility": 0.0}
        }
    });
    let constant = simulate(&request(base.clone()), 1);
    assert_eq!(constant.success_probability, 1.0, "the comparison needs constant real to last");
    let mut gk = base;
    gk["withdrawal"] = json!({"strategy": "guardrails"});
    let guarded = simulate(&request(gk), 1);
    let c = &constant.spending_percentiles.percentiles.p50;
    let g = &guarded.spending_percentiles.percentiles.p50;
    // Year 1 pays the initial 4,000 a month, fixed in nominal terms for the year:
    // Σ_{m<12} 4,000·q^{−m} in today's money, q = (1.02)^(1/12); 1e-9 relative for rounding.
    let q = 1.02f64.powf(1.0 / 12.0);
    let first_year: f64 = (0..12).map(|m| 4_000.0 * q.powi(-m)).sum();
    assert_close(g[0], first_year, 1e-9, 0.0, "the first year is the initial withdrawal");
    // Guardrails may only spend less: 1e-12 relative allows for the two runs rounding the
    // same amounts differently (none is expected), far below any real raise.
    for y in 0..15 {
        assert!(g[y] <= c[y] * (1.0 + 1e-12), "year {}: {} > {}", y + 1, g[y], c[y]);
    }
    assert!(g.iter().zip(c).any(|(a, b)| *a < 0.95 * b), "guardrails never cut");
    assert!(guarded.success_probability >= constant.success_probability);
}
