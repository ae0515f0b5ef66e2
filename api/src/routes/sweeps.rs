//! The plan explorer's downloads: `GET /results/{id}/charts/heatmap.svg` (a sweep's map, drawn
//! from the cells done so far, so the page can watch it fill), `GET /results/{id}/sweep.csv`
//! (one row per cell) and `GET /results/{id}/cells/{index}/charts/fan.svg` (one cell's fan).
//!
//! The sweep and its cells are read through `results::find_sweep` and `results::find_cell`
//! (404 for no such job or cell, 409 for a job that is not a sweep or a cell not done), so
//! these routes only draw and write.

use actix_web::http::header;
use actix_web::route;
use actix_web::{HttpResponse, web};

use portfolio_shared::JobStatus;

use crate::auth::Caller;
use crate::draw::{self, heatmap};
use crate::error::{ApiError, Problem};
use crate::routes::charts::{RESULT_CACHE, SVG};
use crate::routes::results::{SweepView, find_cell, find_sweep};
use crate::state::AppState;

/// A sweep not yet succeeded changes with every cell (or may still be retried); a succeeded
/// one never changes again.
const FILLING: &str = "private, no-store";

fn cache_of(status: JobStatus) -> &'static str {
    if status == JobStatus::Succeeded { RESULT_CACHE } else { FILLING }
}

/// What the chart needs of a sweep.
pub(crate) fn map_of(sweep: &SweepView) -> heatmap::SweepMap {
    heatmap::SweepMap {
        axes: sweep
            .axes
            .iter()
            .map(|a| heatmap::Axis { field: a.field.name().to_owned(), values: a.values.clone() })
            .collect(),
        cells: sweep
            .cells
            .iter()
            .map(|c| {
                let cell = heatmap::Cell {
                    success: c.success_probability,
                    safe_spending: c.safe_monthly_spending,
                };
                (c.index, cell)
            })
            .collect(),
        base: sweep
            .axes
            .iter()
            .map(|a| sweep.base.get(a.field.name()).and_then(|v| v.as_f64()))
            .collect(),
        target: sweep.solve.as_ref().and_then(|s| s.get("target_success")?.as_f64()),
    }
}

/// A sweep's success probability as a heat map (two axes) or a line (one axis), from the
/// cells done so far.
#[utoipa::path(
    get,
    tag = "charts",
    params(("id" = Uuid, Path, description = "Job id of a sweep; anything that is not a UUID is no job (404)")),
    responses(
        (status = 200, description = "SVG with a `<title>` and `<desc>`; each cell is a `<rect class=\"cell\" data-index=..>`. `Cache-Control: private, no-store` while cells are missing.", content_type = "image/svg+xml", body = String),
        (status = 404, description = "Unknown or malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is not a sweep", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Postgres unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[route("/results/{id}/charts/heatmap.svg", method = "GET", method = "HEAD")]
#[tracing::instrument(skip_all, fields(job_id = %id))]
pub(crate) async fn heatmap_svg(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (status, sweep) = find_sweep(&state, caller, &id).await?;
    let body = heatmap::heatmap(&map_of(&sweep)).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(HttpResponse::Ok()
        .content_type(SVG)
        .insert_header((header::CACHE_CONTROL, cache_of(status)))
        .body(body))
}

/// One row per cell done so far, by index: the axis values (a column named by each field),
/// success probability and its standard error, median and 10th-percentile real terminal
/// wealth, median depletion year and (when solving) the safe monthly spending.
#[utoipa::path(
    get,
    tag = "results",
    params(("id" = Uuid, Path, description = "Job id of a sweep; anything that is not a UUID is no job (404)")),
    responses(
        (status = 200, description = "CSV with a header row", content_type = "text/csv", body = String),
        (status = 404, description = "Unknown or malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is not a sweep", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Postgres unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[route("/results/{id}/sweep.csv", method = "GET", method = "HEAD")]
#[tracing::instrument(skip_all, fields(job_id = %id))]
pub(crate) async fn sweep_csv(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (status, sweep) = find_sweep(&state, caller, &id).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"portfolio-mc-sweep-{}.csv\"", id.to_ascii_lowercase()),
        ))
        .insert_header((header::CACHE_CONTROL, cache_of(status)))
        .body(csv(&sweep).map_err(ApiError::Internal)?))
}

/// The CSV text of a sweep.
pub(crate) fn csv(sweep: &SweepView) -> anyhow::Result<String> {
    let mut out = crate::routes::exports::csv_writer();
    let mut head = vec!["index".to_owned()];
    head.extend(sweep.axes.iter().map(|a| a.field.name().to_owned()));
    head.extend(
        [
            "success_probability",
            "success_probability_stderr",
            "median_terminal_real",
            "p10_terminal_real",
            "median_depletion_year",
            "safe_monthly_spending",
        ]
        .map(str::to_owned),
    );
    out.write_record(&head)?;
    let mut cells: Vec<_> = sweep.cells.iter().collect();
    cells.sort_by_key(|c| c.index);
    for c in cells {
        let mut row = vec![c.index.to_string()];
        row.extend(c.values.iter().map(|v| number(Some(*v))));
        row.extend([
            number(Some(c.success_probability)),
            number(c.success_probability_stderr),
            number(Some(c.median_terminal_real)),
            number(Some(c.p10_terminal_real)),
            number(c.median_depletion_year),
            number(c.safe_monthly_spending),
        ]);
        out.write_record(&row)?;
    }
    Ok(String::from_utf8(out.into_inner().map_err(|e| e.into_error())?)?)
}

/// A number as Rust writes it (never in exponent form), or nothing.
fn number(value: Option<f64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// The fan chart of one cell of a sweep, as `/results/{id}/charts/fan.svg` draws a plain job's.
#[utoipa::path(
    get,
    tag = "charts",
    params(
        ("id" = Uuid, Path, description = "Job id of a sweep; anything that is not a UUID is no job (404)"),
        ("index" = u32, Path, description = "The cell: `i0 * len(axes[1].values) + i1`"),
    ),
    responses(
        (status = 200, description = "SVG with a `<title>` and `<desc>`", content_type = "image/svg+xml", body = String),
        (status = 404, description = "Unknown or malformed id, or no such cell", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is not a sweep, or the cell is not done yet", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Postgres unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[route("/results/{id}/cells/{index}/charts/fan.svg", method = "GET", method = "HEAD")]
#[tracing::instrument(skip_all, fields(job_id = %path.0, cell = %path.1))]
pub(crate) async fn cell_fan(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, index) = path.into_inner();
    let cell = find_cell(&state, caller, &id, crate::routes::cells::cell_index(&index)?).await?;
    let body = draw::results::fan(&cell.result).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(HttpResponse::Ok()
        .content_type(SVG)
        .insert_header((header::CACHE_CONTROL, RESULT_CACHE))
        .body(body))
}

#[cfg(test)]
mod tests {
    use portfolio_engine::sweep::{Axis, CellSummary, SweepField};
    use serde_json::json;

    use super::*;

    fn cell(index: u32, values: &[f64], success: f64) -> CellSummary {
        CellSummary {
            index,
            values: values.to_vec(),
            success_probability: success,
            success_probability_stderr: Some(0.0025),
            median_terminal_real: 812_000.0,
            p10_terminal_real: 120_000.0,
            median_depletion_year: None,
            safe_monthly_spending: None,
        }
    }

    fn sweep() -> SweepView {
        let mut late = cell(3, &[3500.0, 0.6], 0.9);
        late.success_probability_stderr = None;
        late.median_terminal_real = 1.25e21;
        late.p10_terminal_real = 0.0;
        late.median_depletion_year = Some(27.5);
        SweepView {
            axes: vec![
                Axis { field: SweepField::MonthlySpending, values: vec![3000.0, 3500.0] },
                Axis { field: SweepField::AllocationStocks, values: vec![0.2, 0.6] },
            ],
            base: json!({"monthly_spending": 3500, "allocation.stocks": 0.6})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            solve: None,
            cells_total: 4,
            cells_done: 2,
            cells: vec![late, cell(0, &[3000.0, 0.2], 0.93)],
        }
    }

    #[test]
    fn the_csv_has_a_row_per_cell_done_by_index_with_the_axes_named_by_field() {
        let expected = "index,monthly_spending,allocation.stocks,success_probability,\
                        success_probability_stderr,median_terminal_real,p10_terminal_real,\
                        median_depletion_year,safe_monthly_spending\r\n\
                        0,3000,0.2,0.93,0.0025,812000,120000,,\r\n\
                        3,3500,0.6,0.9,,1250000000000000000000,0,27.5,\r\n";
        assert_eq!(csv(&sweep()).unwrap(), expected);
    }

    #[test]
    fn the_map_takes_the_plans_own_values_and_only_a_succeeded_sweep_is_cached() {
        let s = sweep();
        let map = map_of(&s);
        assert_eq!(map.base, vec![Some(3500.0), Some(0.6)]);
        assert_eq!(map.axes[1].field, "allocation.stocks");
        assert_eq!(map.cells.len(), 2);
        assert_eq!(map.cells[&3].success, 0.9);
        assert_eq!(map.target, None);
        let svg = heatmap::heatmap(&map).unwrap();
        assert_eq!(svg.matches("class=\"cell\"").count(), 4);
        assert_eq!(cache_of(JobStatus::Running), FILLING);
        assert_eq!(cache_of(JobStatus::Succeeded), RESULT_CACHE);

        let solving = SweepView {
            axes: vec![Axis { field: SweepField::Years, values: vec![30.0] }],
            base: serde_json::Map::new(),
            solve: Some(json!({"target_success": 0.9})),
            ..sweep()
        };
        assert_eq!(map_of(&solving).target, Some(0.9));
        assert_eq!(map_of(&solving).base, vec![None]);
    }
}
