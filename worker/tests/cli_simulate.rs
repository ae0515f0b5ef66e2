//! `portfolio-worker simulate` as a user runs it: the binary, a request file, its output.

use std::io::Write;
use std::process::{Command, Output};

fn simulate(body: &str) -> Output {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(body.as_bytes()).expect("the request is written");
    Command::new(env!("CARGO_BIN_EXE_portfolio-worker"))
        .args(["simulate", "--threads", "1", "--request"])
        .arg(file.path())
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the binary runs")
}

#[test]
fn an_invalid_request_names_its_fields_without_a_backtrace() {
    let out = simulate(r#"{"starting_portfolio": -5, "monthly_spending": 1000, "years": 0}"#);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("Error: the request is invalid:"), "{stderr}");
    assert!(stderr.contains("starting_portfolio:") && stderr.contains("years:"), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_valid_request_prints_its_result_with_the_seed_it_ran() {
    let out = simulate(
        r#"{"starting_portfolio": 1000000, "monthly_spending": 3000, "years": 20,
            "n_scenarios": 500, "seed": 11}"#,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(doc["seed"], 11);
    let p = doc["result"]["success_probability"].as_f64().expect("a probability");
    assert!((0.0..=1.0).contains(&p), "{p}");
    assert_eq!(doc["result"]["n_scenarios"], 500);
}
