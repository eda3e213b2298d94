//! Istio's sidecar injector as a pod-admission hook, with native sidecars.
//!
//! Which webhook sees the pod (istio-discovery chart `templates/mutatingwebhook.yaml`):
//! namespace label `istio-injection=enabled` → the default revision; otherwise
//! namespace label `istio.io/rev=<rev>` (and no `istio-injection`) → that revision; with
//! neither, a pod label `sidecar.istio.io/inject=true` (default revision) or
//! `istio.io/rev=<rev>`. Every webhook skips pods labelled `sidecar.istio.io/inject=false`.
//! A revision exists when an istiod Deployment carries `istio.io/rev: <rev>` (the default
//! install: `default`). A revision tag (`istioctl tag set <tag> --revision <rev>`: a
//! MutatingWebhookConfiguration labelled `istio.io/tag: <tag>`, `istio.io/rev: <rev>`)
//! makes `<tag>` select `<rev>`; the tag `default` also takes over what the
//! un-revisioned install answered (`istioctl` deactivates its webhooks:
//! istioctl/pkg/tag/util.go `DeactivateIstioInjectionWebhook`).
//!
//! Whether to inject (pkg/kube/inject/inject.go `injectRequired`, policy `enabled`):
//! host-network pods and kube-system/kube-public/kube-node-lease/local-path-storage
//! never; the pod *label* `sidecar.istio.io/inject` wins over the annotation; `true`
//! injects, `false` does not, anything else falls back to the policy (inject).
//!
//! What it adds (`files/injection-template.yaml`, `webhook.go` `reorderPod`,
//! `applyPrometheusMerge`, `getInjectionStatus`; golden file
//! `pkg/kube/inject/testdata/inject/native-sidecar.yaml.injected`): init containers
//! `istio-init` then `istio-proxy` (`restartPolicy: Always`, image
//! `<hub>/proxyv2:<tag>` of the istiod serving the revision) before the pod's own;
//! labels `security.istio.io/tlsMode`, `service.istio.io/canonical-name|revision`;
//! annotations `istio.io/rev`, `kubectl.kubernetes.io/default-container|default-logs-
//! container`, `prometheus.io/scrape|port|path` (15020, `/stats/prometheus`) and
//! `sidecar.istio.io/status`; the sidecar volumes.

use crate::objects::{Labels, Pod, image_hub, image_tag, labels, str_at};
use crate::world::World;
use serde_json::{Map, Value, json};

const IGNORED_NAMESPACES: [&str; 4] = [
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "local-path-storage",
];

const VOLUMES: [&str; 9] = [
    "workload-socket",
    "credential-socket",
    "workload-certs",
    "istio-envoy",
    "istio-data",
    "istio-podinfo",
    "istio-token",
    "istiod-ca-cert",
    "istio-ca-crl",
];

/// The revision whose webhook receives the pod, if any.
pub(crate) fn webhook_revision(ns_labels: &Labels, pod_labels: &Labels) -> Option<String> {
    let pod_opt_out = pod_labels
        .get("sidecar.istio.io/inject")
        .map(String::as_str)
        == Some("false");
    if pod_opt_out {
        return None;
    }
    match (
        ns_labels.get("istio-injection"),
        ns_labels.get("istio.io/rev"),
    ) {
        (Some(v), _) => (v == "enabled").then(|| "default".to_string()),
        (None, Some(rev)) => Some(rev.clone()),
        (None, None) => match pod_labels.get("istio.io/rev") {
            Some(rev) => Some(rev.clone()),
            None => (pod_labels
                .get("sidecar.istio.io/inject")
                .map(String::as_str)
                == Some("true"))
            .then(|| "default".to_string()),
        },
    }
}

/// `injectRequired` with policy `enabled`.
pub(crate) fn inject_required(pod: &Value, namespace: &str) -> bool {
    if pod.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true) {
        return false;
    }
    if IGNORED_NAMESPACES.contains(&namespace) {
        return false;
    }
    let selector = labels(pod)
        .get("sidecar.istio.io/inject")
        .cloned()
        .or_else(|| {
            crate::objects::annotations(pod)
                .get("sidecar.istio.io/inject")
                .cloned()
        });
    !matches!(selector.as_deref(), Some("false"))
}

/// The revision a webhook selector value names: a revision tag's target, else itself.
pub(crate) fn resolve_tag(world: &World, revision: &str) -> String {
    world
        .webhooks
        .iter()
        .find_map(|w| {
            let l = labels(w);
            (l.get("istio.io/tag").map(String::as_str) == Some(revision))
                .then(|| l.get("istio.io/rev").cloned())
                .flatten()
        })
        .unwrap_or_else(|| revision.to_string())
}

/// (hub, tag) of the istiod Deployment serving `revision`.
pub(crate) fn istiod_image(world: &World, revision: &str) -> Option<(String, String)> {
    world.deployments.iter().find_map(|d| {
        if labels(d).get("istio.io/rev").map(String::as_str) != Some(revision) {
            return None;
        }
        let containers = d.pointer("/spec/template/spec/containers")?.as_array()?;
        let c = containers
            .iter()
            .find(|c| str_at(c, &["name"]) == Some("discovery"))?;
        let image = str_at(c, &["image"])?;
        Some((image_hub(image).to_string(), image_tag(image)?.to_string()))
    })
}

/// Rewrites the tag of every `proxyv2` image the injector put in `pod` (the
/// `InjectedProxyTag` fault).
pub(crate) fn pin_proxy_tag(pod: &mut Value, tag: &str) {
    for field in ["containers", "initContainers"] {
        let Some(list) = pod
            .pointer_mut(&format!("/spec/{field}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in list {
            let Some(image) = c.get("image").and_then(Value::as_str) else {
                continue;
            };
            if let Some((repo, _)) = image.rsplit_once(':')
                && repo.ends_with("/proxyv2")
            {
                let pinned = format!("{repo}:{tag}");
                c["image"] = json!(pinned);
            }
        }
    }
}

/// What the injector decided, for the caller and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    NoWebhook,
    NotRequired,
    AlreadyInjected,
    Injected { revision: String },
    AnnotatedOnly { revision: String },
}

/// Runs the injector on `pod` (being created in `namespace`).
pub(crate) fn inject(
    world: &World,
    pod: &mut Value,
    namespace: &Value,
    annotate_only: bool,
    native_default: bool,
) -> Decision {
    let ns_name = crate::objects::name(namespace);
    let pod_labels = labels(pod);
    let Some(revision) = webhook_revision(&labels(namespace), &pod_labels) else {
        return Decision::NoWebhook;
    };
    let revision = resolve_tag(world, &revision);
    let Some((hub, tag)) = istiod_image(world, &revision) else {
        return Decision::NoWebhook;
    };
    if !inject_required(pod, &ns_name) {
        return Decision::NotRequired;
    }
    if crate::objects::annotations(pod).contains_key("sidecar.istio.io/status") {
        return Decision::AlreadyInjected;
    }
    let annotations = crate::objects::annotations(pod);
    let native = match annotations
        .get("sidecar.istio.io/nativeSidecar")
        .map(String::as_str)
    {
        Some("true") => true,
        Some("false") => false,
        _ => native_default,
    };
    let status = status_annotation(native, &revision);
    if annotate_only {
        set(pod, "annotations", "sidecar.istio.io/status", &status);
        return Decision::AnnotatedOnly { revision };
    }
    // The pod as Kubernetes will see it, for derived names.
    if pod.pointer("/metadata/namespace").is_none()
        && let Some(m) = pod.get_mut("metadata").and_then(Value::as_object_mut)
    {
        m.insert("namespace".into(), json!(ns_name));
    }
    let view = Pod::parse(pod);
    let workload = view.workload();
    let app_containers: Vec<String> = view
        .spec
        .get("containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| str_at(c, &["name"]))
                .filter(|n| *n != "istio-proxy")
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();

    // Labels.
    let tls_mode = pod_labels
        .get("security.istio.io/tlsMode")
        .cloned()
        .unwrap_or_else(|| "istio".into());
    let canonical_name = pod_labels
        .get("service.istio.io/canonical-name")
        .or_else(|| pod_labels.get("app.kubernetes.io/name"))
        .or_else(|| pod_labels.get("app"))
        .cloned()
        .unwrap_or_else(|| workload.name.clone());
    let canonical_name: String = canonical_name.chars().take(63).collect();
    let canonical_name = canonical_name
        .trim_matches(|c| c == '-' || c == '_' || c == '.')
        .to_string();
    let canonical_revision = pod_labels
        .get("service.istio.io/canonical-revision")
        .or_else(|| pod_labels.get("app.kubernetes.io/version"))
        .or_else(|| pod_labels.get("version"))
        .cloned()
        .unwrap_or_else(|| "latest".into());
    set(pod, "labels", "security.istio.io/tlsMode", &tls_mode);
    set(
        pod,
        "labels",
        "service.istio.io/canonical-name",
        &canonical_name,
    );
    set(
        pod,
        "labels",
        "service.istio.io/canonical-revision",
        &canonical_revision,
    );

    // Annotations.
    set(pod, "annotations", "istio.io/rev", &revision);
    if let Some(first) = app_containers.first() {
        for key in [
            "kubectl.kubernetes.io/default-logs-container",
            "kubectl.kubernetes.io/default-container",
        ] {
            if !annotations.contains_key(key) {
                set(pod, "annotations", key, first);
            }
        }
    }
    let mut prometheus_env = None;
    let scrape = annotations.get("prometheus.io/scrape").map(String::as_str) != Some("false");
    let merge = annotations
        .get("prometheus.istio.io/merge-metrics")
        .map(String::as_str)
        != Some("false");
    if scrape && merge {
        // applyPrometheusMerge: the app's own scrape settings move into the agent's env.
        let existing: Map<String, Value> = ["scrape", "path", "port"]
            .iter()
            .filter_map(|k| {
                annotations
                    .get(&format!("prometheus.io/{k}"))
                    .map(|v| (k.to_string(), json!(v)))
            })
            .collect();
        if !existing.is_empty() {
            prometheus_env = Some(Value::Object(existing).to_string());
        }
        set(pod, "annotations", "prometheus.io/port", "15020");
        set(
            pod,
            "annotations",
            "prometheus.io/path",
            "/stats/prometheus",
        );
        set(pod, "annotations", "prometheus.io/scrape", "true");
    }
    set(pod, "annotations", "sidecar.istio.io/status", &status);

    // Containers.
    let image = format!("{hub}/proxyv2:{tag}");
    let owner = if workload.kind == "Pod" {
        format!(
            "kubernetes://apis/v1/namespaces/{ns_name}/pods/{}",
            workload.name
        )
    } else {
        format!(
            "kubernetes://apis/{}/namespaces/{ns_name}/{}s/{}",
            workload.api_version,
            workload.kind.to_ascii_lowercase(),
            workload.name
        )
    };
    let pod_ports = pod_ports_env(&view.spec);
    let ca_addr = if revision == "default" {
        "istiod.istio-system.svc:15012".to_string()
    } else {
        format!("istiod-{revision}.istio-system.svc:15012")
    };
    let proxy = proxy_container(ProxySpec {
        image: &image,
        native,
        ca_addr: &ca_addr,
        pod_ports: &pod_ports,
        app_containers: &app_containers.join(","),
        workload: &workload.name,
        owner: &owner,
        prometheus_env: prometheus_env.as_deref(),
    });
    let init = init_container(&image);
    let spec = pod
        .as_object_mut()
        .map(|o| o.entry("spec").or_insert_with(|| json!({})));
    let Some(Value::Object(spec)) = spec else {
        return Decision::NotRequired;
    };
    let mut inits: Vec<Value> = spec
        .get("initContainers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if native {
        // reorderPod: {istio-init} => istio-proxy => the pod's own init containers.
        inits.insert(0, proxy);
        inits.insert(0, init);
    } else {
        inits.push(init);
        let containers = spec.entry("containers").or_insert_with(|| json!([]));
        if let Some(cs) = containers.as_array_mut() {
            cs.push(proxy);
        }
    }
    spec.insert("initContainers".into(), Value::Array(inits));
    let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
    if let Some(vs) = volumes.as_array_mut() {
        vs.extend(sidecar_volumes());
    }
    Decision::Injected { revision }
}

/// `sidecar.istio.io/status`: what the template added (the template pod's spec, not the
/// merged one), JSON-encoded as Go does it (nil slices are `null`).
fn status_annotation(native: bool, revision: &str) -> String {
    let (inits, containers) = if native {
        (json!(["istio-init", "istio-proxy"]), Value::Null)
    } else {
        (json!(["istio-init"]), json!(["istio-proxy"]))
    };
    // Go's json.Marshal keeps the struct's field order.
    format!(
        "{{\"initContainers\":{inits},\"containers\":{containers},\"volumes\":{},\"imagePullSecrets\":null,\"revision\":{}}}",
        json!(VOLUMES),
        json!(revision)
    )
}

fn set(pod: &mut Value, field: &str, key: &str, value: &str) {
    let Some(obj) = pod.as_object_mut() else {
        return;
    };
    let meta = obj.entry("metadata").or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    let map = meta.entry(field).or_insert_with(|| json!({}));
    if !map.is_object() {
        *map = json!({});
    }
    if let Some(m) = map.as_object_mut() {
        m.insert(key.to_string(), json!(value));
    }
}

/// `ISTIO_META_POD_PORTS`: the app containers' ports as JSON lines.
fn pod_ports_env(spec: &Value) -> String {
    let ports: Vec<String> = spec
        .get("containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("ports").and_then(Value::as_array))
                .flatten()
                .map(|p| format!("    {p}"))
                .collect()
        })
        .unwrap_or_default();
    if ports.is_empty() {
        "[\n]".into()
    } else {
        format!("[\n{}\n]", ports.join(",\n"))
    }
}

fn field_env(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
}

fn resource_env(name: &str, resource: &str) -> Value {
    json!({"name": name, "valueFrom": {"resourceFieldRef": {"divisor": "1", "resource": resource}}})
}

fn resources() -> Value {
    json!({"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}})
}

struct ProxySpec<'a> {
    image: &'a str,
    native: bool,
    ca_addr: &'a str,
    pod_ports: &'a str,
    app_containers: &'a str,
    workload: &'a str,
    owner: &'a str,
    prometheus_env: Option<&'a str>,
}

fn proxy_container(s: ProxySpec<'_>) -> Value {
    let mut env = vec![
        json!({"name": "PILOT_CERT_PROVIDER", "value": "istiod"}),
        json!({"name": "CA_ADDR", "value": s.ca_addr}),
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("INSTANCE_IP", "status.podIP"),
        field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        field_env("HOST_IP", "status.hostIP"),
        resource_env("ISTIO_CPU_LIMIT", "limits.cpu"),
        json!({"name": "PROXY_CONFIG", "value": "{}\n"}),
        json!({"name": "ISTIO_META_POD_PORTS", "value": s.pod_ports}),
        json!({"name": "ISTIO_META_APP_CONTAINERS", "value": s.app_containers}),
        resource_env("GOMEMLIMIT", "limits.memory"),
        resource_env("GOMAXPROCS", "limits.cpu"),
        json!({"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"}),
        field_env("ISTIO_META_NODE_NAME", "spec.nodeName"),
        json!({"name": "ISTIO_META_INTERCEPTION_MODE", "value": "REDIRECT"}),
        json!({"name": "ISTIO_META_WORKLOAD_NAME", "value": s.workload}),
        json!({"name": "ISTIO_META_OWNER", "value": s.owner}),
        json!({"name": "ISTIO_META_MESH_ID", "value": "cluster.local"}),
        json!({"name": "TRUST_DOMAIN", "value": "cluster.local"}),
    ];
    if let Some(p) = s.prometheus_env {
        env.push(json!({"name": "ISTIO_PROMETHEUS_ANNOTATIONS", "value": p}));
    }
    let mut c = json!({
        "name": "istio-proxy",
        "image": s.image,
        "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local",
                 "--proxyLogLevel=warning", "--proxyComponentLogLevel=misc:error",
                 "--log_output_level=default:info"],
        "env": env,
        "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
        "readinessProbe": {"failureThreshold": 4, "httpGet": {"path": "/healthz/ready", "port": 15021},
                           "periodSeconds": 15, "timeoutSeconds": 3},
        "startupProbe": {"failureThreshold": 600, "httpGet": {"path": "/healthz/ready", "port": 15021},
                         "periodSeconds": 1, "timeoutSeconds": 3},
        "resources": resources(),
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
                            "privileged": false, "readOnlyRootFilesystem": true,
                            "runAsGroup": 1337, "runAsNonRoot": true, "runAsUser": 1337},
        "volumeMounts": [
            {"mountPath": "/var/run/secrets/workload-spiffe-uds", "name": "workload-socket"},
            {"mountPath": "/var/run/secrets/credential-uds", "name": "credential-socket"},
            {"mountPath": "/var/run/secrets/workload-spiffe-credentials", "name": "workload-certs"},
            {"mountPath": "/var/run/secrets/istio", "name": "istiod-ca-cert"},
            {"mountPath": "/var/run/secrets/istio/crl", "name": "istio-ca-crl"},
            {"mountPath": "/var/lib/istio/data", "name": "istio-data"},
            {"mountPath": "/etc/istio/proxy", "name": "istio-envoy"},
            {"mountPath": "/var/run/secrets/tokens", "name": "istio-token"},
            {"mountPath": "/etc/istio/pod", "name": "istio-podinfo"}
        ]
    });
    if s.native
        && let Some(o) = c.as_object_mut()
    {
        o.insert("restartPolicy".into(), json!("Always"));
        o.insert(
            "lifecycle".into(),
            json!({"preStop": {"exec": {"command": ["pilot-agent", "request", "--debug-port=15020", "POST", "drain"]}}}),
        );
    }
    c
}

fn init_container(image: &str) -> Value {
    json!({
        "name": "istio-init",
        "image": image,
        "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT",
                 "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020",
                 "--log_output_level=default:info"],
        "resources": resources(),
        "securityContext": {"allowPrivilegeEscalation": false,
                            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
                            "privileged": false, "readOnlyRootFilesystem": false,
                            "runAsGroup": 0, "runAsNonRoot": false, "runAsUser": 0}
    })
}

fn sidecar_volumes() -> Vec<Value> {
    vec![
        json!({"name": "workload-socket", "emptyDir": {}}),
        json!({"name": "credential-socket", "emptyDir": {}}),
        json!({"name": "workload-certs", "emptyDir": {}}),
        json!({"name": "istio-envoy", "emptyDir": {"medium": "Memory"}}),
        json!({"name": "istio-data", "emptyDir": {}}),
        json!({"name": "istio-podinfo", "downwardAPI": {"items": [
            {"fieldRef": {"fieldPath": "metadata.labels"}, "path": "labels"},
            {"fieldRef": {"fieldPath": "metadata.annotations"}, "path": "annotations"}]}}),
        json!({"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {
            "audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}]}}),
        json!({"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}}),
        json!({"name": "istio-ca-crl", "configMap": {"name": "istio-ca-crl", "optional": true}}),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn webhooks_select_by_namespace_then_pod_labels() {
        let enabled = l(&[("istio-injection", "enabled")]);
        assert_eq!(webhook_revision(&enabled, &l(&[])), Some("default".into()));
        assert_eq!(
            webhook_revision(&enabled, &l(&[("sidecar.istio.io/inject", "false")])),
            None
        );
        assert_eq!(
            webhook_revision(&l(&[("istio-injection", "disabled")]), &l(&[])),
            None
        );
        assert_eq!(
            webhook_revision(&l(&[("istio.io/rev", "canary")]), &l(&[])),
            Some("canary".into())
        );
        assert_eq!(webhook_revision(&l(&[]), &l(&[])), None);
        assert_eq!(
            webhook_revision(&l(&[]), &l(&[("sidecar.istio.io/inject", "true")])),
            Some("default".into())
        );
        assert_eq!(
            webhook_revision(&l(&[]), &l(&[("istio.io/rev", "canary")])),
            Some("canary".into())
        );
    }

    #[test]
    fn a_default_tag_takes_over_what_the_default_revision_answered() {
        let mut world = World::empty();
        world.deployments = crate::control_plane::istiod("1.30.3", "default")
            .into_iter()
            .chain(crate::control_plane::istiod("1.31.2", "1-31-2"))
            .filter(|o| o["kind"] == "Deployment")
            .collect();
        let version = |w: &World, rev: &str| istiod_image(w, &resolve_tag(w, rev)).map(|i| i.1);
        assert_eq!(version(&world, "default").as_deref(), Some("1.30.3"));
        assert_eq!(version(&world, "1-31-2").as_deref(), Some("1.31.2"));
        world
            .webhooks
            .push(json!({"metadata": {"name": "istio-revision-tag-default",
            "labels": {"istio.io/tag": "default", "istio.io/rev": "1-31-2"}}}));
        assert_eq!(version(&world, "default").as_deref(), Some("1.31.2"));
        assert_eq!(resolve_tag(&world, "1-31-2"), "1-31-2");
    }

    #[test]
    fn the_label_wins_over_the_annotation() {
        let pod = json!({"metadata": {"labels": {"sidecar.istio.io/inject": "true"},
            "annotations": {"sidecar.istio.io/inject": "false"}}, "spec": {}});
        assert!(inject_required(&pod, "app"));
        let pod =
            json!({"metadata": {"annotations": {"sidecar.istio.io/inject": "false"}}, "spec": {}});
        assert!(!inject_required(&pod, "app"));
        let pod =
            json!({"metadata": {"annotations": {"sidecar.istio.io/inject": "maybe"}}, "spec": {}});
        assert!(inject_required(&pod, "app"));
        assert!(!inject_required(&json!({"spec": {}}), "kube-system"));
    }
}
