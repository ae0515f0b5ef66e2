//! A client learns the moment a job ends: `GET /results/{id}?wait=N` (long-poll),
//! `Prefer: wait=N` on a submit (RFC 7240), and `POST /run_simulation`, which waits like the old
//! app did. Announcements travel on Redis pub/sub; a lost one costs only `WAIT_RECHECK_MS`.
//! Times are compared on one clock: the database's `finished_at` and the client's wall clock
//! are the same host's.

use std::time::{Duration, Instant, SystemTime};

use portfolio_shared::JobStatus;
use portfolio_shared::queue::announcement;
use portfolio_shared::store::{self, Claim};
use portfolio_tests::{TestEnv, problem, small_request};
use serde_json::{Value, json};
use uuid::Uuid;

/// Milliseconds from the job's `finished_at` (the database's clock) to `answered`.
fn answered_after_end(job: &Value, answered: SystemTime) -> f64 {
    let finished = chrono::DateTime::parse_from_rfc3339(job["finished_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let answered: chrono::DateTime<chrono::Utc> = answered.into();
    (answered - finished).num_microseconds().unwrap() as f64 / 1e3
}

fn tiny() -> Value {
    json!({"starting_portfolio": 1_000_000, "monthly_spending": 4_000, "years": 10, "n_scenarios": 200})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_answers_within_50_ms_of_the_jobs_end() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;
    let mut lags = Vec::new();
    for _ in 0..3 {
        let id = app.submit_ok(&tiny()).await;
        let response =
            app.client.get(app.url(&format!("/results/{id}?wait=30"))).send().await.unwrap();
        let answered = SystemTime::now();
        assert_eq!(response.status(), 200);
        let job: Value = response.json().await.unwrap();
        assert_eq!(job["status"], "succeeded", "{job}");
        assert!(job["result"]["success_probability"].is_number());
        lags.push(answered_after_end(&job, answered));
    }
    lags.sort_by(f64::total_cmp);
    // The median, since the machine running the suite is loaded.
    assert!(lags[1] <= 50.0, "answers came {lags:?} ms after the jobs ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_on_a_job_that_does_not_end_answers_after_n_seconds() {
    let env = TestEnv::new();
    env.leaves_unfinished_jobs("no worker runs: the job must stay queued");
    let app = env.spawn_app().await;
    let id = app.submit_ok(&small_request()).await;
    let began = Instant::now();
    let response = app.client.get(app.url(&format!("/results/{id}?wait=1"))).send().await.unwrap();
    let took = began.elapsed();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("retry-after").is_some());
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["status"], "queued");
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_millis(1900),
        "answered after {took:?}"
    );
    // An unknown job is not waited for.
    let began = Instant::now();
    let unknown = app
        .client
        .get(app.url(&format!("/results/{}?wait=30", Uuid::now_v7())))
        .send()
        .await
        .unwrap();
    problem(unknown, 404).await;
    assert!(began.elapsed() < Duration::from_secs(5));
    // Its second is the job's, not the API's: the latency histogram keeps it apart, so the
    // latency alert (which reads waited="false") does not fire on clients waiting.
    let plain = app.client.get(app.url(&format!("/results/{id}"))).send().await.unwrap();
    assert_eq!(plain.status(), 200);
    let metrics = app.metrics_text().await;
    let count = |waited: &str| {
        let series = format!(
            r#"portfolio_http_request_duration_seconds_count{{method="GET",route="/results/{{id}}",waited="{waited}"}}"#
        );
        metrics.lines().find_map(|l| l.strip_prefix(&series)).map(|n| n.trim().to_owned())
    };
    assert_eq!(count("true").as_deref(), Some("2"), "{metrics}");
    assert_eq!(count("false").as_deref(), Some("1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_wait_is_a_422_naming_it() {
    let env = TestEnv::new();
    env.leaves_unfinished_jobs("no worker runs");
    let app = env.spawn_app().await;
    let id = app.submit_ok(&small_request()).await;
    for bad in ["61", "-1", "soon", "1.5", ""] {
        let response =
            app.client.get(app.url(&format!("/results/{id}?wait={bad}"))).send().await.unwrap();
        let body = problem(response, 422).await;
        assert!(body.to_string().contains("wait"), "{bad:?}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_ends_a_long_poll_at_once() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let id = app.submit_ok(&small_request()).await;
    let waiting = {
        let (client, url) = (app.client.clone(), app.url(&format!("/results/{id}?wait=30")));
        tokio::spawn(async move {
            let response = client.get(url).send().await.unwrap();
            (SystemTime::now(), response.json::<Value>().await.unwrap())
        })
    };
    // Let the long-poll start waiting first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancelled = app.client.delete(app.url(&format!("/simulations/{id}"))).send().await.unwrap();
    assert_eq!(cancelled.status(), 200);
    let (answered, job) = waiting.await.unwrap();
    assert_eq!(job["status"], "cancelled");
    let lag = answered_after_end(&job, answered);
    assert!(lag <= 200.0, "the long-poll answered {lag} ms after the cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_wait_answers_200_with_the_result_and_says_so() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;
    let response = app
        .client
        .post(app.url("/simulations"))
        .header("Prefer", "wait=20")
        .json(&tiny())
        .send()
        .await
        .unwrap();
    let answered = SystemTime::now();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["preference-applied"], "wait=20");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["status"], "succeeded");
    assert_eq!(location, format!("/results/{}", job["id"].as_str().unwrap()));
    assert!(job["result"]["percentiles"].is_object() || job["result"].is_object(), "{job}");
    let lag = answered_after_end(&job, answered);
    assert!(lag <= 100.0, "answered {lag} ms after the job ended");
    // Without the preference, the answer is the usual 202.
    let response = app.client.post(app.url("/simulations")).json(&tiny()).send().await.unwrap();
    assert_eq!(response.status(), 202);
    assert!(response.headers().get("preference-applied").is_none());
    let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap();
    app.wait_terminal(id, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_wait_on_a_job_that_outlasts_it_is_the_usual_202() {
    let env = TestEnv::new();
    env.leaves_unfinished_jobs("no worker runs: the job must outlast the wait");
    let app = env.spawn_app().await;
    let began = Instant::now();
    let response = app
        .client
        .post(app.url("/simulations"))
        .header("Prefer", "respond-async, wait=1")
        .json(&small_request())
        .send()
        .await
        .unwrap();
    assert!(began.elapsed() >= Duration::from_millis(950));
    assert_eq!(response.status(), 202);
    assert!(response.headers().get("location").is_some());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_wait_on_a_job_that_starts_but_outlasts_it_says_it_is_running() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;
    let long = json!({"starting_portfolio": 1_000_000, "monthly_spending": 4_000, "years": 40,
                      "n_scenarios": 1_000_000});
    let response = app
        .client
        .post(app.url("/simulations"))
        .header("Prefer", "wait=1")
        .json(&long)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "running", "the wait saw it start: {body}");
    let id = body["id"].as_str().unwrap();
    let cancel = app.client.delete(app.url(&format!("/simulations/{id}")));
    assert!(cancel.send().await.unwrap().status().is_success());
    app.wait_terminal(id.parse().unwrap(), Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_wait_on_a_job_that_fails_answers_200_with_the_failure() {
    const SEED: u64 = 777_000_777;
    let mut env = TestEnv::new();
    env.set("WORKER_FAULT_INJECTION", format!("panic:{SEED}")).set("MAX_ATTEMPTS", 1);
    let app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;
    let mut body = tiny();
    body["seed"] = SEED.into();
    let response = app
        .client
        .post(app.url("/simulations"))
        .header("Prefer", "wait=30")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["status"], "failed", "{job}");
    assert!(job["error"].as_str().unwrap().contains("panicked"), "{job}");
    assert!(job["result"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_announcement_costs_only_the_recheck_interval() {
    let mut env = TestEnv::new();
    env.set("WAIT_RECHECK_MS", 300);
    let app = env.spawn_app().await;
    let id = app.submit_ok(&small_request()).await;
    let waiting = {
        let (client, url) = (app.client.clone(), app.url(&format!("/results/{id}?wait=30")));
        tokio::spawn(async move {
            let response = client.get(url).send().await.unwrap();
            (Instant::now(), response.json::<Value>().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A worker that ends the job and dies before announcing it: the store alone, no PUBLISH.
    let mut conn = env.db.connect();
    let Claim::Run(job) =
        store::claim(&mut conn, id, "gone", Uuid::new_v4(), 3, Duration::from_secs(15)).unwrap()
    else {
        panic!("the job could not be claimed");
    };
    let ended = Instant::now();
    assert_eq!(
        store::fail(&mut conn, &job.lease, "its worker died before announcing").unwrap(),
        store::Write::Applied
    );
    let (answered, job) = waiting.await.unwrap();
    assert_eq!(job["status"], "failed");
    let lag = answered.duration_since(ended);
    assert!(lag <= Duration::from_millis(300 + 400), "answered {lag:?} after the job ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_simulation_answers_200_with_the_result_like_the_old_app() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;
    let response = app.client.post(app.url("/run_simulation")).json(&tiny()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("preference-applied").is_none());
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["status"], "succeeded");
    let p = job["result"]["success_probability"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_simulation_answers_202_with_location_for_a_job_that_outlasts_its_wait() {
    let mut env = TestEnv::new();
    env.leaves_unfinished_jobs("no worker runs: the job must outlast the wait");
    env.set("RUN_SIMULATION_WAIT_SECS", 1);
    let app = env.spawn_app().await;
    let began = Instant::now();
    let response =
        app.client.post(app.url("/run_simulation")).json(&small_request()).send().await.unwrap();
    assert!(began.elapsed() >= Duration::from_millis(950));
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(location, format!("/results/{}", body["id"].as_str().unwrap()));
}

/// A plan that succeeds is announced twice, in this order: with its committed row and result
/// (`<id> <json>`), then by its id alone, which is all a build from before the document reads.
/// A waiting submit answers from the document, and what it answers is, to the byte, what a
/// read of the job answers afterwards. The recheck interval is a minute, so only an
/// announcement can have woken the waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waited_answer_from_the_announcement_is_the_stored_job_to_the_byte() {
    let mut env = TestEnv::new();
    env.set("WAIT_RECHECK_MS", 60_000);
    let channel = env.queue.keys().finished();
    let mut subscriber = env.queue.connection();
    subscriber.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let listening = std::sync::Arc::new(std::sync::Barrier::new(2));
    let heard = {
        let listening = listening.clone();
        std::thread::spawn(move || {
            let mut pubsub = subscriber.as_pubsub();
            pubsub.subscribe(&channel).unwrap();
            listening.wait();
            let mut messages: Vec<Vec<u8>> = Vec::new();
            // Until an id alone: the announcement's last message.
            while messages.last().is_none_or(|m| m.len() != 36) {
                messages.push(pubsub.get_message().unwrap().get_payload_bytes().to_vec());
            }
            messages
        })
    };
    listening.wait();
    let app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;

    let response = app
        .client
        .post(app.url("/simulations"))
        .header("Prefer", "wait=30")
        .json(&tiny())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let waited = response.bytes().await.unwrap();
    let job: Value = serde_json::from_slice(&waited).unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    let id: Uuid = job["id"].as_str().unwrap().parse().unwrap();
    let read = app.client.get(app.url(&format!("/results/{id}"))).send().await.unwrap();
    assert_eq!(read.status(), 200);
    let read = read.bytes().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&waited),
        String::from_utf8_lossy(&read),
        "the waited answer and the read differ"
    );

    let messages = heard.join().unwrap();
    let [document, alone] = &messages[..] else {
        panic!("expected the document then the id, heard {} messages", messages.len());
    };
    assert_eq!(alone, id.to_string().as_bytes());
    let (announced, Some(body)) = announcement::parse(document).unwrap() else {
        panic!("the first message carries no document");
    };
    assert_eq!(announced, id);
    let plan = announcement::decode_ended_plan(id, body).unwrap();
    let document: serde_json::Value = serde_json::from_str(plan.result.get()).unwrap();
    assert_eq!((plan.job.status, &document), (JobStatus::Succeeded, &job["result"]));
}
