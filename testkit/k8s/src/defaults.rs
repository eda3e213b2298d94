//! What the API server's registry strategies do on every write: defaulting (pod spec
//! fields, Deployment strategy, Service cluster IPs and ports, Namespace phase and
//! finalizer) and the validation a harness can trip over (names, selectors that do not
//! match the template, immutable fields, missing containers).

use crate::kinds::KindInfo;
use crate::meta;
use serde_json::{Value, json};
use std::collections::HashSet;

/// Addresses handed out by the fake: pod IPs, cluster IPs and node ports.
#[derive(Debug)]
pub struct Allocators {
    /// The first two octets of every pod IP (`10.244`, kind's pod CIDR, by default).
    pod_prefix: String,
    pod_ips: u32,
    cluster_ips: u32,
    node_ports: u16,
}

impl Allocators {
    pub fn new(pod_prefix: &str) -> Allocators {
        Allocators {
            pod_prefix: pod_prefix.to_string(),
            pod_ips: 0,
            cluster_ips: 0,
            node_ports: 0,
        }
    }

    /// `<prefix>.0.2`, `<prefix>.0.3`, … each once.
    pub fn pod_ip(&mut self) -> String {
        let n = self.pod_ips;
        self.pod_ips += 1;
        format!("{}.{}.{}", self.pod_prefix, n / 253, n % 253 + 2)
    }

    /// 10.96.0.20, … (kind's service CIDR), skipping addresses in use.
    fn cluster_ip(&mut self, used: &HashSet<String>) -> String {
        loop {
            let n = self.cluster_ips + 20;
            self.cluster_ips += 1;
            let ip = format!("10.96.{}.{}", n / 254, n % 254 + 1);
            if !used.contains(&ip) {
                return ip;
            }
        }
    }

    fn node_port(&mut self) -> u16 {
        let p = 30000 + self.node_ports % 2768;
        self.node_ports += 1;
        p
    }
}

/// Who writes: the API (validation applies) or the fake's own controllers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Api,
    Internal,
}

pub type Causes = Vec<(String, String)>;

const SUBDOMAIN_HELP: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_HELP: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label)
}

/// Validates `metadata.name` the way the kind's strategy does.
pub fn validate_name(info: &KindInfo, name: &str) -> Result<(), (String, String)> {
    let bad = |help: &str| {
        Err((
            "metadata.name".to_string(),
            format!("Invalid value: \"{name}\": {help}"),
        ))
    };
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Namespace") | ("", "Service") if !is_label(name) => bad(LABEL_HELP),
        ("rbac.authorization.k8s.io", _) => {
            if name.contains('/') || name.contains('%') || name == "." || name == ".." {
                bad("may not contain '/' or '%'")
            } else {
                Ok(())
            }
        }
        _ if !is_subdomain(name) => bad(SUBDOMAIN_HELP),
        _ => Ok(()),
    }
}

fn image_pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        "IfNotPresent"
    } else {
        match last.split_once(':') {
            None => "Always",
            Some((_, "latest")) => "Always",
            Some(_) => "IfNotPresent",
        }
    }
}

fn default_containers(list: &mut Value) {
    let Some(containers) = list.as_array_mut() else {
        return;
    };
    for c in containers {
        if !c.is_object() {
            continue;
        }
        let image = c["image"].as_str().unwrap_or_default().to_string();
        let fields = [
            ("terminationMessagePath", json!("/dev/termination-log")),
            ("terminationMessagePolicy", json!("File")),
            ("imagePullPolicy", json!(image_pull_policy(&image))),
            ("resources", json!({})),
        ];
        for (k, v) in fields {
            if c[k].is_null() {
                c[k] = v;
            }
        }
        if let Some(ports) = c["ports"].as_array_mut() {
            for p in ports.iter_mut().filter(|p| p.is_object()) {
                if p["protocol"].is_null() {
                    p["protocol"] = json!("TCP");
                }
            }
        }
    }
}

/// Defaults of a pod spec (also inside templates).
fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    let fields = [
        ("restartPolicy", json!("Always")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("dnsPolicy", json!("ClusterFirst")),
        ("securityContext", json!({})),
        ("schedulerName", json!("default-scheduler")),
    ];
    for (k, v) in fields {
        if spec[k].is_null() {
            spec[k] = v;
        }
    }
    default_containers(&mut spec["containers"]);
    if spec["initContainers"].is_array() {
        default_containers(&mut spec["initContainers"]);
    }
}

fn validate_containers(spec: &Value, prefix: &str, causes: &mut Causes) {
    match spec["containers"].as_array() {
        Some(cs) if !cs.is_empty() => {
            for (i, c) in cs.iter().enumerate() {
                if c["name"].as_str().is_none_or(str::is_empty) {
                    causes.push((
                        format!("{prefix}.containers[{i}].name"),
                        "Required value".into(),
                    ));
                }
                if c["image"].as_str().is_none_or(str::is_empty) {
                    causes.push((
                        format!("{prefix}.containers[{i}].image"),
                        "Required value".into(),
                    ));
                }
            }
        }
        _ => causes.push((format!("{prefix}.containers"), "Required value".into())),
    }
}

/// Go's rendering of a label map in validation messages.
fn go_map(v: &Value) -> String {
    let pairs: Vec<String> = v
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k:?}:{}", v)).collect())
        .unwrap_or_default();
    format!("map[string]string{{{}}}", pairs.join(", "))
}

/// Workloads with a selector and a pod template (Deployment, ReplicaSet, DaemonSet,
/// StatefulSet).
fn workload(obj: &mut Value, old: Option<&Value>, origin: Origin, causes: &mut Causes) {
    let spec = &mut obj["spec"];
    default_pod_spec(&mut spec["template"]["spec"]);
    if origin == Origin::Internal {
        return;
    }
    let selector = spec["selector"].clone();
    if !selector.is_object()
        || (selector["matchLabels"]
            .as_object()
            .is_none_or(|m| m.is_empty())
            && selector["matchExpressions"]
                .as_array()
                .is_none_or(|e| e.is_empty()))
    {
        causes.push(("spec.selector".into(), "Required value".into()));
    } else {
        let labels = &spec["template"]["metadata"]["labels"];
        if !crate::selectors::label_selector_matches(&selector, labels) {
            causes.push((
                "spec.template.metadata.labels".into(),
                format!(
                    "Invalid value: {}: `selector` does not match template `labels`",
                    go_map(labels)
                ),
            ));
        }
        if let Some(old) = old
            && old["spec"]["selector"] != selector
        {
            causes.push((
                "spec.selector".into(),
                format!("Invalid value: {selector}: field is immutable"),
            ));
        }
    }
    validate_containers(&spec["template"]["spec"], "spec.template.spec", causes);
}

fn deployment(obj: &mut Value) {
    let spec = &mut obj["spec"];
    if !spec.is_object() {
        return;
    }
    let fields = [
        ("replicas", json!(1)),
        ("revisionHistoryLimit", json!(10)),
        ("progressDeadlineSeconds", json!(600)),
    ];
    for (k, v) in fields {
        if spec[k].is_null() {
            spec[k] = v;
        }
    }
    if spec["strategy"]["type"].is_null() {
        spec["strategy"]["type"] = json!("RollingUpdate");
    }
    if spec["strategy"]["type"] == "RollingUpdate" {
        let ru = &mut spec["strategy"]["rollingUpdate"];
        for k in ["maxSurge", "maxUnavailable"] {
            if ru[k].is_null() {
                ru[k] = json!("25%");
            }
        }
    }
}

fn service(
    obj: &mut Value,
    old: Option<&Value>,
    origin: Origin,
    used_ips: &HashSet<String>,
    alloc: &mut Allocators,
    causes: &mut Causes,
) {
    let spec = &mut obj["spec"];
    if !spec.is_object() {
        *spec = json!({});
    }
    if spec["type"].is_null() {
        spec["type"] = json!("ClusterIP");
    }
    let kind = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    if spec["sessionAffinity"].is_null() {
        spec["sessionAffinity"] = json!("None");
    }
    if kind != "ExternalName" {
        let old_ip = old.and_then(|o| o["spec"]["clusterIP"].as_str());
        let ip = match (spec["clusterIP"].as_str(), old_ip) {
            (Some(ip), _) if !ip.is_empty() => ip.to_string(),
            (_, Some(old)) => old.to_string(),
            _ => alloc.cluster_ip(used_ips),
        };
        spec["clusterIP"] = json!(ip);
        spec["clusterIPs"] = json!([ip]);
        if ip != "None" {
            spec["ipFamilies"] = json!(["IPv4"]);
            spec["ipFamilyPolicy"] = json!("SingleStack");
        }
        if spec["internalTrafficPolicy"].is_null() {
            spec["internalTrafficPolicy"] = json!("Cluster");
        }
    }
    let node_ports = kind == "NodePort" || kind == "LoadBalancer";
    if node_ports && spec["externalTrafficPolicy"].is_null() {
        spec["externalTrafficPolicy"] = json!("Cluster");
    }
    if kind == "LoadBalancer" && spec["allocateLoadBalancerNodePorts"].is_null() {
        spec["allocateLoadBalancerNodePorts"] = json!(true);
    }
    let old_ports = old.map(|o| o["spec"]["ports"].clone()).unwrap_or_default();
    let n_ports = spec["ports"].as_array().map_or(0, Vec::len);
    if let Some(ports) = spec["ports"].as_array_mut() {
        for (i, p) in ports.iter_mut().enumerate() {
            if !p.is_object() {
                continue;
            }
            if p["protocol"].is_null() {
                p["protocol"] = json!("TCP");
            }
            if p["targetPort"].is_null() {
                p["targetPort"] = p["port"].clone();
            }
            if node_ports && p["nodePort"].is_null() {
                let kept = old_ports.as_array().and_then(|olds| {
                    olds.iter()
                        .find(|o| o["port"] == p["port"])
                        .map(|o| o["nodePort"].clone())
                });
                p["nodePort"] = match kept {
                    Some(np) if !np.is_null() => np,
                    _ => json!(alloc.node_port()),
                };
            }
            if origin == Origin::Api {
                if !p["port"].is_i64() {
                    causes.push((format!("spec.ports[{i}].port"), "Required value".into()));
                }
                if n_ports > 1 && p["name"].as_str().is_none_or(str::is_empty) {
                    causes.push((format!("spec.ports[{i}].name"), "Required value".into()));
                }
            }
        }
    }
    let headless = spec["clusterIP"] == "None";
    if origin == Origin::Api && n_ports == 0 && !headless && kind != "ExternalName" {
        causes.push(("spec.ports".into(), "Required value".into()));
    }
    if obj["status"].is_null() {
        obj["status"] = json!({"loadBalancer": {}});
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Object,
    Array,
    Str,
    Int,
    /// An object whose values are strings (labels, annotations, selectors).
    StringMap,
}

/// Paths (`*` = every array item) and the JSON type the API's Go structs accept there.
const COMMON_SHAPES: &[(&str, Shape)] = &[
    ("metadata", Shape::Object),
    ("metadata.name", Shape::Str),
    ("metadata.generateName", Shape::Str),
    ("metadata.namespace", Shape::Str),
    ("metadata.labels", Shape::StringMap),
    ("metadata.annotations", Shape::StringMap),
    ("metadata.finalizers", Shape::Array),
    ("metadata.finalizers.*", Shape::Str),
    ("metadata.ownerReferences", Shape::Array),
    ("metadata.ownerReferences.*", Shape::Object),
    ("status", Shape::Object),
];

const POD_SPEC_SHAPES: &[(&str, Shape)] = &[
    ("", Shape::Object),
    ("containers", Shape::Array),
    ("containers.*", Shape::Object),
    ("containers.*.name", Shape::Str),
    ("containers.*.image", Shape::Str),
    ("containers.*.ports", Shape::Array),
    ("containers.*.ports.*", Shape::Object),
    ("containers.*.ports.*.containerPort", Shape::Int),
    ("initContainers", Shape::Array),
    ("initContainers.*", Shape::Object),
    ("initContainers.*.name", Shape::Str),
    ("initContainers.*.image", Shape::Str),
    ("initContainers.*.restartPolicy", Shape::Str),
    ("initContainers.*.ports", Shape::Array),
    ("initContainers.*.ports.*", Shape::Object),
    ("nodeName", Shape::Str),
];

const WORKLOAD_SHAPES: &[(&str, Shape)] = &[
    ("spec", Shape::Object),
    ("spec.replicas", Shape::Int),
    ("spec.selector", Shape::Object),
    ("spec.selector.matchLabels", Shape::StringMap),
    ("spec.selector.matchExpressions", Shape::Array),
    ("spec.template", Shape::Object),
    ("spec.template.metadata", Shape::Object),
    ("spec.template.metadata.labels", Shape::StringMap),
    ("spec.template.metadata.annotations", Shape::StringMap),
    ("spec.strategy", Shape::Object),
    ("spec.strategy.rollingUpdate", Shape::Object),
    ("spec.progressDeadlineSeconds", Shape::Int),
    ("spec.revisionHistoryLimit", Shape::Int),
];

const SERVICE_SHAPES: &[(&str, Shape)] = &[
    ("spec", Shape::Object),
    ("spec.selector", Shape::StringMap),
    ("spec.ports", Shape::Array),
    ("spec.ports.*", Shape::Object),
    ("spec.ports.*.port", Shape::Int),
    ("spec.ports.*.name", Shape::Str),
    ("spec.clusterIP", Shape::Str),
    ("spec.type", Shape::Str),
];

fn shape_ok(v: &Value, shape: Shape) -> bool {
    match shape {
        Shape::Object => v.is_object(),
        Shape::Array => v.is_array(),
        Shape::Str => v.is_string(),
        Shape::Int => v.is_i64() || v.is_u64(),
        Shape::StringMap => v
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string)),
    }
}

fn go_type(shape: Shape) -> &'static str {
    match shape {
        Shape::Object => "struct",
        Shape::Array => "[]",
        Shape::Str => "string",
        Shape::Int => "int32",
        Shape::StringMap => "map[string]string",
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every value at `path` (dotted; `*` walks array items), with its concrete path.
fn at_path<'a>(v: &'a Value, path: &str, here: String, out: &mut Vec<(String, &'a Value)>) {
    let Some((head, rest)) = (if path.is_empty() {
        None
    } else {
        Some(path.split_once('.').unwrap_or((path, "")))
    }) else {
        out.push((here, v));
        return;
    };
    if head == "*" {
        for (i, item) in v.as_array().into_iter().flatten().enumerate() {
            at_path(item, rest, format!("{here}[{i}]"), out);
        }
    } else if let Some(child) = v.get(head).filter(|c| !c.is_null()) {
        let here = if here.is_empty() {
            head.to_string()
        } else {
            format!("{here}.{head}")
        };
        at_path(child, rest, here, out);
    }
}

/// The decoding the API server does before anything else: a field of the wrong JSON
/// type is a 400, like Go's `json: cannot unmarshal ...`. The rest of the fake may then
/// index these fields freely.
pub fn check_shape(info: &KindInfo, obj: &Value) -> Result<(), String> {
    let mut rules: Vec<(String, Shape)> = COMMON_SHAPES
        .iter()
        .map(|(p, s)| (p.to_string(), *s))
        .collect();
    let prefixed = |prefix: &str, shapes: &[(&str, Shape)]| -> Vec<(String, Shape)> {
        shapes
            .iter()
            .map(|(p, s)| {
                (
                    if p.is_empty() {
                        prefix.to_string()
                    } else {
                        format!("{prefix}.{p}")
                    },
                    *s,
                )
            })
            .collect()
    };
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => rules.extend(prefixed("spec", POD_SPEC_SHAPES)),
        ("apps", _) => {
            rules.extend(WORKLOAD_SHAPES.iter().map(|(p, s)| (p.to_string(), *s)));
            rules.extend(prefixed("spec.template.spec", POD_SPEC_SHAPES));
        }
        ("", "Service") => rules.extend(SERVICE_SHAPES.iter().map(|(p, s)| (p.to_string(), *s))),
        ("", "Namespace") | ("apiextensions.k8s.io", _) => {
            rules.push(("spec".into(), Shape::Object))
        }
        _ => {}
    }
    for (path, shape) in rules {
        let mut found = Vec::new();
        at_path(obj, &path, String::new(), &mut found);
        if let Some((at, v)) = found.into_iter().find(|(_, v)| !shape_ok(v, shape)) {
            let version = info.versions.first().map(String::as_str).unwrap_or("v1");
            return Err(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: json: cannot unmarshal {} into Go struct field {kind}.{at} of type {}",
                json_type(v),
                go_type(shape),
                kind = info.kind,
            ));
        }
    }
    Ok(())
}

/// Applies the kind's defaults to `obj` (being created when `old` is None) and
/// returns the validation failures. `used_ips` are the cluster IPs already taken.
pub fn prepare(
    info: &KindInfo,
    obj: &mut Value,
    old: Option<&Value>,
    origin: Origin,
    used_ips: &HashSet<String>,
    alloc: &mut Allocators,
) -> Causes {
    let mut causes = Causes::new();
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => {
            default_pod_spec(&mut obj["spec"]);
            let spec = &mut obj["spec"];
            for k in ["serviceAccountName", "serviceAccount"] {
                if spec.is_object() && spec[k].is_null() {
                    spec[k] = json!("default");
                }
            }
            if spec.is_object() && spec["enableServiceLinks"].is_null() {
                spec["enableServiceLinks"] = json!(true);
            }
            if old.is_none() {
                obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            }
            if origin == Origin::Api {
                validate_containers(&obj["spec"], "spec", &mut causes);
                if let Some(old) = old {
                    pod_update(old, obj, &mut causes);
                }
            }
        }
        ("apps", "Deployment") => {
            deployment(obj);
            workload(obj, old, origin, &mut causes);
        }
        ("apps", "ReplicaSet") => {
            if obj["spec"].is_object() && obj["spec"]["replicas"].is_null() {
                obj["spec"]["replicas"] = json!(1);
            }
            workload(obj, old, origin, &mut causes);
        }
        ("apps", "DaemonSet") | ("apps", "StatefulSet") => {
            workload(obj, old, origin, &mut causes);
        }
        ("", "Service") => service(obj, old, origin, used_ips, alloc, &mut causes),
        ("", "Namespace") => {
            let name = meta::name(obj).to_string();
            let m = meta::metadata_mut(obj);
            let labels = m.entry("labels").or_insert_with(|| json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            labels["kubernetes.io/metadata.name"] = json!(name);
            if obj["spec"]["finalizers"].is_null() {
                obj["spec"]["finalizers"] = json!(["kubernetes"]);
            }
            if obj["status"]["phase"].is_null() {
                obj["status"]["phase"] = json!("Active");
            }
        }
        ("", "Secret") if obj["type"].is_null() => obj["type"] = json!("Opaque"),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            let spec = &obj["spec"];
            let expected = format!(
                "{}.{}",
                spec["names"]["plural"].as_str().unwrap_or_default(),
                spec["group"].as_str().unwrap_or_default()
            );
            if origin == Origin::Api && meta::name(obj) != expected {
                causes.push((
                    "metadata.name".into(),
                    format!(
                        "Invalid value: \"{}\": must be spec.names.plural+\".\"+spec.group",
                        meta::name(obj)
                    ),
                ));
            }
            if obj["status"].is_null() {
                let stored: Vec<Value> = spec["versions"]
                    .as_array()
                    .map(|vs| {
                        vs.iter()
                            .filter(|v| v["storage"] == true)
                            .map(|v| v["name"].clone())
                            .collect()
                    })
                    .unwrap_or_default();
                obj["status"] = json!({"acceptedNames": {"kind": "", "plural": ""}, "conditions": [], "storedVersions": stored});
            }
        }
        _ => {}
    }
    causes
}

/// Pods are nearly immutable: only images, activeDeadlineSeconds, tolerations and
/// terminationGracePeriodSeconds may change.
fn pod_update(old: &Value, new: &Value, causes: &mut Causes) {
    let mutable_out = |spec: &Value| {
        let mut s = spec.clone();
        for list in ["containers", "initContainers"] {
            if let Some(cs) = s[list].as_array_mut() {
                for c in cs.iter_mut().filter(|c| c.is_object()) {
                    c["image"] = Value::Null;
                }
            }
        }
        if let Some(m) = s.as_object_mut() {
            for k in [
                "activeDeadlineSeconds",
                "tolerations",
                "terminationGracePeriodSeconds",
            ] {
                m.remove(k);
            }
        }
        s
    };
    if mutable_out(&old["spec"]) != mutable_out(&new["spec"]) {
        causes.push((
            "spec".into(),
            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)".into(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Kinds;

    #[test]
    fn deployment_selector_must_match_template() {
        let kinds = Kinds::new(false, std::iter::empty());
        let d = kinds.lookup("apps", "Deployment").unwrap();
        let mut obj = json!({"metadata": {"name": "x"}, "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}});
        let causes = prepare(
            &d,
            &mut obj,
            None,
            Origin::Api,
            &HashSet::new(),
            &mut Allocators::new("10.244"),
        );
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].0, "spec.template.metadata.labels");
        assert_eq!(obj["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(
            obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
    }

    #[test]
    fn wrongly_typed_fields_are_rejected_before_anything_indexes_them() {
        let kinds = Kinds::new(false, std::iter::empty());
        let d = kinds.lookup("apps", "Deployment").unwrap();
        let bad = json!({"metadata": {"name": "x"}, "spec": {"replicas": "two"}});
        let err = check_shape(&d, &bad).unwrap_err();
        assert!(err.ends_with("cannot unmarshal string into Go struct field Deployment.spec.replicas of type int32"), "{err}");
        let bad = json!({"metadata": {"name": "x"}, "spec": {"template": {"spec": {"containers": [{"name": 1}]}}}});
        assert!(
            check_shape(&d, &bad)
                .unwrap_err()
                .contains("spec.template.spec.containers[0].name")
        );
        assert!(
            check_shape(
                &d,
                &json!({"metadata": {"labels": {"a": "b"}}, "spec": null})
            )
            .is_ok()
        );
        let pod = kinds.lookup("", "Pod").unwrap();
        assert!(check_shape(&pod, &json!({"spec": "x"})).is_err());
    }

    #[test]
    fn names_are_validated_per_kind() {
        let kinds = Kinds::new(false, std::iter::empty());
        let ns = kinds.lookup("", "Namespace").unwrap();
        assert!(validate_name(&ns, "a.b").is_err());
        let cm = kinds.lookup("", "ConfigMap").unwrap();
        assert!(validate_name(&cm, "a.b").is_ok());
        assert!(validate_name(&cm, "A").is_err());
        let cr = kinds
            .lookup("rbac.authorization.k8s.io", "ClusterRole")
            .unwrap();
        assert!(validate_name(&cr, "system:controller:x").is_ok());
    }
}
