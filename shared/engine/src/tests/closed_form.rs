//! Cases with a closed form: no volatility at all (an annuity), and one lognormal asset
//! without spending (a lognormal terminal wealth).

use serde_json::json;
use statrs::distribution::{Continuous, ContinuousCDF, LogNormal};

use super::{PS, assert_close, at, request, simulate};
use crate::request::SimulationRequest;

/// Deterministic monthly constants of a zero-volatility request: portfolio gross return net
/// of the fee `G = (Σ_a w_a (1+μ_a)^(1/12))·(1 − fee/12)` and price-index factor
/// `q = (1+π)^(1/12)`.
fn deterministic_factors(r: &SimulationRequest) -> (f64, f64) {
    let a = &r.assumptions;
    let w = r.allocation.weights();
    let mu = [a.stocks.mean_return, a.bonds.mean_return, a.cash.mean_return];
    let g: f64 = (0..3).map(|i| w[i] * (1.0 + mu[i]).powf(1.0 / 12.0)).sum();
    (g * (1.0 - r.annual_fee / 12.0), (1.0 + a.inflation.mean).powf(1.0 / 12.0))
}

/// Nominal wealth after `t` months of paying `s·q^k` at the start of month k and growing by
/// G: W_t = G^t·(W_0 − s·(1 − (q/G)^t)/(1 − q/G)), the future value of a growing annuity.
fn annuity_wealth(w0: f64, s: f64, big_g: f64, q: f64, t: usize) -> f64 {
    let t = t as i32;
    let x = q / big_g;
    big_g.powi(t) * (w0 - s * (1.0 - x.powi(t)) / (1.0 - x))
}

fn zero_volatility(body: serde_json::Value) -> SimulationRequest {
    let mut b = json!({
        "starting_portfolio": 1_000_000.0,
        "monthly_spending": 3_000.0,
        "years": 30,
        "n_scenarios": 40,
        "allocation": {"stocks": 0.6, "bonds": 0.3, "cash": 0.1},
        "assumptions": {
            "stocks": {"mean_return": 0.07, "volatility": 0.0},
            "bonds": {"mean_return": 0.035, "volatility": 0.0},
            "cash": {"mean_return": 0.02, "volatility": 0.0},
            "inflation": {"mean": 0.025, "volatility": 0.0}
        },
        "annual_fee": 0.0
    });
    for (k, v) in body.as_object().unwrap() {
        b[k] = v.clone();
    }
    request(b)
}

/// Every percentile of real and nominal wealth at every year end, and of real spending in
/// every year, equals the annuity closed form to 1e-9 relative: the engine's only departure
/// is rounding (its exp is within 2 ulp; 360 months of products and differences accumulate
/// ~1e-13), while the closed form shares none of its arithmetic.
fn assert_annuity_everywhere(r: &SimulationRequest) {
    let result = simulate(r, 11);
    let (big_g, q) = deterministic_factors(r);
    let s = r.monthly_spending;
    for y in 0..=r.years as usize {
        let nominal = annuity_wealth(r.starting_portfolio, s, big_g, q, 12 * y);
        assert!(nominal > 0.1 * r.starting_portfolio, "the case must stay far from depletion");
        let real = nominal / q.powi(12 * y as i32);
        for (k, p) in PS.iter().enumerate() {
            assert_close(
                at(&result.nominal_percentiles, y)[k],
                nominal,
                1e-9,
                0.0,
                &format!("nominal p{p} year {y}"),
            );
            assert_close(
                at(&result.percentiles, y)[k],
                real,
                1e-9,
                0.0,
                &format!("real p{p} year {y}"),
            );
        }
        if y > 0 {
            for (k, p) in PS.iter().enumerate() {
                let spent = at(&result.spending_percentiles.percentiles, y - 1)[k];
                assert_close(spent, 12.0 * s, 1e-9, 0.0, &format!("spending p{p} year {y}"));
            }
        }
    }
    let years = r.years as usize;
    let terminal =
        annuity_wealth(r.starting_portfolio, s, big_g, q, 12 * years) / q.powi(12 * years as i32);
    assert_close(result.terminal.mean, terminal, 1e-9, 0.0, "terminal mean");
    assert_eq!(result.success_probability, 1.0);
    assert!(result.depletion_probability_by_year.iter().all(|&d| d == 0.0));
    assert_eq!(result.median_depletion_year, None);
}

#[test]
fn zero_volatility_wealth_is_the_annuity_closed_form_at_every_percentile_and_year() {
    assert_annuity_everywhere(&zero_volatility(json!({})));
}

#[test]
fn zero_volatility_wealth_with_a_fee_is_the_annuity_closed_form() {
    assert_annuity_everywhere(&zero_volatility(
        json!({"annual_fee": 0.01, "monthly_spending": 2_500.0}),
    ));
}

#[test]
fn zero_volatility_single_asset_is_the_annuity_whatever_the_model_or_rebalancing() {
    // With one asset, rebalancing has nothing to move, and with no volatility every model's
    // monthly gross return is (1+μ)^(1/12).
    for model in [
        json!({"kind": "lognormal"}),
        json!({"kind": "normal"}),
        json!({"kind": "student_t", "df": 6.0}),
    ] {
        for rebalancing in ["monthly", "annual", "none"] {
            assert_annuity_everywhere(&zero_volatility(json!({
                "allocation": {"stocks": 1.0},
                "annual_fee": 0.006,
                "return_model": model,
                "rebalancing": rebalancing,
            })));
        }
    }
}

/// Money paid into a portfolio that is empty, or so small that scaling its holdings by what
/// is left overflows, is invested whatever the rebalancing: with no returns at all the mix
/// cannot matter, so every mode holds exactly what was paid in. Without rebalancing, the
/// deposit into an empty portfolio used to be thrown away, and one into 5e-324 grew to 3e300.
#[test]
fn a_deposit_into_an_empty_or_tiny_portfolio_is_invested_whatever_the_rebalancing() {
    let flat = json!({
        "stocks": {"mean_return": 0.0, "volatility": 0.0},
        "bonds": {"mean_return": 0.0, "volatility": 0.0},
        "cash": {"mean_return": 0.0, "volatility": 0.0},
        "inflation": {"mean": 0.0, "volatility": 0.0}
    });
    for start in [5e-324, 1e-300, 1.0] {
        for rebalancing in ["monthly", "annual", "none"] {
            let r = zero_volatility(json!({
                "starting_portfolio": start,
                "monthly_spending": 0.0,
                "years": 3,
                "assumptions": flat,
                "rebalancing": rebalancing,
                "inflows": [{"year": 2, "amount": 100_000.0}],
            }));
            let result = simulate(&r, 3);
            let case = format!("start {start:e}, {rebalancing}");
            for y in 2..=3 {
                for (k, p) in PS.iter().enumerate() {
                    let held = at(&result.nominal_percentiles, y)[k];
                    assert_close(
                        held,
                        100_000.0 + start,
                        1e-12,
                        0.0,
                        &format!("{case} p{p} year {y}"),
                    );
                }
            }
            assert!(result.terminal.mean.is_finite(), "{case}");
        }
    }
    // A plan that withdraws the whole portfolio in year 1, then lives on an income: the
    // income's surplus is invested (docs/model.md §5) without rebalancing too. With every
    // asset returning the same, the mix cannot matter.
    let halving = json!({
        "stocks": {"mean_return": -0.5, "volatility": 0.0},
        "bonds": {"mean_return": -0.5, "volatility": 0.0},
        "cash": {"mean_return": -0.5, "volatility": 0.0},
        "inflation": {"mean": 0.0, "volatility": 0.0}
    });
    let emptied = |rebalancing: &str| {
        let r = zero_volatility(json!({
            "years": 3,
            "assumptions": halving,
            "withdrawal": {"strategy": "percent_of_portfolio", "rate": 1.0},
            "rebalancing": rebalancing,
            "income": [{"start_year": 2, "monthly_amount": 1_000.0}],
        }));
        let result = simulate(&r, 3);
        [1, 2, 3].map(|y| at(&result.nominal_percentiles, y)[0])
    };
    let monthly = emptied("monthly");
    assert_eq!(monthly[0], 0.0, "year 1 withdraws everything: {monthly:?}");
    assert!(monthly[1] > 0.0 && monthly[2] > 0.0, "the income's surplus is invested: {monthly:?}");
    for rebalancing in ["annual", "none"] {
        let held = emptied(rebalancing);
        for y in 0..3 {
            assert_close(held[y], monthly[y], 1e-12, 0.0, &format!("{rebalancing} year {}", y + 1));
        }
    }
}

#[test]
fn zero_volatility_depletion_happens_in_the_year_the_closed_form_runs_out() {
    let r = zero_volatility(json!({"monthly_spending": 6_000.0, "annual_fee": 0.008}));
    let (big_g, q) = deterministic_factors(&r);
    let s = r.monthly_spending;
    let w0 = r.starting_portfolio;
    // The first month whose spending exceeds what is left.
    let month = (0..12 * r.years as usize)
        .find(|&t| s * q.powi(t as i32) > annuity_wealth(w0, s, big_g, q, t))
        .expect("this case runs out within the horizon");
    // Not a knife edge: both the month before and the month itself miss the threshold by far
    // more than rounding.
    for t in [month - 1, month] {
        let gap = s * q.powi(t as i32) - annuity_wealth(w0, s, big_g, q, t);
        assert!(gap.abs() > 1.0, "month {t} is too close to call ({gap})");
    }
    let year = month / 12 + 1;
    let result = simulate(&r, 3);
    assert_eq!(result.success_probability, 0.0);
    assert_eq!(result.median_depletion_year, Some(year as f64));
    for (y, &d) in result.depletion_probability_by_year.iter().enumerate() {
        assert_eq!(d, if y >= year { 1.0 } else { 0.0 }, "depletion probability by year {y}");
    }
    for y in 0..=r.years as usize {
        let want = if y < year { annuity_wealth(w0, s, big_g, q, 12 * y) } else { 0.0 };
        for (k, p) in PS.iter().enumerate() {
            // 1e-9 relative while alive; exactly 0 once depleted.
            assert_close(
                at(&result.nominal_percentiles, y)[k],
                want,
                1e-9,
                0.0,
                &format!("nominal p{p} year {y}"),
            );
            let real = want / q.powi(12 * y as i32);
            assert_close(
                at(&result.percentiles, y)[k],
                real,
                1e-9,
                0.0,
                &format!("real p{p} year {y}"),
            );
        }
    }
    // Real spending: the full 12 months before, the months paid in the depletion year, then
    // nothing (there is no income to live on).
    for y in 1..=r.years as usize {
        let want = match y.cmp(&year) {
            std::cmp::Ordering::Less => 12.0 * s,
            std::cmp::Ordering::Equal => (month % 12) as f64 * s,
            std::cmp::Ordering::Greater => 0.0,
        };
        assert_close(
            result.spending_percentiles.percentiles.p50[y - 1],
            want,
            1e-9,
            0.0,
            &format!("spending year {y}"),
        );
    }
}

/// Standard error of the sample p-quantile of n draws from a density f: √(p(1−p)/n)/f(q_p).
fn quantile_stderr(p: f64, n: f64, density_at_quantile: f64) -> f64 {
    (p * (1.0 - p) / n).sqrt() / density_at_quantile
}

#[test]
fn one_lognormal_asset_without_spending_has_lognormal_terminal_wealth() {
    let (w0, mu, sigma, years, n) = (1_000_000.0f64, 0.07f64, 0.18f64, 20usize, 100_000usize);
    let r = request(json!({
        "starting_portfolio": w0,
        "monthly_spending": 0.0,
        "years": years,
        "n_scenarios": n,
        "allocation": {"stocks": 1.0},
        "assumptions": {
            "stocks": {"mean_return": mu, "volatility": sigma},
            "inflation": {"mean": 0.02, "volatility": 0.0}
        }
    }));
    let result = simulate(&r, 2024);
    // ln W_t = ln W_0 + t·(ln(1+μ) − σ²/2) + σ√t·Z at every year end t.
    let nf = n as f64;
    for y in 1..=years {
        let t = y as f64;
        let location = w0.ln() + t * ((1.0 + mu).ln() - sigma * sigma / 2.0);
        let dist = LogNormal::new(location, sigma * t.sqrt()).unwrap();
        let deflator = 1.02f64.powf(t);
        for (k, &p) in PS.iter().enumerate() {
            let q = dist.inverse_cdf(p);
            let se = quantile_stderr(p, nf, dist.pdf(q));
            let nominal = at(&result.nominal_percentiles, y)[k];
            let real = at(&result.percentiles, y)[k];
            if y == years && [0.05, 0.5, 0.95].contains(&p) {
                // The brief's check: 3 standard errors of a sample quantile.
                assert!((nominal - q).abs() < 3.0 * se, "terminal p{p}: {nominal} vs {q} ± {se}");
            }
            // Every year and percentile (140 correlated checks): 4 standard errors.
            assert!((nominal - q).abs() < 4.0 * se, "year {y} p{p}: {nominal} vs {q} ± {se}");
            // Inflation is deterministic here, so real wealth is nominal over (1.02)^t.
            assert_close(real, nominal / deflator, 1e-12, 0.0, "real = nominal / price index");
        }
    }
    // E[W_T] = W_0 (1+μ)^T; Var[W_T] = E[W_T]²·(e^{σ²T} − 1).
    let t = years as f64;
    let mean = w0 * (1.0 + mu).powf(t);
    let se = mean * ((sigma * sigma * t).exp() - 1.0).sqrt() / nf.sqrt();
    let got = result.terminal.mean * 1.02f64.powf(t);
    assert!((got - mean).abs() < 3.0 * se, "terminal mean {got} vs {mean} ± {se}");
    assert_eq!(result.terminal.p50, result.percentiles.p50[years]);
    assert_eq!(result.success_probability, 1.0);
}
