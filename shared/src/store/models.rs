//! Rows as diesel reads and writes them. A row read selects only the columns the code reads
//! (`as_select`), so a column nothing reads is not listed here.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Json, Nullable};
use uuid::Uuid;

use super::AuditEvent;
use crate::schema::{audit_logs, simulation_results, simulations};
use crate::{JobKind, JobStatus};

define_sql_function! {
    /// The first of two documents that is not NULL.
    fn coalesce(first: Nullable<Json>, second: Nullable<Json>) -> Nullable<Json>;
}

/// Also read by name (the row a finishing statement returns) and serialised (the finished
/// channel carries it: `crate::queue::announcement`).
#[derive(
    Debug,
    Clone,
    Queryable,
    QueryableByName,
    Selectable,
    Identifiable,
    serde::Serialize,
    serde::Deserialize,
)]
#[diesel(table_name = simulations, check_for_backend(diesel::pg::Pg))]
pub struct Simulation {
    pub id: Uuid,
    pub status: JobStatus,
    pub request: serde_json::Value,
    pub seed: i64,
    pub(crate) request_id: Option<String>,
    pub request_hash: Option<String>,
    pub attempts: i32,
    pub progress_done: i32,
    pub progress_total: i32,
    pub error: Option<String>,
    pub(crate) worker: Option<String>,
    pub(crate) cancel_requested: bool,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The tenant the job belongs to (the name of the key that submitted it).
    pub owner: String,
    /// Where its result is cached, when it named its seed (`crate::result_cache`).
    pub cache_key: Option<String>,
    /// A plain plan, a sweep, or a unit of a sweep's work.
    pub kind: JobKind,
    /// The sweep a unit belongs to.
    pub parent_id: Option<Uuid>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = simulations)]
pub struct NewSimulation<'a> {
    pub id: Uuid,
    pub request: &'a serde_json::Value,
    pub seed: i64,
    pub request_id: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    pub request_hash: Option<&'a str>,
    pub owner: &'a str,
    /// The key that submitted it (`None` when the API runs with `AUTH_MODE=disabled`).
    pub api_key_id: Option<i64>,
    /// Set when the request named its seed: where the worker stores the result
    /// (`crate::result_cache`).
    pub cache_key: Option<&'a str>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = simulation_results, check_for_backend(diesel::pg::Pg))]
pub struct SimulationResultRow {
    /// The stored document, from whichever column holds it: `document` (json, as the worker
    /// wrote it) or, for rows stored before that column existed, `result` (jsonb) read as json.
    /// Typed SQL, not a literal: a literal would make every statement reading it unpreparable,
    /// parsed and planned again on each read.
    #[diesel(
        select_expression = coalesce(
            simulation_results::document,
            simulation_results::result.cast::<Nullable<Json>>(),
        )
        .assume_not_null(),
        select_expression_type = diesel::dsl::AssumeNotNull<
            coalesce<
                simulation_results::document,
                diesel::dsl::Cast<simulation_results::result, Nullable<Json>>,
            >,
        >
    )]
    pub result: serde_json::Value,
    /// Served from the result cache rather than computed for this job.
    pub from_cache: bool,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = simulation_results)]
pub(crate) struct NewSimulationResult<'a> {
    pub(crate) simulation_id: Uuid,
    pub(crate) result: super::JsonbText<'a>,
    pub(crate) worker: &'a str,
    pub(crate) from_cache: bool,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_logs)]
pub(crate) struct NewAuditLog<'a> {
    pub(crate) simulation_id: Uuid,
    pub(crate) event: AuditEvent,
    pub(crate) actor: &'a str,
    pub(crate) request_id: Option<&'a str>,
    pub(crate) data: serde_json::Value,
    pub(crate) api_key_id: Option<i64>,
}
