//! The Postgres connections the API and a worker hold, counted by Postgres itself
//! (`pg_stat_activity`, by the `application_name` each test puts in the URLs it hands out): the
//! connection budget in docs/operations.md is only true if the processes hold what it says.

use std::time::Duration;

use diesel::sql_types::{BigInt, Text};
use diesel::{QueryableByName, RunQueryDsl};
use portfolio_tests::{TestEnv, eventually};

const WITHIN: Duration = Duration::from_secs(20);

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Connections to the environment's database opened with `application_name`.
fn connections(env: &TestEnv, application_name: &str) -> i64 {
    diesel::sql_query(
        "SELECT count(*) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1",
    )
    .bind::<Text, _>(application_name)
    .get_result::<Count>(&mut env.db.connect())
    .expect("count connections")
    .n
}

/// The environment's database URL, with connections named `application_name`.
fn named(env: &TestEnv, application_name: &str) -> String {
    let separator = if env.db.url.contains('?') { '&' } else { '?' };
    format!("{}{separator}application_name={application_name}", env.db.url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_whose_read_url_is_the_primary_holds_one_pool_not_two() {
    const POOL: i64 = 3;
    // The same URL for both: one pool of 3 (plus, once it leads, the leader's own connection).
    let mut same = TestEnv::new();
    let url = named(&same, "pmc_same");
    same.set("DATABASE_URL", &url).set("DATABASE_READ_URL", &url);
    same.set("DB_POOL_MAX_SIZE", POOL).set("DB_POOL_MIN_IDLE", POOL);
    let _app = same.spawn_app().await;
    eventually(WITHIN, || async { (connections(&same, "pmc_same") >= POOL).then_some(()) }).await;

    // A real second URL (here the same server under another name, as a replica would be):
    // two pools, each filled to its minimum. Built after the first API's, so by the time they
    // are full a second pool of the first API would be too.
    let mut two = TestEnv::new();
    let (primary, replica) = (named(&two, "pmc_primary"), named(&two, "pmc_replica"));
    two.set("DATABASE_URL", primary).set("DATABASE_READ_URL", replica);
    two.set("DB_POOL_MAX_SIZE", POOL).set("DB_POOL_MIN_IDLE", POOL);
    let _other = two.spawn_app().await;
    eventually(WITHIN, || async {
        (connections(&two, "pmc_replica") == POOL && connections(&two, "pmc_primary") >= POOL)
            .then_some(())
    })
    .await;

    let held = connections(&same, "pmc_same");
    assert!(
        (POOL..=POOL + 1).contains(&held),
        "an API whose DATABASE_READ_URL is its DATABASE_URL holds {held} connections: one pool \
         of {POOL} (and the leader's one) expected, not two pools"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unset_pool_sizes_give_the_api_the_old_guides_pool_and_a_worker_a_handful() {
    // The pool variables unset (blank), as the deploy files leave them.
    let mut env = TestEnv::new();
    env.set("DB_POOL_MAX_SIZE", "").set("DB_POOL_MIN_IDLE", "");
    let (api_url, worker_url) = (named(&env, "pmc_api"), named(&env, "pmc_worker"));
    env.set("DATABASE_URL", api_url);
    let _app = env.spawn_app().await;
    env.set("DATABASE_URL", worker_url).set("WORKER_CONCURRENCY", 3);
    let _worker = env.spawn_worker().await;

    // The API fills its 10 idle connections; a connection asked for while they are still
    // being opened opens another (r2d2), so a starting API may hold more, never above its 30
    // (+ the leader's own). An idle worker keeps 1, where it used to keep the API's 10.
    eventually(WITHIN, || async {
        (connections(&env, "pmc_api") >= 10 && connections(&env, "pmc_worker") >= 1).then_some(())
    })
    .await;
    let api = connections(&env, "pmc_api");
    let worker = connections(&env, "pmc_worker");
    assert!((10..=31).contains(&api), "the API holds {api}: from its 10 idle to its 30 (+1)");
    assert_eq!(worker, 1, "an idle worker holds its one idle connection");
}

/// A pooled connection left inside a transaction that holds a row lock (its process frozen or
/// cut off from Postgres) is ended by Postgres after 10 s, and a statement waiting on the lock
/// (the reconciler's touch, a cancel) goes on: the lock is not held for as long as the freeze.
#[test]
fn a_transaction_left_idle_ends_and_frees_its_row_lock() {
    use diesel::Connection;
    use diesel::connection::SimpleConnection;

    let env = TestEnv::new();
    let settings = env.settings();
    let pool = portfolio_shared::db::pool(&env.db.url, &settings.database.worker_pool);
    let mut frozen = pool.get().unwrap();
    frozen
        .batch_execute("CREATE TABLE locked (id int PRIMARY KEY); INSERT INTO locked VALUES (1)")
        .unwrap();
    frozen.batch_execute("BEGIN; SELECT * FROM locked WHERE id = 1 FOR UPDATE").unwrap();
    // Nothing more is sent on `frozen`: its process might as well be stopped.
    let mut other = diesel::PgConnection::establish(&env.db.url).unwrap();
    // Without the limit the lock would be held for good: the wait fails after 30 s instead.
    other.batch_execute("SET statement_timeout = '30s'").unwrap();
    let started = std::time::Instant::now();
    other.batch_execute("UPDATE locked SET id = 2 WHERE id = 1").unwrap();
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(30), "the lock held for {waited:?}");
    assert!(waited >= Duration::from_secs(5), "it never waited ({waited:?}): no lock was held");
    assert!(frozen.batch_execute("SELECT 1").is_err(), "the idle session was not ended");
}
