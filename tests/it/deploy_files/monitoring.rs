//! deploy/monitoring: alerts and the Grafana dashboard use only metrics the code exports, and
//! every alert links its runbook; with the small PromQL and Markdown readers they need.

use std::collections::{BTreeMap, BTreeSet};

use portfolio_shared::names;
use serde_json::Value as Json;

use super::{default_of, duration_secs, json, mapping_strings, read, str_at, yaml, yaml_seq};

/// The rules load, and their unit tests (alerts.test.yml: the expressions that are subtle) pass,
/// under Prometheus's own `promtool` (Debian's `prometheus`; deploy/scripts/test installs it).
#[test]
fn the_alert_rules_load_and_pass_their_unit_tests_under_promtool() {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    let dir = super::root().join("deploy/monitoring");
    for args in [&["check", "rules", "alerts.yml"][..], &["test", "rules", "alerts.test.yml"]] {
        let out = std::process::Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("{promtool}: {e} (apt-get install prometheus, or set PROMTOOL)")
            });
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn alerts_and_the_dashboard_use_only_metrics_the_code_exports() {
    let known = known_metric_names();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();

    let mut exprs: Vec<(String, String)> = alert_rules()
        .into_iter()
        .map(|(name, rule)| (format!("alerts.yml {name}"), rule.expr))
        .collect();
    let dashboard = json("deploy/monitoring/grafana-dashboard.json");
    let mut dashboard_exprs = Vec::new();
    collect_exprs(&dashboard, &mut dashboard_exprs);
    assert!(
        dashboard_exprs.len() >= 10,
        "the dashboard has only {} queries",
        dashboard_exprs.len()
    );
    exprs.extend(dashboard_exprs.into_iter().map(|e| ("grafana-dashboard.json".to_owned(), e)));

    for (from, expr) in &exprs {
        let metrics = promql_metrics(expr);
        if metrics.is_empty() {
            problems.push(format!("{from}: no metric found in {expr:?}"));
        }
        for (metric, matchers) in metrics {
            if !known.contains(&metric) {
                problems.push(format!("{from}: unknown metric {metric}"));
            }
            for (label, op, value) in matchers {
                if let Some(carried) = label_names(&metric)
                    && !carried.contains(&label.as_str())
                {
                    // A matcher on a label the series lacks matches nothing: an empty panel.
                    problems.push(format!("{from}: {metric} has no label {label}: {carried:?}"));
                }
                if let Some(allowed) = label_values(&metric, &label)
                    && op == "="
                    && !allowed.contains(&value.as_str())
                {
                    problems.push(format!(
                        "{from}: {metric}{{{label}=\"{value}\"}}: the code uses {allowed:?}"
                    ));
                }
            }
            seen.insert(metric);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The panels the runbook describes.
    let dashboard_text = dashboard.to_string();
    for metric in [
        names::QUEUE_JOBS,
        names::QUEUE_OLDEST_READY_AGE_SECONDS,
        names::JOBS_FINISHED_TOTAL,
        names::HTTP_REQUESTS_TOTAL,
        names::HTTP_REQUEST_DURATION_SECONDS,
        names::WORKERS_ALIVE,
        names::ENGINE_SCENARIO_MONTHS_TOTAL,
        names::DB_POOL_CONNECTIONS,
    ] {
        assert!(dashboard_text.contains(metric), "the dashboard does not show {metric}");
    }
}

#[test]
fn the_promql_reader_finds_metric_names_and_skips_functions_and_labels() {
    let found = promql_metrics(
        r#"histogram_quantile(0.95, sum by (le, route) (rate(portfolio_http_request_duration_seconds_bucket{route!~"/health|/ready", job="api"}[$__rate_interval])))
           > 2 and on() max(portfolio_queue_jobs{state="ready"}) - (sum(rate(x_total[1m] offset 5m)) or vector(0)) / 1e3"#,
    );
    let names: Vec<&str> = found.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        names,
        ["portfolio_http_request_duration_seconds_bucket", "portfolio_queue_jobs", "x_total"]
    );
    assert_eq!(found[0].1[0], ("route".to_owned(), "!~".to_owned(), "/health|/ready".to_owned()));
    assert_eq!(found[1].1, [("state".to_owned(), "=".to_owned(), "ready".to_owned())]);
}

#[test]
fn every_alert_explains_itself_and_links_its_runbook() {
    let anchors = markdown_anchors(&read("docs/operations.md"));
    let rules = alert_rules();
    let mut problems = Vec::new();
    let mut names_seen = BTreeSet::new();
    for (name, rule) in &rules {
        if !names_seen.insert(name.clone()) {
            problems.push(format!("{name}: defined twice"));
        }
        for key in ["summary", "description", "runbook"] {
            if rule.annotations.get(key).is_none_or(|v| v.trim().is_empty()) {
                problems.push(format!("{name}: no {key} annotation"));
            }
        }
        if !matches!(rule.labels.get("severity").map(String::as_str), Some("warning" | "critical"))
        {
            problems.push(format!("{name}: severity must be warning or critical"));
        }
        match rule.annotations.get("runbook").and_then(|r| r.strip_prefix("docs/operations.md#")) {
            Some(anchor) if anchors.contains(anchor) => {}
            other => problems
                .push(format!("{name}: runbook {other:?} is not a section of docs/operations.md")),
        }
        if let Some(period) = &rule.r#for
            && duration_secs(period).is_none()
        {
            problems.push(format!("{name}: `for: {period}` is not a duration"));
        }
    }

    // The old guide's thresholds, and the queue's.
    let expect = |name: &str, for_secs: f64, needles: &[&str]| {
        let rule =
            &rules.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no alert {name}")).1;
        let period = rule.r#for.as_deref().and_then(duration_secs).unwrap_or(0.0);
        assert_eq!(period, for_secs, "{name}: for");
        for needle in needles {
            assert!(rule.expr.contains(needle), "{name}: expr lacks {needle:?}: {}", rule.expr);
        }
    };
    expect("PortfolioApiHighCpu", 300.0, &["process_cpu_seconds_total", "> 0.8"]);
    expect("PortfolioApiHighMemory", 300.0, &["process_resident_memory_bytes", "> 0.85"]);
    expect("PortfolioWorkerHighMemory", 300.0, &["process_resident_memory_bytes", "> 0.85"]);
    expect(
        "PortfolioApiHighLatency",
        120.0,
        &[
            "histogram_quantile(0.95",
            names::HTTP_REQUEST_DURATION_SECONDS,
            r#"waited="false""#,
            "> 2",
        ],
    );
    expect(
        "PortfolioApiHighErrorRate",
        60.0,
        &[names::HTTP_REQUESTS_TOTAL, r#"status=~"5..""#, "> 0.05"],
    );
    expect("PortfolioQueueBacklogOld", 300.0, &[names::QUEUE_OLDEST_READY_AGE_SECONDS]);
    expect("PortfolioDeadJobs", 60.0, &[names::QUEUE_JOBS, r#"state="dead""#, "> 0"]);
    expect("PortfolioNoWorkers", 120.0, &[names::WORKERS_ALIVE, "== 0", r#"state="ready""#]);
    expect(
        "PortfolioQueueNearCeiling",
        120.0,
        &[names::QUEUE_JOBS, r#"state=~"ready|scheduled""#, default_of("QUEUE_DEPTH_CEILING")],
    );

    // Links inside the runbook resolve too.
    let text = read("docs/operations.md");
    for link in text.split("](#").skip(1) {
        let anchor = link.split(')').next().unwrap_or_default();
        if !anchors.contains(anchor) {
            problems.push(format!("docs/operations.md links to #{anchor}, which is no heading"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Metric names the processes export: the `portfolio_*` constants of shared/src/names.rs (read
/// from the source, so a new constant needs no change here), the series Prometheus derives from
/// histograms, the process collector's metrics, and Prometheus's own `up`.
fn known_metric_names() -> BTreeSet<String> {
    let source = read("shared/src/names.rs");
    let mut known = BTreeSet::new();
    for line in source.lines() {
        let line = line.trim();
        if !(line.starts_with("pub const ") && line.contains(": &str = \"")) {
            continue;
        }
        let value = line.split('"').nth(1).unwrap_or_default();
        if !value.starts_with("portfolio_") {
            continue;
        }
        known.insert(value.to_owned());
        if !value.ends_with("_total") {
            for suffix in ["_bucket", "_sum", "_count"] {
                known.insert(format!("{value}{suffix}"));
            }
        }
    }
    for constant in [names::HTTP_REQUESTS_TOTAL, names::QUEUE_JOBS, names::DB_POOL_CONNECTIONS] {
        assert!(known.contains(constant), "reading names.rs missed {constant}");
    }
    for process in [
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_virtual_memory_bytes",
        "process_virtual_memory_max_bytes",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_threads",
        "up",
    ] {
        known.insert(process.to_owned());
    }
    known.extend(EXPORTER_METRICS.iter().map(|m| m.to_string()));
    known
}

/// Metrics the rules read from the exporters (jobs `postgres` and `redis`), as the pinned
/// images name them (postgres_exporter v0.15: collectors `database`, `settings`,
/// `replication`; redis_exporter v1.66). A new image tag may rename them: check before raising.
pub(super) const EXPORTER_METRICS: &[&str] = &[
    "pg_stat_database_numbackends",
    "pg_settings_max_connections",
    "pg_stat_database_blks_hit",
    "pg_stat_database_blks_read",
    "pg_replication_lag_seconds",
    "pg_replication_is_replica",
    "redis_memory_used_bytes",
    "redis_memory_max_bytes",
];

/// The labels the API's HTTP series carry (api/src/metrics.rs), and those Prometheus adds.
fn label_names(metric: &str) -> Option<&'static [&'static str]> {
    let base =
        ["_bucket", "_sum", "_count"].iter().fold(metric, |m, s| m.strip_suffix(s).unwrap_or(m));
    match base {
        names::HTTP_REQUESTS_TOTAL => Some(&["route", "method", "status", "job", "instance"]),
        names::HTTP_REQUEST_DURATION_SECONDS => {
            Some(&["route", "method", "waited", "le", "job", "instance"])
        }
        _ => None,
    }
}

/// Values the code gives a label (as documented on the constants in names.rs).
fn label_values(metric: &str, label: &str) -> Option<&'static [&'static str]> {
    let base =
        ["_bucket", "_sum", "_count"].iter().fold(metric, |m, s| m.strip_suffix(s).unwrap_or(m));
    match (base, label) {
        (names::QUEUE_JOBS, "state") => Some(&["ready", "scheduled", "running", "dead"]),
        (names::HTTP_REQUEST_DURATION_SECONDS, "waited") => Some(&["true", "false"]),
        (names::DB_POOL_CONNECTIONS, "state") => Some(&["in_use", "idle"]),
        (names::JOBS_FINISHED_TOTAL, "status") => Some(&["succeeded", "failed", "cancelled"]),
        (names::SUBMITS_REFUSED_TOTAL, "reason") => Some(&["queue_full", "unavailable"]),
        (names::RESULT_CACHE_LOOKUPS_TOTAL, "layer") => Some(&["l1", "l2"]),
        (names::RESULT_CACHE_LOOKUPS_TOTAL, "outcome") => Some(&["hit", "miss"]),
        (_, "job") => Some(&["portfolio-api", "portfolio-worker", "postgres", "redis"]),
        _ => None,
    }
}

pub(super) struct AlertRule {
    pub(super) expr: String,
    r#for: Option<String>,
    pub(super) labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

/// (alert name, rule) of every alerting rule in alerts.yml, in file order.
pub(super) fn alert_rules() -> Vec<(String, AlertRule)> {
    let file = yaml(&read("deploy/monitoring/alerts.yml"), "alerts.yml");
    let groups = yaml_seq(file.get("groups"));
    assert!(!groups.is_empty(), "alerts.yml: no groups");
    let mut rules = Vec::new();
    for group in groups {
        assert!(str_at(group, &["name"]).is_some(), "alerts.yml: a group without a name");
        for rule in yaml_seq(group.get("rules")) {
            let name =
                str_at(rule, &["alert"]).expect("alerts.yml: only alerting rules (`alert:`)");
            let expr = str_at(rule, &["expr"]).unwrap_or_else(|| panic!("{name}: no expr"));
            rules.push((
                name,
                AlertRule {
                    expr,
                    r#for: str_at(rule, &["for"]),
                    labels: mapping_strings(rule.get("labels")).into_iter().collect(),
                    annotations: mapping_strings(rule.get("annotations")).into_iter().collect(),
                },
            ));
        }
    }
    rules
}

/// Every `expr` string anywhere in a Grafana dashboard.
fn collect_exprs(value: &Json, out: &mut Vec<String>) {
    match value {
        Json::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Json::String(expr)) => out.push(expr.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Json::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

type Matcher = (String, String, String);

/// Metric names in a PromQL expression, each with its label matchers (label, op, value).
/// A small lexer, not a parser: identifiers followed by `(` are functions or aggregations, the
/// label lists after by/without/on/ignoring/group_* are skipped, as are strings, range and
/// subquery brackets, numbers, durations and Grafana `$variables`.
fn promql_metrics(expr: &str) -> Vec<(String, Vec<Matcher>)> {
    const GROUPING: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
    const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"];
    // Aggregations may put their `by (...)` clause before the parenthesis: `sum by (le) (...)`.
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut out: Vec<(String, Vec<Matcher>)> = Vec::new();
    let mut last_was_metric = false;
    let mut i = 0;
    let skip_until = |from: usize, close: char| -> usize {
        let mut j = from + 1;
        let mut quote = None;
        while j < chars.len() {
            match (quote, chars[j]) {
                (Some(_), '\\') => j += 1,
                (Some(q), c) if c == q => quote = None,
                (None, '"' | '\'' | '`') => quote = Some(chars[j]),
                (None, c) if c == close => return j,
                _ => {}
            }
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '{' {
            let end = skip_until(i, '}');
            if last_was_metric && let Some(last) = out.last_mut() {
                last.1 =
                    label_matchers(&chars[i + 1..end.min(chars.len())].iter().collect::<String>());
            }
            i = end + 1;
            last_was_metric = false;
            continue;
        }
        last_was_metric = false;
        match c {
            '"' | '\'' | '`' => {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != c {
                    if chars[j] == '\\' {
                        j += 1;
                    }
                    j += 1;
                }
                i = j + 1;
            }
            '[' => i = skip_until(i, ']') + 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '$' => {
                i += 1;
                if i < chars.len() && chars[i] == '{' {
                    i = skip_until(i, '}') + 1;
                } else {
                    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut next = i;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                let followed_by_paren = chars.get(next) == Some(&'(');
                let lower = word.to_ascii_lowercase();
                if GROUPING.contains(&lower.as_str()) {
                    if followed_by_paren {
                        i = skip_until(next, ')') + 1;
                    }
                } else if KEYWORDS.contains(&lower.as_str())
                    || AGGREGATIONS.contains(&lower.as_str())
                    || followed_by_paren
                {
                    // An operator keyword, a function or an aggregation.
                } else {
                    out.push((word, Vec::new()));
                    last_was_metric = true;
                }
            }
            _ => i += 1,
        }
    }
    out
}

fn label_matchers(text: &str) -> Vec<Matcher> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quote = None;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                current.push(c);
            }
            (None, '"' | '\'' | '`') => {
                quote = Some(c);
                current.push(c);
            }
            (None, ',') => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    parts
        .iter()
        .filter(|p| !p.trim().is_empty())
        .filter_map(|part| {
            let at = part.find(['=', '!'])?;
            let op_len = if part[at + 1..].starts_with(['=', '~']) { 2 } else { 1 };
            let label = part[..at].trim().to_owned();
            let op = part[at..at + op_len].to_owned();
            let value = part[at + op_len..].trim().trim_matches(['"', '\'', '`']).to_owned();
            Some((label, op, value))
        })
        .collect()
}

/// GitHub-style anchors of the Markdown headings (outside code fences).
fn markdown_anchors(markdown: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        anchors.insert(slug);
    }
    anchors
}
