//! Correctness tests of the engine against docs/model.md.
//!
//! Every expected value is computed here, independently of the engine: closed forms
//! (`closed_form`, `solver`), the definitions of the return models (`return_models`, through a
//! crate-internal hook that draws months with the kernel's own code), a straightforward scalar
//! re-implementation of the whole model with `f64::exp`, `rand_pcg` and `rand_distr`
//! (`reference`), a replay of the embedded table parsed afresh from its CSV (`historical`), and
//! invariants every result must satisfy (`properties`). No test compares against a number the
//! engine printed once.

mod closed_form;
mod defaults;
mod historical;
mod progress;
mod properties;
mod reference;
mod reproducibility;
mod return_models;
mod solver;
mod strategies;

use serde_json::Value;

use super::{RunOptions, run};
use crate::request::{RequestLimits, SimulationRequest};
use crate::result::{PercentileSeries, SimulationResult};

/// The percentiles the result reports, as fractions, in `PercentileSeries::columns` order.
pub(super) const PS: [f64; 7] = [0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95];

/// Parses a request exactly as the API does; a test request that breaks a rule is a test bug.
pub(super) fn request(body: Value) -> SimulationRequest {
    SimulationRequest::from_json(body.to_string().as_bytes(), &RequestLimits::default())
        .unwrap_or_else(|e| panic!("test request rejected: {e:?}\n{body}"))
}

/// Runs with the default options on the caller's rayon pool.
pub(super) fn simulate(request: &SimulationRequest, seed: u64) -> SimulationResult {
    run(request, seed, &RunOptions::default()).expect("not cancelled")
}

/// The same request with `monthly_spending` replaced.
pub(super) fn with_spending(request: &SimulationRequest, spending: f64) -> SimulationRequest {
    SimulationRequest { monthly_spending: spending, solve: None, ..request.clone() }
}

/// Every bit of a result except its wall time: serde_json writes each f64 as the shortest
/// string that reads back to the same bits (and keeps the sign of −0), so equal strings mean
/// bit-identical numbers.
pub(super) fn fingerprint(result: &SimulationResult) -> String {
    let mut r = result.clone();
    r.elapsed_ms = 0.0;
    serde_json::to_string(&r).expect("a result serialises")
}

/// numpy.percentile(values, 100·p) with numpy's default "linear" method, by a full sort
/// (the engine selects ranks instead; this is the textbook definition).
pub(super) fn numpy_percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let h = (v.len() - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

/// `|got − want| ≤ rel·max(|want|, scale)`: relative to the value, or to `scale` (the size of
/// the quantities involved) for values close to 0, where a relative error means nothing.
#[track_caller]
pub(super) fn assert_close(got: f64, want: f64, rel: f64, scale: f64, what: &str) {
    let bound = rel * want.abs().max(scale);
    assert!(
        (got - want).abs() <= bound,
        "{what}: got {got}, want {want} (difference {:e}, bound {bound:e})",
        got - want
    );
}

/// The seven percentile values of a series at index `i`.
pub(super) fn at(series: &PercentileSeries, i: usize) -> [f64; 7] {
    series.columns().map(|c| c[i])
}
