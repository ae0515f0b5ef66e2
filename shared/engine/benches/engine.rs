//! Criterion benchmarks of the engine. Each group pairs the engine with a baseline measured in
//! the same run, so the figures read as ratios rather than machine-dependent seconds:
//! - `engine`: a full run against a plain scalar implementation of the same model (rand_distr
//!   normals, libm exp, one scenario at a time), at 1 and 2 threads;
//! - `normals`: the vectorised Box–Muller lanes against `rand_distr::StandardNormal`;
//! - `percentiles`: the multi-rank selection against a full sort.
//!
//!     cargo bench -p portfolio-engine

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use portfolio_engine::request::{RequestLimits, SimulationRequest};
use portfolio_engine::{RunOptions, linalg, rng::Lanes, stats};
use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;
use std::hint::black_box;

fn request(n: u32) -> SimulationRequest {
    let body = format!(
        r#"{{"starting_portfolio": 1000000, "monthly_spending": 3333.33, "years": 30, "n_scenarios": {n},
            "allocation": {{"stocks": 0.6, "bonds": 0.4, "cash": 0.0}}, "annual_fee": 0.001}}"#
    );
    SimulationRequest::from_json(body.as_bytes(), &RequestLimits::default()).expect("valid request")
}

/// The model written the plain way: one scenario at a time, rand_distr normals, libm exp. Only
/// success is computed (no percentiles), so the baseline is, if anything, flattered. It reads
/// the request's figures from its normalised JSON, defaults filled in, as any client would.
fn scalar_success(req: &SimulationRequest, seed: u64) -> f64 {
    let r = req.to_json();
    let num = |v: &serde_json::Value| v.as_f64().expect("a number");
    let a = &r["assumptions"];
    let mut correlation = [[0.0; 3]; 3];
    for (i, row) in correlation.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            *cell = num(&a["correlation"][i][j]);
        }
    }
    let l = linalg::cholesky_psd(&correlation).unwrap();
    let assets = ["stocks", "bonds", "cash"];
    let w: Vec<f64> = assets.iter().map(|k| num(&r["allocation"][k])).collect();
    let drift: Vec<f64> = assets
        .iter()
        .map(|k| {
            let (mu, sigma) = (num(&a[k]["mean_return"]), num(&a[k]["volatility"]));
            (1.0 + mu).ln() / 12.0 - sigma.powi(2) / 24.0
        })
        .collect();
    let vol: Vec<f64> = assets.iter().map(|k| num(&a[k]["volatility"]) / 12f64.sqrt()).collect();
    let infl_drift = (1.0 + num(&a["inflation"]["mean"])).powf(1.0 / 12.0) - 1.0;
    let infl_vol = num(&a["inflation"]["volatility"]) / 12f64.sqrt();
    let fee = 1.0 - num(&r["annual_fee"]) / 12.0;
    let (w0, spending) = (num(&r["starting_portfolio"]), num(&r["monthly_spending"]));
    let months = 12 * r["years"].as_u64().expect("years");
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let mut alive_count = 0;
    for _ in 0..req.n_scenarios() {
        let (mut wealth, mut cpi, mut alive) = (w0, 1.0, true);
        for _ in 0..months {
            let z: [f64; 4] = std::array::from_fn(|_| rng.sample(StandardNormal));
            let need = spending * cpi;
            if alive && need <= wealth {
                wealth -= need;
            } else {
                alive = false;
                wealth = 0.0;
            }
            let mut gross = 0.0;
            for k in 0..3 {
                let shock: f64 = (0..3).map(|m| l[k][m] * z[m]).sum();
                gross += w[k] * (drift[k] + vol[k] * shock).exp();
            }
            wealth *= gross * fee;
            cpi *= 1.0 + infl_drift + infl_vol * z[3];
        }
        alive_count += usize::from(alive);
    }
    alive_count as f64 / req.n_scenarios() as f64
}

fn engine_vs_scalar(c: &mut Criterion) {
    let n = 10_000;
    let req = request(n);
    let mut group = c.benchmark_group("engine");
    group.sample_size(10).throughput(Throughput::Elements(u64::from(n) * 360));
    group.bench_function("scalar baseline (1 thread)", |b| {
        b.iter(|| black_box(scalar_success(&req, 7)))
    });
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        group.bench_with_input(
            BenchmarkId::new("engine", format!("{threads} threads")),
            &threads,
            |b, _| {
                b.iter(|| {
                    pool.install(|| {
                        black_box(portfolio_engine::run(&req, 7, &RunOptions::default()).unwrap())
                    })
                })
            },
        );
    }
    group.finish();
}

fn normals(c: &mut Criterion) {
    let lanes = 1024;
    let mut group = c.benchmark_group("normals");
    group.throughput(Throughput::Elements(lanes as u64 * 4));
    group.bench_function("rand_distr StandardNormal (baseline)", |b| {
        let mut rng = rand_pcg::Pcg32::seed_from_u64(1);
        let mut out = vec![0.0f64; lanes * 4];
        b.iter(|| {
            for x in &mut out {
                *x = rng.sample(StandardNormal);
            }
            black_box(&out);
        })
    });
    group.bench_function("vectorised Box-Muller lanes", |b| {
        let mut l = Lanes::new(1, 0, lanes);
        let mut z = vec![vec![0.0f64; lanes]; 4];
        b.iter(|| {
            let [a, b2, c2, d] = &mut z[..] else { unreachable!() };
            l.normals4(a, b2, c2, d);
            black_box(&z);
        })
    });
    group.finish();
}

fn percentiles(c: &mut Criterion) {
    let n = 100_000;
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(3);
    let values: Vec<f64> = (0..n).map(|_| rng.random::<f64>() * 1e6).collect();
    let ps = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95];
    let mut group = c.benchmark_group("percentiles");
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("full sort (baseline)", |b| {
        b.iter(|| {
            let mut v = values.clone();
            v.sort_by(f64::total_cmp);
            black_box(ps.map(|p| v[((n - 1) as f64 * p) as usize]))
        })
    });
    group.bench_function("multi-rank selection", |b| {
        b.iter(|| {
            let mut v = values.clone();
            black_box(stats::percentiles(&mut v, &ps))
        })
    });
    group.finish();
}

criterion_group!(benches, engine_vs_scalar, normals, percentiles);
criterion_main!(benches);
