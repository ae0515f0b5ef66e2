//! deploy/k8s: KEDA scales the workers on the ready list; and the manifest readers.

use std::collections::BTreeMap;

use portfolio_shared::queue::Keys;
use serde_yaml::Value as Yaml;

use super::ecs::ecs_backlog_target;
use super::{at, default_of, files_under, str_at, u64_at, yaml_documents, yaml_seq};

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

/// Where the third-party workloads (the exporters) live: apart from the app's objects, which
/// every check of [`k8s_objects`] holds to the app's binaries, variables and ports.
pub(super) const K8S_MONITORING_DIR: &str = "deploy/k8s/monitoring/";

/// The app's objects: every manifest under deploy/k8s but [`K8S_MONITORING_DIR`].
pub(super) fn k8s_objects() -> Vec<(String, Yaml)> {
    manifests_under("deploy/k8s")
        .into_iter()
        .filter(|(f, _)| !f.starts_with(K8S_MONITORING_DIR))
        .collect()
}

/// The monitoring objects (exporters) of [`K8S_MONITORING_DIR`].
pub(super) fn k8s_monitoring_objects() -> Vec<(String, Yaml)> {
    manifests_under(K8S_MONITORING_DIR.trim_end_matches('/'))
}

fn manifests_under(dir: &str) -> Vec<(String, Yaml)> {
    files_under(dir)
        .into_iter()
        .filter(|f| f.ends_with(".yaml") || f.ends_with(".yml"))
        .flat_map(|f| yaml_documents(&f).into_iter().map(move |d| (f.clone(), d)))
        .collect()
}

pub(super) fn k8s_object(kind_name: &str, name: &str) -> Yaml {
    k8s_objects()
        .into_iter()
        .map(|(_, d)| d)
        .find(|d| kind(d) == kind_name && str_at(d, &["metadata", "name"]).as_deref() == Some(name))
        .unwrap_or_else(|| panic!("deploy/k8s defines no {kind_name} {name}"))
}

pub(super) fn kind(doc: &Yaml) -> String {
    str_at(doc, &["kind"]).unwrap_or_default()
}

/// Containers (and init containers) of a workload's pod template.
pub(super) fn pod_containers(doc: &Yaml) -> Vec<&Yaml> {
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
pub(super) fn k8s_literal_env(container: &Yaml) -> BTreeMap<String, String> {
    yaml_seq(container.get("env"))
        .iter()
        .filter_map(|e| Some((str_at(e, &["name"])?, str_at(e, &["value"])?)))
        .collect()
}

/// (probe, HTTP path, resolved port) of each HTTP probe of a container.
pub(super) fn probes(container: &Yaml) -> Vec<(String, String, Option<u16>)> {
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
pub(super) fn resolve_port(container: &Yaml, port: &str) -> Option<u16> {
    if let Ok(number) = port.parse() {
        return Some(number);
    }
    yaml_seq(container.get("ports"))
        .iter()
        .find(|p| str_at(p, &["name"]).as_deref() == Some(port))
        .and_then(|p| u64_at(p, &["containerPort"]))
        .and_then(|p| u16::try_from(p).ok())
}
