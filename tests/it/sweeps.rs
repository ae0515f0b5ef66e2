//! The plan explorer (issue 14): a sweep is one job whose cells are plain requests, run as units
//! by any worker. Each cell's figures are those of a plain submit with the same seed; the
//! solver's per-value answers match; units spread over workers and are stored once; a cancel
//! stops every unit; a unit failing for good fails the sweep, naming the cell; bad sweeps are
//! 422s naming the cell and the field.

use std::collections::BTreeSet;
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};
use portfolio_shared::store;
use portfolio_tests::{ApiClient, TestEnv, eventually, problem};
use serde_json::{Value, json};
use uuid::Uuid;

const SEED: u64 = 7;

fn base(scenarios: u32, years: u32) -> Value {
    json!({"starting_portfolio": 1_000_000, "monthly_spending": 4_000, "years": years,
           "n_scenarios": scenarios, "seed": SEED})
}

fn with_sweep(mut body: Value, axes: Value) -> Value {
    body["sweep"] = json!({ "axes": axes });
    body
}

/// The engine's figures of a result: everything but the time it took.
fn figures(result: &Value) -> Value {
    let mut result = result.clone();
    result.as_object_mut().expect("a result").remove("elapsed_ms");
    result
}

async fn cell(app: &ApiClient, id: Uuid, index: u64) -> reqwest::Response {
    app.client.get(app.url(&format!("/results/{id}/cells/{index}"))).send().await.unwrap()
}

/// Submits `body` as a plain job and waits for its result.
async fn plain_result(app: &ApiClient, body: &Value) -> Value {
    let id = app.submit_ok(body).await;
    let job = app.wait_terminal(id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    job["result"].clone()
}

#[derive(QueryableByName, Debug)]
struct UnitRow {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = BigInt)]
    terminal_audits: i64,
    #[diesel(sql_type = BigInt)]
    cells: i64,
}

fn units_of(env: &TestEnv, sweep: Uuid) -> Vec<UnitRow> {
    diesel::sql_query(
        "SELECT s.status, s.attempts,
                (SELECT count(*) FROM audit_logs a WHERE a.simulation_id = s.id
                   AND a.event IN ('succeeded', 'failed', 'cancelled')) AS terminal_audits,
                (SELECT count(*) FROM sweep_cells c WHERE c.unit_id = s.id) AS cells
         FROM simulations s WHERE s.parent_id = $1
         ORDER BY (s.request->'cells'->0->>'index')::int",
    )
    .bind::<diesel::sql_types::Uuid, _>(sweep)
    .load(&mut env.db.connect())
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_random_cells_of_a_two_axis_sweep_equal_their_plain_submits_exactly() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;
    let spending = [3_000.0, 4_000.0, 5_000.0];
    let stocks = [0.2, 0.6, 1.0];
    let body = with_sweep(
        base(500, 20),
        json!([{"field": "monthly_spending", "values": spending},
               {"field": "allocation.stocks", "from": 0.2, "to": 1.0, "steps": 3}]),
    );
    let id = app.submit_ok(&body).await;
    let job = app.wait_terminal(id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job["result"].is_null(), "a sweep's figures are in `sweep`: {job}");
    let sweep = &job["sweep"];
    assert_eq!(sweep["cells_total"], 9);
    assert_eq!(sweep["cells_done"], 9);
    assert_eq!(sweep["base"], json!({"monthly_spending": 4000.0, "allocation.stocks": 0.6}));
    assert_eq!(sweep["axes"][1]["values"], json!(stocks), "from/to/steps in round figures");
    let cells = sweep["cells"].as_array().unwrap();
    let indices: Vec<u64> = cells.iter().map(|c| c["index"].as_u64().unwrap()).collect();
    assert_eq!(indices, (0..9).collect::<Vec<_>>());
    // Common random numbers: more spending never succeeds more often, at any allocation.
    for j in 0..3 {
        let p = |i: usize| cells[i * 3 + j]["success_probability"].as_f64().unwrap();
        assert!(p(0) >= p(1) && p(1) >= p(2), "column {j}: {} {} {}", p(0), p(1), p(2));
    }

    let mut picked = BTreeSet::new();
    while picked.len() < 3 {
        picked.insert((Uuid::new_v4().as_u128() % 9) as usize);
    }
    eprintln!("cells compared with plain submits: {picked:?}");
    for index in picked {
        let (i, j) = (index / 3, index % 3);
        // The plain request as a user would write it: the base with the cell's values.
        let mut plain = base(500, 20);
        plain["monthly_spending"] = spending[i].into();
        plain["allocation"] = json!({"stocks": stocks[j], "bonds": 1.0 - stocks[j], "cash": 0.0});
        let expected = plain_result(&app, &plain).await;

        let response = cell(&app, id, index as u64).await;
        assert_eq!(response.status(), 200);
        let got: Value = response.json().await.unwrap();
        assert_eq!(got["values"], json!([spending[i], stocks[j]]));
        assert_eq!(figures(&got["result"]), figures(&expected), "cell {index}");
        let summary = &cells[index];
        assert_eq!(summary["success_probability"], expected["success_probability"]);
        assert_eq!(
            summary["median_terminal_real"],
            expected["percentiles"]["p50"].as_array().unwrap().last().unwrap().clone()
        );
        assert_eq!(
            summary["p10_terminal_real"],
            expected["percentiles"]["p10"].as_array().unwrap().last().unwrap().clone()
        );
        assert_eq!(summary["median_depletion_year"], expected["median_depletion_year"]);
        // And the cell's own request, submitted plainly, is the same plan.
        assert_eq!(figures(&plain_result(&app, &got["request"]).await), figures(&expected));
    }

    // A plan's charts and table are no sweep's, and a sweep's cells are no plan's: each a 409
    // that says so (a succeeded sweep's stored document is not a plan's result to draw).
    let get = |path: String| app.client.get(app.url(&path)).send();
    for route in ["charts/fan.svg", "charts/terminal.svg", "table.csv"] {
        let body = problem(get(format!("/results/{id}/{route}")).await.unwrap(), 409).await;
        assert!(body["detail"].as_str().unwrap().contains("is a sweep"), "{route}: {body}");
    }
    let plan = app
        .submit_ok(&json!({"starting_portfolio": 1_000_000, "monthly_spending": 4_000,
                                     "years": 20, "n_scenarios": 500, "seed": SEED + 1}))
        .await;
    app.wait_terminal(plan, Duration::from_secs(60)).await;
    for route in ["cells/0", "cells/0/charts/fan.svg", "charts/heatmap.svg", "sweep.csv"] {
        let body = problem(get(format!("/results/{plan}/{route}")).await.unwrap(), 409).await;
        assert!(body["detail"].as_str().unwrap().contains("not a sweep"), "{route}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_axis_sweep_with_solve_matches_a_solver_run_per_value() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;
    let mut body =
        with_sweep(base(400, 20), json!([{"field": "allocation.stocks", "values": [0.3, 0.9]}]));
    body["solve"] = json!({"target_success": 0.9});
    let id = app.submit_ok(&body).await;
    let job = app.wait_terminal(id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["sweep"]["solve"], json!({"target_success": 0.9}));
    for (index, stocks) in [0.3, 0.9].into_iter().enumerate() {
        let mut plain = base(400, 20);
        plain["solve"] = json!({"target_success": 0.9});
        plain["allocation"] = json!({"stocks": stocks, "bonds": 1.0 - stocks, "cash": 0.0});
        let expected = plain_result(&app, &plain).await;
        let safe = &expected["solve"]["safe_monthly_spending"];
        assert!(safe.as_f64().is_some_and(|s| s > 0.0), "{expected}");
        assert_eq!(&job["sweep"]["cells"][index]["safe_monthly_spending"], safe);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_spread_over_two_workers_every_cell_is_stored_once_and_only_the_sweep_is_listed() {
    let mut env = TestEnv::new();
    // One cell per unit, so there are many units to share.
    env.set("SWEEP_UNIT_COST", 1);
    let app = env.spawn_app().await;
    let a = env.spawn_worker().await;
    let b = env.spawn_worker().await;
    let body = with_sweep(
        base(4_000, 30),
        json!([{"field": "monthly_spending", "from": 3000, "to": 5000, "steps": 6},
               {"field": "years", "values": [20, 25, 30, 35]}]),
    );
    let id = app.submit_ok(&body).await;
    // The long-poll of a sweep answers as its map fills, before it ends.
    let first: Value = app
        .client
        .get(app.url(&format!("/results/{id}?wait=30")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(first["sweep"]["cells_done"].as_u64().unwrap() >= 1, "{first}");
    let job = app.wait_terminal(id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["progress"], json!({"done": 24, "total": 24}));

    let workers: Vec<(i32, Uuid, String)> =
        portfolio_shared::store::cell_workers(&mut env.db.connect(), id).unwrap();
    assert_eq!(workers.len(), 24, "every cell stored, once (the primary key)");
    let names: BTreeSet<&str> = workers.iter().map(|(_, _, w)| w.as_str()).collect();
    assert_eq!(names, BTreeSet::from([a.name.as_str(), b.name.as_str()]), "units ran on both");
    let units = units_of(&env, id);
    assert_eq!(units.len(), 24);
    for u in &units {
        assert_eq!(
            (u.status.as_str(), u.attempts, u.terminal_audits, u.cells),
            ("succeeded", 1, 1, 1)
        );
    }

    // The owner sees one job: the sweep.
    let list: Value =
        app.client.get(app.url("/results")).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> =
        list["items"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [id.to_string()]);
    // A unit is no job of the owner's.
    let unit: Uuid = workers[0].1;
    assert_eq!(
        app.client.get(app.url(&format!("/results/{unit}"))).send().await.unwrap().status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_delete_cancels_the_sweep_and_every_unit() {
    let mut env = TestEnv::new();
    env.set("SWEEP_UNIT_COST", 1);
    let app = env.spawn_app().await;
    // No worker: every unit is queued.
    let body = with_sweep(base(500, 10), json!([{"field": "years", "values": [10, 15, 20, 25]}]));
    let id = app.submit_ok(&body).await;
    let job = app.job(id).await;
    assert_eq!(
        (job["status"].as_str(), job["sweep"]["cells_done"].as_u64()),
        (Some("queued"), Some(0))
    );
    // A cell not done yet is a 409; one past the grid, a 404.
    problem(cell(&app, id, 3).await, 409).await;
    problem(cell(&app, id, 4).await, 404).await;
    // One cell, one address: other spellings of 3 name no cell.
    for spelling in ["+3", "03", "%2B3", "3.0"] {
        for route in ["", "/charts/fan.svg"] {
            let url = app.url(&format!("/results/{id}/cells/{spelling}{route}"));
            problem(app.client.get(url).send().await.unwrap(), 404).await;
        }
    }

    let cancel = app.client.delete(app.url(&format!("/simulations/{id}"))).send().await.unwrap();
    assert_eq!(cancel.status(), 200);
    assert_eq!(app.job(id).await["status"], "cancelled");
    let units = units_of(&env, id);
    assert_eq!(units.len(), 4);
    for u in &units {
        assert_eq!(
            (u.status.as_str(), u.attempts, u.terminal_audits),
            ("cancelled", 0, 1),
            "{u:?}"
        );
    }
    // A worker started now runs none of them.
    let _worker = env.spawn_worker().await;
    let probe = app.submit_ok(&base(200, 5)).await;
    app.wait_terminal(probe, Duration::from_secs(30)).await;
    assert!(units_of(&env, id).iter().all(|u| u.attempts == 0 && u.cells == 0));
}

/// A sweep of two cells, one unit each, with no worker: the sweep's id and its first unit's.
async fn sweep_of_two_units(env: &TestEnv, app: &ApiClient) -> (Uuid, Uuid) {
    let body = with_sweep(base(500, 10), json!([{"field": "years", "values": [10, 15]}]));
    let sweep = app.submit_ok(&body).await;
    let unit =
        diesel::sql_query("SELECT id FROM simulations WHERE parent_id = $1 ORDER BY id LIMIT 1")
            .bind::<diesel::sql_types::Uuid, _>(sweep)
            .get_result::<UnitId>(&mut env.db.connect())
            .unwrap()
            .id;
    (sweep, unit)
}

/// A unit running when its sweep is cancelled finishes after the cancel: it stores nothing and
/// ends `cancelled`, so the ended sweep's document (served as immutable) never changes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_that_finishes_after_its_sweep_was_cancelled_stores_nothing() {
    let mut env = TestEnv::new();
    env.set("SWEEP_UNIT_COST", 1);
    let app = env.spawn_app().await;
    let (id, unit) = sweep_of_two_units(&env, &app).await;
    // A worker claims the unit, as it would on delivery.
    let mut conn = env.db.connect();
    let claimed =
        match store::claim(&mut conn, unit, "w", Uuid::new_v4(), 3, Duration::from_secs(15))
            .unwrap()
        {
            store::Claim::Run(job) => job,
            other => panic!("not claimed: {other:?}"),
        };
    let cancel = app.client.delete(app.url(&format!("/simulations/{id}"))).send().await.unwrap();
    assert_eq!(cancel.status(), 200);
    let before = app.job(id).await;
    assert_eq!(before["status"], "cancelled");

    let cell = store::CellOutcome {
        index: claimed.request["cells"][0]["index"].as_i64().unwrap() as i32,
        request: json!({}),
        summary: json!({}),
        result: json!({}),
    };
    let written = store::complete_unit(&mut conn, &claimed.lease, id, &[cell], 1).unwrap();
    assert_eq!(written.write, store::Write::FencedOut, "{written:?}");
    assert!(!written.sweep_ended);
    assert_eq!(app.job(id).await, before, "the ended sweep's document changed");
    let units = units_of(&env, id);
    assert!(units.iter().all(|u| u.cells == 0), "{units:?}");
    assert!(units.iter().all(|u| u.status == "cancelled" && u.terminal_audits == 1), "{units:?}");
}

/// A cancel locks the sweep, then its units; a unit's claim moves the sweep to `running`. The
/// claim takes the sweep's row first too, so the two queue up instead of deadlocking (the claim
/// used to lock the unit first: Postgres then broke the cycle by failing one of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_units_claim_and_its_sweeps_cancel_queue_up_instead_of_deadlocking() {
    let mut env = TestEnv::new();
    env.set("SWEEP_UNIT_COST", 1);
    let app = env.spawn_app().await;
    let (sweep, unit) = sweep_of_two_units(&env, &app).await;

    // The cancel's transaction, by hand: the sweep's row first.
    let mut cancel = env.db.connect();
    diesel::sql_query("BEGIN").execute(&mut cancel).unwrap();
    diesel::sql_query("SELECT 1 FROM simulations WHERE id = $1 FOR UPDATE")
        .bind::<diesel::sql_types::Uuid, _>(sweep)
        .execute(&mut cancel)
        .unwrap();
    let url = env.db.url.clone();
    let claim = std::thread::spawn(move || {
        let mut conn = PgConnection::establish(&url).unwrap();
        store::claim(&mut conn, unit, "w", Uuid::new_v4(), 3, Duration::from_secs(15))
    });
    let mut watch = env.db.connect();
    eventually(Duration::from_secs(10), || {
        let waiting = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .get_result::<Count>(&mut watch)
        .unwrap()
        .n;
        std::future::ready((waiting > 0).then_some(()))
    })
    .await;
    // Then the units, as `stop_units` does.
    diesel::sql_query(
        "UPDATE simulations SET status = 'cancelled', finished_at = now() \
         WHERE parent_id = $1 AND status = 'queued'",
    )
    .bind::<diesel::sql_types::Uuid, _>(sweep)
    .execute(&mut cancel)
    .expect("the cancel's update of the units");
    diesel::sql_query("COMMIT").execute(&mut cancel).unwrap();
    let claimed = claim.join().unwrap().expect("the claim");
    assert!(
        matches!(claimed, store::Claim::Finished(portfolio_shared::JobStatus::Cancelled)),
        "{claimed:?}"
    );
    env.leaves_unfinished_jobs("the sweep's row stays queued: the test cancelled its units alone");
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct UnitId {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

/// Runs a sweep of three small cells whose engine panics every time (the worker injects it for
/// `seed`) to its end: its id and last document.
async fn run_a_poisoned_sweep(env: &mut TestEnv, seed: u64) -> (Uuid, Value) {
    env.set("WORKER_FAULT_INJECTION", format!("panic:{seed}"));
    let app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;
    let mut body = with_sweep(base(500, 10), json!([{"field": "years", "values": [10, 15, 20]}]));
    body["seed"] = seed.into();
    let id = app.submit_ok(&body).await;
    (id, app.wait_terminal(id, Duration::from_secs(60)).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_that_fails_for_good_fails_the_sweep_naming_the_cell_and_stops_the_others() {
    const POISON: u64 = 5_151_515;
    let mut env = TestEnv::new();
    env.set("SWEEP_UNIT_COST", 1)
        .set("MAX_ATTEMPTS", 1)
        .set("WORKER_CONCURRENCY", 1)
        .set("WORKER_LIGHT_CONCURRENCY", 1);
    let (id, job) = run_a_poisoned_sweep(&mut env, POISON).await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(error.starts_with("cell 0 (years = 10): "), "names the cell: {error}");
    assert!(error.contains("panicked"), "{error}");
    // Every unit has ended, exactly once.
    let units = eventually(Duration::from_secs(30), || async {
        let units = units_of(&env, id);
        units.iter().all(|u| u.terminal_audits == 1).then_some(units)
    })
    .await;
    assert_eq!(units[0].status, "failed");
    // The queue's statistics list the sweep with the attempts of its unit, not its own none.
    let failures = store::stats::recent_failures(&mut env.db.connect(), 10).unwrap();
    let listed = failures.iter().find(|f| f.id == id).expect("the sweep is a recent failure");
    assert_eq!(listed.attempts, units[0].attempts, "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_of_several_cells_that_fails_names_the_cell_that_failed_not_a_range() {
    const POISON: u64 = 5_252_525;
    let mut env = TestEnv::new();
    env.set("MAX_ATTEMPTS", 1);
    // Three small cells: one unit.
    let (id, job) = run_a_poisoned_sweep(&mut env, POISON).await;
    assert_eq!(units_of(&env, id).len(), 1, "one unit");
    let error = job["error"].as_str().unwrap();
    assert!(error.starts_with("cell 0 (years = 10): "), "names the cell: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_sweep_is_a_422_naming_the_cell_and_the_field() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let fields = |p: &Value| -> Vec<String> {
        p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_owned())
            .collect()
    };

    // A cell that is no valid plan: stocks at 100 % leave nothing for... cash already at 10 %.
    let mut body =
        with_sweep(base(500, 10), json!([{"field": "allocation.stocks", "values": [0.5, 1.0]}]));
    body["allocation"] = json!({"stocks": 0.5, "bonds": 0.4, "cash": 0.1});
    let p = problem(app.submit(&body).await, 422).await;
    assert_eq!(fields(&p), ["sweep.cells[1].allocation.bonds"], "{p}");
    let message = p["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("cell 1 (allocation.stocks = 1)"), "{message}");

    for (axes, field) in [
        (json!([]), "sweep.axes"),
        (json!([{"field": "inflation", "values": [1]}]), "sweep.axes[0].field"),
        (json!([{"field": "years", "values": [30, 20]}]), "sweep.axes[0].values"),
        (
            json!([{"field": "years", "from": 10, "to": 40, "steps": 31}, {"field": "annual_fee", "from": 0, "to": 0.01, "steps": 20}]),
            "sweep.axes",
        ),
    ] {
        let p = problem(app.submit(&with_sweep(base(500, 10), axes.clone())).await, 422).await;
        assert_eq!(fields(&p), [field], "{axes}: {p}");
    }
    // Solve with two axes.
    let mut two = with_sweep(
        base(500, 10),
        json!([{"field": "years", "values": [10]}, {"field": "annual_fee", "values": [0.0]}]),
    );
    two["solve"] = json!({"target_success": 0.9});
    assert_eq!(fields(&problem(app.submit(&two).await, 422).await), ["solve"]);
    // The sum of the cells against MAX_JOB_COST: 21 × 21 cells of 100,000 × 40 y.
    let costly = with_sweep(
        base(100_000, 40),
        json!([{"field": "monthly_spending", "from": 2000, "to": 6000, "steps": 21},
               {"field": "allocation.stocks", "from": 0, "to": 1, "steps": 21}]),
    );
    let p = problem(app.submit(&costly).await, 422).await;
    assert_eq!(fields(&p), ["sweep"]);
    assert!(p["errors"][0]["message"].as_str().unwrap().contains("MAX_JOB_COST"), "{p}");
    // Nothing was recorded.
    let list: Value =
        app.client.get(app.url("/results")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["items"], json!([]));
}
