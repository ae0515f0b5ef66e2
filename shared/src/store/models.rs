//! Rows as diesel reads and writes them. A row read selects only the columns the code reads
//! (`as_select`), so a column nothing reads is not listed here.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::AuditEvent;
use super::json_text::JsonDocument;
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
    /// The document as the worker wrote it (`json`), kept as text: the API passes it on as it
    /// is.
    document: Option<JsonDocument>,
    /// A document an earlier release stored, before `document` existed (`jsonb`).
    #[diesel(column_name = result)]
    earlier: Option<serde_json::Value>,
    /// Served from the result cache rather than computed for this job.
    pub from_cache: bool,
}

impl SimulationResultRow {
    /// A row for a document in hand (an announced result, a sweep's cells).
    pub fn new(document: Box<RawValue>, from_cache: bool) -> Self {
        Self { document: Some(JsonDocument(document)), earlier: None, from_cache }
    }

    /// The stored document as JSON text. One an earlier release stored as `jsonb` is written
    /// again as the engine writes a result, because `jsonb` keeps neither the order of the keys
    /// nor the spelling of the numbers (1e300 comes back as 301 digits): every row reads back
    /// in the same form, whichever release stored it.
    pub fn document(self) -> serde_json::Result<Box<RawValue>> {
        match (self.document, self.earlier) {
            (Some(JsonDocument(document)), _) => Ok(document),
            (None, Some(earlier)) => serde_json::value::to_raw_value(&serde_json::from_value::<
                portfolio_engine::SimulationResult,
            >(earlier)?),
            (None, None) => Err(serde::de::Error::custom("a result row holds no document")),
        }
    }
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
