//! Everything the kernel needs, computed once per run from a checked request: monthly drifts
//! and shock loadings, the month-by-month cash-flow schedule, the strategy's constants and the
//! table's monthly returns. The kernel then only does per-scenario arithmetic.

use rand_distr::ChiSquared;

use crate::history;
use crate::request::{Rebalancing, ReturnModel, SimulationRequest, Withdrawal};

/// How monthly returns are produced.
#[derive(Debug, Clone)]
pub(crate) enum ModelPlan {
    /// `x_a = drift_a + Σ_k load[a][k]·z_k`, gross `exp(x_a)`.
    Lognormal { drift: [f64; 3], load: [[f64; 3]; 3] },
    /// Gross `max(0, 1 + mean_a + Σ_k load[a][k]·z_k)`.
    Normal { mean: [f64; 3], load: [[f64; 3]; 3] },
    /// As lognormal, the asset shocks scaled by `√((df − 2)/V)`, `V ~ χ²(df)`.
    StudentT { drift: [f64; 3], load: [[f64; 3]; 3], df: f64, chi_squared: ChiSquared<f64> },
    /// Table years drawn in circular blocks.
    Bootstrap { block_years: usize },
    /// Rolling windows: scenario `j` starts in table year `j`.
    Historical,
}

/// Monthly gross returns and inflation factor of one table year.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TableMonth {
    pub(crate) gross: [f64; 3],
    pub(crate) inflation: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) months: usize,
    pub(crate) years: usize,
    pub(crate) seed: u64,
    pub(crate) starting_portfolio: f64,
    pub(crate) weights: [f64; 3],
    /// `1 − annual_fee/12`, applied after each month's growth.
    pub(crate) fee_factor: f64,
    pub(crate) model: ModelPlan,
    /// `(1+π)^(1/12) − 1` and `σ_π/√12` of the parametric inflation model.
    pub(crate) inflation_drift: f64,
    pub(crate) inflation_vol: f64,
    /// Monthly figures for each table year (bootstrap and historical).
    pub(crate) table: Vec<TableMonth>,
    pub(crate) withdrawal: Withdrawal,
    pub(crate) rebalancing: Rebalancing,
    pub(crate) flows: Flows,
    /// Lets the kernel use its fused path for the default model; tests turn it off to check the
    /// fused path against the general one.
    pub(crate) allow_fused: bool,
}

/// The cash-flow schedule by month: amounts the portfolio must pay (expenses) minus those it
/// receives (income, inflows), split into the part indexed to inflation (in today's money) and
/// the fixed nominal part.
#[derive(Debug, Clone)]
pub(crate) struct Flows {
    pub(crate) any: bool,
    pub(crate) net_real: Vec<f64>,
    pub(crate) net_nominal: Vec<f64>,
    /// Income alone, which is what a retiree lives on once the portfolio is gone.
    pub(crate) income_real: Vec<f64>,
    pub(crate) income_nominal: Vec<f64>,
}

impl Plan {
    pub(crate) fn new(request: &SimulationRequest, seed: u64) -> Self {
        let years = request.years as usize;
        let months = years * 12;
        let a = &request.assumptions;
        let assets = a.assets();
        let l = a.correlation.factor();
        let mut load = [[0.0; 3]; 3];
        for (i, row) in load.iter_mut().enumerate() {
            let monthly_vol = assets[i].volatility / 12f64.sqrt();
            for (k, cell) in row.iter_mut().enumerate() {
                *cell = monthly_vol * l[i][k];
            }
        }
        let drift =
            assets.map(|x| (1.0 + x.mean_return).ln() / 12.0 - x.volatility * x.volatility / 24.0);
        let model = match request.return_model {
            ReturnModel::Lognormal => ModelPlan::Lognormal { drift, load },
            ReturnModel::Normal => ModelPlan::Normal {
                mean: assets.map(|x| (1.0 + x.mean_return).powf(1.0 / 12.0) - 1.0),
                load,
            },
            ReturnModel::StudentT { df } => {
                ModelPlan::StudentT { drift, load, df: df.get(), chi_squared: *df.chi_squared() }
            }
            ReturnModel::Bootstrap { block_years } => {
                ModelPlan::Bootstrap { block_years: block_years as usize }
            }
            ReturnModel::Historical => ModelPlan::Historical,
        };
        let table = history::table()
            .iter()
            .map(|y| TableMonth {
                gross: [y.stocks, y.bonds, y.cash].map(|r| (1.0 + r).powf(1.0 / 12.0)),
                inflation: (1.0 + y.inflation).powf(1.0 / 12.0),
            })
            .collect();
        Self {
            months,
            years,
            seed,
            starting_portfolio: request.starting_portfolio,
            weights: request.allocation.weights(),
            fee_factor: 1.0 - request.annual_fee / 12.0,
            model,
            inflation_drift: (1.0 + a.inflation.mean).powf(1.0 / 12.0) - 1.0,
            inflation_vol: a.inflation.volatility / 12f64.sqrt(),
            table,
            withdrawal: request.withdrawal,
            rebalancing: request.rebalancing,
            flows: Flows::new(request, months),
            allow_fused: true,
        }
    }
}

impl Flows {
    fn new(request: &SimulationRequest, months: usize) -> Self {
        let mut f = Self {
            any: false,
            net_real: vec![0.0; months],
            net_nominal: vec![0.0; months],
            income_real: vec![0.0; months],
            income_nominal: vec![0.0; months],
        };
        for s in &request.income {
            let first = (s.start_year as usize - 1) * 12;
            let last = (s.end_year as usize * 12).min(months);
            for t in first..last {
                let (net, income) = if s.inflation_adjusted {
                    (&mut f.net_real, &mut f.income_real)
                } else {
                    (&mut f.net_nominal, &mut f.income_nominal)
                };
                net[t] -= s.monthly_amount;
                income[t] += s.monthly_amount;
            }
            f.any = true;
        }
        let one_offs = request
            .expenses
            .iter()
            .map(|o| (o, 1.0))
            .chain(request.inflows.iter().map(|o| (o, -1.0)));
        for (o, sign) in one_offs {
            let t = (o.year as usize - 1) * 12;
            let net = if o.inflation_adjusted { &mut f.net_real } else { &mut f.net_nominal };
            net[t] += sign * o.amount;
            f.any = true;
        }
        f
    }
}
