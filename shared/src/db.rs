//! Postgres plumbing: connection pools built once per process from explicit settings, the
//! embedded migrations applied under an advisory lock (so several replicas can start at once),
//! and the monthly `audit_logs` partitions kept a few months ahead.

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, HandleError, ManageConnection, Pool};
use diesel::sql_types::{BigInt, Integer};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::settings::PoolSettings;

pub type PgPool = Pool<PingWhenIdle>;

pub(crate) const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// Advisory-lock key held while migrating ("portfolio" in ASCII, truncated).
const MIGRATION_LOCK: i64 = 0x706f_7274_666f_6c69;

/// Months of audit partitions kept ahead of the current one.
pub(crate) const AUDIT_PARTITIONS_AHEAD: i32 = 2;

/// How long r2d2 keeps retrying one connection before it lets a later checkout start afresh.
/// r2d2 doubles the delay between retries from 0.2 s up to half of this (`add_connection`), so
/// it is what spaces the retries during an outage: at 4 s they are at most 2 s apart, and a
/// pool reconnects within about 2 s of Postgres coming back, however long it was away. (The
/// checkout timeout, 30 s by default, made that up to 15 s.) Every checkout in the binaries
/// passes its own timeout (`get_timeout`), so this bounds nothing else.
const CONNECT_RETRY_WINDOW: Duration = Duration::from_secs(4);

/// A pool that connects lazily: the process starts (and reports not-ready) while Postgres is
/// down, instead of refusing to start. Its connections give up on a silent peer within seconds
/// (`conninfo::for_this_process`).
pub fn pool(url: &str, settings: &PoolSettings) -> PgPool {
    pool_with(url, settings, None)
}

/// [`pool`], whose sessions also run with `statement_timeout` at `limit`: Postgres cancels a
/// statement that runs (or waits on a lock) longer, so the caller learns that it did nothing
/// rather than giving up on it not knowing (the API's pools: its requests wait on a statement
/// for a bounded time).
pub fn pool_with_statement_timeout(url: &str, settings: &PoolSettings, limit: Duration) -> PgPool {
    pool_with(url, settings, Some(limit))
}

fn pool_with(url: &str, settings: &PoolSettings, statement_timeout: Option<Duration>) -> PgPool {
    let url = crate::conninfo::for_this_process(url);
    let session = match statement_timeout {
        Some(limit) => {
            format!("{IDLE_IN_TRANSACTION_LIMIT}; SET statement_timeout = {}", limit.as_millis())
        }
        None => IDLE_IN_TRANSACTION_LIMIT.to_owned(),
    };
    Pool::builder()
        .max_size(settings.max_size)
        .min_idle(Some(settings.min_idle.min(settings.max_size)))
        .connection_timeout(CONNECT_RETRY_WINDOW)
        .max_lifetime(Some(settings.max_lifetime))
        .test_on_check_out(settings.test_on_checkout)
        .error_handler(Box::new(ConnectErrors::default()))
        .build_unchecked(PingWhenIdle { inner: ConnectionManager::new(url), session })
}

/// How often a pool logs that it cannot connect.
const CONNECT_ERROR_EVERY: Duration = Duration::from_secs(10);

/// Logs a pool's failed connection attempts at most once per [`CONNECT_ERROR_EVERY`], with the
/// count of those left out since. r2d2's own handler logged every one: while Postgres was away,
/// an idle API wrote about 15 error lines a second (each missing connection retried 0.2–2 s
/// apart, in each pool), which buried the lines that said what else was happening.
#[derive(Debug, Default)]
struct ConnectErrors {
    /// When the last line was written, and the failures since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl ConnectErrors {
    /// Whether a failure at `now` is logged, and if so, how many were left out before it.
    fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, left_out) = &mut *state;
        if last.is_some_and(|at| now.duration_since(at) < CONNECT_ERROR_EVERY) {
            *left_out += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(left_out))
    }
}

impl HandleError<diesel::r2d2::Error> for ConnectErrors {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        if let Some(left_out) = self.admit(Instant::now()) {
            tracing::error!(
                %error,
                left_out,
                "a database pool could not connect (logged at most every 10 s)"
            );
        }
    }
}

/// Set on every pooled connection: Postgres ends a session that sits inside a transaction this
/// long without sending anything. No transaction of ours waits on anything but Postgres (each
/// runs whole in one blocking call), so only a frozen or cut-off process gets there, and its
/// row locks then hold up every other process (a claim's lock held up the reconciler, for the
/// whole fleet, and a cancel, for as long as the worker stayed frozen: 85 s in a test).
const IDLE_IN_TRANSACTION_LIMIT: &str = "SET idle_in_transaction_session_timeout = '10s'";

/// How long a connection that answered counts as alive without another ping.
const TRUSTED_FOR: Duration = Duration::from_secs(1);

/// diesel's connection manager, except that the checkout test (`DB_POOL_TEST_ON_CHECKOUT`)
/// pings a connection only if it has not been seen alive for a second. A busy pool then pays
/// one ping a second per connection instead of one round trip per checkout (a job took five),
/// while a connection that sat idle through a Postgres restart is still caught before use. A
/// connection that breaks inside the second fails its query as it would have failed after a
/// ping that raced the break, and is dropped on return ([`ManageConnection::has_broken`]).
#[derive(Debug)]
pub struct PingWhenIdle {
    inner: ConnectionManager<PgConnection>,
    /// Set on every new connection: [`IDLE_IN_TRANSACTION_LIMIT`], and the pool's own limits.
    session: String,
}

/// A pooled connection and when it was last known to be alive.
pub struct PgConn {
    conn: PgConnection,
    alive_at: Instant,
}

impl Deref for PgConn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

impl ManageConnection for PingWhenIdle {
    type Connection = PgConn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<PgConn, Self::Error> {
        let mut conn = self.inner.connect()?;
        diesel::connection::SimpleConnection::batch_execute(&mut conn, &self.session)
            .map_err(diesel::r2d2::Error::QueryError)?;
        Ok(PgConn { conn, alive_at: Instant::now() })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), Self::Error> {
        if conn.alive_at.elapsed() < TRUSTED_FOR {
            return Ok(());
        }
        self.inner.is_valid(&mut conn.conn)?;
        conn.alive_at = Instant::now();
        Ok(())
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        self.inner.has_broken(&mut conn.conn)
    }
}

/// Applies pending migrations, one process at a time; returns the versions applied.
pub fn migrate(url: &str) -> anyhow::Result<Vec<String>> {
    let mut conn = PgConnection::establish(url).context("connecting to Postgres to migrate")?;
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK)
        .execute(&mut conn)
        .context("taking the migration lock")?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.iter().map(ToString::to_string).collect())
        .map_err(|e| anyhow::anyhow!("applying migrations: {e}"));
    let unlocked = diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK)
        .execute(&mut conn);
    let applied = applied?;
    unlocked.context("releasing the migration lock")?;
    ensure_audit_partitions(&mut conn)?;
    Ok(applied)
}

/// The migrations this build embeds that the database has not applied (by version), read
/// without writing anything (diesel's own check would create its table in an empty
/// database). A process on such a schema answers its requests with errors: `/ready` says so
/// instead of passing a deploy whose migrate step was skipped, or a secret naming the wrong
/// database.
pub fn missing_migrations(conn: &mut PgConnection) -> anyhow::Result<Vec<String>> {
    use diesel::migration::MigrationSource;
    let embedded = MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
        .map_err(|e| anyhow::anyhow!("listing the embedded migrations: {e}"))?;
    #[derive(QueryableByName)]
    struct Present {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        present: bool,
    }
    #[derive(QueryableByName)]
    struct AppliedVersion {
        #[diesel(sql_type = diesel::sql_types::Text)]
        version: String,
    }
    let table: Present = diesel::sql_query(
        "SELECT to_regclass('__diesel_schema_migrations') IS NOT NULL AS present",
    )
    .get_result(conn)
    .context("looking for the migrations table")?;
    let applied: Vec<AppliedVersion> = if table.present {
        diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
            .load(conn)
            .context("reading the applied migrations")?
    } else {
        Vec::new()
    };
    let applied: std::collections::HashSet<String> =
        applied.into_iter().map(|a| a.version).collect();
    Ok(embedded
        .iter()
        .map(|m| m.name().version().to_string())
        .filter(|v| !applied.contains(v))
        .collect())
}

#[derive(QueryableByName)]
struct Created {
    #[diesel(sql_type = Integer)]
    created: i32,
}

/// Creates this month's audit partition and the next ones' if missing; returns how many it
/// created. Cheap when they exist, so processes call it at start and then hourly.
pub fn ensure_audit_partitions(conn: &mut PgConnection) -> anyhow::Result<i32> {
    let row: Created = diesel::sql_query("SELECT ensure_audit_log_partitions($1) AS created")
        .bind::<Integer, _>(AUDIT_PARTITIONS_AHEAD)
        .get_result(conn)
        .context("creating audit_logs partitions")?;
    Ok(row.created)
}

#[derive(QueryableByName)]
struct Dropped {
    #[diesel(sql_type = Integer)]
    dropped: i32,
}

/// Audit retention (`AUDIT_RETENTION_MONTHS`): detaches and drops the monthly audit partitions
/// whose whole month ended more than `months` months before the current one (on the database's
/// clock, UTC), and the default partition's rows as old. Returns how many partitions it dropped.
/// With 13, December 2026 keeps November 2025 onwards.
pub fn drop_old_audit_partitions(conn: &mut PgConnection, months: u32) -> anyhow::Result<i32> {
    let months = i32::try_from(months).context("retention in months")?;
    let row: Dropped = diesel::sql_query(
        "SELECT drop_audit_log_partitions_before(\
           (date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => $1))::date\
         ) AS dropped",
    )
    .bind::<Integer, _>(months)
    .get_result(conn)
    .context("dropping old audit_logs partitions")?;
    Ok(row.dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_are_logged_once_per_interval_with_the_count_left_out() {
        let errors = ConnectErrors::default();
        let start = Instant::now();
        assert_eq!(errors.admit(start), Some(0), "the first is logged");
        for ms in [200, 2_000, 9_999] {
            assert_eq!(errors.admit(start + Duration::from_millis(ms)), None, "{ms} ms");
        }
        assert_eq!(errors.admit(start + CONNECT_ERROR_EVERY), Some(3));
        assert_eq!(errors.admit(start + CONNECT_ERROR_EVERY + Duration::from_secs(1)), None);
        assert_eq!(errors.admit(start + 3 * CONNECT_ERROR_EVERY), Some(1));
    }
}
