//! The result cache (issue 12, part 1), the validators of an ended job's document, a lagging
//! read replica (read-your-writes) and audit retention. The cache is off in every other test
//! (`TestEnv` sets `RESULT_CACHE_TTL_SECS=0`); these turn it on.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};
use portfolio_tests::{TestDb, TestEnv, eventually, stored_result_columns};
use serde_json::{Value, json};
use uuid::Uuid;

fn seeded(seed: u64) -> Value {
    json!({"starting_portfolio": 1_000_000, "monthly_spending": 4_000, "years": 10,
           "n_scenarios": 300, "seed": seed})
}

fn cached_env() -> TestEnv {
    let mut env = TestEnv::new();
    env.set("RESULT_CACHE_TTL_SECS", 3600);
    env
}

/// POST /simulations with `Prefer: wait=30`: (status, body).
async fn submit_waiting(app: &portfolio_tests::ApiClient, body: &Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url("/simulations"))
        .header("Prefer", "wait=30")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn id_of(job: &Value) -> Uuid {
    job["id"].as_str().unwrap().parse().unwrap()
}

/// The engine's document of a job, without the cache's mark.
fn engine_result(job: &Value) -> Value {
    let mut result = job["result"].clone();
    result.as_object_mut().expect("a result").remove("cache");
    result
}

#[derive(QueryableByName, Debug, PartialEq)]
struct AuditRow {
    #[diesel(sql_type = Text)]
    event: String,
    #[diesel(sql_type = Text)]
    actor: String,
    #[diesel(sql_type = Text)]
    cache: String,
}

fn audit_of(env: &TestEnv, id: Uuid) -> Vec<AuditRow> {
    diesel::sql_query(
        "SELECT event, actor, coalesce(data->>'cache', '') AS cache FROM audit_logs \
         WHERE simulation_id = $1 ORDER BY id",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .load(&mut env.db.connect())
    .unwrap()
}

/// The value of one series of the API's metrics.
fn series(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels).map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("no series {name_and_labels} in\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_seeded_submit_is_answered_from_the_cache_with_no_worker() {
    let env = cached_env();
    let app = env.spawn_app().await;
    let worker = env.spawn_worker().await;
    let (status, first) = submit_waiting(&app, &seeded(7)).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["status"], "succeeded");
    assert!(first["result"].get("cache").is_none(), "a computed result has no cache mark");
    // No worker from here on: only the cache can answer.
    worker.stop().await.unwrap();

    // Without `Prefer: wait`: the submit's own answer is the ended job.
    let response = app.submit(&seeded(7)).await;
    assert_eq!(response.status(), 200, "a hit is answered at once, ended");
    assert!(response.headers().get("location").is_some());
    let second: Value = response.json().await.unwrap();
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_eq!(second["result"]["cache"], "hit");
    assert_ne!(second["id"], first["id"], "a hit is a job of its own");
    assert_eq!(engine_result(&second), engine_result(&first), "bit-identical to the computed one");
    assert_eq!(second["progress"], first["progress"]);
    assert_eq!(second["seed"], 7);

    // It reads, lists and audits like any job, and says where its result came from.
    let read = app.job(id_of(&second)).await;
    assert_eq!(read["result"]["cache"], "hit");
    assert_eq!(engine_result(&read), engine_result(&first));
    let list: Value =
        app.client.get(app.url("/results")).send().await.unwrap().json().await.unwrap();
    assert!(list["items"].as_array().unwrap().iter().any(|j| j["id"] == second["id"]));
    // The worker stored the text it serialised in the json column; the hit, written by the API,
    // went to the jsonb one that every release reads (docs/operations.md).
    let mut conn = env.db.connect();
    let (result, document) = stored_result_columns(&mut conn, id_of(&first));
    let computed_text = document.expect("the worker stores into `document`");
    assert_eq!(result, None);
    assert_eq!(serde_json::from_str::<Value>(&computed_text).unwrap(), engine_result(&first));
    let (result, document) = stored_result_columns(&mut conn, id_of(&second));
    assert_eq!(document, None);
    assert_eq!(
        serde_json::from_str::<Value>(&result.expect("a hit is stored into `result`")).unwrap(),
        engine_result(&first)
    );
    let audit = audit_of(&env, id_of(&second));
    let events: Vec<(&str, &str)> =
        audit.iter().map(|r| (r.event.as_str(), r.cache.as_str())).collect();
    assert_eq!(events, [("submitted", ""), ("succeeded", "hit")], "no `started`: no worker ran");

    // The first hit came from Redis (this process had not seen the result); the next from
    // memory.
    let third = app.submit(&seeded(7)).await;
    assert_eq!(third.status(), 200);
    let metrics = app.metrics_text().await;
    let hits = |layer: &str| {
        series(
            &metrics,
            &format!("portfolio_result_cache_lookups_total{{layer=\"{layer}\",outcome=\"hit\"}}"),
        )
    };
    assert_eq!((hits("l1"), hits("l2")), (1.0, 1.0), "{metrics}");

    // Another seed is another result: it waits for a worker.
    let other = app.submit(&seeded(8)).await;
    assert_eq!(other.status(), 202);
    let other: Value = other.json().await.unwrap();
    let cancel =
        app.client.delete(app.url(&format!("/simulations/{}", other["id"].as_str().unwrap())));
    assert_eq!(cancel.send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_kept_in_memory_expires_with_the_redis_entry_it_copied() {
    let env = cached_env();
    let app = env.spawn_app().await;
    let worker = env.spawn_worker().await;
    let (status, first) = submit_waiting(&app, &seeded(21)).await;
    assert_eq!((status, &first["status"]), (200, &json!("succeeded")), "{first}");
    worker.stop().await.unwrap();
    // The entry as it is near the end of its hour: a second and a half left in Redis.
    let mut redis = env.queue.connection();
    let pattern = env.queue.keys().result_cache("*");
    let entries: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut redis).unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let _: () = redis::cmd("PEXPIRE").arg(&entries[0]).arg(1500).query(&mut redis).unwrap();

    // A hit from Redis leaves a copy in this process's memory...
    let (status, hit) = submit_waiting(&app, &seeded(21)).await;
    assert_eq!((status, &hit["result"]["cache"]), (200, &json!("hit")), "{hit}");
    // ...which is gone once Redis's entry is: the next submit is a job to run.
    eventually(Duration::from_secs(10), || async {
        let left: i64 =
            redis::cmd("PTTL").arg(&entries[0]).query(&mut env.queue.connection()).unwrap();
        (left == -2).then_some(())
    })
    .await;
    let response = app.submit(&seeded(21)).await;
    assert_eq!(response.status(), 202, "served after the entry expired");
    let job: Value = response.json().await.unwrap();
    let cancel =
        app.client.delete(app.url(&format!("/simulations/{}", job["id"].as_str().unwrap())));
    assert_eq!(cancel.send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_is_the_callers_own_job_and_names_nothing_of_the_first_tenants() {
    let env = cached_env();
    let app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;
    let alice = app.as_key(&env.key("alice", &["simulate"]));
    let bob = app.as_key(&env.key("bob", &["simulate"]));
    let (_, first) = submit_waiting(&alice, &seeded(11)).await;
    assert_eq!(first["status"], "succeeded");
    let response = bob.submit(&seeded(11)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains(first["id"].as_str().unwrap()), "Alice's job id leaked: {text}");
    let hit: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(hit["result"]["cache"], "hit");
    // Bob's job is Bob's: Alice cannot see it.
    let theirs = alice.client.get(alice.url(&format!("/results/{}", hit["id"].as_str().unwrap())));
    assert_eq!(theirs.send().await.unwrap().status(), 404);
    assert_eq!(bob.job(id_of(&hit)).await["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_seed_or_with_the_cache_off_always_runs() {
    // Unseeded: the server draws a seed, and the result is a new draw by design.
    let env = cached_env();
    env.leaves_unfinished_jobs("jobs stay queued on purpose: no worker may run them");
    let app = env.spawn_app().await;
    let worker = env.spawn_worker().await;
    let mut unseeded = seeded(0);
    unseeded.as_object_mut().unwrap().remove("seed");
    let (_, first) = submit_waiting(&app, &unseeded).await;
    assert_eq!(first["status"], "succeeded");
    worker.stop().await.unwrap();
    assert_eq!(app.submit(&unseeded).await.status(), 202, "an unseeded request is never cached");

    // RESULT_CACHE_TTL_SECS=0: seeded requests run every time.
    let mut off = TestEnv::new();
    off.set("RESULT_CACHE_TTL_SECS", 0);
    off.leaves_unfinished_jobs("jobs stay queued on purpose: no worker may run them");
    let app = off.spawn_app().await;
    let worker = off.spawn_worker().await;
    let (_, first) = submit_waiting(&app, &seeded(7)).await;
    assert_eq!(first["status"], "succeeded");
    worker.stop().await.unwrap();
    assert_eq!(app.submit(&seeded(7)).await.status(), 202, "the cache is off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_of_another_engine_version_is_a_miss() {
    let env = cached_env();
    env.leaves_unfinished_jobs("the job stays queued on purpose: no worker runs");
    let app = env.spawn_app().await;
    // An entry where this request's would be, but made by another engine version (a rolling
    // upgrade: an old worker's entry under a key both compute alike would be wrong to serve).
    let (_, computed) = {
        let worker = env.spawn_worker().await;
        let answer = submit_waiting(&app, &seeded(21)).await;
        worker.stop().await.unwrap();
        answer
    };
    let mut redis = env.queue.connection();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:result:*", env.queue.namespace))
        .query(&mut redis)
        .unwrap();
    assert_eq!(keys.len(), 1, "the worker cached the seeded result: {keys:?}");
    let mut entry: Value =
        serde_json::from_str(&redis::cmd("GET").arg(&keys[0]).query::<String>(&mut redis).unwrap())
            .unwrap();
    assert_eq!(entry["result"], engine_result(&computed), "the entry is the stored result");
    let ttl: i64 = redis::cmd("TTL").arg(&keys[0]).query(&mut redis).unwrap();
    assert!((3500..=3600).contains(&ttl), "RESULT_CACHE_TTL_SECS sets its lifetime: {ttl}");
    entry["engine_version"] = json!("portfolio-mc-engine/0.0.0 (an older layout)");
    let _: () = redis::cmd("SET").arg(&keys[0]).arg(entry.to_string()).query(&mut redis).unwrap();
    // A fresh API, so its memory layer holds nothing.
    let fresh = env.spawn_app().await;
    assert_eq!(fresh.submit(&seeded(21)).await.status(), 202, "another version's entry misses");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_jobs_document_has_an_etag_and_answers_304_to_it() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let id = app.submit_ok(&seeded(3)).await;
    // Before it ends: never stored by anyone.
    let queued = app.client.get(app.url(&format!("/results/{id}"))).send().await.unwrap();
    assert_eq!(queued.headers()["cache-control"], "private, no-store");
    assert!(queued.headers().get("etag").is_none());
    let _worker = env.spawn_worker().await;
    app.wait_terminal(id, Duration::from_secs(30)).await;
    let ended = app.client.get(app.url(&format!("/results/{id}"))).send().await.unwrap();
    assert_eq!(ended.status(), 200);
    let etag = ended.headers()["etag"].to_str().unwrap().to_owned();
    let cache_control = ended.headers()["cache-control"].to_str().unwrap().to_owned();
    assert!(
        cache_control.starts_with("private") && cache_control.contains("max-age="),
        "{cache_control}"
    );
    assert!(etag.starts_with('"') && etag.ends_with('"'), "a strong validator: {etag}");
    let body = ended.text().await.unwrap();
    let again = app
        .client
        .get(app.url(&format!("/results/{id}")))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert!(again.text().await.unwrap().is_empty());
    let other = app
        .client
        .get(app.url(&format!("/results/{id}")))
        .header("If-None-Match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert_eq!(other.text().await.unwrap(), body, "the same document, byte for byte");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_polling_through_a_lagging_replica_reads_its_own_writes() {
    // The "replica" is a database the primary's writes never reach: the worst lag there is.
    let replica = TestDb::migrated();
    let mut env = TestEnv::new();
    env.set("DATABASE_READ_URL", &replica.url);
    let app = env.spawn_app().await;
    let id = app.submit_ok(&seeded(5)).await;
    let job = app.job(id).await;
    assert_eq!(job["status"], "queued", "read right after the 202, from the primary");
    let _worker = env.spawn_worker().await;
    let ended = app.wait_terminal(id, Duration::from_secs(30)).await;
    assert_eq!(ended["status"], "succeeded");
    let chart = app.client.get(app.url(&format!("/results/{id}/charts/fan.svg"))).send();
    assert_eq!(chart.await.unwrap().status(), 200, "charts read their own writes too");
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    relname: String,
}

fn audit_partitions(conn: &mut PgConnection) -> Vec<String> {
    diesel::sql_query(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'audit_logs'::regclass ORDER BY 1",
    )
    .load::<Name>(conn)
    .unwrap()
    .into_iter()
    .map(|n| n.relname)
    .collect()
}

/// The partition name of the month `months_ago` before this one, on the database's clock.
fn month_ago(conn: &mut PgConnection, months_ago: i32) -> String {
    diesel::sql_query(
        "SELECT to_char(date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => $1), \
         '\"audit_logs_y\"YYYY\"m\"MM') AS relname",
    )
    .bind::<Integer, _>(months_ago)
    .get_result::<Name>(conn)
    .unwrap()
    .relname
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_drops_audit_partitions_past_the_retention() {
    let mut env = TestEnv::new();
    env.set("AUDIT_RETENTION_MONTHS", 13);
    let mut conn = env.db.connect();
    // Partitions of 20, 14 and 13 months ago, each with a row (a partition is made for a month
    // by the same function the service uses).
    for months in [20, 14, 13] {
        diesel::sql_query(
            "SELECT ensure_audit_log_partition(\
               ((date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => $1)))::date)",
        )
        .bind::<Integer, _>(months)
        .execute(&mut conn)
        .unwrap();
        diesel::sql_query(
            "INSERT INTO audit_logs (simulation_id, event, actor, data, created_at) \
             VALUES (gen_random_uuid(), 'submitted', 'api', '{}', \
                     date_trunc('month', now()) - make_interval(months => $1) + interval '1 day')",
        )
        .bind::<Integer, _>(months)
        .execute(&mut conn)
        .unwrap();
    }
    let (m20, m14, m13) =
        (month_ago(&mut conn, 20), month_ago(&mut conn, 14), month_ago(&mut conn, 13));
    let before = audit_partitions(&mut conn);
    assert!([&m20, &m14, &m13].iter().all(|m| before.contains(m)), "{before:?}");
    let _app = env.spawn_app().await;
    let after = eventually(Duration::from_secs(20), || {
        let parts = audit_partitions(&mut conn);
        let gone = !parts.contains(&m14);
        async move { gone.then_some(parts) }
    })
    .await;
    assert!(!after.contains(&m20), "older than the retention: dropped ({after:?})");
    assert!(after.contains(&m13), "13 months ago is kept with a retention of 13: {after:?}");
    assert!(after.contains(&month_ago(&mut conn, 0)), "this month's is kept");
    assert!(after.iter().any(|p| p == "audit_logs_default"));
}

#[test]
fn a_retention_of_zero_keeps_every_partition() {
    let db = TestDb::migrated();
    let mut conn = db.connect();
    diesel::sql_query("SELECT ensure_audit_log_partition('2001-01-15'::date)")
        .execute(&mut conn)
        .unwrap();
    let settings = {
        let mut env = TestEnv::with(TestDb::migrated(), portfolio_tests::TestQueue::new());
        env.set("AUDIT_RETENTION_MONTHS", 0);
        env.settings()
    };
    assert_eq!(settings.api.audit_retention_months, None, "0 means keep all");
    // And the function itself keeps what is inside the window.
    assert_eq!(portfolio_shared::db::drop_old_audit_partitions(&mut conn, 1200).unwrap(), 0);
    assert!(audit_partitions(&mut conn).contains(&"audit_logs_y2001m01".to_owned()));
    assert_eq!(portfolio_shared::db::drop_old_audit_partitions(&mut conn, 13).unwrap(), 1);
    assert!(!audit_partitions(&mut conn).contains(&"audit_logs_y2001m01".to_owned()));
}
