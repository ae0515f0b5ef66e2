//! The audit trail: a row for everything that happens to a job (`audit_logs`, partitioned by
//! month), written in the same transaction as the change it records.

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgConnection, PgValue};
use diesel::prelude::*;
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use uuid::Uuid;

use super::models::NewAuditLog;
use crate::schema::audit_logs;

/// Audit actor of rows written by the API.
pub(crate) const API_ACTOR: &str = "api";

/// The audit events of the `audit_logs.event` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub(crate) enum AuditEvent {
    Submitted,
    Started,
    Succeeded,
    Failed,
    Cancelled,
    Retried,
    /// A key asked to cancel a running job; the worker's `cancelled` row follows.
    CancelRequested,
}

impl AuditEvent {
    pub(crate) const ALL: [AuditEvent; 7] = [
        Self::Submitted,
        Self::Started,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::Retried,
        Self::CancelRequested,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::Started => "started",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Retried => "retried",
            Self::CancelRequested => "cancel_requested",
        }
    }
}

impl std::str::FromStr for AuditEvent {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("unknown audit event `{s}`"))
    }
}

impl ToSql<Text, Pg> for AuditEvent {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
    }
}

impl FromSql<Text, Pg> for AuditEvent {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, Pg>>::from_sql(value)?;
        Ok(text.parse()?)
    }
}

/// Who wrote an audit row: the API on behalf of a key, or a worker.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Actor<'a> {
    /// The API, acting for this key (`None` when it runs with `AUTH_MODE=disabled`).
    Api(Option<i64>),
    /// A worker, by name.
    Worker(&'a str),
}

impl Actor<'_> {
    /// The `audit_logs.actor` this actor writes.
    pub(crate) fn name(&self) -> &str {
        match self {
            Self::Api(_) => API_ACTOR,
            Self::Worker(name) => name,
        }
    }
}

/// Appends one row to the job's trail.
pub(super) fn record(
    conn: &mut PgConnection,
    id: Uuid,
    event: AuditEvent,
    actor: Actor<'_>,
    request_id: Option<&str>,
    data: serde_json::Value,
) -> QueryResult<()> {
    let (actor, api_key_id) = match actor {
        Actor::Api(key) => (API_ACTOR, key),
        Actor::Worker(name) => (name, None),
    };
    diesel::insert_into(audit_logs::table)
        .values(NewAuditLog { simulation_id: id, event, actor, request_id, data, api_key_id })
        .execute(conn)
        .map(drop)
}
