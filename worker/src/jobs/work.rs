//! What a claimed job asks the engine to do: one plan, or one unit of a sweep (a few cells, each
//! a plain request run exactly as a plain job would run it, so its figures are the same).

use portfolio_engine::request::{RequestLimits, SimulationRequest};
use portfolio_engine::sweep::CellSummary;
use portfolio_engine::{
    EngineError, RequestError, RunOptions, SimulationRequestInput, SimulationResult,
};
use portfolio_shared::store::CellOutcome;
use serde::Deserialize;
use uuid::Uuid;

/// The engine's work for one job.
pub(crate) enum Work {
    Plan(Box<SimulationRequest>),
    Unit { sweep: Uuid, cells: Vec<UnitCell> },
}

/// One cell of a unit, as the API stored it.
pub(crate) struct UnitCell {
    index: u32,
    values: Vec<f64>,
    stored: serde_json::Value,
    request: SimulationRequest,
}

/// What the engine produced.
pub(crate) enum Done {
    Plan(Box<SimulationResult>),
    Unit { cells: Vec<CellOutcome>, scenario_months: u64 },
}

#[derive(Deserialize)]
struct StoredUnit {
    cells: Vec<StoredCell>,
}

#[derive(Deserialize)]
struct StoredCell {
    index: u32,
    values: Vec<f64>,
    request: serde_json::Value,
}

impl Work {
    /// Reads a claimed job's stored request (`sweep`: the sweep it is a unit of).
    pub(crate) fn parse(request: &serde_json::Value, sweep: Option<Uuid>) -> Result<Self, String> {
        let Some(sweep) = sweep else {
            return parse_stored(request).map(|r| Self::Plan(Box::new(r)));
        };
        let unit: StoredUnit =
            serde_json::from_value(request.clone()).map_err(|e| format!("unit: {e}"))?;
        let cells = unit
            .cells
            .into_iter()
            .map(|c| {
                let request =
                    parse_stored(&c.request).map_err(|e| format!("cell {}: {e}", c.index))?;
                Ok(UnitCell { index: c.index, values: c.values, stored: c.request, request })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self::Unit { sweep, cells })
    }

    /// The sweep this work is a unit of.
    pub(crate) fn sweep(&self) -> Option<Uuid> {
        match self {
            Self::Plan(_) => None,
            Self::Unit { sweep, .. } => Some(*sweep),
        }
    }

    /// What the work costs at most: its plan's, or the sum of its cells' (run in turn).
    pub(crate) fn cost(&self) -> u64 {
        match self {
            Self::Plan(request) => portfolio_engine::cost(request).total(),
            Self::Unit { cells, .. } => {
                cells.iter().map(|c| portfolio_engine::cost(&c.request).total()).sum()
            }
        }
    }

    /// Runs the work on the calling thread's rayon pool. A unit runs its cells in turn and
    /// stops at the first cancel; a panic in a cell names the cell. `injected_panic`
    /// (`WORKER_FAULT_INJECTION=panic:<seed>`) panics where the engine would: in the first
    /// cell of a unit.
    pub(crate) fn run(
        &self,
        seed: u64,
        options: &RunOptions,
        injected_panic: bool,
    ) -> Result<Done, EngineError> {
        let engine = |request: &SimulationRequest| {
            if injected_panic {
                panic!("injected fault (WORKER_FAULT_INJECTION): panic");
            }
            portfolio_engine::run(request, seed, options)
        };
        match self {
            Self::Plan(request) => engine(request).map(|r| Done::Plan(Box::new(r))),
            Self::Unit { cells, .. } => {
                let mut done = Vec::with_capacity(cells.len());
                let mut scenario_months = 0;
                for cell in cells {
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        engine(&cell.request)
                    }))
                    .unwrap_or_else(|payload| {
                        let message = crate::jobs::simulate::panic_message(payload);
                        panic!("cell {}: {message}", cell.index)
                    })?;
                    scenario_months += result.scenario_months;
                    let summary = CellSummary::of(cell.index, cell.values.clone(), &result);
                    done.push(CellOutcome {
                        index: cell.index as i32,
                        request: cell.stored.clone(),
                        summary: serde_json::to_value(&summary).expect("summaries serialise"),
                        result: serde_json::to_value(&result).expect("results serialise"),
                    });
                }
                Ok(Done::Unit { cells: done, scenario_months })
            }
        }
    }
}

fn parse_stored(request: &serde_json::Value) -> Result<SimulationRequest, String> {
    let input: SimulationRequestInput =
        serde_json::from_value(request.clone()).map_err(|e| e.to_string())?;
    SimulationRequest::from_input(input, &RequestLimits::default()).map_err(|e| match e {
        RequestError::Malformed(m) => m,
        RequestError::Invalid(errors) => errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; "),
    })
}
