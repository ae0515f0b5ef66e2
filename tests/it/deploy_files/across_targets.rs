//! Checks that run over every target at once: each file exists and parses, and the
//! variables, secrets, ports, health checks, commands, stop times and API scaling the files
//! set agree with the code (and with each other) wherever they are set.

use std::collections::{BTreeMap, BTreeSet};

use portfolio_shared::settings::{API_SHUTDOWN_GRACE_SECS, VARIABLES, WORKER_SHUTDOWN_GRACE_SECS};
use serde_yaml::Value as Yaml;

use super::compose::{compose, compose_binary, compose_env, compose_service};
use super::dockerfiles::Dockerfile;
use super::ecs::{ECS_TASKS, ecs_container, ecs_env};
use super::kubernetes::{
    k8s_literal_env, k8s_object, k8s_objects, kind, pod_containers, probes, resolve_port,
};
use super::{
    API_BINARY, API_SUBCOMMANDS, WORKER_BINARY, WORKER_SUBCOMMANDS, array, at, binary_named,
    default_port, duration_secs, files_under, image_binary, is_healthcheck_of, json, json_strings,
    mapping_entries, mapping_keys, mapping_strings, read, root, str_at, subcommand_problem,
    subcommands_in, u64_at, yaml, yaml_documents, yaml_seq, yaml_strings,
};

/// Time an orchestrator must allow beyond the worker's shutdown grace before it kills it.
const STOP_MARGIN_SECS: f64 = 10.0;
/// ECS refuses a larger `stopTimeout`.
const ECS_MAX_STOP_TIMEOUT_SECS: u64 = 120;

const API_HTTP_PATHS: &[&str] = &["/health", "/ready"];
const WORKER_HTTP_PATHS: &[&str] = &["/health"];

/// Variables that may carry a password or a key: never a literal in ECS or Kubernetes files.
const SECRET_VARIABLES: &[&str] =
    &["DATABASE_URL", "DATABASE_READ_URL", "REDIS_URL", "BOOTSTRAP_API_KEY"];
/// Where the deploy files put the API's metrics listener (`METRICS_BIND`): a port of its own,
/// apart from the public one, and apart from the worker's default so the two never clash.
const API_METRICS_PORT: u16 = 9090;

/// Every file this suite knows; each must exist.
const EXPECTED_FILES: &[&str] = &[
    "Dockerfile.api",
    "Dockerfile.worker",
    ".dockerignore",
    "docker-compose.yml",
    "deploy/nginx/nginx.conf",
    "ecs/task-api.json",
    "ecs/task-worker.json",
    "ecs/task-migrate.json",
    "ecs/service-api.json",
    "ecs/service-worker.json",
    "ecs/target-group-api.json",
    "ecs/scaling-api-target.json",
    "ecs/scaling-api-cpu.json",
    "ecs/scaling-api-memory.json",
    "ecs/scaling-worker-target.json",
    "ecs/scaling-worker-backlog.json",
    "ecs/deploy.sh",
    "ecs/README.md",
    "deploy/k8s/namespace.yaml",
    "deploy/k8s/configmap.yaml",
    "deploy/k8s/secret.example.yaml",
    "deploy/k8s/api.yaml",
    "deploy/k8s/api-hpa.yaml",
    "deploy/k8s/worker.yaml",
    "deploy/k8s/worker-keda.yaml",
    "deploy/k8s/migrate-job.yaml",
    "deploy/k8s/kustomization.yaml",
    "deploy/monitoring/alerts.yml",
    "deploy/monitoring/alerts.test.yml",
    "deploy/monitoring/alertmanager.yml",
    "deploy/k8s/monitoring/exporters.yaml",
    "deploy/postgres/init/01-pg-stat-statements.sql",
    "deploy/monitoring/prometheus.yml",
    "deploy/monitoring/grafana-dashboard.json",
    "deploy/monitoring/grafana/datasources.yml",
    "deploy/monitoring/grafana/dashboards.yml",
    "docs/operations.md",
];

#[test]
fn every_deploy_file_exists_and_parses() {
    let missing: Vec<&str> =
        EXPECTED_FILES.iter().copied().filter(|f| !root().join(f).is_file()).collect();
    assert!(missing.is_empty(), "missing deploy files: {missing:?}");

    let mut checked = 0;
    for dir in ["ecs", "deploy"] {
        for file in files_under(dir) {
            if file.ends_with(".json") {
                json(&file);
                checked += 1;
            } else if file.ends_with(".yml") || file.ends_with(".yaml") {
                assert!(!yaml_documents(&file).is_empty(), "{file} has no YAML document");
                checked += 1;
            }
        }
    }
    yaml(&read("docker-compose.yml"), "docker-compose.yml");
    assert!(checked >= 20, "only {checked} JSON/YAML files found under ecs/ and deploy/");

    for (file, doc) in k8s_objects() {
        for key in ["apiVersion", "kind"] {
            assert!(str_at(&doc, &[key]).is_some(), "{file}: an object without {key}");
        }
        if str_at(&doc, &["kind"]).as_deref() != Some("Kustomization") {
            assert!(
                str_at(&doc, &["metadata", "name"]).is_some(),
                "{file}: an object without a name"
            );
        }
    }
}

#[test]
fn every_variable_a_deploy_file_sets_is_one_the_code_reads() {
    let known: BTreeSet<&str> = VARIABLES.iter().map(|(name, _)| *name).collect();
    let set = variables_set_by_deploy_files();
    for source in
        ["Dockerfile.api", "Dockerfile.worker", "docker-compose.yml", "ecs/", "deploy/k8s/"]
    {
        assert!(
            set.iter().any(|(from, _)| from.starts_with(source)),
            "found no variable set in {source}: the reader is out of step with the file"
        );
    }
    let unknown: Vec<String> = set
        .iter()
        .filter(|(_, name)| !known.contains(name.as_str()))
        .map(|(from, name)| format!("{from}: {name}"))
        .collect();
    assert!(
        unknown.is_empty(),
        "variables not in portfolio_shared::settings::VARIABLES (typo, or add them to the code):\n{}",
        unknown.join("\n")
    );
}

#[test]
fn secrets_reach_ecs_and_kubernetes_only_by_reference() {
    let mut problems = Vec::new();
    for file in ECS_TASKS {
        let task = json(file);
        let container = ecs_container(&task, file);
        for name in ecs_env(container).keys() {
            if SECRET_VARIABLES.contains(&name.as_str()) {
                problems.push(format!("{file}: {name} is a plain environment value, not a secret"));
            }
        }
        for secret in array(&container["secrets"]) {
            let from = secret["valueFrom"].as_str().unwrap_or_default();
            if !(from.starts_with("arn:aws:secretsmanager:") || from.starts_with("arn:aws:ssm:")) {
                problems.push(format!("{file}: secret {} is not an ARN: {from}", secret["name"]));
            }
        }
        let secret_names: BTreeSet<&str> =
            array(&container["secrets"]).iter().filter_map(|s| s["name"].as_str()).collect();
        let needed: &[&str] = if file.ends_with("migrate.json") {
            &["DATABASE_URL"]
        } else if file.ends_with("api.json") {
            // The bootstrap key reaches the API as a secret, never from the image.
            &["DATABASE_URL", "REDIS_URL", "BOOTSTRAP_API_KEY"]
        } else {
            &["DATABASE_URL", "REDIS_URL"]
        };
        for name in needed {
            if !secret_names.contains(name) {
                problems.push(format!("{file}: {name} is not among the secrets"));
            }
        }
    }

    for (file, doc) in k8s_objects() {
        if kind(&doc) == "ConfigMap" {
            for key in mapping_keys(doc.get("data")) {
                if SECRET_VARIABLES.contains(&key.as_str()) {
                    problems.push(format!("{file}: ConfigMap holds {key}; it belongs in a Secret"));
                }
            }
        }
        if kind(&doc) == "Secret" {
            for (key, value) in mapping_strings(doc.get("stringData")) {
                if !value.starts_with("REPLACE_WITH_") {
                    problems.push(format!(
                        "{file}: Secret key {key} is not a REPLACE_WITH_ placeholder"
                    ));
                }
            }
            if doc.get("data").is_some() {
                problems.push(format!(
                    "{file}: Secret templates use stringData placeholders, not data"
                ));
            }
        }
        for container in pod_containers(&doc) {
            for env in yaml_seq(container.get("env")) {
                let name = str_at(env, &["name"]).unwrap_or_default();
                if SECRET_VARIABLES.contains(&name.as_str())
                    && str_at(env, &["valueFrom", "secretKeyRef", "name"]).is_none()
                {
                    problems.push(format!("{file}: {name} does not come from a secretKeyRef"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_api_deployment_requires_keys_explicitly() {
    let mut problems = Vec::new();
    let task = json("ecs/task-api.json");
    let ecs = ecs_env(ecs_container(&task, "ecs/task-api.json"));
    let config = k8s_object("ConfigMap", "portfolio-mc-config");
    let k8s: BTreeMap<String, String> = mapping_strings(config.get("data")).into_iter().collect();
    let compose = compose_env(compose_service(&compose(), "api"));
    for (file, env) in [
        ("ecs/task-api.json", &ecs),
        ("deploy/k8s/configmap.yaml", &k8s),
        ("docker-compose.yml", &compose),
    ] {
        if env.get("AUTH_MODE").map(String::as_str) != Some("api_key") {
            problems.push(format!("{file}: AUTH_MODE is not set to api_key"));
        }
        for limit in [
            "RATE_LIMIT_SUBMITS_PER_MINUTE",
            "RATE_LIMIT_READS_PER_MINUTE",
            "MAX_UNFINISHED_JOBS_PER_KEY",
        ] {
            if !env.contains_key(limit) {
                problems.push(format!("{file}: {limit} is not set"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_ecs_or_kubernetes_file_holds_a_password() {
    let mut problems = Vec::new();
    let files = files_under("ecs").into_iter().chain(files_under("deploy/k8s"));
    for file in files.filter(|f| [".json", ".yaml", ".yml", ".sh"].iter().any(|e| f.ends_with(e))) {
        let text = read(&file);
        problems.extend(password_literals(&text).into_iter().map(|p| format!("{file}: {p}")));
    }
    assert!(problems.is_empty(), "secret values in deploy files:\n{}", problems.join("\n"));
}

#[test]
fn the_password_finder_tells_literals_from_references() {
    assert!(!password_literals("postgres://app:hunter2@db/x").is_empty());
    assert!(!password_literals("redis://:s3cret@cache:6379").is_empty());
    assert!(!password_literals("PASSWORD=hunter2").is_empty());
    assert!(password_literals("postgres://postgres@127.0.0.1:5432/db").is_empty());
    assert!(password_literals("postgres://USER:PASSWORD@HOST:5432/db").is_empty());
    assert!(password_literals(r#"--from-literal=password="$REDIS_PASSWORD""#).is_empty());
    assert!(password_literals("postgres://u:${DB_PASSWORD}@db/x").is_empty());
}

#[test]
fn containers_listen_on_the_ports_the_code_binds() {
    let api_port = default_port("API_BIND");
    let worker_port = default_port("METRICS_BIND");
    assert_eq!((api_port, worker_port), (8080, 9091), "the code's default ports moved");
    let mut problems = Vec::new();
    let mut check_bind = |from: &str, value: Option<&str>, port: u16| match value {
        Some(bind) if bind == format!("0.0.0.0:{port}") => {}
        other => problems.push(format!("{from}: bind {other:?}, expected 0.0.0.0:{port}")),
    };

    let api_metrics = API_METRICS_PORT;
    // Dockerfiles.
    for (file, variable, port, exposed) in [
        ("Dockerfile.api", "API_BIND", api_port, vec![api_port, api_metrics]),
        ("Dockerfile.api", "METRICS_BIND", api_metrics, vec![api_port, api_metrics]),
        ("Dockerfile.worker", "METRICS_BIND", worker_port, vec![worker_port]),
    ] {
        let image = Dockerfile::read(file);
        check_bind(file, image.env().get(variable).map(String::as_str), port);
        assert_eq!(image.exposed(), exposed, "{file}: EXPOSE");
    }

    // Compose.
    let compose = compose();
    for (service, variable, port) in [
        ("api", "API_BIND", api_port),
        ("api", "METRICS_BIND", api_metrics),
        ("worker", "METRICS_BIND", worker_port),
    ] {
        let env = compose_env(compose_service(&compose, service));
        check_bind(
            &format!("docker-compose.yml {service}"),
            env.get(variable).map(String::as_str),
            port,
        );
    }
    let nginx = read("deploy/nginx/nginx.conf");
    assert!(
        nginx.contains(&format!("server api:{api_port}")),
        "nginx.conf: upstream is not api:{api_port}"
    );

    // ECS.
    for (file, binds, listens) in [
        (
            "ecs/task-api.json",
            vec![("API_BIND", api_port), ("METRICS_BIND", api_metrics)],
            vec![api_port, api_metrics],
        ),
        ("ecs/task-worker.json", vec![("METRICS_BIND", worker_port)], vec![worker_port]),
    ] {
        let task = json(file);
        let container = ecs_container(&task, file);
        for (variable, port) in binds {
            check_bind(file, ecs_env(container).get(variable).map(String::as_str), port);
        }
        let ports: Vec<u64> = array(&container["portMappings"])
            .iter()
            .filter_map(|p| p["containerPort"].as_u64())
            .collect();
        let listens: Vec<u64> = listens.into_iter().map(u64::from).collect();
        assert_eq!(ports, listens, "{file}: portMappings");
    }
    let service = json("ecs/service-api.json");
    let lb = &array(&service["loadBalancers"])[0];
    assert_eq!(
        lb["containerPort"].as_u64(),
        Some(u64::from(api_port)),
        "service-api.json: containerPort"
    );
    let task = json("ecs/task-api.json");
    assert_eq!(
        lb["containerName"],
        ecs_container(&task, "ecs/task-api.json")["name"],
        "service-api.json: containerName"
    );
    assert_eq!(json("ecs/target-group-api.json")["Port"].as_u64(), Some(u64::from(api_port)));

    // Kubernetes: probes on the port that serves /health, Prometheus on the metrics port.
    for (deployment, binds, probed, scraped) in [
        (
            "portfolio-api",
            vec![("API_BIND", api_port), ("METRICS_BIND", api_metrics)],
            api_port,
            api_metrics,
        ),
        ("portfolio-worker", vec![("METRICS_BIND", worker_port)], worker_port, worker_port),
    ] {
        let doc = k8s_object("Deployment", deployment);
        let container = pod_containers(&doc)[0];
        for (variable, port) in &binds {
            let value = yaml_seq(container.get("env"))
                .iter()
                .find(|e| str_at(e, &["name"]).as_deref() == Some(*variable))
                .and_then(|e| str_at(e, &["value"]));
            check_bind(&format!("deploy/k8s {deployment}"), value.as_deref(), *port);
        }
        let ports: Vec<u64> = yaml_seq(container.get("ports"))
            .iter()
            .filter_map(|p| u64_at(p, &["containerPort"]))
            .collect();
        let bound: Vec<u64> = binds.iter().map(|(_, port)| u64::from(*port)).collect();
        assert_eq!(ports, bound, "deploy/k8s {deployment}: containerPort");
        for (probe, _, probe_port) in probes(container) {
            assert_eq!(probe_port, Some(probed), "deploy/k8s {deployment}: {probe} port");
        }
        let annotation =
            str_at(&doc, &["spec", "template", "metadata", "annotations", "prometheus.io/port"]);
        assert_eq!(
            annotation,
            Some(scraped.to_string()),
            "deploy/k8s {deployment}: prometheus.io/port"
        );
    }
    for (file, doc) in k8s_objects().into_iter().filter(|(_, d)| kind(d) == "Service") {
        let selector =
            str_at(&doc, &["spec", "selector", "app.kubernetes.io/name"]).unwrap_or_default();
        let port = if selector == "portfolio-api" { api_port } else { worker_port };
        for p in yaml_seq(doc.get("spec").and_then(|s| s.get("ports"))) {
            let target = str_at(p, &["targetPort"]).unwrap_or_default();
            let deployment = k8s_object("Deployment", &selector);
            let resolved = resolve_port(pod_containers(&deployment)[0], &target);
            assert_eq!(resolved, Some(port), "{file}: Service targetPort {target}");
        }
    }

    // Prometheus.
    let prometheus = yaml(&read("deploy/monitoring/prometheus.yml"), "prometheus.yml");
    for (job, port) in [("portfolio-api", api_metrics), ("portfolio-worker", worker_port)] {
        let config = yaml_seq(prometheus.get("scrape_configs"))
            .into_iter()
            .find(|c| str_at(c, &["job_name"]).as_deref() == Some(job))
            .unwrap_or_else(|| panic!("prometheus.yml: no scrape job {job}"));
        let ports: Vec<u64> = yaml_seq(config.get("dns_sd_configs"))
            .iter()
            .filter_map(|d| u64_at(d, &["port"]))
            .collect();
        assert_eq!(ports, vec![u64::from(port)], "prometheus.yml {job}: port");
        assert_eq!(
            str_at(config, &["metrics_path"]).as_deref(),
            Some("/metrics"),
            "prometheus.yml {job}"
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn health_checks_use_the_paths_and_subcommands_the_binaries_serve() {
    let mut problems = Vec::new();

    for (file, binary) in [("Dockerfile.api", API_BINARY), ("Dockerfile.worker", WORKER_BINARY)] {
        let check = Dockerfile::read(file)
            .healthcheck()
            .unwrap_or_else(|| panic!("{file}: no HEALTHCHECK"));
        if !is_healthcheck_of(&check, binary) {
            problems.push(format!("{file}: HEALTHCHECK {check:?} is not `{binary} healthcheck`"));
        }
    }

    let compose = compose();
    for (service, binary) in [("api", API_BINARY), ("worker", WORKER_BINARY)] {
        let test = yaml_strings(
            compose_service(&compose, service).get("healthcheck").and_then(|h| h.get("test")),
        );
        if !is_healthcheck_of(&test, binary) {
            problems.push(format!("docker-compose.yml {service}: healthcheck {test:?}"));
        }
    }

    for (file, binary) in
        [("ecs/task-api.json", API_BINARY), ("ecs/task-worker.json", WORKER_BINARY)]
    {
        let task = json(file);
        let command = json_strings(&ecs_container(&task, file)["healthCheck"]["command"]);
        if !is_healthcheck_of(&command, binary) {
            problems.push(format!("{file}: healthCheck {command:?}"));
        }
    }
    let target_group = json("ecs/target-group-api.json");
    // ECS replaces a task the ALB finds unhealthy: a check on `/ready` would replace every API
    // task through an outage of Redis or Postgres, which the API is built to work through.
    assert_eq!(target_group["HealthCheckPath"], "/health", "the ALB checks liveness");

    for (deployment, allowed) in
        [("portfolio-api", API_HTTP_PATHS), ("portfolio-worker", WORKER_HTTP_PATHS)]
    {
        let doc = k8s_object("Deployment", deployment);
        let container = pod_containers(&doc)[0];
        let found = probes(container);
        for (probe, path, _) in &found {
            if !allowed.contains(&path.as_str()) {
                problems.push(format!(
                    "deploy/k8s {deployment}: {probe} on {path}, served: {allowed:?}"
                ));
            }
        }
        let path_of =
            |name: &str| found.iter().find(|(p, _, _)| p == name).map(|(_, path, _)| path.clone());
        if path_of("livenessProbe").as_deref() != Some("/health") {
            problems.push(format!("deploy/k8s {deployment}: livenessProbe must be /health"));
        }
        // Not /ready for the API either: an outage of Redis or Postgres would take every pod
        // out of the Service at once, where the API is built to answer through it.
        if path_of("readinessProbe").as_deref() != Some("/health") {
            problems.push(format!("deploy/k8s {deployment}: readinessProbe must be /health"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_command_names_a_binary_and_a_subcommand_that_exist() {
    let mut problems = Vec::new();

    for (file, binary, default) in
        [("Dockerfile.api", API_BINARY, "serve"), ("Dockerfile.worker", WORKER_BINARY, "run")]
    {
        let image = Dockerfile::read(file);
        let entrypoint = image.last_stage_exec("ENTRYPOINT");
        if entrypoint.len() != 1 || binary_named(&entrypoint[0]) != Some(binary) {
            problems.push(format!("{file}: ENTRYPOINT {entrypoint:?} is not the {binary} binary"));
        }
        let cmd = image.last_stage_exec("CMD");
        if cmd != [default] {
            problems.push(format!("{file}: CMD {cmd:?}, expected [{default:?}]"));
        }
        let copied = image.instructions.iter().any(|i| {
            i.stage == image.stages() - 1
                && i.keyword == "COPY"
                && i.args.contains(&format!("/usr/local/bin/{binary}"))
        });
        if !copied {
            problems
                .push(format!("{file}: the runtime stage does not copy /usr/local/bin/{binary}"));
        }
    }

    let compose = compose();
    for (name, service) in mapping_entries(compose.get("services")) {
        if let Some(binary) = compose_binary(service) {
            let command = yaml_strings(service.get("command"));
            problems.extend(subcommand_problem(
                &format!("docker-compose.yml {name}"),
                binary,
                &command,
            ));
        }
    }
    let migrate = yaml_strings(compose_service(&compose, "migrate").get("command"));
    assert_eq!(migrate, ["migrate"], "docker-compose.yml migrate");

    for (file, binary, command) in [
        ("ecs/task-api.json", API_BINARY, "serve"),
        ("ecs/task-worker.json", WORKER_BINARY, "run"),
        ("ecs/task-migrate.json", API_BINARY, "migrate"),
    ] {
        let task = json(file);
        let container = ecs_container(&task, file);
        let image = container["image"].as_str().unwrap_or_default();
        if image_binary(image) != Some(binary) {
            problems.push(format!("{file}: image {image} is not the {binary} image"));
        }
        let args = json_strings(&container["command"]);
        if args != [command] {
            problems.push(format!("{file}: command {args:?}, expected [{command:?}]"));
        }
    }

    for (file, doc) in k8s_objects() {
        for container in pod_containers(&doc) {
            let image = str_at(container, &["image"]).unwrap_or_default();
            let Some(binary) = image_binary(&image) else {
                problems.push(format!(
                    "{file}: image {image} is neither {API_BINARY} nor {WORKER_BINARY}"
                ));
                continue;
            };
            let mut args = yaml_strings(container.get("command"));
            args.extend(yaml_strings(container.get("args")));
            if let Some(first) = args.first()
                && binary_named(first).is_some()
            {
                args.remove(0);
            }
            problems.extend(subcommand_problem(&format!("{file} {}", kind(&doc)), binary, &args));
        }
    }
    let job = k8s_object("Job", "portfolio-mc-migrate");
    assert_eq!(yaml_strings(pod_containers(&job)[0].get("args")), ["migrate"], "migrate Job args");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_subcommands_the_files_use_are_those_the_binaries_define() {
    for (binary, main, used) in [
        (API_BINARY, "api/src/main.rs", API_SUBCOMMANDS),
        (WORKER_BINARY, "worker/src/main.rs", WORKER_SUBCOMMANDS),
    ] {
        let defined = subcommands_in(&read(main));
        assert_eq!(
            used.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
            defined,
            "{binary}: the subcommands of `enum Command` in {main} changed; update the deploy files"
        );
    }
}

#[test]
fn workers_get_longer_to_stop_than_their_shutdown_grace() {
    let grace_in = |env: &BTreeMap<String, String>| grace_of(WORKER_BINARY, env);

    let task = json("ecs/task-worker.json");
    let container = ecs_container(&task, "ecs/task-worker.json");
    let stop = container["stopTimeout"].as_u64().expect("task-worker.json: stopTimeout");
    let grace = grace_in(&ecs_env(container));
    assert!(
        stop as f64 >= grace + STOP_MARGIN_SECS,
        "ECS stopTimeout {stop} s < grace {grace} s + margin"
    );
    assert!(
        stop <= ECS_MAX_STOP_TIMEOUT_SECS,
        "ECS caps stopTimeout at {ECS_MAX_STOP_TIMEOUT_SECS} s"
    );
    assert_eq!(
        container["linuxParameters"]["initProcessEnabled"], true,
        "SIGTERM needs an init process"
    );

    let doc = k8s_object("Deployment", "portfolio-worker");
    let period = u64_at(&doc, &["spec", "template", "spec", "terminationGracePeriodSeconds"])
        .expect("worker terminationGracePeriodSeconds");
    let grace = grace_in(&k8s_literal_env(pod_containers(&doc)[0]));
    assert!(
        period as f64 >= grace + STOP_MARGIN_SECS,
        "k8s terminationGracePeriodSeconds {period} s < grace {grace} s + margin"
    );

    let compose = compose();
    let worker = compose_service(&compose, "worker");
    let period = str_at(worker, &["stop_grace_period"]).expect("compose worker stop_grace_period");
    let seconds = duration_secs(&period).unwrap_or_else(|| panic!("stop_grace_period {period:?}"));
    let grace = grace_in(&compose_env(worker));
    assert!(
        seconds >= grace + STOP_MARGIN_SECS,
        "compose stop_grace_period {period} < grace {grace} s + margin"
    );
}

#[test]
fn the_api_scales_on_cpu_and_memory_like_the_old_guide() {
    let cpu = json("ecs/scaling-api-cpu.json");
    let config = &cpu["TargetTrackingScalingPolicyConfiguration"];
    assert_eq!(
        config["PredefinedMetricSpecification"]["PredefinedMetricType"],
        "ECSServiceAverageCPUUtilization"
    );
    assert_eq!(config["TargetValue"].as_f64(), Some(70.0));
    let memory = json("ecs/scaling-api-memory.json");
    let config = &memory["TargetTrackingScalingPolicyConfiguration"];
    assert_eq!(
        config["PredefinedMetricSpecification"]["PredefinedMetricType"],
        "ECSServiceAverageMemoryUtilization"
    );
    assert_eq!(config["TargetValue"].as_f64(), Some(80.0));

    let hpa = k8s_object("HorizontalPodAutoscaler", "portfolio-api");
    assert_eq!(str_at(&hpa, &["apiVersion"]).as_deref(), Some("autoscaling/v2"));
    assert_eq!(str_at(&hpa, &["spec", "scaleTargetRef", "name"]).as_deref(), Some("portfolio-api"));
    let spec = hpa.get("spec").expect("HPA spec");
    let utilisation: BTreeMap<String, u64> = yaml_seq(spec.get("metrics"))
        .iter()
        .filter_map(|m| {
            Some((
                str_at(m, &["resource", "name"])?,
                u64_at(m, &["resource", "target", "averageUtilization"])?,
            ))
        })
        .collect();
    assert_eq!(utilisation, BTreeMap::from([("cpu".to_owned(), 70), ("memory".to_owned(), 80)]));
    let policy = |direction: &str| -> (Option<u64>, Vec<(String, u64, u64)>) {
        let block = spec.get("behavior").and_then(|b| b.get(direction));
        let window = block.and_then(|b| u64_at(b, &["stabilizationWindowSeconds"]));
        let policies = yaml_seq(block.and_then(|b| b.get("policies")))
            .iter()
            .map(|p| {
                (
                    str_at(p, &["type"]).unwrap_or_default(),
                    u64_at(p, &["value"]).unwrap_or_default(),
                    u64_at(p, &["periodSeconds"]).unwrap_or_default(),
                )
            })
            .collect();
        (window, policies)
    };
    // The old guide's behaviour exactly: up with no stabilisation by the larger of 100 % and
    // 2 pods per 30 s; down after a 300 s window by at most 50 % per 60 s.
    assert_eq!(
        policy("scaleUp"),
        (Some(0), vec![("Percent".to_owned(), 100, 30), ("Pods".to_owned(), 2, 30)]),
        "scale up fast"
    );
    let select = |direction: &str| {
        spec.get("behavior")
            .and_then(|b| b.get(direction))
            .and_then(|b| str_at(b, &["selectPolicy"]))
    };
    assert_eq!(select("scaleUp").as_deref(), Some("Max"), "up by the larger of the two policies");
    assert_eq!(
        policy("scaleDown"),
        (Some(300), vec![("Percent".to_owned(), 50, 60)]),
        "scale down slowly"
    );
    assert!(
        select("scaleDown").is_none_or(|s| s == "Max"),
        "one scale-down policy: selectPolicy {:?} changes nothing or disables it",
        select("scaleDown")
    );

    // The runbook and the manifests' README say the same.
    let operations = read("docs/operations.md");
    assert!(
        operations.contains("by the larger of 100 % and 2 pods every 30 s")
            && operations.contains("by at most 50 % a minute after a 300 s"),
        "docs/operations.md does not describe the HPA's behaviour"
    );
    let readme = read("deploy/k8s/README.md");
    assert!(
        readme.contains("up max(100 %, 2 pods)/30 s, down 50 %/60 s after 300 s"),
        "deploy/k8s/README.md does not describe the HPA's behaviour"
    );
}

#[test]
fn autoscaled_deployments_leave_the_replica_count_to_their_autoscaler() {
    // `replicas:` in a Deployment that an HPA or KEDA scales resets the count on every
    // `kubectl apply -k`, stopping scaled-out pods mid-request or mid-job.
    let hpa = k8s_object("HorizontalPodAutoscaler", "portfolio-api");
    let keda = k8s_object("ScaledObject", "portfolio-worker");
    for (owner, target) in [(&hpa, "portfolio-api"), (&keda, "portfolio-worker")] {
        assert_eq!(
            str_at(owner, &["spec", "scaleTargetRef", "name"]).as_deref(),
            Some(target),
            "{target} is autoscaled"
        );
        let deployment = k8s_object("Deployment", target);
        assert!(
            at(&deployment, &["spec", "replicas"]).is_none(),
            "deploy/k8s Deployment {target} sets replicas: its autoscaler owns the count"
        );
    }
}

/// A process's shutdown grace in a deploy file: the file's SHUTDOWN_GRACE_SECS, else the
/// code's default for that process.
fn grace_of(binary: &str, env: &BTreeMap<String, String>) -> f64 {
    let default =
        if binary == API_BINARY { API_SHUTDOWN_GRACE_SECS } else { WORKER_SHUTDOWN_GRACE_SECS };
    env.get("SHUTDOWN_GRACE_SECS")
        .map_or(default as f64, |v| v.parse().expect("SHUTDOWN_GRACE_SECS"))
}

#[test]
fn the_api_drains_within_every_orchestrators_budget() {
    // ECS: stopTimeout (from SIGTERM to SIGKILL).
    let task = json("ecs/task-api.json");
    let container = ecs_container(&task, "ecs/task-api.json");
    let stop = container["stopTimeout"].as_u64().expect("task-api.json: stopTimeout");
    let grace = grace_of(API_BINARY, &ecs_env(container));
    assert!(grace >= 1.0, "the API drains at all");
    assert!((stop as f64) > grace, "ECS stopTimeout {stop} s <= the API's grace {grace} s");
    assert_eq!(
        container["linuxParameters"]["initProcessEnabled"], true,
        "SIGTERM needs an init process"
    );

    // Kubernetes: terminationGracePeriodSeconds covers the preStop hook and then the drain.
    let doc = k8s_object("Deployment", "portfolio-api");
    let period = u64_at(&doc, &["spec", "template", "spec", "terminationGracePeriodSeconds"])
        .expect("api terminationGracePeriodSeconds") as f64;
    let api = pod_containers(&doc)[0];
    let pre_stop = yaml_strings(at(api, &["lifecycle", "preStop", "exec", "command"]));
    let pre_stop_secs: f64 = match pre_stop.as_slice() {
        [] => 0.0,
        [sleep, secs] if sleep == "sleep" => secs.parse().expect("preStop sleep seconds"),
        other => panic!("api preStop {other:?}: expected `sleep N`"),
    };
    let grace = grace_of(API_BINARY, &k8s_literal_env(api));
    assert!(
        period > pre_stop_secs + grace,
        "k8s terminationGracePeriodSeconds {period} s <= preStop {pre_stop_secs} s + grace {grace} s"
    );

    // compose: stop_grace_period (docker's default, 10 s, is too short: set it).
    let compose = compose();
    let service = compose_service(&compose, "api");
    let period = str_at(service, &["stop_grace_period"]).expect("compose api stop_grace_period");
    let seconds = duration_secs(&period).unwrap_or_else(|| panic!("stop_grace_period {period:?}"));
    let grace = grace_of(API_BINARY, &compose_env(service));
    assert!(seconds > grace, "compose api stop_grace_period {period} <= grace {grace} s");
    assert_eq!(service.get("init").and_then(Yaml::as_bool), Some(true), "compose api: init");
}

/// (where, name) of every environment variable the deploy files set for our processes.
fn variables_set_by_deploy_files() -> Vec<(String, String)> {
    let mut set = Vec::new();
    for file in ["Dockerfile.api", "Dockerfile.worker"] {
        set.extend(Dockerfile::read(file).env().into_keys().map(|k| (file.to_owned(), k)));
    }

    let compose = compose();
    for (name, service) in mapping_entries(compose.get("services")) {
        if compose_binary(service).is_some() {
            let from = format!("docker-compose.yml {name}");
            set.extend(compose_env(service).into_keys().map(|k| (from.clone(), k)));
        }
    }

    for file in ECS_TASKS {
        let task = json(file);
        for container in array(&task["containerDefinitions"]) {
            for list in ["environment", "secrets"] {
                for entry in array(&container[list]) {
                    set.push((
                        file.to_string(),
                        entry["name"].as_str().unwrap_or_default().to_owned(),
                    ));
                }
            }
        }
    }

    let objects = k8s_objects();
    let keys_of = |kind_name: &str, name: &str, from: &str| -> Vec<String> {
        let object = objects
            .iter()
            .find(|(_, d)| {
                kind(d) == kind_name && str_at(d, &["metadata", "name"]).as_deref() == Some(name)
            })
            .unwrap_or_else(|| {
                panic!("{from}: envFrom names {kind_name} {name}, which no file defines")
            });
        let field = if kind_name == "Secret" { "stringData" } else { "data" };
        mapping_keys(object.1.get(field))
    };
    for (file, doc) in &objects {
        if kind(doc) == "ConfigMap" {
            set.extend(mapping_keys(doc.get("data")).into_iter().map(|k| (file.clone(), k)));
        }
        for container in pod_containers(doc) {
            for env in yaml_seq(container.get("env")) {
                set.push((file.clone(), str_at(env, &["name"]).unwrap_or_default()));
            }
            for source in yaml_seq(container.get("envFrom")) {
                if let Some(name) = str_at(source, &["configMapRef", "name"]) {
                    set.extend(
                        keys_of("ConfigMap", &name, file).into_iter().map(|k| (file.clone(), k)),
                    );
                }
                if let Some(name) = str_at(source, &["secretRef", "name"]) {
                    set.extend(
                        keys_of("Secret", &name, file).into_iter().map(|k| (file.clone(), k)),
                    );
                }
            }
        }
    }
    set
}

/// Passwords written out: `password=<literal>` and URLs with `user:password@`. References
/// (`$VAR`, `${VAR}`, `<...>`) and upper-case placeholders (`PASSWORD`, `REPLACE_WITH_X`) pass.
fn password_literals(text: &str) -> Vec<String> {
    let is_reference = |value: &str| {
        let value = value.trim_start_matches(['"', '\'']);
        value.is_empty()
            || value.starts_with('$')
            || value.starts_with('<')
            || value
                .chars()
                .take_while(|c| !matches!(c, '"' | '\'' | ' ' | '@'))
                .all(|c| c.is_ascii_uppercase() || c == '_')
    };
    let mut found = Vec::new();
    let lower = text.to_ascii_lowercase();
    for (at, _) in lower.match_indices("password=") {
        let value = &text[at + "password=".len()..];
        if !is_reference(value) {
            found.push(format!(
                "password= followed by a literal: {}",
                value.lines().next().unwrap_or_default()
            ));
        }
    }
    for (at, _) in text.match_indices("://") {
        let rest = &text[at + 3..];
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '/' | ','))
            .unwrap_or(rest.len());
        let authority = &rest[..end];
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && let Some((_, password)) = userinfo.split_once(':')
            && !is_reference(password)
        {
            found.push(format!(
                "a URL with a password: {}",
                text.get(at.saturating_sub(12)..at + 3 + end).unwrap_or(authority)
            ));
        }
    }
    found
}
