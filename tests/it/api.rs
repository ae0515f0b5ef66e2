//! The HTTP contract: every class of bad input gets its 4xx with a problem document naming the
//! field and the rule, unknown ids are 404, and the operational endpoints answer as specified.

use portfolio_tests::{TestEnv, problem, small_request};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The fields named by a validation problem.
fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

fn with(field: &str, value: Value) -> Value {
    let mut body = small_request();
    body[field] = value;
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_class_of_bad_input_gets_a_422_naming_the_field() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let without_years = {
        let mut b = small_request();
        b.as_object_mut().unwrap().remove("years");
        b
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("missing", without_years, "years"),
        ("zero", with("years", json!(0)), "years"),
        ("too large", with("years", json!(101)), "years"),
        ("wrong type", with("years", json!("ten")), "years"),
        ("fraction", with("years", json!(10.5)), "years"),
        ("negative", with("starting_portfolio", json!(-1)), "starting_portfolio"),
        ("zero portfolio", with("starting_portfolio", json!(0)), "starting_portfolio"),
        ("above cap", with("starting_portfolio", json!(2e12)), "starting_portfolio"),
        ("too many scenarios", with("n_scenarios", json!(1_000_001)), "n_scenarios"),
        ("seed above 2^63-1", with("seed", json!(9_223_372_036_854_775_808u64)), "seed"),
        ("negative seed", with("seed", json!(-1)), "seed"),
        ("unknown field", with("colour", json!("blue")), "colour"),
        (
            "unknown nested field",
            with("allocation", json!({"stocks": 1.0, "gold": 0.0})),
            "allocation.gold",
        ),
        ("weights off", with("allocation", json!({"stocks": 0.5, "bonds": 0.4})), "allocation"),
        (
            "negative weight",
            with("allocation", json!({"stocks": 1.2, "bonds": -0.2})),
            "allocation.stocks",
        ),
        ("fee", with("annual_fee", json!(0.2)), "annual_fee"),
        (
            "correlation not PSD",
            with(
                "assumptions",
                json!({"correlation": [[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]]}),
            ),
            "assumptions.correlation",
        ),
        (
            "correlation not symmetric",
            with(
                "assumptions",
                json!({"correlation": [[1.0, 0.5, 0.0], [0.4, 1.0, 0.0], [0.0, 0.0, 1.0]]}),
            ),
            "assumptions.correlation[0][1]",
        ),
        (
            "bad volatility",
            with("assumptions", json!({"stocks": {"volatility": -0.1}})),
            "assumptions.stocks.volatility",
        ),
    ];
    for (name, body, field) in cases {
        let response = app.submit(&body).await;
        let p = problem(response, 422).await;
        assert!(fields(&p).iter().any(|f| f == field), "{name}: expected field {field}, got {p}");
        assert!(p["errors"][0]["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}: {p}");
    }
    // Nothing was recorded for any of them.
    let list: Value =
        app.client.get(app.url("/results")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_422_lists_every_refused_field_and_every_broken_rule_of_the_rest() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let mut body = with("years", json!("ten"));
    body["colour"] = json!("blue");
    body["starting_portfolio"] = json!(-1);
    body["n_scenarios"] = json!(5_000_000_000u64);
    let p = problem(app.submit(&body).await, 422).await;
    let mut named = fields(&p);
    named.sort_unstable();
    assert_eq!(named, ["colour", "n_scenarios", "starting_portfolio", "years"], "{p}");
    // Beyond its type, the number of scenarios is told the rule, as one just past the cap is.
    let cap = problem(app.submit(&with("n_scenarios", json!(1_000_001))).await, 422).await;
    let said = |p: &Value| {
        let errors = p["errors"].as_array().unwrap().clone();
        errors.into_iter().find(|e| e["field"] == "n_scenarios").unwrap()["message"].clone()
    };
    assert_eq!(said(&p), said(&cap), "{p}");
    let list: Value =
        app.client.get(app.url("/results")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_finite_numbers_are_422_naming_the_field() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    for raw in [
        r#"{"starting_portfolio": NaN, "monthly_spending": 1, "years": 10}"#,
        r#"{"starting_portfolio": Infinity, "monthly_spending": 1, "years": 10}"#,
        r#"{"starting_portfolio": 1e999, "monthly_spending": 1, "years": 10}"#,
    ] {
        let response = app
            .client
            .post(app.url("/simulations"))
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        let p = problem(response, 422).await;
        assert_eq!(fields(&p), vec!["starting_portfolio"], "{raw}: {p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400_wrong_media_type_415_and_big_bodies_413() {
    let env = TestEnv::new();
    env.leaves_unfinished_jobs("one body is accepted to show what is JSON; no worker runs it");
    let app = env.spawn_app().await;
    let post = |body: Vec<u8>, content_type: Option<&'static str>| {
        let mut r = app.client.post(app.url("/simulations")).body(body);
        if let Some(ct) = content_type {
            r = r.header("content-type", ct);
        }
        r.send()
    };
    problem(post(b"{\"years\": ".to_vec(), Some("application/json")).await.unwrap(), 400).await;
    problem(post(b"not json at all".to_vec(), Some("application/json")).await.unwrap(), 400).await;
    problem(post(b"{}".to_vec(), Some("text/plain")).await.unwrap(), 415).await;
    problem(
        post(b"years=30".to_vec(), Some("application/x-www-form-urlencoded")).await.unwrap(),
        415,
    )
    .await;
    problem(post(b"{}".to_vec(), None).await.unwrap(), 415).await;
    // A compressed body is refused for its coding, not read as broken JSON.
    let gzipped = app
        .client
        .post(app.url("/simulations"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])
        .send()
        .await
        .unwrap();
    let p = problem(gzipped, 415).await;
    assert!(p["detail"].as_str().unwrap().contains("Content-Encoding `gzip`"), "{p}");
    let two_types = app
        .client
        .post(app.url("/simulations"))
        .header("content-type", "application/json")
        .header("content-type", "text/plain")
        .body(serde_json::to_vec(&small_request()).unwrap())
        .send()
        .await
        .unwrap();
    let p = problem(two_types, 415).await;
    assert!(p["detail"].as_str().unwrap().contains("more than once"), "{p}");
    let mut big = serde_json::to_vec(&small_request()).unwrap();
    big.truncate(big.len() - 1);
    big.extend(format!(",\"pad\":\"{}\"}}", "x".repeat(70 * 1024)).bytes());
    problem(post(big, Some("application/json")).await.unwrap(), 413).await;
    // application/*+json is JSON too.
    let ok = post(serde_json::to_vec(&small_request()).unwrap(), Some("application/vnd.api+json"))
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_ids_are_404() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    for id in [uuid::Uuid::now_v7().to_string(), "not-a-uuid".into(), "123".into()] {
        let response = app.client.get(app.url(&format!("/results/{id}"))).send().await.unwrap();
        problem(response, 404).await;
        let response =
            app.client.delete(app.url(&format!("/simulations/{id}"))).send().await.unwrap();
        problem(response, 404).await;
    }
    problem(app.client.get(app.url("/nowhere")).send().await.unwrap(), 404).await;
    problem(app.client.get(app.url("/simulations")).send().await.unwrap(), 405).await;
    // A problem quotes 64 characters of what it was sent, not all of it.
    let long = "a".repeat(20_000);
    for path in [
        format!("/results/{long}"),
        format!("/results/{}/cells/{long}", uuid::Uuid::now_v7()),
        format!("/{long}"),
    ] {
        let body = problem(app.client.get(app.url(&path)).send().await.unwrap(), 404).await;
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("{}…", "a".repeat(60))), "{path:.40}: {detail}");
        assert!(detail.len() < 200, "{path:.40}: {} bytes", detail.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_has_one_address_its_hyphenated_id_in_either_case() {
    let env = TestEnv::new();
    env.leaves_unfinished_jobs("it reads a queued job's address; no worker runs it");
    let app = env.spawn_app().await;
    let response = app.client.post(app.url("/simulations")).json(&small_request()).send().await;
    let body: Value = response.unwrap().json().await.unwrap();
    let id: uuid::Uuid = body["id"].as_str().unwrap().parse().unwrap();
    let upper = id.hyphenated().to_string().to_uppercase();
    let found = app.client.get(app.url(&format!("/results/{upper}"))).send().await.unwrap();
    assert_eq!(found.status(), StatusCode::OK);
    let found: Value = found.json().await.unwrap();
    assert_eq!(found["id"], id.to_string());
    let other_spellings = [id.simple().to_string(), id.braced().to_string(), id.urn().to_string()];
    for spelling in other_spellings {
        let encoded = spelling.replace('{', "%7B").replace('}', "%7D");
        for path in [format!("/results/{encoded}"), format!("/simulations/{encoded}")] {
            let request = if path.starts_with("/results") {
                app.client.get(app.url(&path))
            } else {
                app.client.delete(app.url(&path))
            };
            problem(request.send().await.unwrap(), 404).await;
        }
    }
    let listed = app.client.get(app.url(&format!("/results?before={}", id.simple()))).send();
    problem(listed.await.unwrap(), 422).await;
    // The cancels above found nothing: the job is still queued.
    assert_eq!(app.job(id).await["status"], "queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_is_202_with_location_and_queued_body_and_the_old_route_is_the_same_handler() {
    let mut env = TestEnv::new();
    env.leaves_unfinished_jobs("it checks what a submit answers; no worker runs the jobs");
    // `/run_simulation` would otherwise wait for the job (tests/it/waiting.rs).
    env.set("RUN_SIMULATION_WAIT_SECS", 0);
    let app = env.spawn_app().await;
    for route in ["/simulations", "/run_simulation"] {
        let response = app.client.post(app.url(route)).json(&small_request()).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let body: Value = response.json().await.unwrap();
        let id = body["id"].as_str().unwrap();
        assert_eq!(location, format!("/results/{id}"));
        assert_eq!(body["status"], "queued");
        assert_eq!(body["links"]["self"], location);
        let job = app.job(id.parse().unwrap()).await;
        assert_eq!(job["status"], "queued");
        assert!(job["seed"].as_u64().is_some());
        assert_eq!(job["request"]["n_scenarios"], 2000);
        assert_eq!(job["request"]["allocation"]["stocks"], 0.6);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_is_not_finished_carries_retry_after() {
    let env = TestEnv::new();
    env.leaves_unfinished_jobs("the job must stay unfinished: no worker runs");
    let app = env.spawn_app().await;
    let id = app.submit_ok(&small_request()).await;
    let response = app.client.get(app.url(&format!("/results/{id}"))).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_id_is_echoed_and_generated_when_missing() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let response = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    let response = app.client.get(app.url("/health")).send().await.unwrap();
    let generated = response.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_is_newest_first_and_paginates() {
    let env = TestEnv::new();
    env.leaves_unfinished_jobs("the jobs are only listed; no worker runs them");
    let app = env.spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.submit_ok(&small_request()).await);
    }
    ids.reverse();
    // Pages of 2 end on a page of 1, pages of 5 on a full one: the last says so either way
    // (`next: null`), and no page is empty.
    for limit in [2, 5] {
        let mut seen = Vec::new();
        let mut next = Some(format!("/results?limit={limit}"));
        while let Some(path) = next {
            let page: Value =
                app.client.get(app.url(&path)).send().await.unwrap().json().await.unwrap();
            let items = page["items"].as_array().unwrap();
            assert!(!items.is_empty(), "{path}: an empty page");
            for item in items {
                assert_eq!(item["status"], "queued");
                assert!(item.get("success_probability").is_some());
                seen.push(item["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap());
            }
            next = page["next"].as_str().map(str::to_owned);
        }
        assert_eq!(seen, ids, "limit {limit}");
    }
    let p = problem(app.client.get(app.url("/results?limit=0")).send().await.unwrap(), 422).await;
    assert_eq!(fields(&p), vec!["limit"]);
    let p =
        problem(app.client.get(app.url("/results?before=xyz")).send().await.unwrap(), 422).await;
    assert_eq!(fields(&p), vec!["before"]);
    // An empty value is not "the default": the document says integer and UUID.
    for (query, field) in [("limit=", "limit"), ("before=", "before")] {
        let response = app.client.get(app.url(&format!("/results?{query}"))).send().await.unwrap();
        assert_eq!(fields(&problem(response, 422).await), vec![field], "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_ready_answer_and_ready_names_what_is_down() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    assert_eq!(app.client.get(app.url("/health")).send().await.unwrap().status(), 200);
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let mut down =
        TestEnv::with(portfolio_tests::TestDb::migrated(), portfolio_tests::TestQueue::new());
    down.leaves_unfinished_jobs("its API cannot reach Redis: the job is only recorded");
    down.set("REDIS_URL", format!("redis://127.0.0.1:{}", portfolio_tests::throwaway::free_port()));
    let app = down.spawn_app().await;
    let p = problem(app.client.get(app.url("/ready")).send().await.unwrap(), 503).await;
    assert!(p["detail"].as_str().unwrap().contains("redis"), "{p}");
    assert_eq!(p["checks"]["postgres"], "ok");
    // Reads keep working from Postgres while Redis is down, and a submit is still recorded.
    let id = app.submit_ok(&small_request()).await;
    assert_eq!(app.job(id).await["status"], "queued");
}

/// A Redis that answers but takes no write (at `maxmemory` under `noeviction`, where every
/// push, heartbeat and claim fails) is not ready: a `PING` passed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_while_redis_refuses_writes() {
    let redis = portfolio_tests::throwaway::ThrowawayRedis::start();
    let env = TestEnv::with(
        portfolio_tests::TestDb::migrated(),
        portfolio_tests::TestQueue::on(&redis.url()),
    );
    let app = env.spawn_app().await;
    assert_eq!(app.client.get(app.url("/ready")).send().await.unwrap().status(), 200);
    let mut admin = redis::Client::open(redis.url()).unwrap().get_connection().unwrap();
    let set = |conn: &mut redis::Connection, limit: &str| {
        redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(limit).query::<()>(conn).unwrap()
    };
    set(&mut admin, "1");
    let p = problem(app.client.get(app.url("/ready")).send().await.unwrap(), 503).await;
    assert_eq!((&p["checks"]["redis"], &p["checks"]["postgres"]), (&json!("full"), &json!("ok")));
    assert!(p["detail"].as_str().unwrap().contains("redis refuses writes"), "{p}");
    set(&mut admin, "0");
    assert_eq!(app.client.get(app.url("/ready")).send().await.unwrap().status(), 200);
}

/// A database without this build's migrations (empty, or one behind: a deploy whose migrate
/// step was skipped) is not ready: every keyed request would fail on it. `/ready` passed it
/// with a `SELECT 1`, and the requests then answered 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_until_the_database_has_every_migration_of_this_build() {
    use diesel::RunQueryDsl;
    let env = TestEnv::with(portfolio_tests::TestDb::empty(), portfolio_tests::TestQueue::new());
    let app = env.spawn_app().await;
    let p = problem(app.client.get(app.url("/ready")).send().await.unwrap(), 503).await;
    assert_eq!(
        (&p["checks"]["postgres"], &p["checks"]["redis"]),
        (&json!("not migrated"), &json!("ok"))
    );
    assert!(p["detail"].as_str().unwrap().contains("portfolio-api migrate"), "{p}");

    portfolio_shared::db::migrate(&env.db.url).expect("migrate");
    assert_eq!(app.client.get(app.url("/ready")).send().await.unwrap().status(), 200);
    let newest = "(SELECT max(version) FROM __diesel_schema_migrations)";
    let forget = format!("DELETE FROM __diesel_schema_migrations WHERE version = {newest}");
    diesel::sql_query(forget).execute(&mut env.db.connect()).unwrap();
    let p = problem(app.client.get(app.url("/ready")).send().await.unwrap(), 503).await;
    assert!(p["detail"].as_str().unwrap().contains("lacks 1 migration"), "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route_with_its_errors() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let doc: Value =
        app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let expect = [
        ("/simulations", "post", vec!["202", "400", "413", "415", "422", "503"]),
        ("/run_simulation", "post", vec!["202", "422"]),
        ("/simulations/{id}", "delete", vec!["200", "404", "409"]),
        ("/results/{id}", "get", vec!["200", "404"]),
        ("/results", "get", vec!["200", "422"]),
        ("/health", "get", vec!["200"]),
        ("/ready", "get", vec!["200", "503"]),
    ];
    for (path, method, statuses) in expect {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing");
        for s in statuses {
            assert!(op["responses"][s].is_object(), "{method} {path} lacks {s}");
        }
    }
    let schemas = &doc["components"]["schemas"];
    for name in ["Problem", "SimulationRequestInput", "JobView", "SimulationResult"] {
        assert!(schemas[name].is_object(), "schema {name} missing");
    }
}

/// Every `$ref` in `value`, with where it was found.
fn refs(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("$ref", Value::String(target)) => out.push((at.to_owned(), target.clone())),
                    _ => refs(child, &format!("{at}/{key}"), out),
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                refs(child, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_resolves_every_ref_and_documents_access_on_every_operation() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let doc: Value =
        app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut found = Vec::new();
    refs(&doc, "", &mut found);
    assert!(found.len() > 20, "{found:?}");
    for (at, target) in &found {
        let pointer = target.strip_prefix('#').unwrap_or_else(|| panic!("{at}: {target}"));
        assert!(doc.pointer(pointer).is_some(), "{at}: $ref {target} resolves to nothing");
    }

    let scheme = &doc["components"]["securitySchemes"]["api_key"];
    assert_eq!((&scheme["type"], &scheme["scheme"]), (&json!("http"), &json!("bearer")));
    assert_eq!(doc["security"], json!([{"api_key": []}]));
    let public = ["/health", "/ready", "/", "/dashboard", "/assets/{name}"];
    let operator = ["/queue/stats", "/queue/charts/depth.svg"];
    let mut protected = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let said = |status: &str| op["responses"][status].is_object();
            // Every answer says what it means (a shared response, by its own description).
            for (status, answer) in op["responses"].as_object().unwrap() {
                let said = answer.get("$ref").is_some()
                    || answer["description"].as_str().is_some_and(|d| !d.is_empty());
                assert!(said, "{method} {path}: {status} has no description");
            }
            if public.contains(&path.as_str()) {
                assert_eq!(op["security"], json!([]), "{method} {path} is public");
                assert!(!said("401"), "{method} {path} is public");
                continue;
            }
            protected += 1;
            assert!(op.get("security").is_none_or(|s| s != &json!([])), "{method} {path}");
            for status in ["401", "429"] {
                assert!(said(status), "{method} {path} lacks {status}");
            }
            if operator.contains(&path.as_str()) {
                assert_eq!(op["security"], json!([{"api_key": ["operator"]}]), "{method} {path}");
                assert!(said("403"), "{method} {path} lacks 403");
            }
            if path.contains("{id}") {
                assert!(said("404"), "{method} {path} lacks 404");
            }
        }
    }
    assert!(protected >= 9, "{protected} protected operations");
    let unauthorized = &doc["components"]["responses"]["Unauthorized"];
    assert!(unauthorized["headers"]["WWW-Authenticate"].is_object(), "{unauthorized}");
    assert_eq!(doc["paths"]["/run_simulation"]["post"]["deprecated"], true);
    assert!(doc["paths"]["/simulations"]["post"].get("deprecated").is_none());
    // Query parameters are documented where they are read, with their types and ranges.
    let parameters = |path: &str| doc["paths"][path]["get"]["parameters"].clone();
    let limit = parameters("/results")[0].clone();
    assert_eq!((&limit["name"], &limit["in"]), (&json!("limit"), &json!("query")));
    assert_eq!(
        (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
        (&json!(1), &json!(100))
    );
    let minutes = parameters("/queue/charts/depth.svg")[0].clone();
    assert_eq!((&minutes["name"], &minutes["in"]), (&json!("minutes"), &json!("query")));
    // A submit links to every operation on its job.
    let links = &doc["paths"]["/simulations"]["post"]["responses"]["202"]["links"];
    let get = &doc["paths"]["/results/{id}"]["get"]["operationId"];
    assert_eq!(links[get.as_str().unwrap()]["parameters"]["id"], "$response.body#/id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scopes_the_document_states_are_the_scopes_the_handlers_require() {
    let mut env = TestEnv::new();
    env.leaves_unfinished_jobs("the simulate key's submits are only accepted; no worker runs them");
    // No worker runs: `/run_simulation` answers 202 at once instead of waiting.
    env.set("RUN_SIMULATION_WAIT_SECS", 0);
    let app = env.spawn_app().await;
    let simulate = app.as_key(&env.key("tenant", &["simulate"]));
    let operator = app.as_key(&env.key("ops", &["operator"]));
    let doc: Value =
        app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let url = path
            .replace("{id}", &uuid::Uuid::now_v7().to_string())
            .replace("{chart}", "fan")
            .replace("{name}", "app.js");
        for (method, op) in item.as_object().unwrap() {
            if op["security"] == json!([]) {
                continue;
            }
            let needs_operator = op["security"] == json!([{"api_key": ["operator"]}]);
            let forbids = op["responses"]["403"].is_object();
            // An operation that can refuse a key for its scope names the scope it needs.
            let named = op["security"][0]["api_key"].as_array().is_some_and(|s| !s.is_empty());
            assert_eq!(named, forbids, "{method} {path}: the scope it needs is named");
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let status = |client: &portfolio_tests::ApiClient| {
                let request = client.client.request(method.clone(), client.url(&url));
                let request = if method == reqwest::Method::POST {
                    request.json(&small_request())
                } else {
                    request
                };
                async move { request.send().await.unwrap().status() }
            };
            // The key lacking the scope the document names is refused with 403; the document
            // names 403 exactly where some key can be refused.
            let (lacking, holding) =
                if needs_operator { (&simulate, &operator) } else { (&operator, &simulate) };
            let refused = status(lacking).await == StatusCode::FORBIDDEN;
            assert_eq!(refused, forbids, "{method} {path}: 403 for a key without its scope");
            assert_ne!(status(holding).await, StatusCode::FORBIDDEN, "{method} {path}");
            checked += 1;
        }
    }
    assert!(checked >= 9, "{checked} operations");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_replay_returns_the_same_job_and_a_different_body_is_refused() {
    let mut env = TestEnv::new();
    env.leaves_unfinished_jobs("it checks what a replay answers; no worker runs the job");
    env.set("RUN_SIMULATION_WAIT_SECS", 1);
    let app = env.spawn_app().await;
    let send = |body: Value| {
        app.client
            .post(app.url("/simulations"))
            .header("idempotency-key", "order-77")
            .json(&body)
            .send()
    };
    let first = send(small_request()).await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    // The same request with keys in another order is the same body.
    let reordered: Value = serde_json::from_str(
        r#"{"n_scenarios": 2000, "years": 30, "monthly_spending": 4000, "starting_portfolio": 1000000}"#,
    )
    .unwrap();
    let again = send(reordered).await.unwrap();
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    let p = problem(send(with("years", json!(31))).await.unwrap(), 422).await;
    assert_eq!(fields(&p), vec!["Idempotency-Key"]);
    // Two keys: which one the job answers to would be a guess.
    let two = app
        .client
        .post(app.url("/simulations"))
        .header("idempotency-key", "order-77")
        .header("idempotency-key", "order-78")
        .json(&small_request())
        .send()
        .await
        .unwrap();
    let p = problem(two, 422).await;
    assert_eq!(fields(&p), vec!["Idempotency-Key"]);
    // A waited replay of a job that has not ended is a 202, as the waited submit itself would
    // be (the old app's clients read any 200 of /run_simulation as the result), and says the
    // wait was applied as that submit's 202 does.
    for (path, prefer) in [("/simulations", Some("wait=1")), ("/run_simulation", None)] {
        let mut post = app
            .client
            .post(app.url(path))
            .header("idempotency-key", "order-77")
            .json(&small_request());
        if let Some(prefer) = prefer {
            post = post.header("prefer", prefer);
        }
        let replay = post.send().await.unwrap();
        assert_eq!(replay.status(), 202, "{path}");
        assert_eq!(replay.headers()["idempotent-replayed"], "true", "{path}");
        assert!(replay.headers().contains_key("location"), "{path}");
        // The body is the job's document, as /results/{id} serves it.
        let served = format!("/results/{}", first["id"].as_str().unwrap());
        assert_eq!(replay.headers()["content-location"], served.as_str(), "{path}");
        // The wait was honoured, as on a first submit's 202; /run_simulation's own wait is no
        // preference the client stated.
        let applied = replay.headers().get("preference-applied").map(|v| v.to_str().unwrap());
        assert_eq!(applied, prefer, "{path}");
        let replay: Value = replay.json().await.unwrap();
        assert_eq!((&replay["id"], &replay["status"]), (&first["id"], &json!("queued")), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_queued_job_is_immediate_and_a_finished_one_is_409() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let id = app.submit_ok(&small_request()).await;
    let response = app.client.delete(app.url(&format!("/simulations/{id}"))).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.job(id).await["status"], "cancelled");
    let response = app.client.delete(app.url(&format!("/simulations/{id}"))).send().await.unwrap();
    problem(response, 409).await;
}

/// A job cancelled while queued leaves the queue at once, a sweep's queued units with it: it
/// used to wait there for a worker's claim to drop it, counted as waiting by the queue-depth
/// ceiling (a submit refused with fewer jobs waiting than the ceiling), the autoscaling signal
/// and the queue's statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_while_queued_leaves_the_queue_at_once() {
    let mut env = TestEnv::new();
    env.leaves_unfinished_jobs("the queue is filled to its ceiling with no worker to drain it");
    env.set("QUEUE_DEPTH_CEILING", 4).set("SWEEP_UNIT_COST", 1);
    let app = env.spawn_app().await;
    let mut sweep = small_request();
    sweep["sweep"] = json!({"axes": [{"field": "years", "values": [10, 20]}]});
    let sweep = app.submit_ok(&sweep).await;
    let plan = app.submit_ok(&small_request()).await;
    // The quota is below the ceiling: another tenant fills the last place.
    let other = app.as_key(&env.key("other", &["simulate"]));
    other.submit_ok(&small_request()).await;
    let mut redis = env.queue.connection();
    let ready = |redis: &mut redis::Connection| -> i64 {
        redis::cmd("LLEN").arg(env.queue.keys().ready_list()).query(redis).unwrap()
    };
    assert_eq!(ready(&mut redis), 4, "two units and two plans");
    problem(other.submit(&small_request()).await, 503).await;
    for id in [plan, sweep] {
        let response = app.client.delete(app.url(&format!("/simulations/{id}"))).send().await;
        assert_eq!(response.unwrap().status(), 200);
    }
    assert_eq!(ready(&mut redis), 1, "the plan and the sweep's two units are out");
    let data: i64 = redis::cmd("HLEN").arg(env.queue.keys().data_hash()).query(&mut redis).unwrap();
    assert_eq!(data, 1, "and their payloads");
    app.submit_ok(&small_request()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_queue_depth_ceiling_submits_get_503_with_retry_after() {
    let mut env = TestEnv::new();
    env.leaves_unfinished_jobs("the queue is filled to its ceiling with no worker to drain it");
    // One tenant may hold at most 2 of the 3 places: the third comes from another tenant.
    env.set("QUEUE_DEPTH_CEILING", 3).set("MAX_UNFINISHED_JOBS_PER_KEY", 2);
    let app = env.spawn_app().await;
    for _ in 0..2 {
        app.submit_ok(&small_request()).await;
    }
    let other = app.as_key(&env.key("other", &["simulate"]));
    other.submit_ok(&small_request()).await;
    let response = other.submit(&small_request()).await;
    assert!(response.headers().contains_key("retry-after"));
    let p = problem(response, 503).await;
    assert_eq!(p["type"], "/problems/queue-full");
    // The depth counts every tenant's jobs: only an operator key may read the queue.
    assert_eq!(
        p["detail"],
        "more jobs are waiting than this deployment takes (QUEUE_DEPTH_CEILING); nothing was recorded, retry in 10 s",
        "the depth is not told"
    );
    let list: Value =
        app.client.get(app.url("/results")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 3, "the refused job was not recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_answers_a_method_it_does_not_serve_with_405_and_allow_naming_those_it_does() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let doc: Value =
        app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "{paths:?}");
    for (path, item) in paths {
        let mut served: Vec<String> =
            item.as_object().unwrap().keys().map(|m| m.to_uppercase()).collect();
        // Every GET route answers HEAD too, without an operation of its own in the document.
        if served.iter().any(|m| m == "GET") {
            served.push("HEAD".to_owned());
        }
        served.sort();
        let url = path
            .replace("{id}", &uuid::Uuid::now_v7().to_string())
            .replace("{chart}", "fan")
            .replace("{name}", "app.js");
        let response = app.client.patch(app.url(&url)).send().await.unwrap();
        let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
        let p = problem(response, 405).await;
        assert_eq!(p["type"], "/problems/method-not-allowed", "{path}");
        let mut allowed: Vec<String> =
            allow.unwrap_or_default().split(", ").map(str::to_owned).collect();
        allowed.sort();
        assert_eq!(allowed, served, "PATCH {path}");
    }
    let response = app.client.get(app.url("/simulations")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    let response = app.client.post(app.url("/health")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    problem(response, 405).await;
}
