//! End-to-end benchmark: the real API and a worker (in this process, on a database and queue
//! namespace of their own) against the local Redis and Postgres.
//!
//!     cargo run --release -p portfolio-tests --example e2e_bench [-- JOBS]
//!
//! Prints, for JOBS sequential submits of the default request (10,000 scenarios × 30 years):
//! submit latency (POST → 202, client side), pickup latency (created_at → started_at) and
//! submit-to-result (created_at → finished_at), both from the job's own timestamps, next to the
//! engine's time for the same request measured in the same run (the baseline: what the queue
//! adds is the difference). Then bursts of default and of tiny jobs for throughput.

use std::time::{Duration, Instant};

use portfolio_tests::TestEnv;
use serde_json::{Value, json};

fn pct(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (h - lo as f64)
}

fn summary(name: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    println!(
        "{name:28} p50 {:8.2} ms   p95 {:8.2} ms   max {:8.2} ms",
        pct(&v, 0.5),
        pct(&v, 0.95),
        v[v.len() - 1]
    );
}

fn millis_between(job: &Value, from: &str, to: &str) -> f64 {
    let t = |k: &str| chrono::DateTime::parse_from_rfc3339(job[k].as_str().unwrap()).unwrap();
    (t(to) - t(from)).num_microseconds().unwrap() as f64 / 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let jobs: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(40);
    let mut env = TestEnv::new();
    env.set("WORKER_HEARTBEAT_SECS", 5).set("LOG_FORMAT", "json");
    env.set("QUEUE_DEPTH_CEILING", 7000);
    let app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;
    let request = json!({"starting_portfolio": 1_000_000, "monthly_spending": 4_000, "years": 30});

    let (mut submit, mut pickup, mut total, mut engine) = (vec![], vec![], vec![], vec![]);
    for _ in 0..jobs {
        let t0 = Instant::now();
        let id = app.submit_ok(&request).await;
        submit.push(t0.elapsed().as_secs_f64() * 1e3);
        let job = app.wait_terminal(id, Duration::from_secs(60)).await;
        assert_eq!(job["status"], "succeeded");
        pickup.push(millis_between(&job, "created_at", "started_at"));
        total.push(millis_between(&job, "created_at", "finished_at"));
        engine.push(job["result"]["elapsed_ms"].as_f64().unwrap());
    }
    println!(
        "{jobs} sequential jobs of 10,000 scenarios × 30 years, one worker, poll interval 100 ms"
    );
    summary("submit (POST → 202)", submit);
    summary("pickup (created → started)", pickup);
    let (e50, t50) = {
        let mut e = engine.clone();
        e.sort_by(f64::total_cmp);
        let mut t = total.clone();
        t.sort_by(f64::total_cmp);
        (pct(&e, 0.5), pct(&t, 0.5))
    };
    summary("engine alone (baseline)", engine);
    summary("submit → result", total);
    println!("submit-to-result / engine time (medians): {:.2}", t50 / e50);

    // Full load: the default request back to back, for the average task-seconds per job that
    // the autoscaling target is derived from (docs/operations.md).
    let full = 100;
    let t0 = Instant::now();
    let mut ids = Vec::with_capacity(full);
    for _ in 0..full {
        ids.push(app.submit_ok(&request).await);
    }
    for id in ids {
        app.wait_terminal(id, Duration::from_secs(120)).await;
    }
    let busy = t0.elapsed().as_secs_f64();
    println!(
        "burst of {full} default jobs: all finished after {busy:.2} s, {:.1} ms of worker time per job",
        busy * 1e3 / full as f64
    );

    let tiny =
        json!({"starting_portfolio": 1_000, "monthly_spending": 1, "years": 1, "n_scenarios": 1});
    let burst = 500;
    let t0 = Instant::now();
    let mut ids = Vec::with_capacity(burst);
    for _ in 0..burst {
        ids.push(app.submit_ok(&tiny).await);
    }
    let submitted = t0.elapsed();
    for id in ids {
        app.wait_terminal(id, Duration::from_secs(120)).await;
    }
    let done = t0.elapsed();
    println!(
        "burst of {burst} tiny jobs: submitted at {:.0}/s, all finished after {:.2} s ({:.0} jobs/s, one worker)",
        burst as f64 / submitted.as_secs_f64(),
        done.as_secs_f64(),
        burst as f64 / done.as_secs_f64()
    );
}
