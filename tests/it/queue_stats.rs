//! `/queue/stats` (what Redis and Postgres say about the queue and the jobs lately), the
//! queue-depth sampler behind the dashboard's chart, and `/queue/charts/depth.svg`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use portfolio_api::sampler::SAMPLE_LOCK;
use portfolio_shared::schema::queue_samples;
use portfolio_shared::store::stats::{NewQueueSample, record_sample};
use portfolio_tests::{TestDb, TestEnv, eventually, small_request, throwaway};
use serde_json::{Value, json};
use uuid::Uuid;

const WITHIN: Duration = Duration::from_secs(60);

async fn stats(app: &portfolio_tests::TestApp) -> Value {
    let response = app.client.get(app.url("/queue/stats")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn seconds_between(job: &Value, from: &str, to: &str) -> f64 {
    let at = |k: &str| job[k].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
    (at(to) - at(from)).num_microseconds().unwrap() as f64 / 1e6
}

/// Records a job as failed for good, as a worker that gave up would.
fn insert_failed_job(db: &TestDb, error: &str) -> Uuid {
    let id = Uuid::now_v7();
    diesel::sql_query(
        "INSERT INTO simulations (id, status, request, seed, attempts, error, created_at, \
         started_at, finished_at, owner) \
         VALUES ($1, 'failed', '{}', 1, 3, $2, now() - interval '20 seconds', \
         now() - interval '10 seconds', now(), 'bootstrap')",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<diesel::sql_types::Text, _>(error)
    .execute(&mut db.connect())
    .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_stats_reports_depth_workers_throughput_latency_and_failures() {
    let mut env = TestEnv::new();
    env.set("RESULT_CACHE_TTL_SECS", 3600);
    env.leaves_unfinished_jobs("jobs are left waiting so that the ready depth shows");
    let app = env.spawn_app().await;
    let worker = env.spawn_worker().await;
    let mut finished = Vec::new();
    let mut seeded = small_request();
    seeded["seed"] = 7.into();
    for request in [small_request(), seeded.clone()] {
        let id = app.submit_ok(&request).await;
        let job = app.wait_terminal(id, WITHIN).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        finished.push(job);
    }
    // The same seeded plan again is answered from the result cache: no worker ran it, so it
    // counts neither as work done nor in the time work takes (it took none).
    // (The worker stores the result in the cache right after the job's commit.)
    let cached = env.queue.keys().result_cache("*");
    eventually(Duration::from_secs(10), || async {
        let found: Vec<String> =
            redis::cmd("KEYS").arg(&cached).query(&mut env.queue.connection()).unwrap();
        (!found.is_empty()).then_some(())
    })
    .await;
    let hit = app.client.post(app.url("/simulations")).json(&seeded).send().await.unwrap();
    assert_eq!(hit.status(), 200);
    let hit: serde_json::Value = hit.json().await.unwrap();
    assert_eq!(hit["result"]["cache"], "hit", "{hit}");
    let seen = eventually(Duration::from_secs(10), || async {
        let s = stats(&app).await;
        let listed = s["queue"]["workers"].as_array().unwrap().iter().any(|w| {
            w["name"] == worker.name.as_str()
                && w["alive"] == true
                && w["last_heartbeat"].is_string()
        });
        (listed && s["queue"]["workers_alive"].as_u64() >= Some(1)).then_some(s)
    })
    .await;
    assert_eq!(seen["redis"]["available"], true);
    worker.stop().await.unwrap();

    let failed = insert_failed_job(&env.db, "engine exploded");
    for _ in 0..3 {
        app.submit_ok(&small_request()).await;
    }
    let s = stats(&app).await;
    assert_eq!(s["redis"], serde_json::json!({ "available": true }));
    assert_eq!(s["postgres"], serde_json::json!({ "available": true }));

    let q = &s["queue"];
    assert_eq!((q["ready"].as_u64(), q["scheduled"].as_u64()), (Some(3), Some(0)), "{q}");
    assert_eq!(q["dead"].as_u64(), Some(0), "{q}");
    let age = q["oldest_ready_age_seconds"].as_f64().unwrap();
    assert!(age > 0.0 && age < 60.0, "{age}");

    let jobs = &s["jobs"];
    let windows: Vec<(i64, i64, i64, i64, i64, f64)> = jobs["throughput"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let n = |k: &str| w[k].as_i64().unwrap();
            (
                n("window_minutes"),
                n("finished"),
                n("succeeded"),
                n("failed"),
                n("cancelled"),
                w["per_minute"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        windows,
        vec![(1, 3, 2, 1, 0, 3.0), (5, 3, 2, 1, 0, 0.6), (15, 3, 2, 1, 0, 0.2)],
        "{jobs}"
    );

    // Submit-to-result of the two succeeded jobs: percentiles with linear interpolation.
    let mut times: Vec<f64> =
        finished.iter().map(|j| seconds_between(j, "created_at", "finished_at")).collect();
    times.sort_by(f64::total_cmp);
    let latency = &jobs["latency"];
    assert_eq!(latency["window_minutes"], 5);
    assert_eq!(latency["jobs"], 2);
    let p50 = latency["p50_seconds"].as_f64().unwrap();
    let p95 = latency["p95_seconds"].as_f64().unwrap();
    assert!((p50 - (times[0] + times[1]) / 2.0).abs() < 1e-3, "{p50} vs {times:?}");
    assert!((p95 - (times[0] + 0.95 * (times[1] - times[0]))).abs() < 1e-3, "{p95} vs {times:?}");

    assert_eq!(jobs["error_rate"]["failed"], 1);
    assert_eq!(jobs["error_rate"]["finished"], 3);
    assert!((jobs["error_rate"]["rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-12);
    let failures = jobs["recent_failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["id"], failed.to_string());
    assert_eq!(failures[0]["error"], "engine exploded");
    assert_eq!(failures[0]["attempts"], 3);
}

/// A worker that died is taken off the workers set by the next worker's orphan recovery; the
/// dashboard still lists it, as silent whatever its last heartbeat, until an hour has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_worker_taken_off_the_workers_set_is_still_listed_as_silent_for_an_hour() {
    use redis::Commands;
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let keys = env.queue.keys();
    let mut redis = env.queue.connection();
    let seen_at = |name: &'static str| {
        let keys = keys.clone();
        let mut redis = env.queue.connection();
        move || {
            let score: Option<f64> = redis.zscore(keys.seen_workers(), name).unwrap();
            score.map(|s| s as u64)
        }
    };
    let now = portfolio_shared::queue::epoch_seconds();
    let _: () = redis.zadd(keys.workers_set(), "died-lately", now - 30).unwrap();
    let _: () = redis.zadd(keys.workers_set(), "died-long-ago", now - 4000).unwrap();
    // The leader copies the heartbeats it sees (every 2 s), keeping each name's latest.
    let mut died_lately = seen_at("died-lately");
    eventually(WITHIN, || std::future::ready(died_lately().filter(|&s| s == now - 30))).await;
    let _: () = redis.zadd(keys.workers_set(), "died-lately", now).unwrap();
    eventually(WITHIN, || std::future::ready(died_lately().filter(|&s| s == now))).await;
    // Orphan recovery takes both off the workers set, the first with a heartbeat still fresh.
    let _: () = redis.zrem(keys.workers_set(), &["died-lately", "died-long-ago"]).unwrap();

    let s = stats(&app).await;
    let workers = s["queue"]["workers"].as_array().unwrap();
    let listed: Vec<&str> = workers.iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(listed, ["died-lately"], "{s}");
    let dead = &workers[0];
    assert_eq!(dead["alive"], false, "off the workers set, however fresh: {dead}");
    assert_eq!(dead["current_jobs"], json!([]), "{dead}");
    assert!(dead["seconds_since_heartbeat"].as_u64().unwrap() < WITHIN.as_secs(), "{dead}");
    assert_eq!(s["queue"]["workers_alive"], 0, "{s}");
    // The record forgets what is older than the hour.
    assert_eq!(seen_at("died-long-ago")(), None);
}

/// A worker that stops cleanly takes itself off the workers set and off the record: it is not
/// listed as silent for an hour, as a dead one is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_stops_cleanly_leaves_the_list_at_once() {
    use redis::Commands;
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let worker = env.spawn_worker().await;
    let keys = env.queue.keys();
    let name = worker.name.clone();
    eventually(WITHIN, || async {
        let score: Option<f64> = env.queue.connection().zscore(keys.seen_workers(), &name).unwrap();
        score.map(drop)
    })
    .await;
    worker.stop().await.unwrap();
    let score: Option<f64> = env.queue.connection().zscore(keys.seen_workers(), &name).unwrap();
    assert_eq!(score, None, "a clean stop leaves no record");
    let s = stats(&app).await;
    let workers = s["queue"]["workers"].as_array().unwrap();
    assert!(workers.iter().all(|w| w["name"] != name.as_str()), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_queue_stats_still_answers_with_what_postgres_knows() {
    let mut env = TestEnv::new();
    env.set("REDIS_URL", format!("redis://127.0.0.1:{}", throwaway::free_port()));
    let app = env.spawn_app().await;
    let failed = insert_failed_job(&env.db, "out of memory");
    let s = stats(&app).await;
    assert_eq!(s["redis"]["available"], false);
    assert!(s["redis"]["error"].as_str().is_some_and(|e| e.contains("Redis")), "{s}");
    assert!(s["queue"].is_null(), "{s}");
    assert_eq!(s["postgres"]["available"], true);
    assert_eq!(s["jobs"]["throughput"][0]["failed"], 1);
    assert_eq!(s["jobs"]["recent_failures"][0]["id"], failed.to_string());
    assert!(s["jobs"]["latency"]["p50_seconds"].is_null(), "nothing succeeded");
    // The scrape says the queue is unknown, rather than holding figures it cannot have read.
    let metrics = app.metrics_text().await;
    let value = |series: &str| -> String {
        let line = metrics.lines().find(|l| l.starts_with(series)).unwrap_or_default();
        line.rsplit(' ').next().unwrap_or_default().to_owned()
    };
    assert_eq!(value("portfolio_queue_up "), "0", "{metrics}");
    assert_eq!(value("portfolio_queue_jobs{state=\"ready\"} "), "NaN");
    assert_eq!(value("portfolio_workers_alive "), "NaN");
    // Every reason of a refused submit is a series from the start.
    for reason in ["queue_full", "unavailable", "rate_limited", "quota"] {
        let series = format!("portfolio_submits_refused_total{{reason=\"{reason}\"}} ");
        assert_eq!(value(&series), "0", "{series}");
    }
}

fn sample(ready: i64) -> NewQueueSample {
    NewQueueSample { ready, scheduled: 0, running: 1, dead: 0, workers_alive: 1 }
}

fn sample_count(conn: &mut PgConnection) -> i64 {
    queue_samples::table.count().get_result(conn).unwrap()
}

#[test]
fn one_sample_is_kept_per_interval_only_by_the_holder_of_the_lock_and_old_ones_are_pruned() {
    let db = TestDb::migrated();
    let mut conn = db.connect();
    let gap = Duration::from_secs(9);
    let keep = Duration::from_secs(24 * 3600);
    assert!(record_sample(&mut conn, SAMPLE_LOCK, &sample(1), gap, keep).unwrap());
    // Another replica a moment later leaves the slot to the first.
    assert!(!record_sample(&mut conn, SAMPLE_LOCK, &sample(2), gap, keep).unwrap());
    assert_eq!(sample_count(&mut conn), 1);

    // While another session holds the lock, nothing is recorded, even when one is due.
    let mut other = db.connect();
    other
        .transaction(|other| {
            diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                .bind::<diesel::sql_types::BigInt, _>(SAMPLE_LOCK)
                .execute(other)?;
            assert!(!record_sample(&mut conn, SAMPLE_LOCK, &sample(3), Duration::ZERO, keep)?);
            Ok::<_, diesel::result::Error>(())
        })
        .unwrap();
    assert_eq!(sample_count(&mut conn), 1);

    diesel::sql_query(
        "INSERT INTO queue_samples (sampled_at, ready, scheduled, running, dead, workers_alive) \
         VALUES (now() - interval '25 hours', 9, 0, 0, 0, 0)",
    )
    .execute(&mut conn)
    .unwrap();
    assert_eq!(sample_count(&mut conn), 2);
    assert!(record_sample(&mut conn, SAMPLE_LOCK, &sample(4), Duration::ZERO, keep).unwrap());
    let readies: Vec<i64> = queue_samples::table
        .order(queue_samples::sampled_at.asc())
        .select(queue_samples::ready)
        .load(&mut conn)
        .unwrap();
    assert_eq!(readies, vec![1, 4], "the 25-hour-old sample is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_samples_the_queue_and_draws_the_depth_chart_from_the_samples() {
    let env = TestEnv::new();
    env.leaves_unfinished_jobs("a job is left waiting so that the sampled depth shows");
    // Two replicas sampling the same queue into the same table.
    let app = env.spawn_app().await;
    let _replica = env.spawn_app().await;
    app.submit_ok(&small_request()).await;
    let mut conn = env.db.connect();
    eventually(Duration::from_secs(20), || {
        let n = sample_count(&mut conn);
        async move { (n >= 1).then_some(()) }
    })
    .await;

    let response = app.client.get(app.url("/queue/charts/depth.svg")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    let svg = response.text().await.unwrap();
    assert!(svg.contains("<title id=\"depth-title\">Queue depth over the last 60 minutes</title>"));
    assert!(svg.contains("samples over the last 60 minutes"), "{svg}");

    let day = app.client.get(app.url("/queue/charts/depth.svg?minutes=1440")).send().await;
    assert!(day.unwrap().text().await.unwrap().contains("over the last 1440 minutes"));
    for bad in ["0", "4", "1441", "an-hour"] {
        let response =
            app.client.get(app.url(&format!("/queue/charts/depth.svg?minutes={bad}"))).send();
        assert_eq!(response.await.unwrap().status(), 422, "minutes={bad}");
    }
}

/// A worker running a sweep's unit is shown running the sweep: a unit is no job its owner (or
/// the dashboard's link) can read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_running_a_unit_of_a_sweep_is_shown_running_the_sweep() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;
    let body = json!({
        "starting_portfolio": 1_000_000, "monthly_spending": 4000, "years": 40,
        "n_scenarios": 300_000,
        "sweep": {"axes": [{"field": "annual_fee", "values": [0, 0.001, 0.002]}]}
    });
    let sweep = app.submit_ok(&body).await;
    let shown = eventually(WITHIN, || async {
        let s = stats(&app).await;
        let jobs: Vec<Value> = s["queue"]["workers"]
            .as_array()?
            .iter()
            .flat_map(|w| w["current_jobs"].as_array().cloned().unwrap_or_default())
            .collect();
        (!jobs.is_empty()).then_some(jobs)
    })
    .await;
    assert_eq!(shown, vec![json!(sweep.to_string())], "the sweep, once, and no unit");
    let cancelled = app.client.delete(app.url(&format!("/simulations/{sweep}"))).send().await;
    assert!(cancelled.unwrap().status().is_success());
    assert_eq!(app.wait_terminal(sweep, WITHIN).await["status"], "cancelled");
    // Its units end too, the running one at its next batch, and leave the queue.
    eventually(WITHIN, || async {
        let left = portfolio_tests::leftovers::left_behind_on(
            &env.db.url,
            &env.queue.client().ok()?,
            &env.queue.keys(),
        )
        .ok()?;
        left.is_empty().then_some(())
    })
    .await;
}

/// Liveness is judged by Redis's clock, the one every API replica shares: an API whose host's
/// clock runs 20 s ahead of Redis's and the workers' neither reports a worker that beat just
/// now as silent, nor, leading, frees its metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_whose_clock_runs_ahead_judges_workers_by_redis_clock() {
    use portfolio_shared::queue::epoch_seconds;
    use portfolio_tests::processes::{ApiProc, LogDir};
    use redis::Commands;
    let env = TestEnv::new();
    let keys = env.queue.keys();
    let metadata = |name: &str| format!("{}:{name}", keys.worker_metadata_prefix());
    let mut redis = env.queue.connection();
    // This host's clock, which Redis's and the workers' agree with here.
    let now = epoch_seconds();
    for (name, beat) in [("fresh", now), ("silent", now - 60)] {
        let _: () = redis.zadd(keys.workers_set(), name, beat).unwrap();
        let _: () = redis.hset(metadata(name), "backend", "redis").unwrap();
    }
    // "fresh" goes on beating, as a live worker does, however slow the API is to start.
    let beating = {
        let (mut redis, set) = (env.queue.connection(), keys.workers_set());
        tokio::spawn(async move {
            loop {
                let _: () = redis.zadd(&set, "fresh", epoch_seconds()).unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let mut vars = env.vars();
    for (name, value) in [
        ("LD_PRELOAD", throwaway::libfaketime().display().to_string()),
        ("FAKETIME", "+20s".to_owned()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
    ] {
        vars.insert(name.to_owned(), value);
    }
    let logs = LogDir::new();
    let api = ApiProc::spawn(&vars, &logs).await;
    // The only API leads, and sweeps the metadata of gone workers as it takes the lead.
    eventually(WITHIN, || {
        let gone = !env.queue.connection().exists::<_, bool>(metadata("silent")).unwrap();
        std::future::ready(gone.then_some(()))
    })
    .await;
    assert!(redis.exists::<_, bool>(metadata("fresh")).unwrap(), "a live worker's metadata freed");

    let s: Value =
        api.client.get(api.url("/queue/stats")).send().await.unwrap().json().await.unwrap();
    let generated_at = s["generated_at"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
    assert!(generated_at.timestamp() >= now as i64 + 15, "the API's clock is not ahead: {s}");
    assert_eq!(s["queue"]["workers_alive"], 1, "{s}");
    let fresh = &s["queue"]["workers"][0];
    assert_eq!((fresh["name"].as_str(), fresh["alive"].as_bool()), (Some("fresh"), Some(true)));
    assert!(fresh["seconds_since_heartbeat"].as_u64().unwrap() < 5, "{fresh}");
    beating.abort();
}
