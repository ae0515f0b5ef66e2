//! A job's lifecycle in Postgres under the conditions that broke it: a worker that outlived its
//! claim (its writes are fenced out), a database whose clock is not the hosts' (staleness and
//! due-ness are the database's to decide), a database error retrying cannot fix (the job fails
//! with it instead of retrying until shutdown), and a status the code does not know (an error,
//! not a guess). At the store level against real databases, and through real workers where
//! that can be done without sleeping.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Jsonb};
use portfolio_api::error::ApiError;
use portfolio_engine::request::{RequestLimits, SimulationRequest};
use portfolio_shared::db_error::{self, SqlState};
use portfolio_shared::queue::Keys;
use portfolio_shared::queue::{self, Queue};
use portfolio_shared::store::models::NewSimulation;
use portfolio_shared::store::{self, Claim, ClaimedJob, Flush, Lease, ProgressAck, Write};
use portfolio_tests::processes::job_body;
use portfolio_tests::throwaway::ThrowawayPostgres;
use portfolio_tests::{TEST_TENANT, TestDb, TestEnv, eventually};
use redis::Commands;
use uuid::Uuid;

/// The orphan window of these tests (the harness's 1 s × 3).
const WINDOW: Duration = Duration::from_secs(3);

fn new_job(conn: &mut PgConnection) -> Uuid {
    new_job_flushed(conn, Flush::Separately)
}

fn new_job_flushed(conn: &mut PgConnection, flush: Flush) -> Uuid {
    let request = SimulationRequest::from_json(
        job_body(2_000, 10).to_string().as_bytes(),
        &RequestLimits::default(),
    )
    .unwrap();
    let json = request.to_json();
    let id = Uuid::now_v7();
    store::insert_job(
        conn,
        &NewSimulation {
            id,
            request: &json,
            seed: 42,
            request_id: None,
            idempotency_key: None,
            request_hash: None,
            owner: TEST_TENANT,
            api_key_id: None,
            cache_key: None,
        },
        i64::MAX,
        flush,
    )
    .unwrap();
    id
}

fn claimed(claim: Claim) -> ClaimedJob {
    match claim {
        Claim::Run(job) => job,
        other => panic!("expected to run the job, got {other:?}"),
    }
}

/// The job's row as Postgres has it, and how many audit and result rows it has.
#[derive(QueryableByName, PartialEq, Debug)]
struct Snapshot {
    #[diesel(sql_type = Jsonb)]
    job: serde_json::Value,
    #[diesel(sql_type = BigInt)]
    audits: i64,
    #[diesel(sql_type = BigInt)]
    results: i64,
}

fn snapshot(conn: &mut PgConnection, id: Uuid) -> Snapshot {
    diesel::sql_query(
        "SELECT to_jsonb(s) AS job,
                (SELECT count(*) FROM audit_logs a WHERE a.simulation_id = s.id) AS audits,
                (SELECT count(*) FROM simulation_results r WHERE r.simulation_id = s.id) AS results
         FROM simulations s WHERE s.id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .get_result(conn)
    .unwrap()
}

/// Ages the job's heartbeat by `age` on the database's clock, as if its holder had stopped
/// reporting that long ago.
fn age_heartbeat(conn: &mut PgConnection, id: Uuid, age: &str) {
    diesel::sql_query("UPDATE simulations SET heartbeat_at = now() - $2::interval WHERE id = $1")
        .bind::<diesel::sql_types::Uuid, _>(id)
        .bind::<diesel::sql_types::Text, _>(age)
        .execute(conn)
        .unwrap();
}

/// Worker A claims a job, goes quiet past the orphan window, and worker B claims it.
fn taken_over(conn: &mut PgConnection) -> (Lease, Lease) {
    let id = new_job(conn);
    let a = claimed(store::claim(conn, id, "A", Uuid::new_v4(), 3, WINDOW).unwrap()).lease;
    age_heartbeat(conn, id, "1 hour");
    let b = claimed(store::claim(conn, id, "B", Uuid::new_v4(), 3, WINDOW).unwrap()).lease;
    assert_eq!((a.attempt, b.attempt), (1, 2));
    assert_ne!(a.token, b.token);
    (a, b)
}

#[test]
fn a_stale_workers_every_write_after_another_worker_claimed_the_job_is_fenced_out() {
    let db = TestDb::migrated();
    let mut conn = db.connect();
    let result = serde_json::json!({ "success_probability": 0.5 });
    type StaleWrite = fn(&mut PgConnection, &Lease, &serde_json::Value) -> Write;
    let writes: [(&str, StaleWrite); 6] = [
        ("progress", |c, a, _| match store::report_progress(c, a, 1, 2).unwrap() {
            ProgressAck::FencedOut => Write::FencedOut,
            _ => Write::Applied,
        }),
        ("complete", |c, a, r| store::complete(c, a, &raw(r), Some(0.5), 1).unwrap().write),
        ("fail", |c, a, _| store::fail(c, a, "boom").unwrap()),
        ("cancelled by worker", |c, a, _| store::cancelled_by_worker(c, a).unwrap()),
        ("release for retry", |c, a, _| {
            store::release_for_retry(c, a, "boom", Duration::ZERO).unwrap()
        }),
        ("hand back", |c, a, _| store::hand_back(c, a).unwrap()),
    ];
    for (name, write) in writes {
        let (a, b) = taken_over(&mut conn);
        let before = snapshot(&mut conn, a.job);
        assert_eq!(write(&mut conn, &a, &result), Write::FencedOut, "{name}");
        let after = snapshot(&mut conn, a.job);
        assert_eq!(after, before, "{name}: the row changed");
        assert_eq!(after.job["status"], "running", "{name}");
        assert_eq!(after.job["worker"], "B", "{name}");
        assert_eq!(after.job["claim_token"], b.token.to_string(), "{name}");
        // B's own claim still holds.
        assert_eq!(store::report_progress(&mut conn, &b, 1, 2).unwrap(), ProgressAck::Continue);
    }
}

#[test]
fn the_holder_of_the_claim_writes_its_outcome_once_and_nothing_after_it() {
    let db = TestDb::migrated();
    let mut conn = db.connect();
    let id = new_job(&mut conn);
    let lease = claimed(store::claim(&mut conn, id, "A", Uuid::new_v4(), 3, WINDOW).unwrap()).lease;
    let result = serde_json::json!({ "success_probability": 0.5 });
    assert_eq!(
        store::complete(&mut conn, &lease, &raw(&result), Some(0.5), 3).unwrap().write,
        Write::Applied
    );
    let done = snapshot(&mut conn, id);
    assert_eq!((done.job["status"].as_str(), done.results), (Some("succeeded"), 1));
    assert_eq!(
        store::complete(&mut conn, &lease, &raw(&result), Some(0.5), 3).unwrap().write,
        Write::FencedOut
    );
    assert_eq!(store::fail(&mut conn, &lease, "late").unwrap(), Write::FencedOut);
    assert_eq!(snapshot(&mut conn, id), done);

    // A hand-back ends the claim: the next one counts the same attempt under a new token.
    let id = new_job(&mut conn);
    let first = claimed(store::claim(&mut conn, id, "A", Uuid::new_v4(), 3, WINDOW).unwrap()).lease;
    assert_eq!(store::hand_back(&mut conn, &first).unwrap(), Write::Applied);
    let again = claimed(store::claim(&mut conn, id, "A", Uuid::new_v4(), 3, WINDOW).unwrap()).lease;
    assert_eq!(again.attempt, first.attempt);
    assert_eq!(store::fail(&mut conn, &first, "stale").unwrap(), Write::FencedOut);
    assert_eq!(store::fail(&mut conn, &again, "boom").unwrap(), Write::Applied);
}

/// A claim that committed but whose reply was lost is sent again with the same token (the
/// worker draws one per delivery): it finds the job its own, with the same lease, no second
/// attempt counted and no second `started` row, where it used to take its own claim for a
/// process that died with the job (`MustRunAlone`, then a second attempt, or "gave up" on the
/// last). So for the one-statement claim of a first attempt and for the full claim of a retry.
/// Under a new token (another delivery) the same worker's claim still counts as a dead one.
#[test]
fn a_claim_sent_again_after_its_reply_was_lost_finds_the_job_its_own() {
    let db = TestDb::migrated();
    let mut conn = db.connect();
    let id = new_job(&mut conn);
    let token = Uuid::new_v4();
    let claim = |conn: &mut PgConnection, token| {
        store::claim_beside_others(conn, id, "A", token, 3, WINDOW).unwrap()
    };
    let first = claimed(claim(&mut conn, token));
    let after_first = snapshot(&mut conn, id);
    let again = claimed(claim(&mut conn, token));
    assert_eq!((again.lease, again.after_crash), (first.lease.clone(), false));
    assert_eq!(snapshot(&mut conn, id), after_first, "the claim sent again wrote nothing");
    assert!(matches!(claim(&mut conn, Uuid::new_v4()), Claim::MustRunAlone));

    // A retry's claim (the full one, in a transaction).
    assert_eq!(
        store::release_for_retry(&mut conn, &first.lease, "boom", Duration::ZERO).unwrap(),
        Write::Applied
    );
    let token = Uuid::new_v4();
    let second = claimed(claim(&mut conn, token));
    assert_eq!(second.lease.attempt, 2);
    let after_second = snapshot(&mut conn, id);
    let again = claimed(claim(&mut conn, token));
    assert_eq!(again.lease, second.lease);
    assert_eq!(snapshot(&mut conn, id), after_second, "the claim sent again wrote nothing");
    assert_eq!(after_second.job["attempts"], 2);
    assert_eq!(
        store::complete(&mut conn, &again.lease, &raw(&serde_json::json!({})), None, 1)
            .unwrap()
            .write,
        Write::Applied
    );
}

/// Progress never goes back: a second attempt starts from its first batch, and the job shows
/// the furthest any attempt got until the new one passes it (`done / total` only moves
/// forward, as the README says).
#[test]
fn progress_shows_the_furthest_any_attempt_got() {
    let db = TestDb::migrated();
    let mut conn = db.connect();
    let id = new_job(&mut conn);
    let done = |conn: &mut PgConnection| snapshot(conn, id).job["progress_done"].as_i64().unwrap();
    let first = claimed(store::claim(&mut conn, id, "A", Uuid::new_v4(), 3, WINDOW).unwrap()).lease;
    assert_eq!(
        store::report_progress(&mut conn, &first, 843, 2931).unwrap(),
        ProgressAck::Continue
    );
    assert_eq!(
        store::release_for_retry(&mut conn, &first, "lost", Duration::ZERO).unwrap(),
        Write::Applied
    );
    let second =
        claimed(store::claim(&mut conn, id, "B", Uuid::new_v4(), 3, WINDOW).unwrap()).lease;
    assert_eq!(
        store::report_progress(&mut conn, &second, 427, 2931).unwrap(),
        ProgressAck::Continue
    );
    assert_eq!(done(&mut conn), 843);
    assert_eq!(
        store::report_progress(&mut conn, &second, 900, 2931).unwrap(),
        ProgressAck::Continue
    );
    assert_eq!(done(&mut conn), 900);
}

/// A submit's commit that does not wait for the disk (a job an idle worker may take at once)
/// loses its job to a Postgres crash before the flush. A barrier run afterwards on a connection
/// to the restarted server succeeds all the same, so it cannot vouch for the job; the submit's
/// own barrier looks for the job as it flushes, and says the job is gone. A submit whose commit
/// waits for the flush (a job queued behind others) keeps its job with no barrier at all. (The
/// WAL writer is held off for 10 s, so nothing but a barrier or a flushing commit flushes a
/// job's commit before the crash.)
#[test]
fn a_submits_flush_notices_a_job_a_postgres_crash_took() {
    let pg = ThrowawayPostgres::start_with_settings(&["wal_writer_delay=10s", "autovacuum=off"]);
    let db = TestDb::empty_on(&pg.admin_url());
    portfolio_shared::db::migrate(&db.url).unwrap();

    let mut conn = db.connect();
    let kept = new_job(&mut conn);
    assert!(store::await_durable_job(&mut conn, kept).unwrap());
    let flushed = new_job_flushed(&mut conn, Flush::WithCommit);
    let lost = new_job(&mut conn);
    drop(conn);
    pg.stop();
    pg.start_again();

    let mut conn = db.connect();
    store::await_durable(&mut conn).expect("a barrier on the restarted server succeeds");
    assert!(store::await_durable_job(&mut conn, kept).unwrap(), "the flushed job survives");
    assert_eq!(
        store::find_job(&mut conn, store::Viewer::Operator, flushed).unwrap().map(|j| j.0.id),
        Some(flushed),
        "the job whose commit waited for the flush survives"
    );
    assert!(
        !store::await_durable_job(&mut conn, lost).unwrap(),
        "the job committed without its flush is gone, and the barrier says so"
    );
    assert_eq!(
        store::find_job(&mut conn, store::Viewer::Operator, lost).unwrap().map(|j| j.0.id),
        None
    );
}

#[test]
fn staleness_and_due_times_are_decided_by_the_database_clock_not_the_hosts() {
    // The database's clock runs an hour ahead of this host's.
    let pg = ThrowawayPostgres::start_with_clock_offset("+1h");
    let db = TestDb::empty_on(&pg.admin_url());
    portfolio_shared::db::migrate(&db.url).unwrap();
    let mut conn = db.connect();

    // A fresh claim is held for the window, and looked at again when it would go stale.
    let id = new_job(&mut conn);
    let a = claimed(store::claim(&mut conn, id, "A", Uuid::new_v4(), 3, WINDOW).unwrap()).lease;
    match store::claim_beside_others(&mut conn, id, "B", Uuid::new_v4(), 3, WINDOW).unwrap() {
        Claim::HeldElsewhere { worker, recheck_in } => {
            assert_eq!(worker, "A");
            assert!(recheck_in <= WINDOW, "rechecked in {recheck_in:?}");
        }
        other => panic!("a fresh claim was not respected: {other:?}"),
    }
    assert!(!store::previous_attempt_died(&mut conn, id, "B", WINDOW).unwrap());

    // One quiet for a minute is stale, and taken over.
    age_heartbeat(&mut conn, id, "1 minute");
    assert!(store::previous_attempt_died(&mut conn, id, "B", WINDOW).unwrap());
    // Beside other jobs it is not taken: it must run alone, and nothing was written.
    assert!(matches!(
        store::claim_beside_others(&mut conn, id, "B", Uuid::new_v4(), 3, WINDOW).unwrap(),
        Claim::MustRunAlone
    ));
    let b = claimed(store::claim(&mut conn, id, "B", Uuid::new_v4(), 3, WINDOW).unwrap());
    assert!(b.after_crash);
    assert!(b.waited < Duration::from_secs(60), "waited {:?} since submit", b.waited);
    assert_eq!(store::report_progress(&mut conn, &a, 1, 2).unwrap(), ProgressAck::FencedOut);

    // A retry's back-off is measured on the same clock as its end.
    let delay = Duration::from_secs(30);
    assert_eq!(
        store::release_for_retry(&mut conn, &b.lease, "boom", delay).unwrap(),
        Write::Applied
    );
    match store::claim(&mut conn, id, "C", Uuid::new_v4(), 3, WINDOW).unwrap() {
        Claim::NotYet { wait } => assert!(wait <= delay && wait > delay / 2, "wait {wait:?}"),
        other => panic!("a retry backing off was claimed: {other:?}"),
    }

    // The reconciler sees a job quiet for a minute, and not one touched just now.
    let quiet = WINDOW + Duration::from_secs(1);
    let (waiting, touched) = (new_job(&mut conn), new_job(&mut conn));
    diesel::sql_query(
        "UPDATE simulations SET updated_at = now() - interval '1 minute' WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(waiting)
    .execute(&mut conn)
    .unwrap();
    let stale = store::stale_unfinished(&mut conn, quiet, 100).unwrap();
    assert!(stale.contains(&waiting), "{stale:?}");
    assert!(!stale.contains(&touched), "{stale:?}");

    // An idempotency key lasts 24 h of the database's time.
    let keyed = new_job(&mut conn);
    diesel::sql_query(
        "UPDATE simulations SET idempotency_key = 'k',
                created_at = now() - interval '24 hours 1 minute' WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(keyed)
    .execute(&mut conn)
    .unwrap();
    let day = Duration::from_secs(24 * 3600);
    assert_eq!(store::expire_idempotency_key(&mut conn, TEST_TENANT, "k", day).unwrap(), 1);
}

#[test]
fn database_errors_are_classified_by_their_sqlstate() {
    let db = TestDb::migrated();
    let mut conn = db.connect();
    let raise = |conn: &mut PgConnection, code: &str| {
        diesel::sql_query(format!(
            "DO $$ BEGIN RAISE EXCEPTION 'raised {code}' USING ERRCODE = '{code}'; END $$"
        ))
        .execute(conn)
        .unwrap_err()
    };
    for (code, transient) in [
        ("08006", true),
        ("40001", true),
        ("40P01", true),
        ("53100", true),
        ("57P03", true),
        ("25006", true),
        ("25001", false),
        ("22023", false),
        ("23505", false),
        ("42501", false),
        ("P0001", false),
    ] {
        let e = raise(&mut conn, code);
        assert_eq!(db_error::sqlstate(&e), SqlState::new(code), "{code}: {e:?}");
        assert_eq!(db_error::is_transient(&e), transient, "{code}");
        let api = portfolio_api::state::db_error(e);
        assert_eq!(matches!(api, ApiError::Unavailable { .. }), transient, "{code}: {api:?}");
    }
    // Errors diesel names itself carry their code too.
    let syntax = diesel::sql_query("SELEC 1").execute(&mut conn).unwrap_err();
    assert_eq!(db_error::sqlstate(&syntax).map(|s| s.to_string()).as_deref(), Some("42601"));
    let id = new_job(&mut conn);
    let duplicate = diesel::sql_query(
        "INSERT INTO simulations (id, request, seed, owner) VALUES ($1, '{}', 1, 'x')",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .execute(&mut conn)
    .unwrap_err();
    assert_eq!(db_error::sqlstate(&duplicate).map(|s| s.to_string()).as_deref(), Some("23505"));
    assert!(!db_error::is_transient(&duplicate));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_the_code_does_not_know_is_an_error_not_a_guess() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let mut conn = env.db.connect();
    let id = new_job(&mut conn);
    conn.batch_execute(&format!(
        "ALTER TABLE simulations DROP CONSTRAINT simulations_status_check;
         UPDATE simulations SET status = 'paused' WHERE id = '{id}';"
    ))
    .unwrap();
    let read = store::find_job(&mut conn, store::Viewer::Operator, id).unwrap_err();
    assert!(format!("{read:?}").contains("unknown status `paused`"), "{read:?}");
    let response = app.client.get(app.url(&format!("/results/{id}"))).send().await.unwrap();
    assert_eq!(response.status(), 500);
    let response = app.client.get(app.url("/results")).send().await.unwrap();
    assert_eq!(response.status(), 500);
    env.leaves_unfinished_jobs("the job's status is one no code knows, on purpose");
}

fn queue_of(env: &TestEnv) -> Queue {
    let settings = env.settings();
    Queue::new(queue::connect(&settings.queue).unwrap(), &settings.queue, &settings.worker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_postgres_refuses_for_good_fails_the_job_with_its_message_promptly() {
    let env = TestEnv::new();
    let mut conn = env.db.connect();
    conn.batch_execute(
        "CREATE FUNCTION refuse_result() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'result refused by a test trigger' USING ERRCODE = '22023'; END $$;
         CREATE TRIGGER refuse_result BEFORE INSERT ON simulation_results
         FOR EACH ROW EXECUTE FUNCTION refuse_result();",
    )
    .unwrap();
    let _worker = env.spawn_worker().await;
    let id = new_job(&mut conn);
    queue_of(&env).enqueue(id).await.unwrap();
    // The job takes well under a second: retrying until shutdown would never get here.
    let job = eventually(Duration::from_secs(20), || async {
        let job = snapshot(&mut env.db.connect(), id).job;
        matches!(job["status"].as_str(), Some("failed" | "succeeded" | "cancelled")).then_some(job)
    })
    .await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("result refused by a test trigger"), "{error}");
    assert_eq!(job["attempts"], 1, "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_claim_was_taken_over_while_it_stored_its_result_writes_nothing() {
    let env = TestEnv::new();
    let mut conn = env.db.connect();
    // Result writes fail with a disk-full error (transient: the worker keeps retrying) while
    // the gate is closed, and count themselves on a sequence (not rolled back with them).
    conn.batch_execute(
        "CREATE SEQUENCE result_writes;
         CREATE TABLE result_gate (closed boolean NOT NULL);
         INSERT INTO result_gate VALUES (true);
         CREATE FUNCTION gate_result() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           PERFORM nextval('result_writes');
           IF (SELECT closed FROM result_gate) THEN
             RAISE EXCEPTION 'disk full (a test trigger)' USING ERRCODE = '53100';
           END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER gate_result BEFORE INSERT ON simulation_results
         FOR EACH ROW EXECUTE FUNCTION gate_result();",
    )
    .unwrap();
    let worker = env.spawn_worker().await;
    let id = new_job(&mut conn);
    queue_of(&env).enqueue(id).await.unwrap();
    #[derive(QueryableByName)]
    struct Writes {
        #[diesel(sql_type = BigInt)]
        last_value: i64,
    }
    // A has a result and is retrying to store it.
    eventually(Duration::from_secs(20), || async {
        let writes: Writes = diesel::sql_query("SELECT last_value FROM result_writes")
            .get_result(&mut env.db.connect())
            .ok()?;
        (writes.last_value >= 2).then_some(())
    })
    .await;
    // Its heartbeat (no longer refreshed while it retries) goes stale, and B takes the job.
    age_heartbeat(&mut conn, id, "1 hour");
    let b = claimed(store::claim(&mut conn, id, "B", Uuid::new_v4(), 3, WINDOW).unwrap()).lease;
    let taken = snapshot(&mut conn, id);
    conn.batch_execute("UPDATE result_gate SET closed = false").unwrap();
    // A's next try is fenced out; its delivery is then acknowledged.
    let inflight = Keys::new(env.queue.namespace.as_str()).inflight_set(&worker.name);
    eventually(Duration::from_secs(20), || async {
        let held: usize = env.queue.connection().scard(&inflight).ok()?;
        (held == 0).then_some(())
    })
    .await;
    let now = snapshot(&mut conn, id);
    assert_eq!(now, taken, "the job is B's, unchanged");
    assert_eq!(now.job["claim_token"], b.token.to_string());
    assert_eq!(now.results, 0);
    env.leaves_unfinished_jobs(
        "B is the test itself: its claim stays as it was, to show A wrote nothing",
    );
}

/// A result reads back the same whether an earlier release stored it (in the jsonb `result`
/// column) or this one (in the json `document` column), and a row holds exactly one of the two.
#[test]
fn a_result_reads_back_the_same_whether_an_earlier_release_stored_it_or_this_one() {
    let db = TestDb::migrated();
    let mut conn = db.connect();
    // A real result (so the test follows the result type as it grows), with a wealth at the
    // engine's cap, which jsonb would spell back as 301 digits.
    let body = job_body(50, 2).to_string();
    let request = SimulationRequest::from_json(body.as_bytes(), &RequestLimits::default())
        .expect("a valid request");
    let mut result = portfolio_engine::run(&request, 3, &portfolio_engine::RunOptions::default())
        .expect("a result");
    result.percentiles.p95[1] = 1e300;
    let document = serde_json::value::to_raw_value(&result).expect("a result serialises");
    let read = |conn: &mut PgConnection, id: Uuid| {
        let (job, row) = store::find_job(conn, store::Viewer::Operator, id).unwrap().unwrap();
        assert_eq!(job.id, id);
        row.expect("a succeeded job has its result").document().unwrap().get().to_owned()
    };
    let stored = |conn: &mut PgConnection| {
        let id = new_job(conn);
        let lease = claimed(store::claim(conn, id, "A", Uuid::new_v4(), 3, WINDOW).unwrap()).lease;
        assert_eq!(
            store::complete(conn, &lease, &document, Some(0.25), 1).unwrap().write,
            Write::Applied
        );
        id
    };
    let id = stored(&mut conn);
    assert_eq!(read(&mut conn, id), document.get(), "stored by this release");
    let columns = portfolio_tests::stored_result_columns(&mut conn, id);
    assert_eq!(columns.0, None, "this release leaves the jsonb column empty");
    assert_eq!(columns.1.as_deref(), Some(document.get()), "the json column holds it as written");
    // Stored as a release before the json column did (its INSERT names `result` only): jsonb
    // reorders the keys and respells the numbers, and the read writes them as the engine does.
    let earlier = stored(&mut conn);
    conn.batch_execute(&format!(
        "UPDATE simulation_results SET result = document::jsonb, document = NULL \
         WHERE simulation_id = '{earlier}'"
    ))
    .unwrap();
    let (jsonb, _) = portfolio_tests::stored_result_columns(&mut conn, earlier);
    assert_ne!(jsonb.as_deref(), Some(document.get()), "jsonb respells the document");
    assert_eq!(read(&mut conn, earlier), document.get(), "stored by an earlier release");
    // Neither, or both: refused.
    for (what, set) in
        [("neither", "result = NULL"), ("both", "result = document::jsonb, document = document")]
    {
        let err = conn
            .batch_execute(&format!(
                "UPDATE simulation_results SET {set} WHERE simulation_id = '{}'",
                if what == "neither" { earlier } else { id }
            ))
            .expect_err(what);
        assert!(err.to_string().contains("simulation_results_one_document"), "{what}: {err}");
    }
}

#[derive(QueryableByName)]
struct Prepared {
    #[diesel(sql_type = diesel::sql_types::Text)]
    statement: String,
}

/// The statements of a job's hot path (record, claim, store the result) are prepared once per
/// connection and reused, not parsed and planned at every call as diesel does with an
/// `sql_query` or an `UPDATE`: after four jobs, the session holds one prepared statement of
/// each (the submit's wait for the flush and the job's read among them; the submit's quota lock
/// is inside its statement, and a submit whose commit waits for the flush shares it), and the
/// four jobs went the whole way.
#[test]
fn a_jobs_hot_statements_are_planned_once_per_connection() {
    let db = TestDb::migrated();
    let mut conn = db.connect();
    let result = serde_json::json!({ "success_probability": 0.5 });
    for flush in [Flush::Separately, Flush::WithCommit, Flush::Separately, Flush::WithCommit] {
        let id = new_job_flushed(&mut conn, flush);
        if flush == Flush::Separately {
            assert!(store::await_durable_job(&mut conn, id).unwrap());
        }
        let lease =
            claimed(store::claim(&mut conn, id, "A", Uuid::new_v4(), 3, WINDOW).unwrap()).lease;
        assert_eq!(lease.attempt, 1);
        assert_eq!(
            store::complete(&mut conn, &lease, &raw(&result), Some(0.5), 3).unwrap().write,
            Write::Applied
        );
        let done = snapshot(&mut conn, id);
        assert_eq!(
            (done.job["status"].as_str(), done.audits, done.results),
            (Some("succeeded"), 3, 1)
        );
        let (job, stored) =
            store::find_job(&mut conn, store::Viewer::Tenant(TEST_TENANT), id).unwrap().unwrap();
        let document = stored.expect("its result").document().unwrap();
        let document: serde_json::Value = serde_json::from_str(document.get()).unwrap();
        assert_eq!((job.id, document), (id, result.clone()));
    }
    let prepared: Vec<String> = diesel::sql_query("SELECT statement FROM pg_prepared_statements")
        .load::<Prepared>(&mut conn)
        .unwrap()
        .into_iter()
        .map(|p| p.statement)
        .collect();
    for (what, marker) in [
        ("the submit", "WITH counted AS"),
        ("the claim", "WITH claimed AS"),
        ("the stored result", "WITH ended AS"),
        ("the wait for the flush", "commit_barriers"),
        (
            "the job's read, a waiting submit's answer",
            "\"simulation_results\".\"document\", \"simulation_results\".\"result\"",
        ),
    ] {
        let copies = prepared.iter().filter(|s| s.contains(marker)).count();
        assert_eq!(copies, 1, "{what} should be prepared once and reused; prepared: {prepared:#?}");
    }
    // The submit takes its quota lock inside its one statement, not in a round trip of its own.
    assert!(
        !prepared.iter().any(|s| s.contains("pg_advisory_xact_lock")),
        "a separate lock statement: {prepared:#?}"
    );
    // The barrier keeps one row per backend, however often it runs (twice here: once for each
    // job whose commit did not wait for the flush).
    let barriers: Vec<(i32, i64)> =
        diesel::sql_query("SELECT backend_pid, flushes FROM commit_barriers")
            .load::<Barrier>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|b| (b.backend_pid, b.flushes))
            .collect();
    let pid: Barrier =
        diesel::sql_query("SELECT pg_backend_pid() % 65536 AS backend_pid, 0::int8 AS flushes")
            .get_result(&mut conn)
            .unwrap();
    assert_eq!(barriers, vec![(pid.backend_pid, 1)]);
}

#[derive(diesel::QueryableByName)]
struct Barrier {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    backend_pid: i32,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    flushes: i64,
}

/// A result as the worker binds it: serialised once.
fn raw(result: &serde_json::Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(result).expect("a JSON value serialises")
}
