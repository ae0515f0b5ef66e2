//! What a job costs, known before it runs: scenario-months (the unit the engine's time grows
//! with) times the number of times the engine may run them. The API refuses a submit whose
//! cost is over the deployment's `MAX_JOB_COST`, so that no single request can hold a worker
//! for hours; the worker's `JOB_TIMEOUT_SECS` is the backstop for what the estimate misses.

use std::fmt;

use crate::SimulationRequest;
use crate::simulation::SOLVER_MAX_ITERATIONS;

/// The cost of one job: `scenarios × months × passes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobCost {
    /// Scenarios the engine runs (every rolling window for `historical`).
    pub scenarios: u64,
    /// Months of the horizon.
    pub months: u64,
    /// The worst-case number of runs over every scenario: 1 without the solver; with it,
    /// every step of its bisection (at most `SOLVER_MAX_ITERATIONS`) plus the final run.
    pub passes: u64,
}

impl JobCost {
    /// Scenario-months times passes.
    pub fn total(&self) -> u64 {
        self.scenarios * self.months * self.passes
    }
}

impl fmt::Display for JobCost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} scenario-months ({} scenarios × {} months × {} pass{})",
            self.total(),
            self.scenarios,
            self.months,
            self.passes,
            if self.passes == 1 { "" } else { "es" }
        )
    }
}

/// The worst-case passes of a request that asks the solver.
pub const SOLVER_PASSES: u64 = SOLVER_MAX_ITERATIONS as u64 + 1;

/// What `request` costs at most.
pub fn cost(request: &SimulationRequest) -> JobCost {
    JobCost {
        scenarios: u64::from(request.effective_scenarios()),
        months: u64::from(request.years) * 12,
        passes: if request.solve.is_some() { SOLVER_PASSES } else { 1 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RequestLimits;

    fn request(json: &str) -> SimulationRequest {
        SimulationRequest::from_json(json.as_bytes(), &RequestLimits::default()).unwrap()
    }

    #[test]
    fn the_cost_is_scenarios_times_months_times_the_solvers_worst_case_passes() {
        let base = r#""starting_portfolio": 1e6, "monthly_spending": 4000"#;
        let cases = [
            (format!(r#"{{{base}, "years": 40, "n_scenarios": 1000000}}"#), 1_000_000, 480, 1),
            (format!(r#"{{{base}, "years": 30}}"#), 10_000, 360, 1),
            (
                format!(r#"{{{base}, "years": 30, "solve": {{"target_success": 0.9}}}}"#),
                10_000,
                360,
                81,
            ),
            // The historical model runs every rolling window, whatever n_scenarios says.
            (
                format!(
                    r#"{{{base}, "years": 30, "n_scenarios": 1000000,
                    "return_model": {{"kind": "historical"}}}}"#
                ),
                68,
                360,
                1,
            ),
        ];
        for (body, scenarios, months, passes) in cases {
            let cost = cost(&request(&body));
            assert_eq!(cost, JobCost { scenarios, months, passes }, "{body}");
            assert_eq!(cost.total(), scenarios * months * passes);
        }
        // The default limit is exactly a million scenarios over 40 years without the solver.
        let full = cost(&request(&format!(r#"{{{base}, "years": 40, "n_scenarios": 1000000}}"#)));
        assert_eq!(full.total(), 480_000_000);
        assert_eq!(
            full.to_string(),
            "480000000 scenario-months (1000000 scenarios × 480 months × 1 pass)"
        );
    }
}
