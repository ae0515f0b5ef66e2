//! The autoscaling signal: one API process at a time prints CloudWatch Embedded Metric Format
//! lines on stdout, with the namespace, dimension and metric names the scaling policies track,
//! including zeros when the queue is empty; and when the leader freezes, another API process
//! takes the lead (and with it the signal) after the orphan window.

use std::time::{Duration, Instant};

use portfolio_shared::names;
use portfolio_tests::processes::{ApiProc, LogDir, job_body};
use portfolio_tests::{TestEnv, eventually};
use serde_json::Value;

/// The EMF documents a process has printed so far.
fn emf_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_api_process_publishes_queue_depth_and_backlog_per_task_as_emf_even_when_idle() {
    let mut env = TestEnv::new();
    env.leaves_unfinished_jobs("jobs wait with no worker, so the published depth is not zero");
    env.set("METRICS_PUBLISH_INTERVAL_SECS", 1).set("LOG_FORMAT", "json");
    let vars = env.vars();
    let (logs_a, logs_b) = (LogDir::new(), LogDir::new());
    let a = ApiProc::spawn(&vars, &logs_a).await;
    let b = ApiProc::spawn(&vars, &logs_b).await;

    let first = eventually(Duration::from_secs(20), || async {
        let (la, lb) = (emf_lines(&a.proc.log()), emf_lines(&b.proc.log()));
        la.first().or(lb.first()).cloned()
    })
    .await;
    let spec = &first["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(spec["Namespace"], names::EMF_NAMESPACE);
    assert_eq!(spec["Dimensions"], serde_json::json!([[names::EMF_DIMENSION]]));
    let metrics: Vec<&str> =
        spec["Metrics"].as_array().unwrap().iter().map(|m| m["Name"].as_str().unwrap()).collect();
    assert_eq!(
        metrics,
        [names::EMF_QUEUE_DEPTH, names::EMF_BACKLOG_PER_TASK, names::EMF_WORKERS_ALIVE]
    );
    assert_eq!(first[names::EMF_WORKERS_ALIVE], 0, "no worker runs");
    assert_eq!(first[names::EMF_DIMENSION], env.queue.namespace.as_str());
    assert_eq!(first[names::EMF_QUEUE_DEPTH], 0, "an empty queue still publishes 0");
    assert_eq!(first[names::EMF_BACKLOG_PER_TASK], 0.0);

    for _ in 0..3 {
        a.submit_ok(&job_body(100, 1)).await;
    }
    // No worker is running: three ready jobs over max(0 workers, 1) = 3 per task.
    eventually(Duration::from_secs(20), || async {
        let lines = [emf_lines(&a.proc.log()), emf_lines(&b.proc.log())].concat();
        lines
            .iter()
            .any(|l| l[names::EMF_QUEUE_DEPTH] == 3 && l[names::EMF_BACKLOG_PER_TASK] == 3.0)
            .then_some(())
    })
    .await;
    let (na, nb) = (emf_lines(&a.proc.log()).len(), emf_lines(&b.proc.log()).len());
    assert!((na == 0) != (nb == 0), "exactly one process leads: {na} and {nb} lines");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_loses_the_lead_to_another_api_after_the_orphan_window_and_stays_out() {
    let mut env = TestEnv::new();
    // A leader whose session is silent for 3 s (heartbeats of 1 s, 3 missed) is frozen.
    env.set("METRICS_PUBLISH_INTERVAL_SECS", 1)
        .set("LOG_FORMAT", "json")
        .set("WORKER_HEARTBEAT_SECS", 1)
        .set("WORKER_MISSED_HEARTBEATS", 3);
    let vars = env.vars();
    let (logs_a, logs_b) = (LogDir::new(), LogDir::new());
    let a = ApiProc::spawn(&vars, &logs_a).await;
    let b = ApiProc::spawn(&vars, &logs_b).await;
    let a_leads = eventually(Duration::from_secs(20), || async {
        if !emf_lines(&a.proc.log()).is_empty() {
            Some(true)
        } else {
            (!emf_lines(&b.proc.log()).is_empty()).then_some(false)
        }
    })
    .await;
    let (leader, other) = if a_leads { (&a, &b) } else { (&b, &a) };
    assert!(emf_lines(&other.proc.log()).is_empty(), "one leader at a time");

    leader.proc.pause();
    let frozen_at = Instant::now();
    eventually(Duration::from_secs(30), || async {
        (!emf_lines(&other.proc.log()).is_empty()).then_some(())
    })
    .await;
    // The frozen leader's session last ran a statement at most one tick (0.5 s) before the
    // freeze, so taking over earlier than 2.5 s after it would have been taking over from a
    // live leader.
    let took = frozen_at.elapsed();
    assert!(took >= Duration::from_millis(2500), "took the lead {took:?} after the freeze");
    assert!(other.proc.log().contains("ended the session of a leader"), "{}", other.proc.log());

    // Thawed, the old leader finds its session ended and does no work as leader again.
    let published_before = emf_lines(&leader.proc.log()).len();
    leader.proc.resume();
    eventually(Duration::from_secs(20), || async {
        leader.proc.log().contains("lost the leader connection").then_some(())
    })
    .await;
    let by_other = emf_lines(&other.proc.log()).len();
    eventually(Duration::from_secs(20), || async {
        (emf_lines(&other.proc.log()).len() >= by_other + 3).then_some(())
    })
    .await;
    assert_eq!(
        emf_lines(&leader.proc.log()).len(),
        published_before,
        "the thawed leader published as if it still led"
    );
}
