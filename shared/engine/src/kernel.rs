//! The Monte Carlo kernel: a batch of scenarios stepped month by month, every per-scenario
//! quantity held in its own array (structure of arrays) so that each month is a handful of
//! branch-free loops the compiler vectorises. Decisions that are the same for the whole run
//! (strategy, cash flows, rebalancing) are hoisted out of those loops as const generics.
//!
//! Order of operations in month t (docs/model.md): spending need and cash flows are settled
//! first (a need larger than the portfolio depletes the scenario for good), then the portfolio
//! grows by its gross return, then the fee is charged, then the price index moves.
#![expect(
    clippy::needless_range_loop,
    reason = "structure of arrays: one counter indexes several per-scenario arrays in step, the \
              form the compiler vectorises and the clearest to read"
)]

use std::ops::Range;

use multiversion::multiversion;
use rand::RngExt;
use rand_distr::Distribution;

use crate::request::{Rebalancing, Withdrawal};

use super::plan::{ModelPlan, Plan};
use super::rng::{CHUNK, Lanes, normals_chunk};

/// Depletion month of a scenario that never ran out. A scenario is alive exactly while its
/// depletion month is `NEVER`: the kernels keep no separate flag, which vectorised took a
/// dozen instructions a step to widen from bytes and pack back.
pub(crate) const NEVER: u32 = u32::MAX;

/// Wealth is capped here so every result stays a finite JSON number. Only fat-tailed draws at
/// the edge of the accepted parameters (Student-t with df near 2 and volatility near 1) ever
/// come close; no realistic portfolio does.
pub(crate) const MAX_WEALTH: f64 = 1e300;

/// What a pass keeps of each scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quantity {
    /// Wealth in today's money at a year end (year 0 is the start).
    Real,
    /// Nominal wealth at a year end.
    Nominal,
    /// Real spending during a year (years 1..=horizon).
    Spending,
}

/// Where each (quantity, year) recorded by a pass goes in the batch's output rows.
#[derive(Debug, Clone)]
pub(crate) struct Recording {
    real: Vec<Option<usize>>,
    nominal: Vec<Option<usize>>,
    spending: Vec<Option<usize>>,
    slots: usize,
}

impl Recording {
    pub(crate) fn new(years: usize, slots: &[(Quantity, usize)]) -> Self {
        let mut r = Self {
            real: vec![None; years + 1],
            nominal: vec![None; years + 1],
            spending: vec![None; years + 1],
            slots: slots.len(),
        };
        for (i, &(q, y)) in slots.iter().enumerate() {
            let row = match q {
                Quantity::Real => &mut r.real,
                Quantity::Nominal => &mut r.nominal,
                Quantity::Spending => &mut r.spending,
            };
            row[y] = Some(i);
        }
        r
    }

    pub(crate) fn slots(&self) -> usize {
        self.slots
    }
}

/// Simulates scenarios `first..first + depletion.len()`. `values` receives one row per slot of
/// `recording` (`slots × len`, row-major); `depletion` the month each scenario ran out, or
/// [`NEVER`].
pub(crate) fn simulate_batch(
    plan: &Plan,
    monthly_spending: f64,
    first: usize,
    recording: &Recording,
    values: &mut [f64],
    depletion: &mut [u32],
) {
    let len = depletion.len();
    debug_assert_eq!(values.len(), recording.slots * len);
    let mut b = Batch::new(plan, monthly_spending, first, len);
    depletion.fill(NEVER);
    b.record(recording, 0, values);
    let fused = plan.allow_fused
        && matches!(plan.model, ModelPlan::Lognormal { .. })
        && plan.rebalancing == Rebalancing::Monthly
        && matches!(plan.withdrawal, Withdrawal::ConstantReal);
    for t in 0..plan.months {
        if t.is_multiple_of(12) {
            b.start_year(t / 12, depletion);
        }
        if fused {
            b.fused_month(t, depletion);
        } else {
            b.draw_returns(t);
            b.settle_and_grow(t, depletion);
        }
        if t % 12 == 11 {
            b.record(recording, t / 12 + 1, values);
        }
    }
}

/// Test hook: hands `f` the monthly gross returns (`gross[a][j]`) and price-index factors
/// (`inflation[j]` = 1 + i_t) that scenarios `first..first + len` see in months `0..months`,
/// produced by the kernel's own [`Batch::start_year`] and [`Batch::draw_returns`] (the general
/// path; the fused lognormal path is checked against it on whole runs). The lognormal and
/// Student-t paths skip assets without weight, which then report a gross return of 1.
#[cfg(test)]
pub(crate) fn for_each_month_of_returns(
    plan: &Plan,
    first: usize,
    len: usize,
    months: usize,
    mut f: impl FnMut(usize, &[Vec<f64>; 3], &[f64]),
) {
    assert!(months <= plan.months, "the plan covers {} months", plan.months);
    let mut b = Batch::new(plan, 0.0, first, len);
    let depletion = vec![NEVER; len];
    for t in 0..months {
        if t.is_multiple_of(12) {
            b.start_year(t / 12, &depletion);
        }
        b.draw_returns(t);
        f(t, &b.gross, &b.inflation);
    }
}

struct Batch<'p> {
    plan: &'p Plan,
    spending: f64,
    first: usize,
    lanes: Lanes,
    /// Wealth (monthly rebalancing) or the sum of `holdings` (annual, none).
    wealth: Vec<f64>,
    holdings: [Vec<f64>; 3],
    cpi: Vec<f64>,
    spent: Vec<f64>,
    /// Nominal monthly spending set at the start of the year (all strategies but
    /// `constant_real`, which indexes monthly).
    planned: Vec<f64>,
    /// Guyton–Klinger state: nominal annual withdrawal, price index at the start of the year,
    /// and the portfolio's gross return so far this year.
    annual: Vec<f64>,
    cpi_at_year_start: Vec<f64>,
    year_growth: Vec<f64>,
    /// Bootstrap: table year each scenario is in this year.
    table_year: Vec<usize>,
    block_start: Vec<usize>,
    z: [Vec<f64>; 4],
    gross: [Vec<f64>; 3],
    inflation: Vec<f64>,
}

impl<'p> Batch<'p> {
    fn new(plan: &'p Plan, spending: f64, first: usize, len: usize) -> Self {
        let v = |x: f64| vec![x; len];
        let w0 = plan.starting_portfolio;
        Self {
            plan,
            spending,
            first,
            lanes: Lanes::new(plan.seed, first as u64, len),
            wealth: v(w0),
            holdings: plan.weights.map(|w| vec![w * w0; len]),
            cpi: v(1.0),
            spent: v(0.0),
            planned: v(spending),
            annual: v(12.0 * spending),
            cpi_at_year_start: v(1.0),
            year_growth: v(1.0),
            table_year: vec![0; len],
            block_start: vec![0; len],
            z: [v(0.0), v(0.0), v(0.0), v(0.0)],
            gross: [v(1.0), v(1.0), v(1.0)],
            inflation: v(1.0),
        }
    }

    fn len(&self) -> usize {
        self.wealth.len()
    }

    /// Yearly decisions: the strategy's spending for the year, and the table year for the
    /// bootstrap and historical models.
    fn start_year(&mut self, year: usize, depletion: &[u32]) {
        self.set_year_spending(year, depletion);
        match self.plan.model {
            ModelPlan::Bootstrap { block_years } => {
                let n_table = self.plan.table.len();
                if year.is_multiple_of(block_years) {
                    for j in 0..self.len() {
                        self.block_start[j] = self.lanes.lane(j).random_range(0..n_table);
                    }
                }
                for j in 0..self.len() {
                    self.table_year[j] = (self.block_start[j] + year % block_years) % n_table;
                }
                self.fill_from_table();
            }
            ModelPlan::Historical => {
                for j in 0..self.len() {
                    self.table_year[j] = self.first + j + year;
                }
                self.fill_from_table();
            }
            _ => {}
        }
    }

    fn fill_from_table(&mut self) {
        for j in 0..self.len() {
            let m = &self.plan.table[self.table_year[j]];
            for a in 0..3 {
                self.gross[a][j] = m.gross[a];
            }
            self.inflation[j] = m.inflation;
        }
    }

    fn set_year_spending(&mut self, year: usize, depletion: &[u32]) {
        let n = self.len();
        match self.plan.withdrawal {
            Withdrawal::ConstantReal => {}
            Withdrawal::PercentOfPortfolio { rate } => {
                for j in 0..n {
                    self.planned[j] = rate * self.wealth[j] / 12.0;
                }
            }
            Withdrawal::FloorCeiling { rate, monthly_floor, monthly_ceiling } => {
                for j in 0..n {
                    let i = self.cpi[j];
                    self.planned[j] = (rate * self.wealth[j] / 12.0)
                        .max(monthly_floor * i)
                        .min(monthly_ceiling * i);
                }
            }
            Withdrawal::Guardrails { upper_guardrail, lower_guardrail, cut, raise } => {
                let initial_rate = 12.0 * self.spending / self.plan.starting_portfolio;
                for j in 0..n {
                    let w = self.wealth[j];
                    if year == 0 || depletion[j] != NEVER || w <= 0.0 {
                        self.year_growth[j] = 1.0;
                        self.cpi_at_year_start[j] = self.cpi[j];
                        continue;
                    }
                    let mut a = self.annual[j];
                    let inflation = self.cpi[j] / self.cpi_at_year_start[j];
                    // Withdrawal rule: no inflation raise after a losing year while the current
                    // rate is above the initial one.
                    let skip_raise = self.year_growth[j] < 1.0 && a / w > initial_rate;
                    if !skip_raise {
                        a *= inflation;
                    }
                    let rate = a / w;
                    if rate > initial_rate * (1.0 + upper_guardrail) {
                        a *= 1.0 - cut; // capital-preservation rule
                    } else if rate < initial_rate * (1.0 - lower_guardrail) {
                        a *= 1.0 + raise; // prosperity rule
                    }
                    self.annual[j] = a;
                    self.planned[j] = a / 12.0;
                    self.year_growth[j] = 1.0;
                    self.cpi_at_year_start[j] = self.cpi[j];
                }
            }
        }
    }

    fn draw_returns(&mut self, _month: usize) {
        let plan = self.plan;
        match &plan.model {
            ModelPlan::Lognormal { drift, load } => {
                let [z0, z1, z2, z3] = &mut self.z;
                self.lanes.normals4(z0, z1, z2, z3);
                lognormal(&self.z, drift, load, &plan.weights, &mut self.gross);
            }
            ModelPlan::StudentT { drift, load, df, chi_squared: chi2 } => {
                let [z0, z1, z2, z3] = &mut self.z;
                self.lanes.normals4(z0, z1, z2, z3);
                let k = df - 2.0;
                for j in 0..self.len() {
                    let v: f64 = chi2.sample(&mut self.lanes.lane(j));
                    let scale = (k / v).sqrt();
                    for z in &mut self.z[..3] {
                        z[j] *= scale;
                    }
                }
                lognormal(&self.z, drift, load, &plan.weights, &mut self.gross);
            }
            ModelPlan::Normal { mean, load } => {
                let [z0, z1, z2, z3] = &mut self.z;
                self.lanes.normals4(z0, z1, z2, z3);
                normal(&self.z, mean, load, &mut self.gross);
            }
            ModelPlan::Bootstrap { .. } | ModelPlan::Historical => return,
        }
        inflation(&self.z[3], plan.inflation_drift, plan.inflation_vol, &mut self.inflation);
    }

    fn step(&self, t: usize) -> Step {
        let f = &self.plan.flows;
        Step {
            month: t as u32,
            spending: self.spending,
            weights: self.plan.weights,
            fee_factor: self.plan.fee_factor,
            net_real: if f.any { f.net_real[t] } else { 0.0 },
            net_nominal: if f.any { f.net_nominal[t] } else { 0.0 },
            income_real: if f.any { f.income_real[t] } else { 0.0 },
            income_nominal: if f.any { f.income_nominal[t] } else { 0.0 },
            rebalance: match self.plan.rebalancing {
                Rebalancing::Monthly => true,
                Rebalancing::Annual => t.is_multiple_of(12),
                Rebalancing::None => false,
            },
        }
    }

    fn settle_and_grow(&mut self, t: usize, depletion: &mut [u32]) {
        let step = self.step(t);
        let any_flows = self.plan.flows.any;
        let s = State {
            wealth: &mut self.wealth,
            cpi: &mut self.cpi,
            depletion,
            spent: &mut self.spent,
            planned: &self.planned,
            year_growth: &mut self.year_growth,
            gross: &self.gross,
            inflation: &self.inflation,
        };
        let constant = matches!(self.plan.withdrawal, Withdrawal::ConstantReal);
        let capped = matches!(self.plan.withdrawal, Withdrawal::PercentOfPortfolio { .. });
        let growth = matches!(self.plan.withdrawal, Withdrawal::Guardrails { .. });
        if self.plan.rebalancing == Rebalancing::Monthly {
            match (constant, capped, any_flows, growth) {
                (true, _, false, _) => rebalanced::<true, false, false, false>(s, &step),
                (true, _, true, _) => rebalanced::<true, false, true, false>(s, &step),
                (false, true, false, _) => rebalanced::<false, true, false, false>(s, &step),
                (false, true, true, _) => rebalanced::<false, true, true, false>(s, &step),
                (false, false, false, false) => rebalanced::<false, false, false, false>(s, &step),
                (false, false, true, false) => rebalanced::<false, false, true, false>(s, &step),
                (false, false, false, true) => rebalanced::<false, false, false, true>(s, &step),
                (false, false, true, true) => rebalanced::<false, false, true, true>(s, &step),
            }
        } else {
            drifting(s, &mut self.holdings, &step, constant, capped);
        }
    }

    fn fused_month(&mut self, t: usize, depletion: &mut [u32]) {
        let ModelPlan::Lognormal { drift, load } = &self.plan.model else {
            unreachable!("the fused kernel runs the lognormal model only")
        };
        let step = self.step(t);
        let inflation = (self.plan.inflation_drift, self.plan.inflation_vol);
        let held = self
            .plan
            .weights
            .iter()
            .enumerate()
            .fold(0u8, |m, (a, &w)| if w > 0.0 { m | (1 << a) } else { m });
        let (rng, inc) = self.lanes.raw();
        let s = State {
            wealth: &mut self.wealth,
            cpi: &mut self.cpi,
            depletion,
            spent: &mut self.spent,
            planned: &self.planned,
            year_growth: &mut self.year_growth,
            gross: &self.gross,
            inflation: &self.inflation,
        };
        let a = (rng, inc, s, drift, load, inflation, &step);
        match (held, self.plan.flows.any) {
            (1, false) => fused_lognormal::<1, false>(a.0, a.1, a.2, a.3, a.4, a.5, a.6),
            (2, false) => fused_lognormal::<2, false>(a.0, a.1, a.2, a.3, a.4, a.5, a.6),
            (3, false) => fused_lognormal::<3, false>(a.0, a.1, a.2, a.3, a.4, a.5, a.6),
            (4, false) => fused_lognormal::<4, false>(a.0, a.1, a.2, a.3, a.4, a.5, a.6),
            (5, false) => fused_lognormal::<5, false>(a.0, a.1, a.2, a.3, a.4, a.5, a.6),
            (6, false) => fused_lognormal::<6, false>(a.0, a.1, a.2, a.3, a.4, a.5, a.6),
            (7, false) => fused_lognormal::<7, false>(a.0, a.1, a.2, a.3, a.4, a.5, a.6),
            (1, true) => fused_lognormal::<1, true>(a.0, a.1, a.2, a.3, a.4, a.5, a.6),
            (2, true) => fused_lognormal::<2, true>(a.0, a.1, a.2, a.3, a.4, a.5, a.6),
            (3, true) => fused_lognormal::<3, true>(a.0, a.1, a.2, a.3, a.4, a.5, a.6),
            (4, true) => fused_lognormal::<4, true>(a.0, a.1, a.2, a.3, a.4, a.5, a.6),
            (5, true) => fused_lognormal::<5, true>(a.0, a.1, a.2, a.3, a.4, a.5, a.6),
            (6, true) => fused_lognormal::<6, true>(a.0, a.1, a.2, a.3, a.4, a.5, a.6),
            (7, true) => fused_lognormal::<7, true>(a.0, a.1, a.2, a.3, a.4, a.5, a.6),
            _ => unreachable!("allocation weights sum to 1, so some asset is held"),
        }
    }

    fn record(&mut self, recording: &Recording, year: usize, values: &mut [f64]) {
        let n = self.len();
        if let Some(slot) = recording.real[year] {
            let row = &mut values[slot * n..(slot + 1) * n];
            for j in 0..n {
                row[j] = self.wealth[j] / self.cpi[j];
            }
        }
        if let Some(slot) = recording.nominal[year] {
            values[slot * n..(slot + 1) * n].copy_from_slice(&self.wealth);
        }
        if let Some(slot) = recording.spending[year] {
            values[slot * n..(slot + 1) * n].copy_from_slice(&self.spent);
        }
        self.spent.fill(0.0);
    }
}

/// Gross returns `exp(x_a)`. An asset without weight is never held, so its exponential is
/// skipped (its shock is still drawn: the random streams do not depend on the allocation).
#[multiversion(targets = "simd")]
fn lognormal(
    z: &[Vec<f64>; 4],
    drift: &[f64; 3],
    load: &[[f64; 3]; 3],
    weights: &[f64; 3],
    gross: &mut [Vec<f64>; 3],
) {
    let n = z[0].len();
    let (z0, z1, z2) = (&z[0][..n], &z[1][..n], &z[2][..n]);
    for (a, g) in gross.iter_mut().enumerate() {
        if weights[a] == 0.0 {
            continue;
        }
        let g = &mut g[..n];
        let (d, l) = (drift[a], &load[a]);
        for j in 0..n {
            g[j] = lognormal_gross(a, d, l, z0[j], z1[j], z2[j]);
        }
    }
}

/// `exp(drift + Σ_k load[k]·z_k)`: one asset's monthly gross return under the lognormal model.
#[inline(always)]
fn lognormal_gross(asset: usize, drift: f64, load: &[f64; 3], z0: f64, z1: f64, z2: f64) -> f64 {
    super::fastmath::exp(drift + shock(asset, load, z0, z1, z2))
}

/// `(L·z)_a` for the lower-triangular Cholesky factor: asset a loads on shocks 0..=a only. Left
/// out rather than multiplied by zero, so a shock no held asset uses is never computed at all.
#[inline(always)]
fn shock(asset: usize, load: &[f64; 3], z0: f64, z1: f64, z2: f64) -> f64 {
    match asset {
        0 => load[0] * z0,
        1 => load[0] * z0 + load[1] * z1,
        _ => load[0] * z0 + load[1] * z1 + load[2] * z2,
    }
}

/// `1 + i_t`, with `i_t = (1+π)^(1/12) − 1 + (σ_π/√12)·z`.
#[inline(always)]
fn inflation_factor(drift: f64, vol: f64, z: f64) -> f64 {
    1.0 + (drift + vol * z)
}

#[multiversion(targets = "simd")]
fn normal(z: &[Vec<f64>; 4], mean: &[f64; 3], load: &[[f64; 3]; 3], gross: &mut [Vec<f64>; 3]) {
    let n = z[0].len();
    let (z0, z1, z2) = (&z[0][..n], &z[1][..n], &z[2][..n]);
    for (a, g) in gross.iter_mut().enumerate() {
        let g = &mut g[..n];
        let (m, l) = (mean[a], load[a]);
        for j in 0..n {
            let r = m + shock(a, &l, z0[j], z1[j], z2[j]);
            g[j] = (1.0 + r).max(0.0);
        }
    }
}

#[multiversion(targets = "simd")]
fn inflation(z: &[f64], drift: f64, vol: f64, out: &mut [f64]) {
    let n = z.len();
    let out = &mut out[..n];
    for j in 0..n {
        out[j] = inflation_factor(drift, vol, z[j]);
    }
}

/// Month-specific constants of one step.
struct Step {
    month: u32,
    spending: f64,
    weights: [f64; 3],
    fee_factor: f64,
    net_real: f64,
    net_nominal: f64,
    income_real: f64,
    income_nominal: f64,
    rebalance: bool,
}

/// The per-scenario arrays a step reads and writes.
struct State<'a> {
    wealth: &'a mut [f64],
    cpi: &'a mut [f64],
    depletion: &'a mut [u32],
    spent: &'a mut [f64],
    planned: &'a [f64],
    year_growth: &'a mut [f64],
    gross: &'a [Vec<f64>; 3],
    inflation: &'a [f64],
}

/// One scenario's running totals.
#[derive(Clone, Copy)]
struct Lane {
    wealth: f64,
    cpi: f64,
    depletion: u32,
    spent: f64,
    year_growth: f64,
}

/// One month of one scenario with monthly rebalancing, given the month's gross returns and
/// inflation factor. Shared by the general kernel and the fused lognormal one, so both give the
/// same bits.
#[inline(always)]
fn lane_step<
    const CONSTANT: bool,
    const CAPPED: bool,
    const FLOWS: bool,
    const GROWTH: bool,
    const SPENT: bool,
>(
    l: Lane,
    planned: f64,
    gross: [f64; 3],
    inflation: f64,
    p: &Step,
) -> Lane {
    let i = l.cpi;
    let w = l.wealth;
    let need = if CONSTANT { p.spending * i } else { planned };
    // Percent-of-portfolio spends a share of what is there, so it can never overdraw.
    let need = if CAPPED { need.min(w) } else { need };
    let net = if FLOWS { need + (p.net_real * i + p.net_nominal) } else { need };
    let alive = l.depletion == NEVER;
    let ok = alive & (net <= w);
    let left = if ok { w - net } else { 0.0 };
    let lived_on = if CONSTANT { p.spending } else { need / i };
    let fallback = if FLOWS { p.income_real + p.income_nominal / i } else { 0.0 };
    let [w0, w1, w2] = p.weights;
    let g = w0 * gross[0] + w1 * gross[1] + w2 * gross[2];
    Lane {
        wealth: ((left * g) * p.fee_factor).min(MAX_WEALTH),
        cpi: i * inflation,
        depletion: if alive & !ok { p.month } else { l.depletion },
        // Constant real spending without flows derives its spending from the depletion month
        // (engine/mod.rs), so it need not be summed here.
        spent: if SPENT { l.spent + if ok { lived_on } else { fallback } } else { l.spent },
        year_growth: if GROWTH { l.year_growth * (g * p.fee_factor) } else { l.year_growth },
    }
}

impl State<'_> {
    /// The lanes `lanes` of this state, each slice exactly that long. A loop over a window's
    /// lanes needs no bounds checks: with them, the compiler ran the last vector's worth of
    /// lanes of every loop one at a time (8 of each 64-lane chunk on AVX-512).
    #[inline(always)]
    fn window(&mut self, lanes: Range<usize>) -> State<'_> {
        State {
            wealth: &mut self.wealth[lanes.clone()],
            cpi: &mut self.cpi[lanes.clone()],
            depletion: &mut self.depletion[lanes.clone()],
            spent: &mut self.spent[lanes.clone()],
            planned: &self.planned[lanes.clone()],
            year_growth: &mut self.year_growth[lanes.clone()],
            gross: self.gross,
            inflation: &self.inflation[lanes],
        }
    }

    /// Lane `j`. The running totals a kernel does not keep (`SPENT`, `GROWTH`) are neither read
    /// nor, by [`State::set_lane`], written back: left to the compiler, each cost a load and a
    /// store of a vector a step.
    #[inline(always)]
    fn lane<const SPENT: bool, const GROWTH: bool>(&self, j: usize) -> Lane {
        Lane {
            wealth: self.wealth[j],
            cpi: self.cpi[j],
            depletion: self.depletion[j],
            spent: if SPENT { self.spent[j] } else { 0.0 },
            year_growth: if GROWTH { self.year_growth[j] } else { 1.0 },
        }
    }

    #[inline(always)]
    fn set_lane<const SPENT: bool, const GROWTH: bool>(&mut self, j: usize, l: Lane) {
        self.wealth[j] = l.wealth;
        self.cpi[j] = l.cpi;
        self.depletion[j] = l.depletion;
        if SPENT {
            self.spent[j] = l.spent;
        }
        if GROWTH {
            self.year_growth[j] = l.year_growth;
        }
    }
}

/// One month with monthly rebalancing: wealth is a single number per scenario.
#[multiversion(targets = "simd")]
fn rebalanced<const CONSTANT: bool, const CAPPED: bool, const FLOWS: bool, const GROWTH: bool>(
    mut s: State<'_>,
    p: &Step,
) {
    let n = s.wealth.len();
    let gross = s.gross;
    let (g0, g1, g2, inflation, planned) =
        (&gross[0][..n], &gross[1][..n], &gross[2][..n], &s.inflation[..n], &s.planned[..n]);
    for j in 0..n {
        let lane = s.lane::<true, GROWTH>(j);
        let next = lane_step::<CONSTANT, CAPPED, FLOWS, GROWTH, true>(
            lane,
            planned[j],
            [g0[j], g1[j], g2[j]],
            inflation[j],
            p,
        );
        s.set_lane::<true, GROWTH>(j, next);
    }
}

/// The default model in one pass: draw the month's normals, turn them into gross returns and
/// inflation, and settle constant real spending with monthly rebalancing, all in registers.
/// `HELD` has bit a set when asset a has weight (others skip their exponential).
#[multiversion(targets = "simd")]
fn fused_lognormal<const HELD: u8, const FLOWS: bool>(
    rng_state: &mut [u64],
    rng_increment: &[u64],
    mut s: State<'_>,
    drift: &[f64; 3],
    load: &[[f64; 3]; 3],
    inflation: (f64, f64),
    p: &Step,
) {
    let n = s.wealth.len();
    let (rng_state, rng_increment) = (&mut rng_state[..n], &rng_increment[..n]);
    let mut z = [[0.0; CHUNK]; 4];
    for start in (0..n).step_by(CHUNK) {
        // A chunk's length written so the compiler sees it is at most CHUNK, and a window of
        // that length: the loop then checks no index and is vectorised to its last lane.
        let m = CHUNK.min(n - start);
        let lanes = start..start + m;
        normals_chunk(&mut rng_state[lanes.clone()], &rng_increment[lanes.clone()], &mut z);
        let mut c = s.window(lanes);
        for k in 0..m {
            let [z0, z1, z2, z3] = [z[0][k], z[1][k], z[2][k], z[3][k]].map(f64::from);
            let gross = [0, 1, 2].map(|a| {
                if HELD & (1 << a) != 0 {
                    lognormal_gross(a, drift[a], &load[a], z0, z1, z2)
                } else {
                    1.0
                }
            });
            let lane = c.lane::<FLOWS, false>(k);
            let next = lane_step::<true, false, FLOWS, false, FLOWS>(
                lane,
                0.0,
                gross,
                inflation_factor(inflation.0, inflation.1, z3),
                p,
            );
            c.set_lane::<FLOWS, false>(k, next);
        }
    }
}

/// One month with holdings that drift between rebalancing dates.
fn drifting(s: State<'_>, holdings: &mut [Vec<f64>; 3], p: &Step, constant: bool, capped: bool) {
    let n = s.wealth.len();
    let [h0, h1, h2] = holdings;
    for j in 0..n {
        let i = s.cpi[j];
        let w = h0[j] + h1[j] + h2[j];
        let mut need = if constant { p.spending * i } else { s.planned[j] };
        if capped {
            need = need.min(w);
        }
        let net = need + (p.net_real * i + p.net_nominal);
        let was_alive = s.depletion[j] == NEVER;
        let ok = was_alive && net <= w;
        if was_alive && !ok {
            s.depletion[j] = p.month;
        }
        let left = if ok { w - net } else { 0.0 };
        s.spent[j] += if !ok {
            p.income_real + p.income_nominal / i
        } else if constant {
            p.spending
        } else {
            need / i
        };
        let mut h = [h0[j], h1[j], h2[j]];
        if p.rebalance {
            h = p.weights.map(|x| x * left);
        } else {
            // Withdrawals and deposits are taken pro rata, so the mix keeps drifting. A
            // portfolio so small that `left / w` overflows scales by its shares instead (a share
            // of 0 times an infinite scale was NaN, capped to MAX_WEALTH), and money paid into
            // an empty one goes in at the allocation's weights (it had no mix to keep, and
            // scaling by 0 threw the deposit away).
            let scale = left / w;
            h = if w > 0.0 && scale.is_finite() {
                h.map(|x| x * scale)
            } else if w > 0.0 {
                h.map(|x| x / w * left)
            } else {
                p.weights.map(|x| x * left)
            };
        }
        for (a, x) in h.iter_mut().enumerate() {
            *x = ((*x * s.gross[a][j]) * p.fee_factor).min(MAX_WEALTH);
        }
        let grown = h[0] + h[1] + h[2];
        s.year_growth[j] *= if left > 0.0 { grown / left } else { 1.0 };
        (h0[j], h1[j], h2[j]) = (h[0], h[1], h[2]);
        s.wealth[j] = grown;
        s.cpi[j] = i * s.inflation[j];
    }
}
