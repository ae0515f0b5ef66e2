//! An independent, scalar implementation of docs/model.md, and the tests that hold the engine
//! to it.
//!
//! It shares no code with the engine: it parses the table from the CSV by column name, seeds
//! each scenario's `rand_pcg::Pcg32` by the documented rule (its own SplitMix64), draws four
//! 32-bit numbers a month in the documented order (turned into normals by the engine's
//! Box–Muller, which rng.rs checks against libm on its own), computes returns with `f64::exp`/`powf`, factors the correlation with its
//! own Cholesky, samples the Student-t scale with `rand_distr::ChiSquared` and bootstrap block
//! starts with `rand`'s `random_range`, and steps one scenario at a time through holdings, the
//! way the model reads. Because it consumes the same random streams, its scenarios are the
//! engine's scenarios, and the two must agree to rounding (the engine's branch-free `exp` is
//! within a few ulp of libm), not merely in distribution.

use rand::{Rng, RngExt};
use rand_distr::{ChiSquared, Distribution};
use rand_pcg::Pcg32;
use serde_json::json;

use super::{PS, assert_close, at, numpy_percentile, request, simulate};
use crate::request::{Rebalancing, ReturnModel, SimulationRequest, Withdrawal};
use crate::result::SimulationResult;

/// One row of the embedded CSV, as fractions: `[stocks, bonds, cash, inflation]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct TableYear {
    pub(crate) year: u16,
    pub(crate) stocks: f64,
    pub(crate) bonds: f64,
    pub(crate) cash: f64,
    pub(crate) inflation: f64,
}

/// The 1928–2024 table, read from the data file by its header names.
pub(super) fn table() -> Vec<TableYear> {
    let csv = include_str!("../../data/us_annual_returns_1928_2024.csv");
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().unwrap().trim().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (year, stock, tbond, tbill, cpi) =
        (col("year"), col("stock"), col("tbond"), col("tbill"), col("cpi"));
    lines
        .map(|l| {
            let cells: Vec<&str> = l.trim().split(',').collect();
            let pct = |i: usize| cells[i].parse::<f64>().unwrap() / 100.0;
            TableYear {
                year: cells[year].parse().unwrap(),
                stocks: pct(stock),
                bonds: pct(tbond),
                cash: pct(tbill),
                inflation: pct(cpi),
            }
        })
        .collect()
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Scenario `j` of `seed`: `Pcg32::new(splitmix64(splitmix64(s) ^ splitmix64(2j)),
/// splitmix64(splitmix64(s) ^ splitmix64(2j + 1)))` (docs/model.md, reproducibility).
pub(super) fn scenario_rng(seed: u64, j: u64) -> Pcg32 {
    let base = splitmix64(seed);
    Pcg32::new(splitmix64(base ^ splitmix64(2 * j)), splitmix64(base ^ splitmix64(2 * j + 1)))
}

/// Four standard normals from four 32-bit draws a..d: (a, b) give z0, z1 and (c, d) give z2,
/// z3. The transform itself is the engine's single-precision Box–Muller (`rng::box_muller`),
/// checked on its own against libm in `rng.rs`: a float-precision transform cannot agree with
/// an independent one to the 1e-9 this file holds the engine to, everything else here can.
pub(super) fn normals(rng: &mut Pcg32) -> [f64; 4] {
    let w: [u32; 4] = std::array::from_fn(|_| rng.next_u32());
    let (z0, z1) = crate::rng::box_muller(w[0], w[1]);
    let (z2, z3) = crate::rng::box_muller(w[2], w[3]);
    [z0, z1, z2, z3]
}

/// Textbook Cholesky of a positive-definite 3×3 matrix (the tests use definite ones).
pub(super) fn cholesky(m: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut l = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                l[i][i] = (m[i][i] - s).sqrt();
            } else {
                l[i][j] = (m[i][j] - s) / l[j][j];
            }
        }
    }
    l
}

/// Every scenario's recorded values: `real[y][j]`, `nominal[y][j]` for year ends 0..=years,
/// `spending[y − 1][j]` for years 1..=years, and the month each scenario was depleted.
pub(super) struct Outcome {
    pub(crate) real: Vec<Vec<f64>>,
    pub(crate) nominal: Vec<Vec<f64>>,
    pub(crate) spending: Vec<Vec<f64>>,
    pub(crate) depleted: Vec<Option<usize>>,
}

/// Simulates `request` with `seed` one scenario at a time, as docs/model.md states the model.
pub(super) fn simulate_reference(request: &SimulationRequest, seed: u64) -> Outcome {
    let years = request.years as usize;
    let table = table();
    let n = match request.return_model {
        ReturnModel::Historical => table.len() + 1 - years,
        _ => request.n_scenarios as usize,
    };
    let a = &request.assumptions;
    let assets = [a.stocks, a.bonds, a.cash];
    let l = cholesky(&a.correlation);
    let weights = [request.allocation.stocks, request.allocation.bonds, request.allocation.cash];
    let w0 = request.starting_portfolio;
    let s = request.monthly_spending;
    let fee = 1.0 - request.annual_fee / 12.0;
    let infl_mean = (1.0 + a.inflation.mean).powf(1.0 / 12.0);
    let infl_vol = a.inflation.volatility / 12f64.sqrt();

    let mut out = Outcome {
        real: vec![vec![0.0; n]; years + 1],
        nominal: vec![vec![0.0; n]; years + 1],
        spending: vec![vec![0.0; n]; years],
        depleted: vec![None; n],
    };
    for j in 0..n {
        let mut rng = scenario_rng(seed, j as u64);
        let mut h = weights.map(|w| w * w0);
        let mut cpi = 1.0;
        let mut alive = true;
        // Strategy state: nominal monthly spending set for the year; Guyton–Klinger's annual
        // withdrawal, price index at the start of the year and the year's portfolio return.
        let mut planned = s;
        let mut annual = 12.0 * s;
        let mut cpi_at_year_start = 1.0;
        let mut year_return = 1.0;
        let mut block_start = 0;
        out.real[0][j] = w0;
        out.nominal[0][j] = w0;
        for y in 0..years {
            let w: f64 = h.iter().sum();
            match request.withdrawal {
                Withdrawal::ConstantReal => {}
                Withdrawal::PercentOfPortfolio { rate } => planned = rate * w / 12.0,
                Withdrawal::FloorCeiling { rate, monthly_floor, monthly_ceiling } => {
                    planned = (rate * w / 12.0).clamp(monthly_floor * cpi, monthly_ceiling * cpi);
                }
                Withdrawal::Guardrails { upper_guardrail, lower_guardrail, cut, raise } => {
                    let initial_rate = 12.0 * s / w0;
                    if y > 0 && alive && w > 0.0 {
                        // No inflation raise after a losing year while above the initial rate.
                        if !(year_return < 1.0 && annual / w > initial_rate) {
                            annual *= cpi / cpi_at_year_start;
                        }
                        if annual / w > initial_rate * (1.0 + upper_guardrail) {
                            annual *= 1.0 - cut;
                        } else if annual / w < initial_rate * (1.0 - lower_guardrail) {
                            annual *= 1.0 + raise;
                        }
                        planned = annual / 12.0;
                    }
                    year_return = 1.0;
                    cpi_at_year_start = cpi;
                }
            }
            let table_year = match request.return_model {
                ReturnModel::Bootstrap { block_years } => {
                    let b = block_years as usize;
                    if y % b == 0 {
                        block_start = rng.random_range(0..table.len());
                    }
                    Some(table[(block_start + y % b) % table.len()])
                }
                ReturnModel::Historical => Some(table[j + y]),
                _ => None,
            };
            let mut spent = 0.0;
            for m in 0..12 {
                let t = 12 * y + m;
                let (gross, inflation) = match table_year {
                    Some(r) => (
                        [r.stocks, r.bonds, r.cash].map(|x| (1.0 + x).powf(1.0 / 12.0)),
                        (1.0 + r.inflation).powf(1.0 / 12.0),
                    ),
                    None => {
                        let mut z = normals(&mut rng);
                        if let ReturnModel::StudentT { df } = request.return_model {
                            let df = df.get();
                            let v: f64 = ChiSquared::new(df).unwrap().sample(&mut rng);
                            let scale = ((df - 2.0) / v).sqrt();
                            for zk in &mut z[..3] {
                                *zk *= scale;
                            }
                        }
                        let gross = std::array::from_fn(|i| {
                            let (mu, sigma) = (assets[i].mean_return, assets[i].volatility);
                            let shock = sigma / 12f64.sqrt()
                                * (l[i][0] * z[0] + l[i][1] * z[1] + l[i][2] * z[2]);
                            match request.return_model {
                                ReturnModel::Normal => {
                                    ((1.0 + mu).powf(1.0 / 12.0) + shock).max(0.0)
                                }
                                _ => ((1.0 + mu).ln() / 12.0 - sigma * sigma / 24.0 + shock).exp(),
                            }
                        });
                        (gross, infl_mean + infl_vol * z[3])
                    }
                };
                let w: f64 = h.iter().sum();
                let need = match request.withdrawal {
                    Withdrawal::ConstantReal => s * cpi,
                    Withdrawal::PercentOfPortfolio { .. } => planned.min(w),
                    _ => planned,
                };
                let (mut net, mut income) = (need, 0.0);
                let year1 = (y + 1) as u32;
                for st in &request.income {
                    if st.start_year <= year1 && year1 <= st.end_year {
                        let nominal = if st.inflation_adjusted {
                            st.monthly_amount * cpi
                        } else {
                            st.monthly_amount
                        };
                        net -= nominal;
                        income += nominal / cpi;
                    }
                }
                if m == 0 {
                    for (o, sign) in request
                        .expenses
                        .iter()
                        .map(|o| (o, 1.0))
                        .chain(request.inflows.iter().map(|o| (o, -1.0)))
                    {
                        if o.year == year1 {
                            net +=
                                sign * if o.inflation_adjusted { o.amount * cpi } else { o.amount };
                        }
                    }
                }
                let ok = alive && net <= w;
                if alive && !ok {
                    out.depleted[j] = Some(t);
                }
                alive = ok;
                let left = if ok { w - net } else { 0.0 };
                spent += if ok { need / cpi } else { income };
                let rebalance = match request.rebalancing {
                    Rebalancing::Monthly => true,
                    Rebalancing::Annual => m == 0,
                    Rebalancing::None => false,
                };
                h = if rebalance {
                    weights.map(|x| x * left)
                } else if w > 0.0 {
                    // Each holding keeps its share of what is left.
                    h.map(|x| x / w * left)
                } else {
                    // An empty portfolio has no mix: money paid in goes at the allocation.
                    weights.map(|x| x * left)
                };
                for i in 0..3 {
                    h[i] *= gross[i] * fee;
                }
                let grown: f64 = h.iter().sum();
                if left > 0.0 {
                    year_return *= grown / left;
                }
                cpi *= inflation;
            }
            let w: f64 = h.iter().sum();
            out.real[y + 1][j] = w / cpi;
            out.nominal[y + 1][j] = w;
            out.spending[y][j] = spent;
        }
    }
    out
}

/// Holds every statistic of `result` to the reference outcome. Values are compared to 1e-9
/// relative (or 1e-9 of the starting portfolio near 0): the two implementations differ only
/// by rounding (a few ulp per operation, ~1e-13 after hundreds of months), while any modelling
/// difference (an operation out of order, a wrong drift, a fee charged twice) moves them by
/// far more. Counts (success, depletion by year) must match exactly: a scenario would have
/// to sit within ~1e-13 of its depletion threshold to flip.
#[track_caller]
pub(super) fn assert_matches_reference(
    request: &SimulationRequest,
    seed: u64,
    result: &SimulationResult,
) {
    let reference = simulate_reference(request, seed);
    let n = reference.depleted.len();
    let years = request.years as usize;
    let scale = request.starting_portfolio;
    assert_eq!(result.n_scenarios as usize, n, "scenario count");
    for y in 0..=years {
        let real = at(&result.percentiles, y);
        let nominal = at(&result.nominal_percentiles, y);
        for (k, &p) in PS.iter().enumerate() {
            let want = numpy_percentile(&reference.real[y], p);
            assert_close(real[k], want, 1e-9, scale, &format!("real p{p} at year {y}"));
            let want = numpy_percentile(&reference.nominal[y], p);
            assert_close(nominal[k], want, 1e-9, scale, &format!("nominal p{p} at year {y}"));
        }
    }
    let spending_scale = request.monthly_spending.max(1.0);
    for y in 1..=years {
        let spent = at(&result.spending_percentiles.percentiles, y - 1);
        for (k, &p) in PS.iter().enumerate() {
            let want = numpy_percentile(&reference.spending[y - 1], p);
            assert_close(
                spent[k],
                want,
                1e-9,
                spending_scale,
                &format!("spending p{p} in year {y}"),
            );
        }
    }
    let survived = reference.depleted.iter().filter(|d| d.is_none()).count();
    assert_eq!(result.success_probability, survived as f64 / n as f64, "success probability");
    for y in 0..=years {
        let by = reference.depleted.iter().filter(|d| d.is_some_and(|t| t / 12 < y)).count();
        assert_eq!(
            result.depletion_probability_by_year[y],
            by as f64 / n as f64,
            "depletion probability by year {y}"
        );
    }
    let failed: Vec<f64> =
        reference.depleted.iter().filter_map(|d| d.map(|t| (t / 12 + 1) as f64)).collect();
    let median = (!failed.is_empty()).then(|| numpy_percentile(&failed, 0.5));
    assert_eq!(result.median_depletion_year, median, "median depletion year");
    let mean = reference.real[years].iter().sum::<f64>() / n as f64;
    assert_close(result.terminal.mean, mean, 1e-9, scale, "terminal mean");
}

/// A base request with every feature switched on by `overrides`.
fn case(overrides: serde_json::Value) -> SimulationRequest {
    let mut body = json!({
        "starting_portfolio": 1_000_000.0,
        "monthly_spending": 3_500.0,
        "years": 25,
        "n_scenarios": 1_500,
        "allocation": {"stocks": 0.5, "bonds": 0.35, "cash": 0.15},
        "assumptions": {
            "stocks": {"mean_return": 0.08, "volatility": 0.18},
            "bonds": {"mean_return": 0.04, "volatility": 0.07},
            "cash": {"mean_return": 0.025, "volatility": 0.02},
            "correlation": [[1.0, 0.2, -0.1], [0.2, 1.0, 0.3], [-0.1, 0.3, 1.0]],
            "inflation": {"mean": 0.028, "volatility": 0.015}
        },
        "annual_fee": 0.004
    });
    for (k, v) in overrides.as_object().unwrap() {
        body[k] = v.clone();
    }
    request(body)
}

fn check(overrides: serde_json::Value) {
    let req = case(overrides);
    let seed = 0x5eed_0000 + req.years as u64;
    let result = simulate(&req, seed);
    assert_matches_reference(&req, seed, &result);
}

#[test]
fn lognormal_constant_real_spending_matches_the_reference_model() {
    check(json!({}));
}

#[test]
fn lognormal_with_a_single_asset_and_cash_flows_matches_the_reference_model() {
    check(json!({
        "allocation": {"stocks": 1.0},
        "income": [
            {"monthly_amount": 1200.0, "start_year": 6},
            {"monthly_amount": 300.0, "start_year": 2, "end_year": 9, "inflation_adjusted": false}
        ],
        "expenses": [{"year": 3, "amount": 80_000.0}, {"year": 10, "amount": 50_000.0, "inflation_adjusted": false}],
        "inflows": [{"year": 12, "amount": 150_000.0}]
    }));
}

#[test]
fn normal_model_with_annual_rebalancing_matches_the_reference_model() {
    check(json!({"return_model": {"kind": "normal"}, "rebalancing": "annual"}));
}

#[test]
fn normal_model_whose_gross_return_can_hit_zero_matches_the_reference_model() {
    // A volatility of 100 % a year puts 1 + r below 0 in a few months out of ten thousand,
    // which the model floors at a total loss.
    check(json!({
        "return_model": {"kind": "normal"},
        "allocation": {"stocks": 1.0},
        "assumptions": {"stocks": {"mean_return": 0.1, "volatility": 1.0}},
        "withdrawal": {"strategy": "percent_of_portfolio", "rate": 0.05}
    }));
}

#[test]
fn student_t_model_with_guardrails_matches_the_reference_model() {
    check(json!({
        "return_model": {"kind": "student_t", "df": 4.5},
        "monthly_spending": 4_500.0,
        "withdrawal": {"strategy": "guardrails", "upper_guardrail": 0.2, "lower_guardrail": 0.2, "cut": 0.1, "raise": 0.1}
    }));
}

#[test]
fn guardrails_without_rebalancing_and_with_income_match_the_reference_model() {
    check(json!({
        "monthly_spending": 5_000.0,
        "rebalancing": "none",
        "withdrawal": {"strategy": "guardrails", "upper_guardrail": 0.15, "lower_guardrail": 0.25, "cut": 0.12, "raise": 0.08},
        "income": [{"monthly_amount": 900.0, "start_year": 4, "end_year": 20}]
    }));
}

#[test]
fn percent_of_portfolio_without_rebalancing_matches_the_reference_model() {
    check(json!({
        "rebalancing": "none",
        "withdrawal": {"strategy": "percent_of_portfolio", "rate": 0.045},
        "inflows": [{"year": 2, "amount": 40_000.0, "inflation_adjusted": false}]
    }));
}

#[test]
fn floor_and_ceiling_spending_matches_the_reference_model() {
    check(json!({
        "withdrawal": {"strategy": "floor_ceiling", "rate": 0.05, "monthly_floor": 3_000.0, "monthly_ceiling": 5_000.0},
        "expenses": [{"year": 5, "amount": 100_000.0}]
    }));
}

#[test]
fn bootstrap_in_blocks_with_annual_rebalancing_matches_the_reference_model() {
    check(json!({
        "return_model": {"kind": "bootstrap", "block_years": 7},
        "rebalancing": "annual",
        "monthly_spending": 4_200.0
    }));
}

#[test]
fn bootstrap_of_single_years_with_guardrails_matches_the_reference_model() {
    check(json!({
        "return_model": {"kind": "bootstrap"},
        "monthly_spending": 4_800.0,
        "withdrawal": {"strategy": "guardrails"}
    }));
}

#[test]
fn historical_windows_without_rebalancing_match_the_reference_model() {
    check(json!({
        "return_model": {"kind": "historical"},
        "years": 30,
        "monthly_spending": 4_400.0,
        "rebalancing": "none",
        "expenses": [{"year": 8, "amount": 60_000.0}]
    }));
}

#[test]
fn historical_windows_with_floor_and_ceiling_match_the_reference_model() {
    check(json!({
        "return_model": {"kind": "historical"},
        "years": 40,
        "withdrawal": {"strategy": "floor_ceiling", "rate": 0.045, "monthly_floor": 3_200.0, "monthly_ceiling": 6_000.0}
    }));
}
