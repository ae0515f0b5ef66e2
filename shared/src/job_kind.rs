//! What a row of `simulations` is: a plain plan, a sweep (a grid of plans, one job for its
//! owner), or one unit of a sweep's work (a row the queue and the workers treat as any job,
//! never shown to a tenant). Stored as the text of `simulations.kind`, read back by diesel.

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    AsExpression,
    FromSqlRow,
    serde::Serialize,
    serde::Deserialize,
)]
#[diesel(sql_type = Text)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Plan,
    Sweep,
    Unit,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plan => "plan",
            Self::Sweep => "sweep",
            Self::Unit => "unit",
        }
    }
}

impl ToSql<Text, Pg> for JobKind {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
    }
}

impl FromSql<Text, Pg> for JobKind {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, Pg>>::from_sql(value)?;
        [Self::Plan, Self::Sweep, Self::Unit]
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| format!("unknown job kind `{text}`").into())
    }
}
