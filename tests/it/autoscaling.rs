//! The autoscaling signal: one API process at a time prints CloudWatch Embedded Metric Format
//! lines on stdout, with the namespace, dimension and metric names the scaling policies track,
//! including zeros when the queue is empty.

use std::time::Duration;

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
    assert_eq!(metrics, [names::EMF_QUEUE_DEPTH, names::EMF_BACKLOG_PER_TASK]);
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
