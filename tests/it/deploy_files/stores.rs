//! What the deploy files promise about resources: each process gets the same size on every
//! target and the memory alerts assume that size; the database pools the code sizes fit the
//! Postgres connection budget the runbook states; Postgres and Redis are watched through
//! pinned exporters everywhere; and every alert reaches an Alertmanager receiver.

use std::collections::{BTreeMap, BTreeSet};

use portfolio_shared::settings::Settings;

use super::compose::{compose, compose_env, compose_service};
use super::ecs::{ecs_container, ecs_env};
use super::kubernetes::{
    K8S_MONITORING_DIR, k8s_literal_env, k8s_monitoring_objects, k8s_object, kind, pod_containers,
};
use super::monitoring::alert_rules;
use super::{at, files_under, json, read, str_at, u64_at, yaml, yaml_seq, yaml_strings};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// (process, ECS task file, Kubernetes Deployment, compose service, memory alert).
const PROCESSES: &[(&str, &str, &str, &str, &str)] = &[
    ("api", "ecs/task-api.json", "portfolio-api", "api", "PortfolioApiHighMemory"),
    ("worker", "ecs/task-worker.json", "portfolio-worker", "worker", "PortfolioWorkerHighMemory"),
];

#[test]
fn every_target_gives_a_process_the_size_its_memory_alert_assumes() {
    let compose = compose();
    let rules = alert_rules();
    for (process, task_file, deployment, service, alert) in PROCESSES {
        let task = json(task_file);
        let ecs_memory = number(&task["memory"]).expect("task memory") / 1024.0;
        let ecs_cpu = number(&task["cpu"]).expect("task cpu") / 1024.0;

        let doc = k8s_object("Deployment", deployment);
        let limits = at(pod_containers(&doc)[0], &["resources", "limits"]).expect("k8s limits");
        let k8s_memory = quantity(&str_at(limits, &["memory"]).expect("k8s memory limit"));
        let k8s_cpu = quantity(&str_at(limits, &["cpu"]).expect("k8s cpu limit"));

        let limits = at(compose_service(&compose, service), &["deploy", "resources", "limits"])
            .unwrap_or_else(|| panic!("compose {service}: no resource limits"));
        let compose_memory = quantity(&str_at(limits, &["memory"]).expect("compose memory"));
        let compose_cpu = quantity(&str_at(limits, &["cpus"]).expect("compose cpus"));

        let rule = &rules.iter().find(|(n, _)| n == alert).expect("memory alert").1;
        let alert_gib = gib_in_threshold(&rule.expr).unwrap_or_else(|| {
            panic!("{alert}: no `0.85 * N * 1024 * 1024 * 1024` in {}", rule.expr)
        });

        assert_eq!(
            (k8s_memory / GIB, compose_memory / GIB, alert_gib),
            (ecs_memory, ecs_memory, ecs_memory),
            "{process}: memory in GiB of deploy/k8s, docker-compose.yml and {alert} against \
             {task_file} ({ecs_memory} GiB): an alert above the limit never fires before an OOM kill"
        );
        assert_eq!(
            (k8s_cpu, compose_cpu),
            (ecs_cpu, ecs_cpu),
            "{process}: vCPUs against {task_file}"
        );
    }
}

#[test]
fn the_size_readers_read_what_the_files_write() {
    assert_eq!(quantity("2Gi"), 2.0 * GIB);
    assert_eq!(quantity("512Mi"), 512.0 * 1024.0 * 1024.0);
    assert_eq!(quantity("4g"), 4.0 * GIB);
    assert_eq!(quantity("500m"), 0.5, "Kubernetes millicores");
    assert_eq!(quantity("\"1\""), 1.0);
    assert_eq!(gib_in_threshold("max(x) > 0.85 * 4 * 1024 * 1024 * 1024"), Some(4.0));
    assert_eq!(gib_in_threshold("max(x) > 0.85"), None);
}

#[test]
fn the_pools_the_code_sizes_fit_the_connection_budget_the_runbook_states() {
    // The pool each process gets from the file's own variables, read by the code itself.
    let pools = |env: &BTreeMap<String, String>| -> (u32, u32) {
        let relevant = ["DB_POOL_MAX_SIZE", "DB_POOL_MIN_IDLE", "WORKER_CONCURRENCY"];
        let settings =
            Settings::from_lookup(
                |k| if relevant.contains(&k) { env.get(k).cloned() } else { None },
            )
            .expect("the pool variables parse");
        (settings.database.api_pool.max_size(), settings.database.worker_pool.max_size())
    };

    let compose = compose();
    let (api_pool, _) = pools(&compose_env(compose_service(&compose, "api")));
    let (_, worker_pool) = pools(&compose_env(compose_service(&compose, "worker")));
    let (ecs_api, _) = pools(&ecs_env(ecs_container(&json("ecs/task-api.json"), "api")));
    let (_, ecs_worker) = pools(&ecs_env(ecs_container(&json("ecs/task-worker.json"), "worker")));
    let k8s = |name: &str| k8s_literal_env(pod_containers(&k8s_object("Deployment", name))[0]);
    let (k8s_api, _) = pools(&k8s("portfolio-api"));
    let (_, k8s_worker) = pools(&k8s("portfolio-worker"));
    assert_eq!((ecs_api, k8s_api), (api_pool, api_pool), "the API's pool differs by target");
    assert_eq!((ecs_worker, k8s_worker), (worker_pool, worker_pool), "a worker's pool differs");

    // A worker holds one connection per job it runs at once, and not many more.
    let concurrency: u32 = compose_env(compose_service(&compose, "worker"))
        .get("WORKER_CONCURRENCY")
        .and_then(|c| c.parse().ok())
        .expect("compose worker WORKER_CONCURRENCY");
    assert!(
        (concurrency..=concurrency + 4).contains(&worker_pool),
        "a worker running {concurrency} jobs has a pool of {worker_pool}"
    );

    // Every API holds one connection beside its pool, through which it tries for the lead of
    // the background work (api/src/background.rs), leading or not.
    let api_process = api_pool + 1;

    // The runbook's budget line names the same per-process figures.
    let operations = read("docs/operations.md");
    let line = operations
        .lines()
        .find(|l| l.contains("Postgres connections = api tasks ×"))
        .expect("docs/operations.md: no `Postgres connections = api tasks × N + worker tasks × M`");
    let figures: Vec<u32> = line
        .split('×')
        .skip(1)
        .filter_map(|part| {
            part.split_whitespace().next()?.trim_matches(['(', ')', ',']).parse().ok()
        })
        .collect();
    assert_eq!(
        figures.get(..2),
        Some(&[api_process, worker_pool][..]),
        "docs/operations.md budget line {line:?}"
    );

    // compose: every process's pool, the one-shots and the exporter stay under max_connections
    // with the 10 % reserve the runbook keeps for operators.
    let replicas = |service: &str| {
        u64_at(compose_service(&compose, service), &["deploy", "replicas"]).unwrap_or(1)
    };
    let used = replicas("api") * u64::from(api_process)
        + replicas("worker") * u64::from(worker_pool)
        + ["migrate", "keys", "postgres-exporter"].len() as u64;
    let postgres = yaml_strings(compose_service(&compose, "postgres").get("command"));
    let max_connections: u64 = postgres
        .iter()
        .find_map(|a| a.strip_prefix("max_connections="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    assert!(
        used * 10 <= max_connections * 9,
        "compose: {used} connections at rest and full pools against max_connections {max_connections}"
    );
}

#[test]
fn postgres_and_redis_are_watched_through_pinned_exporters_everywhere() {
    let compose = compose();
    let k8s = k8s_monitoring_objects();
    let kustomization = read("deploy/k8s/kustomization.yaml");
    for file in files_under(K8S_MONITORING_DIR.trim_end_matches('/')) {
        let relative = file.trim_start_matches("deploy/k8s/");
        assert!(kustomization.contains(relative), "kustomization.yaml does not apply {file}");
    }
    let prometheus = yaml(&read("deploy/monitoring/prometheus.yml"), "prometheus.yml");
    let scrape_targets = |job: &str| -> Vec<String> {
        yaml_seq(prometheus.get("scrape_configs"))
            .into_iter()
            .find(|c| str_at(c, &["job_name"]).as_deref() == Some(job))
            .map(|c| {
                yaml_seq(c.get("static_configs"))
                    .into_iter()
                    .flat_map(|s| yaml_strings(s.get("targets")))
                    .collect()
            })
            .unwrap_or_else(|| panic!("prometheus.yml: no scrape job {job}"))
    };

    for (service, job, port) in
        [("postgres-exporter", "postgres", 9187), ("redis-exporter", "redis", 9121)]
    {
        let exporter = compose_service(&compose, service);
        let image = str_at(exporter, &["image"]).unwrap_or_default();
        assert!(pinned(&image), "compose {service}: image {image:?} is not pinned to a version");
        assert_eq!(scrape_targets(job), [format!("{service}:{port}")], "prometheus.yml {job}");

        let deployment = k8s
            .iter()
            .find(|(_, d)| {
                kind(d) == "Deployment"
                    && str_at(d, &["metadata", "name"]).as_deref() == Some(service)
            })
            .unwrap_or_else(|| panic!("{K8S_MONITORING_DIR}: no Deployment {service}"))
            .1
            .clone();
        let container = pod_containers(&deployment)[0];
        assert_eq!(
            str_at(container, &["image"]),
            Some(image.clone()),
            "k8s {service}: the compose image"
        );
        let ports: Vec<u64> = yaml_seq(container.get("ports"))
            .iter()
            .filter_map(|p| u64_at(p, &["containerPort"]))
            .collect();
        assert_eq!(ports, [port], "k8s {service}: containerPort");
        assert_eq!(
            str_at(
                &deployment,
                &["spec", "template", "metadata", "annotations", "prometheus.io/port"]
            ),
            Some(port.to_string()),
            "k8s {service}: scraped on its port"
        );
        assert!(
            k8s.iter().any(|(_, d)| kind(d) == "Service"
                && str_at(d, &["metadata", "name"]).as_deref() == Some(service)),
            "k8s: no Service {service}"
        );
        for env in yaml_seq(container.get("env")) {
            assert!(
                str_at(env, &["valueFrom", "secretKeyRef", "name"]).is_some(),
                "k8s {service}: {:?} is not from a Secret",
                str_at(env, &["name"])
            );
        }
        if service == "postgres-exporter" {
            for args in [yaml_strings(exporter.get("command")), yaml_strings(container.get("args"))]
            {
                assert!(
                    args.iter().any(|a| a == "--collector.stat_statements"),
                    "{service} does not collect pg_stat_statements: {args:?}"
                );
            }
        }
    }

    // pg_stat_statements: preloaded by the compose command, created by an init script that
    // compose mounts, and kept out of the app's migrations.
    let postgres = compose_service(&compose, "postgres");
    let command = yaml_strings(postgres.get("command"));
    assert!(
        command.iter().any(|a| a == "shared_preload_libraries=pg_stat_statements"),
        "compose postgres does not preload pg_stat_statements: {command:?}"
    );
    let mounts = yaml_strings(postgres.get("volumes"));
    let init = mounts
        .iter()
        .find_map(|m| m.strip_suffix(":/docker-entrypoint-initdb.d:ro"))
        .expect("compose postgres mounts an init directory");
    let scripts: Vec<String> = files_under(init.trim_start_matches("./"))
        .into_iter()
        .filter(|f| f.ends_with(".sql"))
        .map(|f| read(&f))
        .collect();
    assert!(
        scripts.iter().any(|s| s.contains("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")),
        "{init}: no script creates pg_stat_statements"
    );
    for migration in files_under("migrations") {
        assert!(
            !read(&migration).contains("pg_stat_statements"),
            "{migration}: the operator's choice"
        );
    }

    // The alerts on what the guide watched.
    let rules = alert_rules();
    let on = |job: &str, metric: &str| {
        rules
            .iter()
            .any(|(_, r)| r.expr.contains(metric) && r.expr.contains(&format!("job=\"{job}\"")))
    };
    for (job, metric, what) in [
        ("postgres", "pg_settings_max_connections", "connections in use"),
        ("postgres", "pg_stat_database_blks_hit", "cache-hit ratio"),
        ("postgres", "pg_replication_lag_seconds", "replication lag"),
        ("redis", "redis_memory_max_bytes", "Redis memory"),
    ] {
        assert!(on(job, metric), "alerts.yml: no rule on {what} ({metric}, job {job})");
    }
}

#[test]
fn every_alert_reaches_a_receiver_for_its_severity() {
    let config = yaml(&read("deploy/monitoring/alertmanager.yml"), "alertmanager.yml");
    let receivers: BTreeSet<String> =
        yaml_seq(config.get("receivers")).iter().filter_map(|r| str_at(r, &["name"])).collect();
    let route = config.get("route").expect("alertmanager.yml: route");
    let default = str_at(route, &["receiver"]).expect("alertmanager.yml: a default receiver");
    assert!(receivers.contains(&default), "the default receiver {default} is not defined");
    let by_severity: BTreeMap<String, String> = yaml_seq(route.get("routes"))
        .iter()
        .filter_map(|r| {
            let matcher =
                yaml_strings(r.get("matchers")).into_iter().find(|m| m.starts_with("severity="))?;
            let severity = matcher.trim_start_matches("severity=").trim_matches('"').to_owned();
            Some((severity, str_at(r, &["receiver"])?))
        })
        .collect();
    let severities: BTreeSet<String> =
        alert_rules().into_iter().filter_map(|(_, r)| r.labels.get("severity").cloned()).collect();
    assert!(severities.len() >= 2, "{severities:?}");
    for severity in &severities {
        let receiver = by_severity
            .get(severity)
            .unwrap_or_else(|| panic!("alertmanager.yml: no route for severity={severity}"));
        assert!(receivers.contains(receiver), "route severity={severity}: no receiver {receiver}");
    }
    assert_ne!(
        by_severity.get("critical"),
        by_severity.get("warning"),
        "a page is not a chat message"
    );

    let prometheus = yaml(&read("deploy/monitoring/prometheus.yml"), "prometheus.yml");
    let targets: Vec<String> = yaml_seq(at(&prometheus, &["alerting", "alertmanagers"]))
        .into_iter()
        .flat_map(|a| yaml_seq(a.get("static_configs")))
        .flat_map(|s| yaml_strings(s.get("targets")))
        .collect();
    assert_eq!(targets, ["alertmanager:9093"], "prometheus.yml sends its alerts to Alertmanager");
    let compose = compose();
    let alertmanager = compose_service(&compose, "alertmanager");
    let image = str_at(alertmanager, &["image"]).unwrap_or_default();
    assert!(pinned(&image), "compose alertmanager: image {image:?} is not pinned");
    let mounts = yaml_strings(alertmanager.get("volumes"));
    assert!(
        mounts.iter().any(|m| m.starts_with("./deploy/monitoring/alertmanager.yml:")),
        "compose alertmanager does not mount deploy/monitoring/alertmanager.yml: {mounts:?}"
    );
}

#[test]
fn prometheus_finds_its_rules_beside_it_in_the_repository_and_in_the_container() {
    let prometheus = yaml(&read("deploy/monitoring/prometheus.yml"), "prometheus.yml");
    let rule_files = yaml_strings(prometheus.get("rule_files"));
    assert!(!rule_files.is_empty(), "prometheus.yml: no rule_files");
    let compose = compose();
    let mounts = yaml_strings(compose_service(&compose, "prometheus").get("volumes"));
    let config = mounts
        .iter()
        .find_map(|m| m.strip_prefix("./deploy/monitoring/prometheus.yml:"))
        .expect("compose prometheus mounts prometheus.yml");
    let config_dir = config.trim_end_matches(":ro").rsplit_once('/').map(|(d, _)| d).unwrap_or(".");
    for file in rule_files {
        assert!(
            !file.starts_with('/'),
            "rule file {file}: relative to prometheus.yml, not a container path"
        );
        let in_repo = format!("deploy/monitoring/{file}");
        assert!(
            super::root().join(&in_repo).is_file(),
            "prometheus.yml names {file}: no {in_repo}"
        );
        let mount = format!("./{in_repo}:{config_dir}/{file}");
        assert!(mounts.iter().any(|m| m.starts_with(&mount)), "compose prometheus lacks {mount}");
    }
    // Every job the alerts select on is scraped.
    let jobs: BTreeSet<String> = yaml_seq(prometheus.get("scrape_configs"))
        .iter()
        .filter_map(|c| str_at(c, &["job_name"]))
        .collect();
    for job in ["portfolio-api", "portfolio-worker", "postgres", "redis"] {
        assert!(jobs.contains(job), "prometheus.yml: no scrape job {job}");
    }
}

/// A number written as a JSON string or number (`"2048"` or `2048`).
fn number(value: &serde_json::Value) -> Option<f64> {
    value.as_f64().or_else(|| value.as_str()?.parse().ok())
}

/// A Kubernetes or compose quantity: bytes (`2Gi`, `512Mi`, compose's `4g`) or CPUs (`1`,
/// `0.5`, Kubernetes' `500m`). Compose's `512m` (megabytes) would read as millicores: the
/// checks only read limits, which the files write in GiB.
fn quantity(text: &str) -> f64 {
    let text = text.trim().trim_matches('"');
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let value: f64 = text[..split].parse().unwrap_or_else(|_| panic!("quantity {text:?}"));
    let factor = match &text[split..] {
        "" => 1.0,
        "m" => 1e-3,
        "Ki" | "k" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" | "g" | "G" => GIB,
        other => panic!("quantity {text:?}: unit {other:?}"),
    };
    value * factor
}

/// N of `0.85 * N * 1024 * 1024 * 1024` in an alert expression (the limit in GiB).
fn gib_in_threshold(expr: &str) -> Option<f64> {
    let rest = expr.split("0.85 *").nth(1)?;
    let (n, tail) = rest.trim().split_once('*')?;
    tail.trim().starts_with("1024 * 1024 * 1024").then_some(())?;
    n.trim().parse().ok()
}

/// An image reference with a version tag (not `latest`, not untagged).
fn pinned(image: &str) -> bool {
    let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
    !tag.contains('/') && tag != "latest" && tag.chars().any(|c| c.is_ascii_digit())
}

#[test]
fn an_image_is_pinned_only_with_a_version_tag() {
    assert!(pinned("quay.io/prometheuscommunity/postgres-exporter:v0.15.0"));
    assert!(!pinned("oliver006/redis_exporter:latest"));
    assert!(!pinned("oliver006/redis_exporter"));
    assert!(!pinned("localhost:5000/redis_exporter"));
}
