//! Hand-written statements that Postgres plans once per connection.
//!
//! diesel prepares and caches most of the queries its DSL builds, but never an `UPDATE`, an
//! `sql_query` or a query with an `sql` literal in it: each of those is parsed and planned again
//! at every call. On a job's hot path (record the submit, claim it, store the result) that
//! planning was the larger part of each statement's time in Postgres. A [`Statement`] is static
//! SQL with its binds in between, so diesel can key its statement cache on the text and reuse
//! the prepared statement: one `Bind`/`Execute` per call instead of `Parse` + plan.
//!
//! Placeholders are written by the binds themselves, in order, so a value used twice is bound
//! twice.

use std::marker::PhantomData;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};
use diesel::{QueryResult, RunQueryDsl};

/// The start of a statement: `Statement::new("SELECT … WHERE id = ").bind::<Uuid, _>(id)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Statement(&'static str);

/// A statement so far, then a bound value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bind<S, V, ST> {
    statement: S,
    value: V,
    sql_type: PhantomData<ST>,
}

/// A statement so far, then more SQL.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Then<S> {
    statement: S,
    sql: &'static str,
}

impl Statement {
    pub(crate) fn new(sql: &'static str) -> Self {
        Self(sql)
    }
}

/// What every part of a statement can be followed by.
pub(crate) trait Append: Sized {
    /// A value, sent apart from the SQL; its placeholder is written here.
    fn bind<ST, V>(self, value: V) -> Bind<Self, V, ST> {
        Bind { statement: self, value, sql_type: PhantomData }
    }

    fn sql(self, sql: &'static str) -> Then<Self> {
        Then { statement: self, sql }
    }
}

impl Append for Statement {}
impl<S, V, ST> Append for Bind<S, V, ST> {}
impl<S> Append for Then<S> {}

impl QueryFragment<Pg> for Statement {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(self.0);
        Ok(())
    }
}

impl<S, V, ST> QueryFragment<Pg> for Bind<S, V, ST>
where
    S: QueryFragment<Pg>,
    V: ToSql<ST, Pg>,
    Pg: HasSqlType<ST>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.statement.walk_ast(out.reborrow())?;
        out.push_bind_param::<ST, V>(&self.value)
    }
}

impl<S: QueryFragment<Pg>> QueryFragment<Pg> for Then<S> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.statement.walk_ast(out.reborrow())?;
        out.push_sql(self.sql);
        Ok(())
    }
}

// No static query id: diesel then keys its cache on the SQL text (and the binds' types),
// which is static here, so the cache stays as small as the set of statements.
macro_rules! untyped_query {
    ($($ty:ty => [$($generics:tt)*]),* $(,)?) => {$(
        impl<$($generics)*> QueryId for $ty {
            type QueryId = ();
            const HAS_STATIC_QUERY_ID: bool = false;
        }

        impl<$($generics)*> Query for $ty {
            type SqlType = Untyped;
        }

        impl<Conn, $($generics)*> RunQueryDsl<Conn> for $ty {}
    )*};
}

untyped_query! {
    Statement => [],
    Bind<S, V, ST> => [S, V, ST],
    Then<S> => [S],
}

#[cfg(test)]
mod tests {
    use diesel::debug_query;

    use super::*;

    #[test]
    fn binds_write_their_placeholders_in_order() {
        let statement = Statement::new("SELECT ")
            .bind::<diesel::sql_types::Integer, _>(1)
            .sql(" + ")
            .bind::<diesel::sql_types::Integer, _>(2)
            .sql(" AS sum");
        assert_eq!(
            debug_query::<Pg, _>(&statement).to_string(),
            "SELECT $1 + $2 AS sum -- binds: [1, 2]"
        );
    }
}
