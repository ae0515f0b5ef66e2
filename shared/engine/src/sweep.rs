//! A sweep: one request naming a grid of plans, the base request with one or two of its fields
//! varied, checked at the edge as a plain request is.
//!
//! Every cell is itself a plain request: the body as the user wrote it (without `sweep`) with
//! the cell's values written in, checked by the same rules. Written into the body, not into the
//! base's normalised request, so that a default which follows a swept field (an income's
//! `end_year` follows `years`) is the cell's own, as it would be in a plain submit. So a cell's
//! figures are exactly those of a plain submit of that request with the same seed, whoever runs
//! it: the promise the explorer rests on (common random numbers across the grid, so
//! neighbouring cells differ only by the change of plan).

use std::ops::Range;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::request::{
    RequestError, RequestLimits, SimulationRequest, SimulationRequestInput, related,
};
use crate::{FieldError, SimulationResult};

/// The most axes a sweep may have.
pub const MAX_AXES: usize = 2;
/// The most cells a sweep may have unless the deployment says otherwise (21 × 21).
pub const DEFAULT_MAX_CELLS: u32 = 441;

/// A field a sweep may vary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum SweepField {
    #[serde(rename = "monthly_spending")]
    MonthlySpending,
    /// Stocks' weight; bonds take the rest, cash keeps its weight.
    #[serde(rename = "allocation.stocks")]
    AllocationStocks,
    #[serde(rename = "years")]
    Years,
    #[serde(rename = "starting_portfolio")]
    StartingPortfolio,
    #[serde(rename = "annual_fee")]
    AnnualFee,
}

impl SweepField {
    pub const ALL: [SweepField; 5] = [
        Self::MonthlySpending,
        Self::AllocationStocks,
        Self::Years,
        Self::StartingPortfolio,
        Self::AnnualFee,
    ];

    /// The field's JSON path, as requests and answers name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::MonthlySpending => "monthly_spending",
            Self::AllocationStocks => "allocation.stocks",
            Self::Years => "years",
            Self::StartingPortfolio => "starting_portfolio",
            Self::AnnualFee => "annual_fee",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The field's value in a checked request.
    pub fn value_in(self, request: &SimulationRequest) -> f64 {
        match self {
            Self::MonthlySpending => request.monthly_spending,
            Self::AllocationStocks => request.allocation.stocks,
            Self::Years => f64::from(request.years),
            Self::StartingPortfolio => request.starting_portfolio,
            Self::AnnualFee => request.annual_fee,
        }
    }

    /// Why `value` can be no plan's value of this field, by the field's own rule (the message a
    /// plain request is told); `None` when it may be one. Checked on the axis, so that a value
    /// out of range is named once where it was given, not in every cell that holds it.
    fn refuses(self, value: f64) -> Option<String> {
        use crate::request::rules;
        match self {
            Self::MonthlySpending => rules::MONTHLY_SPENDING.check(value).err(),
            Self::AllocationStocks => rules::ALLOCATION[0].check(value).err(),
            Self::StartingPortfolio => rules::STARTING_PORTFOLIO.check(value).err(),
            Self::AnnualFee => rules::ANNUAL_FEE.check(value).err(),
            Self::Years => (!(1.0..=f64::from(rules::MAX_YEARS)).contains(&value))
                .then(|| rules::YEARS.message_with_max(&rules::MAX_YEARS)),
        }
    }

    /// Writes `value` into a request's JSON.
    fn write(self, request: &mut Map<String, Value>, value: f64) {
        match self {
            Self::Years => {
                request.insert("years".into(), Value::from(value as u64));
            }
            Self::AllocationStocks => {
                // Absent or `null` in a valid body: the default weights, whose cash is 0.
                let allocation = request.entry("allocation").or_insert(Value::Null);
                if !allocation.is_object() {
                    *allocation = Value::Object(Map::new());
                }
                let allocation = allocation.as_object_mut().expect("made an object above");
                let cash = allocation.get("cash").and_then(Value::as_f64).unwrap_or(0.0);
                // Bonds take the rest; a rest within rounding of zero is zero, not -1e-17.
                let rest = 1.0 - cash - value;
                let bonds = if rest.abs() < 1e-12 { 0.0 } else { rest };
                allocation.insert("stocks".into(), Value::from(value));
                allocation.insert("bonds".into(), Value::from(bonds));
                allocation.insert("cash".into(), Value::from(cash));
            }
            other => {
                request.insert(other.name().into(), Value::from(value));
            }
        }
    }
}

/// One axis of a sweep: a field and the values it takes, in increasing order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Axis {
    pub field: SweepField,
    pub values: Vec<f64>,
}

/// The `sweep` member of a stored request: its axes, every one given by its values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SweepSpec {
    pub axes: Vec<Axis>,
}

/// One plan of the grid.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Row-major: `i0 * len(axes[1]) + i1`, the first axis outer.
    pub index: u32,
    /// The value of each axis, in axis order.
    pub values: Vec<f64>,
    /// The plain request this cell is (without a seed until [`SimulationRequest::with_seed`]).
    pub request: SimulationRequest,
}

/// A checked sweep: the base request, its axes and every cell, each a valid plain request.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub base: SimulationRequest,
    pub spec: SweepSpec,
    pub cells: Vec<Cell>,
    /// The body as written, without `sweep`: what the cells were expanded from.
    body: Map<String, Value>,
}

impl Sweep {
    /// Reads a body that carries a `sweep` member; `None` for any other body (including one
    /// that is not JSON: the plain parser names its error).
    pub fn from_json(body: &[u8], limits: &RequestLimits) -> Option<Result<Self, RequestError>> {
        let Ok(Value::Object(mut tree)) = serde_json::from_slice::<Value>(body) else {
            return None;
        };
        let raw_sweep = tree.remove("sweep")?;
        let checked = Self::check(&tree, &raw_sweep, limits);
        // The tree kept one value of a key given twice: the key is named, and what the checks
        // said of the value kept is not.
        let mut repeated = crate::request::repeated_keys(body);
        if repeated.is_empty() {
            return Some(checked);
        }
        Some(match checked {
            Ok(_) => Err(RequestError::Invalid(repeated)),
            Err(RequestError::Invalid(rest)) => {
                // Within the sweep, what is checked beside a repeated key (an axis' values
                // beside its `field`) was checked against the value the tree kept: a guess.
                // Coarse on purpose, and the sweep's only: every error of that object goes,
                // those that did not depend on the repeated key too, until it is given once.
                let object_of = |field: &str| {
                    field
                        .rsplit_once('.')
                        .map(|(object, _)| object.to_owned())
                        .filter(|o| o.starts_with("sweep"))
                };
                let new = |e: &FieldError| {
                    !repeated.iter().any(|r| {
                        related(&r.field, &e.field)
                            || object_of(&r.field).is_some_and(|o| related(&o, &e.field))
                    })
                };
                let rest: Vec<FieldError> = rest.into_iter().filter(new).collect();
                repeated.extend(rest);
                Err(RequestError::Invalid(repeated))
            }
            Err(malformed) => Err(malformed),
        })
    }

    fn check(
        body: &Map<String, Value>,
        raw_sweep: &Value,
        limits: &RequestLimits,
    ) -> Result<Self, RequestError> {
        let base_bytes = serde_json::to_vec(body).expect("a JSON tree serialises");
        let base = SimulationRequest::from_json(&base_bytes, limits);
        let spec = parse_spec(raw_sweep, limits.max_sweep_cells);
        let (base, spec) = match (base, spec) {
            (Ok(base), Ok(spec)) => (base, spec),
            (Err(RequestError::Malformed(m)), _) => return Err(RequestError::Malformed(m)),
            (Err(RequestError::Invalid(mut a)), Err(b)) => {
                a.extend(b);
                return Err(RequestError::Invalid(a));
            }
            (Err(e), Ok(_)) => return Err(e),
            (Ok(_), Err(b)) => return Err(RequestError::Invalid(b)),
        };
        if base.solve.is_some() {
            let mut errors = Vec::new();
            if spec.axes.len() != 1 {
                errors.push(FieldError::new("solve", "a sweep with solve takes exactly one axis"));
            }
            if let Some(k) = spec.axes.iter().position(|a| a.field == SweepField::MonthlySpending) {
                errors.push(FieldError::new(
                    format!("sweep.axes[{k}].field"),
                    "monthly_spending is what solve finds: sweep another field with it",
                ));
            }
            if !errors.is_empty() {
                return Err(RequestError::Invalid(errors));
            }
        }
        let cells = expand(body, &spec, limits)?;
        Ok(Self { base, spec, cells, body: body.clone() })
    }

    /// The JSON Schema of a body's `sweep` member, as the OpenAPI document publishes it. The rules
    /// it cannot state relate fields (values increasing; whole years; the cell count; every cell a
    /// valid plan; the sum of the cells' costs); each is answered by a 422 naming its field.
    pub fn schema(max_cells: u32) -> Value {
        let names: Vec<&str> = SweepField::ALL.iter().map(|f| f.name()).collect();
        let field = serde_json::json!({
            "type": "string",
            "enum": names,
            "description": "The field varied: allocation.stocks moves bonds the other way, cash keeps its weight."
        });
        serde_json::json!({
            "type": "object",
            "description": "Run a grid of plans instead of one: the body's plan with one or two of its fields             varied. Every cell is the plain request with the cell's values and the body's seed, so its             figures equal a plain submit of it. With `solve`, one axis, not `monthly_spending`.",
            "additionalProperties": false,
            "required": ["axes"],
            "properties": {
                "axes": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_AXES,
                    "items": {
                        "oneOf": [
                            {
                                "type": "object",
                                "additionalProperties": false,
                                "required": ["field", "values"],
                                "properties": {
                                    "field": field,
                                    "values": {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": max_cells,
                                        "items": {"type": "number"},
                                        "description": "Strictly increasing."
                                    }
                                }
                            },
                            {
                                "type": "object",
                                "additionalProperties": false,
                                "required": ["field", "from", "to", "steps"],
                                "properties": {
                                    "field": field,
                                    "from": {"type": "number"},
                                    "to": {"type": "number", "description": "Greater than `from`."},
                                    "steps": {"type": "integer", "minimum": 2, "maximum": max_cells}
                                }
                            }
                        ]
                    }
                }
            },
            "examples": [{"axes": [
                {"field": "monthly_spending", "from": 3000, "to": 5000, "steps": 9},
                {"field": "allocation.stocks", "values": [0.2, 0.4, 0.6, 0.8, 1.0]}
            ]}]
        })
    }

    /// The plan's own value of each swept field, by field name.
    pub fn base_values(&self) -> Map<String, Value> {
        base_values(&self.base, &self.spec)
    }

    /// The request stored for the sweep: the body as written (not the base's normalised form,
    /// whose defaults would pin, say, an income's `end_year` to the base's `years` in every
    /// cell), with its `seed` and its axes as values. Expanded again, it gives the same cells.
    pub fn to_json(&self, seed: u64) -> Value {
        let mut stored = self.body.clone();
        stored.insert("seed".into(), Value::from(seed));
        stored.insert("sweep".into(), serde_json::to_value(&self.spec).expect("axes serialise"));
        Value::Object(stored)
    }

    /// What makes two sweeps "the same body" (an `Idempotency-Key`'s replay): the same plan,
    /// the same cells, each as its normalised request (seed included only if the body named
    /// one), on the same axes. The plan counts on its own: its value of a swept field changes
    /// no cell, but it is the sweep's `base` and its `request`.
    pub fn fingerprint(&self) -> Value {
        let cells: Vec<Value> = self.cells.iter().map(|c| c.request.to_json()).collect();
        serde_json::json!({ "base": self.base.to_json(), "cells": cells, "sweep": self.spec })
    }
}

/// The plan's own value of each swept field, by field name.
pub fn base_values(base: &SimulationRequest, spec: &SweepSpec) -> Map<String, Value> {
    spec.axes
        .iter()
        .map(|a| (a.field.name().to_owned(), Value::from(a.field.value_in(base))))
        .collect()
}

/// Reads a stored sweep back: its base request and its axes.
pub fn from_stored(stored: &Value) -> Result<(SimulationRequest, SweepSpec), String> {
    let mut tree = stored.as_object().cloned().ok_or("the stored sweep is not an object")?;
    let spec = tree.remove("sweep").ok_or("the stored sweep has no axes")?;
    let spec: SweepSpec = serde_json::from_value(spec).map_err(|e| e.to_string())?;
    let input: SimulationRequestInput =
        serde_json::from_value(Value::Object(tree)).map_err(|e| e.to_string())?;
    let base = SimulationRequest::from_input(input, &RequestLimits::default())
        .map_err(|e| e.to_string())?;
    Ok((base, spec))
}

/// The values of one cell, as text: `monthly_spending = 3000, allocation.stocks = 0.6`.
pub fn describe(spec: &SweepSpec, values: &[f64]) -> String {
    spec.axes
        .iter()
        .zip(values)
        .map(|(a, v)| format!("{} = {v}", a.field.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_spec(raw: &Value, max_cells: u32) -> Result<SweepSpec, Vec<FieldError>> {
    let err = |field: &str, message: &str| vec![FieldError::new(field, message)];
    let Value::Object(sweep) = raw else {
        return Err(err("sweep", "must be an object with `axes`"));
    };
    // Every broken rule is named at once: unknown keys beside the axes' own errors.
    let mut errors: Vec<FieldError> = sweep
        .keys()
        .filter(|k| *k != "axes")
        .map(|k| FieldError::new(format!("sweep.{k}"), "unknown field: a sweep has only `axes`"))
        .collect();
    let raw_axes = match sweep.get("axes") {
        Some(Value::Array(axes)) if (1..=MAX_AXES).contains(&axes.len()) => axes,
        _ => {
            errors.extend(err("sweep.axes", "must be a list of 1 or 2 axes"));
            return Err(errors);
        }
    };
    let mut axes = Vec::new();
    for (k, raw_axis) in raw_axes.iter().enumerate() {
        match parse_axis(raw_axis, &format!("sweep.axes[{k}]"), max_cells) {
            Ok(axis) => axes.push(axis),
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if axes.len() == 2 && axes[0].field == axes[1].field {
        return Err(err("sweep.axes[1].field", "must differ from the first axis's field"));
    }
    let cells: u64 = axes.iter().map(|a| a.values.len() as u64).product();
    if cells > u64::from(max_cells) {
        return Err(err(
            "sweep.axes",
            &format!(
                "the grid has {cells} cells; at most {max_cells} (MAX_SWEEP_CELLS) are allowed"
            ),
        ));
    }
    Ok(SweepSpec { axes })
}

fn parse_axis(raw: &Value, at: &str, max_cells: u32) -> Result<Axis, Vec<FieldError>> {
    let err = |field: &str, message: String| vec![FieldError::new(format!("{at}{field}"), message)];
    let Value::Object(axis) = raw else {
        return Err(err(
            "",
            "must be an object with `field` and `values` (or `from`, `to`, `steps`)".into(),
        ));
    };
    let names = SweepField::ALL.map(SweepField::name).join(", ");
    // The axis's field and its unknown keys are told together; its values only once both are
    // right (what they may be depends on the field).
    let mut errors: Vec<FieldError> = axis
        .keys()
        .filter(|k| !["field", "values", "from", "to", "steps"].contains(&k.as_str()))
        .flat_map(|k| {
            err(
                &format!(".{k}"),
                "unknown field: an axis has `field` and `values`, or `field`, `from`, `to` and \
                 `steps`"
                    .into(),
            )
        })
        .collect();
    let field = match axis.get("field") {
        Some(Value::String(name)) => {
            SweepField::parse(name).ok_or_else(|| format!("must be one of {names}"))
        }
        _ => Err(format!("is required: one of {names}")),
    };
    let field = match field {
        Ok(field) if errors.is_empty() => field,
        Ok(_) => return Err(errors),
        Err(rule) => {
            errors.extend(err(".field", rule));
            return Err(errors);
        }
    };
    let values = match (axis.get("values"), axis.get("from"), axis.get("to"), axis.get("steps")) {
        (Some(values), None, None, None) => {
            let Value::Array(values) = values else {
                return Err(err(".values", "must be a list of numbers".into()));
            };
            if values.is_empty() || values.len() > max_cells as usize {
                return Err(err(".values", format!("must hold from 1 to {max_cells} numbers")));
            }
            let numbers: Option<Vec<f64>> = values.iter().map(Value::as_f64).collect();
            let numbers =
                numbers.ok_or_else(|| err(".values", "must be a list of numbers".into()))?;
            if numbers.windows(2).any(|w| w[0] >= w[1]) {
                return Err(err(".values", "must be strictly increasing".into()));
            }
            numbers
        }
        (None, Some(from), Some(to), Some(steps)) => {
            let (Some(from), Some(to)) = (from.as_f64(), to.as_f64()) else {
                return Err(err("", "`from` and `to` must be numbers".into()));
            };
            // A whole number as JSON Schema means it (`9.0` and `1e1` too, as for every integer
            // field: `request::whole`); the range keeps it far below 2^53, where floats are exact.
            let steps = steps
                .as_f64()
                .filter(|x| x.fract() == 0.0 && (2.0..=f64::from(max_cells)).contains(x))
                .map(|x| x as u64);
            let Some(steps) = steps else {
                return Err(err(".steps", format!("must be a whole number from 2 to {max_cells}")));
            };
            if from >= to {
                return Err(err(".to", "must be greater than `from`".into()));
            }
            // The ends first: a range the field refuses is named as such, and its width then
            // stays finite (±1.7e308 made infinite steps, called "too close").
            if let Some((value, why)) =
                [from, to].into_iter().find_map(|v| field.refuses(v).map(|why| (v, why)))
            {
                return Err(err("", format!("holds {value}, but {} {why}", field.name())));
            }
            let last = (steps - 1) as f64;
            // To 12 significant digits, so 0.2 → 1.0 in 5 steps is 0.6, not 0.6000000000000001.
            let tidy = |v: f64| format!("{v:.11e}").parse::<f64>().unwrap_or(v);
            let values: Vec<f64> =
                (0..steps).map(|i| tidy(from + (to - from) * i as f64 / last)).collect();
            // Steps closer than the rounding would repeat a plan.
            if values.windows(2).any(|w| w[0] >= w[1]) {
                return Err(err(
                    "",
                    format!("`from` and `to` are too close for {steps} distinct steps"),
                ));
            }
            values
        }
        _ => {
            return Err(err("", "give either `values`, or all of `from`, `to` and `steps`".into()));
        }
    };
    // A value the field refuses is named where the client wrote it: the list, or the range
    // that made the list.
    let listed = axis.contains_key("values");
    if field == SweepField::Years
        && let Some(part) = values.iter().find(|v| v.fract() != 0.0)
    {
        return Err(if listed {
            err(".values", "years must be whole numbers of years".into())
        } else {
            err(
                "",
                format!(
                    "`from`, `to` and `steps` must give whole numbers of years; they give {part}"
                ),
            )
        });
    }
    if let Some((value, why)) = values.iter().find_map(|&v| field.refuses(v).map(|why| (v, why))) {
        let at = if listed { ".values" } else { "" };
        return Err(err(at, format!("holds {value}, but {} {why}", field.name())));
    }
    Ok(Axis { field, values })
}

/// Every cell of the grid, each `body` (a valid plain request) with the cell's values written
/// in and checked as a plain request; the errors of the first few invalid cells, each naming
/// the cell, its values and the field.
fn expand(
    body: &Map<String, Value>,
    spec: &SweepSpec,
    limits: &RequestLimits,
) -> Result<Vec<Cell>, RequestError> {
    const REPORTED: usize = 5;
    let mut cells = Vec::new();
    let mut errors = Vec::new();
    let mut invalid = 0;
    for (index, values) in grid(spec).into_iter().enumerate() {
        let mut json = body.clone();
        for (axis, value) in spec.axes.iter().zip(&values) {
            axis.field.write(&mut json, *value);
        }
        let checked = serde_json::from_value::<SimulationRequestInput>(Value::Object(json))
            .map_err(|e| RequestError::Invalid(vec![FieldError::new("sweep", e.to_string())]))
            .and_then(|input| SimulationRequest::from_input(input, limits));
        match checked {
            Ok(request) => cells.push(Cell { index: index as u32, values, request }),
            Err(RequestError::Invalid(broken)) => {
                invalid += 1;
                if invalid <= REPORTED {
                    let about = describe(spec, &values);
                    errors.extend(broken.into_iter().map(|e| {
                        FieldError::new(
                            format!("sweep.cells[{index}].{}", e.field),
                            format!(
                                "cell {index} ({about}) is not a valid plan: {} {}",
                                e.field, e.message
                            ),
                        )
                    }));
                }
            }
            Err(e) => return Err(e),
        }
    }
    if errors.is_empty() {
        Ok(cells)
    } else {
        if invalid > REPORTED {
            errors.push(FieldError::new(
                "sweep",
                format!("{invalid} cells are not valid plans; the first {REPORTED} are listed"),
            ));
        }
        Err(RequestError::Invalid(errors))
    }
}

/// The values of every cell, row-major (the first axis outer).
pub fn grid(spec: &SweepSpec) -> Vec<Vec<f64>> {
    spec.axes.iter().fold(vec![Vec::new()], |cells, axis| {
        cells
            .iter()
            .flat_map(|prefix| {
                axis.values.iter().map(move |v| {
                    let mut cell = prefix.clone();
                    cell.push(*v);
                    cell
                })
            })
            .collect()
    })
}

/// Splits cells (by their costs, in order) into consecutive units of about `target` each:
/// a unit takes cells until the next would take it past `target`, and holds at least one.
pub fn units(costs: &[u64], target: u64) -> Vec<Range<usize>> {
    let mut units = Vec::new();
    let (mut start, mut sum) = (0, 0u64);
    for (i, cost) in costs.iter().enumerate() {
        if i > start && sum.saturating_add(*cost) > target {
            units.push(start..i);
            (start, sum) = (i, 0);
        }
        sum = sum.saturating_add(*cost);
    }
    if start < costs.len() {
        units.push(start..costs.len());
    }
    units
}

/// One cell's figures on the map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CellSummary {
    pub index: u32,
    /// The value of each axis, in axis order.
    pub values: Vec<f64>,
    pub success_probability: f64,
    pub success_probability_stderr: Option<f64>,
    /// Median real wealth at the horizon (today's money).
    pub median_terminal_real: f64,
    /// 10th percentile of real wealth at the horizon.
    pub p10_terminal_real: f64,
    /// Median year of depletion among failed scenarios; `null` if none failed.
    pub median_depletion_year: Option<f64>,
    /// With `solve`: the safe monthly spending at the target.
    pub safe_monthly_spending: Option<f64>,
}

impl CellSummary {
    pub fn of(index: u32, values: Vec<f64>, result: &SimulationResult) -> Self {
        let last = |series: &Vec<f64>| series.last().copied().unwrap_or(0.0);
        Self {
            index,
            values,
            success_probability: result.success_probability,
            success_probability_stderr: result.success_probability_stderr,
            median_terminal_real: last(&result.percentiles.p50),
            p10_terminal_real: last(&result.percentiles.p10),
            median_depletion_year: result.median_depletion_year,
            safe_monthly_spending: result.solve.as_ref().map(|s| s.safe_monthly_spending),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str =
        r#""starting_portfolio": 1000000, "monthly_spending": 4000, "years": 30, "seed": 7"#;

    fn sweep(axes: &str) -> Result<Sweep, RequestError> {
        let body = format!(r#"{{{BASE}, "sweep": {{"axes": {axes}}}}}"#);
        Sweep::from_json(body.as_bytes(), &RequestLimits::default()).expect("a sweep")
    }

    fn invalid(axes: &str) -> Vec<FieldError> {
        match sweep(axes) {
            Err(RequestError::Invalid(errors)) => errors,
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn every_broken_rule_of_a_sweep_is_named_at_once() {
        let fields = |errors: Vec<FieldError>| -> Vec<String> {
            errors.into_iter().map(|e| e.field).collect()
        };
        assert_eq!(
            fields(invalid(r#"[{"field": "nope", "values": [1], "zzz": 2}]"#)),
            ["sweep.axes[0].zzz", "sweep.axes[0].field"]
        );
        let body = format!(
            r#"{{{BASE}, "sweep": {{"axes": [{{"field": "nope", "values": [1]}}], "extra": 1}}}}"#
        );
        match Sweep::from_json(body.as_bytes(), &RequestLimits::default()).expect("a sweep") {
            Err(RequestError::Invalid(errors)) => {
                assert_eq!(fields(errors), ["sweep.extra", "sweep.axes[0].field"]);
            }
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn a_body_without_sweep_is_not_a_sweep() {
        let body = format!("{{{BASE}}}");
        assert!(Sweep::from_json(body.as_bytes(), &RequestLimits::default()).is_none());
        assert!(Sweep::from_json(b"not json", &RequestLimits::default()).is_none());
    }

    #[test]
    fn a_key_given_twice_in_a_sweep_is_named_not_read_as_the_last_one() {
        let axes = r#"[{"field": "monthly_spending", "values": [3000, 4000]}]"#;
        let body = format!(
            r#"{{{BASE}, "years": 0, "annual_fee": 2, "sweep": {{"axes": {axes}, "axes": []}}}}"#
        );
        let errors = match Sweep::from_json(body.as_bytes(), &RequestLimits::default()) {
            Some(Err(RequestError::Invalid(errors))) => errors,
            other => panic!("expected field errors, got {other:?}"),
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["years", "sweep.axes", "annual_fee"], "{errors:?}");
        // Nor is what sits beside it checked against the value kept: an axis' values beside
        // its `field` given twice are no one's to judge.
        let axes = r#"[{"field": "years", "field": "annual_fee", "values": [1, 2]}]"#;
        let body = format!(r#"{{{BASE}, "sweep": {{"axes": {axes}}}}}"#);
        let errors = match Sweep::from_json(body.as_bytes(), &RequestLimits::default()) {
            Some(Err(RequestError::Invalid(errors))) => errors,
            other => panic!("expected field errors, got {other:?}"),
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["sweep.axes[0].field"], "{errors:?}");
    }

    #[test]
    fn cells_are_row_major_and_each_is_the_base_with_its_values() {
        let s = sweep(
            r#"[{"field": "monthly_spending", "values": [3000, 3500, 4000]},
                {"field": "allocation.stocks", "from": 0.2, "to": 1.0, "steps": 5}]"#,
        )
        .unwrap();
        assert_eq!(s.cells.len(), 15);
        let cell = &s.cells[7];
        assert_eq!(cell.values, vec![3500.0, 0.6]);
        assert_eq!(cell.request.monthly_spending, 3500.0);
        assert!((cell.request.allocation.stocks - 0.6).abs() < 1e-15);
        assert!((cell.request.allocation.bonds - 0.4).abs() < 1e-12);
        // Stocks at 100 %: bonds are exactly zero, not a rounding error below it.
        assert_eq!(s.cells[4].request.allocation.bonds, 0.0);
        // Everything else is the base's.
        assert_eq!(cell.request.years, 30);
        assert_eq!(cell.request.seed(), Some(7));
    }

    #[test]
    fn a_cell_is_the_plain_request_with_its_values() {
        let s = sweep(r#"[{"field": "years", "values": [20, 25]}]"#).unwrap();
        let plain = SimulationRequest::from_json(
            br#"{"starting_portfolio": 1000000, "monthly_spending": 4000, "years": 25, "seed": 7}"#,
            &RequestLimits::default(),
        )
        .unwrap();
        assert_eq!(s.cells[1].request.to_json(), plain.to_json());
    }

    #[test]
    fn a_default_that_follows_a_swept_field_is_each_cells_own() {
        // An income without `end_year` lasts the whole horizon: in a plain plan of 20 years as
        // in one of 40, not the base's 30 in both.
        let body = |years: &str, sweep: &str| {
            format!(
                r#"{{"starting_portfolio": 1000000, "monthly_spending": 4000, "years": {years},
                    "seed": 7, "allocation": null, "income": [{{"monthly_amount": 2000}}]{sweep}}}"#
            )
        };
        let axes = r#", "sweep": {"axes": [{"field": "years", "values": [20, 40]},
                                           {"field": "allocation.stocks", "values": [0.5]}]}"#;
        let s = Sweep::from_json(body("30", axes).as_bytes(), &RequestLimits::default())
            .expect("a sweep")
            .expect("a valid sweep");
        for (cell, years) in s.cells.iter().zip(["20", "40"]) {
            let plain = body(years, "")
                .replace(r#""allocation": null"#, r#""allocation": {"stocks": 0.5, "bonds": 0.5}"#);
            let plain =
                SimulationRequest::from_json(plain.as_bytes(), &RequestLimits::default()).unwrap();
            assert_eq!(cell.request.to_json(), plain.to_json(), "years = {years}");
        }
    }

    #[test]
    fn an_invalid_cell_is_named_with_its_values_and_field() {
        // An income from year 25 is valid in a plan of 30 years, not in one of 20.
        let body = format!(
            r#"{{{BASE}, "income": [{{"monthly_amount": 100, "start_year": 25}}],
                "sweep": {{"axes": [{{"field": "years", "values": [20, 30]}}]}}}}"#
        );
        let errors = match Sweep::from_json(body.as_bytes(), &RequestLimits::default()) {
            Some(Err(RequestError::Invalid(errors))) => errors,
            other => panic!("expected field errors, got {other:?}"),
        };
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "sweep.cells[0].income[0].start_year");
        assert!(errors[0].message.contains("cell 0 (years = 20)"), "{}", errors[0].message);
    }

    #[test]
    fn a_value_out_of_its_fields_range_is_named_once_on_its_axis() {
        let errors = invalid(r#"[{"field": "years", "values": [30, 500]}]"#);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "sweep.axes[0].values");
        assert!(
            errors[0].message.contains("holds 500, but years must be"),
            "{}",
            errors[0].message
        );
        let errors = invalid(
            r#"[{"field": "monthly_spending", "values": [3000, 4000]},
                {"field": "allocation.stocks", "from": 0.2, "to": 1.2, "steps": 6}]"#,
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "sweep.axes[1]", "from/to/steps: the axis itself");
        assert!(errors[0].message.contains("allocation.stocks must be"), "{}", errors[0].message);
        // A range's ends the field refuses are named as such, even where the range's width
        // would overflow; a negative whole number of years is out of range, not fractional.
        let huge = invalid(
            r#"[{"field": "monthly_spending", "from": -1.7e308, "to": 1.7e308, "steps": 3}]"#,
        );
        assert_eq!(huge[0].field, "sweep.axes[0]");
        assert!(huge[0].message.contains("but monthly_spending must be"), "{huge:?}");
        let negative = invalid(r#"[{"field": "years", "values": [-1, 1]}]"#);
        assert!(negative[0].message.contains("holds -1, but years must be"), "{negative:?}");
    }

    #[test]
    fn axes_are_checked() {
        assert_eq!(invalid(r#"[]"#)[0].field, "sweep.axes");
        assert_eq!(
            invalid(r#"[{"field": "colour", "values": [1]}]"#)[0].field,
            "sweep.axes[0].field"
        );
        assert_eq!(
            invalid(r#"[{"field": "years", "values": [30, 20]}]"#)[0].field,
            "sweep.axes[0].values"
        );
        assert_eq!(
            invalid(r#"[{"field": "years", "values": [20.5]}]"#)[0].field,
            "sweep.axes[0].values"
        );
        assert_eq!(
            invalid(r#"[{"field": "years", "from": 10, "to": 20, "steps": 1}]"#)[0].field,
            "sweep.axes[0].steps",
        );
        // Written as a float, a whole number of steps is still one; a fraction is not.
        let written = |steps: &str| {
            let axes = format!(
                r#"[{{"field": "monthly_spending", "from": 3000, "to": 5000, "steps": {steps}}}]"#
            );
            let body = format!(
                r#"{{"starting_portfolio": 1000000, "monthly_spending": 4000, "years": 30, "sweep": {{"axes": {axes}}}}}"#
            );
            Sweep::from_json(body.as_bytes(), &RequestLimits::default())
                .unwrap()
                .map(|s| s.cells.len())
        };
        assert_eq!(written("9.0").ok(), Some(9));
        assert_eq!(written("1e1").ok(), Some(10));
        assert!(written("9.5").is_err());
        // A range that gives part years is named as the range the client wrote, not as a
        // list of values it never sent.
        let part = invalid(r#"[{"field": "years", "from": 1, "to": 2, "steps": 3}]"#);
        assert_eq!(part[0].field, "sweep.axes[0]");
        assert!(part[0].message.contains("they give 1.5"), "{}", part[0].message);
        // Steps closer than the 12 digits the values are rounded to would repeat a plan.
        let close =
            r#"[{"field": "monthly_spending", "from": 1000, "to": 1000.000000001, "steps": 3}]"#;
        assert_eq!(invalid(close)[0].field, "sweep.axes[0]");
        assert_eq!(
            invalid(r#"[{"field": "years", "values": [10], "from": 1}]"#)[0].field,
            "sweep.axes[0]"
        );
        assert_eq!(
            invalid(r#"[{"field": "years", "values": [10]}, {"field": "years", "values": [20]}]"#)
                [0]
            .field,
            "sweep.axes[1].field"
        );
        let too_many = invalid(
            r#"[{"field": "monthly_spending", "from": 1000, "to": 5000, "steps": 30},
                {"field": "annual_fee", "from": 0, "to": 0.02, "steps": 30}]"#,
        );
        assert!(too_many[0].message.contains("900 cells"), "{too_many:?}");
    }

    #[test]
    fn solve_takes_one_axis_other_than_spending() {
        let body = format!(
            r#"{{{BASE}, "solve": {{"target_success": 0.9}}, "sweep": {{"axes": [{{"field": "monthly_spending", "values": [1, 2]}}]}}}}"#
        );
        let Some(Err(RequestError::Invalid(errors))) =
            Sweep::from_json(body.as_bytes(), &RequestLimits::default())
        else {
            panic!("expected an error")
        };
        assert_eq!(errors[0].field, "sweep.axes[0].field");
        // Spending second: that axis is named.
        let body = format!(
            r#"{{{BASE}, "solve": {{"target_success": 0.9}}, "sweep": {{"axes": [{{"field": "annual_fee", "values": [0, 0.01]}}, {{"field": "monthly_spending", "values": [1, 2]}}]}}}}"#
        );
        let Some(Err(RequestError::Invalid(errors))) =
            Sweep::from_json(body.as_bytes(), &RequestLimits::default())
        else {
            panic!("expected an error")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["solve", "sweep.axes[1].field"]);
    }

    #[test]
    fn units_group_cells_up_to_the_target_and_hold_at_least_one() {
        assert_eq!(units(&[1, 1, 1, 1, 1], 2), vec![0..2, 2..4, 4..5]);
        assert_eq!(units(&[5, 1, 5], 2), vec![0..1, 1..2, 2..3]);
        assert_eq!(units(&[1; 4], 100), vec![0..4]);
        assert!(units(&[], 10).is_empty());
    }

    #[test]
    fn the_stored_form_reads_back() {
        let s = sweep(r#"[{"field": "annual_fee", "values": [0, 0.01]}]"#).unwrap();
        let (base, spec) = from_stored(&s.to_json(7)).unwrap();
        assert_eq!(spec, s.spec);
        assert_eq!(base.to_json(), s.base.to_json());
        assert_eq!(s.base_values()["annual_fee"], Value::from(s.base.annual_fee));
    }

    fn income_sweep(end_year: &str, n_scenarios: &str) -> Sweep {
        let body = format!(
            r#"{{"starting_portfolio": 1000000, "monthly_spending": 4000, "years": 30,
                {n_scenarios} "income": [{{"monthly_amount": 2000 {end_year}}}],
                "sweep": {{"axes": [{{"field": "years", "values": [30, 40]}}]}}}}"#
        );
        Sweep::from_json(body.as_bytes(), &RequestLimits::default()).unwrap().unwrap()
    }

    #[test]
    fn the_stored_request_expands_again_to_the_same_cells() {
        let s = income_sweep("", "");
        let stored = serde_json::to_vec(&s.to_json(7)).unwrap();
        let again = Sweep::from_json(&stored, &RequestLimits::default()).unwrap().unwrap();
        let requests = |s: &Sweep| -> Vec<Value> {
            s.cells.iter().map(|c| c.request.clone().with_seed(7).to_json()).collect()
        };
        assert_eq!(requests(&again), requests(&s));
        assert_eq!(again.cells[1].request.income[0].end_year, 40, "the cell's own horizon");
    }

    #[test]
    fn two_sweeps_are_the_same_body_when_their_cells_are() {
        let omitted = income_sweep("", "");
        // A default written out is the same plan; an end_year pinned to 30 is not.
        assert_eq!(
            omitted.fingerprint(),
            income_sweep("", r#""n_scenarios": 10000,"#).fingerprint()
        );
        assert_ne!(omitted.fingerprint(), income_sweep(r#", "end_year": 30"#, "").fingerprint());
    }

    #[test]
    fn two_sweeps_of_other_plans_are_other_bodies_though_their_cells_are_the_same() {
        let spending = |base: u32| {
            let body = format!(
                r#"{{"starting_portfolio": 1000000, "monthly_spending": {base}, "years": 30,
                    "sweep": {{"axes": [{{"field": "monthly_spending", "values": [3000, 4000]}}]}}}}"#
            );
            Sweep::from_json(body.as_bytes(), &RequestLimits::default()).unwrap().unwrap()
        };
        let (a, b) = (spending(4000), spending(3500));
        let requests =
            |s: &Sweep| -> Vec<Value> { s.cells.iter().map(|c| c.request.to_json()).collect() };
        assert_eq!(requests(&a), requests(&b), "the same cells");
        assert_ne!(a.fingerprint(), b.fingerprint(), "the plan is the sweep's base and request");
    }
}
