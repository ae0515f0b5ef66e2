//! Redis that survives a node (issue 12, part 3), with real processes: the API and a worker
//! reach Redis through Sentinels and follow a failover when the master is killed; and they
//! reach a `redis-server` that speaks only TLS, trusting a CA made in the test.
//!
//! The Sentinels here decide faster than in production: the master is thought down after
//! 1000 ms without an answer (docker-compose.yml: 5000 ms), failover timeout 10 s, quorum 2.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::Connection;
use portfolio_tests::processes::{
    ApiProc, LogDir, WorkerProc, accepted_id, assert_contract, fault_lock, job_body, job_record,
    job_records, wait_settled,
};
use portfolio_tests::throwaway::{Relay, ThrowawayRedis, ThrowawaySentinel, TlsFiles};
use portfolio_tests::{TestDb, TestEnv, TestQueue, eventually};
use uuid::Uuid;

const SERVICE: &str = "mymaster";

/// The port the Sentinel names as master of [`SERVICE`].
fn master_port(sentinel: &ThrowawaySentinel) -> Option<u16> {
    let (_, port): (String, u16) =
        sentinel.query(redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(SERVICE)).ok()?;
    Some(port)
}

/// Waits until every Sentinel knows both replicas and the two other Sentinels: before that a
/// failover could not be agreed on.
async fn until_sentinels_agree(sentinels: &[ThrowawaySentinel]) {
    eventually(Duration::from_secs(30), || async {
        for sentinel in sentinels {
            let replicas: Vec<redis::Value> =
                sentinel.query(redis::cmd("SENTINEL").arg("replicas").arg(SERVICE)).ok()?;
            let others: Vec<redis::Value> =
                sentinel.query(redis::cmd("SENTINEL").arg("sentinels").arg(SERVICE)).ok()?;
            (replicas.len() == 2 && others.len() == 2).then_some(())?;
        }
        Some(())
    })
    .await;
}

/// What one submit of the steady stream got.
struct Submit {
    at: Instant,
    accepted: Option<Uuid>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_ha_killing_the_master_promotes_a_replica_and_every_accepted_job_ends_once() {
    let _lock = fault_lock();
    let mut master = ThrowawayRedis::start();
    // One replica replicates through a relay the test can cut, so that the master's last
    // writes surely never reach a replica (replication is asynchronous: in production some
    // may not either). The other replicates directly.
    let relay = Relay::start(master.port).await;
    let replicas =
        [ThrowawayRedis::replica_of(relay.port), ThrowawayRedis::replica_of(master.port)];
    let (sentinels, url) = sentinels_watching(master.port).await;

    let mut env = TestEnv::with(TestDb::migrated(), TestQueue::on(&master.url()));
    env.set("REDIS_URL", &url)
        .set("WORKER_CONCURRENCY", 1)
        .set("WORKER_LIGHT_CONCURRENCY", 1)
        .set("WORKER_THREADS", 1);
    let (vars, logs) = (env.vars(), LogDir::new());
    let api = ApiProc::spawn(&vars, &logs).await;
    let worker = WorkerProc::spawn(&vars, &logs, "a").await;

    // A steady stream of small submits, every 250 ms, for the whole test.
    let submits = Arc::new(Mutex::new(Vec::<Submit>::new()));
    let stream = {
        let (client, submits) = ((*api).clone(), submits.clone());
        tokio::spawn(async move {
            loop {
                let at = Instant::now();
                let accepted = match client.try_submit(&job_body(1_000, 10)).await {
                    Ok(r) if r.status() == 202 => r
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|b| b["id"].as_str()?.parse().ok()),
                    _ => None,
                };
                submits.lock().unwrap().push(Submit { at, accepted });
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let accepted = |since: Option<Instant>| -> Vec<Uuid> {
        let submits = submits.lock().unwrap();
        submits
            .iter()
            .filter(|s| since.is_none_or(|t| s.at >= t))
            .filter_map(|s| s.accepted)
            .collect()
    };
    let succeeded = |ids: &[Uuid]| -> usize {
        let Ok(mut conn) = diesel::PgConnection::establish(&env.db.url) else { return 0 };
        job_records(&mut conn)
            .iter()
            .filter(|r| r.status == "succeeded" && ids.contains(&r.id))
            .count()
    };
    eventually(Duration::from_secs(30), || async {
        (succeeded(&accepted(None)) >= 4).then_some(())
    })
    .await;

    // The one worker slot is busy with a long job, so a job submitted now waits in the
    // master's ready list, which no replica will ever see.
    let long = api.submit_ok(&job_body(60_000, 40)).await;
    eventually(Duration::from_secs(30), || async {
        job_record(&env.db.url, long).is_some_and(|r| r.status == "running").then_some(())
    })
    .await;
    relay.cut();
    let unreplicated = api.submit_ok(&job_body(1_000, 10)).await;
    master.stop();
    let killed = Instant::now();

    let promoted = eventually(Duration::from_secs(30), || async {
        master_port(&sentinels[0]).filter(|p| *p != master.port)
    })
    .await;
    let failover = killed.elapsed();
    assert!(
        replicas.iter().any(|r| r.port == promoted),
        "the Sentinels named {promoted}, not a replica"
    );
    // What the test leaves behind is checked on the master that is left.
    env.queue.redis_url = format!("redis://127.0.0.1:{promoted}");

    // Resumed: a job accepted after the kill has run to its end.
    eventually(Duration::from_secs(30), || async {
        (succeeded(&accepted(Some(killed))) >= 1).then_some(())
    })
    .await;
    let resumed = killed.elapsed();
    assert!(resumed < Duration::from_secs(30), "resumed {resumed:?} after the kill");
    eprintln!("failover (kill → new master named): {failover:?}; resumed: {resumed:?}");

    // The job the new master never had was pushed again by the reconciler and ran.
    let record = eventually(Duration::from_secs(60), || async {
        job_record(&env.db.url, unreplicated).filter(|r| r.status == "succeeded")
    })
    .await;
    assert_eq!(record.starts, 1, "{record:?}");
    let log = api.proc.log();
    assert!(
        log.lines().any(|l| l.contains("reconciler pushed a job nothing held")
            && l.contains(&unreplicated.to_string())),
        "the lost job was not re-pushed by the reconciler"
    );

    // Both processes resolved the master again (the first resolution is at start).
    for (label, log) in [("api", api.proc.log()), ("worker", worker.proc.log())] {
        let resolutions = log.matches("Redis master (re)resolved").count();
        assert!(resolutions >= 2, "{label} resolved the master {resolutions} time(s)");
    }

    // A few more after the failover, then every accepted job ends exactly once.
    let count = accepted(None).len();
    eventually(Duration::from_secs(30), || async {
        (accepted(None).len() >= count + 4).then_some(())
    })
    .await;
    stream.abort();
    let _ = stream.await;
    let mut ids = accepted(None);
    ids.extend([long, unreplicated]);
    wait_settled(&env.db.url, Duration::from_secs(120)).await;
    let records = assert_contract(&env.db.url, &ids);
    for r in &records {
        assert_eq!(r.status, "succeeded", "{r:?}");
    }
    let refused = submits.lock().unwrap().iter().filter(|s| s.accepted.is_none()).count();
    eprintln!("{} accepted, {refused} refused during the run", ids.len());
    drop(worker);
}

/// Writes a CA and a certificate for `localhost` / 127.0.0.1 signed by it into `dir`.
fn make_certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "portfolio-mc test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params")
            .signed_by(&server_key, &ca)
            .expect("server certificate");
    let (ca_file, cert, key) = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&ca_file, ca.pem()).expect("write ca.pem");
    std::fs::write(&cert, server.pem()).expect("write server.pem");
    std::fs::write(&key, server_key.serialize_pem()).expect("write server.key");
    (ca_file, cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_ha_the_api_and_a_worker_run_a_job_over_tls_trusting_a_private_ca() {
    let _lock = fault_lock();
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = make_certificates(dir.path());
    let Some(redis) = ThrowawayRedis::start_tls(&TlsFiles { cert: &cert, key: &key, ca: &ca })
    else {
        eprintln!("SKIPPED: this redis-server was built without TLS (it refuses --tls-port)");
        return;
    };
    let url = format!("rediss://localhost:{}", redis.port);
    // Without the CA the certificate is not trusted: nothing works.
    {
        let client = redis::Client::open(url.as_str()).expect("client");
        assert!(
            client.get_multiplexed_async_connection().await.is_err(),
            "an unknown CA was trusted"
        );
    }
    let env = TestEnv::with(TestDb::migrated(), TestQueue::on_tls(&url, &ca));
    let (vars, logs) = (env.vars(), LogDir::new());
    let api = ApiProc::spawn(&vars, &logs).await;
    let _worker = WorkerProc::spawn(&vars, &logs, "a").await;
    let id = api.submit_ok(&job_body(2_000, 10)).await;
    wait_settled(&env.db.url, Duration::from_secs(60)).await;
    let records = assert_contract(&env.db.url, &[id]);
    assert_eq!(records[0].status, "succeeded", "{:?}", records[0]);
    // The queue really lives on the TLS server: the worker registered there.
    let client = env.queue.client().expect("TLS client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("TLS connection");
    let workers: i64 = redis::cmd("ZCARD")
        .arg(env.queue.keys().workers_set())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(workers >= 1, "no worker registered on the TLS server");
}

/// Three Sentinels watching the master on `master_port` (down after 1 s, quorum 2), once they
/// agree on it, and the Sentinel URL of the service.
async fn sentinels_watching(master_port: u16) -> (Vec<ThrowawaySentinel>, String) {
    let sentinels: Vec<ThrowawaySentinel> = (0..3)
        .map(|_| {
            ThrowawaySentinel::start(
                master_port,
                SERVICE,
                Duration::from_millis(1000),
                Duration::from_secs(10),
            )
        })
        .collect();
    until_sentinels_agree(&sentinels).await;
    let hosts: Vec<String> = sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
    let url = format!("redis+sentinel://{}/{SERVICE}", hosts.join(","));
    (sentinels, url)
}

/// A master, two replicas and three Sentinels watching it (down after 1 s, quorum 2); the
/// Sentinel URL of the service.
async fn sentinel_cluster() -> (ThrowawayRedis, [ThrowawayRedis; 2], Vec<ThrowawaySentinel>, String)
{
    let master = ThrowawayRedis::start();
    let replicas =
        [ThrowawayRedis::replica_of(master.port), ThrowawayRedis::replica_of(master.port)];
    let (sentinels, url) = sentinels_watching(master.port).await;
    (master, replicas, sentinels, url)
}

/// The first command on a connection that Redis dropped (here by restarting) is answered, not
/// failed: it is sent once more on a new connection. The API makes a connection per server
/// thread, and a request whose Redis call fails holds back its API's Redis calls for seconds.
#[tokio::test]
async fn redis_ha_the_first_command_after_redis_restarted_is_answered() {
    let mut redis = ThrowawayRedis::start();
    let env = TestEnv::with(TestDb::migrated(), TestQueue::on(&redis.url()));
    let mut conn = portfolio_shared::queue::connect(&env.settings().queue).expect("connect");
    let ping = || redis::cmd("PING").to_owned();
    let _: String = ping().query_async(&mut conn).await.expect("a first PING");
    for round in 1..=2 {
        redis.restart();
        let answer: redis::RedisResult<String> = ping().query_async(&mut conn).await;
        assert_eq!(answer.expect("the first PING after a restart"), "PONG", "restart {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_ha_a_connection_follows_a_switchover_that_keeps_the_old_master_alive() {
    let _lock = fault_lock();
    let (master, replicas, sentinels, url) = sentinel_cluster().await;
    let (mut env, conn) = probed_connection(&master, &url).await;

    // A switchover: the old master stays up and becomes a replica (writes there: READONLY).
    let _: () = sentinels[0]
        .query(redis::cmd("SENTINEL").arg("failover").arg(SERVICE))
        .expect("SENTINEL FAILOVER");
    let promoted = eventually(Duration::from_secs(30), || async {
        master_port(&sentinels[0]).filter(|p| *p != master.port)
    })
    .await;
    let role = |port: u16| -> Option<String> {
        let mut c =
            redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?.get_connection().ok()?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c).ok()?;
        match role.first()? {
            redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    };
    eventually(Duration::from_secs(30), || async {
        (role(master.port).as_deref() == Some("slave")).then_some(())
    })
    .await;

    // The same connection writes on: to the promoted master, within a few tries.
    eventually(Duration::from_secs(30), || async {
        let mut conn = conn.clone();
        probe("after").query_async::<()>(&mut conn).await.ok()
    })
    .await;
    assert_probe_reached(&mut env, &replicas, promoted);
}

/// A command whose reply was lost with its connection may have run: it is sent once more only
/// if it bears a second run. A script of apalis-redis's (here a stand-in that counts its runs,
/// as its fetch moves ids into the worker's in-flight set) is not: its caller gets the error,
/// and the script ran once. One of ours, a push, is: its second run finds the job's entry.
#[tokio::test]
async fn redis_ha_a_lost_reply_is_sent_again_only_for_a_command_that_bears_a_second_run() {
    let redis = ThrowawayRedis::start();
    let counter = format!("pmc-lost-reply-{}", Uuid::now_v7());
    let stand_in = redis::Script::new("return redis.call('INCR', KEYS[1])");
    let mut direct = redis::Client::open(redis.url()).unwrap().get_connection().unwrap();
    // Loaded beforehand, so the call is one EVALSHA and not a NOSCRIPT answer, then a load.
    let sha: String = stand_in.prepare_invoke().load(&mut direct).unwrap();
    assert_eq!(sha, stand_in.get_hash());

    let relay = Relay::start_losing_one_reply(redis.port, counter.clone().into_bytes()).await;
    let mut env = TestEnv::with(TestDb::migrated(), TestQueue::on(&redis.url()));
    env.set("REDIS_URL", format!("redis://127.0.0.1:{}", relay.port));
    let mut conn = portfolio_shared::queue::connect(&env.settings().queue).expect("connect");
    let answer: redis::RedisResult<i64> = stand_in.key(&counter).invoke_async(&mut conn).await;
    let runs: i64 = redis::cmd("GET").arg(&counter).query(&mut direct).unwrap();
    assert!(answer.is_err(), "the lost reply was made up by a second run: {answer:?}");
    assert_eq!(runs, 1, "the script ran {runs} times for one call");

    // A push whose reply is lost is sent again, and the job has one entry.
    let job = Uuid::now_v7();
    let relay = Relay::start_losing_one_reply(redis.port, job.to_string().into_bytes()).await;
    env.set("REDIS_URL", format!("redis://127.0.0.1:{}", relay.port));
    let settings = env.settings();
    let queue = portfolio_shared::queue::Queue::new(
        portfolio_shared::queue::connect(&settings.queue).expect("connect"),
        &settings.queue,
        &settings.worker,
    );
    // Another job's push first, so the push script is loaded before the reply goes missing.
    let before = Uuid::now_v7();
    queue.push(before, Duration::ZERO, None).await.expect("a push");
    let outcome = queue.push(job, Duration::ZERO, None).await.expect("a push sent once more");
    assert_eq!(outcome, portfolio_shared::queue::PushOutcome::AlreadyQueued, "the first run's");
    let ready: Vec<String> = redis::cmd("LRANGE")
        .arg(env.queue.keys().ready_list())
        .arg(0)
        .arg(-1)
        .query(&mut direct)
        .unwrap();
    let entries = [before, job].map(|id| portfolio_shared::queue::task_id(id).to_string());
    assert_eq!(ready, entries, "one entry each");
    env.leaves_unfinished_jobs("the pushes name jobs that have no rows: only their entries count");
}

/// A master that hangs rather than dies (stopped, or cut off without a reset) is left for the
/// master the Sentinels promote, by a caller that gives up on each call after 1.5 s as the API
/// does (before redis-rs's own 5 s timeout could fire). It used to stay on the hung master for
/// as long as it hung.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_ha_a_hung_master_is_left_for_the_promoted_one_by_a_caller_that_gives_up_first() {
    let _lock = fault_lock();
    let (master, replicas, sentinels, url) = sentinel_cluster().await;
    let (mut env, conn) = probed_connection(&master, &url).await;

    master.pause();
    // Resumed however the test ends: the queue's clean-up talks to it.
    let _resume = Resumed(&master);
    let promoted = eventually(Duration::from_secs(30), || async {
        master_port(&sentinels[0]).filter(|p| *p != master.port)
    })
    .await;
    eventually(Duration::from_secs(30), || async {
        let mut conn = conn.clone();
        let cmd = probe("after");
        let call = cmd.query_async::<()>(&mut conn);
        tokio::time::timeout(Duration::from_millis(1500), call).await.ok()?.ok()
    })
    .await;
    assert_probe_reached(&mut env, &replicas, promoted);
}

/// Resumes a paused server when dropped, however the test ends.
struct Resumed<'a>(&'a ThrowawayRedis);

impl Drop for Resumed<'_> {
    fn drop(&mut self) {
        self.0.resume();
    }
}

/// The probe key's write, of `value`.
fn probe(value: &'static str) -> redis::Cmd {
    redis::cmd("SET").arg("pmc-ha-probe").arg(value).to_owned()
}

/// A test environment whose queue reaches Redis through the Sentinels at `url`, and its
/// connection, which has written the probe once to the first `master`.
async fn probed_connection(
    master: &ThrowawayRedis,
    url: &str,
) -> (TestEnv, portfolio_shared::queue::QueueConn) {
    let mut env = TestEnv::with(TestDb::migrated(), TestQueue::on(&master.url()));
    env.set("REDIS_URL", url);
    let mut conn = portfolio_shared::queue::connect(&env.settings().queue).expect("connect");
    let _: () = probe("before").query_async(&mut conn).await.expect("a write to the first master");
    (env, conn)
}

/// The probe's last write reached the replica the Sentinels promoted (on port `promoted`),
/// where the environment's clean-up now looks; the probe is removed.
fn assert_probe_reached(env: &mut TestEnv, replicas: &[ThrowawayRedis], promoted: u16) {
    let mut new_master = redis::Client::open(format!("redis://127.0.0.1:{promoted}"))
        .and_then(|c| c.get_connection())
        .expect("the promoted master");
    let value: String = redis::cmd("GET").arg("pmc-ha-probe").query(&mut new_master).unwrap();
    assert_eq!(value, "after");
    assert!(replicas.iter().any(|r| r.port == promoted), "promoted {promoted}");
    env.queue.redis_url = format!("redis://127.0.0.1:{promoted}");
    let _: () = redis::cmd("DEL").arg("pmc-ha-probe").query(&mut new_master).unwrap();
}

/// A waited submit (`Prefer: wait=5`) of a small job: its status, and the job's id when it was
/// accepted (recorded), whether or not it ended within the wait.
async fn waited_submit(api: &ApiProc) -> (u16, Option<Uuid>) {
    let sent = api.client.post(api.url("/simulations")).header("Prefer", "wait=5");
    let Ok(response) = sent.json(&job_body(1_000, 10)).send().await else {
        return (0, None);
    };
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    let id = matches!(status, 200 | 202).then(|| accepted_id(&body));
    (status, id)
}

/// An ElastiCache primary endpoint after its node was lost: the name now leads to the replica
/// promoted in its place, while the connections made to the old node go silent (no reset, no
/// reply). The API and a worker on a plain `redis://` URL leave the silent connections for new
/// ones, subscriptions included. Waited submits are answered with their results, which takes
/// the worker's doorbell (its own polls are a minute apart) and the API's subscription to
/// finished jobs (its waiters re-read Postgres a minute apart) on the new server; and every
/// job accepted meanwhile ends exactly once. They used to stay on the silent connections until
/// the kernel gave up on them (a quarter of an hour), and every job queued meanwhile waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_ha_a_silent_server_is_left_when_its_name_moves_to_another() {
    let _lock = fault_lock();
    let (old, new) = (ThrowawayRedis::start(), ThrowawayRedis::start());
    let relay = Relay::start_movable(old.port).await;
    let mut env = TestEnv::with(TestDb::migrated(), TestQueue::on(&old.url()));
    env.set("REDIS_URL", format!("redis://127.0.0.1:{}", relay.port));
    env.set("WORKER_POLL_INTERVAL_MS", 60_000);
    env.set("WAIT_RECHECK_MS", 60_000);
    env.set("RECONCILE_INTERVAL_SECS", 1);
    let (vars, logs) = (env.vars(), LogDir::new());
    let api = ApiProc::spawn(&vars, &logs).await;
    let _worker = WorkerProc::spawn(&vars, &logs, "a").await;
    let (status, first) = waited_submit(&api).await;
    assert_eq!(status, 200, "before the move");
    let mut accepted: Vec<Uuid> = first.into_iter().collect();

    relay.move_silently(new.port);
    // The queue's keys now live on the new server, where the clean-up looks.
    env.queue.redis_url = new.url();
    let mut answered = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    while answered < 3 {
        assert!(Instant::now() < deadline, "waited submits still not answered with results");
        let (status, id) = waited_submit(&api).await;
        accepted.extend(id);
        // Three in a row: each needs both subscriptions, not a fetch made on reconnecting.
        answered = if status == 200 { answered + 1 } else { 0 };
    }
    wait_settled(&env.db.url, Duration::from_secs(60)).await;
    for record in assert_contract(&env.db.url, &accepted) {
        assert_eq!(record.status, "succeeded", "{record:?}");
    }
}

/// A server slow to accept a connection (1.7 s here), reached by callers that give up on each
/// call after 1.5 s, as the API's requests do: the connection is made all the same, by the
/// calls that follow, and answers. A new connection that has never answered is given time to
/// connect before an abandoned call condemns it; without that, each abandoned call threw the
/// connect away and began another, and the queue stayed unreachable for as long as the
/// server stayed that slow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_ha_a_server_slow_to_accept_is_reached_by_callers_that_give_up_first() {
    let redis = ThrowawayRedis::start();
    let relay = Relay::start_slow_to_connect(redis.port, Duration::from_millis(1700)).await;
    let mut env = TestEnv::with(TestDb::migrated(), TestQueue::on(&redis.url()));
    env.set("REDIS_URL", format!("redis://127.0.0.1:{}", relay.port));
    let conn = portfolio_shared::queue::connect(&env.settings().queue).expect("connect");
    let started = Instant::now();
    let mut tries = 0;
    eventually(Duration::from_secs(20), || {
        tries += 1;
        let mut conn = conn.clone();
        async move {
            let ping = redis::cmd("PING");
            let call = ping.query_async::<String>(&mut conn);
            tokio::time::timeout(Duration::from_millis(1500), call).await.ok()?.ok()
        }
    })
    .await;
    eprintln!("answered after {:?} and {tries} calls", started.elapsed());
}
