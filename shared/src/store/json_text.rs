//! JSON documents bound as they were serialised. A result is serialised once, by the worker, and
//! the same text goes to Postgres, to the result cache and to the announcement of its end;
//! binding a `serde_json::Value` would serialise it again for each, and build the tree first.

use std::io::Write as _;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{Json, Jsonb};
use serde_json::value::RawValue;

/// A document bound as `json`: its text, which Postgres checks but keeps as it is.
#[derive(Debug, Clone, Copy, AsExpression)]
#[diesel(sql_type = Json)]
pub(crate) struct JsonText<'a>(pub &'a RawValue);

impl ToSql<Json, Pg> for JsonText<'_> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(self.0.get().as_bytes())?;
        Ok(IsNull::No)
    }
}

/// A document bound as `jsonb`: the binary format's version byte, then the text.
#[derive(Debug, Clone, Copy, AsExpression)]
#[diesel(sql_type = Jsonb)]
pub(crate) struct JsonbText<'a>(pub &'a RawValue);

impl ToSql<Jsonb, Pg> for JsonbText<'_> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(&[1])?;
        out.write_all(self.0.get().as_bytes())?;
        Ok(IsNull::No)
    }
}

/// A stored `json` document read as its text: a reader that only passes it on (the API's answer
/// to `GET /results/{id}`) neither builds its tree nor serialises it again.
#[derive(Debug, Clone, FromSqlRow)]
#[diesel(sql_type = Json)]
pub struct JsonDocument(pub(crate) Box<RawValue>);

impl FromSql<Json, Pg> for JsonDocument {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        let text = std::str::from_utf8(bytes.as_bytes())?;
        Ok(Self(RawValue::from_string(text.to_owned())?))
    }
}
