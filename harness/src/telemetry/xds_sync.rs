//! istiod's own account of what it sent each connected proxy and what the proxy
//! acknowledged, read from istiod's debug HTTP endpoints (Istio 1.30/1.31,
//! `pilot/pkg/xds/debug.go`):
//! - `/debug/syncz`: a JSON array, one entry per connection: `proxy` (the proxy's ID,
//!   `<pod>.<namespace>`), `proxy_type`, `istio_version`, the flat pairs
//!   `cluster_sent`/`cluster_acked`, `listener_…`, `route_…`, `endpoint_…`,
//!   `extensionconfig_…`, and `resources: {<type URL>: {sent, acked, sentTime,
//!   lastError}}` for every type the proxy watches;
//! - `/debug/sidecarz?proxyID=`: the SidecarScope istiod last computed for that proxy:
//!   `version` (the push it was computed for), `namespace`, and `destinationRules`
//!   (service host → consolidated rules, each with its `rule` metadata and `from`).
//!
//! A type's status follows `istioctl proxy-status` (`statusgen.go` `debugSyncStatus`):
//! ERROR when the last response was rejected, NOT SENT, SYNCED when the acked nonce is
//! the sent one, else STALE. A nonce is the push version followed by a UUID
//! (`discovery.go` `nonce`); a push version is `<RFC 3339 time>/<counter>`
//! (`NextVersion`), the same string the SidecarScope carries as its `version`.
//!
//! Longer than most files because it parses two of istiod's JSON shapes, read from Go
//! source, with tests of every field it relies on.

use serde_json::Value;
use std::collections::BTreeMap;

pub const SYNCZ_PATH: &str = "/debug/syncz";

pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// `/debug/sidecarz?proxyID=<id>`.
pub fn sidecarz_path(proxy_id: &str) -> String {
    let encoded: String = proxy_id
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("/debug/sidecarz?proxyID={encoded}")
}

/// The ID istiod gives a proxy: `<pod>.<namespace>` (the third part of the Envoy node
/// ID `sidecar~<ip>~<pod>.<namespace>~<domain>`, `pilot/pkg/model/context.go`
/// `ParseServiceNodeWithMetadata`; pilot-agent sets it to `POD_NAME.POD_NAMESPACE`).
pub fn proxy_id(pod: &str, namespace: &str) -> String {
    format!("{pod}.{namespace}")
}

/// Splits a proxy ID into pod and namespace. A pod name may contain dots, a namespace
/// may not (a DNS label), so the namespace is after the last dot.
pub fn split_proxy_id(id: &str) -> Option<(&str, &str)> {
    id.rsplit_once('.')
        .filter(|(pod, ns)| !pod.is_empty() && !ns.is_empty())
}

/// Whether istiod's `proxyID` lookup for `ours` could land on the connection of the
/// proxy `other`: it takes the first connection whose ID (`<proxy ID>-<n>`, `ads.go`
/// `connectionID`) contains the given string (`debug.go` `getProxyConnection`).
pub fn could_be_mistaken_for(ours: &str, other: &str) -> bool {
    if other == ours {
        return false;
    }
    if other.contains(ours) {
        return true;
    }
    // `ours` may run from the end of `other` into its `-<n>` suffix.
    (1..ours.len()).any(|k| {
        ours.is_char_boundary(k)
            && other.ends_with(&ours[..k])
            && ours[k..]
                .strip_prefix('-')
                .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
    })
}

/// The push version a nonce was made for: the nonce without its trailing UUID.
pub fn push_version(nonce: &str) -> Option<&str> {
    let split = nonce.len().checked_sub(36)?;
    let (version, uuid) = (nonce.get(..split)?, nonce.get(split..)?);
    let groups: Vec<&str> = uuid.split('-').collect();
    let uuid_shaped = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()));
    (uuid_shaped && !version.is_empty()).then_some(version)
}

/// `CDS`, `EDS`, … as istioctl abbreviates type URLs (`pkg/model/xds.go` `GetShortType`).
pub fn short_type(type_url: &str) -> &str {
    match type_url.strip_prefix("type.googleapis.com/") {
        Some("envoy.config.cluster.v3.Cluster") => "CDS",
        Some("envoy.config.listener.v3.Listener") => "LDS",
        Some("envoy.config.route.v3.RouteConfiguration") => "RDS",
        Some("envoy.config.endpoint.v3.ClusterLoadAssignment") => "EDS",
        Some("envoy.extensions.transport_sockets.tls.v3.Secret") => "SDS",
        Some("istio.networking.nds.v1.NameTable") => "NDS",
        Some("istio.mesh.v1alpha1.ProxyConfig") => "PCDS",
        Some("envoy.config.core.v3.TypedExtensionConfig") => "ECDS",
        Some("istio.workload.Address" | "istio.workload.Workload") => "WDS",
        Some("istio.security.Authorization") => "WADS",
        _ => type_url,
    }
}

/// What istiod tracks for one xDS type of one proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeSync {
    pub type_url: String,
    pub sent: String,
    pub acked: String,
    /// When istiod last sent this type (RFC 3339, istiod's clock), when known.
    pub sent_time: Option<String>,
    pub last_error: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeStatus {
    Synced,
    Stale,
    NotSent,
    Error,
}

impl TypeSync {
    pub fn status(&self) -> TypeStatus {
        if !self.last_error.is_empty() {
            TypeStatus::Error
        } else if self.sent.is_empty() {
            TypeStatus::NotSent
        } else if self.acked == self.sent {
            TypeStatus::Synced
        } else {
            TypeStatus::Stale
        }
    }

    pub fn short(&self) -> &str {
        short_type(&self.type_url)
    }

    /// `CDS SYNCED (nonce …)`, `EDS STALE (sent …, acked …)`, `LDS ERROR: …`.
    pub fn describe(&self) -> String {
        let name = self.short();
        match self.status() {
            TypeStatus::Synced => format!("{name} SYNCED (nonce {} sent and acked)", self.sent),
            TypeStatus::Stale => format!(
                "{name} STALE (sent {}, acked {})",
                self.sent,
                if self.acked.is_empty() {
                    "nothing yet"
                } else {
                    &self.acked
                }
            ),
            TypeStatus::NotSent => format!("{name} NOT SENT"),
            TypeStatus::Error => format!("{name} ERROR (rejected: {})", self.last_error),
        }
    }
}

/// What istiod reports of one connected proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySync {
    /// `<pod>.<namespace>`.
    pub id: String,
    pub proxy_type: String,
    pub istio_version: String,
    /// By type URL.
    pub types: Vec<TypeSync>,
}

impl ProxySync {
    /// Why the proxy is not SYNCED: every type istiod sent must have been acked and
    /// none rejected. Empty when it is synced.
    pub fn not_synced(&self) -> Vec<String> {
        self.types
            .iter()
            .filter(|t| matches!(t.status(), TypeStatus::Stale | TypeStatus::Error))
            .map(TypeSync::describe)
            .collect()
    }

    pub fn of_type(&self, type_url: &str) -> Option<&TypeSync> {
        self.types.iter().find(|t| t.type_url == type_url)
    }

    /// The push version of the clusters the proxy acked.
    pub fn cluster_version(&self) -> Result<&str, String> {
        let cds = self
            .of_type(CLUSTER_TYPE)
            .filter(|t| !t.acked.is_empty())
            .ok_or_else(|| format!("istiod has no acked CDS for {}", self.id))?;
        push_version(&cds.acked).ok_or_else(|| {
            format!(
                "the acked CDS nonce `{}` is not a push version followed by a UUID",
                cds.acked
            )
        })
    }

    /// The newest `sentTime` among its types (RFC 3339 strings of one clock and format
    /// compare in time order once parsed; see `latest_time`).
    pub fn last_sent(&self) -> Option<&str> {
        latest_time(self.types.iter().filter_map(|t| t.sent_time.as_deref()))
    }

    /// Every type, for the evidence.
    pub fn describe(&self) -> String {
        self.types
            .iter()
            .filter(|t| t.status() != TypeStatus::NotSent)
            .map(TypeSync::describe)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The latest of RFC 3339 timestamps (unparseable ones are skipped).
pub fn latest_time<'a>(times: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    times
        .filter_map(|t| {
            t.parse::<k8s_openapi::jiff::Timestamp>()
                .ok()
                .map(|parsed| (parsed, t))
        })
        .max_by_key(|(parsed, _)| *parsed)
        .map(|(_, t)| t)
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

/// The flat pairs of `SyncStatus` (the only ones before `resources` existed).
const FLAT: [(&str, &str); 5] = [
    ("cluster", CLUSTER_TYPE),
    (
        "listener",
        "type.googleapis.com/envoy.config.listener.v3.Listener",
    ),
    (
        "route",
        "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
    ),
    (
        "endpoint",
        "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    ),
    (
        "extensionconfig",
        "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
    ),
];

/// One `/debug/syncz` entry.
fn proxy_sync(entry: &Value) -> Result<ProxySync, String> {
    let id = text(entry, "proxy");
    if split_proxy_id(&id).is_none() {
        return Err(format!(
            "an entry without a `proxy` of the form <pod>.<namespace>: {}",
            crate::exit::one_line(&entry.to_string())
        ));
    }
    let mut types = Vec::new();
    match entry.get("resources") {
        Some(Value::Object(resources)) => {
            for (type_url, status) in resources {
                if !status.is_object() {
                    return Err(format!("`resources.{type_url}` is not an object"));
                }
                let sent_time = status
                    .get("sentTime")
                    .and_then(Value::as_str)
                    // Go's zero time: never sent.
                    .filter(|t| !t.starts_with("0001-01-01"))
                    .map(str::to_string);
                types.push(TypeSync {
                    type_url: type_url.clone(),
                    sent: text(status, "sent"),
                    acked: text(status, "acked"),
                    sent_time,
                    last_error: text(status, "lastError"),
                });
            }
        }
        None | Some(Value::Null) => {
            for (prefix, type_url) in FLAT {
                types.push(TypeSync {
                    type_url: type_url.to_string(),
                    sent: text(entry, &format!("{prefix}_sent")),
                    acked: text(entry, &format!("{prefix}_acked")),
                    sent_time: None,
                    last_error: String::new(),
                });
            }
        }
        Some(other) => return Err(format!("`resources` is {other}, not an object")),
    }
    types.sort_by(|a, b| a.type_url.cmp(&b.type_url));
    Ok(ProxySync {
        id,
        proxy_type: text(entry, "proxy_type"),
        istio_version: text(entry, "istio_version"),
        types,
    })
}

/// Every proxy one istiod reports; an error names what is not in the known shape.
pub fn parse_syncz(body: &Value) -> Result<Vec<ProxySync>, String> {
    let entries = body.as_array().ok_or_else(|| {
        format!(
            "not a JSON array of proxies: {}",
            crate::exit::one_line(&body.to_string())
                .chars()
                .take(120)
                .collect::<String>()
        )
    })?;
    entries.iter().map(proxy_sync).collect()
}

/// One consolidated DestinationRule of a scope: the rule istiod merged (its metadata)
/// and the rules it was merged from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeRule {
    pub namespace: String,
    pub name: String,
    pub resource_version: String,
    /// `(namespace, name)` of each DestinationRule merged into it.
    pub from: Vec<(String, String)>,
}

/// The SidecarScope istiod computed for a proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// The push version it was computed for.
    pub version: String,
    /// The namespace it applies to (the proxy's).
    pub namespace: String,
    /// Service host → the DestinationRules for it.
    pub rules: BTreeMap<String, Vec<ScopeRule>>,
}

impl Scope {
    pub fn rules_for(&self, host: &str) -> &[ScopeRule] {
        self.rules.get(host).map(Vec::as_slice).unwrap_or(&[])
    }
}

fn scope_rule(host: &str, v: &Value) -> Result<ScopeRule, String> {
    let rule = v
        .get("rule")
        .filter(|r| r.is_object())
        .ok_or_else(|| format!("`destinationRules.{host}` has an entry without `rule`"))?;
    let from = v
        .get("from")
        .and_then(Value::as_array)
        .map(|from| {
            from.iter()
                .map(|n| (text(n, "Namespace"), text(n, "Name")))
                .collect()
        })
        .unwrap_or_default();
    Ok(ScopeRule {
        namespace: text(rule, "namespace"),
        name: text(rule, "name"),
        resource_version: text(rule, "resourceVersion"),
        from,
    })
}

/// `/debug/sidecarz?proxyID=…`.
pub fn parse_sidecarz(body: &Value) -> Result<Scope, String> {
    let version = body
        .get("version")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            format!(
                "no `version` (not a SidecarScope): {}",
                crate::exit::one_line(&body.to_string())
                    .chars()
                    .take(120)
                    .collect::<String>()
            )
        })?;
    let mut rules = BTreeMap::new();
    match body.get("destinationRules") {
        None | Some(Value::Null) => {}
        Some(Value::Object(by_host)) => {
            for (host, list) in by_host {
                let list = list
                    .as_array()
                    .ok_or_else(|| format!("`destinationRules.{host}` is not an array"))?;
                let parsed = list
                    .iter()
                    .map(|r| scope_rule(host, r))
                    .collect::<Result<Vec<_>, _>>()?;
                rules.insert(host.clone(), parsed);
            }
        }
        Some(other) => return Err(format!("`destinationRules` is {other}, not an object")),
    }
    Ok(Scope {
        version: version.to_string(),
        namespace: text(body, "namespace"),
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const V: &str = "2026-08-31T10:00:01Z/17";
    const UUID: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";

    fn nonce(version: &str) -> String {
        format!("{version}{UUID}")
    }

    /// An entry as istiod 1.31 writes it (debug.go `SyncStatus`, Go's encoding/json).
    fn entry(id: &str, cds_acked: &str) -> Value {
        let sent = nonce(V);
        let t = "2026-08-31T10:00:01.123456789Z";
        json!({
            "cluster_id": "Kubernetes", "proxy": id, "proxy_type": "sidecar", "istio_version": "1.31.2",
            "cluster_sent": sent, "cluster_acked": cds_acked,
            "listener_sent": sent, "listener_acked": sent,
            "route_sent": sent, "route_acked": sent,
            "endpoint_sent": sent, "endpoint_acked": sent,
            "resources": {
                "type.googleapis.com/envoy.config.cluster.v3.Cluster": {"sent": sent, "acked": cds_acked, "sentTime": t},
                "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment": {"sent": sent, "acked": sent, "sentTime": "2026-08-31T10:00:01.2Z"},
                "type.googleapis.com/envoy.config.listener.v3.Listener": {"sent": sent, "acked": sent, "sentTime": t},
                "type.googleapis.com/envoy.config.route.v3.RouteConfiguration": {"sent": sent, "acked": sent, "sentTime": t},
                "type.googleapis.com/istio.networking.nds.v1.NameTable": {"sentTime": "0001-01-01T00:00:00Z"}
            }
        })
    }

    #[test]
    fn a_proxy_whose_every_sent_type_was_acked_is_synced() {
        let id = "sentences-6d8f9c-x2x7q.sentences";
        let proxies = parse_syncz(&json!([entry(id, &nonce(V))])).unwrap();
        assert_eq!(proxies.len(), 1);
        let p = &proxies[0];
        assert_eq!(p.id, id);
        assert_eq!(
            split_proxy_id(&p.id),
            Some(("sentences-6d8f9c-x2x7q", "sentences"))
        );
        assert!(p.not_synced().is_empty(), "{:?}", p.not_synced());
        assert_eq!(p.cluster_version().unwrap(), V);
        // NDS was never sent: NOT SENT is not a reason to wait.
        assert_eq!(
            p.of_type("type.googleapis.com/istio.networking.nds.v1.NameTable")
                .unwrap()
                .status(),
            TypeStatus::NotSent
        );
        assert_eq!(p.last_sent(), Some("2026-08-31T10:00:01.2Z"));
        assert!(p.describe().starts_with("CDS SYNCED"), "{}", p.describe());
    }

    #[test]
    fn stale_and_rejected_types_say_why_the_proxy_is_not_synced() {
        let older = nonce("2026-08-31T09:59:58Z/16");
        let p = &parse_syncz(&json!([entry("a.b", &older)])).unwrap()[0];
        let why = p.not_synced();
        assert_eq!(why.len(), 1);
        assert!(
            why[0].starts_with("CDS STALE") && why[0].contains("/16"),
            "{why:?}"
        );
        assert_eq!(p.cluster_version().unwrap(), "2026-08-31T09:59:58Z/16");

        let mut rejected = entry("a.b", &nonce(V));
        rejected["resources"]["type.googleapis.com/envoy.config.listener.v3.Listener"]["lastError"] =
            json!("Error adding/updating listener(s) virtualInbound: duplicate filter chain match");
        let p = &parse_syncz(&json!([rejected])).unwrap()[0];
        assert!(
            p.not_synced()[0].starts_with("LDS ERROR"),
            "{:?}",
            p.not_synced()
        );
    }

    #[test]
    fn the_flat_pairs_are_read_when_there_is_no_resources_map() {
        let mut e = entry("a.b", &nonce(V));
        e.as_object_mut().unwrap().remove("resources");
        e["endpoint_acked"] = json!("");
        let p = &parse_syncz(&json!([e])).unwrap()[0];
        assert_eq!(p.cluster_version().unwrap(), V);
        assert!(
            p.not_synced()[0].starts_with("EDS STALE (sent"),
            "{:?}",
            p.not_synced()
        );
    }

    #[test]
    fn unknown_shapes_are_errors_never_a_status() {
        assert!(parse_syncz(&json!({"proxies": []})).is_err());
        assert!(parse_syncz(&json!([{"proxy": "no-namespace"}])).is_err());
        assert!(parse_syncz(&json!([{"proxy": "a.b", "resources": []}])).is_err());
        // A nonce of another shape: no push version can be read from it.
        let mut e = entry("a.b", "42");
        e["resources"]["type.googleapis.com/envoy.config.cluster.v3.Cluster"]["sent"] = json!("42");
        let p = &parse_syncz(&json!([e])).unwrap()[0];
        assert!(p.not_synced().is_empty());
        assert!(
            p.cluster_version()
                .unwrap_err()
                .contains("not a push version")
        );
    }

    #[test]
    fn a_nonce_is_the_push_version_and_a_uuid() {
        assert_eq!(push_version(&nonce(V)), Some(V));
        // The counter's digits run into the UUID: only the length separates them.
        assert_eq!(
            push_version("2026-08-31T10:00:01Z/1234567890-aaaa-4bbb-8ccc-dddddddddddd"),
            Some("2026-08-31T10:00:01Z/12")
        );
        assert_eq!(push_version(UUID), None);
        assert_eq!(push_version("short"), None);
        assert_eq!(
            push_version(&format!("{V}not-a-uuid-at-all-but-36-characters")),
            None
        );
    }

    #[test]
    fn a_proxy_id_is_pod_dot_namespace_and_pods_may_have_dots() {
        assert_eq!(
            proxy_id("sentences-abc", "sentences"),
            "sentences-abc.sentences"
        );
        assert_eq!(
            split_proxy_id("web.v2-abc.shop"),
            Some(("web.v2-abc", "shop"))
        );
        assert_eq!(split_proxy_id("nodots"), None);
        assert_eq!(split_proxy_id(".ns"), None);
    }

    #[test]
    fn istiods_substring_lookup_is_checked_for_other_proxies() {
        let ours = "sentences-abc.sentences";
        // Another pod whose name ends like ours, another namespace that starts like ours.
        assert!(could_be_mistaken_for(ours, "xsentences-abc.sentences"));
        assert!(could_be_mistaken_for(ours, "sentences-abc.sentences-v2"));
        // Ours runs into another connection's `-<n>` suffix: pod a in namespace b-1 vs
        // pod a in namespace b (connection `a.b-1`).
        assert!(could_be_mistaken_for("a.b-1", "a.b"));
        assert!(!could_be_mistaken_for("a.b-x", "a.b"));
        assert!(!could_be_mistaken_for(ours, ours));
        assert!(!could_be_mistaken_for(ours, "age-abc.sentences"));
    }

    #[test]
    fn the_sidecar_scope_carries_its_version_and_rules_with_resource_versions() {
        // sidecar.go `MarshalJSON`, push_context.go `ConsolidatedDestRule.MarshalJSON`,
        // the rule a config.Config (Meta's json tags, Spec through jsonpb).
        let body = json!({
            "version": V, "name": "default-sidecar", "namespace": "sentences",
            "outboundTrafficPolicy": {"mode": 0}, "services": [], "sidecar": null,
            "destinationRules": {
                "name.sentences.svc.cluster.local": [{
                    "exportTo": {"*": {}},
                    "rule": {"type": {"Group": "networking.istio.io", "Version": "v1", "Kind": "DestinationRule"},
                             "name": "name", "namespace": "sentences", "domain": "cluster.local",
                             "resourceVersion": "4711", "creationTimestamp": "2026-08-31T10:00:00Z", "generation": 1,
                             "Spec": {"host": "name", "subsets": [{"name": "name-v1", "labels": {"version": "v1"},
                                      "trafficPolicy": {"tls": {"mode": "DISABLE"}}}]},
                             "Status": null, "Extra": null},
                    "from": [{"Namespace": "sentences", "Name": "name"}]
                }]
            }
        });
        let scope = parse_sidecarz(&body).unwrap();
        assert_eq!(scope.version, V);
        assert_eq!(scope.namespace, "sentences");
        let rules = scope.rules_for("name.sentences.svc.cluster.local");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].resource_version, "4711");
        assert_eq!(rules[0].from, vec![("sentences".into(), "name".into())]);
        assert!(
            scope
                .rules_for("age.sentences.svc.cluster.local")
                .is_empty()
        );

        let none =
            parse_sidecarz(&json!({"version": V, "namespace": "x", "destinationRules": null}))
                .unwrap();
        assert!(none.rules.is_empty());
        // 404 bodies and other shapes are refused.
        assert!(parse_sidecarz(&json!("Proxy not connected to this Pilot instance")).is_err());
        assert!(parse_sidecarz(&json!({"version": V, "destinationRules": []})).is_err());
    }

    #[test]
    fn sidecarz_paths_are_encoded() {
        assert_eq!(
            sidecarz_path("sentences-abc.sentences"),
            "/debug/sidecarz?proxyID=sentences-abc.sentences"
        );
        assert_eq!(sidecarz_path("a b&c"), "/debug/sidecarz?proxyID=a%20b%26c");
    }
}
