//! A sidecar's listeners and routes (pilot/pkg/networking/core/listener.go,
//! filterchain_options.go, listener_builder.go):
//! - `virtualInbound`: one filter chain set per inbound port (`destination_port`), as
//!   the PeerAuthentication mode says for an HTTP port: STRICT one chain for
//!   `transport_protocol: tls` (mTLS required); PERMISSIVE that chain, matched on
//!   Istio's ALPNs, and a `raw_buffer` (plaintext) chain; DISABLE only the plaintext
//!   chain. A connection no chain matches is closed (`NR filter_chain_not_found`).
//!   Each chain's HTTP connection manager sends to `inbound|<port>||`, the app.
//! - `0.0.0.0_<port>`: an outbound listener per service port, whose route
//!   configuration `<port>` has a virtual host per Service with that port (the
//!   Service's names as domains) routed by the mesh VirtualServices, else to
//!   `outbound|<port>||<host>`.
//!
//! Here the inbound listener is bound to the pod IP's ports and the outbound listeners
//! to the pod's outbound address (no iptables; see `addresses.rs`).

use super::access_log::{self, Direction, PEER_ID_HEADER};
use super::routes;
use super::tls;
use crate::addresses::PodAddresses;
use crate::envoy::files::ProxyFiles;
use crate::envoy::xds_server::source;
use crate::faults::ConfigFaults;
use crate::istio_config::{MtlsMode, fqdn, host_matches};
use crate::objects::{Pod, selector_matches};
use crate::policy::workload_mode;
use crate::world::World;
use serde_json::{Value, json};

/// `listener.go allIstioMtlsALPNs`: what a PERMISSIVE chain matches mTLS on.
const ISTIO_MTLS_ALPNS: [&str; 5] = [
    "istio",
    "istio-peer-exchange",
    "istio-http/1.0",
    "istio-http/1.1",
    "istio-h2",
];

/// What one sidecar's config needs to know about itself.
pub(crate) struct SidecarInputs<'a> {
    pub world: &'a World,
    pub pod: &'a Pod,
    pub addresses: PodAddresses,
    pub node_id: &'a str,
    pub workload: &'a str,
    pub root_namespace: &'a str,
    pub trust_domain: &'a str,
    pub files: &'a ProxyFiles,
    pub faults: &'a ConfigFaults,
    /// Whether the proxy writes Istio's access log (`access_logging.rs`).
    pub access_log: bool,
}

pub(crate) fn router_filter() -> Value {
    json!({"name": "envoy.filters.http.router",
           "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
}

/// An HTTP connection manager filter.
pub(crate) fn http_connection_manager(stat_prefix: &str, route: Value, logs: Vec<Value>) -> Value {
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        "access_log": logs,
        "http_filters": [router_filter()],
        "use_remote_address": false,
        "normalize_path": true,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
    });
    if let Some(map) = hcm.as_object_mut()
        && let Some(obj) = route.as_object()
    {
        for (k, v) in obj {
            map.insert(k.clone(), v.clone());
        }
    }
    json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm})
}

/// The pod ports its Services send to, with the PeerAuthentication mode of each.
fn inbound_ports(inputs: &SidecarInputs<'_>) -> Vec<(u16, MtlsMode)> {
    let (world, pod) = (inputs.world, inputs.pod);
    let mut ports: Vec<(u16, MtlsMode)> = vec![];
    for s in world.services.iter().filter(|s| {
        s.namespace == pod.namespace
            && !s.selector.is_empty()
            && selector_matches(&s.selector, &pod.labels)
    }) {
        for p in &s.ports {
            if let Some(t) = s.target_port(p, pod)
                && !ports.iter().any(|(x, _)| *x == t)
            {
                ports.push((t, workload_mode(world, pod, t, inputs.root_namespace)));
            }
        }
    }
    ports.sort_by_key(|(p, _)| *p);
    ports
}

/// The inbound listener and the clusters of its ports; `None` when no Service sends
/// to the pod.
pub(crate) fn inbound(inputs: &SidecarInputs<'_>) -> Option<(Value, Vec<Value>)> {
    let ports = inbound_ports(inputs);
    if ports.is_empty() {
        return None;
    }
    let faults = inputs.faults;
    let mut chains = vec![];
    let mut clusters = vec![];
    for (port, mode) in &ports {
        let port = *port;
        let cluster = format!("inbound|{port}||");
        clusters.push(super::clusters::inbound(
            port,
            &inputs.addresses.local.to_string(),
        ));
        let route = json!({"route_config": {
            "name": cluster,
            "virtual_hosts": [{"name": format!("inbound|http|{port}"), "domains": ["*"],
                "routes": [{"name": "default", "match": {"prefix": "/"},
                            "route": {"cluster": cluster, "timeout": "0s", "max_grpc_timeout": "0s"}}]}],
            "response_headers_to_add": [{"header": {"key": PEER_ID_HEADER, "value": inputs.node_id},
                                         "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
            "validate_clusters": false,
        }});
        let hcm = || {
            http_connection_manager(
                &format!("inbound_0.0.0.0_{port}"),
                route.clone(),
                access_log::http_logs(
                    inputs.access_log,
                    &inputs.files.telemetry_log(),
                    Direction::Inbound,
                ),
            )
        };
        let mtls_chain = |alpns: bool| {
            let mut m = json!({"destination_port": port, "transport_protocol": "tls"});
            if alpns {
                m["application_protocols"] = json!(ISTIO_MTLS_ALPNS);
            }
            json!({
                "name": format!("0.0.0.0_{port}"),
                "filter_chain_match": m,
                "transport_socket": tls::downstream_istio_mutual(inputs.trust_domain),
                "filters": [hcm()],
            })
        };
        let plaintext_chain = json!({
            "name": format!("0.0.0.0_{port}"),
            "filter_chain_match": {"destination_port": port, "transport_protocol": "raw_buffer"},
            "filters": [hcm()],
        });
        let accepts_share = faults.accepts_plaintext_share(inputs.workload);
        match mode {
            MtlsMode::Strict if faults.strict_not_enforced() || accepts_share => {
                chains.push(mtls_chain(true));
                chains.push(plaintext_chain);
            }
            MtlsMode::Strict => chains.push(mtls_chain(false)),
            MtlsMode::Permissive if faults.permissive_rejects_plaintext() && !accepts_share => {
                chains.push(mtls_chain(false));
            }
            MtlsMode::Permissive => {
                chains.push(mtls_chain(true));
                chains.push(plaintext_chain);
            }
            MtlsMode::Disable => chains.push(plaintext_chain),
        }
    }
    let ip = inputs.addresses.ip.to_string();
    let socket = |port: u16| json!({"socket_address": {"address": ip, "port_value": port}});
    let mut listener = json!({
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": "virtualInbound",
        "address": socket(ports[0].0),
        "traffic_direction": "INBOUND",
        "listener_filters": [{"name": "envoy.filters.listener.tls_inspector",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}],
        "listener_filters_timeout": "0s",
        "continue_on_listener_filters_timeout": true,
        "filter_chains": chains,
        "access_log": access_log::listener_logs(inputs.access_log),
    });
    if ports.len() > 1 {
        listener["additional_addresses"] = json!(
            ports[1..]
                .iter()
                .map(|(p, _)| json!({"address": socket(*p)}))
                .collect::<Vec<_>>()
        );
    }
    Some((listener, clusters))
}

/// The service ports the sidecar has outbound listeners for: every port of a Service
/// with a selector, from 1024 up (lower ports would need privileges to bind here).
fn outbound_ports(world: &World) -> Vec<u16> {
    let mut ports: Vec<u16> = world
        .services
        .iter()
        .filter(|s| !s.selector.is_empty())
        .flat_map(|s| s.ports.iter().map(|p| p.port))
        .filter(|p| *p >= 1024)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The names a pod in `client_ns` may call a Service by (istiod adds the short forms
/// only for Services of the proxy's own namespace).
fn domains(
    host_fqdn: &str,
    name: &str,
    namespace: &str,
    client_ns: &str,
    port: u16,
) -> Vec<String> {
    let mut names = vec![
        host_fqdn.to_string(),
        format!("{name}.{namespace}.svc"),
        format!("{name}.{namespace}"),
    ];
    if namespace == client_ns {
        names.push(name.to_string());
    }
    let mut out = vec![];
    for n in names {
        out.push(format!("{n}:{port}"));
        out.push(n);
    }
    out
}

/// The outbound listeners and their route configurations.
pub(crate) fn outbound(
    inputs: &SidecarInputs<'_>,
    split: &dyn Fn(&str) -> Option<(String, f64)>,
) -> (Vec<Value>, Vec<(String, Value)>) {
    let world = inputs.world;
    let mut listeners = vec![];
    let mut route_configs = vec![];
    for port in outbound_ports(world) {
        let name = port.to_string();
        let mut hosts = vec![];
        for s in world.services.iter().filter(|s| s.port(port).is_some()) {
            let host = s.host();
            let vs_routes: Vec<Value> = world
                .virtual_services
                .iter()
                .filter(|vs| vs.bound_to_mesh())
                .filter(|vs| {
                    vs.hosts
                        .iter()
                        .any(|h| host_matches(&fqdn(h, &vs.namespace), &host))
                })
                .flat_map(|vs| {
                    vs.http
                        .iter()
                        .flat_map(|r| {
                            routes::http_routes(world, r, &vs.namespace, Some(port), split)
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            let routes = if vs_routes.is_empty() {
                let cluster = format!("outbound|{port}||{host}");
                vec![json!({"name": "default", "match": {"prefix": "/"},
                            "route": routes::route_action(&[(cluster, 100)], split)})]
            } else {
                vs_routes
            };
            hosts.push(json!({
                "name": format!("{host}:{port}"),
                "domains": domains(&host, &s.name, &s.namespace, &inputs.pod.namespace, port),
                "routes": routes,
                "include_request_attempt_count": true,
            }));
        }
        route_configs.push((
            name.clone(),
            json!({
                "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                "name": name,
                "virtual_hosts": hosts,
                "request_headers_to_add": [{"header": {"key": PEER_ID_HEADER, "value": inputs.node_id},
                                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
                "validate_clusters": false,
            }),
        ));
        let rds = json!({"rds": {"route_config_name": name, "config_source": source()}});
        listeners.push(json!({
            "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
            "name": format!("0.0.0.0_{port}"),
            "address": {"socket_address": {"address": inputs.addresses.outbound.to_string(), "port_value": port}},
            "traffic_direction": "OUTBOUND",
            "filter_chains": [{"filters": [http_connection_manager(
                &format!("outbound_0.0.0.0_{port}"),
                rds,
                access_log::http_logs(
                    inputs.access_log,
                    &inputs.files.telemetry_log(),
                    Direction::Outbound,
                ),
            )]}],
        }));
    }
    (listeners, route_configs)
}
