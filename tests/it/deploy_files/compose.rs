//! docker-compose.yml (and the nginx it runs in front of the API): start order, replicas, the
//! stores' images and settings; and its readers.

use std::collections::BTreeMap;

use serde_yaml::Value as Yaml;

use super::{
    API_BINARY, WORKER_BINARY, default_of, duration_secs, image_binary, mapping_entries,
    mapping_strings, read, str_at, u64_at, yaml, yaml_strings,
};

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
fn compose_runs_redis_as_a_master_two_replicas_and_three_sentinels_the_app_asks() {
    let compose = compose();
    let sentinels = ["sentinel-1", "sentinel-2", "sentinel-3"];
    for replica in ["redis-replica-1", "redis-replica-2"] {
        let service = compose_service(&compose, replica);
        let command = yaml_strings(service.get("command")).join(" ");
        for flag in [
            "--replicaof redis 6379",
            &format!("--replica-announce-ip {replica}"),
            "--appendonly yes",
            "--maxmemory-policy noeviction",
        ] {
            assert!(command.contains(flag), "{replica} command lacks {flag}: {command}");
        }
        assert!(service.get("healthcheck").is_some(), "{replica} has no healthcheck");
    }
    for sentinel in sentinels {
        let service = compose_service(&compose, sentinel);
        let command = yaml_strings(service.get("command")).join(" ");
        for line in [
            "port 26379",
            "sentinel resolve-hostnames yes",
            "sentinel monitor mymaster redis 6379 2",
            "sentinel down-after-milliseconds mymaster 5000",
            "sentinel failover-timeout mymaster 10000",
            "--sentinel",
        ] {
            assert!(command.contains(line), "{sentinel} lacks `{line}`: {command}");
        }
        assert!(service.get("healthcheck").is_some(), "{sentinel} has no healthcheck");
    }
    let expected = "redis+sentinel://sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/mymaster";
    for app in ["api", "worker"] {
        let service = compose_service(&compose, app);
        let url = compose_env(service).remove("REDIS_URL").unwrap_or_default();
        assert_eq!(url, expected, "{app} REDIS_URL");
        // The URL is one the binaries read as naming Sentinels.
        let settings = portfolio_shared::settings::Settings::from_lookup(|name| {
            (name == "REDIS_URL").then(|| url.clone())
        })
        .expect("settings");
        let target = portfolio_shared::queue::RedisTarget::new(&settings.queue).expect("REDIS_URL");
        assert!(target.follows_sentinels(), "{app} REDIS_URL does not name Sentinels");
        let conditions = compose_depends_on(service);
        for sentinel in sentinels {
            assert_eq!(
                conditions.get(sentinel).map(String::as_str),
                Some("service_healthy"),
                "{app} must wait for {sentinel}"
            );
        }
    }
}

#[test]
fn compose_makes_a_local_key_after_migrations_and_the_api_requires_keys() {
    let compose = compose();
    let keys = compose_service(&compose, "keys");
    assert_eq!(compose_binary(keys), Some(API_BINARY));
    assert_eq!(
        yaml_strings(keys.get("command")),
        ["keys", "create", "--name", "local", "--scope", "simulate", "--scope", "operator"]
    );
    assert_eq!(
        compose_depends_on(keys).get("migrate").map(String::as_str),
        Some("service_completed_successfully")
    );
    assert_eq!(str_at(keys, &["restart"]).as_deref(), Some("no"), "keys is a one-shot");
    let api = compose_env(compose_service(&compose, "api"));
    assert_eq!(api.get("AUTH_MODE").map(String::as_str), Some("api_key"));
}

#[test]
fn nginx_limits_each_address_passes_it_on_and_does_not_log_health_checks() {
    let nginx = read("deploy/nginx/nginx.conf");
    let directive = |name: &str| -> Vec<String> {
        nginx
            .lines()
            .map(str::trim)
            .filter(|line| line.split_whitespace().next() == Some(name))
            .map(|line| line.trim_end_matches(';').to_owned())
            .collect()
    };
    let zones = directive("limit_req_zone");
    assert_eq!(zones.len(), 1, "{zones:?}");
    assert!(zones[0].contains("$binary_remote_addr"), "the zone is per address: {zones:?}");
    let zone = zones[0]
        .split_whitespace()
        .find_map(|w| w.strip_prefix("zone="))
        .and_then(|z| z.split(':').next())
        .expect("a named zone");
    let used = directive("limit_req");
    assert!(
        used.iter().any(|l| l.contains(&format!("zone={zone}")) && l.contains("burst=")),
        "the zone is applied with a burst: {used:?}"
    );
    assert_eq!(directive("limit_req_status"), ["limit_req_status 429"]);
    assert!(
        directive("proxy_set_header")
            .iter()
            .any(|l| l == "proxy_set_header X-Real-IP $remote_addr"),
        "X-Real-IP is set"
    );
    // Every proxy timeout is explicit, and a long-poll's full wait fits in the read timeout.
    let seconds_of = |name: &str| -> f64 {
        let lines = directive(name);
        assert_eq!(lines.len(), 1, "one {name}: {lines:?}");
        let value = lines[0].split_whitespace().nth(1).unwrap_or_default();
        duration_secs(value).unwrap_or_else(|| panic!("{name} {value}"))
    };
    let connect = seconds_of("proxy_connect_timeout");
    assert!(connect > 0.0 && connect <= 10.0, "proxy_connect_timeout {connect} s");
    assert!(seconds_of("proxy_send_timeout") > 0.0);
    let max_wait: f64 = default_of("MAX_WAIT_SECS").parse().expect("MAX_WAIT_SECS");
    let read_timeout = seconds_of("proxy_read_timeout");
    assert!(
        read_timeout >= max_wait + 10.0,
        "proxy_read_timeout {read_timeout} s must exceed MAX_WAIT_SECS {max_wait} s with a margin"
    );
    let logs = directive("access_log");
    let conditional = logs.iter().find(|l| l.contains(" if=$")).expect("a conditional access log");
    let variable = conditional.rsplit("if=$").next().unwrap();
    let map = nginx
        .split(&format!("map $request_uri ${variable}"))
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .expect("the access log's condition is a map of the request URI");
    assert!(map.contains("/health") && map.contains(" 0;"), "/health is not logged: {map}");
}

pub(super) fn compose() -> Yaml {
    yaml(&read("docker-compose.yml"), "docker-compose.yml")
}

pub(super) fn compose_service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    compose
        .get("services")
        .and_then(|s| s.get(name))
        .unwrap_or_else(|| panic!("docker-compose.yml has no service {name}"))
}

/// The binary a compose service runs: from its Dockerfile or its image name.
pub(super) fn compose_binary(service: &Yaml) -> Option<&'static str> {
    match str_at(service, &["build", "dockerfile"]).as_deref() {
        Some("Dockerfile.api") => return Some(API_BINARY),
        Some("Dockerfile.worker") => return Some(WORKER_BINARY),
        _ => {}
    }
    image_binary(&str_at(service, &["image"])?)
}

pub(super) fn compose_env(service: &Yaml) -> BTreeMap<String, String> {
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
