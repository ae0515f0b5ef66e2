//! A burst of 10,000 submits, as fast as the API takes them, against real processes: some may
//! be refused with 503 (above the queue-depth ceiling); every accepted one completes, none runs
//! twice, and no worker crashes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portfolio_tests::TestEnv;
use portfolio_tests::processes::{
    ApiProc, LogDir, WorkerProc, accepted_id, assert_contract, fault_lock, job_body, wait_settled,
};

const SUBMITS: usize = 10_000;
const CLIENTS: usize = 32;
const WORKERS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_a_burst_of_10000_submits_completes_every_accepted_job_once_and_crashes_no_worker() {
    let _lock = fault_lock();
    let mut env = TestEnv::new();
    env.set("DB_POOL_MAX_SIZE", 16)
        .set("WORKER_CONCURRENCY", 4)
        .set("WORKER_LIGHT_CONCURRENCY", 4)
        .set("WORKER_THREADS", 1)
        .set("RUST_LOG", "warn,portfolio_worker::run=info");
    let (vars, logs) = (env.vars(), LogDir::new());
    let api = Arc::new(ApiProc::spawn(&vars, &logs).await);
    let mut workers = Vec::new();
    for i in 0..WORKERS {
        workers.push(WorkerProc::spawn(&vars, &logs, &format!("w{i}")).await);
    }

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (api, next) = (api.clone(), next.clone());
        clients.spawn(async move {
            let (mut accepted, mut refused) = (Vec::new(), 0usize);
            let body = job_body(1, 1);
            while next.fetch_add(1, Ordering::Relaxed) < SUBMITS {
                let response = api.try_submit(&body).await.expect("an answer to every submit");
                match response.status().as_u16() {
                    202 => accepted.push(accepted_id(&response.text().await.unwrap())),
                    503 => {
                        assert!(
                            response.headers().contains_key("retry-after"),
                            "503 without Retry-After"
                        );
                        refused += 1;
                    }
                    other => panic!("submit answered {other}: {}", response.text().await.unwrap()),
                }
            }
            (accepted, refused)
        });
    }
    let (mut accepted, mut refused) = (Vec::new(), 0);
    while let Some(outcome) = clients.join_next().await {
        let (a, r) = outcome.expect("client task");
        accepted.extend(a);
        refused += r;
    }
    let submitted_in = started.elapsed();
    assert_eq!(accepted.len() + refused, SUBMITS);

    wait_settled(&env.db.url, Duration::from_secs(300)).await;
    eprintln!(
        "{} accepted, {refused} refused in {submitted_in:?}; all settled after {:?}",
        accepted.len(),
        started.elapsed()
    );
    let records = assert_contract(&env.db.url, &accepted);
    let bad: Vec<_> =
        records.iter().filter(|r| r.status != "succeeded" || r.starts != 1).take(10).collect();
    assert!(bad.is_empty(), "jobs that did not succeed exactly once: {bad:?}");
    for w in &mut workers {
        assert!(w.proc.is_running(), "{} exited", w.name);
        assert_eq!(w.restarts(), 0, "{} restarted its apalis worker", w.name);
    }
}
