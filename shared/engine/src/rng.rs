//! Random streams: one PCG stream per scenario, stepped for a whole batch of scenarios at once.
//!
//! Every scenario draws from its own `rand_pcg::Pcg32` stream (PCG-XSH-RR, 64-bit state),
//! keyed by (seed, scenario index). A scenario's numbers therefore do not depend on which batch,
//! thread or worker simulates it, so results are bit-identical at any batch size or thread
//! count. The streams are held as plain arrays (structure of arrays) and stepped lane by lane,
//! which the compiler vectorises; a test checks each lane against `rand_pcg::Pcg32` itself.
//!
//! The reproducibility rule (docs/model.md): scenario `j` of seed `s` uses
//! `Pcg32::new(state, stream)` with `state = splitmix64(splitmix64(s) ^ splitmix64(2j))` and
//! `stream = splitmix64(splitmix64(s) ^ splitmix64(2j + 1))`; each month of a parametric model
//! takes four 32-bit outputs, which become four standard normals by Box–Muller.
//!
//! The Box–Muller transform runs in single precision: a normal deviate needs no more than a
//! float's 24 significant bits (its error, ~1e-7 of a monthly shock, is far below anything a
//! simulation can resolve), and on eight lanes the float arithmetic takes half the vector width
//! of the double. Everything downstream — returns, wealth, statistics — is double precision.

use rand::rand_core::{Infallible, TryRng};

use super::fastmath;

const PCG_MULTIPLIER: u64 = 6_364_136_223_846_793_005;

/// One SplitMix64 step from state `x` (Steele, Lea & Flood 2014): the golden-gamma increment,
/// then the output mix; a bijective 64-bit mixer.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `(state, stream)` pair that seeds scenario `scenario`'s `Pcg32`.
pub(crate) fn stream_key(seed: u64, scenario: u64) -> (u64, u64) {
    let base = splitmix64(seed);
    (
        splitmix64(base ^ splitmix64(scenario.wrapping_mul(2))),
        splitmix64(base ^ splitmix64(scenario.wrapping_mul(2).wrapping_add(1))),
    )
}

/// PCG-XSH-RR output of the state before a step.
///
/// The 32-bit rotation is done in the 64-bit lane that already holds the state: with the
/// xorshifted word in both halves, a right shift by the rotation leaves the rotated word in the
/// low half. Vectorised for AVX2, which has no rotate, that is one 64-bit shift where a rotate
/// of packed words took two shifts, a subtract, an or and a second pack (2.2 % fewer
/// instructions in a whole run); with AVX-512 it is as many instructions as its rotate.
#[inline(always)]
fn output(old: u64) -> u32 {
    let xsh = (((old >> 18) ^ old) >> 27) & 0xffff_ffff;
    ((xsh | (xsh << 32)) >> (old >> 59)) as u32
}

#[inline(always)]
fn next_u32(state: &mut u64, increment: u64) -> u32 {
    let old = *state;
    *state = old.wrapping_mul(PCG_MULTIPLIER).wrapping_add(increment);
    output(old)
}

/// The streams of a contiguous range of scenarios.
pub struct Lanes {
    state: Vec<u64>,
    increment: Vec<u64>,
}

impl Lanes {
    /// Streams for scenarios `first..first + len` of `seed`, positioned exactly as
    /// `rand_pcg::Pcg32::new(state, stream)` would be.
    pub fn new(seed: u64, first: u64, len: usize) -> Self {
        let mut state = Vec::with_capacity(len);
        let mut increment = Vec::with_capacity(len);
        for j in 0..len as u64 {
            let (s, stream) = stream_key(seed, first + j);
            let inc = (stream << 1) | 1;
            state.push(s.wrapping_add(inc).wrapping_mul(PCG_MULTIPLIER).wrapping_add(inc));
            increment.push(inc);
        }
        Self { state, increment }
    }

    /// Four standard normals per lane from four 32-bit draws: two Box–Muller pairs.
    #[inline(always)]
    pub fn normals4(&mut self, z0: &mut [f64], z1: &mut [f64], z2: &mut [f64], z3: &mut [f64]) {
        normals4(&mut self.state, &self.increment, z0, z1, z2, z3);
    }

    /// The raw stream states and increments, for kernels that draw inline.
    pub(crate) fn raw(&mut self) -> (&mut [u64], &[u64]) {
        (&mut self.state, &self.increment)
    }

    /// A `rand` generator view of one lane, for the few draws that are not plain normals
    /// (chi-square scales, bootstrap start years).
    pub(crate) fn lane(&mut self, j: usize) -> LaneRng<'_> {
        LaneRng { state: &mut self.state[j], increment: self.increment[j] }
    }
}

#[multiversion::multiversion(targets = "simd")]
fn normals4(
    state: &mut [u64],
    increment: &[u64],
    z0: &mut [f64],
    z1: &mut [f64],
    z2: &mut [f64],
    z3: &mut [f64],
) {
    let n = state.len();
    let (increment, z0, z1, z2, z3) =
        (&increment[..n], &mut z0[..n], &mut z1[..n], &mut z2[..n], &mut z3[..n]);
    let mut z = [[0.0; CHUNK]; 4];
    for start in (0..n).step_by(CHUNK) {
        let m = CHUNK.min(n - start);
        let lanes = start..start + m;
        normals_chunk(&mut state[lanes.clone()], &increment[lanes.clone()], &mut z);
        for (out, z) in [&mut *z0, &mut *z1, &mut *z2, &mut *z3].into_iter().zip(&z) {
            for (o, &v) in out[lanes.clone()].iter_mut().zip(z) {
                *o = f64::from(v);
            }
        }
    }
}

/// Lanes per call of [`normals_chunk`]: its two passes' buffers stay in L1 and on the stack.
pub(crate) const CHUNK: usize = 64;

/// Each lane's four normals for one month (four 32-bit draws, two Box–Muller pairs), for up to
/// [`CHUNK`] lanes: `z[k][j]` is lane `j`'s normal `k`. Inlined into the kernels.
///
/// Two passes, so that the transform's loop holds 32-bit values only: the compiler then runs it
/// at the full width of a float vector (8 lanes on AVX2), where a loop that also steps the 64-bit
/// stream states runs it at the width of those (4). A lane's arithmetic is the same either way,
/// so are its normals, bit for bit.
#[inline(always)]
pub(crate) fn normals_chunk(state: &mut [u64], increment: &[u64], z: &mut [[f32; CHUNK]; 4]) {
    let m = state.len();
    assert!(m <= CHUNK && increment.len() == m);
    let mut u = [[0u32; CHUNK]; 4];
    for j in 0..m {
        let mut s = state[j];
        let inc = increment[j];
        u[0][j] = next_u32(&mut s, inc);
        u[1][j] = next_u32(&mut s, inc);
        u[2][j] = next_u32(&mut s, inc);
        u[3][j] = next_u32(&mut s, inc);
        state[j] = s;
    }
    let [z0, z1, z2, z3] = z;
    for j in 0..m {
        (z0[j], z1[j]) = box_muller_f32(u[0][j], u[1][j]);
        (z2[j], z3[j]) = box_muller_f32(u[2][j], u[3][j]);
    }
}

/// Two independent standard normals from two 32-bit uniforms, computed in single precision
/// and returned as doubles. The radius uniform is (a + ½)·2⁻³² (never 0: the largest |z| is
/// √(2 ln 2³³) ≈ 6.76); the angle uses the top 24 bits of b.
#[cfg(test)]
pub(crate) fn box_muller(a: u32, b: u32) -> (f64, f64) {
    let (z0, z1) = box_muller_f32(a, b);
    (f64::from(z0), f64::from(z1))
}

/// [`box_muller`] before its widening to double precision.
#[inline(always)]
fn box_muller_f32(a: u32, b: u32) -> (f32, f32) {
    const TWO_POW_MINUS_32: f32 = 1.0 / 4_294_967_296.0;
    const TWO_POW_MINUS_24: f32 = 1.0 / 16_777_216.0;
    let u1 = (a as f32 + 0.5) * TWO_POW_MINUS_32;
    let u2 = (b >> 8) as f32 * TWO_POW_MINUS_24;
    let r = (-2.0 * fastmath::single::ln(u1)).sqrt();
    let (sin, cos) = fastmath::single::sin_cos_turns(u2);
    (r * cos, r * sin)
}

/// One lane as a `rand` generator; it advances the lane's own stream.
pub(crate) struct LaneRng<'a> {
    state: &'a mut u64,
    increment: u64,
}

impl TryRng for LaneRng<'_> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(next_u32(self.state, self.increment))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        // Same composition as rand_pcg: low word first.
        let lo = next_u32(self.state, self.increment) as u64;
        let hi = next_u32(self.state, self.increment) as u64;
        Ok((hi << 32) | lo)
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(4) {
            let word = next_u32(self.state, self.increment).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;
    use rand_pcg::Pcg32;

    use super::*;

    #[test]
    fn each_lane_is_exactly_the_rand_pcg_stream_of_its_scenario() {
        let seed = 42;
        let mut lanes = Lanes::new(seed, 1000, 5);
        for j in 0..5 {
            let (state, stream) = stream_key(seed, 1000 + j as u64);
            let mut reference = Pcg32::new(state, stream);
            let mut lane = lanes.lane(j);
            for _ in 0..100 {
                assert_eq!(lane.try_next_u32().unwrap(), reference.next_u32());
            }
            assert_eq!(lane.try_next_u64().unwrap(), reference.next_u64());
        }
    }

    #[test]
    fn a_scenario_draws_the_same_normals_whatever_batch_it_is_in() {
        let draw = |first: u64, len: usize| {
            let mut lanes = Lanes::new(7, first, len);
            let mut z = vec![vec![0.0; len]; 4];
            let [a, b, c, d] = &mut z[..] else { unreachable!() };
            lanes.normals4(a, b, c, d);
            lanes.normals4(a, b, c, d);
            z
        };
        // Wider than a chunk, and narrow runs inside one chunk and across a chunk's edge.
        let wide = draw(0, 2 * CHUNK + 22);
        for (first, len) in [(10, 3), (CHUNK - 5, 10), (2 * CHUNK + 1, 21)] {
            let narrow = draw(first as u64, len);
            for k in 0..4 {
                assert_eq!(&wide[k][first..first + len], &narrow[k][..], "{first}+{len}");
            }
        }
        // Each lane's normals are the transform of its own stream's next four draws.
        let mut lanes = Lanes::new(7, 0, 3);
        let expected: Vec<[f64; 4]> = (0..3)
            .map(|j| {
                let mut lane = lanes.lane(j);
                let w: [u32; 8] = std::array::from_fn(|_| lane.try_next_u32().unwrap());
                let [(a, b), (c, d)] = [box_muller(w[4], w[5]), box_muller(w[6], w[7])];
                [a, b, c, d]
            })
            .collect();
        let got: Vec<[f64; 4]> = (0..3).map(|j| std::array::from_fn(|k| wide[k][j])).collect();
        assert_eq!(got, expected, "the second month of lanes 0..3");
    }

    #[test]
    fn the_single_precision_transform_agrees_with_libm_box_muller_on_the_same_draws() {
        // Reference: the same uniforms, transformed in double precision with libm. The float
        // transform may differ by a few float ulps of the radius and of the angle's sine and
        // cosine: 1e-6 relative to max(1, |z|) bounds that with margin.
        let mut rng = rand_pcg::Pcg32::new(11, 13);
        let mut worst: f64 = 0.0;
        for _ in 0..2_000_000 {
            let (a, b) = (rng.next_u32(), rng.next_u32());
            let (z0, z1) = box_muller(a, b);
            let u1 = (a as f32 + 0.5) as f64 * 2f64.powi(-32);
            let u2 = ((b >> 8) as f64) * 2f64.powi(-24);
            let r = (-2.0 * u1.ln()).sqrt();
            let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
            worst = worst.max((z0 - r * c).abs() / (r * c).abs().max(1.0));
            worst = worst.max((z1 - r * s).abs() / (r * s).abs().max(1.0));
        }
        assert!(worst < 1e-6, "worst relative error {worst}");
        // The extremes: the smallest radius uniform gives the largest deviate, √(2 ln 2^33).
        let (z, _) = box_muller(0, 0);
        assert!((z - (2.0 * 33.0 * std::f64::consts::LN_2).sqrt()).abs() < 1e-2, "{z}");
        assert!(box_muller(u32::MAX, 0).0.is_finite());
    }

    #[test]
    fn box_muller_normals_have_the_moments_of_a_standard_normal() {
        let n = 400_000;
        let mut lanes = Lanes::new(3, 0, n);
        let mut z = vec![vec![0.0; n]; 4];
        let [a, b, c, d] = &mut z[..] else { unreachable!() };
        lanes.normals4(a, b, c, d);
        let cov = a.iter().zip(b.iter()).map(|(x, y)| x * y).sum::<f64>() / n as f64;
        let all: Vec<f64> = z.concat();
        let m = all.len() as f64;
        let mean = all.iter().sum::<f64>() / m;
        let var = all.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (m - 1.0);
        let kurt = all.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / m / (var * var);
        // Standard errors: mean 1/√m, variance √(2/m), kurtosis √(24/m); allow 4 of each.
        assert!(mean.abs() < 4.0 / m.sqrt(), "mean {mean}");
        assert!((var - 1.0).abs() < 4.0 * (2.0 / m).sqrt(), "variance {var}");
        assert!((kurt - 3.0).abs() < 4.0 * (24.0 / m).sqrt(), "kurtosis {kurt}");
        // The two normals of a pair are uncorrelated.
        assert!(cov.abs() < 4.0 / (n as f64).sqrt(), "pair covariance {cov}");
    }
}
