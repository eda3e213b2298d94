//! The cluster's mesh-wide policy, read at the fresh start: refuse only what changes an
//! outcome of the exercise, note what does not.
//!
//! - A mesh-wide PeerAuthentication (in the root namespace, without a selector) changes
//!   nothing: every mesh step with sidecars applies its own namespace
//!   PeerAuthentication, which wins over the mesh-wide one, and the ingress suite's hops
//!   are sidecar to sidecar (auto mTLS). Noted.
//! - A root-namespace DestinationRule whose host covers the app's services and that
//!   sets `trafficPolicy.tls` replaces auto mTLS for every client without a rule of its
//!   own (istiod looks up the client's namespace, then the service's, then the root
//!   namespace: `pilot/pkg/model/sidecar.go` `DestinationRule`), so O5 and the telemetry
//!   steps would judge that rule, not Istio's defaults. Refused, naming it.
//! - `enableAutoMtls: false` in the mesh config: clients send plaintext to sidecars
//!   unless a DestinationRule says otherwise, and O5 fails by design. Refused.
//! - A root-namespace `Sidecar` without a workload selector whose egress hosts leave out
//!   the app's namespace: the app's calls find no route. Refused.
//!
//! The root namespace is the mesh config's `rootNamespace` (default `istio-system`);
//! the mesh config is ConfigMap `istio` (`istio-<revision>` for a revisioned control
//! plane), key `mesh`.

use crate::telemetry::destination_rule::RuleSpec;
use serde_json::Value;

/// What the mesh config says that matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshConfig {
    pub root_namespace: String,
    pub auto_mtls: bool,
    /// Which ConfigMap it came from, for messages.
    pub source: String,
}

impl MeshConfig {
    /// From the `mesh` key of a ConfigMap named `source` (None: Istio's defaults).
    pub fn parse(mesh: Option<&str>, source: &str) -> Result<MeshConfig, String> {
        let value: Value = match mesh {
            Some(text) if !text.trim().is_empty() => serde_saphyr::from_str(text)
                .map_err(|e| format!("the mesh config in {source} is not YAML: {e}"))?,
            _ => Value::Null,
        };
        Ok(MeshConfig {
            root_namespace: value
                .get("rootNamespace")
                .and_then(Value::as_str)
                .unwrap_or(crate::cluster::istio::ISTIO_NAMESPACE)
                .to_string(),
            auto_mtls: value
                .get("enableAutoMtls")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            source: source.to_string(),
        })
    }
}

/// The verdict on the cluster's mesh-wide policy.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Judged {
    /// Each a reason the run cannot judge the exercise here, naming the object.
    pub refusals: Vec<String>,
    /// What the run found and runs with.
    pub notes: Vec<String>,
}

fn name_of(object: &Value) -> String {
    let text = |key: &str| {
        object
            .pointer(&format!("/metadata/{key}"))
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    format!("{}/{}", text("namespace"), text("name"))
}

fn namespace_of(object: &Value) -> &str {
    object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn without_selector(object: &Value) -> bool {
    let spec = object.get("spec");
    let selector = spec.and_then(|s| s.get("selector").or_else(|| s.get("workloadSelector")));
    selector
        .and_then(|s| s.get("matchLabels").or_else(|| s.get("labels")))
        .and_then(Value::as_object)
        .is_none_or(|m| m.is_empty())
}

/// Whether a Sidecar egress host (`namespace/dnsName`) lets the app's own services
/// through. In the root namespace's default Sidecar `.` is the workload's own namespace
/// (Istio's docs: `./*` there allows "other workloads in the same namespace"); `~` is
/// none.
fn egress_lets_through(host: &str, app_namespace: &str) -> bool {
    let Some((namespace, _)) = host.split_once('/') else {
        return false;
    };
    matches!(namespace, "*" | ".") || namespace == app_namespace
}

/// Judges the mesh-wide objects (`peer_authentications`, `destination_rules`,
/// `sidecars`, each the JSON of every such object in the cluster) and the mesh config.
pub fn judge(
    mesh: &MeshConfig,
    app_namespace: &str,
    services: &[&str],
    peer_authentications: &[Value],
    destination_rules: &[Value],
    sidecars: &[Value],
) -> Judged {
    let root = mesh.root_namespace.as_str();
    let mut judged = Judged::default();
    if !mesh.auto_mtls {
        judged.refusals.push(format!(
            "the mesh config ({}) sets enableAutoMtls: false, so clients send plaintext unless a DestinationRule says otherwise and the exercise's mTLS outcomes cannot hold; run on a mesh with auto mTLS (Istio's default)",
            mesh.source
        ));
    }
    for pa in peer_authentications
        .iter()
        .filter(|pa| namespace_of(pa) == root && without_selector(pa))
    {
        let mode = pa
            .pointer("/spec/mtls/mode")
            .and_then(Value::as_str)
            .unwrap_or("UNSET");
        judged.notes.push(format!(
            "mesh-wide PeerAuthentication {} ({mode}): the steps' own PeerAuthentications in {app_namespace} override it, so it changes no outcome",
            name_of(pa)
        ));
    }
    let fqdns: Vec<String> = services
        .iter()
        .map(|s| format!("{s}.{app_namespace}.svc.cluster.local"))
        .collect();
    for dr in destination_rules
        .iter()
        .filter(|d| namespace_of(d) == root && root != app_namespace)
    {
        let Some(rule) = RuleSpec::parse(dr) else {
            continue;
        };
        let sets_tls =
            rule.tls.is_some() || rule.port_level || rule.subsets.iter().any(|s| s.tls.is_some());
        let covered: Vec<&String> = fqdns.iter().filter(|f| rule.may_apply(f)).collect();
        if sets_tls && !covered.is_empty() {
            judged.refusals.push(format!(
                "DestinationRule {} in the root namespace sets trafficPolicy.tls{} for host `{}`, which covers {}: it replaces auto mTLS for the app and decides the exercise's outcomes; delete it, or narrow its host so it leaves {app_namespace} alone",
                name_of(dr),
                rule.tls.as_deref().map(|m| format!(" (mode {m})")).unwrap_or_default(),
                rule.host,
                covered.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    for sidecar in sidecars
        .iter()
        .filter(|s| namespace_of(s) == root && without_selector(s))
    {
        let hosts: Vec<&str> = sidecar
            .pointer("/spec/egress")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|e| {
                e.get("hosts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .filter_map(Value::as_str)
            .collect();
        if !hosts.is_empty() && !hosts.iter().any(|h| egress_lets_through(h, app_namespace)) {
            judged.refusals.push(format!(
                "Sidecar {} in the root namespace limits every workload's egress to {} and leaves out {app_namespace}: the app's calls would find no route; add `{app_namespace}/*` (or `./*` in a Sidecar of {app_namespace}) or delete it",
                name_of(sidecar),
                hosts.join(", ")
            ));
        }
    }
    judged
}

/// The exercise app's services (`deploy/mtls/`).
pub const APP_SERVICES: [&str; 3] = ["sentences", "age", "name"];

/// Every object of an Istio kind in the cluster; none when the kind is not served
/// (Istio not installed yet).
async fn every(client: &kube::Client, group: &str, kind: &str) -> Result<Vec<Value>, String> {
    crate::cluster::istio_objects::all(client, group, kind)
        .await
        .map(Option::unwrap_or_default)
}

/// The mesh configs of the control planes (ConfigMap `istio`, `istio-<revision>`, key
/// `mesh`); Istio's defaults when there is none.
async fn mesh_configs(client: &kube::Client) -> Result<Vec<MeshConfig>, String> {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, ListParams};
    let namespace = crate::cluster::istio::ISTIO_NAMESPACE;
    let maps = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| {
            format!(
                "cannot list the ConfigMaps of {namespace} to read the mesh config: {}",
                crate::words::kube_error(&e)
            )
        })?;
    let mut configs = Vec::new();
    for map in &maps.items {
        let name = map.metadata.name.clone().unwrap_or_default();
        let mesh = map.data.as_ref().and_then(|d| d.get("mesh"));
        if (name == "istio" || name.starts_with("istio-")) && mesh.is_some() {
            configs.push(MeshConfig::parse(
                mesh.map(String::as_str),
                &format!("ConfigMap {namespace}/{name}"),
            )?);
        }
    }
    if configs.is_empty() {
        configs.push(MeshConfig::parse(
            None,
            "Istio's defaults (no mesh config found)",
        )?);
    }
    Ok(configs)
}

/// Reads the cluster and judges its mesh-wide policy for the app in `app_namespace`.
pub async fn check(client: &kube::Client, app_namespace: &str) -> Result<Judged, String> {
    let configs = mesh_configs(client).await?;
    let peer_authentications = every(client, "security.istio.io", "PeerAuthentication").await?;
    let destination_rules = every(client, "networking.istio.io", "DestinationRule").await?;
    let sidecars = every(client, "networking.istio.io", "Sidecar").await?;
    let mut all = Judged::default();
    for config in &configs {
        let judged = judge(
            config,
            app_namespace,
            &APP_SERVICES,
            &peer_authentications,
            &destination_rules,
            &sidecars,
        );
        // Each mesh config judges the same objects: a line once, however many say it.
        for (kept, new) in [
            (&mut all.refusals, judged.refusals),
            (&mut all.notes, judged.notes),
        ] {
            for line in new {
                if !kept.contains(&line) {
                    kept.push(line);
                }
            }
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SERVICES: [&str; 3] = ["sentences", "age", "name"];

    fn defaults() -> MeshConfig {
        MeshConfig::parse(None, "istio-system/istio").unwrap()
    }

    fn dr(namespace: &str, host: &str, mode: Option<&str>) -> Value {
        let mut spec = json!({ "host": host });
        if let Some(m) = mode {
            spec["trafficPolicy"] = json!({ "tls": { "mode": m } });
        }
        json!({ "metadata": { "namespace": namespace, "name": "mesh-default" }, "spec": spec })
    }

    #[test]
    fn a_mesh_wide_strict_is_noted_and_runs() {
        let pa = json!({ "metadata": { "namespace": "istio-system", "name": "default" }, "spec": { "mtls": { "mode": "STRICT" } } });
        let j = judge(&defaults(), "sentences", &SERVICES, &[pa], &[], &[]);
        assert!(j.refusals.is_empty(), "{j:?}");
        assert!(
            j.notes[0].contains("istio-system/default (STRICT)"),
            "{j:?}"
        );
    }

    #[test]
    fn a_root_namespace_rule_setting_tls_over_the_app_is_refused_naming_it() {
        let j = judge(
            &defaults(),
            "sentences",
            &SERVICES,
            &[],
            &[dr("istio-system", "*.local", Some("DISABLE"))],
            &[],
        );
        assert_eq!(j.refusals.len(), 1, "{j:?}");
        assert!(
            j.refusals[0].contains("DestinationRule istio-system/mesh-default")
                && j.refusals[0].contains("(mode DISABLE)")
                && j.refusals[0].contains("age.sentences.svc.cluster.local"),
            "{j:?}"
        );
    }

    #[test]
    fn rules_that_leave_the_app_alone_are_not_refused() {
        let rules = [
            dr("istio-system", "*.local", None),
            dr(
                "istio-system",
                "db.other.svc.cluster.local",
                Some("DISABLE"),
            ),
            dr("team-a", "*.local", Some("DISABLE")),
        ];
        let j = judge(&defaults(), "sentences", &SERVICES, &[], &rules, &[]);
        assert!(j.refusals.is_empty(), "{j:?}");
    }

    #[test]
    fn auto_mtls_off_and_a_custom_root_namespace_are_read_from_the_mesh_config() {
        let mesh = MeshConfig::parse(
            Some("rootNamespace: istio-config\nenableAutoMtls: false\n"),
            "istio-system/istio",
        )
        .unwrap();
        assert_eq!(mesh.root_namespace, "istio-config");
        let j = judge(
            &mesh,
            "sentences",
            &SERVICES,
            &[],
            &[
                dr("istio-config", "*", Some("ISTIO_MUTUAL")),
                dr("istio-system", "*", Some("DISABLE")),
            ],
            &[],
        );
        assert_eq!(j.refusals.len(), 2, "{j:?}");
        assert!(j.refusals[0].contains("enableAutoMtls: false"));
        assert!(j.refusals[1].contains("istio-config/mesh-default"));
    }

    #[test]
    fn a_root_sidecar_hiding_the_app_namespace_is_refused() {
        let sidecar = |hosts: Value| json!({ "metadata": { "namespace": "istio-system", "name": "default" }, "spec": { "egress": [ { "hosts": hosts } ] } });
        let j = judge(
            &defaults(),
            "sentences",
            &SERVICES,
            &[],
            &[],
            &[sidecar(json!(["istio-system/*"]))],
        );
        assert_eq!(j.refusals.len(), 1, "{j:?}");
        assert!(
            j.refusals[0].contains("Sidecar istio-system/default"),
            "{j:?}"
        );
        for open in [
            json!(["*/*"]),
            json!(["./*", "istio-system/*"]),
            json!(["sentences/*"]),
        ] {
            let j = judge(
                &defaults(),
                "sentences",
                &SERVICES,
                &[],
                &[],
                &[sidecar(open)],
            );
            assert!(j.refusals.is_empty(), "{j:?}");
        }
    }
}
