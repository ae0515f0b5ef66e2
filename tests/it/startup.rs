//! The binaries refuse to start on settings they cannot use, naming the variable, rather than
//! run with something else than what was asked for.

use std::time::Duration;

use portfolio_tests::TestEnv;
use portfolio_tests::processes::{LogDir, Proc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_rust_log_stops_the_api_and_the_worker_at_start_naming_it() {
    let mut env = TestEnv::new();
    env.set("RUST_LOG", "info,portfolio_api=loud");
    let (vars, logs) = (env.vars(), LogDir::new());
    for (binary, command) in [("portfolio-api", "serve"), ("portfolio-worker", "run")] {
        let mut process = Proc::spawn(binary, &[command], &vars, &logs, binary);
        let status = process.wait_exit(Duration::from_secs(10)).await;
        assert!(!status.success(), "{binary} started anyway");
        let log = process.log();
        assert!(log.contains("environment variable RUST_LOG"), "{binary}: {log}");
        assert!(log.contains("info,portfolio_api=loud"), "{binary}: {log}");
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
