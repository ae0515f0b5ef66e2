//! The web frontend's server side: the pages and their assets, a result's charts and CSV,
//! CORS, and the OpenAPI entries of these routes. (The pages in a real browser:
//! `browser.rs`.)

use std::time::Duration;

use portfolio_tests::{TestEnv, problem, small_request};
use reqwest::header;
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_and_assets_are_served_from_the_binary_and_revalidate_by_etag() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    for (path, content_type, needle) in [
        ("/", "text/html", "id=\"sim-form\""),
        ("/dashboard", "text/html", "data-stat=\"queue.ready\""),
        ("/assets/app.js", "text/javascript", "function readForm"),
        ("/assets/common.js", "text/javascript", "function inlineSvg"),
        ("/assets/dashboard.js", "text/javascript", "/queue/stats"),
        ("/assets/style.css", "text/css", ":focus-visible"),
        ("/assets/rules.json", "application/json", "\"starting_portfolio\""),
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert!(
            headers[header::CONTENT_TYPE].to_str().unwrap().starts_with(content_type),
            "{path}: {:?}",
            headers[header::CONTENT_TYPE]
        );
        let body = response.text().await.unwrap();
        assert!(body.contains(needle), "{path} lacks {needle}");
        // Nothing is loaded from another origin.
        assert!(!body.contains("https://") && !body.contains("http://"), "{path} names a URL");
        let etag = headers[header::ETAG].to_str().unwrap().to_owned();
        let again = app
            .client
            .get(app.url(path))
            .header(header::IF_NONE_MATCH, &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path} revalidates");
    }

    let index = app.client.get(app.url("/")).send().await.unwrap();
    let csp = index.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
    // The page takes the model's limits and the historical assumptions from the rules document.
    let rules: Value =
        app.client.get(app.url("/assets/rules.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(rules["limits"]["max_years"], 100);
    assert_eq!(rules["limits"]["table_years"], 97);
    assert!(rules["assumptions"]["stocks"]["mean_return"].as_f64().unwrap() > 0.05);
    assert_eq!(rules["assumptions"]["correlation"][1][1], 1.0);

    let missing = app.client.get(app.url("/assets/nope.js")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()[header::CONTENT_TYPE], "application/problem+json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_results_charts_and_csv_exist_once_it_has_succeeded() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let mut request = small_request();
    request["years"] = 25.into();
    request["withdrawal"] = serde_json::json!({ "strategy": "percent_of_portfolio", "rate": 0.04 });
    let id = app.submit_ok(&request).await;
    let charts = ["fan", "depletion", "terminal", "spending"];

    // Queued: no result yet, so nothing to draw.
    let early = app.client.get(app.url(&format!("/results/{id}/charts/fan.svg"))).send().await;
    let early = early.unwrap();
    assert_eq!(early.status(), 409);
    let problem: Value = early.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("queued"), "{problem}");

    let _worker = env.spawn_worker().await;
    let job = app.wait_terminal(id, WITHIN).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    for chart in charts {
        let response =
            app.client.get(app.url(&format!("/results/{id}/charts/{chart}.svg"))).send().await;
        let response = response.unwrap();
        assert_eq!(response.status(), 200, "{chart}");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "image/svg+xml");
        let svg = response.text().await.unwrap();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{chart}");
        assert!(svg.contains(&format!("aria-labelledby=\"{chart}-title {chart}-desc\"")));
        assert!(svg.contains(&format!("<title id=\"{chart}-title\">")), "{chart}");
        let desc_start = svg.find(&format!("<desc id=\"{chart}-desc\">")).unwrap();
        let desc_end = svg[desc_start..].find("</desc>").unwrap();
        assert!(desc_end > 60, "{chart} describes itself in words");
        assert!(svg.trim_end().ends_with("</svg>"));
    }
    // The fan chart's description quotes the result's own median at the horizon.
    let fan = app.client.get(app.url(&format!("/results/{id}/charts/fan.svg"))).send().await;
    let fan = fan.unwrap().text().await.unwrap();
    let median_end = job["result"]["percentiles"]["p50"][25].as_f64().unwrap();
    assert!(
        fan.contains(&format!(
            "{} at the end of year 25",
            portfolio_api::draw::compact(median_end)
        )),
        "{fan}"
    );

    let csv = app.client.get(app.url(&format!("/results/{id}/table.csv"))).send().await.unwrap();
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/csv"));
    assert!(
        csv.headers()[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains(&format!("portfolio-mc-{id}.csv"))
    );
    let text = csv.text().await.unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 1 + 26, "a header and years 0..=25");
    assert_eq!(rows[0][0], "year");
    assert_eq!(rows[0].len(), 1 + 7 + 7 + 1 + 7);
    assert!(rows.iter().all(|r| r.len() == rows[0].len()));
    let median_col = rows[0].iter().position(|c| *c == "real_p50").unwrap();
    assert_eq!(rows[26][median_col].parse::<f64>().unwrap(), median_end);
    assert_eq!(rows[1][0], "0");
    assert_eq!(rows[1][rows[0].len() - 1], "", "no spending in year 0");
    assert!(rows[2][rows[0].len() - 1].parse::<f64>().unwrap() > 0.0);

    let unknown = uuid::Uuid::now_v7();
    for path in [
        format!("/results/{unknown}/charts/fan.svg"),
        format!("/results/{unknown}/table.csv"),
        "/results/not-a-job/charts/terminal.svg".to_owned(),
        format!("/results/{id}/charts/pie.svg"),
    ] {
        assert_eq!(app.client.get(app.url(&path)).send().await.unwrap().status(), 404, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_an_allowed_origin_and_no_other() {
    let mut env = TestEnv::new();
    env.set("CORS_ALLOWED_ORIGINS", "https://allowed.example, https://also.example");
    let app = env.spawn_app().await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/simulations"))
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization, content-type, prefer, idempotency-key, if-none-match",
            )
            .send()
    };
    let get = |origin: &'static str| {
        app.client.get(app.url("/health")).header(header::ORIGIN, origin).send()
    };
    let allow = |r: &reqwest::Response| {
        r.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).map(|v| v.to_str().unwrap().to_owned())
    };

    let ok = preflight("https://allowed.example").await.unwrap();
    assert!(ok.status().is_success(), "{}", ok.status());
    assert_eq!(allow(&ok).as_deref(), Some("https://allowed.example"));
    let methods = ok.headers()[header::ACCESS_CONTROL_ALLOW_METHODS].to_str().unwrap().to_owned();
    assert!(methods.contains("POST"), "{methods}");
    let ok = get("https://also.example").await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(allow(&ok).as_deref(), Some("https://also.example"));
    let exposed = ok.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS].to_str().unwrap();
    let exposed = exposed.to_lowercase();
    for name in ["retry-after", "location", "etag", "preference-applied", "idempotent-replayed"] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }

    let refused = preflight("https://evil.example").await.unwrap();
    assert_eq!(allow(&refused), None);
    // Refused by the CORS middleware, in a problem document as every other error.
    let refused = problem(refused, 400).await;
    assert!(refused["detail"].as_str().unwrap().contains("Origin"), "{refused}");
    let refused = get("https://evil.example").await.unwrap();
    assert_eq!(allow(&refused), None);

    // Without the setting the API is same-origin only: no CORS headers for anyone.
    let plain = TestEnv::new();
    let app = plain.spawn_app().await;
    let response =
        app.client.get(app.url("/health")).header(header::ORIGIN, "https://allowed.example");
    let response = response.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    // An `OPTIONS` without a key, preflight or not, learns nothing of the routes (no `Allow`).
    let anonymous = reqwest::Client::new();
    for path in ["/queue/stats", "/simulations", "/results/x/charts/fan.svg", "/nowhere"] {
        for preflight in [false, true] {
            let mut request = anonymous.request(reqwest::Method::OPTIONS, app.url(path));
            if preflight {
                request = request
                    .header(header::ORIGIN, "https://allowed.example")
                    .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET");
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{path}");
            assert!(response.headers().get(header::ALLOW).is_none(), "{path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_the_pages_charts_and_queue_stats() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let doc: Value =
        app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    for (path, statuses) in [
        ("/results/{id}/charts/{chart}.svg", vec!["200", "404", "409"]),
        ("/results/{id}/table.csv", vec!["200", "404", "409"]),
        ("/results/{id}/charts/heatmap.svg", vec!["200", "404", "409"]),
        ("/results/{id}/sweep.csv", vec!["200", "404", "409"]),
        ("/results/{id}/cells/{index}/charts/fan.svg", vec!["200", "404", "409"]),
        ("/queue/charts/depth.svg", vec!["200", "422"]),
        ("/queue/stats", vec!["200", "503"]),
        ("/", vec!["200"]),
        ("/dashboard", vec!["200"]),
        ("/assets/{name}", vec!["200", "404"]),
    ] {
        let op = &doc["paths"][path]["get"];
        assert!(op.is_object(), "GET {path} missing");
        for s in statuses {
            assert!(op["responses"][s].is_object(), "GET {path} lacks {s}");
        }
    }
    // Every keyed route may answer 503: its key is looked up in Postgres.
    let public = ["/", "/dashboard", "/assets/{name}", "/health", "/ready"];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if public.contains(&path.as_str()) || !op.is_object() || op.get("responses").is_none() {
                continue;
            }
            assert!(op["responses"]["503"].is_object(), "{method} {path} lacks 503");
        }
    }
    // Every 503 sends Retry-After, and a submit's 200 is the job's document, so names it.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let unavailable = &op["responses"]["503"];
            if unavailable.is_object() {
                let headers = &unavailable["headers"];
                assert!(headers["Retry-After"].is_object(), "{method} {path}: 503 {headers}");
            }
        }
    }
    for path in ["/simulations", "/run_simulation"] {
        let headers = &doc["paths"][path]["post"]["responses"]["200"]["headers"];
        assert!(headers["Content-Location"].is_object(), "POST {path}: 200 {headers}");
        for status in ["200", "202"] {
            let headers = &doc["paths"][path]["post"]["responses"][status]["headers"];
            assert!(headers["Idempotent-Replayed"].is_object(), "POST {path}: {status} {headers}");
        }
    }
    // A keyed answer carries the tenant's rate limit, whatever its status.
    let headers = &doc["paths"]["/results/{id}"]["get"]["responses"]["200"]["headers"];
    for name in ["RateLimit", "RateLimit-Policy"] {
        assert!(headers[name].is_object(), "GET /results/{{id}}: 200 {headers}");
    }
    let svg =
        &doc["paths"]["/results/{id}/charts/{chart}.svg"]["get"]["responses"]["200"]["content"];
    assert!(svg["image/svg+xml"].is_object(), "{svg}");
    assert!(doc["components"]["schemas"]["QueueStats"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_document_and_the_openapi_schema_carry_this_deployments_cap() {
    let mut env = TestEnv::new();
    env.set("MAX_SCENARIOS", 5000);
    let app = env.spawn_app().await;
    let mut over = small_request();
    over["n_scenarios"] = 5001.into();
    let response = app.submit(&over).await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    let said = &problem["errors"][0];
    assert_eq!(said["field"], "n_scenarios");

    let rules: Value =
        app.client.get(app.url("/assets/rules.json")).send().await.unwrap().json().await.unwrap();
    let n = &rules["fields"]["n_scenarios"];
    assert_eq!(n["maximum"], 5000);
    assert_eq!(n["default"], 5000);
    assert_eq!(n["message"], said["message"], "the page says what the API says");
    assert_eq!(rules["limits"]["max_scenarios"], 5000);

    let doc: Value =
        app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let schema = &doc["components"]["schemas"]["SimulationRequestInput"];
    assert_eq!(schema["properties"]["n_scenarios"]["maximum"], 5000);
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(
        schema["required"],
        serde_json::json!(["starting_portfolio", "monthly_spending", "years"])
    );
    let body = &doc["paths"]["/simulations"]["post"]["requestBody"]["content"]["application/json"];
    assert_eq!(body["schema"]["$ref"], "#/components/schemas/SimulationRequestInput");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explorers_downloads_are_404_for_no_job_and_409_for_a_job_that_is_not_a_sweep() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;
    let plain = app.submit_ok(&small_request()).await;
    assert_eq!(app.wait_terminal(plain, Duration::from_secs(60)).await["status"], "succeeded");
    let unknown = uuid::Uuid::now_v7();
    for (path, status) in [
        (format!("/results/{unknown}/charts/heatmap.svg"), 404),
        (format!("/results/{unknown}/sweep.csv"), 404),
        (format!("/results/{unknown}/cells/0/charts/fan.svg"), 404),
        (format!("/results/{plain}/cells/first/charts/fan.svg"), 404),
        // Not taken for a result chart named "heatmap" (which would be a 404).
        (format!("/results/{plain}/charts/heatmap.svg"), 409),
        (format!("/results/{plain}/sweep.csv"), 409),
    ] {
        let response = app.client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        let kind = response.headers()[header::CONTENT_TYPE].to_str().unwrap().to_owned();
        assert_eq!(kind, "application/problem+json", "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweeps_map_and_csv_are_served_while_it_fills_and_cached_once_it_has_succeeded() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let mut sweep = small_request();
    sweep["sweep"] = serde_json::json!({"axes": [
        {"field": "monthly_spending", "values": [3000, 4000]},
        {"field": "allocation.stocks", "values": [0.4, 0.6, 0.8]}]});
    let id = app.submit_ok(&sweep).await;
    let get = |path: String| {
        let client = app.client.clone();
        let url = app.url(&path);
        async move { client.get(url).send().await.unwrap() }
    };
    let cache =
        |r: &reqwest::Response| r.headers()[header::CACHE_CONTROL].to_str().unwrap().to_owned();

    // No worker yet: the map is all blank, the CSV a header, and no cell has a chart.
    let map = get(format!("/results/{id}/charts/heatmap.svg")).await;
    assert_eq!(map.status(), 200);
    assert_eq!(map.headers()[header::CONTENT_TYPE], "image/svg+xml");
    assert_eq!(cache(&map), "private, no-store");
    let svg = map.text().await.unwrap();
    assert_eq!(svg.matches("class=\"cell\"").count(), 6, "{svg}");
    assert_eq!(svg.matches("data-done=\"false\"").count(), 6);
    let csv = get(format!("/results/{id}/sweep.csv")).await;
    assert_eq!(cache(&csv), "private, no-store");
    assert_eq!(csv.text().await.unwrap().lines().count(), 1, "a header only");
    let fan = get(format!("/results/{id}/cells/0/charts/fan.svg")).await;
    assert_eq!(fan.status(), 409);
    assert_eq!(get(format!("/results/{id}/cells/6/charts/fan.svg")).await.status(), 404);

    let _worker = env.spawn_worker().await;
    assert_eq!(app.wait_terminal(id, Duration::from_secs(60)).await["status"], "succeeded");
    let map = get(format!("/results/{id}/charts/heatmap.svg")).await;
    assert_eq!(cache(&map), "private, max-age=3600");
    let svg = map.text().await.unwrap();
    assert_eq!(svg.matches("data-done=\"true\"").count(), 6);
    let csv = get(format!("/results/{id}/sweep.csv")).await;
    assert!(csv.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 1 + 6, "{text}");
    assert!(rows[0].starts_with("index,monthly_spending,allocation.stocks,success_probability"));
    assert!(rows[6].starts_with("5,4000,0.8,"), "{text}");
    let fan = get(format!("/results/{id}/cells/5/charts/fan.svg")).await;
    assert_eq!(fan.status(), 200);
    assert!(fan.text().await.unwrap().contains("Real wealth by year"));
}
