//! The pages in a real browser (headless Chromium over WebDriver, see
//! `portfolio_tests::browser`): a person fills the form and gets the API's result, sees the
//! API's own message next to a field it refuses, and the dashboard shows the figures of
//! `/queue/stats`. Screenshots land in `test-artifacts/`.

use std::time::Duration;

use portfolio_tests::browser::Browser;
use portfolio_tests::processes::count;
use portfolio_tests::{TestApp, TestEnv, eventually, small_request};
use serde_json::{Value, json};
use uuid::Uuid;

const WITHIN: Duration = Duration::from_secs(60);

/// The leading number of a shown figure ("87.3 %" → 87.3, "1.25 s" → 1.25).
fn leading_number(text: &str) -> Option<f64> {
    let end =
        text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-')).unwrap_or(text.len());
    text[..end].parse().ok()
}

/// Half a unit of the last digit shown: how far a correctly rounded figure may be off.
fn rounding(text: &str) -> f64 {
    let number = &text[..text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(text.len())];
    let decimals = number.split_once('.').map_or(0, |(_, d)| d.len());
    0.5 * 10f64.powi(-(decimals as i32)) + 1e-9
}

/// A browser on the page of job `id`, the page keeping `key` as its API key.
async fn browser_on_job(app: &TestApp, key: &str, id: Uuid) -> Browser {
    let browser = Browser::start(1280, 1800).await;
    browser.client.goto(&app.url("/")).await.unwrap();
    browser.use_key(key).await;
    browser.client.goto(&app.url(&format!("/?job={id}"))).await.unwrap();
    browser
}

async fn text_of(browser: &Browser, css: &str) -> String {
    browser.find(css).await.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_fills_the_form_and_sees_the_success_probability_the_api_computed() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;
    let browser = Browser::start(1280, 1800).await;
    browser.client.goto(&app.url("/")).await.unwrap();
    browser.wait_for("#f-starting_portfolio", Duration::from_secs(10)).await;

    let unlabelled = browser
        .eval(
            "return Array.from(document.querySelectorAll('input, select'))\
             .filter(e => !e.labels || e.labels.length === 0).map(e => e.id)",
            vec![],
        )
        .await;
    assert_eq!(unlabelled, json!([]), "every control has a label");

    browser.click("[data-preset='rule4']").await;
    browser.type_into("#f-years", "25").await;
    browser.type_into("#f-n_scenarios", "2000").await;
    browser.type_into("#f-seed", "42").await;
    browser.click("#submit").await;
    // The API answers 401: the page asks for the key, keeps it in this tab, and goes on.
    let reason = browser.wait_for("#api-key-reason", Duration::from_secs(10)).await;
    assert!(reason.text().await.unwrap().contains("needs an API key"));
    browser.screenshot("frontend-key-prompt").await;
    // Escape does not dismiss it: the submit would wait on it for ever. Chromium closes a
    // modal dialog on a second Escape whatever the page says; the page opens it again.
    for _ in 0..2 {
        browser.find("#api-key").await.send_keys("\u{E00C}").await.unwrap();
    }
    eventually(Duration::from_secs(5), || async {
        let open = browser.eval("return document.getElementById('api-key-dialog')?.open", vec![]);
        (open.await == json!(true)).then_some(())
    })
    .await;
    browser.answer_key_prompt(env.api_key(), Duration::from_secs(5)).await;
    browser.wait_for("#chart-fan svg", WITHIN).await;
    let kept = browser.eval("return sessionStorage.getItem('portfolio-mc.api-key')", vec![]).await;
    assert_eq!(kept, json!(env.api_key()), "kept in sessionStorage");
    let cookies = browser.eval("return document.cookie", vec![]).await;
    assert_eq!(cookies, json!(""), "never in a cookie");

    let url = browser.client.current_url().await.unwrap();
    assert!(!url.as_str().contains(env.api_key()), "never in the address: {url}");
    let id: uuid::Uuid = url
        .query_pairs()
        .find(|(k, _)| k == "job")
        .map(|(_, v)| v.parse().unwrap())
        .expect("the job id is in the address");
    let job = app.job(id).await;
    assert_eq!(job["status"], "succeeded");
    // Sent with an Idempotency-Key: a submit again after a 503 of unknown outcome is answered
    // with this job rather than running a second.
    let sql = format!(
        "SELECT count(*) AS n FROM simulations WHERE id = '{id}' AND idempotency_key IS NOT NULL"
    );
    assert_eq!(count(&mut env.db.connect(), &sql), 1, "no Idempotency-Key was sent");
    assert_eq!(job["request"]["years"], 25);
    assert_eq!(job["request"]["n_scenarios"], 2000);
    assert_eq!(job["request"]["monthly_spending"], 3333.33);
    assert_eq!(job["seed"], 42);
    let expected = job["result"]["success_probability"].as_f64().unwrap();

    let success = browser.find("#success").await;
    let value: f64 = success.attr("data-value").await.unwrap().unwrap().parse().unwrap();
    assert_eq!(value, expected);
    let shown = success.text().await.unwrap();
    assert!(shown.ends_with(" %"), "{shown}");
    let percent = leading_number(&shown).unwrap();
    assert!((percent - expected * 100.0).abs() <= rounding(&shown), "{shown} vs {expected}");
    assert!(text_of(&browser, "#success-stderr").await.contains("Standard error"));

    for chart in ["depletion", "terminal"] {
        browser.wait_for(&format!("#chart-{chart} svg"), Duration::from_secs(20)).await;
    }
    let title = browser.find("#chart-fan svg title").await.prop("textContent").await.unwrap();
    assert_eq!(title.as_deref(), Some("Real wealth by year (today's money)"));
    let csv = browser.find("#download-csv").await.attr("href").await.unwrap().unwrap();
    assert_eq!(csv, format!("/results/{id}/table.csv"));
    browser.screenshot("frontend-result").await;

    // At a phone's width nothing spills sideways.
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.eval("document.getElementById('outcome').scrollIntoView()", vec![]).await;
    let overflow = browser
        .eval(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await;
    assert!(overflow.as_f64().unwrap() <= 0.0, "the page is {overflow} px too wide");
    browser.screenshot("frontend-result-phone").await;

    // A reload (or the shared link) picks the job up again, form and result.
    browser.client.set_window_size(1280, 1800).await.unwrap();
    browser.client.refresh().await.unwrap();
    browser.wait_for("#chart-fan svg", WITHIN).await;
    let again = browser.find("#success").await.attr("data-value").await.unwrap().unwrap();
    assert_eq!(again.parse::<f64>().unwrap(), expected);
    let years = browser.find("#f-years").await.prop("value").await.unwrap();
    assert_eq!(years.as_deref(), Some("25"));
    browser.close().await;
}

/// What the API answers to `body`: its message for `field`.
async fn api_message(app: &TestApp, body: &Value, field: &str) -> String {
    let response = app.submit(body).await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    let errors = problem["errors"].as_array().unwrap();
    let error = errors.iter().find(|e| e["field"] == field).unwrap_or_else(|| panic!("{problem}"));
    error["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_the_api_refuses_shows_the_apis_own_message_next_to_it() {
    let mut env = TestEnv::new();
    // The page takes this deployment's cap, like every rule, from the API's rules document.
    env.set("MAX_SCENARIOS", 5000);
    let app = env.spawn_app().await;
    let mut over_cap = small_request();
    over_cap["n_scenarios"] = 10_000.into();
    let cap_message = api_message(&app, &over_cap, "n_scenarios").await;
    let mut off_sum = small_request();
    off_sum["allocation"] = json!({ "stocks": 0.7, "bonds": 0.4, "cash": 0 });
    let sum_message = api_message(&app, &off_sum, "allocation").await;
    let mut bad_seed = small_request();
    bad_seed["seed"] = (-1).into();
    let seed_message = api_message(&app, &bad_seed, "seed").await;

    let browser = Browser::start(1280, 1800).await;
    browser.client.goto(&app.url("/")).await.unwrap();
    browser.wait_for("#f-allocation-stocks", Duration::from_secs(10)).await;
    browser.use_key(env.api_key()).await;

    // Checked in the page first, in the API's words, and nothing is sent.
    browser.type_into("#f-allocation-stocks", "0.7").await;
    browser.click("#submit").await;
    let shown = eventually(Duration::from_secs(10), || async {
        Some(text_of(&browser, "#e-allocation").await).filter(|t| !t.is_empty())
    })
    .await;
    assert_eq!(shown, sum_message);
    assert!(text_of(&browser, "#error-summary").await.contains(&sum_message));
    // The group's message belongs to each of its controls, for a screen reader in any of them.
    let stocks = browser.find("#f-allocation-stocks").await;
    assert_eq!(stocks.attr("aria-invalid").await.unwrap().as_deref(), Some("true"));
    let described = stocks.attr("aria-describedby").await.unwrap().unwrap_or_default();
    assert!(described.split(' ').any(|id| id == "e-allocation"), "{described}");
    // The summary's link to a group's error (not a field's) takes the reader there.
    browser.click("#error-summary a[href='#e-allocation']").await;
    let focused = browser.eval("return document.activeElement.id", vec![]).await;
    assert_eq!(focused, json!("e-allocation"));

    // This deployment's cap is checked in the page too, in the API's words.
    browser.type_into("#f-allocation-stocks", "0.6").await;
    browser.type_into("#f-n_scenarios", "10000").await;
    browser.click("#submit").await;
    let shown = eventually(Duration::from_secs(10), || async {
        Some(text_of(&browser, "#e-n_scenarios").await).filter(|t| !t.is_empty())
    })
    .await;
    assert_eq!(shown, cap_message);
    assert_eq!(text_of(&browser, "#e-allocation").await, "", "the fixed field is clear");
    let stocks = browser.find("#f-allocation-stocks").await;
    assert_eq!(stocks.attr("aria-invalid").await.unwrap(), None);
    let described = stocks.attr("aria-describedby").await.unwrap().unwrap_or_default();
    assert!(!described.split(' ').any(|id| id == "e-allocation"), "{described}");
    let invalid = browser.find("#f-n_scenarios").await.attr("aria-invalid").await.unwrap();
    assert_eq!(invalid.as_deref(), Some("true"));

    // What the page leaves to the API (a seed that is a number but no whole one in range) is
    // refused by the API, as the number it is, and its message lands next to its field.
    browser.type_into("#f-n_scenarios", "2000").await;
    browser.type_into("#f-seed", "-1").await;
    browser.click("#submit").await;
    let shown = eventually(Duration::from_secs(10), || async {
        Some(text_of(&browser, "#e-seed").await).filter(|t| !t.is_empty())
    })
    .await;
    assert_eq!(shown, seed_message);
    assert!(!shown.contains("string"), "the user typed a number: {shown}");
    assert_eq!(text_of(&browser, "#e-n_scenarios").await, "", "the fixed field is clear");
    let invalid = browser.find("#f-seed").await.attr("aria-invalid").await.unwrap();
    assert_eq!(invalid.as_deref(), Some("true"));
    // A seed that is no number at all is the page's to refuse, in the rule's words.
    browser.type_into("#f-seed", "abc").await;
    browser.eval("document.getElementById('e-seed').textContent = ''", vec![]).await;
    browser.click("#submit").await;
    let shown = eventually(Duration::from_secs(10), || async {
        Some(text_of(&browser, "#e-seed").await).filter(|t| !t.is_empty())
    })
    .await;
    assert_eq!(shown, seed_message);
    let url = browser.client.current_url().await.unwrap();
    assert!(url.query().is_none(), "no job was created: {url}");
    browser.screenshot("frontend-validation").await;
    browser.close().await;

    let list: Value =
        app.client.get(app.url("/results")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "nothing was recorded");
}

/// Whether every figure on the dashboard is `stats`' figure, as rounded for display.
fn dashboard_matches(shown: &Value, stats: &Value) -> Result<(), String> {
    let shown = shown.as_object().ok_or("no figures")?;
    if shown.len() < 20 {
        return Err(format!("only {} figures", shown.len()));
    }
    for (path, text) in shown {
        let text = text.as_str().unwrap_or_default().trim();
        let value = path.split('.').try_fold(stats, |node, part| match part.parse::<usize>() {
            Ok(i) => node.get(i),
            Err(_) => node.get(part),
        });
        let value = value.ok_or_else(|| format!("{path} is not in /queue/stats"))?;
        let ok = match value.as_f64() {
            None if value.is_null() => text == "–" || text == "none waiting",
            None => false,
            // The page is up to one refresh (5 s) behind a clock that keeps running.
            Some(age) if path == "queue.oldest_ready_age_seconds" => {
                leading_number(text).is_some_and(|x| (x - age).abs() <= 6.0)
            }
            Some(v) => {
                let v = if path.ends_with("error_rate.rate") { v * 100.0 } else { v };
                leading_number(text).is_some_and(|x| (x - v).abs() <= rounding(text))
            }
        };
        if !ok {
            return Err(format!("{path}: shown {text:?}, /queue/stats says {value}"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_figures_of_queue_stats_and_keeps_them_fresh() {
    let env = TestEnv::new();
    env.leaves_unfinished_jobs("jobs are left waiting so that the dashboard shows a ready depth");
    let app = env.spawn_app().await;
    let worker = env.spawn_worker().await;
    for _ in 0..2 {
        let id = app.submit_ok(&small_request()).await;
        assert_eq!(app.wait_terminal(id, WITHIN).await["status"], "succeeded");
    }
    worker.stop().await.unwrap();
    let failed = uuid::Uuid::now_v7();
    {
        use diesel::RunQueryDsl;
        diesel::sql_query(
            "INSERT INTO simulations (id, status, request, seed, attempts, error, finished_at, owner) \
             VALUES ($1, 'failed', '{}', 1, 3, 'the engine ran out of memory', now(), 'bootstrap')",
        )
        .bind::<diesel::sql_types::Uuid, _>(failed)
        .execute(&mut env.db.connect())
        .unwrap();
    }
    for _ in 0..2 {
        app.submit_ok(&small_request()).await;
    }

    let browser = Browser::start(1280, 2200).await;
    browser.client.goto(&app.url("/dashboard")).await.unwrap();
    // A key without the operator scope is refused, and the page asks for another, keeping the
    // one it has (good for the planner, where a link leads back).
    let tenant_key = env.key("tenant", &["simulate"]);
    browser.answer_key_prompt(&tenant_key, Duration::from_secs(10)).await;
    let reason = eventually(Duration::from_secs(10), || async {
        let shown = browser.eval(
            "const r = document.getElementById('api-key-reason'); return r ? r.textContent : ''",
            vec![],
        );
        Some(shown.await.as_str()?.to_owned()).filter(|t| t.contains("operator"))
    })
    .await;
    assert!(reason.contains("operator scope"), "{reason}");
    let (kept, back) = (
        browser.eval("return sessionStorage.getItem('portfolio-mc.api-key')", vec![]).await,
        browser.eval("const a = document.getElementById('api-key-back'); return a && a.getAttribute('href')", vec![]).await,
    );
    assert_eq!(kept, json!(tenant_key), "the planner's key was dropped");
    assert_eq!(back, json!("/"));
    browser.answer_key_prompt(env.api_key(), Duration::from_secs(5)).await;
    browser.wait_for("#depth-chart svg", Duration::from_secs(20)).await;
    let read_figures = "return Object.fromEntries(Array.from(document.querySelectorAll('[data-stat]'))\
                        .map(e => [e.dataset.stat, e.textContent]))";
    let stats = eventually(Duration::from_secs(30), || async {
        let shown = browser.eval(read_figures, vec![]).await;
        let stats: Value =
            app.client.get(app.url("/queue/stats")).send().await.ok()?.json().await.ok()?;
        match dashboard_matches(&shown, &stats) {
            Ok(()) => Some(stats),
            Err(why) => {
                eprintln!("dashboard not matching yet: {why}");
                None
            }
        }
    })
    .await;
    assert_eq!(stats["queue"]["ready"], 2);
    assert_eq!(stats["jobs"]["throughput"][2]["finished"], 3);

    let failures = browser
        .eval("return Array.from(document.querySelectorAll('#failures tr[data-job]')).map(r => r.dataset.job)", vec![])
        .await;
    assert_eq!(failures, json!([failed.to_string()]));
    assert!(text_of(&browser, "#failures").await.contains("the engine ran out of memory"));
    let workers = browser
        .eval("return Array.from(document.querySelectorAll('#workers tr[data-worker]')).map(r => r.dataset.worker)", vec![])
        .await;
    let listed: Vec<Value> =
        stats["queue"]["workers"].as_array().unwrap().iter().map(|w| w["name"].clone()).collect();
    assert_eq!(workers, Value::Array(listed));
    let depth_title = browser.find("#depth-chart svg title").await.prop("textContent").await;
    assert_eq!(depth_title.unwrap().as_deref(), Some("Queue depth over the last 60 minutes"));
    browser.screenshot("dashboard").await;

    // It refreshes by itself: the figures' timestamp moves within a refresh interval or two.
    let generated = |b: &Browser| {
        let b = b.client.clone();
        async move { b.execute("return document.body.dataset.generatedAt", vec![]).await.unwrap() }
    };
    let first = generated(&browser).await;
    eventually(Duration::from_secs(12), || async {
        (generated(&browser).await != first).then_some(())
    })
    .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_explores_a_grid_of_plans_watches_the_map_fill_and_opens_one_plan() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;
    let browser = Browser::start(1280, 2000).await;
    browser.client.goto(&app.url("/")).await.unwrap();
    browser.wait_for("#f-starting_portfolio", Duration::from_secs(10)).await;
    browser.use_key(env.api_key()).await;

    browser.click("#mode-explore").await;
    browser.wait_for("#explore:not([hidden])", Duration::from_secs(5)).await;
    let value_of = |css: &'static str| {
        let browser = &browser;
        async move { browser.find(css).await.prop("value").await.unwrap().unwrap_or_default() }
    };
    // The ranges start around the plan: spending ±25 % and stocks 0–100 %.
    assert_eq!(value_of("#f-sweep-axes-0-from").await, "3000");
    assert_eq!(value_of("#f-sweep-axes-1-to").await, "1");
    // A range nobody edited follows the plan: its value, a preset, the cash stocks leave room
    // for (bonds take the rest).
    browser.type_into("#f-monthly_spending", "6000").await;
    browser.click("#f-sweep-axes-1-steps").await;
    assert_eq!(value_of("#f-sweep-axes-0-from").await, "4500");
    browser.click("[data-preset='conservative']").await;
    assert_eq!(value_of("#f-sweep-axes-0-from").await, "2250");
    browser.type_into("#f-allocation-cash", "0.2").await;
    browser.type_into("#f-allocation-bonds", "0.4").await;
    browser.click("#f-sweep-axes-1-steps").await;
    assert_eq!(value_of("#f-sweep-axes-1-to").await, "0.8");
    browser.type_into("#f-allocation-cash", "0.02").await;
    browser.type_into("#f-allocation-bonds", "0.38").await;
    browser.click("#f-sweep-axes-1-steps").await;
    assert_eq!(value_of("#f-sweep-axes-1-to").await, "0.95", "down to a step, not up to 1");
    browser.type_into("#f-allocation-cash", "0").await;
    browser.type_into("#f-allocation-bonds", "0.6").await;
    // The plan's solver, hidden in Explore, is not read there, valid or not.
    browser.click("#mode-plan").await;
    browser.click("#f-solve-enabled").await;
    browser.type_into("#f-solve-target_success", "1.5").await;
    browser.click("#mode-explore").await;
    browser.type_into("#f-n_scenarios", "1000").await;
    browser.type_into("#f-seed", "7").await;
    browser.type_into("#f-monthly_spending", "4000").await;
    for (css, text) in [
        ("#f-sweep-axes-0-from", "3000"),
        ("#f-sweep-axes-0-to", "5000"),
        ("#f-sweep-axes-0-steps", "3"),
        ("#f-sweep-axes-1-from", "0.2"),
        ("#f-sweep-axes-1-to", "1"),
        ("#f-sweep-axes-1-steps", "3"),
    ] {
        browser.type_into(css, text).await;
    }
    assert!(text_of(&browser, "#sweep-size").await.contains("3 × 3 = 9 plans"));

    // A broken range is caught in the page; a value the API refuses is named on its axis.
    browser.type_into("#f-sweep-axes-0-steps", "1").await;
    browser.click("#submit").await;
    let shown = eventually(Duration::from_secs(10), || async {
        Some(text_of(&browser, "#e-sweep-axes-0-steps").await).filter(|t| !t.is_empty())
    })
    .await;
    assert_eq!(shown, "must be a whole number from 2");
    browser.type_into("#f-sweep-axes-0-steps", "3").await;
    browser.type_into("#f-sweep-axes-0-from", "-1000").await;
    browser.click("#submit").await;
    let shown = eventually(Duration::from_secs(10), || async {
        Some(text_of(&browser, "#e-sweep-axes-0").await).filter(|t| !t.is_empty())
    })
    .await;
    assert!(shown.contains("holds -1000, but monthly_spending must be"), "{shown}");
    assert_eq!(text_of(&browser, "#e-sweep-axes-0-steps").await, "", "the fixed field is clear");
    let url = browser.client.current_url().await.unwrap();
    assert!(url.query().is_none(), "no job was created: {url}");
    browser.type_into("#f-sweep-axes-0-from", "3000").await;
    browser.click("#submit").await;

    browser.wait_for("#chart-heatmap svg", WITHIN).await;
    let done =
        "return document.querySelectorAll('#chart-heatmap rect.cell[data-done=\"true\"]').length";
    eventually(WITHIN, || async { (browser.eval(done, vec![]).await == json!(9)).then_some(()) })
        .await;
    let cells = browser
        .eval("return document.querySelectorAll('#chart-heatmap rect.cell').length", vec![])
        .await;
    assert_eq!(cells, json!(9));
    let title = browser.find("#chart-heatmap svg title").await.prop("textContent").await.unwrap();
    assert_eq!(title.as_deref(), Some("Success probability by monthly spending and stocks"));

    let url = browser.client.current_url().await.unwrap();
    let id: uuid::Uuid = url
        .query_pairs()
        .find(|(k, _)| k == "job")
        .map(|(_, v)| v.parse().unwrap())
        .expect("the job id is in the address");
    let job = app.wait_terminal(id, WITHIN).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["sweep"]["cells_done"], 9);
    assert_eq!(job["sweep"]["axes"][0]["field"], "monthly_spending");

    browser.click("#chart-heatmap rect.cell[data-index='4']").await;
    browser.wait_for("#chart-cell-fan svg", Duration::from_secs(20)).await;
    assert!(text_of(&browser, "#cell-heading").await.starts_with("Plan 5 of 9"));
    let fan = browser.find("#chart-cell-fan svg title").await.prop("textContent").await.unwrap();
    assert_eq!(fan.as_deref(), Some("Real wealth by year (today's money)"));
    let cell = job["sweep"]["cells"].as_array().unwrap().iter().find(|c| c["index"] == 4).cloned();
    let success = cell.expect("cell 4")["success_probability"].as_f64().unwrap();
    let shown = text_of(&browser, "#cell-summary").await;
    assert!(shown.contains(&format!("{:.1} %", success * 100.0)), "{shown} vs {success}");

    let csv = browser.find("#download-sweep-csv").await.attr("href").await.unwrap().unwrap();
    assert_eq!(csv, format!("/results/{id}/sweep.csv"));
    let response = app.client.get(app.url(&csv)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.starts_with("index,monthly_spending,allocation.stocks,success_probability"));
    assert_eq!(text.lines().count(), 1 + 9, "{text}");
    // The table view reaches every plan without the chart.
    browser.click("#sweep-table summary").await;
    let buttons = "return document.querySelectorAll('#sweep-table button[data-index]').length";
    assert_eq!(browser.eval(buttons, vec![]).await, json!(9));
    browser.click("#sweep-table button[data-index='0']").await;
    eventually(Duration::from_secs(10), || async {
        text_of(&browser, "#cell-heading").await.starts_with("Plan 1 of 9").then_some(())
    })
    .await;
    browser.screenshot("frontend-explore").await;

    // At a phone's width nothing spills sideways, the map included.
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.eval("document.getElementById('chart-heatmap').scrollIntoView()", vec![]).await;
    let overflow = browser
        .eval(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await;
    assert!(overflow.as_f64().unwrap() <= 0.0, "the page is {overflow} px too wide");
    browser.screenshot("frontend-explore-phone").await;
    browser.client.set_window_size(1280, 2000).await.unwrap();

    // A reload (or the shared link) picks the sweep up again, in Explore mode with its fields.
    browser.client.refresh().await.unwrap();
    browser.wait_for("#chart-heatmap svg", WITHIN).await;
    eventually(WITHIN, || async { (browser.eval(done, vec![]).await == json!(9)).then_some(()) })
        .await;
    let mode = browser.find("#mode-explore").await.prop("checked").await.unwrap();
    assert_eq!(mode.as_deref(), Some("true"));
    let steps = browser.find("#f-sweep-axes-1-steps").await.prop("value").await.unwrap();
    assert_eq!(steps.as_deref(), Some("3"));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_finds_the_safe_spending_for_each_stock_allocation() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;
    let browser = Browser::start(1280, 2000).await;
    browser.client.goto(&app.url("/")).await.unwrap();
    browser.wait_for("#f-starting_portfolio", Duration::from_secs(10)).await;
    browser.use_key(env.api_key()).await;

    browser.type_into("#f-n_scenarios", "1000").await;
    browser.type_into("#f-seed", "11").await;
    browser.click("#mode-explore").await;
    browser.wait_for("#explore:not([hidden])", Duration::from_secs(5)).await;
    browser
        .eval(
            "const s = document.getElementById('f-sweep-axes-0-field'); s.value = 'allocation.stocks'; \
             s.dispatchEvent(new Event('change', { bubbles: true })); \
             const t = document.getElementById('f-sweep-axes-1-field'); t.value = ''; \
             t.dispatchEvent(new Event('change', { bubbles: true }));",
            vec![],
        )
        .await;
    let hidden = browser.find("#axis-1 .axis-range").await.attr("hidden").await.unwrap();
    assert!(hidden.is_some(), "one field: the second has no range");
    browser.type_into("#f-sweep-axes-0-steps", "3").await;
    browser.click("#f-sweep-solve").await;
    browser.wait_for("#sweep-target-row:not([hidden])", Duration::from_secs(5)).await;
    browser.click("#submit").await;

    let done =
        "return document.querySelectorAll('#chart-heatmap rect.cell[data-done=\"true\"]').length";
    eventually(WITHIN, || async { (browser.eval(done, vec![]).await == json!(3)).then_some(()) })
        .await;
    let title = browser.find("#chart-heatmap svg title").await.prop("textContent").await.unwrap();
    assert_eq!(title.as_deref(), Some("Safe monthly spending at 90.0 % success by stocks"));
    let url = browser.client.current_url().await.unwrap();
    let id: uuid::Uuid = url
        .query_pairs()
        .find(|(k, _)| k == "job")
        .map(|(_, v)| v.parse().unwrap())
        .expect("the job id is in the address");
    let job = app.wait_terminal(id, WITHIN).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["sweep"]["solve"]["target_success"], 0.9);
    assert_eq!(job["sweep"]["axes"][0]["values"], json!([0.0, 0.5, 1.0]));

    browser.click("#chart-heatmap rect.cell[data-index='2']").await;
    browser.wait_for("#chart-cell-fan svg", Duration::from_secs(20)).await;
    assert!(text_of(&browser, "#cell-heading").await.contains("100 % stocks"));
    assert!(text_of(&browser, "#cell-summary").await.contains("Safe monthly spending"));
    browser.screenshot("frontend-explore-solve").await;

    // The plan itself run after: its fan chart is on the page beside the plan's of the sweep,
    // and each is labelled by its own title and description.
    browser.click("#mode-plan").await;
    browser.click("#submit").await;
    browser.wait_for("#chart-fan svg", WITHIN).await;
    let labels = browser
        .eval(
            "const ids = [...document.querySelectorAll('[id]')].map((e) => e.id); \
             const twice = ids.filter((id, i) => ids.indexOf(id) !== i); \
             const own = (css) => { const svg = document.querySelector(css); \
               return svg.getAttribute('aria-labelledby').split(' ') \
                 .every((id) => svg.contains(document.getElementById(id))); }; \
             return [twice, own('#chart-fan svg'), own('#chart-cell-fan svg')];",
            vec![],
        )
        .await;
    assert_eq!(labels, json!([[], true, true]), "ids used twice; each chart labelled by its own");
    browser.close().await;
}

/// A job no worker takes stays queued with nothing lost; after a while the page says why it
/// may be waiting, and once a worker starts the job runs and its result shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_no_worker_takes_is_explained_after_a_while_and_runs_once_one_starts() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let id = app.submit_ok(&small_request()).await;
    let browser = browser_on_job(&app, env.api_key(), id).await;
    eventually(Duration::from_secs(10), || async {
        text_of(&browser, "#job-status").await.starts_with("Queued").then_some(())
    })
    .await;
    assert!(!text_of(&browser, "#job-status").await.contains("No worker"));
    // The page's clock moves on a minute (its own: the hint never reads the server's).
    browser.eval("const now = Date.now.bind(Date); Date.now = () => now() + 60000;", vec![]).await;
    let explained = eventually(Duration::from_secs(15), || async {
        Some(text_of(&browser, "#job-status").await)
            .filter(|t| t.contains("No worker has taken it"))
    })
    .await;
    assert!(explained.starts_with("Queued"), "{explained}");
    let _worker = env.spawn_worker().await;
    browser.wait_for("#result:not([hidden])", Duration::from_secs(30)).await;
    assert!(text_of(&browser, "#job-status").await.starts_with("Finished"));
    browser.close().await;
}

/// A refusal to cancel says nothing once the job has ended: the result shows without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_cancel_leaves_no_message_beside_the_result_once_the_job_succeeds() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let id = app.submit_ok(&small_request()).await;
    let operator = env.key("ops", &["operator"]);
    let browser = browser_on_job(&app, &operator, id).await;
    browser.wait_for("#cancel:not([hidden])", Duration::from_secs(10)).await;
    browser.click("#cancel").await;
    let problem = browser.wait_for("#job-problem:not([hidden])", Duration::from_secs(10)).await;
    assert!(problem.text().await.unwrap().contains("could not be cancelled"));
    // The job runs after all, and the page shows its result.
    let _worker = env.spawn_worker().await;
    browser.wait_for("#result:not([hidden])", Duration::from_secs(30)).await;
    let hidden = browser.eval("return document.getElementById('job-problem').hidden", vec![]).await;
    assert_eq!(hidden, json!(true), "{}", text_of(&browser, "#job-problem").await);
    browser.close().await;
}

/// An operator reads any tenant's job but may not cancel it: the page says so where the next
/// poll does not overwrite it, and takes the button away (another click would meet the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_told_a_job_cannot_be_cancelled_keeps_the_message() {
    let env = TestEnv::new();
    env.leaves_unfinished_jobs("the job stays queued for the operator to look at; no worker runs");
    let app = env.spawn_app().await;
    let id = app.submit_ok(&small_request()).await;
    let operator = env.key("ops", &["operator"]);
    let browser = browser_on_job(&app, &operator, id).await;
    browser.wait_for("#cancel:not([hidden])", Duration::from_secs(10)).await;
    eventually(Duration::from_secs(10), || async {
        text_of(&browser, "#job-status").await.starts_with("Queued").then_some(())
    })
    .await;
    browser.click("#cancel").await;
    let problem = browser.wait_for("#job-problem:not([hidden])", Duration::from_secs(10)).await;
    assert!(problem.text().await.unwrap().contains("could not be cancelled"));
    // Polls go on (the status is written again) and the message stays, the button gone.
    browser.eval("document.getElementById('job-status').textContent = ''", vec![]).await;
    eventually(Duration::from_secs(10), || async {
        text_of(&browser, "#job-status").await.starts_with("Queued").then_some(())
    })
    .await;
    assert!(text_of(&browser, "#job-problem").await.contains("could not be cancelled"));
    let hidden = browser.eval("return document.getElementById('cancel').hidden", vec![]).await;
    assert_eq!(hidden, json!(true));
    assert_eq!(app.job(id).await["status"], "queued");

    // An operator who may also run plans of their own is told why another tenant's job is not
    // theirs to cancel (the API's 404 says only that it has no such job of theirs).
    let both = env.key("ops-and-plans", &["operator", "simulate"]);
    browser.use_key(&both).await;
    browser.client.goto(&app.url(&format!("/?job={id}"))).await.unwrap();
    browser.wait_for("#cancel:not([hidden])", Duration::from_secs(10)).await;
    browser.click("#cancel").await;
    let problem = browser.wait_for("#job-problem:not([hidden])", Duration::from_secs(10)).await;
    assert!(problem.text().await.unwrap().contains("only a key of the tenant"));
    assert_eq!(app.job(id).await["status"], "queued");
    browser.use_key(&operator).await;

    // Back at the planner with the operator's key, a submit asks for a key that may run plans
    // and, given one, goes through.
    browser.client.goto(&app.url("/")).await.unwrap();
    browser.wait_for("#f-starting_portfolio", Duration::from_secs(10)).await;
    browser.type_into("#f-n_scenarios", "1000").await;
    browser.click("#submit").await;
    let reason = browser.wait_for("#api-key-reason", Duration::from_secs(10)).await;
    assert!(reason.text().await.unwrap().contains("simulate scope"));
    // Without such a key at hand the prompt can be dismissed: the refusal shows by the button,
    // which works again.
    browser.click("#api-key-dismiss").await;
    let refused = eventually(Duration::from_secs(10), || async {
        Some(text_of(&browser, "#e-body").await).filter(|t| !t.is_empty())
    })
    .await;
    assert!(refused.contains("scope"), "{refused}");
    let open = browser.eval("return !!document.getElementById('api-key-dialog')", vec![]).await;
    assert_eq!(open, json!(false));
    browser.click("#submit").await;
    browser.wait_for("#api-key-reason", Duration::from_secs(10)).await;
    browser.answer_key_prompt(env.api_key(), Duration::from_secs(5)).await;
    browser.wait_for("#job:not([hidden])", Duration::from_secs(10)).await;
    let list: Value =
        app.client.get(app.url("/results")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "the page's submit was recorded");
    browser.close().await;
}
