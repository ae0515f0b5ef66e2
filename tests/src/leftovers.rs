//! What a test left behind, checked when its [`crate::TestEnv`] is dropped (as crates.io's test
//! app asserts that no background job was left unprocessed): every job it created must be in a
//! terminal state, and the queue must hold no entry that still means work.
//!
//! Entries are what the queue keeps for work waiting or held: the ready list, the scheduled set
//! and each worker's in-flight set. An entry of a job that has finished is not work left behind:
//! its delivery is dropped at the claim (`Finished`), and a test's workers are stopped at any
//! moment, e.g. between a job's outcome and the acknowledgement of its delivery, or between a
//! re-push (`HeldElsewhere`) and that entry's delivery. apalis-redis's bookkeeping is not an
//! entry either: the done and dead sets, the data and meta hashes, the workers set and its
//! metadata, the signal list.

use std::collections::HashMap;

use diesel::pg::PgConnection;
use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use portfolio_shared::queue::{self, Keys};
use ulid::Ulid;
use uuid::Uuid;

/// What the test left: one line per unfinished job or queue entry; empty when it cleaned up.
pub fn left_behind(
    database_url: &str,
    redis_url: &str,
    keys: &Keys,
) -> Result<Vec<String>, String> {
    let redis = redis::Client::open(redis_url).map_err(|e| format!("Redis: {e}"))?;
    left_behind_on(database_url, &redis, keys)
}

/// [`left_behind`] with a Redis client of the caller's (one that trusts a private CA, say).
pub fn left_behind_on(
    database_url: &str,
    redis: &redis::Client,
    keys: &Keys,
) -> Result<Vec<String>, String> {
    let statuses = job_statuses(database_url)?;
    let mut found: Vec<String> = statuses
        .iter()
        .filter(|(_, status)| !is_terminal(status))
        .map(|(id, status)| format!("job {id} is {status}"))
        .collect();
    for (place, member) in entries(redis, keys)? {
        let job = member.parse::<Ulid>().ok().map(queue::job_id);
        let what = match job.map(|id| (id, statuses.get(&id))) {
            Some((_, Some(status))) if is_terminal(status) => continue,
            Some((id, Some(status))) => format!("job {id}, {status}"),
            Some((id, None)) => format!("job {id}, which has no row"),
            None => "not a job's id".to_owned(),
        };
        found.push(format!("{place} holds {member} ({what})"));
    }
    Ok(found)
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    status: String,
}

/// Every job's status; none when the database was never migrated.
fn job_statuses(url: &str) -> Result<HashMap<Uuid, String>, String> {
    let mut conn = PgConnection::establish(url).map_err(|e| format!("Postgres: {e}"))?;
    let rows = diesel::sql_query("SELECT id, status FROM simulations").load::<Row>(&mut conn);
    match rows {
        Ok(rows) => Ok(rows.into_iter().map(|r| (r.id, r.status)).collect()),
        Err(diesel::result::Error::DatabaseError(_, info))
            if info.message().contains("does not exist") =>
        {
            Ok(HashMap::new())
        }
        Err(e) => Err(format!("Postgres: {e}")),
    }
}

/// (where, member) of every entry: ready, scheduled, or in any worker's in-flight set.
fn entries(redis: &redis::Client, keys: &Keys) -> Result<Vec<(String, String)>, String> {
    let redis_error = |e: redis::RedisError| format!("Redis: {e}");
    let mut conn = redis.get_connection().map_err(redis_error)?;
    let mut found = Vec::new();
    let ready: Vec<String> = redis::cmd("LRANGE")
        .arg(keys.ready_list())
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .map_err(redis_error)?;
    found.extend(ready.into_iter().map(|m| ("the ready list".to_owned(), m)));
    let scheduled: Vec<String> = redis::cmd("ZRANGE")
        .arg(keys.scheduled_set())
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .map_err(redis_error)?;
    found.extend(scheduled.into_iter().map(|m| ("the scheduled set".to_owned(), m)));
    let sets: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", keys.inflight_prefix()))
        .query(&mut conn)
        .map_err(redis_error)?;
    for set in sets {
        let members: Vec<String> =
            redis::cmd("SMEMBERS").arg(&set).query(&mut conn).map_err(redis_error)?;
        found.extend(members.into_iter().map(|m| (set.clone(), m)));
    }
    Ok(found)
}
