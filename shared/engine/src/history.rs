//! The embedded table of annual US returns, 1928–2024, that the `bootstrap` and `historical`
//! return models replay and from which the default assumptions are computed.
//!
//! Source: Aswath Damodaran, "Historical Returns on Stocks, Bonds and Bills: 1928-2024"
//! (NYU Stern, histretSP data set), used with attribution. Columns: `stock` = S&P 500 with
//! dividends reinvested, `tbond` = 10-year US Treasury bond, `tbill` = 3-month Treasury bill,
//! `cpi` = consumer price inflation, all in percent. The file sits beside this crate in
//! `data/` (in this crate) with its README.

use std::sync::LazyLock;

const CSV: &str = include_str!("../data/us_annual_returns_1928_2024.csv");

/// One calendar year of the table, as fractions (0.1 = 10 %).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct HistoricalYear {
    pub(crate) year: u16,
    /// S&P 500 total return.
    pub(crate) stocks: f64,
    /// 10-year Treasury bond total return.
    pub(crate) bonds: f64,
    /// 3-month Treasury bill return.
    pub(crate) cash: f64,
    /// CPI inflation.
    pub(crate) inflation: f64,
}

static TABLE: LazyLock<Vec<HistoricalYear>> = LazyLock::new(|| parse(CSV));

/// Every year of the embedded table, oldest first.
pub(crate) fn table() -> &'static [HistoricalYear] {
    &TABLE
}

fn parse(csv: &str) -> Vec<HistoricalYear> {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().expect("embedded table has a header");
    assert_eq!(header.trim(), "year,stock,tbill,tbond,cpi", "embedded table layout changed");
    lines
        .map(|line| {
            let cells: Vec<&str> = line.trim().split(',').collect();
            let num = |i: usize| -> f64 {
                cells[i]
                    .parse::<f64>()
                    .unwrap_or_else(|_| panic!("bad number in embedded table: {line}"))
                    / 100.0
            };
            HistoricalYear {
                year: cells[0].parse().expect("year"),
                stocks: num(1),
                cash: num(2),
                bonds: num(3),
                inflation: num(4),
            }
        })
        .collect()
}

/// Arithmetic mean, sample standard deviation (n − 1) and the correlation matrix of a set of
/// series of equal length.
pub(crate) struct SampleMoments {
    pub(crate) mean: Vec<f64>,
    pub(crate) std_dev: Vec<f64>,
    pub(crate) correlation: Vec<Vec<f64>>,
}

pub(crate) fn sample_moments(series: &[Vec<f64>]) -> SampleMoments {
    let n = series[0].len() as f64;
    let mean: Vec<f64> = series.iter().map(|s| s.iter().sum::<f64>() / n).collect();
    let cov = |a: usize, b: usize| -> f64 {
        series[a].iter().zip(&series[b]).map(|(x, y)| (x - mean[a]) * (y - mean[b])).sum::<f64>()
            / (n - 1.0)
    };
    let std_dev: Vec<f64> = (0..series.len()).map(|a| cov(a, a).sqrt()).collect();
    let correlation = (0..series.len())
        .map(|a| {
            (0..series.len())
                .map(|b| if a == b { 1.0 } else { cov(a, b) / (std_dev[a] * std_dev[b]) })
                .collect()
        })
        .collect();
    SampleMoments { mean, std_dev, correlation }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_table_matches_the_values_its_source_publishes() {
        let t = table();
        assert_eq!(t.len(), 97);
        assert_eq!((t[0].year, t[96].year), (1928, 2024));
        let year = |y: u16| t.iter().find(|r| r.year == y).unwrap();
        assert_eq!(year(1931).stocks, -0.4384);
        assert_eq!(year(2008).stocks, -0.3655);
        assert_eq!(year(2008).bonds, 0.2010);
        assert_eq!(year(2022).stocks, -0.1804);
        assert_eq!(year(2022).bonds, -0.1783);
        let mean = |f: fn(&HistoricalYear) -> f64| t.iter().map(f).sum::<f64>() / 97.0;
        // The data README gives the arithmetic means to two decimals (in percent).
        assert!((mean(|r| r.stocks) - 0.1179).abs() < 0.00005);
        assert!((mean(|r| r.bonds) - 0.0479).abs() < 0.00005);
        assert!((mean(|r| r.cash) - 0.0336).abs() < 0.00005);
        assert!((mean(|r| r.inflation) - 0.0311).abs() < 0.00005);
    }
}
