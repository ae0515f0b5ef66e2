//! The API's side of graceful shutdown: on SIGTERM it stops taking connections, answers the
//! requests already in flight (a submit half-way through its body is still recorded and
//! answered), and exits 0 within the grace — what ECS and Kubernetes expect of a task they stop.

use std::time::{Duration, Instant};

use portfolio_tests::processes::{ApiProc, LogDir, accepted_id, job_body, job_record};
use portfolio_tests::{TestEnv, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_on_sigterm_answers_the_submit_in_flight_then_refuses_connections_and_exits_0() {
    let mut env = TestEnv::new();
    env.leaves_unfinished_jobs("only the API runs: the accepted job waits for a worker");
    env.set("SHUTDOWN_GRACE_SECS", 6);
    let (vars, logs) = (env.vars(), LogDir::new());
    let mut api = ApiProc::spawn(&vars, &logs).await;
    let authority = api.address.trim_start_matches("http://").to_owned();

    // One connection, first served a whole request (so a server worker holds it), then sent a
    // submit whose headers have arrived but whose body has not: a request in flight.
    let mut stream = TcpStream::connect(&authority).await.expect("connect");
    let probe = format!("GET /health HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    stream.write_all(probe.as_bytes()).await.unwrap();
    let (status, _) = read_response(&mut stream).await;
    assert_eq!(status, 200);
    let body = job_body(1_000, 10).to_string();
    let (head, tail) = body.split_at(body.len() / 2);
    let headers = format!(
        "POST /simulations HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
        env.api_key(),
        body.len()
    );
    stream.write_all(headers.as_bytes()).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();

    api.proc.sigterm();
    let signalled = Instant::now();
    // The signal has been handled once the listener is closed.
    eventually(Duration::from_secs(5), || async {
        TcpStream::connect(&authority).await.is_err().then_some(())
    })
    .await;
    // A slow client: the rest of the body comes 2 s later, past actix's first forced-shutdown
    // check (1 s), so only a drain that lasts the grace lets it through. A delay, not a wait.
    tokio::time::sleep(Duration::from_secs(2)).await;

    stream.write_all(tail.as_bytes()).await.unwrap();
    let (status, json) = tokio::time::timeout(Duration::from_secs(10), read_response(&mut stream))
        .await
        .expect("an answer within the grace");
    assert_eq!(status, 202, "the submit in flight was accepted: {json}");
    let id = accepted_id(&json);
    drop(stream);

    let status = api.proc.wait_exit(Duration::from_secs(8)).await;
    assert!(status.success(), "exit status {status}");
    assert!(signalled.elapsed() < Duration::from_secs(6), "took {:?}", signalled.elapsed());
    let record = job_record(&env.db.url, id).expect("the accepted job is recorded");
    assert_eq!(record.status, "queued", "{record:?}");
}

/// Reads one HTTP/1.1 response (status and body; the body sized by Content-Length).
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0; 1024];
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed mid-response: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let status = head[9..12].parse().expect("status code");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().expect("content-length"));
    while buf.len() < header_end + length {
        let mut chunk = [0; 1024];
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    (status, String::from_utf8_lossy(&buf[header_end..header_end + length]).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_on_sigterm_answers_a_long_poll_at_once_instead_of_holding_the_drain() {
    let mut env = TestEnv::new();
    env.leaves_unfinished_jobs("only the API runs: the job waits for a worker");
    env.set("SHUTDOWN_GRACE_SECS", 30);
    let (vars, logs) = (env.vars(), LogDir::new());
    let mut api = ApiProc::spawn(&vars, &logs).await;
    let id = api.submit_ok(&job_body(1_000, 10)).await;
    let waiting = {
        let request = api.client.get(api.url(&format!("/results/{id}?wait=60")));
        tokio::spawn(async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<serde_json::Value>().await.unwrap())
        })
    };
    // The long-poll is in flight once the API counts it among its requests; a short delay is
    // the simplest way to be sure it has begun waiting (the assertion below is on the answer).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = Instant::now();
    api.proc.sigterm();
    let (status, job) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the long-poll answered within 10 s of SIGTERM, not after its 60 s")
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(job["status"], "queued");
    let exit = api.proc.wait_exit(Duration::from_secs(20)).await;
    assert!(exit.success(), "exit status {exit}");
    assert!(signalled.elapsed() < Duration::from_secs(10), "took {:?}", signalled.elapsed());
}

/// A stopped API returns only once its server threads have dropped their copies of the state,
/// and with them their share of the Postgres pools. Returning earlier races `exit` against
/// libpq closing those connections (through OpenSSL, with TLS): a crash after a clean stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_api_returns_only_once_its_server_threads_let_go_of_its_state() {
    let env = TestEnv::new();
    let app = portfolio_api::startup::Application::build(env.settings()).expect("build the API");
    let (handle, holders) = (app.handle(), app.holders());
    let address = format!("http://127.0.0.1:{}", app.port());
    let served = tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(10), || async {
        let health = client.get(format!("{address}/health")).send().await.ok()?;
        health.status().is_success().then_some(())
    })
    .await;
    // The main state, and a copy of its own in each server thread (one per core).
    let held = holders.count();
    assert!(held >= 2, "{held} copies of the state while serving");
    handle.stop(true).await;
    served.await.expect("the API's task").expect("the API stopped cleanly");
    assert_eq!(holders.count(), 0, "copies of the state outlived the API's return");
}
