//! The load test and the capacity benchmark (deploy/load) checked without running any load:
//! the locustfile keeps issue 12's user mix (weights, ranges, wait) and compiles, the scripts
//! exist, are executable and parse, their tools are pinned, and the limits they raise for a
//! load test are settings the code reads, within the bounds it accepts. The capacity table in
//! docs/operations.md comes from these scripts; a script quietly changed would make it lie.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use portfolio_shared::settings::VARIABLES;
use serde_json::Value as Json;

use super::{read, root};

const LOCUSTFILE: &str = "deploy/load/locustfile.py";
const SCRIPTS: &[&str] = &["deploy/load/run", "deploy/load/capacity"];

/// The locustfile's module constants (literals only), and per class its `weight`, the
/// arguments of `between(...)` in `wait_time`, and per `@task` method its weight and the
/// string literals it uses (the paths it calls), read with Python's `ast` so that locust need
/// not be installed.
const DESCRIBE: &str = r#"
import ast, json, sys
tree = ast.parse(open(sys.argv[1]).read())
consts, classes = {}, {}
def value(node):
    if isinstance(node, ast.Name) and node.id in consts:
        return consts[node.id]
    return ast.literal_eval(node)
def arguments(call):
    out = []
    for a in call.args:
        if isinstance(a, ast.Starred):
            out.extend(value(a.value))
        else:
            out.append(value(a))
    return out
for node in tree.body:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        try:
            consts[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:
            pass
    if isinstance(node, ast.ClassDef):
        c = {"weight": None, "wait": None, "tasks": {}}
        for item in node.body:
            if isinstance(item, ast.Assign) and isinstance(item.targets[0], ast.Name):
                name = item.targets[0].id
                if name == "weight":
                    c["weight"] = value(item.value)
                if name == "wait_time" and isinstance(item.value, ast.Call):
                    c["wait"] = [item.value.func.id] + arguments(item.value)
            if isinstance(item, ast.FunctionDef):
                for d in item.decorator_list:
                    weight = None
                    if isinstance(d, ast.Name) and d.id == "task":
                        weight = 1
                    if isinstance(d, ast.Call) and getattr(d.func, "id", None) == "task":
                        weight = value(d.args[0]) if d.args else 1
                    if weight is not None:
                        strings = sorted({n.value for n in ast.walk(item)
                                          if isinstance(n, ast.Constant) and isinstance(n.value, str)})
                        c["tasks"][item.name] = {"weight": weight, "strings": strings}
        classes[node.name] = c
print(json.dumps({"consts": consts, "classes": classes}))
"#;

fn python(args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .args(args)
        .current_dir(root())
        .output()
        .expect("python3 runs (the contract and bench scripts need it too)")
}

fn describe_locustfile() -> Json {
    let out = python(&["-c", DESCRIBE, LOCUSTFILE]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the description is JSON")
}

fn task<'a>(doc: &'a Json, class: &str, method: &str) -> &'a Json {
    let t = &doc["classes"][class]["tasks"][method];
    assert!(!t.is_null(), "{LOCUSTFILE}: {class}.{method} is no @task: {doc}");
    t
}

fn calls(task: &Json, path: &str) -> bool {
    task["strings"].as_array().is_some_and(|s| s.iter().any(|v| v == path))
}

#[test]
fn the_locustfile_compiles() {
    // `compile` rather than `-m py_compile`: the same check, without a __pycache__ left in
    // the tree.
    let check = "import sys; compile(open(sys.argv[1]).read(), sys.argv[1], 'exec')";
    let out = python(&["-c", check, LOCUSTFILE]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_load_test_keeps_the_old_apps_user_mix_from_issue_12() {
    let doc = describe_locustfile();
    let consts = &doc["consts"];
    // The old app's ranges, as the issue names them.
    assert_eq!(consts["STARTING_PORTFOLIO"], serde_json::json!([500_000, 2_000_000]));
    assert_eq!(consts["MONTHLY_SPENDING"], serde_json::json!([3_000, 8_000]));
    assert_eq!(consts["N_SCENARIOS"], serde_json::json!([100, 500, 1000]));
    assert_eq!(consts["YEARS"], serde_json::json!([20, 30, 40]));

    // 3 × (page, synchronous simulation), 1 × health, 1 × the list; waits of 1–3 s.
    let old = "OldAppUser";
    let simulate = task(&doc, old, "page_and_run_simulation");
    assert_eq!(simulate["weight"], 3);
    assert!(calls(simulate, "/") && calls(simulate, "/run_simulation"), "{simulate}");
    let health = task(&doc, old, "health");
    assert_eq!(health["weight"], 1);
    assert!(calls(health, "/health"), "{health}");
    let results = task(&doc, old, "results");
    assert_eq!(results["weight"], 1);
    assert!(calls(results, "/results"), "{results}");
    assert_eq!(doc["classes"][old]["tasks"].as_object().map(|t| t.len()), Some(3), "{doc}");

    // The new client: submit, then long-poll.
    let new = task(&doc, "SubmitAndPollUser", "submit_and_long_poll");
    assert!(calls(new, "/simulations"), "{new}");

    for class in [old, "SubmitAndPollUser"] {
        assert_eq!(doc["classes"][class]["wait"], serde_json::json!(["between", 1, 3]), "{class}");
        assert!(doc["classes"][class]["weight"].as_u64().is_some_and(|w| w > 0), "{class}");
    }
    // The long-poll follows `Location` with `?wait=`: only the final answer is counted.
    let source = read(LOCUSTFILE);
    assert!(source.contains("params={\"wait\": POLL_WAIT_SECS}"));
    assert!(source.contains("events.request.fire("));
}

#[test]
fn the_load_scripts_are_executable_bash_and_parse() {
    for script in SCRIPTS {
        let path = root().join(script);
        let mode = path.metadata().unwrap_or_else(|e| panic!("{script}: {e}")).permissions().mode();
        assert_ne!(mode & 0o111, 0, "{script} is not executable");
        let text = read(script);
        assert!(text.starts_with("#!/usr/bin/env bash\n"), "{script}: shebang");
        assert!(
            text.contains("source \"$(dirname \"$0\")/common.sh\""),
            "{script} sources common.sh"
        );
        let out = Command::new("bash").arg("-n").arg(&path).output().expect("bash runs");
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(
        read("deploy/load/common.sh").contains("/../scripts/lib.sh\""),
        "common.sh sources lib.sh"
    );

    let run = read("deploy/load/run");
    assert!(
        run.contains("DURATION=60s USERS=100 SPAWN=10"),
        "run: 100 users, 10/s, 60 s by default"
    );
    assert!(run.contains("--headless") && run.contains("--csv \"$OUT/locust\""));
    let capacity = read("deploy/load/capacity");
    for flag in ["-q \"$rate\"", "--latency-correction", "-z \"${STEP}s\""] {
        assert!(capacity.contains(flag), "capacity: oha {flag} (an open model at a fixed rate)");
    }
    assert!(capacity.contains("p99 < 50"), "capacity: the bar is p99 < 50 ms");
}

#[test]
fn the_load_tools_are_pinned() {
    let requirements = read("deploy/load/requirements.txt");
    let lines: Vec<&str> = requirements.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.iter().any(|l| l.starts_with("locust==")), "{requirements}");
    for line in lines {
        let (name, version) = line.split_once("==").unwrap_or_else(|| panic!("not pinned: {line}"));
        assert!(!name.is_empty() && version.split('.').all(|p| p.parse::<u32>().is_ok()), "{line}");
    }
    let capacity = read("deploy/load/capacity");
    let oha = capacity
        .lines()
        .find_map(|l| l.strip_prefix("OHA_VERSION="))
        .expect("capacity pins OHA_VERSION=");
    assert_eq!(oha.split('.').filter(|p| p.parse::<u32>().is_ok()).count(), 3, "{oha}");
    assert!(capacity.contains("--version \"$OHA_VERSION\" --locked"));
}

#[test]
fn the_limits_a_load_test_raises_are_settings_within_their_bounds() {
    let common = read("deploy/load/common.sh");
    let defaults: BTreeMap<&str, u64> = common
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| {
            // export NAME="${NAME:-VALUE}"
            let (name, rest) = l.split_once('=')?;
            let value = rest.split_once(":-")?.1.split('}').next()?;
            Some((name, value.parse().ok()?))
        })
        .collect();
    assert!(defaults.len() >= 4, "{defaults:?}");
    for name in defaults.keys() {
        assert!(VARIABLES.iter().any(|(n, _)| n == name), "{name} is no setting the code reads");
    }
    let ceiling = defaults["QUEUE_DEPTH_CEILING"];
    assert!(ceiling <= 7000, "QUEUE_DEPTH_CEILING is at most 7000");
    assert!(
        defaults["MAX_UNFINISHED_JOBS_PER_KEY"] < ceiling,
        "settings refuse a quota ≥ the ceiling"
    );
    assert!(defaults["RATE_LIMIT_SUBMITS_PER_MINUTE"] >= 100 * 60, "100 users would be 429'd");
}
