//! `/version` and the discovery documents: `/api`, `/apis`, `/apis/{group}` and the
//! APIResourceLists of `/api/v1` and `/apis/{group}/{version}`.

use crate::kinds::Kinds;
use serde_json::{Value, json};

pub fn version((major, minor): (u32, u32)) -> Value {
    json!({
        "major": major.to_string(),
        "minor": minor.to_string(),
        "emulationMajor": major.to_string(),
        "emulationMinor": minor.to_string(),
        "minCompatibilityMajor": major.to_string(),
        "minCompatibilityMinor": minor.saturating_sub(1).to_string(),
        "gitVersion": format!("v{major}.{minor}.0"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-08-27T00:00:00Z",
        "goVersion": "go1.24.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(name: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": versions, "preferredVersion": versions[0]})
}

pub fn group_list(kinds: &Kinds) -> Value {
    let groups: Vec<Value> = kinds
        .groups()
        .iter()
        .map(|(g, vs)| group_entry(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(kinds: &Kinds, name: &str) -> Option<Value> {
    let (_, versions) = kinds.groups().into_iter().find(|(g, _)| g == name)?;
    let mut g = group_entry(name, &versions);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

/// The APIResourceList of one group/version, or None when it is not served.
pub fn resource_list(kinds: &Kinds, group: &str, version: &str) -> Option<Value> {
    let served = kinds.in_group_version(group, version);
    if served.is_empty() {
        return None;
    }
    let resources: Vec<Value> = served.iter().flat_map(|k| k.api_resources()).collect();
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// The Content-Type of aggregated discovery (apidiscovery.k8s.io/v2).
pub const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Aggregated discovery: `/api` (core) or `/apis` (every other group) in one document,
/// as answered to `Accept: ...;as=APIGroupDiscoveryList`.
pub fn aggregated(kinds: &Kinds, core: bool) -> Value {
    let groups: Vec<(String, Vec<String>)> = if core {
        vec![(String::new(), vec!["v1".to_string()])]
    } else {
        kinds.groups()
    };
    let items: Vec<Value> = groups
        .iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = kinds
                        .in_group_version(group, v)
                        .iter()
                        .map(|k| {
                            let gvk = |kind: &str| json!({"group": group, "version": v, "kind": kind});
                            let subresources: Vec<Value> = k
                                .subresources
                                .iter()
                                .map(|s| {
                                    let kind = match &s.group_version {
                                        Some((g, sv)) => json!({"group": g, "version": sv, "kind": s.kind}),
                                        None => gvk(&s.kind),
                                    };
                                    json!({"subresource": s.name, "responseKind": kind, "verbs": s.verbs})
                                })
                                .collect();
                            json!({
                                "resource": k.plural,
                                "responseKind": gvk(&k.kind),
                                "scope": if k.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": k.singular,
                                "verbs": k.api_resources()[0]["verbs"],
                                "shortNames": k.short_names,
                                "subresources": subresources,
                            })
                        })
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}
