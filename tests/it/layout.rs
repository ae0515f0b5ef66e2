//! The house's load-bearing walls, checked: the engine crate stays pure (its dependency tree
//! holds no database, queue, HTTP, async runtime or logging back end), and the service crates
//! depend on it, never the reverse.

use std::process::Command;

/// `cargo tree` for one package: the names of every crate it builds with (normal edges only).
fn dependency_names(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "--offline", "--locked", "-e", "normal", "--prefix", "none", "-p", package])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(out.status.success(), "cargo tree: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn the_engine_crate_builds_without_any_io_crate() {
    let names = dependency_names("portfolio-engine");
    assert!(names.iter().any(|n| n == "rayon"), "cargo tree read nothing useful: {names:?}");
    for forbidden in [
        "diesel",
        "pq-sys",
        "redis",
        "apalis",
        "apalis-redis",
        "actix-web",
        "tokio",
        "tracing-subscriber",
        "portfolio-shared",
    ] {
        assert!(!names.iter().any(|n| n == forbidden), "portfolio-engine depends on {forbidden}");
    }
}

#[test]
fn the_service_crates_depend_on_the_engine_and_not_on_each_other() {
    let shared = dependency_names("portfolio-shared");
    assert!(shared.iter().any(|n| n == "portfolio-engine"));
    let api = dependency_names("portfolio-api");
    assert!(!api.iter().any(|n| n == "portfolio-worker"), "the API imports the worker");
    let worker = dependency_names("portfolio-worker");
    assert!(!worker.iter().any(|n| n == "portfolio-api"), "the worker imports the API");
}
