//! Tenancy: a key is needed on every route but the public ones; a tenant sees, charts, exports,
//! cancels and replays only its own jobs (another's answer as if they did not exist); an
//! operator reads every tenant's; the rate limit holds across API processes; the quota caps one
//! tenant's unfinished jobs, also under a race of concurrent submits; audit rows name the key
//! that acted; keys are made, listed and revoked with the CLI.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text};
use portfolio_shared::store::models::NewSimulation;
use portfolio_shared::store::{self, Recorded};
use portfolio_tests::processes::{ApiProc, LogDir, run_to_end};
use portfolio_tests::{ApiClient, TestDb, TestEnv, eventually, problem, small_request};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

const WITHIN: Duration = Duration::from_secs(60);

/// The routes anyone may call.
const PUBLIC: &[&str] = &["/", "/dashboard", "/assets/{name}", "/health", "/ready"];

async fn status_of(api: &ApiClient, method: Method, path: &str) -> u16 {
    api.client.request(method, api.url(path)).send().await.unwrap().status().as_u16()
}

/// Revokes (or restores) the keys named `name` behind the API's back, straight in the table.
fn set_revoked(conn: &mut PgConnection, name: &str, revoked: bool) {
    diesel::sql_query(
        "UPDATE api_keys SET revoked_at = CASE WHEN $1 THEN now() END WHERE name = $2",
    )
    .bind::<diesel::sql_types::Bool, _>(revoked)
    .bind::<Text, _>(name)
    .execute(conn)
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_cannot_read_list_chart_export_cancel_or_replay_a_job_and_an_operator_reads_all()
 {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let worker = env.spawn_worker().await;
    let alice = app.as_key(&env.key("alice", &["simulate"]));
    let bob = app.as_key(&env.key("bob", &["simulate"]));
    let operator = app.as_key(&env.key("ops", &["operator"]));

    let submit_keyed = |api: &ApiClient, key: &'static str| {
        api.client
            .post(api.url("/simulations"))
            .header("idempotency-key", key)
            .json(&small_request())
            .send()
    };
    let response = submit_keyed(&alice, "plan-1").await.unwrap();
    assert_eq!(response.status(), 202);
    let id: Uuid = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(alice.wait_terminal(id, WITHIN).await["status"], "succeeded");

    for path in [
        format!("/results/{id}"),
        format!("/results/{id}/charts/fan.svg"),
        format!("/results/{id}/table.csv"),
    ] {
        assert_eq!(status_of(&alice, Method::GET, &path).await, 200, "{path}");
        let p = problem(bob.client.get(bob.url(&path)).send().await.unwrap(), 404).await;
        assert!(p["detail"].as_str().unwrap().contains("no job"), "{p}");
    }
    let response = bob.client.delete(bob.url(&format!("/simulations/{id}"))).send().await.unwrap();
    problem(response, 404).await;
    // Bob's listing is empty; his use of Alice's idempotency key makes a job of his own.
    let list: Value =
        bob.client.get(bob.url("/results")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["items"], serde_json::json!([]));
    let response = submit_keyed(&bob, "plan-1").await.unwrap();
    assert_eq!(response.status(), 202, "a key of another tenant is no replay");
    let bobs: Uuid =
        response.json::<Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap();
    assert_ne!(bobs, id);
    assert_eq!(bob.wait_terminal(bobs, WITHIN).await["status"], "succeeded");
    // Alice's replay is hers.
    let response = submit_keyed(&alice, "plan-1").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["id"], id.to_string());

    // The operator reads and lists both, but may not cancel or submit.
    assert_eq!(status_of(&operator, Method::GET, &format!("/results/{id}")).await, 200);
    let list: Value =
        operator.client.get(operator.url("/results")).send().await.unwrap().json().await.unwrap();
    let listed: Vec<&str> =
        list["items"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert!(
        listed.contains(&id.to_string().as_str()) && listed.contains(&bobs.to_string().as_str())
    );
    let response =
        operator.client.delete(operator.url(&format!("/simulations/{id}"))).send().await.unwrap();
    let p = problem(response, 403).await;
    assert!(p["detail"].as_str().unwrap().contains("`simulate` scope"), "{p}");
    problem(operator.submit(&small_request()).await, 403).await;
    // One with both scopes reads Alice's job, and its refused cancel says why rather than
    // denying the job it has just read; a tenant's 404 says no more than "no job".
    let both = app.as_key(&env.key("ops", &["operator", "simulate"]));
    assert_eq!(status_of(&both, Method::GET, &format!("/results/{id}")).await, 200);
    let response = both.client.delete(both.url(&format!("/simulations/{id}"))).send().await;
    let p = problem(response.unwrap(), 404).await;
    assert!(p["detail"].as_str().unwrap().contains("cancels only its own tenant's"), "{p}");
    let response = bob.client.delete(bob.url(&format!("/simulations/{id}"))).send().await;
    let p = problem(response.unwrap(), 404).await;
    assert_eq!(p["detail"], format!("no job {id}"), "{p}");
    // A tenant does not get the operator's surfaces.
    let p = problem(alice.client.get(alice.url("/queue/stats")).send().await.unwrap(), 403).await;
    assert!(p["detail"].as_str().unwrap().contains("`operator` scope"), "{p}");
    assert_eq!(status_of(&operator, Method::GET, "/queue/stats").await, 200);
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protected_route_answers_401_alike_without_a_valid_key() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let revoked = env.key("gone", &["simulate", "operator"]);
    let mut conn = env.db.connect();
    diesel::sql_query("UPDATE api_keys SET revoked_at = now() WHERE name = 'gone'")
        .execute(&mut conn)
        .unwrap();
    let unknown = portfolio_api::auth::key::PresentedKey::generate().reveal().to_owned();
    let clients = [
        ("no key", app.anonymous()),
        ("not a key", app.as_key("hunter2")),
        ("unknown key", app.as_key(&unknown)),
        ("revoked key", app.as_key(&revoked)),
    ];
    // Walk the route table, so that a new route cannot be forgotten.
    let doc: Value =
        app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    for path in PUBLIC {
        assert!(doc["paths"][path].is_object(), "{path} is a route of the document");
    }
    let mut protected = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let url = path
            .replace("{id}", &Uuid::now_v7().to_string())
            .replace("{chart}", "fan")
            .replace("{name}", "app.js");
        for method in item.as_object().unwrap().keys() {
            let method: Method = method.to_uppercase().parse().unwrap();
            if PUBLIC.contains(&path.as_str()) {
                let response = app.anonymous().client.request(method.clone(), app.url(&url));
                let status = response.send().await.unwrap().status().as_u16();
                assert!(status < 400 || status == 503, "{method} {path} is public: {status}");
                continue;
            }
            protected += 1;
            let mut details = Vec::new();
            for (what, client) in &clients {
                let response =
                    client.client.request(method.clone(), client.url(&url)).send().await.unwrap();
                assert_eq!(
                    response.headers().get("www-authenticate").map(|v| v.to_str().unwrap()),
                    Some(r#"Bearer realm="portfolio-mc""#),
                    "{method} {path} with {what}"
                );
                let p = problem(response, 401).await;
                details.push(p["detail"].as_str().unwrap().to_owned());
            }
            details.dedup();
            assert_eq!(details.len(), 1, "{method} {path}: no hint of which key is wrong");
        }
    }
    assert!(protected >= 8, "{protected} protected operations");
    // The metrics left the public port (it answers as any unknown route does).
    assert_eq!(status_of(&app, Method::GET, "/metrics").await, 404);
    assert!(app.metrics_text().await.contains("portfolio_http_requests_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_submit_rate_limit_holds_across_two_api_processes_and_spares_other_tenants() {
    let mut env = TestEnv::new();
    env.leaves_unfinished_jobs("the accepted jobs wait; no worker runs");
    env.set("RATE_LIMIT_SUBMITS_PER_MINUTE", 5);
    let logs = LogDir::new();
    let vars = env.vars();
    let (one, two) = tokio::join!(ApiProc::spawn(&vars, &logs), ApiProc::spawn(&vars, &logs));
    let key = env.key("busy", &["simulate"]);
    let (one, two) = (one.as_key(&key), two.as_key(&key));
    let mut accepted = 0;
    let mut limited = Vec::new();
    let mut refused_by_one = 0;
    for i in 0..12 {
        let api = if i % 2 == 0 { &one } else { &two };
        let response = api.submit(&small_request()).await;
        let policy = response.headers()["ratelimit-policy"].to_str().unwrap().to_owned();
        assert_eq!(policy, r#""submits";q=5;w=60"#);
        match response.status().as_u16() {
            202 => accepted += 1,
            429 => {
                refused_by_one += usize::from(i % 2 == 0);
                limited.push(response);
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(accepted, 5, "the sum over both processes stays within the limit");
    assert_eq!(limited.len(), 7);
    let response = limited.pop().unwrap();
    let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let state = response.headers()["ratelimit"].to_str().unwrap().to_owned();
    assert!(state.starts_with(r#""submits";r=0;t="#), "{state}");
    let p = problem(response, 429).await;
    assert!(p["detail"].as_str().unwrap().contains("RATE_LIMIT_SUBMITS_PER_MINUTE"), "{p}");
    // A spent budget answers before anything the request itself would get: a body the handler
    // would refuse, and a submit naming an Idempotency-Key, get 429 too (with the budget's
    // headers), and nothing more is recorded.
    let invalid = serde_json::json!({ "starting_portfolio": 1_000_000, "years": 300 });
    let refused = one.client.post(one.url("/simulations")).json(&invalid).send().await.unwrap();
    assert!(refused.headers()["ratelimit"].to_str().unwrap().starts_with(r#""submits";r=0;"#));
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(problem(refused, 429).await["type"], p["type"]);
    let keyed = two
        .client
        .post(two.url("/simulations"))
        .header("Idempotency-Key", "spent-budget")
        .json(&small_request())
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 429);
    // The handler reads the body while the submit is counted (auth/admission.rs): whatever it
    // would have done next (record a plan or a sweep, answer the old route after its wait, a
    // replay), a refused submit gets the budget's 429 and records nothing.
    let mut sweep = small_request();
    sweep["sweep"] = serde_json::json!({
        "axes": [{ "field": "allocation.stocks", "values": [0.3, 0.9] }]
    });
    let old_route = one.url("/run_simulation");
    for (url, body) in [(one.url("/simulations"), sweep), (old_route, small_request())] {
        let refused = one.client.post(url).json(&body).send().await.unwrap();
        assert!(refused.headers()["ratelimit"].to_str().unwrap().starts_with(r#""submits";r=0;"#));
        assert_eq!(problem(refused, 429).await["type"], p["type"]);
    }
    // Each refusal counted once, whichever answered it (the handler or the guard in its place):
    // the loop's, the invalid body, the sweep and the old route.
    let metrics = one.metrics_text().await;
    let counted = format!(
        r#"portfolio_submits_refused_total{{reason="rate_limited"}} {}"#,
        refused_by_one + 3
    );
    assert!(metrics.lines().any(|l| l == counted), "{counted} in\n{metrics}");
    let mine: Value =
        one.client.get(one.url("/results")).send().await.unwrap().json().await.unwrap();
    assert_eq!(mine["items"].as_array().unwrap().len(), 5, "{mine}");
    // Reads have their own budget, and another tenant its own.
    assert_eq!(status_of(&one, Method::GET, "/results").await, 200);
    let other = one.as_key(&env.key("calm", &["simulate"]));
    assert_eq!(other.submit(&small_request()).await.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_while_the_api_remembers_it_gets_401_on_every_submit_and_records_nothing() {
    let mut env = TestEnv::new();
    env.set("RESULT_CACHE_TTL_SECS", 3600);
    let app = env.spawn_app().await;
    let worker = env.spawn_worker().await;
    let erin = app.as_key(&env.key("erin", &["simulate"]));
    let waited = |api: &ApiClient, url: &str, body: &Value| {
        api.client.post(api.url(url)).header("Prefer", "wait=30").json(body).send()
    };
    // Used, the key is remembered as valid (auth/lookup.rs); a seeded plan run twice is the
    // second time a result-cache hit.
    let mut seeded = small_request();
    seeded["seed"] = serde_json::json!(42);
    for cache in [None, Some("hit")] {
        let answer = waited(&erin, "/simulations", &seeded).await.unwrap();
        assert_eq!(answer.status(), 200);
        let job: Value = answer.json().await.unwrap();
        assert_eq!(job["result"]["cache"].as_str(), cache, "{job}");
    }
    let keyed = erin.client.post(erin.url("/simulations")).header("Idempotency-Key", "plan-e");
    assert_eq!(keyed.json(&small_request()).send().await.unwrap().status(), 202);
    // Revoked behind the API's back: not through the CLI, straight in the table.
    let mut conn = env.db.connect();
    let mut revoked = |revoked: bool| set_revoked(&mut conn, "erin", revoked);
    let invalid = serde_json::json!({ "starting_portfolio": 1_000_000, "years": 300 });
    let mut sweep = small_request();
    sweep["sweep"] = serde_json::json!({
        "axes": [{ "field": "allocation.stocks", "values": [0.3, 0.9] }]
    });
    // Whatever the submit would have done (record a plan, answer from the cache, record a
    // sweep, replay its first answer, answer the old route, refuse a body), the revoked key
    // gets the 401 first.
    let cases = [
        ("a plan", "/simulations", small_request(), None),
        ("a cache hit", "/simulations", seeded.clone(), None),
        ("a sweep", "/simulations", sweep, None),
        ("a replay", "/simulations", small_request(), Some("plan-e")),
        ("the old route", "/run_simulation", small_request(), None),
        ("an invalid body", "/simulations", invalid, None),
    ];
    for (what, url, body, idempotency) in cases {
        // Valid again and used, so the API remembers it; then revoked.
        revoked(false);
        assert_eq!(status_of(&erin, Method::GET, "/results").await, 200);
        revoked(true);
        let mut request = erin.client.post(erin.url(url)).json(&body);
        if let Some(key) = idempotency {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{what}");
        assert!(response.headers().contains_key("www-authenticate"), "{what}");
        problem(response, 401).await;
    }
    let mut conn = env.db.connect();
    let recorded: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "(SELECT count(*) FROM simulations WHERE owner = 'erin')",
    ))
    .get_result(&mut conn)
    .unwrap();
    assert_eq!(recorded, 3, "only the jobs of the valid key");
    // The tenant's new key works at once, on the same process.
    let renewed = app.as_key(&env.key("erin", &["simulate"]));
    assert_eq!(waited(&renewed, "/simulations", &small_request()).await.unwrap().status(), 200);
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_while_the_api_remembers_it_gets_401_on_every_read_of_a_job() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let worker = env.spawn_worker().await;
    let frank = app.as_key(&env.key("frank", &["simulate"]));
    let other = app.as_key(&env.key("grace", &["simulate"]));
    let ended = |api: &ApiClient| {
        let request = api.client.post(api.url("/simulations")).header("Prefer", "wait=30");
        request.json(&small_request()).send()
    };
    let job: Value = ended(&frank).await.unwrap().json().await.unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    let mine = format!("/results/{}", job["id"].as_str().unwrap());
    let theirs: Value = ended(&other).await.unwrap().json().await.unwrap();
    let theirs = format!("/results/{}", theirs["id"].as_str().unwrap());
    let mut conn = env.db.connect();
    let mut revoked = |revoked: bool| set_revoked(&mut conn, "frank", revoked);
    // A read of one job on a key the API remembers is checked by the read's own statement
    // (auth/lookup.rs); whatever it would have found (the job, a long-poll, another tenant's
    // job, no job, a bad parameter), a revoked key gets the 401.
    let cases = [
        ("its job", Method::GET, mine.clone()),
        ("its job, HEAD", Method::HEAD, mine.clone()),
        ("a long-poll", Method::GET, format!("{mine}?wait=1")),
        ("another tenant's job", Method::GET, theirs.clone()),
        ("no job", Method::GET, format!("/results/{}", Uuid::now_v7())),
        ("a bad wait", Method::GET, format!("{mine}?wait=soon")),
    ];
    for (what, method, path) in cases {
        // Valid again and used, so the API remembers it; then revoked.
        revoked(false);
        assert_eq!(status_of(&frank, Method::GET, &mine).await, 200, "{what}");
        revoked(true);
        let response = frank.client.request(method.clone(), frank.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{what}");
        assert!(response.headers().contains_key("www-authenticate"), "{what}");
        if method == Method::GET {
            problem(response, 401).await;
        }
    }
    // Valid, the remembered key reads as before: its job, not another tenant's.
    revoked(false);
    assert_eq!(status_of(&frank, Method::GET, &mine).await, 200);
    assert_eq!(status_of(&frank, Method::GET, &format!("{mine}?wait=1")).await, 200);
    assert_eq!(status_of(&frank, Method::GET, &theirs).await, 404);
    worker.stop().await.unwrap();
}

/// A key revoked while its long-poll waits gets the `401` when the wait ends, not the job: a
/// request that lasted a second or more looks its key up again before it answers. (Its key's
/// first request is looked up, which stamps `last_used_at`: the revocation is made after that,
/// while the request waits on a job no worker runs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_while_its_long_poll_waits_gets_401_when_the_wait_ends() {
    let env = TestEnv::new();
    env.leaves_unfinished_jobs("the job waits; no worker runs");
    let app = env.spawn_app().await;
    let id = app.as_key(&env.key("heidi", &["simulate"])).submit_ok(&small_request()).await;
    let waiting = app.as_key(&env.key("heidi", &["simulate"]));
    let mut conn = env.db.connect();
    let used = |conn: &mut PgConnection| api_keys_used(conn, "heidi");
    assert_eq!(used(&mut conn), 1, "only the submitting key was used yet");
    let url = waiting.url(&format!("/results/{id}?wait=3"));
    let long_poll = tokio::spawn(waiting.client.get(url).send());
    eventually(Duration::from_secs(5), || {
        let n = used(&mut conn);
        async move { (n == 2).then_some(()) }
    })
    .await;
    set_revoked(&mut conn, "heidi", true);
    let response = long_poll.await.unwrap().unwrap();
    assert_eq!(response.status(), 401, "the wait's answer went out on a revoked key");
    problem(response, 401).await;
}

/// How many of the keys named `name` have been looked up.
fn api_keys_used(conn: &mut PgConnection, name: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Used {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(
        "SELECT count(*) AS n FROM api_keys WHERE name = $1 AND last_used_at IS NOT NULL",
    )
    .bind::<Text, _>(name)
    .get_result::<Used>(conn)
    .unwrap()
    .n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_caps_a_tenants_unfinished_jobs_naming_the_setting() {
    let mut env = TestEnv::new();
    env.leaves_unfinished_jobs("the jobs wait; no worker runs");
    env.set("MAX_UNFINISHED_JOBS_PER_KEY", 2);
    let app = env.spawn_app().await;
    let key = env.key("heavy", &["simulate"]);
    let heavy = app.as_key(&key);
    // A rotated key of the same tenant shares the quota.
    let rotated = app.as_key(&env.key("heavy", &["simulate"]));
    heavy.submit_ok(&small_request()).await;
    rotated.submit_ok(&small_request()).await;
    let response = heavy.submit(&small_request()).await;
    assert!(response.headers().contains_key("retry-after"));
    let p = problem(response, 429).await;
    assert_eq!(p["type"], "/problems/quota-reached");
    assert!(p["detail"].as_str().unwrap().contains("MAX_UNFINISHED_JOBS_PER_KEY=2"), "{p}");
    let mine: Value =
        heavy.client.get(heavy.url("/results")).send().await.unwrap().json().await.unwrap();
    assert_eq!(mine["items"].as_array().unwrap().len(), 2, "the refused job was not recorded");
    // Cancelling one frees a place; another tenant was never concerned.
    let first = mine["items"][0]["id"].as_str().unwrap().to_owned();
    let response = heavy.client.delete(heavy.url(&format!("/simulations/{first}"))).send().await;
    assert_eq!(response.unwrap().status(), 200);
    heavy.submit_ok(&small_request()).await;
    app.submit_ok(&small_request()).await;
}

/// A sweep holds a quota place per unit, as each unit is an entry of the queue whose ceiling
/// the quota keeps a tenant's share of; a sweep of more units than the quota is refused as it
/// stands (`422`), since it could never be let in. Counted once, one tenant's sweeps could
/// hold many times its share of `QUEUE_DEPTH_CEILING`, and every other tenant's submit got
/// `503`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_holds_a_quota_place_per_unit() {
    let mut env = TestEnv::new();
    env.leaves_unfinished_jobs("the jobs wait; no worker runs");
    env.set("MAX_UNFINISHED_JOBS_PER_KEY", 3);
    // One cell per unit.
    env.set("SWEEP_UNIT_COST", 1);
    let app = env.spawn_app().await;
    let tenant = app.as_key(&env.key("sweeper", &["simulate"]));
    let sweep = |cells: u32| {
        let mut body = small_request();
        body["sweep"] = json!({"axes": [
            {"field": "monthly_spending", "from": 3000, "to": 5000, "steps": cells}
        ]});
        body
    };
    let too_many = problem(tenant.submit(&sweep(4)).await, 422).await;
    assert_eq!(too_many["errors"][0]["field"], "sweep", "{too_many}");
    let message = too_many["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("4 units") && message.contains("MAX_UNFINISHED_JOBS_PER_KEY"));
    tenant.submit_ok(&sweep(2)).await;
    // Two of three places held: a plan fits, a sweep of two does not.
    let refused = tenant.submit(&sweep(2)).await;
    let p = problem(refused, 429).await;
    assert_eq!(p["type"], "/problems/quota-reached");
    assert!(p["detail"].as_str().unwrap().contains("hold 2 of the 3"), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("needs 2"), "{p}");
    tenant.submit_ok(&small_request()).await;
    problem(tenant.submit(&small_request()).await, 429).await;
    let mine: Value =
        tenant.client.get(tenant.url("/results")).send().await.unwrap().json().await.unwrap();
    assert_eq!(mine["items"].as_array().unwrap().len(), 2, "a sweep and a plan: {mine}");
    // The three queue entries are all this tenant has.
    let mut conn = PgConnection::establish(&env.db.url).unwrap();
    assert_eq!(places_held(&mut conn, "sweeper"), 3);
    // Another tenant was never concerned.
    app.submit_ok(&small_request()).await;
}

/// Queue places a tenant's unfinished jobs hold, as the quota counts them.
fn places_held(conn: &mut PgConnection, owner: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Held {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(
        "SELECT count(*) AS n FROM simulations \
         WHERE owner = $1 AND kind <> 'sweep' AND status IN ('queued', 'running')",
    )
    .bind::<Text, _>(owner)
    .get_result::<Held>(conn)
    .unwrap()
    .n
}

/// The quota holds under a race: submits of one tenant from many connections at once record
/// exactly the quota's worth of jobs, never one more. The count runs in a snapshot taken after
/// the tenant's lock is held; counted in a snapshot taken before it (as a subquery of the
/// recording statement would be), two submits can both see room for the last place.
#[test]
fn concurrent_submits_of_one_tenant_never_overshoot_the_quota() {
    const QUOTA: i64 = 10;
    const THREADS: usize = 8;
    const EACH: usize = 6;
    let db = TestDb::migrated();
    let request = small_request();
    let start = std::sync::Barrier::new(THREADS);
    let inserted: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    let mut conn = db.connect();
                    start.wait();
                    (0..EACH)
                        .filter(|_| {
                            let job = NewSimulation {
                                id: Uuid::now_v7(),
                                request: &request,
                                seed: 1,
                                request_id: None,
                                idempotency_key: None,
                                request_hash: None,
                                owner: "racer",
                                api_key_id: None,
                                cache_key: None,
                            };
                            store::insert_job(&mut conn, &job, QUOTA, store::Flush::WithCommit)
                                .unwrap()
                                == Recorded::Inserted
                        })
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        jobs: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        audits: i64,
    }
    let rows: Count = diesel::sql_query(
        "SELECT (SELECT count(*) FROM simulations WHERE owner = 'racer') AS jobs, \
                (SELECT count(*) FROM audit_logs a JOIN simulations s ON s.id = a.simulation_id \
                  WHERE s.owner = 'racer') AS audits",
    )
    .get_result(&mut db.connect())
    .unwrap();
    assert_eq!(inserted as i64, QUOTA, "submits answered as recorded");
    assert_eq!((rows.jobs, rows.audits), (QUOTA, QUOTA), "jobs and submitted rows stored");
}

#[derive(QueryableByName, Debug, PartialEq)]
struct KeyedRow {
    #[diesel(sql_type = Text)]
    event: String,
    #[diesel(sql_type = Nullable<diesel::sql_types::Int8>)]
    api_key_id: Option<i64>,
    #[diesel(sql_type = Text)]
    owner: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_rows_name_the_key_that_submitted_and_the_one_that_cancelled() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let first = env.key("carol", &["simulate"]);
    let second = env.key("carol", &["simulate"]);
    let id = app.as_key(&first).submit_ok(&small_request()).await;
    let canceller = app.as_key(&second);
    let response = canceller.client.delete(canceller.url(&format!("/simulations/{id}"))).send();
    assert_eq!(response.await.unwrap().status(), 200);
    let rows: Vec<KeyedRow> = diesel::sql_query(
        "SELECT a.event, a.api_key_id, s.owner FROM audit_logs a \
         JOIN simulations s ON s.id = a.simulation_id WHERE a.simulation_id = $1 ORDER BY a.id",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .load(&mut env.db.connect())
    .unwrap();
    let id_of = |key: &str| -> i64 {
        #[derive(QueryableByName)]
        struct Id {
            #[diesel(sql_type = diesel::sql_types::Int8)]
            id: i64,
        }
        diesel::sql_query("SELECT id FROM api_keys WHERE prefix = $1")
            .bind::<Text, _>(&key[4..12])
            .get_result::<Id>(&mut env.db.connect())
            .unwrap()
            .id
    };
    assert_eq!(
        rows,
        [
            KeyedRow {
                event: "submitted".into(),
                api_key_id: Some(id_of(&first)),
                owner: "carol".into()
            },
            KeyedRow {
                event: "cancelled".into(),
                api_key_id: Some(id_of(&second)),
                owner: "carol".into()
            },
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_disabled_no_key_is_asked_and_everything_is_the_local_tenants() {
    let mut env = TestEnv::new();
    env.set("AUTH_MODE", "disabled");
    let app = env.spawn_app().await;
    let anonymous = app.anonymous();
    let id = anonymous.submit_ok(&small_request()).await;
    assert_eq!(status_of(&anonymous, Method::GET, "/queue/stats").await, 200);
    let response = anonymous.client.delete(anonymous.url(&format!("/simulations/{id}"))).send();
    assert_eq!(response.await.unwrap().status(), 200);
    let owner: Vec<KeyedRow> = diesel::sql_query(
        "SELECT 'submitted' AS event, api_key_id, owner FROM simulations WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .load(&mut env.db.connect())
    .unwrap();
    assert_eq!(owner[0].owner, "local");
    assert_eq!(owner[0].api_key_id, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_made_listed_and_revoked_with_the_cli_work_at_once() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    // Standard output only: the key must be alone on its last line.
    let cli = |args: &[&str]| {
        let out = run_to_end("portfolio-api", args, &env.vars());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("pmc_"), "no key on standard error: {stderr}");
        (out.status, String::from_utf8(out.stdout).unwrap())
    };
    let (status, out) = cli(&["keys", "create", "--name", "dave", "--scope", "operator"]);
    assert!(status.success(), "{out}");
    let key = out.lines().last().unwrap().to_owned();
    assert!(key.starts_with("pmc_") && key.len() == 53, "{key}");
    let dave = app.as_key(&key);
    assert_eq!(status_of(&dave, Method::GET, "/queue/stats").await, 200);

    let (status, listing) = cli(&["keys", "list"]);
    assert!(status.success());
    let row = listing.lines().find(|l| l.contains(" dave ")).expect("dave is listed");
    assert!(row.contains(&key[4..12]) && row.contains("operator"), "{row}");
    assert!(!listing.contains(&key[13..]), "the secret is never shown");
    let id = row.split_whitespace().next().unwrap().to_owned();

    let (status, _) = cli(&["keys", "revoke", &id]);
    assert!(status.success());
    problem(dave.client.get(dave.url("/results")).send().await.unwrap(), 401).await;
    let (status, _) = cli(&["keys", "create", "--name", "has space"]);
    assert!(!status.success());
}
