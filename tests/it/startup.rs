//! The binaries refuse to start on settings they cannot use, naming the variable, rather than
//! run with something else than what was asked for.

use std::time::Duration;

use portfolio_tests::TestEnv;
use portfolio_tests::processes::{LogDir, Proc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_rust_log_stops_the_api_and_the_worker_at_start_naming_it_alone() {
    let mut env = TestEnv::new();
    env.set("RUST_LOG", "info,portfolio_api=loud");
    // Set on many developers' machines: the message must not drown in a backtrace of our code.
    env.set("RUST_BACKTRACE", "1");
    let (vars, logs) = (env.vars(), LogDir::new());
    for (binary, command) in [("portfolio-api", "serve"), ("portfolio-worker", "run")] {
        let mut process = Proc::spawn(binary, &[command], &vars, &logs, binary);
        let status = process.wait_exit(Duration::from_secs(10)).await;
        assert!(!status.success(), "{binary} started anyway");
        let log = process.log();
        assert!(log.contains("environment variable RUST_LOG"), "{binary}: {log}");
        assert!(log.contains("info,portfolio_api=loud"), "{binary}: {log}");
        assert!(!log.contains("backtrace"), "{binary} printed a backtrace: {log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_a_malformed_bootstrap_key_or_a_quota_above_the_ceiling_naming_them() {
    let logs = LogDir::new();
    for (name, value, says) in [
        ("BOOTSTRAP_API_KEY", "letmein", "environment variable BOOTSTRAP_API_KEY"),
        ("MAX_UNFINISHED_JOBS_PER_KEY", "5000", "below QUEUE_DEPTH_CEILING (5000)"),
        ("AUTH_MODE", "none", "environment variable AUTH_MODE"),
    ] {
        let mut env = TestEnv::new();
        env.set(name, value);
        let mut process = Proc::spawn("portfolio-api", &["serve"], &env.vars(), &logs, name);
        let status = process.wait_exit(Duration::from_secs(10)).await;
        assert!(!status.success(), "the API started with {name}={value}");
        let log = process.log();
        assert!(log.contains(says), "{name}: {log}");
        assert!(!log.contains("letmein"), "a secret's value is never echoed: {log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_redis_url_or_ca_file_stops_the_api_and_the_worker_at_start_naming_it() {
    let logs = LogDir::new();
    for (url, ca, says) in [
        ("redis+sentinel://:hunter2@h1:26379", None, "REDIS_URL names no Sentinel service"),
        ("redis+sentinel://:hunter2@h1:port/mymaster", None, "REDIS_URL names a Sentinel badly"),
        (
            "redis://:hunter2@127.0.0.1:6379",
            Some("/nonexistent/ca.pem"),
            "REDIS_CA_FILE cannot be read",
        ),
        (
            "redis://:hunter2@127.0.0.1:6379",
            Some("Cargo.toml"),
            "REDIS_CA_FILE is set but REDIS_URL does not use TLS",
        ),
    ] {
        let mut env = TestEnv::new();
        env.set("REDIS_URL", url);
        if let Some(ca) = ca {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(ca);
            env.set("REDIS_CA_FILE", path.display());
        }
        let vars = env.vars();
        for (binary, command) in [("portfolio-api", "serve"), ("portfolio-worker", "run")] {
            let mut process = Proc::spawn(binary, &[command], &vars, &logs, binary);
            let status = process.wait_exit(Duration::from_secs(10)).await;
            assert!(!status.success(), "{binary} started with REDIS_URL={url}");
            let log = process.log();
            assert!(log.contains(says), "{binary}, {url}: {log}");
            assert!(!log.contains("hunter2"), "a password is never echoed: {log}");
        }
    }
}
