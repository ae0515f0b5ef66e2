//! Log lines carry their context: a line logged while the API handles a request carries the
//! request's span (its request id) and the handler's (the job id it names or creates); a line
//! logged while a worker runs a job carries the job's span (job id, request id, attempt). Read
//! from the JSON logs of the real processes, as an operator's log search would.

use std::time::Duration;

use portfolio_tests::processes::{ApiProc, LogDir, WorkerProc, accepted_id, job_body};
use portfolio_tests::throwaway::free_port;
use portfolio_tests::{TestEnv, eventually};
use serde_json::Value;

/// The JSON log line whose message is `message`, once the process has written it.
async fn line_saying(log: impl Fn() -> String, message: &str) -> Value {
    eventually(Duration::from_secs(20), || async {
        log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["message"] == message)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_log_lines_carry_the_submit_handlers_span_then_the_jobs_span() {
    let mut env = TestEnv::new();
    env.set("LOG_FORMAT", "json").set("RUST_LOG", "info");
    let (vars, logs) = (env.vars(), LogDir::new());
    let api = ApiProc::spawn(&vars, &logs).await;
    let worker = WorkerProc::spawn(&vars, &logs, "w").await;

    let response = api
        .client
        .post(api.url("/simulations"))
        .header("x-request-id", "trace-me-42")
        .json(&job_body(1_000, 10))
        .send()
        .await
        .expect("POST /simulations");
    assert_eq!(response.status(), 202);
    let id = accepted_id(&response.text().await.unwrap());
    let job = api.wait_terminal(id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "succeeded", "{job}");

    let recorded = line_saying(|| api.proc.log(), "job recorded").await;
    assert_eq!(recorded["span"]["name"], "submit", "{recorded}");
    assert_eq!(recorded["span"]["job_id"], id.to_string(), "{recorded}");
    let spans = recorded["spans"].as_array().expect("the spans of the line");
    assert!(
        spans.iter().any(|s| s["name"] == "request" && s["request_id"] == "trace-me-42"),
        "no request span with the request id: {recorded}"
    );

    let succeeded = line_saying(|| worker.proc.log(), "succeeded").await;
    let span = &succeeded["span"];
    assert_eq!(span["name"], "job", "{succeeded}");
    assert_eq!(span["job_id"], id.to_string(), "{succeeded}");
    assert_eq!(span["request_id"], "trace-me-42", "{succeeded}");
    assert_eq!(span["attempt"], 1, "{succeeded}");
    assert_eq!(span["worker"], worker.name, "{succeeded}");
}

/// With `RUST_BACKTRACE=1` (set on many hosts, for panics' sake), an outage's warnings stay
/// lines of their own size: `anyhow` captured a backtrace with every error, through actix's
/// generic frames, and one "push to Redis failed" line was about 570 KB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_logged_without_a_backtrace_when_rust_backtrace_is_set() {
    let mut env = TestEnv::new();
    env.set("RUST_BACKTRACE", "1").set("LOG_FORMAT", "json");
    env.set("REDIS_URL", format!("redis://127.0.0.1:{}", free_port()));
    env.leaves_unfinished_jobs("Redis never answers, so the job is never pushed");
    let (vars, logs) = (env.vars(), LogDir::new());
    let api = ApiProc::spawn(&vars, &logs).await;
    let response = api.submit(&job_body(1_000, 10)).await;
    assert_eq!(response.status(), 202, "accepted while Redis is away");
    let pushed =
        line_saying(|| api.proc.log(), "push to Redis failed; the reconciler will enqueue the job")
            .await;
    assert!(pushed["error"].as_str().is_some_and(|e| !e.is_empty()), "{pushed}");
    let longest = api.proc.log().lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 16_384, "a log line of {longest} bytes");
}

/// Every request gets one access line, in its own span (method, route, request id), with its
/// status and time taken; an answer that refuses by design (a 404) is no warning or error
/// line; a load balancer's probe of `/health` is not logged at info level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_one_access_line_and_a_designed_refusal_is_no_error() {
    let mut env = TestEnv::new();
    env.set("LOG_FORMAT", "json").set("RUST_LOG", "info");
    env.leaves_unfinished_jobs("no worker: the test reads the API's log only");
    let (vars, logs) = (env.vars(), LogDir::new());
    let api = ApiProc::spawn(&vars, &logs).await;
    let submitted = api.client.post(api.url("/simulations")).header("x-request-id", "access-1");
    let submitted = submitted.json(&job_body(1_000, 10)).send().await.expect("POST");
    assert_eq!(submitted.status(), 202);
    let missing = api.client.get(api.url(&format!("/results/{}", uuid::Uuid::new_v4())));
    let missing = missing.header("x-request-id", "access-2").send().await.expect("GET");
    assert_eq!(missing.status(), 404);
    let health = api.client.get(api.url("/health")).header("x-request-id", "access-3");
    assert_eq!(health.send().await.expect("GET /health").status(), 200);

    let lines = || -> Vec<Value> {
        api.proc.log().lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect()
    };
    let access = |request_id: &'static str| {
        let lines = &lines;
        async move {
            eventually(Duration::from_secs(20), || async {
                lines()
                    .into_iter()
                    .find(|l| l["message"] == "request" && l["span"]["request_id"] == request_id)
            })
            .await
        }
    };
    let line = access("access-1").await;
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["status"], 202, "{line}");
    assert_eq!(line["span"]["http.method"], "POST", "{line}");
    assert_eq!(line["span"]["http.route"], "/simulations", "{line}");
    assert!(line["elapsed_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{line}");
    let line = access("access-2").await;
    assert_eq!((&line["status"], &line["level"]), (&Value::from(404), &Value::from("INFO")));
    assert_eq!(line["span"]["http.route"], "/results/{id}", "{line}");
    let all = lines();
    // The lines logged in these requests' spans (the process's own start-up is not at issue).
    let in_ours = |l: &&Value| {
        l["spans"].as_array().is_some_and(|spans| {
            spans
                .iter()
                .any(|s| s["request_id"].as_str().is_some_and(|id| id.starts_with("access-")))
        })
    };
    let ours: Vec<&Value> = all.iter().filter(in_ours).collect();
    let loud: Vec<&&Value> =
        ours.iter().filter(|l| l["level"] == "WARN" || l["level"] == "ERROR").collect();
    assert!(loud.is_empty(), "warnings or errors for designed answers: {loud:?}");
    let probes = ours.iter().filter(|l| l["span"]["request_id"] == "access-3").count();
    assert_eq!(probes, 0, "the probe of /health was logged at info");
    let access_lines = ours.iter().filter(|l| l["message"] == "request").count();
    assert_eq!(access_lines, 2, "one line a request");
}
