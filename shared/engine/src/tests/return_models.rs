//! Each return model's monthly draws against its definition, read through
//! `kernel::for_each_month_of_returns` (the kernel's own drawing code). Tolerances are
//! multiples of the sampling standard error of each statistic, stated where they are used;
//! the seeds are fixed, so a pass is repeatable, and 4–5 standard errors leave no room for a
//! modelling error of practical size (a drift off by σ²/24 alone is ~10 standard errors).

use serde_json::json;

use super::super::kernel::for_each_month_of_returns;
use super::super::plan::Plan;
use super::reference::table;
use super::{request, simulate};
use crate::request::SimulationRequest;

const MU: [f64; 3] = [0.09, 0.045, 0.03];
const SIGMA: [f64; 3] = [0.2, 0.08, 0.03];
const RHO: [[f64; 3]; 3] = [[1.0, 0.3, -0.2], [0.3, 1.0, 0.4], [-0.2, 0.4, 1.0]];
const INFLATION: (f64, f64) = (0.03, 0.04);

fn parametric(model: serde_json::Value) -> SimulationRequest {
    request(json!({
        "starting_portfolio": 1.0,
        "monthly_spending": 0.0,
        "years": 2,
        // Every asset held, so that every asset's return is computed.
        "allocation": {"stocks": 0.4, "bonds": 0.35, "cash": 0.25},
        "assumptions": {
            "stocks": {"mean_return": MU[0], "volatility": SIGMA[0]},
            "bonds": {"mean_return": MU[1], "volatility": SIGMA[1]},
            "cash": {"mean_return": MU[2], "volatility": SIGMA[2]},
            "correlation": RHO,
            "inflation": {"mean": INFLATION.0, "volatility": INFLATION.1}
        },
        "return_model": model
    }))
}

/// Monthly draws of `len` scenarios over `months` months, flattened: `gross[a]`, `inflation`.
fn draws(r: &SimulationRequest, seed: u64, len: usize, months: usize) -> ([Vec<f64>; 3], Vec<f64>) {
    let plan = Plan::new(r, seed);
    let mut gross: [Vec<f64>; 3] = Default::default();
    let mut inflation = Vec::new();
    for_each_month_of_returns(&plan, 0, len, months, |_, g, i| {
        for a in 0..3 {
            gross[a].extend_from_slice(&g[a]);
        }
        inflation.extend_from_slice(i);
    });
    (gross, inflation)
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Sample variance (n − 1).
fn var(x: &[f64]) -> f64 {
    let m = mean(x);
    x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64
}

fn corr(x: &[f64], y: &[f64]) -> f64 {
    let (mx, my) = (mean(x), mean(y));
    let c: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let sy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    c / (sx * sy).sqrt()
}

/// Standard error of a sample variance, from the sample's own fourth central moment:
/// √((m4 − s⁴)/n).
fn var_stderr(x: &[f64]) -> f64 {
    let m = mean(x);
    let n = x.len() as f64;
    let m4 = x.iter().map(|v| (v - m).powi(4)).sum::<f64>() / n;
    ((m4 - var(x).powi(2)) / n).sqrt()
}

#[track_caller]
fn within(got: f64, want: f64, se: f64, k: f64, what: &str) {
    assert!((got - want).abs() < k * se, "{what}: got {got}, want {want} ± {k}×{se:e}");
}

/// Correlations of the three assets' series against the input matrix; `inflate` scales the
/// normal-theory standard error (1 − ρ²)/√n for heavier tails.
fn assert_correlations(series: &[Vec<f64>; 3], inflate: f64) {
    let n = series[0].len() as f64;
    for a in 0..3 {
        for b in (a + 1)..3 {
            let rho = RHO[a][b];
            let se = inflate * (1.0 - rho * rho) / n.sqrt();
            // 5 standard errors over three pairs.
            within(corr(&series[a], &series[b]), rho, se, 5.0, &format!("correlation {a},{b}"));
        }
    }
}

/// The price-index factor 1 + i_t is normal with mean (1+π)^(1/12) and variance σ_π²/12, and
/// independent of the asset shocks.
fn assert_inflation(inflation: &[f64], shocks: &[Vec<f64>; 3]) {
    let n = inflation.len() as f64;
    let (pi, sigma) = INFLATION;
    let sd = sigma / 12f64.sqrt();
    // Mean: standard error sd/√n; variance: sd²·√(2/(n−1)) (normal data); 5 of each.
    within(mean(inflation), (1.0 + pi).powf(1.0 / 12.0), sd / n.sqrt(), 5.0, "inflation mean");
    within(var(inflation), sd * sd, sd * sd * (2.0 / (n - 1.0)).sqrt(), 5.0, "inflation variance");
    for (a, x) in shocks.iter().enumerate() {
        // Independent series: the sample correlation has standard error 1/√n.
        within(corr(inflation, x), 0.0, 1.0 / n.sqrt(), 5.0, &format!("inflation vs asset {a}"));
    }
}

#[test]
fn lognormal_log_returns_have_the_specified_drift_variance_and_correlation() {
    let r = parametric(json!({"kind": "lognormal"}));
    let (gross, inflation) = draws(&r, 1, 100_000, 12);
    let logs: [Vec<f64>; 3] = gross.each_ref().map(|g| g.iter().map(|x| x.ln()).collect());
    let n = logs[0].len() as f64;
    for a in 0..3 {
        let sd = SIGMA[a] / 12f64.sqrt();
        // x = ln(1+μ)/12 − σ²/24 + (σ/√12)·(Lz): normal, so the mean has standard error
        // sd/√n and the variance sd²·√(2/(n−1)).
        let drift = (1.0 + MU[a]).ln() / 12.0 - SIGMA[a] * SIGMA[a] / 24.0;
        within(mean(&logs[a]), drift, sd / n.sqrt(), 5.0, &format!("asset {a} log mean"));
        within(
            var(&logs[a]),
            sd * sd,
            sd * sd * (2.0 / (n - 1.0)).sqrt(),
            5.0,
            &format!("asset {a} log variance"),
        );
        // The gross return itself: E[g] = (1+μ)^(1/12), Var[g] = E[g]²·(e^{σ²/12} − 1).
        let eg = (1.0 + MU[a]).powf(1.0 / 12.0);
        let vg = eg * eg * ((SIGMA[a] * SIGMA[a] / 12.0).exp() - 1.0);
        within(mean(&gross[a]), eg, (vg / n).sqrt(), 5.0, &format!("asset {a} gross mean"));
        within(
            var(&gross[a]),
            vg,
            var_stderr(&gross[a]),
            5.0,
            &format!("asset {a} gross variance"),
        );
    }
    assert_correlations(&logs, 1.0);
    assert_inflation(&inflation, &logs);
}

#[test]
fn lognormal_twelve_month_gross_return_has_mean_one_plus_mu() {
    let r = parametric(json!({"kind": "lognormal"}));
    let len = 200_000;
    let plan = Plan::new(&r, 9);
    let mut annual = [vec![1.0; len], vec![1.0; len], vec![1.0; len]];
    for_each_month_of_returns(&plan, 0, len, 12, |_, g, _| {
        for a in 0..3 {
            for j in 0..len {
                annual[a][j] *= g[a][j];
            }
        }
    });
    for a in 0..3 {
        // The product of 12 months is lognormal with log-variance σ²: E = 1+μ,
        // Var = (1+μ)²(e^{σ²} − 1); 5 standard errors of the mean.
        let m = 1.0 + MU[a];
        let se = (m * m * ((SIGMA[a] * SIGMA[a]).exp() - 1.0) / len as f64).sqrt();
        within(mean(&annual[a]), m, se, 5.0, &format!("asset {a} annual gross mean"));
    }
}

#[test]
fn normal_model_monthly_returns_have_the_specified_mean_variance_and_correlation() {
    let r = parametric(json!({"kind": "normal"}));
    let (gross, inflation) = draws(&r, 2, 100_000, 12);
    let n = gross[0].len() as f64;
    for a in 0..3 {
        // g = (1+μ)^(1/12) + (σ/√12)·(Lz), floored at 0 (unreachable at these volatilities:
        // 1 + r < 0 needs a shock of over 17 standard deviations).
        let sd = SIGMA[a] / 12f64.sqrt();
        within(
            mean(&gross[a]),
            (1.0 + MU[a]).powf(1.0 / 12.0),
            sd / n.sqrt(),
            5.0,
            &format!("asset {a} mean"),
        );
        within(
            var(&gross[a]),
            sd * sd,
            sd * sd * (2.0 / (n - 1.0)).sqrt(),
            5.0,
            &format!("asset {a} variance"),
        );
    }
    assert_correlations(&gross, 1.0);
    assert_inflation(&inflation, &gross);
}

#[test]
fn normal_model_floors_the_gross_return_at_a_total_loss() {
    let mut r = parametric(json!({"kind": "normal"}));
    r.assumptions.stocks.volatility = 1.0;
    let (gross, _) = draws(&r, 3, 100_000, 12);
    let n = gross[0].len() as f64;
    let zeros = gross[0].iter().filter(|&&g| g == 0.0).count() as f64;
    assert!(gross[0].iter().all(|&g| g >= 0.0), "a gross return below 0");
    // P(1 + r ≤ 0) = Φ(−(1.09)^(1/12)/(1/√12)); the count is binomial, 5 standard errors.
    let sd = 1.0 / 12f64.sqrt();
    let p = statrs::distribution::ContinuousCDF::cdf(
        &statrs::distribution::Normal::standard(),
        -(1.0 + MU[0]).powf(1.0 / 12.0) / sd,
    );
    within(zeros / n, p, (p * (1.0 - p) / n).sqrt(), 5.0, "share of total losses");
}

#[test]
fn student_t_shocks_have_unit_variance_the_t_excess_kurtosis_and_the_input_correlation() {
    let df = 10.0;
    let r = parametric(json!({"kind": "student_t", "df": df}));
    let (gross, inflation) = draws(&r, 4, 100_000, 20);
    // The standardised shock of each asset: (ln g − drift)/(σ/√12). Stocks load on z_0 alone
    // (L is lower triangular), so that shock is a unit-variance univariate t.
    let shocks: [Vec<f64>; 3] = std::array::from_fn(|a| {
        let drift = (1.0 + MU[a]).ln() / 12.0 - SIGMA[a] * SIGMA[a] / 24.0;
        let sd = SIGMA[a] / 12f64.sqrt();
        gross[a].iter().map(|g| (g.ln() - drift) / sd).collect()
    });
    let x = &shocks[0];
    let n = x.len() as f64;
    // Moments of a unit-variance t with ν = 10: μ4 = 3(ν−2)/(ν−4) = 4,
    // μ6 = 15(ν−2)²/((ν−4)(ν−6)) = 40, μ8 = 105(ν−2)³/((ν−4)(ν−6)(ν−8)) = 1120.
    let (mu4, mu6, mu8) = (4.0, 40.0, 1120.0);
    within(mean(x), 0.0, 1.0 / n.sqrt(), 5.0, "shock mean");
    within(var(x), 1.0, ((mu4 - 1.0) / n).sqrt(), 5.0, "shock variance");
    // Excess kurtosis m4/m2² − 3 = 6/(ν−4) = 1. Its standard error by the delta method: the
    // gradient of m4/m2² at (μ2, μ4) = (1, μ4) is (−2μ4, 1), Var(m2) = (μ4 − 1)/n,
    // Var(m4) = (μ8 − μ4²)/n, Cov = (μ6 − μ4)/n, so
    // n·Var = 4μ4²(μ4 − 1) − 4μ4(μ6 − μ4) + (μ8 − μ4²) = 720 (finite because ν > 8).
    let nvar = 4.0 * mu4 * mu4 * (mu4 - 1.0) - 4.0 * mu4 * (mu6 - mu4) + (mu8 - mu4 * mu4);
    let m = mean(x);
    let m2 = x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n;
    let m4 = x.iter().map(|v| (v - m).powi(4)).sum::<f64>() / n;
    let kurtosis = m4 / (m2 * m2) - 3.0;
    within(kurtosis, 6.0 / (df - 4.0), (nvar / n).sqrt(), 5.0, "shock excess kurtosis");
    // A normal shock would have excess kurtosis 0: the test can tell the two apart.
    assert!(kurtosis > 0.5, "the shock is not heavy-tailed: {kurtosis}");
    // The three shocks share one chi-square scale, so their correlation is the input's; the
    // sample correlation of a t with ν = 10 has a standard error (1 + 2/(ν−4))^½ ≈ 1.15 times
    // the normal one.
    assert_correlations(&shocks, (1.0 + 2.0 / (df - 4.0)).sqrt());
    // Inflation keeps its normal shock, independent of the assets.
    assert_inflation(&inflation, &shocks);
    let infl_kurtosis = {
        let m = mean(&inflation);
        let m2 = inflation.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n;
        inflation.iter().map(|v| (v - m).powi(4)).sum::<f64>() / n / (m2 * m2) - 3.0
    };
    // Normal data: standard error of the excess kurtosis √(24/n); 5 of them.
    within(infl_kurtosis, 0.0, (24.0 / n).sqrt(), 5.0, "inflation excess kurtosis");
}

/// A planner reading a student_t result is told not to read its terminal mean, whose
/// expectation is infinite (docs/model.md §3); the other models carry no such note.
#[test]
fn a_student_t_result_says_its_terminal_mean_is_no_estimate() {
    let says = |model: serde_json::Value| {
        let mut r = parametric(model);
        r.n_scenarios = 200;
        simulate(&r, 1).notes.iter().any(|n| n.contains("terminal.mean is not an estimate"))
    };
    assert!(says(json!({"kind": "student_t", "df": 5})));
    assert!(!says(json!({"kind": "lognormal"})));
}

/// Each table year's monthly figures `(1 + x)^(1/12)` for stocks, bonds, cash, inflation,
/// from an independent reading of the CSV.
fn monthly_table() -> Vec<[f64; 4]> {
    table()
        .iter()
        .map(|r| [r.stocks, r.bonds, r.cash, r.inflation].map(|x| (1.0 + x).powf(1.0 / 12.0)))
        .collect()
}

/// The one table year whose monthly figures are exactly `m`.
fn table_index(monthly: &[[f64; 4]], m: [f64; 4]) -> usize {
    let hits: Vec<usize> = (0..monthly.len())
        .filter(|&k| (0..4).all(|i| (m[i] - monthly[k][i]).abs() < 1e-12))
        .collect();
    assert_eq!(hits.len(), 1, "not exactly one table year matches {m:?}: {hits:?}");
    hits[0]
}

#[test]
fn bootstrap_replays_whole_table_years_in_circular_blocks_drawn_uniformly() {
    let block = 4;
    let years = 12;
    let len = 4_000;
    let r = request(json!({
        "starting_portfolio": 1.0, "monthly_spending": 0.0, "years": years, "n_scenarios": len,
        "allocation": {"stocks": 0.5, "bonds": 0.3, "cash": 0.2},
        "return_model": {"kind": "bootstrap", "block_years": block}
    }));
    let plan = Plan::new(&r, 5);
    let monthly = monthly_table();
    let n_table = monthly.len();
    // year_of[j][y]: the table year scenario j replays in year y.
    let mut year_of = vec![vec![usize::MAX; years]; len];
    let mut first_month: Vec<[f64; 4]> = vec![[0.0; 4]; len];
    for_each_month_of_returns(&plan, 0, len, 12 * years, |t, g, i| {
        for j in 0..len {
            let m = [g[0][j], g[1][j], g[2][j], i[j]];
            if t % 12 == 0 {
                year_of[j][t / 12] = table_index(&monthly, m);
                first_month[j] = m;
            } else {
                // Within a year every month is the same table year: gross = annual^(1/12).
                assert_eq!(m, first_month[j], "scenario {j} month {t} left its table year");
            }
        }
    });
    let mut starts = Vec::new();
    for row in &year_of {
        for y in 0..years {
            if y % block == 0 {
                starts.push(row[y]);
            } else {
                // The next calendar year of the table, wrapping from 2024 to 1928.
                assert_eq!(row[y], (row[y - 1] + 1) % n_table, "a block is not consecutive years");
            }
        }
    }
    // Block starts are uniform on the 97 table years: mean 48, variance (97² − 1)/12;
    // 5 standard errors.
    let as_f64: Vec<f64> = starts.iter().map(|&k| k as f64).collect();
    let n = as_f64.len() as f64;
    let (m, v) = ((n_table - 1) as f64 / 2.0, ((n_table * n_table - 1) as f64) / 12.0);
    within(mean(&as_f64), m, (v / n).sqrt(), 5.0, "mean block start");
    within(var(&as_f64), v, var_stderr(&as_f64), 5.0, "variance of block starts");
    // So a block's first month, an independent draw, has the moments of the table's monthly
    // stock gross returns (1 + r)^(1/12) over its 97 years: 5 standard errors.
    let first: Vec<f64> = starts.iter().map(|&k| monthly[k][0]).collect();
    let pop: Vec<f64> = monthly.iter().map(|m| m[0]).collect();
    let (pm, pv) = (mean(&pop), var(&pop) * (n_table - 1) as f64 / n_table as f64);
    within(mean(&first), pm, (pv / n).sqrt(), 5.0, "monthly stock gross mean");
    within(var(&first), pv, var_stderr(&first), 5.0, "monthly stock gross variance");
}

#[test]
fn historical_scenario_j_replays_the_table_from_its_year_j() {
    let years = 30;
    let r = request(json!({
        "starting_portfolio": 1.0, "monthly_spending": 0.0, "years": years,
        "allocation": {"stocks": 0.5, "bonds": 0.3, "cash": 0.2},
        "return_model": {"kind": "historical"}
    }));
    let windows = r.effective_scenarios() as usize;
    let plan = Plan::new(&r, 6);
    let t = table();
    for_each_month_of_returns(&plan, 0, windows, 12 * years, |month, g, i| {
        for j in 0..windows {
            let row = t[j + month / 12];
            let want = [row.stocks, row.bonds, row.cash, row.inflation]
                .map(|x| (1.0 + x).powf(1.0 / 12.0));
            let got = [g[0][j], g[1][j], g[2][j], i[j]];
            for k in 0..4 {
                // Both are powf of the same number; allow an ulp in case of a different route.
                assert!((got[k] - want[k]).abs() < 1e-15, "window {j} month {month} series {k}");
            }
        }
    });
}
