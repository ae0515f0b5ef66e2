//! `GET /results/{id}/table.csv`: a succeeded result's yearly series as CSV, for spreadsheets.
//! (The JSON download is `/results/{id}` itself.)

use actix_web::http::header;
use actix_web::route;
use actix_web::{HttpResponse, web};
use portfolio_engine::SimulationResult;
use portfolio_engine::result::PERCENTILES;

use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::routes::charts::{RESULT_CACHE, succeeded_result};
use crate::state::AppState;

/// One row per year end: real and nominal wealth percentiles, the share depleted by then, and
/// the real spending percentiles of the year that ended (empty for year 0).
#[utoipa::path(
    get,
    tag = "results",
    params(("id" = Uuid, Path, description = "Job id; anything that is not a UUID is no job (404)")),
    responses(
        (status = 200, description = "CSV with a header row", content_type = "text/csv", body = String),
        (status = 404, description = "Unknown or malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job has not succeeded (yet), or is a sweep", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Postgres unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[route("/results/{id}/table.csv", method = "GET", method = "HEAD")]
#[tracing::instrument(skip_all, fields(job_id = %id))]
pub(crate) async fn table_csv(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (id, result) = succeeded_result(&state, caller, &id).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"portfolio-mc-{id}.csv\""),
        ))
        .insert_header((header::CACHE_CONTROL, RESULT_CACHE))
        .body(csv(&result).map_err(ApiError::Internal)?))
}

/// A CSV writer with RFC 4180's line ends (CRLF), which the csv crate leaves to its caller.
pub(crate) fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new())
}

/// The CSV text of a result.
pub(crate) fn csv(r: &SimulationResult) -> anyhow::Result<String> {
    let names: Vec<&str> = PERCENTILES.iter().map(|(name, _)| *name).collect();
    let mut header = vec!["year".to_owned()];
    for prefix in ["real", "nominal"] {
        header.extend(names.iter().map(|name| format!("{prefix}_{name}")));
    }
    header.push("depleted_share".to_owned());
    header.extend(names.iter().map(|name| format!("spending_{name}")));
    let mut out = csv_writer();
    out.write_record(&header)?;
    let spending = &r.spending_percentiles;
    for (i, year) in r.years.iter().enumerate() {
        let mut row = vec![year.to_string()];
        for series in [&r.percentiles, &r.nominal_percentiles] {
            row.extend(series.columns().iter().map(|column| cell(column.get(i))));
        }
        row.push(cell(r.depletion_probability_by_year.get(i)));
        let spent = spending.years.iter().position(|y| y == year);
        row.extend(
            spending
                .percentiles
                .columns()
                .iter()
                .map(|column| cell(spent.and_then(|j| column.get(j)))),
        );
        out.write_record(&row)?;
    }
    Ok(String::from_utf8(out.into_inner().map_err(|e| e.into_error())?)?)
}

/// A number as Rust writes it, or nothing. Formatted here rather than by the csv crate's
/// serializer, which writes large and small numbers in exponent form (`1.25e21`).
fn cell(value: Option<&f64>) -> String {
    value.map(f64::to_string).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use portfolio_engine::{RequestLimits, RunOptions, SimulationRequest};

    use super::*;

    /// A real result (so the test follows the result type as it grows), with short series of
    /// known values put in.
    fn result() -> SimulationResult {
        let body = r#"{"starting_portfolio": 1000000, "monthly_spending": 4000, "years": 2, "n_scenarios": 100}"#;
        let request = SimulationRequest::from_json(body.as_bytes(), &RequestLimits::default())
            .expect("a valid request");
        let mut r = portfolio_engine::run(&request, 7, &RunOptions::default()).expect("a result");
        r.years = vec![0, 1, 2];
        for (k, column) in r.percentiles.columns_mut().into_iter().enumerate() {
            *column = vec![1e6, 1e6 + k as f64, 0.5];
        }
        for column in r.nominal_percentiles.columns_mut() {
            *column = vec![1e6, 1.25e21, 1e-7];
        }
        r.depletion_probability_by_year = vec![0.0, 0.25, 1.0];
        r.spending_percentiles.years = vec![1, 2];
        for column in r.spending_percentiles.percentiles.columns_mut() {
            *column = vec![48000.0, 47999.5];
        }
        r
    }

    #[test]
    fn the_table_has_a_header_a_row_per_year_plain_numbers_and_no_spending_in_year_0() {
        let real = |k: usize| format!("{}", 1e6 + k as f64);
        let expected = format!(
            "year,real_p5,real_p10,real_p25,real_p50,real_p75,real_p90,real_p95,\
             nominal_p5,nominal_p10,nominal_p25,nominal_p50,nominal_p75,nominal_p90,nominal_p95,\
             depleted_share,\
             spending_p5,spending_p10,spending_p25,spending_p50,spending_p75,spending_p90,spending_p95\r\n\
             0{}{},0{}\r\n\
             1{}{},0.25{}\r\n\
             2{}{},1{}\r\n",
            ",1000000".repeat(7),
            ",1000000".repeat(7),
            ",".repeat(7),
            (0..7).map(|k| format!(",{}", real(k))).collect::<String>(),
            ",1250000000000000000000".repeat(7),
            ",48000".repeat(7),
            ",0.5".repeat(7),
            ",0.0000001".repeat(7),
            ",47999.5".repeat(7),
        );
        assert_eq!(csv(&result()).unwrap(), expected);
    }
}
