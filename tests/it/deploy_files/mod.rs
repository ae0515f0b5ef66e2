//! The deploy and operations files checked against the code they deploy, one module per target
//! (Compose, Dockerfiles, ECS, Kubernetes, monitoring) and one for the checks that run across
//! all of them; the readers they share (files, YAML and JSON access, the code's own names and
//! defaults, binaries and subcommands) are here.
//!
//! The Dockerfiles, docker-compose.yml, ecs/, deploy/k8s and deploy/monitoring name environment
//! variables, ports, health paths, subcommands, metric names and Redis keys that the Rust code
//! defines (`settings::VARIABLES`, `names`, `queue::Keys`). Nothing here needs Docker, a cluster
//! or an AWS account: each file is parsed and compared with the code, so renaming a variable or
//! a metric fails this suite instead of silently breaking a deployment or blanking a dashboard.

mod across_targets;
mod compose;
mod dockerfiles;
mod ecs;
mod kubernetes;
mod load;
mod monitoring;
mod stores;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use portfolio_shared::settings::VARIABLES;
use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

const API_BINARY: &str = "portfolio-api";
const WORKER_BINARY: &str = "portfolio-worker";
const API_SUBCOMMANDS: &[&str] = &["serve", "migrate", "healthcheck", "keys"];
const WORKER_SUBCOMMANDS: &[&str] = &["run", "healthcheck", "simulate"];

// ---------------------------------------------------------------------------------------------
// Files.

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Files under a directory of the repository, recursively, as sorted relative paths.
fn files_under(dir: &str) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let entries =
            fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(base, &path, out);
            } else if let Ok(relative) = path.strip_prefix(base) {
                out.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let base = root();
    let mut out = Vec::new();
    walk(&base, &base.join(dir), &mut out);
    out.sort();
    out
}

fn json(relative: &str) -> Json {
    serde_json::from_str(&read(relative))
        .unwrap_or_else(|e| panic!("{relative} is not valid JSON: {e}"))
}

fn yaml(text: &str, from: &str) -> Yaml {
    let mut value: Yaml =
        serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{from} is not valid YAML: {e}"));
    value.apply_merge().unwrap_or_else(|e| panic!("{from}: merge keys: {e}"));
    value
}

fn yaml_documents(relative: &str) -> Vec<Yaml> {
    let text = read(relative);
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| {
            let mut value = Yaml::deserialize(document)
                .unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}"));
            value.apply_merge().unwrap_or_else(|e| panic!("{relative}: merge keys: {e}"));
            value
        })
        .filter(|v| !v.is_null())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The code's side.

fn default_of(name: &str) -> &'static str {
    VARIABLES
        .iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, default)| *default)
        .unwrap_or_else(|| panic!("{name} has no default in settings::VARIABLES"))
}

fn default_port(variable: &str) -> u16 {
    let bind = default_of(variable);
    bind.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{variable}={bind}"))
}

// ---------------------------------------------------------------------------------------------
// Binaries and commands.

fn binary_named(word: &str) -> Option<&'static str> {
    match word.rsplit('/').next() {
        Some(API_BINARY) => Some(API_BINARY),
        Some(WORKER_BINARY) => Some(WORKER_BINARY),
        _ => None,
    }
}

/// The binary an image runs, from its repository name (`.../portfolio-api:tag`).
fn image_binary(image: &str) -> Option<&'static str> {
    let repository = image.rsplit('/').next()?.split([':', '@']).next()?;
    binary_named(repository)
}

fn subcommands_of(binary: &str) -> &'static [&'static str] {
    if binary == API_BINARY { API_SUBCOMMANDS } else { WORKER_SUBCOMMANDS }
}

fn subcommand_problem(from: &str, binary: &str, args: &[String]) -> Option<String> {
    let first = args.first()?;
    (!subcommands_of(binary).contains(&first.as_str())).then(|| {
        format!("{from}: `{binary} {first}` is no subcommand (known: {:?})", subcommands_of(binary))
    })
}

/// The clap subcommands of a binary: the variants of its `enum Command`, in kebab case.
fn subcommands_in(main_rs: &str) -> BTreeSet<String> {
    let body = main_rs
        .split_once("enum Command {")
        .and_then(|(_, rest)| rest.split_once("\n}"))
        .map(|(body, _)| body)
        .expect("main.rs defines `enum Command { ... }`");
    body.lines()
        .map(str::trim)
        .filter(|line| line.starts_with(|c: char| c.is_ascii_uppercase()))
        .map(|line| {
            let variant: String = line.chars().take_while(char::is_ascii_alphanumeric).collect();
            let mut kebab = String::new();
            for (i, c) in variant.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    kebab.push('-');
                }
                kebab.push(c.to_ascii_lowercase());
            }
            kebab
        })
        .collect()
}

/// `[CMD, /usr/local/bin/<binary>, healthcheck]`, with or without the CMD marker.
fn is_healthcheck_of(command: &[String], binary: &str) -> bool {
    let words: Vec<&str> = command.iter().map(String::as_str).filter(|w| *w != "CMD").collect();
    words.len() == 2 && binary_named(words[0]) == Some(binary) && words[1] == "healthcheck"
}

// ---------------------------------------------------------------------------------------------
// Shell words and durations.

/// Whitespace-separated words, double or single quotes grouping and removed.
fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut in_word = false;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Compose and Prometheus durations: `120s`, `2m`, `1m30s`, `500ms`, `1h`.
fn duration_secs(text: &str) -> Option<f64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "us" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            _ => return None,
        };
        total += number * factor;
        rest = &rest[unit_len..];
    }
    Some(total)
}

// ---------------------------------------------------------------------------------------------
// JSON and YAML access.

fn array(value: &Json) -> &[Json] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn json_strings(value: &Json) -> Vec<String> {
    array(value).iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

fn at<'a>(value: &'a Yaml, path: &[&str]) -> Option<&'a Yaml> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

/// A scalar as text (numbers and booleans too: YAML writes `"8080"` and `8080` alike).
fn str_at(value: &Yaml, path: &[&str]) -> Option<String> {
    match at(value, path)? {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn u64_at(value: &Yaml, path: &[&str]) -> Option<u64> {
    str_at(value, path)?.parse().ok()
}

fn yaml_seq(value: Option<&Yaml>) -> Vec<&Yaml> {
    value.and_then(Yaml::as_sequence).map(|s| s.iter().collect()).unwrap_or_default()
}

fn yaml_strings(value: Option<&Yaml>) -> Vec<String> {
    match value {
        Some(Yaml::String(s)) => shell_words(s),
        Some(Yaml::Sequence(items)) => items
            .iter()
            .filter_map(|i| match i {
                Yaml::String(s) => Some(s.clone()),
                Yaml::Number(n) => Some(n.to_string()),
                Yaml::Bool(b) => Some(b.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn mapping_entries(value: Option<&Yaml>) -> Vec<(String, &Yaml)> {
    value
        .and_then(Yaml::as_mapping)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v))).collect())
        .unwrap_or_default()
}

fn mapping_keys(value: Option<&Yaml>) -> Vec<String> {
    mapping_entries(value).into_iter().map(|(k, _)| k).collect()
}

fn mapping_strings(value: Option<&Yaml>) -> Vec<(String, String)> {
    mapping_entries(value)
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Yaml::String(s) => s.clone(),
                Yaml::Number(n) => n.to_string(),
                Yaml::Bool(b) => b.to_string(),
                _ => String::new(),
            };
            (k, text)
        })
        .collect()
}
