//! Rows as diesel reads and writes them. A row read selects only the columns the code reads
//! (`as_select`), so a column nothing reads is not listed here.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::AuditEvent;
use crate::schema::{audit_logs, simulation_results, simulations};
use crate::{JobKind, JobStatus};

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
    /// Read as `json` whatever the column's type: the column is `jsonb` today, and a later
    /// release can make it `json` (cheaper to store) while this build still runs, which a
    /// read decoding the column as `jsonb` would not survive.
    /// A typed `CAST`, not an SQL literal: a literal would make every statement reading it
    /// unpreparable, parsed and planned again on each read.
    #[diesel(
        select_expression = simulation_results::result.cast::<diesel::sql_types::Json>(),
        select_expression_type = diesel::dsl::Cast<simulation_results::result, diesel::sql_types::Json>
    )]
    pub result: serde_json::Value,
    /// Served from the result cache rather than computed for this job.
    pub from_cache: bool,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = simulation_results)]
pub(crate) struct NewSimulationResult<'a> {
    pub(crate) simulation_id: Uuid,
    pub(crate) result: &'a serde_json::Value,
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
