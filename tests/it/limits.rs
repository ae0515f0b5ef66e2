//! The limits that hold whoever submits: names bounded and free of control characters, a
//! value Postgres refuses answered as the input's fault, the cost of a job checked at submit
//! against `MAX_JOB_COST`, a job stopped past `JOB_TIMEOUT_SECS`, and metric labels that a
//! client cannot multiply.

use std::collections::BTreeSet;
use std::time::Duration;

use diesel::RunQueryDsl;
use portfolio_tests::{ApiClient, TestEnv, small_request};
use serde_json::{Value, json};
use uuid::Uuid;

const PROBLEM_JSON: &str = "application/problem+json";

/// Asserts a problem document with `status` and returns it.
async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    assert_eq!(response.headers()["content-type"], PROBLEM_JSON);
    let body: Value = response.json().await.expect("problem JSON");
    assert_eq!(body["status"], status, "{body}");
    body
}

/// Cancels a queued job, so that the test leaves nothing unfinished.
async fn cancel(app: &ApiClient, id: Uuid) {
    let response = app.client.delete(app.url(&format!("/simulations/{id}"))).send().await.unwrap();
    assert_eq!(response.status(), 200, "cancel {id}");
}

fn with(patch: Value) -> Value {
    let mut body = small_request();
    for (key, value) in patch.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_nul_or_control_characters_or_over_100_characters_are_422_naming_the_field() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let too_long = "must be at most 100 characters";
    let control = "must not contain control characters";
    let cases = [
        (
            json!({"income": [{"name": "pension\u{0}", "monthly_amount": 1}]}),
            "income[0].name",
            control,
        ),
        (
            json!({"income": [{"name": "a\u{1b}[31m", "monthly_amount": 1}]}),
            "income[0].name",
            control,
        ),
        (
            json!({"income": [{"monthly_amount": 1}, {"name": "x".repeat(60_000), "monthly_amount": 1}]}),
            "income[1].name",
            too_long,
        ),
        (
            json!({"expenses": [{"name": "roof\r\n", "year": 1, "amount": 1}]}),
            "expenses[0].name",
            control,
        ),
        (
            json!({"expenses": [{"name": "é".repeat(101), "year": 1, "amount": 1}]}),
            "expenses[0].name",
            too_long,
        ),
        (
            json!({"inflows": [{"name": "\u{85}", "year": 1, "amount": 1}]}),
            "inflows[0].name",
            control,
        ),
        (
            json!({"inflows": [{"name": "h".repeat(101), "year": 1, "amount": 1}]}),
            "inflows[0].name",
            too_long,
        ),
    ];
    for (patch, field, rule) in cases {
        for route in ["/simulations", "/run_simulation"] {
            let response = app.client.post(app.url(route)).json(&with(patch.clone())).send();
            let p = problem(response.await.unwrap(), 422).await;
            assert_eq!(p["type"], "/problems/validation-error");
            let errors = p["errors"].as_array().unwrap();
            assert_eq!(errors.len(), 1, "{p}");
            assert_eq!(errors[0]["field"], field, "{p}");
            let message = errors[0]["message"].as_str().unwrap();
            assert!(message.starts_with(rule), "{field}: {message}");
            assert!(p["detail"].as_str().unwrap().contains(field), "{p}");
        }
    }
    let list: Value =
        app.client.get(app.url("/results")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["items"], json!([]), "nothing refused was recorded");

    // At the limit, in characters of any width, a name is kept as it was sent.
    let name = "🏠".repeat(100);
    let id = app.submit_ok(&with(json!({"income": [{"name": name, "monthly_amount": 1}]}))).await;
    assert_eq!(app.job(id).await["request"]["income"][0]["name"], name.as_str());
    cancel(&app, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_postgres_refuses_is_422_naming_the_database_and_never_counts_as_unavailable() {
    let env = TestEnv::new();
    // A database stricter than the API's rules: it casts each job's starting portfolio to a
    // smallint, so any portfolio above 32767 makes Postgres itself raise a data exception
    // (22003, numeric value out of range) inside the submit's transaction.
    let mut conn = env.db.connect();
    diesel::sql_query(
        "CREATE FUNCTION stricter_than_the_api() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             PERFORM (NEW.request->>'starting_portfolio')::numeric::smallint;
             RETURN NEW;
         END $$",
    )
    .execute(&mut conn)
    .unwrap();
    diesel::sql_query(
        "CREATE TRIGGER stricter_than_the_api BEFORE INSERT ON simulations
         FOR EACH ROW EXECUTE FUNCTION stricter_than_the_api()",
    )
    .execute(&mut conn)
    .unwrap();
    let app = env.spawn_app().await;

    for _ in 0..3 {
        let p = problem(app.submit(&small_request()).await, 422).await;
        assert_eq!(p["type"], "/problems/refused-by-database", "{p}");
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains("database refused a value"), "{detail}");
        assert!(detail.contains("22003"), "{detail}");
        assert!(!detail.contains("smallint"), "no internals in the answer: {detail}");
    }
    let metrics = app.metrics_text().await;
    // The series exists from the start, at 0; a refused value leaves it there.
    assert!(
        metrics.lines().any(|l| l == "portfolio_submits_refused_total{reason=\"unavailable\"} 0"),
        "a refused value counted as an outage:\n{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l.starts_with("portfolio_http_requests_total")
            && l.contains("status=\"422\"")
            && l.contains("route=\"/simulations\"")),
        "{metrics}"
    );
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "Postgres is not down: it refused a value");

    // What the stricter database takes goes through.
    let id = app.submit_ok(&with(json!({"starting_portfolio": 30_000}))).await;
    cancel(&app, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_max_job_cost_is_422_naming_its_cost_the_limit_and_the_setting() {
    let mut env = TestEnv::new();
    // No worker runs: `/run_simulation` answers 202 at once instead of waiting.
    env.set("RUN_SIMULATION_WAIT_SECS", 0);
    let app = env.spawn_app().await;
    // The default, 480,000,000, is a million scenarios over 40 years without the solver;
    // with it, each of its 80 runs and the final one count, so about 12,345 scenarios.
    let accepted = [
        json!({"n_scenarios": 1_000_000, "years": 40}),
        json!({"n_scenarios": 12_345, "years": 40, "solve": {"target_success": 0.9}}),
    ];
    let refused = [
        (
            json!({"n_scenarios": 1_000_000, "years": 41}),
            "492000000 scenario-months (1000000 scenarios × 492 months × 1 pass)",
        ),
        (
            json!({"n_scenarios": 12_346, "years": 40, "solve": {"target_success": 0.9}}),
            "480012480 scenario-months (12346 scenarios × 480 months × 81 passes)",
        ),
    ];
    for route in ["/simulations", "/run_simulation"] {
        for patch in &accepted {
            let response = app.client.post(app.url(route)).json(&with(patch.clone())).send();
            let response = response.await.unwrap();
            assert_eq!(response.status(), 202, "{route} {patch}");
            let body: Value = response.json().await.unwrap();
            cancel(&app, body["id"].as_str().unwrap().parse().unwrap()).await;
        }
        for (patch, cost) in &refused {
            let response = app.client.post(app.url(route)).json(&with(patch.clone())).send();
            let p = problem(response.await.unwrap(), 422).await;
            assert_eq!(p["type"], "/problems/job-too-costly", "{p}");
            assert_eq!(p["errors"][0]["field"], "n_scenarios", "every 422 lists errors: {p}");
            assert_eq!(p["errors"][0]["message"], p["detail"], "{p}");
            let detail = p["detail"].as_str().unwrap();
            for says in [*cost, "480000000", "MAX_JOB_COST"] {
                assert!(detail.contains(says), "{route} {patch}: {detail} lacks {says}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_max_job_cost_is_the_one_a_submit_is_held_to() {
    let mut env = TestEnv::new();
    // small_request: 2,000 scenarios × 30 years = 720,000.
    env.set("MAX_JOB_COST", 720_000);
    let app = env.spawn_app().await;
    let id = app.submit_ok(&small_request()).await;
    cancel(&app, id).await;
    let p = problem(app.submit(&with(json!({"years": 31}))).await, 422).await;
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("744000") && detail.contains("MAX_JOB_COST=720000"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_job_timeout_secs_fails_saying_so_without_retry_and_the_worker_goes_on() {
    let mut env = TestEnv::new();
    env.set("JOB_TIMEOUT_SECS", 1).set("MAX_JOB_COST", 1_000_000_000_000u64);
    let app = env.spawn_app().await;
    let worker = env.spawn_worker().await;
    // Minutes of work: a million scenarios over a century, solved for.
    let big = with(json!({
        "n_scenarios": 1_000_000, "years": 100, "solve": {"target_success": 0.9},
    }));
    let id = app.submit_ok(&big).await;
    let job = app.wait_terminal(id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("ran past JOB_TIMEOUT_SECS=1"), "{error}");
    assert_eq!(job["attempts"], 1, "a job past its time is not retried: {job}");
    assert!(job["result"].is_null());

    let next = app.submit_ok(&small_request()).await;
    let job = app.wait_terminal(next, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    worker.stop().await.unwrap();
}

/// The series (name and labels) of the API's HTTP metrics.
async fn http_series(app: &ApiClient) -> BTreeSet<String> {
    app.metrics_text()
        .await
        .lines()
        .filter(|l| l.starts_with("portfolio_http_"))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_and_paths_add_no_metric_series() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let paths = ["/health", "/results", "/simulations", "/no/such/route"];
    let send = |method: &'static str, path: String| {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        app.client.request(method, app.url(&path)).send()
    };
    // A first scrape, for the series of scraping itself while /metrics is on the API's port.
    app.metrics_text().await;
    // One invented method and one unknown path make the series an unknown request can have.
    for path in paths {
        send("PUT", path.to_owned()).await.unwrap();
    }
    send("GET", format!("/nothing/{}", Uuid::new_v4())).await.unwrap();
    let before = http_series(&app).await;
    assert!(before.iter().any(|s| s.contains("method=\"other\"")), "{before:?}");
    assert!(before.iter().any(|s| s.contains("route=\"unmatched\"")), "{before:?}");
    for method in ["FOO", "BAR", "BAZ"] {
        for path in paths {
            let response = send(method, path.to_owned()).await.unwrap();
            assert!(matches!(response.status().as_u16(), 404 | 405), "{method} {path}");
        }
        send("GET", format!("/nothing/{}", Uuid::new_v4())).await.unwrap();
    }
    let after = http_series(&app).await;
    let added: Vec<&String> = after.difference(&before).collect();
    assert!(added.is_empty(), "new series: {added:?}");
    for invented in ["FOO", "BAR", "BAZ", "/nothing/"] {
        assert!(!after.iter().any(|s| s.contains(invented)), "{invented} in a label");
    }
}

/// A keyed submit whose body never arrives in full is answered `408` (a problem document) once
/// the body's time is up, and records nothing: a client that sends its headers and trickles or
/// withholds the body does not hold its connection and request for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_whose_body_never_arrives_is_answered_408_and_records_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let address = app.url("").trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /simulations HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"years\"",
        env.api_key()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        let mut buf = [0u8; 4096];
        // The head and the problem document come together; the server then closes or idles.
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 60 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.to_lowercase().contains("content-type: application/problem+json"), "{answer}");
    assert!(answer.contains("did not arrive within"), "{answer}");
    let jobs: i64 = diesel::dsl::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "(SELECT count(*) FROM simulations)",
    ))
    .get_result(&mut env.db.connect())
    .unwrap();
    assert_eq!(jobs, 0);
}
