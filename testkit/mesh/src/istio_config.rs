//! Istio's configuration resources, typed as far as the simulation reads them:
//! PeerAuthentication (`security.istio.io`), DestinationRule, VirtualService and Gateway
//! (`networking.istio.io`). Field names follow istio/api; unknown fields are ignored.

use crate::objects::{Labels, name, namespace, str_at, string_map};
use serde_json::Value;
use std::collections::BTreeMap;

/// `PeerAuthentication.spec.mtls.mode` (`UNSET` is `None`: inherit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MtlsMode {
    Strict,
    Permissive,
    Disable,
}

impl MtlsMode {
    fn parse(s: Option<&str>) -> Option<MtlsMode> {
        match s? {
            "STRICT" => Some(MtlsMode::Strict),
            "PERMISSIVE" => Some(MtlsMode::Permissive),
            "DISABLE" => Some(MtlsMode::Disable),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct PeerAuthentication {
    pub namespace: String,
    /// `spec.selector.matchLabels`; `None` covers the namespace.
    pub selector: Option<Labels>,
    pub mode: Option<MtlsMode>,
    pub port_modes: BTreeMap<u16, MtlsMode>,
}

impl PeerAuthentication {
    pub fn parse(v: &Value) -> PeerAuthentication {
        let selector = v
            .pointer("/spec/selector/matchLabels")
            .map(|m| string_map(Some(m)))
            .filter(|m| !m.is_empty());
        let port_modes = v
            .pointer("/spec/portLevelMtls")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(port, cfg)| {
                        Some((port.parse().ok()?, MtlsMode::parse(str_at(cfg, &["mode"]))?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        PeerAuthentication {
            namespace: namespace(v),
            selector,
            mode: MtlsMode::parse(str_at(v, &["spec", "mtls", "mode"])),
            port_modes,
        }
    }
}

/// `ClientTLSSettings.mode` of a DestinationRule traffic policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientTlsMode {
    Disable,
    Simple,
    Mutual,
    IstioMutual,
}

impl ClientTlsMode {
    fn parse(s: Option<&str>) -> Option<ClientTlsMode> {
        match s? {
            "DISABLE" => Some(ClientTlsMode::Disable),
            "SIMPLE" => Some(ClientTlsMode::Simple),
            "MUTUAL" => Some(ClientTlsMode::Mutual),
            "ISTIO_MUTUAL" => Some(ClientTlsMode::IstioMutual),
            _ => None,
        }
    }
}

/// A traffic policy's TLS: the policy-wide mode and port-level overrides.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrafficTls {
    pub mode: Option<ClientTlsMode>,
    pub ports: BTreeMap<u16, ClientTlsMode>,
}

impl TrafficTls {
    fn parse(policy: Option<&Value>) -> TrafficTls {
        let Some(p) = policy else {
            return TrafficTls::default();
        };
        let ports = p
            .get("portLevelSettings")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(|s| {
                        Some((
                            u16::try_from(s.pointer("/port/number")?.as_u64()?).ok()?,
                            ClientTlsMode::parse(s.pointer("/tls/mode").and_then(Value::as_str))?,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        TrafficTls {
            mode: ClientTlsMode::parse(p.pointer("/tls/mode").and_then(Value::as_str)),
            ports,
        }
    }

    /// `trafficPolicyTLSModeForPort` (pilot/pkg/xds/endpoints/mtls_checker.go).
    pub fn for_port(&self, port: u16) -> Option<ClientTlsMode> {
        self.ports.get(&port).copied().or(self.mode)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Subset {
    pub name: String,
    pub labels: Labels,
    pub tls: TrafficTls,
}

#[derive(Debug, Clone)]
pub(crate) struct DestinationRule {
    pub name: String,
    pub namespace: String,
    pub host: String,
    pub tls: TrafficTls,
    pub subsets: Vec<Subset>,
    /// The object's `metadata` and `spec` as applied (istiod's debug endpoints show them).
    pub metadata: Value,
    pub spec: Value,
}

impl DestinationRule {
    pub fn parse(v: &Value) -> DestinationRule {
        let subsets = v
            .pointer("/spec/subsets")
            .and_then(Value::as_array)
            .map(|ss| {
                ss.iter()
                    .filter_map(|s| {
                        Some(Subset {
                            name: str_at(s, &["name"])?.to_string(),
                            labels: string_map(s.get("labels")),
                            tls: TrafficTls::parse(s.get("trafficPolicy")),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        DestinationRule {
            name: name(v),
            namespace: namespace(v),
            host: str_at(v, &["spec", "host"]).unwrap_or("").to_string(),
            tls: TrafficTls::parse(v.pointer("/spec/trafficPolicy")),
            subsets,
            metadata: v.get("metadata").cloned().unwrap_or(Value::Null),
            spec: v.get("spec").cloned().unwrap_or(Value::Null),
        }
    }
}

/// One destination of an HTTP route.
#[derive(Debug, Clone)]
pub(crate) struct RouteDestination {
    pub host: String,
    pub subset: Option<String>,
    pub port: Option<u16>,
    pub weight: u32,
}

/// A `match` clause; only URI matching is modelled (`exact`, `prefix`, `regex`).
#[derive(Debug, Clone)]
pub(crate) enum UriMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
}

#[derive(Debug, Clone)]
pub(crate) struct HttpRoute {
    /// Empty: matches every request. Otherwise any of them.
    pub matches: Vec<Option<UriMatch>>,
    pub route: Vec<RouteDestination>,
}

#[derive(Debug, Clone)]
pub(crate) struct VirtualService {
    pub namespace: String,
    pub hosts: Vec<String>,
    /// As written; empty means `mesh`.
    pub gateways: Vec<String>,
    pub http: Vec<HttpRoute>,
}

impl VirtualService {
    pub fn parse(v: &Value) -> VirtualService {
        let strings = |p: &str| -> Vec<String> {
            v.pointer(p)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let http = v
            .pointer("/spec/http")
            .and_then(Value::as_array)
            .map(|rs| {
                rs.iter()
                    .map(|r| HttpRoute {
                        matches: r
                            .get("match")
                            .and_then(Value::as_array)
                            .map(|ms| {
                                ms.iter()
                                    .map(|m| {
                                        let uri = m.get("uri")?;
                                        if let Some(s) = str_at(uri, &["exact"]) {
                                            Some(UriMatch::Exact(s.into()))
                                        } else if let Some(s) = str_at(uri, &["prefix"]) {
                                            Some(UriMatch::Prefix(s.into()))
                                        } else {
                                            str_at(uri, &["regex"])
                                                .map(|s| UriMatch::Regex(s.into()))
                                        }
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                        route: r
                            .get("route")
                            .and_then(Value::as_array)
                            .map(|ds| {
                                let n = ds.len();
                                ds.iter()
                                    .filter_map(|d| {
                                        Some(RouteDestination {
                                            host: str_at(d, &["destination", "host"])?.to_string(),
                                            subset: str_at(d, &["destination", "subset"])
                                                .map(str::to_string),
                                            port: d
                                                .pointer("/destination/port/number")
                                                .and_then(Value::as_u64)
                                                .and_then(|p| u16::try_from(p).ok()),
                                            // A single destination gets all traffic.
                                            weight: d
                                                .get("weight")
                                                .and_then(Value::as_u64)
                                                .map(|w| u32::try_from(w).unwrap_or(u32::MAX))
                                                .unwrap_or(if n == 1 { 100 } else { 0 }),
                                        })
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        VirtualService {
            namespace: namespace(v),
            hosts: strings("/spec/hosts"),
            gateways: strings("/spec/gateways"),
            http,
        }
    }

    /// Whether the VirtualService is bound to the Gateway `ns/name`: `name` (same
    /// namespace as the VirtualService) or `ns/name`.
    pub fn bound_to(&self, gw_namespace: &str, gw_name: &str) -> bool {
        self.gateways.iter().any(|g| match g.split_once('/') {
            Some((ns, n)) => ns == gw_namespace && n == gw_name,
            None => g == gw_name && self.namespace == gw_namespace,
        })
    }

    pub fn bound_to_mesh(&self) -> bool {
        self.gateways.is_empty() || self.gateways.iter().any(|g| g == "mesh")
    }
}

/// `ServerTLSSettings` of a Gateway server.
#[derive(Debug, Clone)]
pub(crate) struct ServerTls {
    pub mode: String,
    pub credential_name: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Server {
    pub port: u16,
    pub protocol: String,
    pub hosts: Vec<String>,
    pub tls: Option<ServerTls>,
}

#[derive(Debug, Clone)]
pub(crate) struct Gateway {
    pub name: String,
    pub namespace: String,
    pub selector: Labels,
    pub servers: Vec<Server>,
}

impl Gateway {
    pub fn parse(v: &Value) -> Gateway {
        let servers = v
            .pointer("/spec/servers")
            .and_then(Value::as_array)
            .map(|ss| {
                ss.iter()
                    .filter_map(|s| {
                        Some(Server {
                            port: u16::try_from(s.pointer("/port/number")?.as_u64()?).ok()?,
                            protocol: str_at(s, &["port", "protocol"])
                                .unwrap_or("")
                                .to_ascii_uppercase(),
                            hosts: s
                                .get("hosts")
                                .and_then(Value::as_array)
                                .map(|h| {
                                    h.iter()
                                        .filter_map(|x| x.as_str().map(str::to_string))
                                        .collect()
                                })
                                .unwrap_or_default(),
                            tls: s.get("tls").map(|t| ServerTls {
                                mode: str_at(t, &["mode"]).unwrap_or("SIMPLE").to_string(),
                                credential_name: str_at(t, &["credentialName"]).map(str::to_string),
                            }),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Gateway {
            name: name(v),
            namespace: namespace(v),
            selector: string_map(v.pointer("/spec/selector")),
            servers,
        }
    }
}

/// Istio host matching: `*` matches everything, `*.example.com` any name ending in
/// `.example.com`, otherwise equality (case-insensitive).
pub(crate) fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    if pattern == "*" {
        return true;
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return host.ends_with(suffix);
    }
    pattern == host
}

/// A Gateway server host (`ns/host`, `./host`, `*/host` or `host`) as (namespace filter,
/// host pattern); `None` namespace means any.
pub(crate) fn server_host(entry: &str, gateway_ns: &str) -> (Option<String>, String) {
    match entry.split_once('/') {
        Some(("*", h)) => (None, h.to_string()),
        Some((".", h)) => (Some(gateway_ns.to_string()), h.to_string()),
        Some((ns, h)) => (Some(ns.to_string()), h.to_string()),
        None => (None, entry.to_string()),
    }
}

/// A short or qualified service host as its FQDN, relative to `namespace`.
pub(crate) fn fqdn(host: &str, namespace: &str) -> String {
    let host = host.trim_end_matches('.');
    if host.contains('*') || host.ends_with(".svc.cluster.local") {
        return host.to_string();
    }
    match host.split('.').count() {
        1 => format!("{host}.{namespace}.svc.cluster.local"),
        2 => format!("{host}.svc.cluster.local"),
        3 if host.ends_with(".svc") => format!("{host}.cluster.local"),
        _ => host.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hosts_and_bindings_resolve_as_istio_does() {
        assert!(host_matches("*", "a.b"));
        assert!(host_matches("*.example.com", "sentences.example.com"));
        assert!(!host_matches("sentences.example.com", "other.example.com"));
        assert_eq!(fqdn("name", "s"), "name.s.svc.cluster.local");
        assert_eq!(fqdn("name.s", "x"), "name.s.svc.cluster.local");
        let vs = VirtualService::parse(&json!({"metadata": {"name": "v", "namespace": "app"},
            "spec": {"hosts": ["h"], "gateways": ["istio-system/sentences", "local"], "http": []}}));
        assert!(vs.bound_to("istio-system", "sentences"));
        assert!(vs.bound_to("app", "local"));
        assert!(!vs.bound_to("istio-system", "local"));
        assert!(!vs.bound_to_mesh());
    }

    #[test]
    fn subset_tls_falls_back_to_the_policy_then_ports_override() {
        let dr = DestinationRule::parse(&json!({"metadata": {"name": "name", "namespace": "s"},
            "spec": {"host": "name", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
                "subsets": [{"name": "v1", "labels": {"version": "v1"}, "trafficPolicy": {"tls": {"mode": "DISABLE"}}},
                            {"name": "v2", "labels": {"version": "v2"}}]}}));
        assert_eq!(
            dr.subsets[0].tls.for_port(5000),
            Some(ClientTlsMode::Disable)
        );
        assert_eq!(dr.subsets[1].tls.for_port(5000), None);
        assert_eq!(dr.tls.for_port(5000), Some(ClientTlsMode::IstioMutual));
    }
}
