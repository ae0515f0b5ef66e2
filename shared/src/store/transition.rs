//! What the API's and the worker's status changes share: the row lock they are decided under
//! and the one way a job ends.

use diesel::dsl::now;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use uuid::Uuid;

use super::audit::{self, Actor, AuditEvent};
use super::models::Simulation;
use crate::JobStatus;
use crate::schema::simulations;

/// The job's row, locked until the transaction ends.
pub(super) fn locked(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<Simulation>> {
    simulations::table.find(id).select(Simulation::as_select()).for_update().first(conn).optional()
}

/// Terminal transition plus its audit row; callers hold the row lock.
pub(super) fn finish(
    conn: &mut PgConnection,
    job: &Simulation,
    status: JobStatus,
    actor: Actor<'_>,
    error: Option<&str>,
    data: serde_json::Value,
) -> QueryResult<()> {
    diesel::update(simulations::table.find(job.id))
        .set((
            simulations::status.eq(status),
            simulations::error.eq(error),
            simulations::claim_token.eq(None::<Uuid>),
            simulations::finished_at.eq(now),
            simulations::updated_at.eq(now),
        ))
        .execute(conn)?;
    if let (Some(sweep), JobStatus::Failed) = (job.parent_id, status) {
        super::sweeps::unit_failed(conn, job.id, sweep, actor, error.unwrap_or("failed"))?;
    }
    record_end(conn, job.id, status, actor, job.request_id.as_deref(), data)
}

/// The terminal audit row of a job that just ended as `status`, for a caller that wrote the
/// row's terminal columns itself (in one statement with its own, under the same lock).
pub(super) fn record_end(
    conn: &mut PgConnection,
    id: Uuid,
    status: JobStatus,
    actor: Actor<'_>,
    request_id: Option<&str>,
    data: serde_json::Value,
) -> QueryResult<()> {
    let event = match status {
        JobStatus::Succeeded => AuditEvent::Succeeded,
        JobStatus::Cancelled => AuditEvent::Cancelled,
        _ => AuditEvent::Failed,
    };
    audit::record(conn, id, event, actor, request_id, data)
}
