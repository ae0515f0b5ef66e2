//! Rows as diesel reads and writes them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::AuditEvent;
use crate::JobStatus;
use crate::schema::{audit_logs, simulation_results, simulations};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = simulations, check_for_backend(diesel::pg::Pg))]
pub struct Simulation {
    pub id: Uuid,
    pub status: JobStatus,
    pub request: serde_json::Value,
    pub seed: i64,
    pub request_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    pub attempts: i32,
    pub progress_done: i32,
    pub progress_total: i32,
    pub error: Option<String>,
    pub worker: Option<String>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    pub not_before: Option<DateTime<Utc>>,
    pub success_probability: Option<f64>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// The token of the claim the job is running under (see `store::Lease`).
    pub claim_token: Option<Uuid>,
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
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = simulation_results, check_for_backend(diesel::pg::Pg))]
pub struct SimulationResultRow {
    pub simulation_id: Uuid,
    pub result: serde_json::Value,
    pub worker: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = simulation_results)]
pub struct NewSimulationResult<'a> {
    pub simulation_id: Uuid,
    pub result: &'a serde_json::Value,
    pub worker: &'a str,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_logs)]
pub struct NewAuditLog<'a> {
    pub simulation_id: Uuid,
    pub event: AuditEvent,
    pub actor: &'a str,
    pub request_id: Option<&'a str>,
    pub data: serde_json::Value,
}
