//! The queue plumbing the fault handling stands on (our push, the reconciler's view of what the
//! queue holds, giving back an ended worker's claims), and the job lifecycle guarantees that
//! need a running job: cancellation between batches and progress. In process, against the
//! shared Redis and Postgres (each test with its own namespace and database).

use std::time::{Duration, Instant};

use portfolio_engine::request::{RequestLimits, SimulationRequest};
use portfolio_shared::queue::{self, PushOutcome, Queue};
use portfolio_shared::store::{self, models::NewSimulation};
use portfolio_tests::processes::{assert_contract, audit_rows, job_body, job_record};
use portfolio_tests::{TEST_TENANT, TestEnv, eventually};
use redis::Commands;
use uuid::Uuid;

fn queue_of(env: &TestEnv) -> Queue {
    let settings = env.settings();
    Queue::new(queue::connect(&settings.queue).unwrap(), &settings.queue, &settings.worker)
}

fn ready(env: &TestEnv) -> Vec<String> {
    env.queue.connection().lrange(env.queue.keys().ready_list(), 0, -1).unwrap()
}

fn scheduled_at(env: &TestEnv, id: Uuid) -> Option<f64> {
    env.queue
        .connection()
        .zscore(env.queue.keys().scheduled_set(), queue::task_id(id).to_string())
        .unwrap()
}

/// A withdrawal takes out exactly the entries asked for, ready or scheduled, with their
/// payloads, and leaves the others in their order: a few ids one by one, many (a sweep's
/// units) in one pass over the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_queue_withdrawn_entries_leave_the_queue_and_the_rest_keep_their_order() {
    let env = TestEnv::new();
    env.leaves_unfinished_jobs("it pushes ids with no job row straight to the queue");
    let q = queue_of(&env);
    let jobs: Vec<Uuid> = (0..30).map(|_| Uuid::now_v7()).collect();
    for job in &jobs {
        assert_eq!(q.enqueue(*job).await.unwrap(), PushOutcome::Pushed);
    }
    let later = Uuid::now_v7();
    q.push(later, Duration::from_secs(600), None).await.unwrap();
    let entry = |id: &Uuid| queue::task_id(*id).to_string();
    let data = |env: &TestEnv| -> usize {
        let ids: Vec<String> = env.queue.connection().hkeys(env.queue.keys().data_hash()).unwrap();
        ids.len()
    };
    assert_eq!(data(&env), 31);

    // A few, one of them scheduled and one never queued.
    let few = [jobs[0], jobs[7], later, Uuid::now_v7()];
    assert_eq!(q.withdraw(&few).await.unwrap(), 3);
    assert_eq!(scheduled_at(&env, later), None);
    let mut left: Vec<Uuid> = jobs.iter().copied().filter(|j| !few.contains(j)).collect();
    assert_eq!(ready(&env), left.iter().map(entry).collect::<Vec<_>>());
    // Many: every other one that is left.
    let many: Vec<Uuid> = left.iter().copied().step_by(2).collect();
    assert_eq!(q.withdraw(&many).await.unwrap(), many.len() as u64);
    left.retain(|j| !many.contains(j));
    assert_eq!(ready(&env), left.iter().map(entry).collect::<Vec<_>>());
    assert_eq!(data(&env), left.len());
    // Asked again: nothing is there to take.
    assert_eq!(q.withdraw(&many).await.unwrap(), 0);
    assert_eq!(ready(&env).len(), left.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_queue_a_job_pushed_again_after_its_delivery_gets_one_new_entry_and_never_two() {
    let env = TestEnv::new();
    env.leaves_unfinished_jobs(
        "it pushes ids with no job row straight to the queue to test the scripts",
    );
    let q = queue_of(&env);
    let keys = env.queue.keys();
    let mut redis = env.queue.connection();
    let id = Uuid::now_v7();
    let task = queue::task_id(id).to_string();

    assert_eq!(q.enqueue(id).await.unwrap(), PushOutcome::Pushed);
    assert_eq!(ready(&env), vec![task.clone()], "a due job goes straight to the ready list");
    assert_eq!(q.enqueue(id).await.unwrap(), PushOutcome::AlreadyQueued);
    assert_eq!(ready(&env).len(), 1);

    // Delivered and acknowledged, as apalis-redis leaves it: the payload stays behind. Its own
    // push (HSETNX) would now write nothing; ours gives the job a new entry.
    let _: () = redis.lpop(keys.ready_list(), None).unwrap();
    let _: () = redis.sadd(keys.done_set(), &task).unwrap();
    assert_eq!(q.push(id, Duration::from_secs(60), None).await.unwrap(), PushOutcome::Pushed);
    let later = scheduled_at(&env, id).expect("scheduled");
    assert!(later >= (queue::epoch_seconds() + 59) as f64);
    // Pushed again for sooner: the one entry moves earlier.
    assert_eq!(q.enqueue(id).await.unwrap(), PushOutcome::AlreadyQueued);
    assert!(scheduled_at(&env, id).unwrap() <= queue::epoch_seconds() as f64);
    assert!(ready(&env).is_empty());

    // Claimed by a worker: held, except for that worker's own re-push.
    let _: () = redis.zrem(keys.scheduled_set(), &task).unwrap();
    let _: () = redis.zadd(keys.workers_set(), "w1", queue::epoch_seconds()).unwrap();
    let _: () = redis.sadd(keys.inflight_set("w1"), &task).unwrap();
    assert_eq!(q.enqueue(id).await.unwrap(), PushOutcome::Held);
    assert!(!q.unheld(&[id]).await.unwrap().contains(&id));
    assert_eq!(q.push(id, Duration::ZERO, Some("w1")).await.unwrap(), PushOutcome::Pushed);
    assert_eq!(ready(&env), vec![task]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_queue_the_reconciler_sees_only_jobs_that_nothing_holds() {
    let env = TestEnv::new();
    env.leaves_unfinished_jobs(
        "it pushes ids with no job row straight to the queue to test the scripts",
    );
    let q = queue_of(&env);
    let keys = env.queue.keys();
    let mut redis = env.queue.connection();
    let (listed, later, claimed, nowhere) =
        (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    q.enqueue(listed).await.unwrap();
    q.push(later, Duration::from_secs(30), None).await.unwrap();
    let _: () = redis.zadd(keys.workers_set(), "dead", 1).unwrap();
    let _: () = redis.sadd(keys.inflight_set("dead"), queue::task_id(claimed).to_string()).unwrap();
    let missing = q.unheld(&[listed, later, claimed, nowhere]).await.unwrap();
    // A registered worker's claim counts even when the worker is dead: apalis-redis re-queues
    // it, and pushing it as well would make two entries.
    assert_eq!(missing, vec![nowhere]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_queue_an_ended_workers_claims_go_back_at_once_and_entries_without_data_are_dropped()
{
    let env = TestEnv::new();
    env.leaves_unfinished_jobs(
        "it pushes ids with no job row straight to the queue to test the scripts",
    );
    let q = queue_of(&env);
    let keys = env.queue.keys();
    let mut redis = env.queue.connection();
    let (claimed, running) = (Uuid::now_v7(), Uuid::now_v7());
    for id in [claimed, running] {
        q.enqueue(id).await.unwrap();
    }
    let _: () = redis.del(keys.ready_list()).unwrap();
    let set = keys.inflight_set("ended");
    let _: () = redis.zadd(keys.workers_set(), "ended", queue::epoch_seconds()).unwrap();
    for member in
        [queue::task_id(claimed).to_string(), queue::task_id(running).to_string(), "no-data".into()]
    {
        let _: () = redis.sadd(&set, member).unwrap();
    }
    let (requeued, dropped) = q.release_worker("ended", &[running]).await.unwrap();
    assert_eq!((requeued, dropped), (1, 1));
    assert_eq!(ready(&env), vec![queue::task_id(claimed).to_string()]);
    let exists: bool = redis.exists(&set).unwrap();
    assert!(!exists);
    let registered: Option<f64> = redis.zscore(keys.workers_set(), "ended").unwrap();
    assert!(registered.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_queue_a_recorded_job_whose_push_never_happened_is_pushed_by_the_reconciler() {
    let env = TestEnv::new();
    let _app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;
    let request = SimulationRequest::from_json(
        job_body(2_000, 10).to_string().as_bytes(),
        &RequestLimits::default(),
    )
    .unwrap();
    let json = request.to_json();
    let id = Uuid::now_v7();
    let mut conn = env.db.connect();
    store::insert_job(
        &mut conn,
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
        store::Flush::WithCommit,
    )
    .unwrap();
    // Quiet for the orphan window (3 s here) plus an interval, then pushed and run.
    eventually(Duration::from_secs(30), || async {
        (job_record(&env.db.url, id)?.status == "succeeded").then_some(())
    })
    .await;
    assert_contract(&env.db.url, &[id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_queue_a_running_job_reports_progress_and_stops_within_a_second_of_a_cancel() {
    let env = TestEnv::new();
    let app = env.spawn_app().await;
    let _worker = env.spawn_worker().await;
    let id = app.submit_ok(&job_body(1_000_000, 40)).await;
    let first = eventually(Duration::from_secs(30), || async {
        let job = app.job(id).await;
        (job["status"] == "running" && job["progress"]["done"].as_i64()? > 0).then_some(job)
    })
    .await;
    let total = first["progress"]["total"].as_i64().unwrap();
    assert!(total > first["progress"]["done"].as_i64().unwrap(), "{first}");
    // Progress moves while it runs.
    let done = first["progress"]["done"].as_i64().unwrap();
    eventually(Duration::from_secs(5), || async {
        (app.job(id).await["progress"]["done"].as_i64()? > done).then_some(())
    })
    .await;

    let asked = Instant::now();
    let response = app.client.delete(app.url(&format!("/simulations/{id}"))).send().await.unwrap();
    assert_eq!(response.status(), 202);
    // Asked again before it stops (or after): the same answer, and one request on record.
    let again = app.client.delete(app.url(&format!("/simulations/{id}"))).send().await.unwrap();
    assert!([202, 409].contains(&again.status().as_u16()), "{}", again.status());
    let job = app.wait_terminal(id, Duration::from_secs(5)).await;
    let stopped_after = asked.elapsed();
    assert_eq!(job["status"], "cancelled", "{job}");
    assert!(stopped_after < Duration::from_secs(1), "stopped {stopped_after:?} after the cancel");
    assert!(job["progress"]["done"].as_i64().unwrap() < total, "it ran to the end: {job}");
    let response = app.client.delete(app.url(&format!("/simulations/{id}"))).send().await.unwrap();
    assert_eq!(response.status(), 409);
    let events: Vec<String> = audit_rows(&env.db.url, id).into_iter().map(|r| r.event).collect();
    assert_eq!(events.iter().filter(|e| *e == "cancel_requested").count(), 1, "{events:?}");
    assert_contract(&env.db.url, &[id]);
}
