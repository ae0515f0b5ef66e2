//! The API leader's background work (promoting due jobs, sweeping acknowledged deliveries,
//! reconciling), as a real API process against the shared Redis and Postgres: whatever it
//! meets, it must never hold back the request path.

use std::time::Duration;

use portfolio_shared::queue;
use portfolio_tests::processes::{ApiProc, LogDir, assert_contract, job_body, wait_settled};
use portfolio_tests::{TestEnv, eventually};
use redis::Commands;

const SWEEP_FAILED: &str = "sweeping acknowledged deliveries failed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_that_fails_on_every_tick_never_makes_a_submit_skip_its_push() {
    let mut env = TestEnv::new();
    env.set("RUST_LOG", "info,portfolio_api::background=debug");
    let keys = env.queue.keys();
    let mut redis = env.queue.connection();
    // The done set as a string: the leader's sweep script fails (WRONGTYPE) on every tick,
    // while nothing a submit touches is affected.
    let _: () = redis.set(keys.done_set(), "not a set").unwrap();
    let (vars, logs) = (env.vars(), LogDir::new());
    let api = ApiProc::spawn(&vars, &logs).await;
    eventually(Duration::from_secs(20), || async {
        api.proc.log().contains(SWEEP_FAILED).then_some(())
    })
    .await;

    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = api.submit_ok(&job_body(2_000, 10)).await;
        let task = queue::task_id(id).to_string();
        let at: Option<usize> = redis.lpos(keys.ready_list(), &task, Default::default()).unwrap();
        assert!(at.is_some(), "job {id} was accepted but not pushed at once");
        ids.push(id);
    }
    // The sweep kept failing meanwhile.
    let failed_so_far = api.proc.log().matches(SWEEP_FAILED).count();
    eventually(Duration::from_secs(10), || async {
        (api.proc.log().matches(SWEEP_FAILED).count() > failed_so_far).then_some(())
    })
    .await;

    // Mended, the jobs run to the end.
    let _: () = redis.del(keys.done_set()).unwrap();
    let _worker = env.spawn_worker().await;
    wait_settled(&env.db.url, Duration::from_secs(30)).await;
    let records = assert_contract(&env.db.url, &ids);
    assert!(records.iter().all(|r| r.status == "succeeded"), "{records:?}");
}

/// apalis-redis leaves a metadata hash for every worker process that ever registered (one per
/// start, so Spot churn grew them without bound); the leader frees those of workers that are
/// gone (not in the workers set, or silent past the orphan window) and keeps a live one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_frees_the_metadata_of_workers_that_are_gone() {
    let env = TestEnv::new();
    let keys = env.queue.keys();
    let mut redis = env.queue.connection();
    let metadata = |name: &str| format!("{}:{name}", keys.worker_metadata_prefix());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let _: () = redis.zadd(keys.workers_set(), "alive", now).unwrap();
    let _: () = redis.zadd(keys.workers_set(), "silent", now - 3_600).unwrap();
    for name in ["alive", "silent", "unlisted"] {
        let _: () = redis.hset(metadata(name), "backend_name", "RedisStorage").unwrap();
    }
    let _app = env.spawn_app().await;
    let exists = |name: &str| -> bool { env.queue.connection().exists(metadata(name)).unwrap() };
    eventually(Duration::from_secs(20), || async {
        (!exists("silent") && !exists("unlisted")).then_some(())
    })
    .await;
    assert!(exists("alive"), "a live worker's metadata was deleted");
    let _: () = redis.del(metadata("alive")).unwrap();
    let _: () = redis.zrem(keys.workers_set(), &["alive", "silent"]).unwrap();
}
