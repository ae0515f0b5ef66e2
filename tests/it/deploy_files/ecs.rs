//! ecs/: task definitions, services, the worker scaling policy and the deploy script; and
//! their readers.

use std::collections::BTreeMap;
use std::fs;

use portfolio_shared::names;
use serde_json::{Value as Json, json};

use super::{array, default_of, json, read, root};

pub(super) const ECS_TASKS: &[&str] =
    &["ecs/task-api.json", "ecs/task-worker.json", "ecs/task-migrate.json"];

/// The CloudWatch alarms: each notifies the one topic; those on the API's own metrics name
/// exactly what it publishes (a wrong name, dimension or unit matches no data, and an alarm on
/// no data says nothing); the ones that must fire on silence treat missing data as breaching.
#[test]
fn the_alarms_watch_the_metrics_the_api_publishes() {
    let alarms: Vec<String> = super::files_under("ecs")
        .into_iter()
        .filter(|f| f.starts_with("ecs/alarm-") && f.ends_with(".json"))
        .collect();
    let mut watched = Vec::new();
    for file in &alarms {
        let alarm = json(file);
        let name = alarm["AlarmName"].as_str().unwrap_or_else(|| panic!("{file}: AlarmName"));
        assert!(name.starts_with("portfolio-mc-"), "{file}: {name}");
        let topic = json!(["arn:aws:sns:REGION:ACCOUNT:portfolio-mc-alarms"]);
        assert_eq!(alarm["AlarmActions"], topic, "{file}: AlarmActions");
        assert_eq!(alarm["OKActions"], topic, "{file}: OKActions");
        assert!(
            alarm["AlarmDescription"].as_str().is_some_and(|d| d.contains("docs/operations.md"))
        );
        assert!(alarm.get("Unit").is_none(), "{file}: a Unit matches only data sent with it");
        if alarm["Namespace"] == names::EMF_NAMESPACE {
            let metric = alarm["MetricName"].as_str().unwrap_or_default();
            let published =
                [names::EMF_QUEUE_DEPTH, names::EMF_BACKLOG_PER_TASK, names::EMF_WORKERS_ALIVE];
            assert!(published.contains(&metric), "{file}: the API publishes no {metric}");
            let namespace = ecs_env(ecs_container(&json("ecs/task-api.json"), "task-api"))
                .get("QUEUE_NAMESPACE")
                .cloned()
                .unwrap_or_else(|| default_of("QUEUE_NAMESPACE").to_owned());
            let dimension = json!([{ "Name": names::EMF_DIMENSION, "Value": namespace }]);
            assert_eq!(alarm["Dimensions"], dimension, "{file}: Dimensions");
            watched.push((metric.to_owned(), alarm));
        }
    }
    let alarm_on = |metric: &str, operator: &str| {
        watched
            .iter()
            .find(|(m, a)| m == metric && a["ComparisonOperator"] == operator)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| panic!("no alarm on {metric} {operator}"))
    };
    // Autoscaling frozen: the signal stops, which only missing data shows.
    let missing = alarm_on(names::EMF_BACKLOG_PER_TASK, "LessThanThreshold");
    assert_eq!(missing["TreatMissingData"], "breaching");
    // Workers not keeping up: above the scaling target for longer than scaling takes.
    let behind = alarm_on(names::EMF_BACKLOG_PER_TASK, "GreaterThanThreshold");
    assert!(behind["Threshold"].as_f64().unwrap() > ecs_backlog_target());
    let no_workers = alarm_on(names::EMF_WORKERS_ALIVE, "LessThanThreshold");
    assert_eq!(no_workers["Threshold"], 1);
    // The README says how to create them.
    assert!(read("ecs/README.md").contains("put-metric-alarm --cli-input-json \"file://$alarm\""));
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
        // Every minute needs a datapoint, and the leader publishes on a tick once the interval
        // has passed: exactly 60 s drifts past some minutes.
        assert!(
            secs <= 30,
            "target tracking wants a datapoint in every minute; publishing every {secs} s"
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

    // Every other place that states the target, or the wait behind it, says the same.
    let (wait, job, _) = parse_target_formula(
        read("docs/operations.md")
            .lines()
            .find(|l| l.contains("acceptable wait ÷ average job time ="))
            .expect("the formula line"),
    )
    .expect("the formula");
    let keda = read("deploy/k8s/worker-keda.yaml");
    let keda_formula = keda
        .lines()
        .find_map(|l| l.split("acceptable wait / average job time =").nth(1))
        .expect("worker-keda.yaml: the formula in its comment");
    let keda_formula = format!("average job time ={}", keda_formula.replace('/', "÷"));
    assert_eq!(
        parse_target_formula(&keda_formula),
        Some((wait, job, target)),
        "worker-keda.yaml comment: {keda_formula}"
    );
    assert!(
        !keda.to_lowercase().contains("placeholder"),
        "worker-keda.yaml: a placeholder job time"
    );
    let k8s_readme = read("deploy/k8s/README.md");
    assert!(
        k8s_readme.contains(&format!("`listLength` {target} ")),
        "deploy/k8s/README.md does not say listLength {target}"
    );
    let operations = read("docs/operations.md");
    let dashboard = read("deploy/monitoring/grafana-dashboard.json");
    for stale in ["target 15", "listLength` 15", "target is 30 s", "under 30 s", "a 30 s wait"] {
        for (file, text) in [
            ("docs/operations.md", &operations),
            ("deploy/k8s/README.md", &k8s_readme),
            ("deploy/monitoring/grafana-dashboard.json", &dashboard),
        ] {
            assert!(!text.contains(stale), "{file} still says {stale:?}");
        }
    }
    assert!(operations.contains(&format!("(target {target},")), "docs/operations.md table");
    assert!(
        dashboard.contains(&format!("target {target})"))
            && dashboard.contains(&format!("a {wait} s wait")),
        "grafana-dashboard.json: the target ({target}) and the wait ({wait} s)"
    );
    let alerts = read("deploy/monitoring/alerts.yml");
    assert!(
        alerts.contains(&format!("(target: {wait} s)")),
        "alerts.yml: PortfolioQueueBacklogOld names another target wait than {wait} s"
    );
    assert!(
        operations.contains(&format!("(the target is {wait} s,")),
        "docs/operations.md#portfolioqueuebacklogold names another target wait than {wait} s"
    );
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
    // The waiter is also satisfied by a circuit-breaker rollback: the script checks what runs
    // before it touches the workers, and again after them.
    let api_checked = at("check_rollout \"$API_SERVICE\" \"$API_TD\"", api_stable);
    // And, given the load balancer's address, that it reaches its stores before the workers.
    let api_ready = at("check_ready", api_checked);
    let workers = at("--service \"$WORKER_SERVICE\"", api_ready);
    let workers_stable = at("aws ecs wait services-stable", workers);
    let workers_checked = at("check_rollout \"$WORKER_SERVICE\" \"$WORKER_TD\"", workers_stable);
    at("deployed", workers_checked);
    let check = function_body(&script, "check_rollout");
    for needle in [
        "aws ecs describe-services",
        "deployments[?status==`PRIMARY`]",
        "taskDefinition",
        "rolloutState",
        "!= \"$expected\"",
        "!= \"COMPLETED\"",
        "exit 1",
    ] {
        assert!(check.contains(needle), "deploy.sh check_rollout lacks {needle:?}:\n{check}");
    }

    let ready = function_body(&script, "check_ready");
    for needle in ["API_URL", "/ready", "curl -fsS", "exit 1"] {
        assert!(ready.contains(needle), "deploy.sh check_ready lacks {needle:?}:\n{ready}");
    }

    // Task definitions are registered with each secret's full ARN, looked up by name.
    let resolve = function_body(&script, "resolve_secrets");
    for needle in ["aws secretsmanager describe-secret", "--query ARN", "exit 1"] {
        assert!(resolve.contains(needle), "deploy.sh resolve_secrets lacks {needle:?}");
    }
    let register = function_body(&script, "register");
    let resolved = register.find("resolve_secrets").expect("register resolves the secrets");
    let registered =
        register.find("register-task-definition").expect("register registers the task");
    assert!(resolved < registered, "deploy.sh resolves the secrets before registering");
    for file in ECS_TASKS {
        for secret in array(&json(file)["containerDefinitions"][0]["secrets"]) {
            let arn = secret["valueFrom"].as_str().unwrap_or_default();
            assert!(
                arn.starts_with("arn:aws:secretsmanager:REGION:ACCOUNT:secret:")
                    && arn.rsplit_once('-').is_none_or(|(_, suffix)| suffix.len() != 6),
                "{file}: {arn} is the partial ARN (the secret's name) deploy.sh looks up"
            );
        }
    }

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            fs::metadata(root().join("ecs/deploy.sh")).expect("deploy.sh").permissions().mode();
        assert!(mode & 0o111 != 0, "ecs/deploy.sh is not executable");
    }
}

/// The body of a shell function `name() { ... }` (up to the first line that is a lone `}`).
fn function_body<'a>(script: &'a str, name: &str) -> &'a str {
    let start = script
        .find(&format!("\n{name}() {{"))
        .unwrap_or_else(|| panic!("deploy.sh defines no function {name}"));
    let end = script[start..].find("\n}\n").map_or(script.len(), |i| start + i);
    &script[start..end]
}

pub(super) fn ecs_container<'a>(task: &'a Json, file: &str) -> &'a Json {
    let containers = array(&task["containerDefinitions"]);
    assert_eq!(containers.len(), 1, "{file}: one container per task");
    &containers[0]
}

pub(super) fn ecs_env(container: &Json) -> BTreeMap<String, String> {
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

pub(super) fn ecs_backlog_target() -> f64 {
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
