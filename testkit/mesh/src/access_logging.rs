//! Whether a proxy writes Istio's access log (the HTTP log and the listener's `NR` log):
//! `meshConfig.accessLogFile` (Istio's default leaves it unset: no log; the harness's
//! install sets `/dev/stdout`), overridden by `telemetry.istio.io` Telemetry resources,
//! the most specific first: a workload selector in the pod's namespace, then the
//! namespace's, then the root namespace's (pilot/pkg/model/telemetry.go). An
//! `accessLogging` entry naming the `envoy` provider turns the log on, `disabled: true`
//! turns it off, and an entry with no providers means the mesh's default providers —
//! none in a default install, so the file setting decides.

use crate::objects::{Labels, Pod, namespace, selector_matches, string_map};
use serde_json::Value;

#[derive(Debug, Clone)]
pub(crate) struct Telemetry {
    pub namespace: String,
    /// `spec.selector.matchLabels`; `None` covers the namespace.
    pub selector: Option<Labels>,
    /// `spec.accessLogging`, when given.
    pub access_logging: Option<Vec<Logging>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Logging {
    pub providers: Vec<String>,
    pub disabled: bool,
}

impl Telemetry {
    pub fn parse(v: &Value) -> Telemetry {
        let selector = v
            .pointer("/spec/selector/matchLabels")
            .map(|m| string_map(Some(m)))
            .filter(|m| !m.is_empty());
        let access_logging = v
            .pointer("/spec/accessLogging")
            .and_then(Value::as_array)
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| Logging {
                        providers: e
                            .get("providers")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(|p| p.get("name").and_then(Value::as_str))
                            .map(str::to_string)
                            .collect(),
                        disabled: e.get("disabled").and_then(Value::as_bool).unwrap_or(false),
                    })
                    .collect()
            });
        Telemetry {
            namespace: namespace(v),
            selector,
            access_logging,
        }
    }
}

/// What one Telemetry's `accessLogging` says: on, off, or nothing (defer to the file).
fn says(entries: &[Logging], mesh_file: bool) -> bool {
    if entries.iter().any(|e| e.disabled) {
        return false;
    }
    entries.iter().any(|e| {
        if e.providers.is_empty() {
            mesh_file
        } else {
            e.providers.iter().any(|p| p == "envoy")
        }
    })
}

/// Whether `pod`'s proxy writes Istio's access log.
pub(crate) fn logs(telemetries: &[Telemetry], pod: &Pod, root_ns: &str, mesh_file: bool) -> bool {
    let with_logging = |t: &&Telemetry| t.access_logging.is_some();
    let workload = telemetries.iter().filter(with_logging).find(|t| {
        t.namespace == pod.namespace
            && t.selector
                .as_ref()
                .is_some_and(|s| selector_matches(s, &pod.labels))
    });
    let namespace = || {
        telemetries
            .iter()
            .filter(with_logging)
            .find(|t| t.namespace == pod.namespace && t.selector.is_none())
    };
    let root = || {
        telemetries
            .iter()
            .filter(with_logging)
            .find(|t| t.namespace == root_ns && t.selector.is_none())
    };
    match workload.or_else(namespace).or_else(root) {
        Some(t) => says(t.access_logging.as_deref().unwrap_or_default(), mesh_file),
        None => mesh_file,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(namespace: &str) -> Pod {
        Pod::parse(&json!({
            "metadata": { "name": "age-1", "namespace": namespace, "uid": "u", "labels": { "app": "age" } },
            "spec": { "containers": [] }
        }))
    }

    fn telemetry(namespace: &str, spec: Value) -> Telemetry {
        Telemetry::parse(
            &json!({ "metadata": { "name": "t", "namespace": namespace }, "spec": spec }),
        )
    }

    #[test]
    fn the_file_setting_decides_unless_a_telemetry_names_envoy_or_disables_it() {
        let p = pod("sentences");
        assert!(!logs(&[], &p, "istio-system", false));
        assert!(logs(&[], &p, "istio-system", true));
        let envoy = telemetry(
            "sentences",
            json!({ "accessLogging": [ { "providers": [ { "name": "envoy" } ] } ] }),
        );
        assert!(logs(&[envoy], &p, "istio-system", false));
        // No providers: the mesh's default providers (none), so the file decides.
        let empty = telemetry("sentences", json!({ "accessLogging": [ {} ] }));
        assert!(!logs(
            std::slice::from_ref(&empty),
            &p,
            "istio-system",
            false
        ));
        let off = telemetry(
            "istio-system",
            json!({ "accessLogging": [ { "disabled": true } ] }),
        );
        assert!(!logs(std::slice::from_ref(&off), &p, "istio-system", true));
        // The namespace's Telemetry wins over the root namespace's.
        let on = telemetry(
            "sentences",
            json!({ "accessLogging": [ { "providers": [ { "name": "envoy" } ] } ] }),
        );
        assert!(logs(&[off, on], &p, "istio-system", true));
        // Another namespace's does nothing here.
        let elsewhere = telemetry(
            "other",
            json!({ "accessLogging": [ { "providers": [ { "name": "envoy" } ] } ] }),
        );
        assert!(!logs(&[elsewhere], &p, "istio-system", false));
    }
}
