//! Submit → queue → worker → Postgres → /results/{id}, on real parts.

use std::time::Duration;

use diesel::prelude::*;
use portfolio_shared::schema::audit_logs;
use portfolio_tests::{TestEnv, small_request};
use serde_json::{Value, json};

const WITHIN: Duration = Duration::from_secs(60);
const KEYS: [&str; 7] = ["p5", "p10", "p25", "p50", "p75", "p90", "p95"];

fn series(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_job_succeeds_with_a_result_that_follows_the_contract() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;
    let id = app.submit_ok(&small_request()).await;
    let job = app.wait_terminal(id, WITHIN).await;

    assert_eq!(job["status"], "succeeded", "{job}");
    for key in ["created_at", "started_at", "finished_at"] {
        assert!(
            job[key].as_str().is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
            "{key}"
        );
    }
    assert!(job["error"].is_null());
    assert_eq!(job["progress"]["done"], job["progress"]["total"]);
    assert!(job["progress"]["total"].as_i64().unwrap() > 0);
    assert_eq!(job["request"]["seed"], job["seed"]);

    let r = &job["result"];
    let years = 30;
    assert_eq!(series(&r["years"]), (0..=years).map(f64::from).collect::<Vec<_>>());
    let p = r["success_probability"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p));
    for kind in ["percentiles", "nominal_percentiles"] {
        let cols: Vec<Vec<f64>> = KEYS.iter().map(|k| series(&r[kind][k])).collect();
        for col in &cols {
            assert_eq!(col.len(), years as usize + 1, "{kind}");
            assert_eq!(col[0], 1_000_000.0, "{kind}: year 0 is the starting portfolio");
        }
        for y in 0..=years as usize {
            for w in cols.windows(2) {
                assert!(w[0][y] <= w[1][y], "{kind} not monotone in p at year {y}");
            }
        }
    }
    let depletion = series(&r["depletion_probability_by_year"]);
    assert_eq!(depletion.len(), years as usize + 1);
    assert_eq!(depletion[0], 0.0);
    assert!(depletion.windows(2).all(|w| w[0] <= w[1]));
    assert!((depletion[years as usize] - (1.0 - p)).abs() < 1e-12);
    let terminal = &r["terminal"];
    assert_eq!(terminal["p50"], r["percentiles"]["p50"][years as usize]);
    assert_eq!(terminal["p5"], r["percentiles"]["p5"][years as usize]);
    assert!(terminal["mean"].as_f64().unwrap() >= 0.0);
    assert_eq!(r["scenario_months"], 2_000 * 30 * 12);
    assert!(r["elapsed_ms"].as_f64().unwrap() >= 0.0);
    assert!(r["engine_version"].as_str().unwrap().starts_with("portfolio-mc-engine/"));
}

/// The result without its timing, which legitimately differs between runs.
fn comparable(job: &Value) -> Value {
    let mut r = job["result"].clone();
    r.as_object_mut().unwrap().remove("elapsed_ms");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_twice_gives_identical_results_and_another_seed_does_not() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;
    let mut body = small_request();
    body["seed"] = json!(424_242);
    let a = app.submit_ok(&body).await;
    let b = app.submit_ok(&body).await;
    body["seed"] = json!(424_243);
    let c = app.submit_ok(&body).await;
    let (a, b, c) = (
        app.wait_terminal(a, WITHIN).await,
        app.wait_terminal(b, WITHIN).await,
        app.wait_terminal(c, WITHIN).await,
    );
    assert_eq!(a["seed"], 424_242);
    assert_eq!(comparable(&a), comparable(&b));
    assert_ne!(comparable(&a), comparable(&c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_zero_volatility_every_percentile_is_the_closed_form_annuity() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;
    let (w0, m, fee, years) = (1_000_000.0f64, 3_000.0f64, 0.005f64, 30usize);
    let (mu, weights, pi) = ([0.07f64, 0.03, 0.02], [0.5f64, 0.3, 0.2], 0.025f64);
    let body = json!({
        "starting_portfolio": w0, "monthly_spending": m, "years": years, "n_scenarios": 64,
        "annual_fee": fee,
        "allocation": {"stocks": weights[0], "bonds": weights[1], "cash": weights[2]},
        "assumptions": {
            "stocks": {"mean_return": mu[0], "volatility": 0.0},
            "bonds": {"mean_return": mu[1], "volatility": 0.0},
            "cash": {"mean_return": mu[2], "volatility": 0.0},
            "correlation": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            "inflation": {"mean": pi, "volatility": 0.0},
        },
    });
    let job = app.wait_terminal(app.submit_ok(&body).await, WITHIN).await;
    assert_eq!(job["status"], "succeeded");
    let r = &job["result"];
    // Monthly growth k = (Σ w_a (1+μ_a)^(1/12))·(1 − fee/12); price index f = (1+π)^(1/12).
    // W_n = W0·k^n − m·k·(k^n − f^n)/(k − f): a growing annuity paid in advance.
    let k = weights.iter().zip(mu).map(|(w, u)| w * (1.0f64 + u).powf(1.0 / 12.0)).sum::<f64>()
        * (1.0 - fee / 12.0);
    let f = (1.0f64 + pi).powf(1.0 / 12.0);
    for y in 0..=years {
        let n = 12 * y as i32;
        let nominal = w0 * k.powi(n) - m * k * (k.powi(n) - f.powi(n)) / (k - f);
        let real = nominal / f.powi(n);
        for key in KEYS {
            let got_real = r["percentiles"][key][y].as_f64().unwrap();
            let got_nominal = r["nominal_percentiles"][key][y].as_f64().unwrap();
            assert!(
                ((got_real - real) / real).abs() < 1e-9,
                "real {key} year {y}: {got_real} vs {real}"
            );
            assert!(((got_nominal - nominal) / nominal).abs() < 1e-9, "nominal {key} year {y}");
        }
    }
    assert_eq!(r["success_probability"], 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_submitted_before_an_api_restart_is_served_after_it() {
    let env = TestEnv::new();
    let first = env.spawn_app().await;
    let id = first.submit_ok(&small_request()).await;
    first.kill();
    let second = env.spawn_app().await;
    assert_eq!(second.job(id).await["status"], "queued");
    let _worker = env.spawn_worker().await;
    let job = second.wait_terminal(id, WITHIN).await;
    assert_eq!(job["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_job_has_exactly_one_terminal_audit_row_carrying_its_request_id() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let response = app
            .client
            .post(app.url("/simulations"))
            .header("x-request-id", format!("audit-{i}"))
            .json(&small_request())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap());
    }
    for id in &ids {
        app.wait_terminal(*id, WITHIN).await;
    }
    let mut conn = env.db.connect();
    for (i, id) in ids.iter().enumerate() {
        let rows: Vec<(String, String, Option<String>)> = audit_logs::table
            .filter(audit_logs::simulation_id.eq(id))
            .select((audit_logs::event, audit_logs::actor, audit_logs::request_id))
            .load(&mut conn)
            .unwrap();
        let count = |e: &str| rows.iter().filter(|r| r.0 == e).count();
        assert_eq!(count("submitted"), 1, "{rows:?}");
        assert_eq!(count("started"), 1, "{rows:?}");
        assert_eq!(count("succeeded") + count("failed") + count("cancelled"), 1, "{rows:?}");
        let terminal = rows.iter().find(|r| r.0 == "succeeded").unwrap();
        assert_ne!(terminal.1, "api", "the worker wrote the terminal row");
        assert!(
            rows.iter().all(|r| r.2.as_deref() == Some(format!("audit-{i}").as_str())),
            "{rows:?}"
        );
    }
}
