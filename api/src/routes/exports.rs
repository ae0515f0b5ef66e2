//! `GET /results/{id}/table.csv`: a succeeded result's yearly series as CSV, for spreadsheets.
//! (The JSON download is `/results/{id}` itself.)

use std::fmt::Write;

use actix_web::get;
use actix_web::http::header;
use actix_web::{HttpResponse, web};
use portfolio_engine::SimulationResult;
use portfolio_engine::result::PERCENTILES;

use crate::error::{ApiError, Problem};
use crate::routes::charts::succeeded_result;
use crate::state::AppState;

/// One row per year end: real and nominal wealth percentiles, the share depleted by then, and
/// the real spending percentiles of the year that ended (empty for year 0).
#[utoipa::path(
    tag = "results",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "CSV with a header row", content_type = "text/csv", body = String),
        (status = 404, description = "Unknown or malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job has not succeeded (yet)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/results/{id}/table.csv")]
pub async fn table_csv(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (id, result) = succeeded_result(&state, &id).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"portfolio-mc-{id}.csv\""),
        ))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(csv(&result)))
}

/// The CSV text of a result.
pub fn csv(r: &SimulationResult) -> String {
    let names: Vec<&str> = PERCENTILES.iter().map(|(name, _)| *name).collect();
    let mut out = String::from("year");
    for prefix in ["real", "nominal"] {
        for name in &names {
            let _ = write!(out, ",{prefix}_{name}");
        }
    }
    out.push_str(",depleted_share");
    for name in &names {
        let _ = write!(out, ",spending_{name}");
    }
    out.push('\n');
    let spending = &r.spending_percentiles;
    for (i, year) in r.years.iter().enumerate() {
        let _ = write!(out, "{year}");
        for series in [&r.percentiles, &r.nominal_percentiles] {
            for column in series.columns() {
                let _ = write!(out, ",{}", cell(column.get(i)));
            }
        }
        let _ = write!(out, ",{}", cell(r.depletion_probability_by_year.get(i)));
        let spent = spending.years.iter().position(|y| y == year);
        for column in spending.percentiles.columns() {
            let _ = write!(out, ",{}", cell(spent.and_then(|j| column.get(j))));
        }
        out.push('\n');
    }
    out
}

fn cell(value: Option<&f64>) -> String {
    value.map(f64::to_string).unwrap_or_default()
}
