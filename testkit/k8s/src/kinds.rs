//! The table of served kinds: the built-in ones (one place to extend), the Istio kinds
//! that may be served as if their CRDs were installed, and kinds derived from
//! CustomResourceDefinitions stored in the fake.

use serde_json::{Value, json};
use std::sync::Arc;

/// One served resource.
#[derive(Debug, Clone, PartialEq)]
pub struct KindInfo {
    /// API group; "" is the core group.
    pub group: String,
    /// Served versions, most preferred first (the first is also the stored one).
    pub versions: Vec<String>,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub subresources: Vec<Subresource>,
    /// Whether `metadata.generation` tracks changes of the object's spec.
    pub generation: bool,
    /// Built-in kinds know their list merge keys (strategic merge patch, apply);
    /// custom resources treat every list as atomic, as the API server does.
    pub builtin: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subresource {
    pub name: String,
    pub kind: String,
    /// (group, version) when it differs from the parent's, e.g. `scale` → autoscaling/v1.
    pub group_version: Option<(String, String)>,
    pub verbs: Vec<String>,
}

impl KindInfo {
    /// `deployments.apps`, `pods`: how error messages name the resource.
    pub fn resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Deployment.apps`, `Pod`: how validation errors name the kind.
    pub fn group_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// The apiVersion objects are stored with.
    pub fn storage_api_version(&self) -> String {
        self.api_version(&self.versions[0])
    }

    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.iter().any(|s| s.name == name)
    }

    pub fn has_status(&self) -> bool {
        self.has_subresource("status")
    }

    pub fn is(&self, group: &str, kind: &str) -> bool {
        self.group == group && self.kind == kind
    }

    /// The APIResource entries (the resource and its subresources) of discovery.
    pub fn api_resources(&self) -> Vec<Value> {
        let mut out = vec![json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": VERBS,
            "shortNames": self.short_names,
            "storageVersionHash": crate::names::hex_id(&format!("{}/{}", self.group, self.plural), 11),
        })];
        if self.short_names.is_empty() {
            out[0].as_object_mut().map(|o| o.remove("shortNames"));
        }
        for sub in &self.subresources {
            let mut r = json!({
                "name": format!("{}/{}", self.plural, sub.name),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": sub.kind,
                "verbs": sub.verbs,
            });
            if let Some((g, v)) = &sub.group_version {
                r["group"] = json!(g);
                r["version"] = json!(v);
            }
            out.push(r);
        }
        out
    }
}

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

struct Def {
    group: &'static str,
    versions: &'static [&'static str],
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    subs: &'static [&'static str],
    generation: bool,
}

#[allow(clippy::too_many_arguments)] // one row of the table
const fn def(
    group: &'static str,
    versions: &'static [&'static str],
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    subs: &'static [&'static str],
    generation: bool,
) -> Def {
    Def {
        group,
        versions,
        kind,
        plural,
        namespaced,
        short,
        subs,
        generation,
    }
}

const NS: bool = true;
const CLUSTER: bool = false;
const GEN: bool = true;
const NO_GEN: bool = false;

/// Built-in kinds. To serve another one, add a line (and, if it needs behaviour, a
/// controller).
#[rustfmt::skip]
const BUILTIN: &[Def] = &[
    def("", &["v1"], "Namespace", "namespaces", CLUSTER, &["ns"], &["status", "finalize"], NO_GEN),
    def("", &["v1"], "Node", "nodes", CLUSTER, &["no"], &["status"], NO_GEN),
    def("", &["v1"], "Pod", "pods", NS, &["po"], &["status", "log", "portforward"], GEN),
    def("", &["v1"], "Service", "services", NS, &["svc"], &["status"], NO_GEN),
    def("", &["v1"], "Secret", "secrets", NS, &[], &[], NO_GEN),
    def("", &["v1"], "ConfigMap", "configmaps", NS, &["cm"], &[], NO_GEN),
    def("", &["v1"], "ServiceAccount", "serviceaccounts", NS, &["sa"], &[], NO_GEN),
    def("", &["v1"], "Event", "events", NS, &["ev"], &[], NO_GEN),
    def("", &["v1"], "Endpoints", "endpoints", NS, &["ep"], &[], NO_GEN),
    def("apps", &["v1"], "Deployment", "deployments", NS, &["deploy"], &["status", "scale"], GEN),
    def("apps", &["v1"], "ReplicaSet", "replicasets", NS, &["rs"], &["status", "scale"], GEN),
    def("apps", &["v1"], "DaemonSet", "daemonsets", NS, &["ds"], &["status"], GEN),
    def("apps", &["v1"], "StatefulSet", "statefulsets", NS, &["sts"], &["status", "scale"], GEN),
    def("discovery.k8s.io", &["v1"], "EndpointSlice", "endpointslices", NS, &[], &[], NO_GEN),
    def("networking.k8s.io", &["v1"], "Ingress", "ingresses", NS, &["ing"], &["status"], GEN),
    def("rbac.authorization.k8s.io", &["v1"], "ClusterRole", "clusterroles", CLUSTER, &[], &[], NO_GEN),
    def("rbac.authorization.k8s.io", &["v1"], "ClusterRoleBinding", "clusterrolebindings", CLUSTER, &[], &[], NO_GEN),
    def("rbac.authorization.k8s.io", &["v1"], "Role", "roles", NS, &[], &[], NO_GEN),
    def("rbac.authorization.k8s.io", &["v1"], "RoleBinding", "rolebindings", NS, &[], &[], NO_GEN),
    def("apiextensions.k8s.io", &["v1"], "CustomResourceDefinition", "customresourcedefinitions", CLUSTER, &["crd", "crds"], &["status"], GEN),
    def("admissionregistration.k8s.io", &["v1"], "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", CLUSTER, &[], &[], GEN),
    def("admissionregistration.k8s.io", &["v1"], "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", CLUSTER, &[], &[], GEN),
    def("policy", &["v1"], "PodDisruptionBudget", "poddisruptionbudgets", NS, &["pdb"], &["status"], GEN),
    def("autoscaling", &["v2", "v1"], "HorizontalPodAutoscaler", "horizontalpodautoscalers", NS, &["hpa"], &["status"], NO_GEN),
];

const NET: &[&str] = &["v1", "v1beta1", "v1alpha3"];
const SEC: &[&str] = &["v1", "v1beta1"];

/// Istio's kinds, served from the start unless `Options::istio_kinds_preinstalled` is
/// false (then only once their CRDs are stored and established, like a real cluster
/// before `istioctl install`).
#[rustfmt::skip]
const ISTIO: &[Def] = &[
    def("networking.istio.io", NET, "Gateway", "gateways", NS, &["gw"], &["status"], GEN),
    def("networking.istio.io", NET, "VirtualService", "virtualservices", NS, &["vs"], &["status"], GEN),
    def("networking.istio.io", NET, "DestinationRule", "destinationrules", NS, &["dr"], &["status"], GEN),
    def("networking.istio.io", NET, "ServiceEntry", "serviceentries", NS, &["se"], &["status"], GEN),
    def("networking.istio.io", NET, "Sidecar", "sidecars", NS, &[], &["status"], GEN),
    def("networking.istio.io", &["v1alpha3"], "EnvoyFilter", "envoyfilters", NS, &[], &["status"], GEN),
    def("networking.istio.io", NET, "WorkloadEntry", "workloadentries", NS, &["we"], &["status"], GEN),
    def("networking.istio.io", NET, "WorkloadGroup", "workloadgroups", NS, &["wg"], &["status"], GEN),
    def("security.istio.io", SEC, "PeerAuthentication", "peerauthentications", NS, &["pa"], &["status"], GEN),
    def("security.istio.io", SEC, "AuthorizationPolicy", "authorizationpolicies", NS, &["ap"], &["status"], GEN),
    def("security.istio.io", SEC, "RequestAuthentication", "requestauthentications", NS, &["ra"], &["status"], GEN),
    def("telemetry.istio.io", &["v1", "v1alpha1"], "Telemetry", "telemetries", NS, &["telemetry"], &["status"], GEN),
];

fn from_def(d: &Def, builtin: bool) -> KindInfo {
    let subresources = d
        .subs
        .iter()
        .map(|s| {
            let verbs: &[&str] = match *s {
                "status" | "scale" => &["get", "patch", "update"],
                "log" => &["get"],
                "portforward" => &["create", "get"],
                "finalize" => &["update"],
                _ => &["get"],
            };
            let (kind, group_version) = match *s {
                "scale" => ("Scale", Some(("autoscaling".to_string(), "v1".to_string()))),
                "portforward" => ("PodPortForwardOptions", None),
                _ => (d.kind, None),
            };
            Subresource {
                name: s.to_string(),
                kind: kind.to_string(),
                group_version,
                verbs: verbs.iter().map(|v| v.to_string()).collect(),
            }
        })
        .collect();
    KindInfo {
        group: d.group.to_string(),
        versions: d.versions.iter().map(|v| v.to_string()).collect(),
        kind: d.kind.to_string(),
        plural: d.plural.to_string(),
        singular: d.kind.to_lowercase(),
        namespaced: d.namespaced,
        short_names: d.short.iter().map(|s| s.to_string()).collect(),
        subresources,
        generation: d.generation,
        builtin,
    }
}

/// Kubernetes' version priority: GA before beta before alpha, higher numbers first.
fn version_rank(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let Ok(major) = digits.parse::<u32>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    let num = |s: &str| s.parse::<u32>().unwrap_or(0);
    if tail.is_empty() {
        (3, major, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, major, num(n))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, major, num(n))
    } else {
        (0, 0, 0)
    }
}

/// The kind a CustomResourceDefinition serves, once it is established.
fn from_crd(crd: &Value) -> Option<KindInfo> {
    let established = crd["status"]["conditions"]
        .as_array()?
        .iter()
        .any(|c| c["type"] == "Established" && c["status"] == "True");
    if !established || crd["metadata"]["deletionTimestamp"].is_string() {
        return None;
    }
    let spec = &crd["spec"];
    let names = &spec["names"];
    let mut versions: Vec<(String, bool, bool)> = spec["versions"]
        .as_array()?
        .iter()
        .filter(|v| v["served"].as_bool().unwrap_or(false))
        .filter_map(|v| {
            Some((
                v["name"].as_str()?.to_string(),
                v["subresources"]["status"].is_object(),
                v["subresources"]["scale"].is_object(),
            ))
        })
        .collect();
    if versions.is_empty() {
        return None;
    }
    versions.sort_by(|a, b| {
        version_rank(&b.0)
            .cmp(&version_rank(&a.0))
            .then(a.0.cmp(&b.0))
    });
    let kind = names["kind"].as_str()?.to_string();
    let mut subresources = Vec::new();
    if versions.iter().any(|v| v.1) {
        subresources.push(Subresource {
            name: "status".into(),
            kind: kind.clone(),
            group_version: None,
            verbs: vec!["get".into(), "patch".into(), "update".into()],
        });
    }
    if versions.iter().any(|v| v.2) {
        subresources.push(Subresource {
            name: "scale".into(),
            kind: "Scale".into(),
            group_version: Some(("autoscaling".into(), "v1".into())),
            verbs: vec!["get".into(), "patch".into(), "update".into()],
        });
    }
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    Some(KindInfo {
        group: spec["group"].as_str()?.to_string(),
        versions: versions.into_iter().map(|v| v.0).collect(),
        singular: names["singular"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| kind.to_lowercase()),
        kind,
        plural: names["plural"].as_str()?.to_string(),
        namespaced: spec["scope"] != "Cluster",
        short_names: strings(&names["shortNames"]),
        subresources,
        generation: true,
        builtin: false,
    })
}

/// All kinds served right now.
#[derive(Debug, Clone)]
pub struct Kinds {
    all: Vec<Arc<KindInfo>>,
}

impl Kinds {
    /// Built-ins, the preinstalled Istio kinds if asked for, and every established CRD's
    /// kind (a CRD for a group/plural already served replaces that entry).
    pub fn new<'a>(istio_preinstalled: bool, crds: impl Iterator<Item = &'a Value>) -> Kinds {
        let mut all: Vec<KindInfo> = BUILTIN.iter().map(|d| from_def(d, true)).collect();
        if istio_preinstalled {
            all.extend(ISTIO.iter().map(|d| from_def(d, false)));
        }
        for info in crds.filter_map(from_crd) {
            match all
                .iter_mut()
                .find(|k| k.group == info.group && k.plural == info.plural)
            {
                Some(existing) if existing.builtin => {}
                Some(existing) => *existing = info,
                None => all.push(info),
            }
        }
        Kinds {
            all: all.into_iter().map(Arc::new).collect(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<KindInfo>> {
        self.all.iter()
    }

    /// The kind served at `/{prefix}/{group}/{version}/.../{plural}`.
    pub fn by_plural(&self, group: &str, version: &str, plural: &str) -> Option<Arc<KindInfo>> {
        self.all
            .iter()
            .find(|k| k.group == group && k.plural == plural && k.serves(version))
            .cloned()
    }

    /// The kind of an object's `apiVersion`/`kind`.
    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<Arc<KindInfo>> {
        self.all
            .iter()
            .find(|k| k.group == group && k.kind == kind && k.serves(version))
            .cloned()
    }

    /// A kind named loosely (Kind, plural, singular or short name, any case), for the
    /// test-facing helpers.
    pub fn lookup(&self, group: &str, name: &str) -> Option<Arc<KindInfo>> {
        let n = name.to_ascii_lowercase();
        self.all
            .iter()
            .find(|k| {
                k.group == group
                    && (k.kind.to_ascii_lowercase() == n
                        || k.plural == n
                        || k.singular == n
                        || k.short_names.contains(&n))
            })
            .cloned()
    }

    /// Served API groups (without core), each with its versions, most preferred first.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for k in self.all.iter().filter(|k| !k.group.is_empty()) {
            let entry = match out.iter_mut().position(|(g, _)| *g == k.group) {
                Some(i) => &mut out[i].1,
                None => {
                    out.push((k.group.clone(), Vec::new()));
                    &mut out.last_mut().expect("just pushed").1
                }
            };
            for v in &k.versions {
                if !entry.contains(v) {
                    entry.push(v.clone());
                }
            }
        }
        for (_, versions) in &mut out {
            versions.sort_by(|a, b| version_rank(b).cmp(&version_rank(a)).then(a.cmp(b)));
        }
        out
    }

    /// Every kind served at group/version.
    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<KindInfo>> {
        self.all
            .iter()
            .filter(|k| k.group == group && k.serves(version))
            .cloned()
            .collect()
    }
}

/// Splits an apiVersion into (group, version): `apps/v1` → (apps, v1), `v1` → ("", v1).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_priority_follows_kubernetes() {
        let mut v = vec!["v1alpha3", "v1", "v1beta1", "v2", "v2beta1"];
        v.sort_by_key(|v| std::cmp::Reverse(version_rank(v)));
        assert_eq!(v, ["v2", "v1", "v2beta1", "v1beta1", "v1alpha3"]);
    }

    #[test]
    fn crds_add_kinds_only_once_established() {
        let mut crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
                     "versions": [{"name": "v1alpha1", "served": true, "storage": false},
                                  {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}}]}
        });
        assert!(
            Kinds::new(false, [&crd].into_iter())
                .lookup("example.com", "Widget")
                .is_none()
        );
        crd["status"] = json!({"conditions": [{"type": "Established", "status": "True"}]});
        let kinds = Kinds::new(false, [&crd].into_iter());
        let w = kinds.lookup("example.com", "widgets").unwrap();
        assert_eq!(w.versions, ["v1", "v1alpha1"]);
        assert!(w.has_status());
        assert!(
            kinds
                .lookup("security.istio.io", "PeerAuthentication")
                .is_none()
        );
        assert!(
            Kinds::new(true, std::iter::empty())
                .lookup("security.istio.io", "pa")
                .is_some()
        );
    }
}
