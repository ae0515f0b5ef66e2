//! The headers every response carries, checked by walking the routes of the OpenAPI document
//! (so a new route cannot be forgotten): `nosniff` everywhere, `default-src 'none'` on SVG and
//! JSON, `private` caching on everything per tenant, HEAD wherever GET, `Allow` on every 405;
//! and a client's `X-Request-Id` kept only when it is safe to log.

use std::time::Duration;

use diesel::RunQueryDsl;
use diesel::sql_types::Text;
use portfolio_tests::{ApiClient, TestEnv, small_request};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;
use uuid::Uuid;

/// The paths the same for everyone; every other one is per tenant.
const PUBLIC: &[&str] = &["/health", "/ready", "/", "/dashboard", "/openapi.json"];

fn is_public(path: &str) -> bool {
    PUBLIC.contains(&path) || path.starts_with("/assets/")
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

/// The checks of one response to `what` at `path`.
fn check(what: &str, path: &str, headers: &HeaderMap) {
    assert_eq!(header(headers, "x-content-type-options"), Some("nosniff"), "{what}");
    let content_type = header(headers, "content-type").unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if essence == "image/svg+xml" || essence == "application/json" || essence.ends_with("+json") {
        assert_eq!(
            header(headers, "content-security-policy"),
            Some("default-src 'none'"),
            "{what}"
        );
    }
    if !is_public(path) {
        let cache = header(headers, "cache-control").unwrap_or_default();
        let directives: Vec<&str> = cache.split(',').map(str::trim).collect();
        assert!(directives.contains(&"private"), "{what}: Cache-Control {cache:?}");
        assert!(!directives.contains(&"public"), "{what}: Cache-Control {cache:?}");
        // A browser keeps a key's answers apart from the next key's in the same profile.
        let vary: Vec<String> = headers
            .get_all("vary")
            .iter()
            .flat_map(|v| v.to_str().unwrap().split(',').map(|s| s.trim().to_lowercase()))
            .collect();
        assert!(vary.iter().any(|v| v == "authorization"), "{what}: Vary {vary:?}");
    }
}

/// The concrete URLs of a documented path: a real job's id (a sweep's for a sweep's routes),
/// each asset.
fn urls(path: &str, job: Uuid, sweep: Uuid) -> Vec<String> {
    if path.contains("{name}") {
        return ["app.js", "style.css", "rules.json"]
            .iter()
            .map(|name| path.replace("{name}", name))
            .collect();
    }
    let of_a_sweep = ["/cells/", "heatmap", "sweep.csv"].iter().any(|p| path.contains(p));
    let id = if of_a_sweep { sweep } else { job };
    vec![path.replace("{id}", &id.to_string()).replace("{chart}", "fan").replace("{index}", "0")]
}

/// The documented paths and the methods each serves (HEAD added wherever GET is).
async fn routes(app: &ApiClient) -> Vec<(String, Vec<String>)> {
    let doc: Value =
        app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "{paths:?}");
    paths
        .iter()
        .map(|(path, item)| {
            let mut methods: Vec<String> =
                item.as_object().unwrap().keys().map(|m| m.to_uppercase()).collect();
            if methods.iter().any(|m| m == "GET") {
                methods.push("HEAD".to_owned());
            }
            methods.sort();
            (path.clone(), methods)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_with_the_security_headers_head_where_get_and_allow_on_405() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let worker = env.spawn_worker().await;
    let job = app.submit_ok(&small_request()).await;
    assert_eq!(app.wait_terminal(job, Duration::from_secs(60)).await["status"], "succeeded");
    let mut sweep = small_request();
    sweep["sweep"] = serde_json::json!({"axes": [{"field": "years", "values": [20, 30]}]});
    let sweep = app.submit_ok(&sweep).await;
    assert_eq!(app.wait_terminal(sweep, Duration::from_secs(60)).await["status"], "succeeded");

    let mut gets = 0;
    for (path, methods) in routes(&app).await {
        for url in urls(&path, job, sweep) {
            if methods.iter().any(|m| m == "GET") {
                let get = app.client.get(app.url(&url)).send().await.unwrap();
                let (status, headers) = (get.status(), get.headers().clone());
                assert!(status.is_success(), "GET {url}: {status}");
                check(&format!("GET {url}"), &path, &headers);
                let head = app.client.head(app.url(&url)).send().await.unwrap();
                assert_eq!(head.status(), status, "HEAD {url}");
                assert_eq!(head.headers().get("content-type"), headers.get("content-type"));
                check(&format!("HEAD {url}"), &path, head.headers());
                assert!(head.bytes().await.unwrap().is_empty(), "HEAD {url} has a body");
                gets += 1;
            }
            for invented in ["FOO", "PATCH"] {
                let method = Method::from_bytes(invented.as_bytes()).unwrap();
                let response = app.client.request(method, app.url(&url)).send().await.unwrap();
                assert_eq!(response.status(), 405, "{invented} {url}");
                let allow = header(response.headers(), "allow").unwrap_or_default();
                let mut allowed: Vec<&str> = allow.split(", ").collect();
                allowed.sort_unstable();
                assert_eq!(allowed, methods, "{invented} {url}: Allow {allow:?}");
                check(&format!("{invented} {url}"), &path, response.headers());
            }
        }
    }
    assert!(gets >= 14, "only {gets} GET routes walked");

    // What the writing routes, and a path no route serves, answer carries them too.
    let submitted = app.submit(&small_request()).await;
    assert_eq!(submitted.status(), 202);
    check("POST /simulations", "/simulations", submitted.headers());
    let id: Value = submitted.json().await.unwrap();
    let cancel_path = format!("/simulations/{}", id["id"].as_str().unwrap());
    let cancelled = app.client.delete(app.url(&cancel_path)).send().await.unwrap();
    // 200 if still queued, 202 if the worker took it already (a push rings it at once), 409 if
    // the worker has finished it already (a small job takes milliseconds).
    assert!(matches!(cancelled.status().as_u16(), 200 | 202 | 409), "{}", cancelled.status());
    check("DELETE /simulations/{id}", &cancel_path, cancelled.headers());
    let refused = app.submit(&serde_json::json!({"years": 0})).await;
    assert_eq!(refused.status(), 422);
    check("a 422", "/simulations", refused.headers());
    let missing = app.client.get(app.url("/no/such/route")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    check("a 404", "/no/such/route", missing.headers());
    // A result is one tenant's: cached by its browser, never by a shared cache.
    let csv = app.client.get(app.url(&format!("/results/{job}/table.csv"))).send().await.unwrap();
    assert_eq!(header(csv.headers(), "cache-control"), Some("private, max-age=3600"));
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_request_id_is_kept_only_when_it_matches_the_safe_pattern() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let longest = "r".repeat(128);
    for kept in ["trace-me-42", "0193aa2e-2c4b-7c3e-9f1a-6d2b9c1e4f00", "svc:a.b_c", &longest] {
        let response =
            app.client.get(app.url("/health")).header("x-request-id", kept).send().await.unwrap();
        assert_eq!(header(response.headers(), "x-request-id"), Some(kept));
    }
    let too_long = "r".repeat(129);
    let replaced: Vec<HeaderValue> =
        ["a b", "id\" level=error msg=\"forged", "x=y", "{}", "<script>", "a/b", too_long.as_str()]
            .iter()
            .map(|v| HeaderValue::from_str(v).unwrap())
            .chain([HeaderValue::from_bytes("ü".as_bytes()).unwrap()])
            .collect();
    for value in &replaced {
        let response = app
            .client
            .get(app.url("/health"))
            .header("x-request-id", value.clone())
            .send()
            .await
            .unwrap();
        let echoed = header(response.headers(), "x-request-id").unwrap();
        assert!(Uuid::parse_str(echoed).is_ok(), "{value:?} was kept as {echoed:?}");
    }

    // What a job and its audit rows record is the id the API answered with.
    let forged = "x\" actor=\"admin";
    let response = app
        .client
        .post(app.url("/simulations"))
        .header("x-request-id", forged)
        .json(&small_request())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let echoed = header(response.headers(), "x-request-id").unwrap().to_owned();
    assert!(Uuid::parse_str(&echoed).is_ok(), "{echoed}");
    let id: Value = response.json().await.unwrap();
    let id: Uuid = id["id"].as_str().unwrap().parse().unwrap();
    #[derive(diesel::QueryableByName)]
    struct Recorded {
        #[diesel(sql_type = Text)]
        request_id: String,
    }
    let recorded: Vec<Recorded> = diesel::sql_query(
        "SELECT request_id FROM simulations WHERE id = $1
         UNION ALL SELECT request_id FROM audit_logs WHERE simulation_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .load(&mut env.db.connect())
    .unwrap();
    assert_eq!(recorded.len(), 2, "the job and its submitted audit row");
    for row in recorded {
        assert_eq!(row.request_id, echoed);
    }
    let cancelled = app.client.delete(app.url(&format!("/simulations/{id}"))).send().await;
    assert_eq!(cancelled.unwrap().status(), 200);
}

/// An idle connection outlives the idle timeout of the load balancer in front (the ALB's 75 s):
/// the balancer reuses it without finding it closed, which its client would see as a 502.
/// actix closes an idle connection after 5 s unless told otherwise; 6 s of idleness is enough
/// to tell the two apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_stays_open_past_a_few_seconds() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let host = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
    let request = format!("GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let mut answer = vec![0u8; 4096];
    for round in 0..2 {
        stream.write_all(request.as_bytes()).await.unwrap();
        let read = stream.read(&mut answer).await.unwrap();
        let head = String::from_utf8_lossy(&answer[..read]);
        assert!(head.starts_with("HTTP/1.1 200"), "round {round}: {head:?}");
        if round == 0 {
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
    }
}
