//! An ingress gateway's listeners, routes and credentials, as istiod builds them for a
//! `router` proxy (pilot/pkg/networking/core/gateway.go): a Gateway server's port maps
//! to the pod port the gateway Service sends it to (`80 → 8080`, `443 → 8443`); an
//! HTTP port is one listener `0.0.0.0_<pod port>` with route configuration
//! `http.<pod port>`; a TLS port has a filter chain per server, matched on the SNI
//! (`server_names`: the server's hosts), terminating TLS with the server's
//! `credentialName` and routed by `https.<port>.<name>.<gateway>.<namespace>`. A
//! credential is looked up in the namespace of the gateway *pods*: keys
//! `cert`/`key`/`cacert` or `tls.crt`/`tls.key`/`ca.crt`, or a `<name>-cacert` Secret for
//! the CA. A server whose credential is missing gets no chain (Envoy would keep the
//! listener warming), so a port with none is not listened on.

use super::access_log::{self, Direction, PEER_ID_HEADER};
use super::routes;
use super::sidecar::http_connection_manager;
use super::tls::{self, GatewayTlsBend};
use crate::addresses::PodAddresses;
use crate::envoy::files::ProxyFiles;
use crate::envoy::xds_server::source;
use crate::faults::ConfigFaults;
use crate::objects::Pod;
use crate::routing::{self, BoundServer};
use crate::world::World;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub(crate) struct GatewayInputs<'a> {
    /// The config istiod pushes.
    pub world: &'a World,
    /// The Secrets as SDS has them.
    pub credentials: &'a World,
    pub pod: &'a Pod,
    pub addresses: PodAddresses,
    pub node_id: &'a str,
    pub files: &'a ProxyFiles,
    pub faults: &'a ConfigFaults,
    /// This pod's place among the gateway's replicas, in name order.
    pub replica: usize,
    /// Whether the proxy writes Istio's access log (`access_logging.rs`).
    pub access_log: bool,
}

/// A TLS server's key material.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Credential {
    cert: String,
    key: String,
    /// MUTUAL: the CA client certificates must chain to.
    ca: Option<String>,
}

fn credential(inputs: &GatewayInputs<'_>, b: &BoundServer<'_>) -> Option<(String, Credential)> {
    let tls = b.server.tls.as_ref()?;
    let name = tls.credential_name.as_deref()?;
    let sds = inputs.credentials;
    let ns = &inputs.pod.namespace;
    let secret = sds
        .secrets
        .iter()
        .find(|s| &s.namespace == ns && s.name == name)?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    let cert = text(secret.get(&["cert", "tls.crt"])?);
    let key = text(secret.get(&["key", "tls.key"])?);
    let mutual = matches!(tls.mode.as_str(), "MUTUAL" | "OPTIONAL_MUTUAL");
    let ca = secret.get(&["cacert", "ca.crt"]).map(text).or_else(|| {
        let ca_name = format!("{name}-cacert");
        sds.secrets
            .iter()
            .find(|s| &s.namespace == ns && s.name == ca_name)
            .and_then(|s| s.get(&["cacert", "ca.crt"]))
            .map(text)
    });
    if mutual && ca.is_none() {
        return None;
    }
    Some((
        name.to_string(),
        Credential {
            cert,
            key,
            ca: if mutual { ca } else { None },
        },
    ))
}

/// The virtual hosts of the VirtualServices bound to `servers`, one per host.
fn virtual_hosts(
    inputs: &GatewayInputs<'_>,
    servers: &[&BoundServer<'_>],
    port: u16,
) -> Vec<Value> {
    let world = inputs.world;
    let answer = inputs.faults.gateway_answer();
    let mut by_host: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut order: Vec<String> = vec![];
    let no_split = |_: &str| None;
    for vs in &world.virtual_services {
        for host in &vs.hosts {
            let admitted = servers.iter().any(|b| {
                vs.bound_to(&b.gateway.namespace, &b.gateway.name)
                    && routing::server_admits(b.gateway, b.server, host, &vs.namespace)
            });
            if !admitted {
                continue;
            }
            let routes: Vec<Value> = match &answer {
                Some((status, body)) => vec![routes::direct_response(*status, body)],
                None => vs
                    .http
                    .iter()
                    .flat_map(|r| routes::http_routes(world, r, &vs.namespace, None, &no_split))
                    .collect(),
            };
            if !by_host.contains_key(host) {
                order.push(host.clone());
            }
            by_host.entry(host.clone()).or_default().extend(routes);
        }
    }
    order
        .into_iter()
        .map(|host| {
            let domains = if host == "*" {
                json!(["*"])
            } else {
                json!([host, format!("{host}:*")])
            };
            json!({
                "name": format!("{host}:{port}"),
                "domains": domains,
                "routes": by_host.remove(&host).unwrap_or_default(),
                "include_request_attempt_count": true,
            })
        })
        .collect()
}

fn route_config(inputs: &GatewayInputs<'_>, name: &str, hosts: Vec<Value>) -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        "name": name,
        "virtual_hosts": hosts,
        "request_headers_to_add": [{"header": {"key": PEER_ID_HEADER, "value": inputs.node_id},
                                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
        "validate_clusters": false,
    })
}

fn hcm(inputs: &GatewayInputs<'_>, pod_port: u16, route_name: &str) -> Value {
    let rds = json!({"rds": {"route_config_name": route_name,
                              "config_source": source()}});
    http_connection_manager(
        &format!("outbound_0.0.0.0_{pod_port}"),
        rds,
        access_log::http_logs(
            inputs.access_log,
            &inputs.files.telemetry_log(),
            Direction::Outbound,
        ),
    )
}

/// A network filter that closes connections without a verified client certificate
/// (the `TlsCloseWithoutAlert` fault).
fn authenticated_only() -> Value {
    json!({"name": "envoy.filters.network.rbac", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC",
        "stat_prefix": "tcp.",
        "rules": {"action": "ALLOW", "policies": {"client-certificate": {
            "permissions": [{"any": true}],
            // `authenticated: {}` alone matches any TLS connection; a peer certificate
            // has a subject or a SAN.
            "principals": [{"authenticated": {"principal_name": {"safe_regex": {"regex": ".+"}}}}]}}}}})
}

/// What the gateway pod serves: listeners, route configurations and secrets.
pub(crate) struct GatewayConfig {
    pub listeners: Vec<Value>,
    pub route_configs: Vec<(String, Value)>,
    pub secrets: Vec<(String, Value)>,
}

pub(crate) fn gateway(inputs: &GatewayInputs<'_>) -> GatewayConfig {
    let servers = routing::gateway_servers(inputs.world, inputs.pod);
    let mut by_port: BTreeMap<u16, Vec<&BoundServer<'_>>> = BTreeMap::new();
    for b in &servers {
        by_port.entry(b.target_port).or_default().push(b);
    }
    let ip = inputs.addresses.ip.to_string();
    let mut out = GatewayConfig {
        listeners: vec![],
        route_configs: vec![],
        secrets: vec![],
    };
    for (pod_port, bound) in by_port {
        let http: Vec<&BoundServer<'_>> = bound
            .iter()
            .copied()
            .filter(|b| matches!(b.server.protocol.as_str(), "HTTP" | "HTTP2" | "GRPC"))
            .collect();
        let tls_servers: Vec<&BoundServer<'_>> = bound
            .iter()
            .copied()
            .filter(|b| b.server.protocol == "HTTPS")
            .collect();
        let address = json!({"socket_address": {"address": ip, "port_value": pod_port}});
        if !http.is_empty() {
            let name = format!("http.{pod_port}");
            let hosts = virtual_hosts(inputs, &http, http[0].server.port);
            out.route_configs
                .push((name.clone(), route_config(inputs, &name, hosts)));
            out.listeners.push(json!({
                "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
                "name": format!("0.0.0.0_{pod_port}"),
                "address": address,
                "traffic_direction": "OUTBOUND",
                "filter_chains": [{"filters": [hcm(inputs, pod_port, &name)]}],
                "access_log": access_log::listener_logs(inputs.access_log),
            }));
            continue;
        }
        let mut chains = vec![];
        for b in tls_servers {
            let Some((name, cred)) = credential(inputs, b) else {
                continue;
            };
            let mutual = cred.ca.is_some();
            out.secrets.push((
                tls::credential_secret(&name),
                tls::certificate_secret(&tls::credential_secret(&name), &cred.cert, &cred.key),
            ));
            if let Some(ca) = &cred.ca {
                out.secrets.push((
                    tls::ca_secret(&name),
                    tls::validation_secret(&tls::ca_secret(&name), ca),
                ));
            }
            let route_name = format!(
                "https.{}.https.{}.{}",
                b.server.port, b.gateway.name, b.gateway.namespace
            );
            let hosts = virtual_hosts(inputs, &[b], b.server.port);
            out.route_configs
                .push((route_name.clone(), route_config(inputs, &route_name, hosts)));
            let faults = inputs.faults;
            let close_without_alert = mutual && faults.tls_close_without_alert();
            let bend = GatewayTlsBend {
                client_certificate_optional: close_without_alert
                    || faults.mutual_not_required(inputs.replica),
                accept_untrusted: faults.gateway_trusts_any_ca(),
            };
            let server_names: Vec<String> = b
                .server
                .hosts
                .iter()
                .map(|h| h.rsplit('/').next().unwrap_or(h).to_string())
                .filter(|h| h != "*")
                .collect();
            let mut chain_match = json!({});
            if !server_names.is_empty() {
                chain_match["server_names"] = json!(server_names);
            }
            let mut filters = vec![];
            if close_without_alert {
                filters.push(authenticated_only());
            }
            filters.push(hcm(inputs, pod_port, &route_name));
            chains.push(json!({
                "filter_chain_match": chain_match,
                "transport_socket": tls::downstream_gateway(&name, mutual, bend),
                "filters": filters,
            }));
        }
        if chains.is_empty() {
            continue;
        }
        out.listeners.push(json!({
            "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
            "name": format!("0.0.0.0_{pod_port}"),
            "address": address,
            "traffic_direction": "OUTBOUND",
            "listener_filters": [{"name": "envoy.filters.listener.tls_inspector",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}],
            "filter_chains": chains,
            "access_log": access_log::listener_logs(inputs.access_log),
        }));
    }
    out.secrets.sort_by(|a, b| a.0.cmp(&b.0));
    out.secrets.dedup_by(|a, b| a.0 == b.0);
    out
}
