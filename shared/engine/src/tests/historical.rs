//! The `historical` model: one scenario per rolling window of the table, no randomness, and
//! each window's outcome equal to a replay of the table done here by hand.

use serde_json::json;

use super::reference::table;
use super::{assert_close, fingerprint, request, simulate};
use crate::request::SimulationRequest;

fn historical(years: u32, spending: f64) -> SimulationRequest {
    request(json!({
        "starting_portfolio": 1_000_000.0,
        "monthly_spending": spending,
        "years": years,
        "n_scenarios": 5,
        "allocation": {"stocks": 0.6, "bonds": 0.4},
        "annual_fee": 0.002,
        "return_model": {"kind": "historical"}
    }))
}

#[test]
fn historical_runs_exactly_one_window_per_start_year_that_fits_in_the_table() {
    let t = table();
    assert_eq!(t.len(), 97, "the table covers 1928–2024");
    for years in [1u32, 10, 30, 40, 96, 97] {
        let result = simulate(&historical(years, 3_000.0), 1);
        let windows = 97 - years as usize + 1;
        let h = result.historical.as_ref().expect("historical outcome");
        assert_eq!(result.n_scenarios as usize, windows, "{years} years: n_scenarios ignored");
        assert_eq!(h.windows as usize, windows);
        let starts: Vec<u16> = (0..windows).map(|k| 1928 + k as u16).collect();
        assert_eq!(h.start_years, starts);
        assert_eq!(h.outcomes.len(), windows);
        let failed: Vec<u16> =
            h.outcomes.iter().filter(|o| !o.succeeded).map(|o| o.start_year).collect();
        assert_eq!(h.failed_start_years, failed);
        let share = h.outcomes.iter().filter(|o| o.succeeded).count() as f64 / windows as f64;
        assert_eq!(result.success_probability, share);
        // Overlapping windows are not independent draws: no binomial standard error.
        assert_eq!(result.success_probability_stderr, None);
        assert_eq!(result.scenario_months, (windows * years as usize * 12) as u64);
    }
}

#[test]
fn historical_results_do_not_depend_on_the_seed() {
    let r = historical(30, 4_000.0);
    assert_eq!(fingerprint(&simulate(&r, 1)), fingerprint(&simulate(&r, 987_654_321)));
}

/// A by-hand replay of one window: monthly gross (1+r)^(1/12) of each table year for 60/40,
/// rebalanced monthly, spending raised with the table's CPI, 0.2 % fee.
fn replay(start: u16, years: usize, spending: f64) -> (bool, Option<u32>, f64) {
    let t = table();
    let first = t.iter().position(|r| r.year == start).unwrap();
    let mut w = 1_000_000.0f64;
    let mut cpi = 1.0f64;
    for y in 0..years {
        let row = t[first + y];
        let g =
            0.6 * (1.0 + row.stocks).powf(1.0 / 12.0) + 0.4 * (1.0 + row.bonds).powf(1.0 / 12.0);
        for _ in 0..12 {
            let need = spending * cpi;
            if need > w {
                return (false, Some(y as u32 + 1), 0.0);
            }
            w = (w - need) * g * (1.0 - 0.002 / 12.0);
            cpi *= (1.0 + row.inflation).powf(1.0 / 12.0);
        }
    }
    (true, None, w / cpi)
}

#[test]
fn historical_windows_starting_in_1929_and_1966_match_a_replay_of_the_table() {
    // 2,500 a month on a million (3 % a year) survives both of these notorious start years;
    // 4,500 (5.4 %) fails in both. Terminal wealth to 1e-9 relative (rounding only).
    let years = 30;
    for spending in [2_500.0, 4_500.0] {
        let result = simulate(&historical(years, spending), 7);
        let h = result.historical.unwrap();
        for start in [1929u16, 1966] {
            let o = h.outcomes.iter().find(|o| o.start_year == start).unwrap();
            let (succeeded, depletion_year, terminal) = replay(start, years as usize, spending);
            assert_eq!(o.succeeded, succeeded, "{start} at {spending}");
            assert_eq!(o.depletion_year, depletion_year, "{start} at {spending}");
            assert_close(o.terminal_real, terminal, 1e-9, 1.0, &format!("{start} at {spending}"));
            assert_eq!(
                succeeded,
                spending < 3_000.0,
                "{start} at {spending}: the replay disagrees with the case's intent"
            );
        }
    }
}
