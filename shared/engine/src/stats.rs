//! Exact order statistics and sums over one year's values of every scenario.
//!
//! Percentiles follow numpy's default ("linear", Hyndman & Fan type 7): rank h = (n − 1)·p,
//! interpolated between the two closest ranks with numpy's own lerp, so an independent numpy
//! computation on the same values agrees to the last bit or two. Only the ranks needed are
//! selected, never a full sort.

/// Values at the fractions `ps` (each in [0, 1]) of `values`, which is reordered (the same
/// values, with those at the ranks used in place).
pub fn percentiles(values: &mut [f64], ps: &[f64]) -> Vec<f64> {
    let n = values.len();
    assert!(n > 0, "percentiles of nothing");
    let positions: Vec<(usize, f64)> = ps
        .iter()
        .map(|&p| {
            let h = (n - 1) as f64 * p;
            let lo = h.floor();
            (lo as usize, h - lo)
        })
        .collect();
    let mut ranks: Vec<usize> = positions
        .iter()
        .flat_map(|&(lo, frac)| if frac > 0.0 { vec![lo, lo + 1] } else { vec![lo] })
        .map(|r| r.min(n - 1))
        .collect();
    ranks.sort_unstable();
    ranks.dedup();
    if values.iter().all(|v| v.is_sign_positive() && !v.is_nan()) {
        // Non-negative doubles order exactly as their bit patterns, and integer comparisons are
        // cheaper than `total_cmp`: wealth and spending are never negative, so this is the
        // common path.
        let mut keys: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
        select_ranks(&mut keys, &ranks, 0, u64::cmp);
        // All of them, not only the ranks: callers use the row again (the histogram bins it).
        for (value, key) in values.iter_mut().zip(keys) {
            *value = f64::from_bits(key);
        }
    } else {
        select_ranks(values, &ranks, 0, f64::total_cmp);
    }
    positions
        .iter()
        .map(|&(lo, frac)| {
            let a = values[lo];
            if frac == 0.0 || lo + 1 >= n {
                return a;
            }
            lerp(a, values[lo + 1], frac)
        })
        .collect()
}

/// Puts the order statistics at `ranks` (sorted, relative to `offset`) in place: select the
/// middle rank, then recurse into each side with the ranks that fall there, so k ranks cost
/// about n·log k comparisons rather than n·k.
fn select_ranks<T, F>(values: &mut [T], ranks: &[usize], offset: usize, cmp: F)
where
    F: Fn(&T, &T) -> std::cmp::Ordering + Copy,
{
    if ranks.is_empty() {
        return;
    }
    let mid = ranks.len() / 2;
    let r = ranks[mid] - offset;
    values.select_nth_unstable_by(r, cmp);
    let (left, right) = values.split_at_mut(r);
    select_ranks(left, &ranks[..mid], offset, cmp);
    select_ranks(&mut right[1..], &ranks[mid + 1..], offset + r + 1, cmp);
}

/// The same percentiles for data given as distinct sorted `values` with `counts` of each: as
/// if the values were expanded into a sorted row.
pub(crate) fn percentiles_of_counts(values: &[f64], counts: &[u64], ps: &[f64]) -> Vec<f64> {
    let n: u64 = counts.iter().sum();
    assert!(n > 0, "percentiles of nothing");
    let at_rank = |r: u64| -> f64 {
        let mut seen = 0;
        for (v, &c) in values.iter().zip(counts) {
            seen += c;
            if r < seen {
                return *v;
            }
        }
        values[values.len() - 1]
    };
    ps.iter()
        .map(|&p| {
            let h = (n - 1) as f64 * p;
            let lo = h.floor();
            let frac = h - lo;
            let a = at_rank(lo as u64);
            if frac == 0.0 || lo as u64 + 1 >= n {
                a
            } else {
                lerp(a, at_rank(lo as u64 + 1), frac)
            }
        })
        .collect()
}

/// numpy's `_lerp`: exact at both ends and monotone in `t`.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 { b - diff * (1.0 - t) } else { a + diff * t }
}

/// Mean with Neumaier's compensated summation, in index order (so it does not depend on how
/// the scenarios were batched).
pub(crate) fn mean(values: &[f64]) -> f64 {
    let mut sum = 0.0f64;
    let mut compensation = 0.0f64;
    for &x in values {
        let t = sum + x;
        if sum.abs() >= x.abs() {
            compensation += (sum - t) + x;
        } else {
            compensation += (x - t) + sum;
        }
        sum = t;
    }
    (sum + compensation) / values.len() as f64
}

/// Equal-width bins of the positive values up to their 99th percentile; zeros (depleted
/// scenarios) and values at or above the last edge are counted apart.
pub(crate) fn histogram(values: &[f64], bins: usize) -> crate::result::Histogram {
    let depleted = values.iter().filter(|&&v| v <= 0.0).count() as u64;
    let mut positive: Vec<f64> = values.iter().copied().filter(|&v| v > 0.0).collect();
    if positive.is_empty() {
        return crate::result::Histogram { depleted, ..Default::default() };
    }
    let top = percentiles(&mut positive, &[0.99])[0];
    let top = if top > 0.0 { top } else { positive.iter().copied().fold(0.0, f64::max) };
    let width = top / bins as f64;
    let edges: Vec<f64> = (0..=bins).map(|i| width * i as f64).collect();
    let mut counts = vec![0u64; bins];
    let mut above = 0;
    for &v in &positive {
        let i = (v / width) as usize;
        if v >= top || i >= bins {
            above += 1;
        } else {
            counts[i] += 1;
        }
    }
    crate::result::Histogram { edges, counts, depleted, above }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_follow_numpys_linear_method() {
        // numpy.percentile([1, 2, 3, 4, 10], [0, 5, 25, 50, 90, 100]) =
        // [1.0, 1.2, 2.0, 3.0, 7.6, 10.0]
        let mut v = vec![10.0, 3.0, 1.0, 4.0, 2.0];
        let p = percentiles(&mut v, &[0.0, 0.05, 0.25, 0.5, 0.9, 1.0]);
        let expected = [1.0, 1.2, 2.0, 3.0, 7.6, 10.0];
        for (got, want) in p.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        assert_eq!(percentiles(&mut [5.0], &[0.05, 0.95]), vec![5.0, 5.0]);
    }

    #[test]
    fn percentiles_agree_with_a_full_sort() {
        let mut x = 12345u64;
        let mut v: Vec<f64> = (0..10_001)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (x >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect();
        let mut sorted = v.clone();
        sorted.sort_by(f64::total_cmp);
        let ps = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.123_456];
        let got = percentiles(&mut v, &ps);
        for (g, p) in got.iter().zip(ps) {
            let h = 10_000.0 * p;
            let lo = h.floor() as usize;
            let want = lerp(sorted[lo], sorted[lo + 1], h - lo as f64);
            assert_eq!(*g, want);
        }
    }

    /// A row in no order: 0..n scrambled by a multiplicative step prime to n.
    fn scrambled(n: usize, zeros: usize) -> Vec<f64> {
        (0..n)
            .map(|i| ((i * 7919) % n) as f64)
            .map(|v| if v < zeros as f64 { 0.0 } else { v })
            .collect()
    }

    #[test]
    fn percentiles_leave_the_same_values_in_the_row() {
        let original = scrambled(1000, 0);
        let mut row = original.clone();
        percentiles(&mut row, &[0.05, 0.5, 0.99, 0.123]);
        let (mut a, mut b) = (original, row);
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        assert_eq!(a, b);
    }

    #[test]
    fn the_histogram_counts_each_value_in_the_bin_its_edges_give() {
        let values = scrambled(1000, 100);
        let h = histogram(&values, 40);
        // Counted again here, value by value, against the histogram's own edges.
        let (width, top) = (h.edges[1], h.edges[40]);
        let mut counts = vec![0u64; 40];
        let mut above = 0;
        for &v in values.iter().filter(|&&v| v > 0.0) {
            if v >= top { above += 1 } else { counts[(v / width) as usize] += 1 }
        }
        assert_eq!((h.counts, h.above, h.depleted), (counts, above, 100));
    }

    #[test]
    fn the_histogram_accounts_for_every_value() {
        let values: Vec<f64> = (0..1000).map(|i| if i < 100 { 0.0 } else { i as f64 }).collect();
        let h = histogram(&values, 10);
        assert_eq!(h.depleted, 100);
        assert_eq!(h.counts.iter().sum::<u64>() + h.above + h.depleted, 1000);
        assert_eq!(h.edges.len(), 11);
        assert!(h.above >= 9 && h.above <= 10, "the top 1 % of positives: {}", h.above);
    }

    #[test]
    fn percentiles_of_counts_equal_percentiles_of_the_expanded_row() {
        let values = [0.0, 1.5, 3.0, 10.0];
        let counts = [3u64, 0, 5, 2];
        let mut row: Vec<f64> = values
            .iter()
            .zip(counts)
            .flat_map(|(v, c)| std::iter::repeat_n(*v, c as usize))
            .collect();
        let ps = [0.0, 0.05, 0.3, 0.5, 0.77, 0.95, 1.0];
        assert_eq!(percentiles_of_counts(&values, &counts, &ps), percentiles(&mut row, &ps));
    }

    #[test]
    fn compensated_mean_is_exact_where_naive_summation_is_not() {
        let mut v = vec![1e16, 1.0, -1e16];
        v.extend(std::iter::repeat_n(1.0, 7));
        assert_eq!(mean(&v), 0.8);
    }
}
