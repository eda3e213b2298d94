//! The cluster's objects as the simulation reads them: the read-only [`Objects`] trait the
//! tests implement over their API server, and typed views of the few fields Istio's data
//! plane looks at (pods, Services, EndpointSlices, Secrets). Everything is derived from
//! the objects as stored, never from app names.

use serde_json::Value;
use std::collections::BTreeMap;

/// Read access to the cluster's objects as the API server stores them. group "" = core;
/// kinds as in the manifests ("Pod", "Service", "Deployment", "EndpointSlice", "Namespace",
/// "Secret", "PeerAuthentication", "DestinationRule", "VirtualService", "Gateway").
pub trait Objects: Send + Sync + 'static {
    fn list(&self, group: &str, kind: &str, namespace: Option<&str>) -> Vec<Value>;
}

pub(crate) type Labels = BTreeMap<String, String>;

/// The string at `path` (object keys), if any.
pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_str()
}

pub(crate) fn string_map(v: Option<&Value>) -> Labels {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn labels(v: &Value) -> Labels {
    string_map(v.pointer("/metadata/labels"))
}

pub(crate) fn annotations(v: &Value) -> Labels {
    string_map(v.pointer("/metadata/annotations"))
}

pub(crate) fn name(v: &Value) -> String {
    str_at(v, &["metadata", "name"]).unwrap_or("").to_string()
}

pub(crate) fn namespace(v: &Value) -> String {
    str_at(v, &["metadata", "namespace"])
        .unwrap_or("default")
        .to_string()
}

pub(crate) fn creation(v: &Value) -> String {
    str_at(v, &["metadata", "creationTimestamp"])
        .unwrap_or("")
        .to_string()
}

/// A `matchLabels`-style selector: every pair must be present. An empty selector
/// matches everything (callers decide whether that is meaningful).
pub(crate) fn selector_matches(selector: &Labels, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Prometheus' `strutil.SanitizeLabelName`: every character outside `[a-zA-Z0-9_]`
/// becomes `_` (how Kubernetes label names become `__meta_kubernetes_pod_label_*`).
pub(crate) fn sanitize_label_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The container named `name` in `spec.containers` or `spec.initContainers`.
pub(crate) fn container<'a>(spec: &'a Value, list: &str, name: &str) -> Option<&'a Value> {
    spec.get(list)?
        .as_array()?
        .iter()
        .find(|c| str_at(c, &["name"]) == Some(name))
}

/// The literal value of env `key` in `container` (`valueFrom` is not resolved).
pub(crate) fn env_value<'a>(container: &'a Value, key: &str) -> Option<&'a str> {
    container
        .get("env")?
        .as_array()?
        .iter()
        .find(|e| str_at(e, &["name"]) == Some(key))
        .and_then(|e| str_at(e, &["value"]))
}

/// The tag of an image reference (`hub/name:tag`), if it has one (not a digest).
pub(crate) fn image_tag(image: &str) -> Option<&str> {
    let last = image.rsplit('/').next()?;
    if last.contains('@') {
        return None;
    }
    last.split_once(':').map(|(_, tag)| tag)
}

/// The hub of an image reference (`docker.io/istio/pilot:1.31.0` → `docker.io/istio`).
pub(crate) fn image_hub(image: &str) -> &str {
    image.rsplit_once('/').map(|(hub, _)| hub).unwrap_or("")
}

/// What runs Istio's proxy in a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyKind {
    /// An injected sidecar (`pilot-agent proxy sidecar`).
    Sidecar,
    /// A gateway (`pilot-agent proxy router`), such as `istio-ingressgateway`.
    Gateway,
}

/// A pod as the data plane sees it.
#[derive(Debug, Clone)]
pub(crate) struct Pod {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub ip: Option<String>,
    pub labels: Labels,
    pub annotations: Labels,
    pub phase: String,
    pub ready: bool,
    pub deleting: bool,
    pub node: String,
    pub service_account: String,
    pub owner: Option<Owner>,
    pub spec: Value,
}

#[derive(Debug, Clone)]
pub(crate) struct Owner {
    pub kind: String,
    pub name: String,
    pub api_version: String,
}

impl Pod {
    pub fn parse(v: &Value) -> Pod {
        let namespace = namespace(v);
        let name = name(v);
        let uid = str_at(v, &["metadata", "uid"])
            .map(str::to_string)
            .unwrap_or_else(|| format!("{namespace}/{name}"));
        let ready = v
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    str_at(c, &["type"]) == Some("Ready") && str_at(c, &["status"]) == Some("True")
                })
            });
        let owner = v
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .and_then(|refs| {
                refs.iter()
                    .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
            })
            .map(|r| Owner {
                kind: str_at(r, &["kind"]).unwrap_or("").to_string(),
                name: str_at(r, &["name"]).unwrap_or("").to_string(),
                api_version: str_at(r, &["apiVersion"]).unwrap_or("").to_string(),
            });
        Pod {
            uid,
            ip: str_at(v, &["status", "podIP"]).map(str::to_string),
            labels: labels(v),
            annotations: annotations(v),
            phase: str_at(v, &["status", "phase"]).unwrap_or("").to_string(),
            ready,
            deleting: v.pointer("/metadata/deletionTimestamp").is_some(),
            node: str_at(v, &["spec", "nodeName"]).unwrap_or("").to_string(),
            service_account: str_at(v, &["spec", "serviceAccountName"])
                .unwrap_or("default")
                .to_string(),
            owner,
            spec: v.get("spec").cloned().unwrap_or(Value::Null),
            name,
            namespace,
        }
    }

    /// Whether the pod's containers run: not finished, not failed. Kubernetes keeps
    /// serving a terminating pod until it is gone.
    pub fn running(&self) -> bool {
        !matches!(self.phase.as_str(), "Succeeded" | "Failed" | "Pending")
    }

    /// The `istio-proxy` container and how it runs: a native sidecar (an init container
    /// with `restartPolicy: Always`), a classic sidecar, or a gateway (`proxy router`).
    pub fn proxy_kind(&self) -> Option<ProxyKind> {
        if let Some(c) = container(&self.spec, "initContainers", "istio-proxy")
            && str_at(c, &["restartPolicy"]) == Some("Always")
        {
            return Some(ProxyKind::Sidecar);
        }
        let c = container(&self.spec, "containers", "istio-proxy")?;
        let router = c
            .get("args")
            .and_then(Value::as_array)
            .is_some_and(|args| args.iter().any(|a| a.as_str() == Some("router")));
        Some(if router {
            ProxyKind::Gateway
        } else {
            ProxyKind::Sidecar
        })
    }

    /// A proxy that is up: the pod runs and has one.
    pub fn live_proxy(&self) -> Option<ProxyKind> {
        if self.running() {
            self.proxy_kind()
        } else {
            None
        }
    }

    pub fn has_sidecar(&self) -> bool {
        self.live_proxy() == Some(ProxyKind::Sidecar)
    }

    pub fn proxy_container(&self) -> Option<&Value> {
        container(&self.spec, "initContainers", "istio-proxy")
            .or_else(|| container(&self.spec, "containers", "istio-proxy"))
    }

    /// The Istio version the proxy runs: the tag of its `proxyv2` image.
    pub fn proxy_version(&self) -> String {
        self.proxy_container()
            .and_then(|c| str_at(c, &["image"]))
            .and_then(image_tag)
            .unwrap_or("unknown")
            .to_string()
    }

    /// The first container that is not Istio's: the application.
    pub fn app_container(&self) -> Option<&Value> {
        self.spec
            .get("containers")?
            .as_array()?
            .iter()
            .find(|c| str_at(c, &["name"]) != Some("istio-proxy"))
    }

    /// The workload name Istio derives (`pkg/kube/util.go` `GetDeployMetaFromPod`): a
    /// pod owned by a ReplicaSet whose name ends in the `pod-template-hash` belongs to
    /// the Deployment of that name; otherwise the controller's name, else the pod's.
    pub fn workload(&self) -> Workload {
        let mut w = Workload {
            name: self.name.clone(),
            kind: "Pod".into(),
            api_version: "v1".into(),
        };
        if let Some(o) = &self.owner {
            w.name = o.name.clone();
            w.kind = o.kind.clone();
            w.api_version = o.api_version.clone();
            let hash = self.labels.get("pod-template-hash").map(String::as_str);
            if o.kind == "ReplicaSet"
                && let Some(hash) = hash.filter(|h| !h.is_empty())
                && let Some(trimmed) = o.name.strip_suffix(&format!("-{hash}"))
            {
                w.name = trimmed.to_string();
                w.kind = "Deployment".into();
            }
        }
        w
    }

    /// The workload name in the proxy's node metadata (`ISTIO_META_WORKLOAD_NAME`, set
    /// by the injector and the gateway chart), else the derived one.
    pub fn workload_name(&self) -> String {
        self.proxy_container()
            .and_then(|c| env_value(c, "ISTIO_META_WORKLOAD_NAME"))
            .map(str::to_string)
            .unwrap_or_else(|| self.workload().name)
    }

    /// `pkg/kube/labels/labels.go` `CanonicalService`: the canonical name and revision
    /// with their fallbacks.
    pub fn canonical(&self) -> (String, String) {
        canonical_service(&self.labels, &self.workload_name())
    }

    /// The control plane revision serving the pod's proxy: the injector's
    /// `istio.io/rev` annotation, a gateway's `istio.io/rev` label, else `default`.
    pub fn revision(&self) -> String {
        self.annotations
            .get("istio.io/rev")
            .or_else(|| self.labels.get("istio.io/rev"))
            .cloned()
            .unwrap_or_else(|| "default".into())
    }

    pub fn principal(&self, trust_domain: &str) -> String {
        format!(
            "spiffe://{trust_domain}/ns/{}/sa/{}",
            self.namespace, self.service_account
        )
    }
}

/// A workload as Istio names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Workload {
    pub name: String,
    pub kind: String,
    pub api_version: String,
}

pub(crate) fn canonical_service(labels: &Labels, workload: &str) -> (String, String) {
    let name = [
        "service.istio.io/canonical-name",
        "app.kubernetes.io/name",
        "app",
    ]
    .iter()
    .find_map(|k| labels.get(*k))
    .cloned()
    .unwrap_or_else(|| workload.to_string());
    let revision = [
        "service.istio.io/canonical-revision",
        "app.kubernetes.io/version",
        "version",
    ]
    .iter()
    .find_map(|k| labels.get(*k))
    .cloned()
    .unwrap_or_else(|| "latest".to_string());
    (name, revision)
}

/// `targetPort` of a Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TargetPort {
    Number(u16),
    Name(String),
}

#[derive(Debug, Clone)]
pub(crate) struct ServicePort {
    pub name: String,
    pub port: u16,
    pub target: TargetPort,
}

#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub name: String,
    pub namespace: String,
    pub selector: Labels,
    pub ports: Vec<ServicePort>,
}

impl Service {
    pub fn parse(v: &Value) -> Service {
        let ports = v
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| {
                        let port = u16::try_from(p.get("port")?.as_u64()?).ok()?;
                        let target = match p.get("targetPort") {
                            Some(Value::Number(n)) => n
                                .as_u64()
                                .and_then(|n| u16::try_from(n).ok())
                                .map(TargetPort::Number)
                                .unwrap_or(TargetPort::Number(port)),
                            Some(Value::String(s)) => match s.parse::<u16>() {
                                Ok(n) => TargetPort::Number(n),
                                Err(_) => TargetPort::Name(s.clone()),
                            },
                            _ => TargetPort::Number(port),
                        };
                        Some(ServicePort {
                            name: str_at(p, &["name"]).unwrap_or("").to_string(),
                            port,
                            target,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Service {
            name: name(v),
            namespace: namespace(v),
            selector: string_map(v.pointer("/spec/selector")),
            ports,
        }
    }

    pub fn host(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.name, self.namespace)
    }

    pub fn port(&self, number: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == number)
    }

    /// The pod port a Service port lands on for `pod` (named target ports resolve
    /// against the pod's container ports).
    pub fn target_port(&self, port: &ServicePort, pod: &Pod) -> Option<u16> {
        match &port.target {
            TargetPort::Number(n) => Some(*n),
            TargetPort::Name(n) => pod
                .spec
                .get("containers")?
                .as_array()?
                .iter()
                .filter_map(|c| c.get("ports")?.as_array())
                .flatten()
                .find(|p| str_at(p, &["name"]) == Some(n.as_str()))
                .and_then(|p| p.get("containerPort")?.as_u64())
                .and_then(|n| u16::try_from(n).ok()),
        }
    }
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone)]
pub(crate) struct SliceEndpoint {
    pub addresses: Vec<String>,
    pub ready: bool,
    /// (namespace, name) of the `targetRef` pod.
    pub pod: Option<(String, String)>,
}

#[derive(Debug, Clone)]
pub(crate) struct EndpointSlice {
    pub service: String,
    pub namespace: String,
    /// (port name, port number).
    pub ports: Vec<(String, u16)>,
    pub endpoints: Vec<SliceEndpoint>,
}

impl EndpointSlice {
    pub fn parse(v: &Value) -> Option<EndpointSlice> {
        let service = labels(v).get("kubernetes.io/service-name")?.clone();
        let ns = namespace(v);
        let ports = v
            .get("ports")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| {
                        Some((
                            str_at(p, &["name"]).unwrap_or("").to_string(),
                            u16::try_from(p.get("port")?.as_u64()?).ok()?,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let endpoints = v
            .get("endpoints")
            .and_then(Value::as_array)
            .map(|es| {
                es.iter()
                    .map(|e| SliceEndpoint {
                        addresses: e
                            .get("addresses")
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .filter_map(|s| s.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        // Kubernetes: an unset `ready` means ready.
                        ready: e
                            .pointer("/conditions/ready")
                            .and_then(Value::as_bool)
                            .unwrap_or(true),
                        pod: e.get("targetRef").and_then(|t| {
                            if str_at(t, &["kind"]).unwrap_or("Pod") != "Pod" {
                                return None;
                            }
                            Some((
                                str_at(t, &["namespace"]).unwrap_or(&ns).to_string(),
                                str_at(t, &["name"])?.to_string(),
                            ))
                        }),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(EndpointSlice {
            service,
            namespace: ns,
            ports,
            endpoints,
        })
    }
}

/// A Secret's data, base64-decoded (`stringData` is taken as is).
#[derive(Debug, Clone)]
pub(crate) struct Secret {
    pub name: String,
    pub namespace: String,
    pub data: BTreeMap<String, Vec<u8>>,
}

impl Secret {
    pub fn parse(v: &Value) -> Secret {
        use base64::Engine as _;
        let mut data = BTreeMap::new();
        if let Some(m) = v.get("data").and_then(Value::as_object) {
            for (k, val) in m {
                if let Some(s) = val.as_str()
                    && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(s.trim())
                {
                    data.insert(k.clone(), bytes);
                }
            }
        }
        if let Some(m) = v.get("stringData").and_then(Value::as_object) {
            for (k, val) in m {
                if let Some(s) = val.as_str() {
                    data.insert(k.clone(), s.as_bytes().to_vec());
                }
            }
        }
        Secret {
            name: name(v),
            namespace: namespace(v),
            data,
        }
    }

    /// The first present key of `keys`.
    pub fn get(&self, keys: &[&str]) -> Option<&[u8]> {
        keys.iter()
            .find_map(|k| self.data.get(*k))
            .map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployment_name_comes_from_the_replicaset_without_its_hash() {
        let pod = Pod::parse(&json!({
            "metadata": {"name": "name-v2-5d9c7b-x1", "namespace": "s", "generateName": "name-v2-5d9c7b-",
                "labels": {"pod-template-hash": "5d9c7b"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "name-v2-5d9c7b", "apiVersion": "apps/v1", "controller": true}]},
            "spec": {"containers": [{"name": "name"}]}
        }));
        assert_eq!(pod.workload().name, "name-v2");
        assert_eq!(pod.workload().kind, "Deployment");
        let bare = Pod::parse(&json!({"metadata": {"name": "solo"}, "spec": {}}));
        assert_eq!(bare.workload().name, "solo");
    }

    #[test]
    fn sidecars_are_found_by_container_and_restart_policy_not_by_count() {
        let native = Pod::parse(&json!({"metadata": {"name": "a"}, "spec": {
            "initContainers": [{"name": "istio-init"}, {"name": "istio-proxy", "restartPolicy": "Always"}],
            "containers": [{"name": "app"}]}}));
        assert_eq!(native.proxy_kind(), Some(ProxyKind::Sidecar));
        let init_only = Pod::parse(&json!({"metadata": {"name": "a"}, "spec": {
            "initContainers": [{"name": "istio-proxy"}], "containers": [{"name": "app"}, {"name": "other"}]}}));
        assert_eq!(init_only.proxy_kind(), None);
        let gateway = Pod::parse(&json!({"metadata": {"name": "a"}, "spec": {
            "containers": [{"name": "istio-proxy", "args": ["proxy", "router"]}]}}));
        assert_eq!(gateway.proxy_kind(), Some(ProxyKind::Gateway));
    }

    #[test]
    fn images_split_into_hub_and_tag() {
        assert_eq!(image_tag("docker.io/istio/pilot:1.31.0"), Some("1.31.0"));
        assert_eq!(image_hub("docker.io/istio/pilot:1.31.0"), "docker.io/istio");
        assert_eq!(image_tag("localhost:5000/istio/pilot"), None);
        assert_eq!(image_tag("ghcr.io/x/y@sha256:abc"), None);
    }
}
