//! `GET /results/{id}/cells/{index}`: one cell of a sweep, as a plain job's request and result,
//! so a planner can open any plan of the map in full (percentiles, depletion curve) and resubmit
//! it as a plain job with the same figures.

use actix_web::http::header;
use actix_web::route;
use actix_web::{HttpResponse, web};

use crate::auth::Caller;
use crate::error::{ApiError, Problem, quoted};
use crate::routes::charts::RESULT_CACHE;
use crate::routes::results::{CellView, find_cell};
use crate::state::AppState;

/// One cell of a sweep: the plain request it is and its whole result.
#[utoipa::path(
    get,
    tag = "results",
    params(
        ("id" = Uuid, Path, description = "Sweep id; anything that is not a UUID is no job (404)"),
        ("index" = u32, Path, description = "Cell index: `i0 × len(axes[1].values) + i1`, the first axis outer"),
    ),
    responses(
        (status = 200, description = "The cell's request and result; its figures are those of a plain submit of `request`", body = CellView),
        (status = 404, description = "Unknown or malformed id, or no such cell", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is not a sweep, or the cell is not done (yet)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Postgres unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[route("/results/{id}/cells/{index}", method = "GET", method = "HEAD")]
#[tracing::instrument(skip_all, fields(job_id = %path.0, cell = %path.1))]
pub(crate) async fn cell(
    path: web::Path<(String, String)>,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (id, index) = path.into_inner();
    let cell = find_cell(&state, caller, &id, cell_index(&index)?).await?;
    // A stored cell never changes.
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, RESULT_CACHE)).json(cell))
}

/// A cell's index as the documents write it: decimal digits, no sign, no leading zero (one
/// cell, one address; `+1` and `01` would be other names of cell 1).
pub(crate) fn cell_index(raw: &str) -> Result<u32, ApiError> {
    let canonical =
        raw.bytes().all(|b| b.is_ascii_digit()) && (raw == "0" || !raw.starts_with('0'));
    raw.parse().ok().filter(|_| canonical).ok_or_else(|| {
        ApiError::NotFound(format!("no cell {}: cells are numbered from 0", quoted(raw)))
    })
}
