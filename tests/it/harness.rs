//! The test harness checks itself: what `TestEnv` reports, when dropped, as left behind.

use diesel::RunQueryDsl;
use portfolio_shared::queue::{self, Queue};
use portfolio_tests::TestEnv;
use portfolio_tests::leftovers::left_behind;
use redis::Commands;
use uuid::Uuid;

fn insert_job(env: &TestEnv, status: &str) -> Uuid {
    let id = Uuid::now_v7();
    let finished = if status == "queued" { "NULL" } else { "now()" };
    diesel::sql_query(format!(
        "INSERT INTO simulations (id, status, request, seed, attempts, finished_at, owner) \
         VALUES ($1, '{status}', '{{}}', 1, 1, {finished}, 'test')"
    ))
    .bind::<diesel::sql_types::Uuid, _>(id)
    .execute(&mut env.db.connect())
    .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_reports_unfinished_jobs_and_entries_of_work_but_not_a_finished_jobs_delivery()
 {
    let env = TestEnv::new();
    env.leaves_unfinished_jobs("it leaves jobs and entries behind to see them reported");
    let check = || left_behind(&env.db.url, &env.queue.redis_url, &env.queue.keys()).unwrap();
    assert_eq!(check(), Vec::<String>::new(), "a fresh environment leaves nothing");

    let settings = env.settings();
    let q = Queue::new(queue::connect(&settings.queue).unwrap(), &settings.queue, &settings.worker);
    let waiting = insert_job(&env, "queued");
    q.enqueue(waiting).await.unwrap();
    let finished = insert_job(&env, "failed");
    let keys = env.queue.keys();
    let mut redis = env.queue.connection();
    // A worker stopped between recording the outcome and acknowledging the delivery.
    let _: () = redis.sadd(keys.inflight_set("w1"), queue::task_id(finished).to_string()).unwrap();
    let _: () = redis.zadd(keys.scheduled_set(), "not-a-job", 1).unwrap();

    let left = check();
    let waiting_task = queue::task_id(waiting).to_string();
    assert!(left.contains(&format!("job {waiting} is queued")), "{left:?}");
    assert!(
        left.contains(&format!("the ready list holds {waiting_task} (job {waiting}, queued)")),
        "{left:?}"
    );
    assert!(
        left.contains(&"the scheduled set holds not-a-job (not a job's id)".to_owned()),
        "{left:?}"
    );
    assert_eq!(left.len(), 3, "a finished job's delivery is not work left: {left:?}");
}

#[test]
fn dropping_an_environment_that_left_a_job_unfinished_fails_the_test() {
    let env = TestEnv::new();
    let waiting = insert_job(&env, "queued");
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(env)));
    let message = dropped.expect_err("the drop did not fail");
    let message = message.downcast_ref::<String>().expect("a formatted panic message");
    assert!(message.contains(&format!("job {waiting} is queued")), "{message}");
    assert!(message.contains("leaves_unfinished_jobs"), "{message}");
}
