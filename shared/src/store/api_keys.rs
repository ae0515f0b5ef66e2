//! API keys as Postgres keeps them: the public prefix that finds a key, the SHA-256 of the whole
//! key, its tenant (the name) and scopes, and when it was made, last used and revoked. Making
//! and checking the key itself is the API's (`portfolio_api::auth`); nothing here sees a secret.

use chrono::{DateTime, Utc};
use diesel::dsl::{now, sql};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable, Timestamptz};

use crate::schema::api_keys;

/// A key's row, as the API checks a presented key against it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg))]
pub struct ApiKeyRow {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub secret_sha256: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = api_keys)]
pub struct NewApiKey<'a> {
    pub name: &'a str,
    pub prefix: &'a str,
    pub secret_sha256: &'a str,
    pub scopes: &'a [String],
}

/// Records a new key; its id.
pub fn create_key(conn: &mut PgConnection, key: &NewApiKey<'_>) -> QueryResult<i64> {
    diesel::insert_into(api_keys::table).values(key).returning(api_keys::id).get_result(conn)
}

/// Records a key unless one with its prefix exists (a key given to the process from a secret,
/// at every start). A revoked key stays revoked: revocation wins over the secret. Whether the
/// row was made.
pub fn ensure_key(conn: &mut PgConnection, key: &NewApiKey<'_>) -> QueryResult<bool> {
    diesel::insert_into(api_keys::table)
        .values(key)
        .on_conflict(api_keys::prefix)
        .do_nothing()
        .execute(conn)
        .map(|n| n == 1)
}

/// The key with this prefix, revoked or not.
pub fn find_key(conn: &mut PgConnection, prefix: &str) -> QueryResult<Option<ApiKeyRow>> {
    api_keys::table
        .filter(api_keys::prefix.eq(prefix))
        .select(ApiKeyRow::as_select())
        .first(conn)
        .optional()
}

/// Notes that the key was used, at most once a minute per key so that reads do not each
/// write.
pub fn touch_key(conn: &mut PgConnection, id: i64) -> QueryResult<()> {
    diesel::update(api_keys::table.find(id))
        .filter(
            api_keys::last_used_at
                .is_null()
                .or(sql::<Bool>("last_used_at < now() - interval '1 minute'")),
        )
        .set(api_keys::last_used_at.eq(now))
        .execute(conn)
        .map(drop)
}

/// Every key, oldest first.
pub fn list_keys(conn: &mut PgConnection) -> QueryResult<Vec<ApiKeyRow>> {
    api_keys::table.order(api_keys::id).select(ApiKeyRow::as_select()).load(conn)
}

/// Revokes a key at once (a request checks the row every time). `None` if there is no such
/// key; its revocation time otherwise (the first one, if it was already revoked).
pub fn revoke_key(conn: &mut PgConnection, id: i64) -> QueryResult<Option<DateTime<Utc>>> {
    diesel::update(api_keys::table.find(id))
        .set(api_keys::revoked_at.eq(sql::<Nullable<Timestamptz>>("coalesce(revoked_at, now())")))
        .returning(api_keys::revoked_at.assume_not_null())
        .get_result(conn)
        .optional()
}
