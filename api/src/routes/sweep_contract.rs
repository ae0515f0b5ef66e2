//! TEMPORARY STAND-INS, to be deleted when the back half of issue 14 is merged.
//!
//! The sweep's routes (`routes::sweeps`) are written against `find_sweep` and `find_cell`,
//! which the back half provides in `routes::results`. Until then these copies of their
//! signatures and of the views they return (as the contract words them) let the front
//! half compile and be tested on drawn data; they find no sweep at all (every id is a 404).

use portfolio_engine::SimulationResult;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::results::parse_id;
use crate::state::AppState;

/// One axis of a sweep: the field swept and its values, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AxisView {
    pub(crate) field: String,
    pub(crate) values: Vec<f64>,
}

/// The figures of one finished cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CellSummary {
    pub(crate) index: u32,
    pub(crate) values: Vec<f64>,
    pub(crate) success_probability: f64,
    pub(crate) success_probability_stderr: Option<f64>,
    pub(crate) median_terminal_real: f64,
    pub(crate) p10_terminal_real: f64,
    pub(crate) median_depletion_year: Option<f64>,
    pub(crate) safe_monthly_spending: Option<f64>,
}

/// The `solve` of a sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SweepSolve {
    pub(crate) target_success: f64,
}

/// A sweep as `GET /results/{id}` shows it in its `sweep` member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SweepView {
    pub(crate) axes: Vec<AxisView>,
    pub(crate) base: serde_json::Map<String, serde_json::Value>,
    pub(crate) solve: Option<SweepSolve>,
    pub(crate) cells_total: u32,
    pub(crate) cells_done: u32,
    pub(crate) cells: Vec<CellSummary>,
}

/// One cell with its plain request and full result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CellView {
    pub(crate) index: u32,
    pub(crate) values: Vec<f64>,
    pub(crate) request: serde_json::Value,
    pub(crate) result: SimulationResult,
}

/// Stand-in: no job is a sweep yet.
pub(crate) async fn find_sweep(
    _state: &AppState,
    caller: Caller,
    raw_id: &str,
) -> Result<SweepView, ApiError> {
    caller.require_reader()?;
    let id = parse_id(raw_id)?;
    Err(ApiError::NotFound(format!("no job {id}")))
}

/// Stand-in: no job is a sweep yet.
pub(crate) async fn find_cell(
    _state: &AppState,
    caller: Caller,
    raw_id: &str,
    _index: u32,
) -> Result<CellView, ApiError> {
    caller.require_reader()?;
    let id = parse_id(raw_id)?;
    Err(ApiError::NotFound(format!("no job {id}")))
}
