//! Branch-free `exp`, `ln` and `sin`/`cos` for the engine's inner loops.
//!
//! Why not `f64::exp` and friends: they are opaque calls into the platform's libm, so a loop
//! that uses them cannot be vectorised, and the engine spends most of its time in exactly these
//! three functions (Box–Muller needs `ln`, `sin`, `cos`; the lognormal model needs `exp`).
//! Written as straight-line arithmetic on `f64` and its bit pattern, they inline into the
//! kernels, which the compiler then vectorises for whatever SIMD width the CPU offers.
//!
//! They also make results reproducible across machines: every operation is a correctly
//! rounded IEEE add, multiply, fused multiply-add, divide or square root (no libm
//! approximations), so a scalar, SSE, AVX2 or AVX-512 build produces the same bits. The tests below bound the error
//! against the standard library at a few units in the last place.
//!
//! The engine draws its normals in single precision ([`single`]), so it calls only `exp` in
//! double precision. The double-precision `ln` and `sin_cos_turns` are the constructions
//! `single` cuts short, compiled only for the tests that bound their error.

const ROUND: f64 = 6_755_399_441_055_744.0; // 1.5 · 2^52: adding it rounds to an integer.
const LN2_HI: f64 = 6.931_471_803_691_238e-1; // fdlibm's split of ln 2:
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10; // k·LN2_HI is exact for |k| < 2^11.

/// a·b + c with one rounding. A hardware instruction wherever the kernels run vectorised
/// (x86-64 with FMA, aarch64); elsewhere libm's correctly rounded `fma`, slower but giving the
/// same bits, so results never depend on the CPU.
#[inline(always)]
fn fma(a: f64, b: f64, c: f64) -> f64 {
    a.mul_add(b, c)
}

/// Σ c[i]·x^i by Horner's rule with fused multiply-adds. (Estrin's shallower tree measured no
/// faster: the kernels have far more independent lanes than the vector unit can hold.)
#[inline(always)]
fn poly<const N: usize>(x: f64, c: &[f64; N]) -> f64 {
    let mut acc = c[N - 1];
    let mut i = N - 1;
    while i > 0 {
        i -= 1;
        acc = fma(acc, x, c[i]);
    }
    acc
}

/// Rounds to the nearest integer (ties to even) for |x| < 2^51, without a libm call.
#[inline(always)]
fn round_to_int(x: f64) -> (f64, i64) {
    let t = x + ROUND;
    let k = t - ROUND;
    let ki = t.to_bits() as i64 - ROUND.to_bits() as i64;
    (k, ki)
}

/// A near-minimax fit of e^r on |r| ≤ ln2/2 (interpolation at Chebyshev nodes with 60-digit
/// arithmetic, rounded to doubles: `bench/fit_exp_polynomial.py`). Its error, 1.7e-17, is a
/// sixth of an ulp, with two terms fewer than the Taylor polynomial of the same accuracy.
const EXP_COEFFICIENTS: [f64; 12] = [
    1.0,
    1.0,
    0.5000000000000019,
    0.1666666666666668,
    0.0416666666664881,
    0.008333333333319601,
    0.0013888888952314775,
    0.00019841269890047113,
    2.4801485482328494e-05,
    2.755724091857897e-06,
    2.763263963904103e-07,
    2.5110037605963777e-08,
];

/// e^x, within 2 ulp for x in [−708, 709]; inputs outside are clamped to that range.
#[inline(always)]
pub(crate) fn exp(x: f64) -> f64 {
    let x = x.clamp(-708.0, 709.0);
    let (k, ki) = round_to_int(x * std::f64::consts::LOG2_E);
    let r = fma(-k, LN2_LO, fma(-k, LN2_HI, x));
    let p = poly(r, &EXP_COEFFICIENTS);
    let scale = f64::from_bits(((ki + 1023) as u64) << 52);
    p * scale
}

#[cfg(test)]
/// 1/(2k+1) for k = 1..=9: the odd series of atanh after its leading term.
const LN_COEFFICIENTS: [f64; 9] = [
    1.0 / 3.0,
    1.0 / 5.0,
    1.0 / 7.0,
    1.0 / 9.0,
    1.0 / 11.0,
    1.0 / 13.0,
    1.0 / 15.0,
    1.0 / 17.0,
    1.0 / 19.0,
];

/// ln x for positive, normal x (the engine only takes logs of uniforms in (0, 1]).
#[cfg(test)]
#[inline(always)]
pub(crate) fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    // Exponent as a float, exactly: place the biased exponent in the mantissa of 2^52.
    let biased =
        f64::from_bits(0x4330_0000_0000_0000 | ((bits >> 52) & 0x7ff)) - 4_503_599_627_370_496.0;
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    // Keep the mantissa in [√½, √2) so the series below converges fast on both sides of 1.
    let big = m > std::f64::consts::SQRT_2;
    let m = if big { m * 0.5 } else { m };
    let e = biased - 1023.0 + if big { 1.0 } else { 0.0 };
    // ln m = 2·atanh(s), s = (m − 1)/(m + 1), |s| ≤ 0.1716; ten odd terms reach 1e-17.
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let s2 = s * s;
    let p = poly(s2, &LN_COEFFICIENTS);
    // 2s + 2s·s²·p, written so the leading term keeps full precision.
    let two_s = 2.0 * s;
    let ln_m = fma(two_s, s2 * p, two_s);
    fma(e, LN2_HI, fma(e, LN2_LO, ln_m))
}

/// Taylor coefficients of sin φ/φ − 1 and cos φ − 1, as polynomials in φ², each cut where the
/// next term is below 5e-17 on |φ| ≤ π/4.
#[cfg(test)]
const SIN_COEFFICIENTS: [f64; 7] = [
    -1.0 / 6.0,
    1.0 / 120.0,
    -1.0 / 5_040.0,
    1.0 / 362_880.0,
    -1.0 / 39_916_800.0,
    1.0 / 6_227_020_800.0,
    -1.0 / 1_307_674_368_000.0,
];
#[cfg(test)]
const COS_COEFFICIENTS: [f64; 8] = [
    -1.0 / 2.0,
    1.0 / 24.0,
    -1.0 / 720.0,
    1.0 / 40_320.0,
    -1.0 / 3_628_800.0,
    1.0 / 479_001_600.0,
    -1.0 / 87_178_291_200.0,
    1.0 / 20_922_789_888_000.0,
];

/// (sin 2πu, cos 2πu) for u in [0, 1).
#[cfg(test)]
#[inline(always)]
pub(crate) fn sin_cos_turns(u: f64) -> (f64, f64) {
    // Quarter-turn reduction is exact in turns: u − q/4 loses nothing for the u we pass
    // (32-bit fractions), leaving |φ| ≤ π/4.
    let t = u * 4.0 + ROUND;
    let q = t - ROUND;
    let quadrant = t.to_bits() & 3;
    let phi = (u - q * 0.25) * std::f64::consts::TAU;
    let p2 = phi * phi;
    let sin = fma(phi * p2, poly(p2, &SIN_COEFFICIENTS), phi);
    let cos = fma(p2, poly(p2, &COS_COEFFICIENTS), 1.0);
    // Rotate by the quadrant: q = 1 swaps and negates cos, q = 2 negates both, q = 3 swaps
    // and negates sin.
    let swap = quadrant & 1 == 1;
    let (s1, c1) = if swap { (cos, sin) } else { (sin, cos) };
    let neg_sin = quadrant >= 2;
    let neg_cos = quadrant == 1 || quadrant == 2;
    (if neg_sin { -s1 } else { s1 }, if neg_cos { -c1 } else { c1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f64, b: f64) -> f64 {
        ((a - b) / b.abs().max(f64::MIN_POSITIVE)).abs() / f64::EPSILON
    }

    #[test]
    fn exp_is_within_two_ulp_of_the_standard_library() {
        let mut worst: f64 = 0.0;
        for i in 0..2_000_001 {
            let x = -40.0 + 80.0 * (i as f64) / 2_000_000.0;
            worst = worst.max(ulps(exp(x), x.exp()));
        }
        for &x in &[-708.0, -700.0, -1e-300, 0.0, 1e-300, 1e-8, 700.0, 709.0] {
            worst = worst.max(ulps(exp(x), f64::exp(x)));
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn ln_is_within_two_ulp_of_the_standard_library_on_the_unit_interval() {
        let mut worst: f64 = 0.0;
        for i in 1..=2_000_000u64 {
            let x = (i as f64) / 2_000_000.0;
            worst = worst.max(ulps(ln(x), x.ln()));
        }
        for k in 1..=53 {
            let x = (2.0f64).powi(-k) * 1.000_000_1;
            worst = worst.max(ulps(ln(x), x.ln()));
        }
        // Close to 1 the result is tiny, a hard case for the relative error.
        for i in 1..10_000 {
            let x = 1.0 - (i as f64) * 1e-12;
            worst = worst.max(ulps(ln(x), x.ln()));
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(ln(1.0), 0.0);
        assert!((ln(2f64.powi(-53)) - 2f64.powi(-53).ln()).abs() < 1e-14);
    }

    #[test]
    fn single_precision_ln_and_sin_cos_are_within_two_float_ulps() {
        let ulp = |got: f32, want: f64| {
            ((got as f64 - want) / want.abs().max(f32::MIN_POSITIVE as f64)).abs()
                / f32::EPSILON as f64
        };
        let mut worst: f64 = 0.0;
        for i in 1..=2_000_000u32 {
            let x = i as f32 / 2_000_000.0;
            worst = worst.max(ulp(single::ln(x), (x as f64).ln()));
        }
        assert!(worst <= 2.0, "ln: worst {worst} float ulp");
        let mut worst: f64 = 0.0;
        for i in 0..(1u32 << 20) {
            let u = i as f32 / (1u32 << 20) as f32;
            let (s, c) = single::sin_cos_turns(u);
            let (ws, wc) = (std::f64::consts::TAU * u as f64).sin_cos();
            // Absolute error in float ulps of 1 (sine and cosine cross zero).
            worst =
                worst.max((s as f64 - ws).abs().max((c as f64 - wc).abs()) / f32::EPSILON as f64);
        }
        assert!(worst <= 2.0, "sin/cos: worst {worst} float ulp");
    }

    #[test]
    fn sin_cos_turns_matches_the_standard_library() {
        // Against std on the same exactly reduced angle: isolates the polynomials.
        let mut worst: f64 = 0.0;
        for i in 0..1_000_000u64 {
            let u = (i as f64) / 1_000_000.0;
            let (s, c) = sin_cos_turns(u);
            let q = (u * 4.0).round_ties_even();
            let phi = (u - q * 0.25) * std::f64::consts::TAU;
            let (ps, pc) = (phi.sin(), phi.cos());
            let (rs, rc) = match q as i64 & 3 {
                0 => (ps, pc),
                1 => (pc, -ps),
                2 => (-ps, -pc),
                _ => (-pc, ps),
            };
            worst = worst.max((s - rs).abs()).max((c - rc).abs());
            // And against the unreduced angle, whose own rounding costs up to ~4.4e-16.
            let theta = u * std::f64::consts::TAU;
            assert!((s - theta.sin()).abs() < 1e-15 && (c - theta.cos()).abs() < 1e-15);
        }
        assert!(worst <= 2.3e-16, "worst absolute error {worst}");
        let (s, c) = sin_cos_turns(0.25);
        assert_eq!((s, c), (1.0, 0.0));
    }
}

/// Single-precision versions for the Box–Muller transform, whose outputs only need a float's
/// precision (see rng.rs): on eight lanes they run in half the vector width of the double
/// versions. Same constructions as above, with the series cut for 24-bit significands.
pub(crate) mod single {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }

    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23

    /// ln x for positive, normal x; within 2 ulp (f32) of the exact value.
    #[inline(always)]
    pub(crate) fn ln(x: f32) -> f32 {
        let bits = x.to_bits();
        let biased = f32::from_bits(0x4B00_0000 | ((bits >> 23) & 0xff)) - 8_388_608.0;
        let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
        let big = m > std::f32::consts::SQRT_2;
        let m = if big { m * 0.5 } else { m };
        let e = biased - 127.0 + if big { 1.0 } else { 0.0 };
        // ln m = 2·atanh(s), |s| ≤ 0.1716: terms to s^11 leave < 2e-10.
        let f = m - 1.0;
        let s = f / (2.0 + f);
        let s2 = s * s;
        let p = fma(
            fma(fma(fma(1.0 / 11.0, s2, 1.0 / 9.0), s2, 1.0 / 7.0), s2, 1.0 / 5.0),
            s2,
            1.0 / 3.0,
        );
        let two_s = 2.0 * s;
        fma(e, std::f32::consts::LN_2, fma(two_s, s2 * p, two_s))
    }

    /// (sin 2πu, cos 2πu) for u in [0, 1); within 2 ulp (f32) of the exact values.
    #[inline(always)]
    pub(crate) fn sin_cos_turns(u: f32) -> (f32, f32) {
        let t = u * 4.0 + ROUND;
        let q = t - ROUND;
        let quadrant = t.to_bits() & 3;
        let phi = (u - q * 0.25) * std::f32::consts::TAU;
        let p2 = phi * phi;
        // |φ| ≤ π/4: sin to φ^11, cos to φ^10 leave < 2e-9.
        let sp = fma(
            fma(
                fma(fma(1.0 / 39_916_800.0, p2, -1.0 / 362_880.0), p2, 1.0 / 5_040.0),
                p2,
                -1.0 / 120.0,
            ),
            p2,
            1.0 / 6.0,
        );
        let sin = fma(-phi * p2, sp, phi);
        let cp = fma(
            fma(fma(fma(-1.0 / 3_628_800.0, p2, 1.0 / 40_320.0), p2, -1.0 / 720.0), p2, 1.0 / 24.0),
            p2,
            -0.5,
        );
        let cos = fma(p2, cp, 1.0);
        let swap = quadrant & 1 == 1;
        let (s1, c1) = if swap { (cos, sin) } else { (sin, cos) };
        let neg_sin = quadrant >= 2;
        let neg_cos = quadrant == 1 || quadrant == 2;
        (if neg_sin { -s1 } else { s1 }, if neg_cos { -c1 } else { c1 })
    }
}
