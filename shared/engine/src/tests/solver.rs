//! The safe-spending solver: the largest constant real monthly spending whose success
//! probability meets the target, to 0.5 %.

use serde_json::json;

use super::reference::simulate_reference;
use super::{request, simulate, with_spending};
use crate::request::SimulationRequest;

/// The solver's guarantee, checked with fresh runs on the same seed: success at the answer
/// ≥ target, and success 0.5 % above it < target (success is a non-increasing function of
/// spending on common random numbers, so this pins the answer within 0.5 %).
#[track_caller]
fn assert_brackets_target(r: &SimulationRequest, seed: u64) -> f64 {
    let target = r.solve.unwrap().target_success;
    let result = simulate(r, seed);
    let solve = result.solve.clone().expect("solve outcome");
    let safe = solve.safe_monthly_spending;
    assert!(
        solve.success_probability >= target,
        "success {} < target {target}",
        solve.success_probability
    );
    assert_eq!(
        result.success_probability, solve.success_probability,
        "the full run uses the answer"
    );
    let at = simulate(&with_spending(r, safe), seed).success_probability;
    assert_eq!(at, solve.success_probability, "success at the answer, run afresh");
    let above = simulate(&with_spending(r, safe * 1.005), seed).success_probability;
    assert!(
        above < target,
        "0.5 % above the answer ({}) still succeeds {above} ≥ {target}",
        safe * 1.005
    );
    safe
}

#[test]
fn safe_spending_meets_the_target_and_half_a_percent_more_misses_it() {
    for (model, target) in [
        (json!({"kind": "lognormal"}), 0.9),
        (json!({"kind": "student_t", "df": 5.0}), 0.75),
        (json!({"kind": "bootstrap", "block_years": 3}), 0.95),
    ] {
        let r = request(json!({
            "starting_portfolio": 1_000_000.0, "monthly_spending": 1.0, "years": 30, "n_scenarios": 3_000,
            "return_model": model, "annual_fee": 0.003,
            "income": [{"monthly_amount": 1_000.0, "start_year": 10}],
            "solve": {"target_success": target}
        }));
        let safe = assert_brackets_target(&r, 12);
        // Independently: the scalar reference model, on the same scenarios, agrees that the
        // answer meets the target and 0.5 % more does not.
        let share = |s: f64| {
            let o = simulate_reference(&with_spending(&r, s), 12);
            o.depleted.iter().filter(|d| d.is_none()).count() as f64 / o.depleted.len() as f64
        };
        assert!(share(safe) >= target, "{model}: reference success at the answer");
        assert!(share(safe * 1.005) < target, "{model}: reference success 0.5 % above");
    }
}

#[test]
fn on_a_deterministic_market_safe_spending_is_the_closed_form_maximum_within_half_a_percent() {
    // Zero volatility: every scenario is the same annuity, which survives exactly when
    // s·Σ_{k<T} (q/G)^k ≤ W_0 (each month's spending fits in what is left), so the maximum
    // is s* = W_0 / Σ_{k<T} (q/G)^k and success is 1 up to s* and 0 above. The answer must
    // lie in [s*/1.005, s*] (1e-9 relative slack for rounding at s* itself).
    //
    // s* and the solver's first bracket are both proportional to W_0, so the bisection path
    // depends only on the horizon and the rates; those are varied. The last case is
    // adversarial: with a stock return of 7.7517375 % over 30 years, s* sits just above
    // 1.005 × the lower end of the final bracket, which a stopping rule relative to the upper
    // end (hi − lo ≤ 0.5 % of hi, allowing hi up to lo/0.995) accepted, leaving 0.5 % more
    // spending still successful.
    let mut cases: Vec<(u32, f64)> = Vec::new();
    for years in [1u32, 5, 17, 30, 45, 70] {
        for mu in [0.0, 0.03, 0.06, 0.1] {
            cases.push((years, mu));
        }
    }
    cases.push((30, 0.077_517_375));
    for (years, mu) in cases {
        let w0 = 1_000_000.0;
        let r = request(json!({
            "starting_portfolio": w0, "monthly_spending": 0.0, "years": years, "n_scenarios": 1,
            "allocation": {"stocks": 0.7, "bonds": 0.3},
            "assumptions": {
                "stocks": {"mean_return": mu, "volatility": 0.0},
                "bonds": {"mean_return": 0.03, "volatility": 0.0},
                "inflation": {"mean": 0.025, "volatility": 0.0}
            },
            "annual_fee": 0.004,
            "solve": {"target_success": 0.5}
        }));
        let big_g = (0.7 * (1.0 + mu).powf(1.0 / 12.0) + 0.3 * 1.03f64.powf(1.0 / 12.0))
            * (1.0 - 0.004 / 12.0);
        let q = 1.025f64.powf(1.0 / 12.0);
        let months = 12 * years as i32;
        let s_max = w0 / (0..months).map(|k| (q / big_g).powi(k)).sum::<f64>();
        let result = simulate(&r, 1);
        let safe = result.solve.unwrap().safe_monthly_spending;
        let what = format!("{years} years, stocks {mu}");
        assert!(safe <= s_max * (1.0 + 1e-9), "{what}: {safe} above the maximum {s_max}");
        assert!(
            safe * 1.005 >= s_max * (1.0 - 1e-9),
            "{what}: {safe} more than 0.5 % below {s_max}"
        );
    }
}

#[test]
fn safe_spending_is_zero_when_even_zero_spending_misses_the_target() {
    // A one-off expense larger than the portfolio in year 1 depletes every scenario whatever
    // the spending.
    let r = request(json!({
        "starting_portfolio": 100_000.0, "monthly_spending": 500.0, "years": 10, "n_scenarios": 200,
        "expenses": [{"year": 1, "amount": 150_000.0}],
        "solve": {"target_success": 0.5}
    }));
    let result = simulate(&r, 3);
    let solve = result.solve.unwrap();
    assert_eq!(solve.safe_monthly_spending, 0.0);
    assert_eq!(solve.success_probability, 0.0);
    assert_eq!(result.success_probability, 0.0);
}

#[test]
fn the_bracket_stops_at_its_cap_when_no_spending_can_fail() {
    // A 10¹² inflow in the first month pays any spending up to the cap (10¹⁰ a month) for the
    // one-year horizon, so the bracket grows to the cap and the answer is at least the cap.
    let r = request(json!({
        "starting_portfolio": 1_000.0, "monthly_spending": 0.0, "years": 1, "n_scenarios": 20,
        "allocation": {"cash": 1.0},
        "assumptions": {"cash": {"mean_return": 0.0, "volatility": 0.0}, "inflation": {"mean": 0.0, "volatility": 0.0}},
        "inflows": [{"year": 1, "amount": 1e12}],
        "solve": {"target_success": 0.9}
    }));
    let result = simulate(&r, 4);
    let solve = result.solve.clone().unwrap();
    assert_eq!(solve.safe_monthly_spending, 1e10, "the largest spending a plan may ask for");
    assert_eq!(solve.success_probability, 1.0);
    assert!(result.notes.iter().any(|n| n.contains("looked no higher")), "{:?}", result.notes);
    // The longest search there is (widening to the cap, then narrowing) stays within the
    // passes the cost of a job counts on, the final run being the one more.
    assert!(u64::from(solve.iterations) < crate::SOLVER_PASSES, "{}", solve.iterations);
}

#[test]
fn a_first_bracket_above_the_cap_starts_at_the_cap() {
    // Twice 10¹² paid out over 12 months is 1.7·10¹¹ a month, above the largest
    // `monthly_spending` a plan may ask for: the answer must still be one a plan takes.
    let r = request(json!({
        "starting_portfolio": 1e12, "monthly_spending": 1.0, "years": 1, "n_scenarios": 100,
        "solve": {"target_success": 0.5}
    }));
    let solve = simulate(&r, 1).solve.unwrap();
    assert_eq!(solve.safe_monthly_spending, 1e10);
    let plan = json!({"starting_portfolio": 1e12, "monthly_spending": solve.safe_monthly_spending, "years": 1});
    SimulationRequest::from_json(plan.to_string().as_bytes(), &Default::default())
        .expect("the answer is a monthly_spending a plan takes");
}

#[test]
fn when_every_positive_spending_misses_the_target_the_solver_stops_below_a_cent() {
    // Under the normal model a 100 % volatility floors the gross return at a total loss in
    // about 2.4e-4 of months, so ~11 % of 40-year scenarios reach exactly 0: they survive
    // zero spending (0 ≤ 0) and fail any positive amount. At a 95 % target the answer is 0;
    // the bisection must get there by narrowing the bracket below a cent, not by running
    // out of its 80 iterations.
    let r = request(json!({
        "starting_portfolio": 1_000_000.0, "monthly_spending": 0.0, "years": 40, "n_scenarios": 500,
        "allocation": {"stocks": 1.0},
        "assumptions": {"stocks": {"mean_return": 0.1, "volatility": 1.0}},
        "return_model": {"kind": "normal"},
        "solve": {"target_success": 0.95}
    }));
    let zero_reached = 1.0 - simulate(&with_spending(&r, 1e-6), 2).success_probability;
    assert!(zero_reached > 0.05, "the case needs over 5 % of scenarios at 0 ({zero_reached})");
    let solve = simulate(&r, 2).solve.unwrap();
    assert!(solve.safe_monthly_spending < 0.01, "{}", solve.safe_monthly_spending);
    assert!(solve.success_probability >= 0.95);
    // From a first bracket of 2·W_0/480 ≈ 4,167 down to a cent is 19 halvings.
    assert!(solve.iterations < 30, "{} iterations", solve.iterations);
}
