//! The deploy and operations files checked against the code they deploy.
//!
//! The Dockerfiles, docker-compose.yml, ecs/, deploy/k8s and deploy/monitoring name environment
//! variables, ports, health paths, subcommands, metric names and Redis keys that the Rust code
//! defines (`settings::VARIABLES`, `names`, `queue::Keys`). Nothing here needs Docker, a cluster or an AWS
//! account: each file is parsed and compared with the code, so renaming a variable or a metric
//! fails this suite instead of silently breaking a deployment or blanking a dashboard.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use portfolio_shared::names;
use portfolio_shared::queue::Keys;
use portfolio_shared::settings::VARIABLES;
use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

/// Time an orchestrator must allow beyond the worker's shutdown grace before it kills it.
const STOP_MARGIN_SECS: f64 = 10.0;
/// ECS refuses a larger `stopTimeout`.
const ECS_MAX_STOP_TIMEOUT_SECS: u64 = 120;

const API_BINARY: &str = "portfolio-api";
const WORKER_BINARY: &str = "portfolio-worker";
const API_SUBCOMMANDS: &[&str] = &["serve", "migrate", "healthcheck"];
const WORKER_SUBCOMMANDS: &[&str] = &["run", "healthcheck", "simulate"];
const API_HTTP_PATHS: &[&str] = &["/health", "/ready"];
const WORKER_HTTP_PATHS: &[&str] = &["/health"];

/// Variables that may carry a password: never a literal in ECS or Kubernetes files.
const SECRET_VARIABLES: &[&str] = &["DATABASE_URL", "DATABASE_READ_URL", "REDIS_URL"];

const ECS_TASKS: &[&str] = &["ecs/task-api.json", "ecs/task-worker.json", "ecs/task-migrate.json"];

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
    "deploy/monitoring/prometheus.yml",
    "deploy/monitoring/grafana-dashboard.json",
    "deploy/monitoring/grafana/datasources.yml",
    "deploy/monitoring/grafana/dashboards.yml",
    "docs/operations.md",
];

// ---------------------------------------------------------------------------------------------
// The tests.

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

    // Dockerfiles.
    for (file, variable, port) in [
        ("Dockerfile.api", "API_BIND", api_port),
        ("Dockerfile.worker", "METRICS_BIND", worker_port),
    ] {
        let image = Dockerfile::read(file);
        check_bind(file, image.env().get(variable).map(String::as_str), port);
        assert_eq!(image.exposed(), vec![port], "{file}: EXPOSE");
    }

    // Compose.
    let compose = compose();
    for (service, variable, port) in
        [("api", "API_BIND", api_port), ("worker", "METRICS_BIND", worker_port)]
    {
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
    for (file, variable, port) in [
        ("ecs/task-api.json", "API_BIND", api_port),
        ("ecs/task-worker.json", "METRICS_BIND", worker_port),
    ] {
        let task = json(file);
        let container = ecs_container(&task, file);
        check_bind(file, ecs_env(container).get(variable).map(String::as_str), port);
        let ports: Vec<u64> = array(&container["portMappings"])
            .iter()
            .filter_map(|p| p["containerPort"].as_u64())
            .collect();
        assert_eq!(ports, vec![u64::from(port)], "{file}: portMappings");
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

    // Kubernetes.
    for (deployment, variable, port) in
        [("portfolio-api", "API_BIND", api_port), ("portfolio-worker", "METRICS_BIND", worker_port)]
    {
        let doc = k8s_object("Deployment", deployment);
        let container = pod_containers(&doc)[0];
        let value = yaml_seq(container.get("env"))
            .iter()
            .find(|e| str_at(e, &["name"]).as_deref() == Some(variable))
            .and_then(|e| str_at(e, &["value"]));
        check_bind(&format!("deploy/k8s {deployment}"), value.as_deref(), port);
        let ports: Vec<u64> = yaml_seq(container.get("ports"))
            .iter()
            .filter_map(|p| u64_at(p, &["containerPort"]))
            .collect();
        assert_eq!(ports, vec![u64::from(port)], "deploy/k8s {deployment}: containerPort");
        for (probe, _, probe_port) in probes(container) {
            assert_eq!(probe_port, Some(port), "deploy/k8s {deployment}: {probe} port");
        }
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
    for (job, port) in [("portfolio-api", api_port), ("portfolio-worker", worker_port)] {
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
    assert_eq!(target_group["HealthCheckPath"], "/ready", "the ALB checks readiness");

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
        let readiness = if deployment == "portfolio-api" { "/ready" } else { "/health" };
        if path_of("readinessProbe").as_deref() != Some(readiness) {
            problems.push(format!("deploy/k8s {deployment}: readinessProbe must be {readiness}"));
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
    let default_grace: f64 =
        default_of("SHUTDOWN_GRACE_SECS").parse().expect("a number of seconds");
    let grace_in = |env: &BTreeMap<String, String>| -> f64 {
        env.get("SHUTDOWN_GRACE_SECS")
            .map_or(default_grace, |v| v.parse().expect("SHUTDOWN_GRACE_SECS"))
    };

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
fn the_worker_scaling_policy_tracks_the_metric_the_api_publishes() {
    let api_task = json("ecs/task-api.json");
    let api_env = ecs_env(ecs_container(&api_task, "ecs/task-api.json"));
    let namespace = api_env
        .get("QUEUE_NAMESPACE")
        .cloned()
        .unwrap_or_else(|| default_of("QUEUE_NAMESPACE").to_owned());
    let worker_task = json("ecs/task-worker.json");
    let worker_namespace = ecs_env(ecs_container(&worker_task, "ecs/task-worker.json"))
        .get("QUEUE_NAMESPACE")
        .cloned()
        .unwrap_or_else(|| default_of("QUEUE_NAMESPACE").to_owned());
    assert_eq!(namespace, worker_namespace, "api and worker must share one queue");
    if let Some(interval) = api_env.get("METRICS_PUBLISH_INTERVAL_SECS") {
        let secs: u64 = interval.parse().expect("METRICS_PUBLISH_INTERVAL_SECS");
        assert!(
            secs <= 60,
            "target tracking wants a datapoint a minute; publishing every {secs} s"
        );
    }

    let policy = json("ecs/scaling-worker-backlog.json");
    assert_eq!(policy["PolicyType"], "TargetTrackingScaling");
    let config = &policy["TargetTrackingScalingPolicyConfiguration"];
    let metric = &config["CustomizedMetricSpecification"];
    assert_eq!(metric["MetricName"], names::EMF_BACKLOG_PER_TASK);
    assert_eq!(metric["Namespace"], names::EMF_NAMESPACE);
    let dimensions = array(&metric["Dimensions"]);
    assert_eq!(dimensions.len(), 1, "the API publishes exactly one dimension");
    assert_eq!(dimensions[0]["Name"], names::EMF_DIMENSION);
    assert_eq!(
        dimensions[0]["Value"].as_str(),
        Some(namespace.as_str()),
        "dimension value = QUEUE_NAMESPACE"
    );
    assert!(
        metric.get("Unit").is_none(),
        "a Unit that differs from the published one matches no data"
    );
    assert!(config["TargetValue"].as_f64().is_some_and(|t| t >= 1.0), "TargetValue");

    for (service_file, policies) in [
        (
            "ecs/service-worker.json",
            &["ecs/scaling-worker-target.json", "ecs/scaling-worker-backlog.json"][..],
        ),
        (
            "ecs/service-api.json",
            &[
                "ecs/scaling-api-target.json",
                "ecs/scaling-api-cpu.json",
                "ecs/scaling-api-memory.json",
            ][..],
        ),
    ] {
        let service = json(service_file);
        let resource = format!(
            "service/{}/{}",
            service["cluster"].as_str().unwrap_or_default(),
            service["serviceName"].as_str().unwrap_or_default()
        );
        for file in policies {
            let doc = json(file);
            assert_eq!(doc["ResourceId"].as_str(), Some(resource.as_str()), "{file}: ResourceId");
            assert_eq!(doc["ScalableDimension"], "ecs:service:DesiredCount", "{file}");
            assert_eq!(doc["ServiceNamespace"], "ecs", "{file}");
        }
    }
    let target = json("ecs/scaling-worker-target.json");
    assert!(target["MinCapacity"].as_u64() >= Some(1), "keep at least the on-demand base running");
}

#[test]
fn keda_scales_workers_on_the_ready_list_with_the_ecs_target() {
    let configmap = k8s_object("ConfigMap", "portfolio-mc-config");
    let namespace = str_at(&configmap, &["data", "QUEUE_NAMESPACE"])
        .unwrap_or_else(|| default_of("QUEUE_NAMESPACE").to_owned());
    assert_eq!(
        namespace,
        default_of("QUEUE_NAMESPACE"),
        "the KEDA list name assumes the default namespace"
    );

    let scaled = k8s_object("ScaledObject", "portfolio-worker");
    assert_eq!(
        str_at(&scaled, &["spec", "scaleTargetRef", "name"]).as_deref(),
        Some("portfolio-worker")
    );
    assert!(u64_at(&scaled, &["spec", "minReplicaCount"]) >= Some(1), "minReplicaCount");
    let triggers = yaml_seq(scaled.get("spec").and_then(|s| s.get("triggers")));
    assert_eq!(triggers.len(), 1, "one trigger: the ready list");
    let trigger = triggers[0];
    assert_eq!(str_at(trigger, &["type"]).as_deref(), Some("redis"));
    assert_eq!(str_at(trigger, &["metadata", "listName"]), Some(Keys::new(namespace).ready_list()));
    let list_length: f64 = str_at(trigger, &["metadata", "listLength"])
        .and_then(|v| v.parse().ok())
        .expect("listLength");
    assert_eq!(
        list_length,
        ecs_backlog_target(),
        "KEDA listLength and the ECS TargetValue must agree"
    );
    if let Some(auth) = str_at(trigger, &["authenticationRef", "name"]) {
        k8s_object("TriggerAuthentication", &auth);
    }
}

#[test]
fn the_scaling_target_is_the_acceptable_wait_over_the_average_job_time() {
    let target = ecs_backlog_target();
    for file in ["docs/operations.md", "ecs/README.md"] {
        let text = read(file);
        let line = text
            .lines()
            .find(|l| l.contains("acceptable wait ÷ average job time ="))
            .unwrap_or_else(|| {
                panic!("{file}: no line `... = acceptable wait ÷ average job time = A s ÷ B s = C`")
            });
        let (wait, job, written) =
            parse_target_formula(line).unwrap_or_else(|| panic!("{file}: cannot read {line:?}"));
        let exact = wait / job;
        assert!(
            written <= exact + 1e-9 && exact - written < 1.0,
            "{file}: {wait} s ÷ {job} s = {exact:.2}, written as {written} (round down)"
        );
        assert_eq!(
            written, target,
            "{file} says {written}, ecs/scaling-worker-backlog.json says {target}"
        );
    }
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
    assert_eq!(
        policy("scaleUp"),
        (Some(0), vec![("Percent".to_owned(), 100, 15)]),
        "scale up fast"
    );
    assert_eq!(
        policy("scaleDown"),
        (Some(300), vec![("Percent".to_owned(), 10, 60)]),
        "scale down slowly"
    );
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
        &["histogram_quantile(0.95", names::HTTP_REQUEST_DURATION_SECONDS, "> 2"],
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
        &[names::QUEUE_JOBS, default_of("QUEUE_DEPTH_CEILING")],
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

#[test]
fn compose_starts_the_app_after_migrations_on_healthy_stores() {
    let compose = compose();
    for service in ["api", "worker"] {
        let conditions = compose_depends_on(compose_service(&compose, service));
        for (dependency, condition) in [
            ("migrate", "service_completed_successfully"),
            ("redis", "service_healthy"),
            ("postgres", "service_healthy"),
        ] {
            assert_eq!(
                conditions.get(dependency).map(String::as_str),
                Some(condition),
                "docker-compose.yml {service} must wait for {dependency}: {condition}"
            );
        }
    }
    let migrate = compose_depends_on(compose_service(&compose, "migrate"));
    assert_eq!(migrate.get("postgres").map(String::as_str), Some("service_healthy"));
    for store in ["redis", "postgres"] {
        assert!(
            compose_service(&compose, store).get("healthcheck").is_some(),
            "{store} has no healthcheck"
        );
    }
    let nginx = compose_depends_on(compose_service(&compose, "nginx"));
    assert!(nginx.contains_key("api"), "nginx starts after the api");

    let replicas =
        |service: &str| u64_at(compose_service(&compose, service), &["deploy", "replicas"]);
    assert_eq!(replicas("api"), Some(3), "three api replicas behind nginx");
    assert_eq!(replicas("worker"), Some(2), "two workers");

    let redis = compose_service(&compose, "redis");
    assert!(str_at(redis, &["image"]).is_some_and(|i| i.starts_with("redis:7")), "Redis 7");
    let command = yaml_strings(redis.get("command")).join(" ");
    for flag in ["--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"] {
        assert!(command.contains(flag), "redis command lacks {flag}: {command}");
    }
    let postgres = str_at(compose_service(&compose, "postgres"), &["image"]).unwrap_or_default();
    assert!(
        postgres.starts_with("postgres:15") || postgres.starts_with("postgres:16"),
        "Postgres 15/16: {postgres}"
    );

    let nginx_conf = read("deploy/nginx/nginx.conf");
    assert!(nginx_conf.contains("least_conn;"), "nginx balances with least_conn");
    let mount = yaml_strings(compose_service(&compose, "nginx").get("volumes")).join(" ");
    assert!(mount.contains("./deploy/nginx/nginx.conf:"), "nginx mounts deploy/nginx/nginx.conf");
}

#[test]
fn dockerfiles_build_release_binaries_into_slim_non_root_images() {
    for (file, package) in [("Dockerfile.api", API_BINARY), ("Dockerfile.worker", WORKER_BINARY)] {
        let image = Dockerfile::read(file);
        let last = image.stages() - 1;
        assert!(image.stages() >= 3, "{file}: planner, builder and runtime stages");
        let run_args = |stage: Option<usize>| -> String {
            image
                .instructions
                .iter()
                .filter(|i| i.keyword == "RUN" && stage.is_none_or(|s| i.stage == s))
                .map(|i| i.args.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        };
        let build = run_args(None);
        for needle in [
            "cargo chef prepare".to_owned(),
            format!("cargo chef cook --release --locked -p {package}"),
            format!("cargo build --release --locked -p {package}"),
            "libpq-dev".to_owned(),
        ] {
            assert!(build.contains(&needle), "{file}: no `{needle}`");
        }
        let from = image.instructions.iter().rfind(|i| i.keyword == "FROM").expect("FROM");
        assert!(from.args.starts_with("debian:bookworm-slim"), "{file}: runtime is {}", from.args);
        let runtime = run_args(Some(last));
        for package in ["libpq5", "ca-certificates"] {
            assert!(runtime.contains(package), "{file}: runtime does not install {package}");
        }
        let user = image
            .instructions
            .iter()
            .rfind(|i| i.stage == last && i.keyword == "USER")
            .map(|i| i.args.clone())
            .unwrap_or_default();
        let uid = user.split(':').next().unwrap_or_default();
        assert!(!uid.is_empty() && uid != "root" && uid != "0", "{file}: runs as {user:?}");
        assert_eq!(
            image.env().get("LOG_FORMAT").map(String::as_str),
            Some("json"),
            "{file}: LOG_FORMAT"
        );
    }
    let ignored: BTreeSet<String> = read(".dockerignore")
        .lines()
        .map(|l| l.trim().trim_start_matches("**/").trim_end_matches('/').to_owned())
        .collect();
    for entry in ["target", ".git", "node_modules", "test-artifacts"] {
        assert!(ignored.contains(entry), ".dockerignore does not exclude {entry}");
    }
}

#[test]
fn ecs_tasks_log_to_cloudwatch_and_workers_run_on_spot_above_an_on_demand_base() {
    for file in ECS_TASKS {
        let task = json(file);
        assert_eq!(task["networkMode"], "awsvpc", "{file}");
        assert_eq!(task["requiresCompatibilities"], serde_json::json!(["FARGATE"]), "{file}");
        let container = ecs_container(&task, file);
        assert_eq!(container["logConfiguration"]["logDriver"], "awslogs", "{file}");
        assert_eq!(container["essential"], true, "{file}");
    }
    let service = json("ecs/service-worker.json");
    assert!(
        service.get("launchType").is_none(),
        "a capacity provider strategy excludes launchType"
    );
    let strategy: Vec<(String, u64, u64)> = array(&service["capacityProviderStrategy"])
        .iter()
        .map(|s| {
            (
                s["capacityProvider"].as_str().unwrap_or_default().to_owned(),
                s["base"].as_u64().unwrap_or(0),
                s["weight"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(strategy, [("FARGATE".to_owned(), 1, 1), ("FARGATE_SPOT".to_owned(), 0, 4)]);
    let api = json("ecs/service-api.json");
    assert!(!array(&api["loadBalancers"]).is_empty(), "the api service sits behind the ALB");
}

#[test]
fn the_deploy_script_migrates_before_it_rolls_out_the_services() {
    let script = read("ecs/deploy.sh");
    assert!(script.starts_with("#!/usr/bin/env bash"), "deploy.sh: bash shebang");
    assert!(script.contains("set -euo pipefail"), "deploy.sh: set -euo pipefail");
    assert!(script.contains("--dry-run)"), "deploy.sh: --dry-run");
    for variable in ["AWS_ACCOUNT_ID", "AWS_REGION", "CLUSTER"] {
        assert!(script.contains(&format!("{variable}=")), "deploy.sh: no {variable} variable");
    }
    for dockerfile in ["Dockerfile.api", "Dockerfile.worker"] {
        assert!(script.contains(dockerfile), "deploy.sh does not build {dockerfile}");
    }
    let at = |needle: &str, from: usize| -> usize {
        script[from..]
            .find(needle)
            .map(|i| i + from)
            .unwrap_or_else(|| panic!("deploy.sh: no {needle:?} after byte {from}"))
    };
    let push = at("docker push", 0);
    let run_task = at("aws ecs run-task", push);
    let wait_task = at("aws ecs wait tasks-stopped", run_task);
    let exit_code = at("exitCode", wait_task);
    let api = at("--service \"$API_SERVICE\"", exit_code);
    let api_stable = at("aws ecs wait services-stable", api);
    at("--service \"$WORKER_SERVICE\"", api_stable);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            fs::metadata(root().join("ecs/deploy.sh")).expect("deploy.sh").permissions().mode();
        assert!(mode & 0o111 != 0, "ecs/deploy.sh is not executable");
    }
}

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
    known
}

/// Values the code gives a label (as documented on the constants in names.rs).
fn label_values(metric: &str, label: &str) -> Option<&'static [&'static str]> {
    let base =
        ["_bucket", "_sum", "_count"].iter().fold(metric, |m, s| m.strip_suffix(s).unwrap_or(m));
    match (base, label) {
        (names::QUEUE_JOBS, "state") => Some(&["ready", "scheduled", "running", "dead"]),
        (names::DB_POOL_CONNECTIONS, "state") => Some(&["in_use", "idle"]),
        (names::JOBS_FINISHED_TOTAL, "status") => Some(&["succeeded", "failed", "cancelled"]),
        (names::SUBMITS_REFUSED_TOTAL, "reason") => Some(&["queue_full", "unavailable"]),
        (_, "job") => Some(&["portfolio-api", "portfolio-worker"]),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Variables set by each file.

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
// Dockerfiles.

struct Instruction {
    stage: usize,
    keyword: String,
    args: String,
}

struct Dockerfile {
    instructions: Vec<Instruction>,
}

impl Dockerfile {
    fn read(relative: &str) -> Self {
        let mut instructions = Vec::new();
        let mut pending = String::new();
        let mut stage = 0;
        for line in read(relative).lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
                continue;
            }
            if let Some(continued) = trimmed.strip_suffix('\\') {
                pending.push_str(continued);
                pending.push(' ');
                continue;
            }
            pending.push_str(trimmed);
            let logical = std::mem::take(&mut pending);
            let (keyword, args) = logical.split_once(char::is_whitespace).unwrap_or((&logical, ""));
            let keyword = keyword.to_ascii_uppercase();
            if keyword == "FROM" {
                stage = instructions.iter().filter(|i: &&Instruction| i.keyword == "FROM").count();
            }
            instructions.push(Instruction { stage, keyword, args: args.trim().to_owned() });
        }
        assert!(instructions.iter().any(|i| i.keyword == "FROM"), "{relative}: no FROM");
        Self { instructions }
    }

    fn stages(&self) -> usize {
        self.instructions.iter().filter(|i| i.keyword == "FROM").count()
    }

    /// The image's environment: ENV of the final stage.
    fn env(&self) -> BTreeMap<String, String> {
        let last = self.stages() - 1;
        let mut env = BTreeMap::new();
        for instruction in
            self.instructions.iter().filter(|i| i.stage == last && i.keyword == "ENV")
        {
            let words = shell_words(&instruction.args);
            if words.first().is_some_and(|w| w.contains('=')) {
                for word in words {
                    let (key, value) = word.split_once('=').expect("ENV KEY=VALUE");
                    env.insert(key.to_owned(), value.to_owned());
                }
            } else if let Some((key, value)) = words.split_first() {
                env.insert(key.clone(), value.join(" "));
            }
        }
        env
    }

    fn exposed(&self) -> Vec<u16> {
        self.instructions
            .iter()
            .filter(|i| i.keyword == "EXPOSE")
            .flat_map(|i| {
                i.args
                    .split_whitespace()
                    .map(|p| p.split('/').next().unwrap_or(p).parse().expect("EXPOSE port"))
            })
            .collect()
    }

    /// The exec-form arguments of the final stage's last `keyword` (ENTRYPOINT, CMD).
    fn last_stage_exec(&self, keyword: &str) -> Vec<String> {
        let last = self.stages() - 1;
        self.instructions
            .iter()
            .rfind(|i| i.stage == last && i.keyword == keyword)
            .map(|i| exec_form(&i.args))
            .unwrap_or_default()
    }

    fn healthcheck(&self) -> Option<Vec<String>> {
        let args = &self.instructions.iter().rfind(|i| i.keyword == "HEALTHCHECK")?.args;
        let at = args.find("CMD ")?;
        Some(exec_form(args[at + 4..].trim()))
    }
}

fn exec_form(args: &str) -> Vec<String> {
    if args.starts_with('[') {
        serde_json::from_str(args).unwrap_or_else(|e| panic!("exec form {args}: {e}"))
    } else {
        shell_words(args)
    }
}

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

// ---------------------------------------------------------------------------------------------
// Compose.

fn compose() -> Yaml {
    yaml(&read("docker-compose.yml"), "docker-compose.yml")
}

fn compose_service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    compose
        .get("services")
        .and_then(|s| s.get(name))
        .unwrap_or_else(|| panic!("docker-compose.yml has no service {name}"))
}

/// The binary a compose service runs: from its Dockerfile or its image name.
fn compose_binary(service: &Yaml) -> Option<&'static str> {
    match str_at(service, &["build", "dockerfile"]).as_deref() {
        Some("Dockerfile.api") => return Some(API_BINARY),
        Some("Dockerfile.worker") => return Some(WORKER_BINARY),
        _ => {}
    }
    image_binary(&str_at(service, &["image"])?)
}

fn compose_env(service: &Yaml) -> BTreeMap<String, String> {
    match service.get("environment") {
        Some(Yaml::Mapping(_)) => mapping_strings(service.get("environment")).into_iter().collect(),
        Some(Yaml::Sequence(items)) => items
            .iter()
            .filter_map(Yaml::as_str)
            .map(|item| {
                let (key, value) = item.split_once('=').unwrap_or((item, ""));
                (key.to_owned(), value.to_owned())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// depends_on as {service: condition}; the short list form means `service_started`.
fn compose_depends_on(service: &Yaml) -> BTreeMap<String, String> {
    match service.get("depends_on") {
        Some(Yaml::Sequence(items)) => items
            .iter()
            .filter_map(Yaml::as_str)
            .map(|s| (s.to_owned(), "service_started".to_owned()))
            .collect(),
        Some(Yaml::Mapping(_)) => mapping_entries(service.get("depends_on"))
            .into_iter()
            .map(|(name, v)| {
                (name, str_at(v, &["condition"]).unwrap_or_else(|| "service_started".to_owned()))
            })
            .collect(),
        _ => BTreeMap::new(),
    }
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
// ECS.

fn ecs_container<'a>(task: &'a Json, file: &str) -> &'a Json {
    let containers = array(&task["containerDefinitions"]);
    assert_eq!(containers.len(), 1, "{file}: one container per task");
    &containers[0]
}

fn ecs_env(container: &Json) -> BTreeMap<String, String> {
    array(&container["environment"])
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_owned(),
                e["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn ecs_backlog_target() -> f64 {
    json("ecs/scaling-worker-backlog.json")["TargetTrackingScalingPolicyConfiguration"]["TargetValue"]
        .as_f64()
        .expect("scaling-worker-backlog.json: TargetValue")
}

/// `... = acceptable wait ÷ average job time = 30 s ÷ 2 s = 15` → (30, 2, 15).
fn parse_target_formula(line: &str) -> Option<(f64, f64, f64)> {
    let numbers = line.split("average job time =").nth(1)?;
    let (division, result) = numbers.split_once('=')?;
    let (wait, job) = division.split_once('÷')?;
    let number =
        |s: &str| s.trim().trim_end_matches('s').trim().replace(',', "").parse::<f64>().ok();
    let result = result.split_whitespace().next()?.trim_end_matches(['.', ',']);
    Some((number(wait)?, number(job)?, result.parse().ok()?))
}

fn array(value: &Json) -> &[Json] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn json_strings(value: &Json) -> Vec<String> {
    array(value).iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

// ---------------------------------------------------------------------------------------------
// Kubernetes.

fn k8s_objects() -> Vec<(String, Yaml)> {
    files_under("deploy/k8s")
        .into_iter()
        .filter(|f| f.ends_with(".yaml") || f.ends_with(".yml"))
        .flat_map(|f| yaml_documents(&f).into_iter().map(move |d| (f.clone(), d)))
        .collect()
}

fn k8s_object(kind_name: &str, name: &str) -> Yaml {
    k8s_objects()
        .into_iter()
        .map(|(_, d)| d)
        .find(|d| kind(d) == kind_name && str_at(d, &["metadata", "name"]).as_deref() == Some(name))
        .unwrap_or_else(|| panic!("deploy/k8s defines no {kind_name} {name}"))
}

fn kind(doc: &Yaml) -> String {
    str_at(doc, &["kind"]).unwrap_or_default()
}

/// Containers (and init containers) of a workload's pod template.
fn pod_containers(doc: &Yaml) -> Vec<&Yaml> {
    let template = match kind(doc).as_str() {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            at(doc, &["spec", "template", "spec"])
        }
        "CronJob" => at(doc, &["spec", "jobTemplate", "spec", "template", "spec"]),
        _ => None,
    };
    let Some(pod) = template else { return Vec::new() };
    ["initContainers", "containers"].iter().flat_map(|k| yaml_seq(pod.get(*k))).collect()
}

/// Literal `env` values of a container.
fn k8s_literal_env(container: &Yaml) -> BTreeMap<String, String> {
    yaml_seq(container.get("env"))
        .iter()
        .filter_map(|e| Some((str_at(e, &["name"])?, str_at(e, &["value"])?)))
        .collect()
}

/// (probe, HTTP path, resolved port) of each HTTP probe of a container.
fn probes(container: &Yaml) -> Vec<(String, String, Option<u16>)> {
    ["startupProbe", "livenessProbe", "readinessProbe"]
        .iter()
        .filter_map(|probe| {
            let get = at(container, &[probe, "httpGet"])?;
            let path = str_at(get, &["path"]).unwrap_or_default();
            let port = str_at(get, &["port"]).unwrap_or_default();
            Some((probe.to_string(), path, resolve_port(container, &port)))
        })
        .collect()
}

/// A port number, or the containerPort of a named port.
fn resolve_port(container: &Yaml, port: &str) -> Option<u16> {
    if let Ok(number) = port.parse() {
        return Some(number);
    }
    yaml_seq(container.get("ports"))
        .iter()
        .find(|p| str_at(p, &["name"]).as_deref() == Some(port))
        .and_then(|p| u64_at(p, &["containerPort"]))
        .and_then(|p| u16::try_from(p).ok())
}

// ---------------------------------------------------------------------------------------------
// YAML access.

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

// ---------------------------------------------------------------------------------------------
// Prometheus rules, Grafana, PromQL, Markdown.

struct AlertRule {
    expr: String,
    r#for: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

/// (alert name, rule) of every alerting rule in alerts.yml, in file order.
fn alert_rules() -> Vec<(String, AlertRule)> {
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
