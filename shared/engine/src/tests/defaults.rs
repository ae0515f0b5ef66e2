//! The default assumptions are the moments of the embedded table, as docs/model.md states
//! them.

use super::reference::table;
use crate::request::Assumptions;

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Sample covariance (divisor n − 1).
fn cov(x: &[f64], y: &[f64]) -> f64 {
    let (mx, my) = (mean(x), mean(y));
    x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum::<f64>() / (x.len() - 1) as f64
}

#[test]
fn default_assumptions_are_the_tables_means_standard_deviations_and_correlations() {
    let t = table();
    let series: [Vec<f64>; 4] = [
        t.iter().map(|r| r.stocks).collect(),
        t.iter().map(|r| r.bonds).collect(),
        t.iter().map(|r| r.cash).collect(),
        t.iter().map(|r| r.inflation).collect(),
    ];
    let sd: Vec<f64> = series.iter().map(|s| cov(s, s).sqrt()).collect();
    let d = Assumptions::historical();
    let got_mean =
        [d.stocks.mean_return, d.bonds.mean_return, d.cash.mean_return, d.inflation.mean];
    let got_sd =
        [d.stocks.volatility, d.bonds.volatility, d.cash.volatility, d.inflation.volatility];
    // docs/model.md, "Default assumptions", to 4 decimals.
    let documented_mean = [0.1179, 0.0479, 0.0336, 0.0311];
    let documented_sd = [0.1950, 0.0794, 0.0300, 0.0392];
    let documented_corr = [[1.0, 0.0172, -0.0267], [0.0172, 1.0, 0.2691], [-0.0267, 0.2691, 1.0]];
    for k in 0..4 {
        // Against this test's own computation: the same sums in another order, 1e-12.
        assert!((got_mean[k] - mean(&series[k])).abs() < 1e-12, "mean {k}");
        assert!((got_sd[k] - sd[k]).abs() < 1e-12, "standard deviation {k}");
        // Against the documentation: rounding to 4 decimals is within 5e-5.
        assert!(
            (got_mean[k] - documented_mean[k]).abs() <= 5e-5,
            "documented mean {k}: {}",
            got_mean[k]
        );
        assert!((got_sd[k] - documented_sd[k]).abs() <= 5e-5, "documented sd {k}: {}", got_sd[k]);
    }
    for i in 0..3 {
        for j in 0..3 {
            let rho = if i == j { 1.0 } else { cov(&series[i], &series[j]) / (sd[i] * sd[j]) };
            assert!((d.correlation[i][j] - rho).abs() < 1e-12, "correlation {i},{j}");
            let doc = documented_corr[i][j];
            assert!((d.correlation[i][j] - doc).abs() <= 5e-5, "documented correlation {i},{j}");
        }
    }
}
