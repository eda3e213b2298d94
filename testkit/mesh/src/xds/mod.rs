//! The stand-in istiod's config for one proxy: what istiod would push it (listeners,
//! routes, clusters, endpoints, secrets), built from the cluster's objects, and the
//! bootstrap pilot-agent would start its Envoy with. Real Envoy applies it; nothing here
//! decides what happens on the wire.

pub(crate) mod access_log;
pub(crate) mod clusters;
pub(crate) mod gateway;
pub(crate) mod routes;
pub(crate) mod sidecar;
pub(crate) mod tls;

use crate::addresses::PodAddresses;
use crate::ca::MeshCa;
use crate::envoy::files::ProxyFiles;
use crate::envoy::xds_server::{self, source};
use crate::faults::ConfigFaults;
use crate::objects::{Pod, ProxyKind};
use crate::world::World;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Everything one proxy is sent.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProxyConfig {
    pub listeners: Vec<Value>,
    pub clusters: Vec<Value>,
    /// Route configuration name → RouteConfiguration.
    pub route_configs: Vec<(String, Value)>,
    /// Cluster name → ClusterLoadAssignment.
    pub load_assignments: Vec<(String, Value)>,
    /// Secret name → Secret.
    pub secrets: Vec<(String, Value)>,
    /// The clusters whose endpoints the proxy asks the stand-in istiod for.
    pub eds_clusters: Vec<String>,
}

pub(crate) struct BuildInputs<'a> {
    pub world: &'a World,
    pub credentials: &'a World,
    pub pod: &'a Pod,
    pub kind: ProxyKind,
    pub addresses: PodAddresses,
    pub files: &'a ProxyFiles,
    pub faults: &'a ConfigFaults,
    pub ca: &'a MeshCa,
    pub root_namespace: &'a str,
    pub trust_domain: &'a str,
    /// A gateway pod's place among its replicas (name order); 0 for sidecars.
    pub replica: usize,
}

/// The Envoy node ID pilot-agent sets: `<type>~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local`.
pub(crate) fn node_id(kind: ProxyKind, ip: &str, pod: &str, namespace: &str) -> String {
    let role = match kind {
        ProxyKind::Sidecar => "sidecar",
        ProxyKind::Gateway => "router",
    };
    format!("{role}~{ip}~{pod}.{namespace}~{namespace}.svc.cluster.local")
}

/// The pod named by a node ID: (namespace, pod).
pub(crate) fn pod_of_node_id(id: &str) -> Option<(&str, &str)> {
    let proxy = id.split('~').nth(2)?;
    let (pod, namespace) = proxy.rsplit_once('.')?;
    Some((namespace, pod))
}

pub(crate) fn build(i: &BuildInputs<'_>) -> Result<ProxyConfig, String> {
    let mut out = ProxyConfig::default();
    let cert = i.ca.workload(&i.pod.namespace, &i.pod.service_account)?;
    out.secrets.push((
        tls::WORKLOAD_SECRET.into(),
        tls::certificate_secret(tls::WORKLOAD_SECRET, &cert.chain, &cert.key),
    ));
    out.secrets.push((
        tls::ROOT_SECRET.into(),
        tls::validation_secret(tls::ROOT_SECRET, i.ca.root_pem()),
    ));
    let node_id = node_id(
        i.kind,
        &i.addresses.ip.to_string(),
        &i.pod.name,
        &i.pod.namespace,
    );
    let workload = i.pod.workload_name();
    let telemetries = if i.faults.telemetry_ignored() {
        &[][..]
    } else {
        &i.world.telemetries[..]
    };
    let access_log = crate::access_logging::logs(
        telemetries,
        i.pod,
        i.root_namespace,
        i.world.access_log_file,
    );
    let outbound = clusters::outbound(i.world, &i.pod.namespace, i.root_namespace, i.faults);
    // PlaintextShare: clusters whose endpoints are pods of a workload this one sends a
    // plaintext share to get a twin without TLS.
    let mut twins: BTreeMap<String, f64> = BTreeMap::new();
    for c in &outbound {
        let share = c
            .endpoints
            .iter()
            .find_map(|e| i.faults.plaintext_share(&workload, &e.workload));
        if let Some(share) = share
            && !c.endpoints.is_empty()
        {
            twins.insert(c.name.clone(), share);
            out.clusters.push(clusters::plaintext_twin_json(c));
        }
    }
    let split = |cluster: &str| {
        twins
            .get(cluster)
            .map(|share| (clusters::plaintext_twin(cluster), *share))
    };
    for c in &outbound {
        if !(c.subset.is_some() && i.faults.subset_clusters_warming()) {
            out.eds_clusters.push(c.name.clone());
        }
        out.clusters.push(clusters::cluster_json(c, i.faults));
        out.load_assignments
            .push((c.name.clone(), clusters::load_assignment(c)));
    }
    match i.kind {
        ProxyKind::Sidecar => {
            let inputs = sidecar::SidecarInputs {
                world: i.world,
                pod: i.pod,
                addresses: i.addresses,
                node_id: &node_id,
                workload: &workload,
                root_namespace: i.root_namespace,
                trust_domain: i.trust_domain,
                files: i.files,
                faults: i.faults,
                access_log,
            };
            if let Some((listener, inbound_clusters)) = sidecar::inbound(&inputs) {
                out.listeners.push(listener);
                out.clusters.extend(inbound_clusters);
            }
            let (listeners, route_configs) = sidecar::outbound(&inputs, &split);
            out.listeners.extend(listeners);
            out.route_configs.extend(route_configs);
        }
        ProxyKind::Gateway => {
            let g = gateway::gateway(&gateway::GatewayInputs {
                world: i.world,
                credentials: i.credentials,
                pod: i.pod,
                addresses: i.addresses,
                node_id: &node_id,
                files: i.files,
                faults: i.faults,
                replica: i.replica,
                access_log,
            });
            out.listeners.extend(g.listeners);
            out.route_configs.extend(g.route_configs);
            out.secrets.extend(g.secrets);
        }
    }
    Ok(out)
}

/// Node metadata as pilot-agent sends it (the parts the harness and Istio read).
fn node(kind: ProxyKind, pod: &Pod, ip: &str) -> Value {
    let (canonical, revision) = pod.canonical();
    json!({
        "id": node_id(kind, ip, &pod.name, &pod.namespace),
        "cluster": format!("{}.{}", pod.workload_name(), pod.namespace),
        "metadata": {
            "ISTIO_VERSION": pod.proxy_version(),
            "NAMESPACE": pod.namespace,
            "NAME": pod.name,
            "WORKLOAD_NAME": pod.workload_name(),
            "LABELS": pod.labels,
            "ANNOTATIONS": pod.annotations,
            "CLUSTER_ID": "Kubernetes",
            "MESH_ID": "cluster.local",
            "INSTANCE_IPS": ip,
            "SERVICE_ACCOUNT": pod.service_account,
            "INTERCEPTION_MODE": "REDIRECT",
            "CANONICAL_SERVICE": canonical,
            "CANONICAL_REVISION": revision,
            "PROXY_CONFIG": {"binaryPath": "/usr/local/bin/envoy", "statusPort": 15020,
                             "discoveryAddress": "istiod.istio-system.svc:15012"},
        },
        "locality": {},
    })
}

/// The bootstrap: the node, the admin on the pod's localhost, listeners and clusters
/// from the stand-in istiod (`xds-rest`), upstream connections from the pod IP, and an
/// ADS stream (`xds-grpc`) that only a fault's clusters use and nothing answers.
pub(crate) fn bootstrap(
    kind: ProxyKind,
    pod: &Pod,
    addresses: PodAddresses,
    xds: std::net::SocketAddr,
) -> Value {
    let ip = addresses.ip.to_string();
    let local = addresses.local.to_string();
    json!({
        "node": node(kind, pod, &ip),
        "admin": {"address": {"socket_address": {"address": local, "port_value": 15000}}},
        "dynamic_resources": {
            "lds_config": source(),
            "cds_config": source(),
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3", "set_node_on_first_message_only": true,
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]},
        },
        "static_resources": {"clusters": [xds_server::cluster(xds), {
            "name": "xds-grpc",
            "type": "STATIC",
            "connect_timeout": "1s",
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}},
            "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": local, "port_value": 15010}}}}]}]}
        }]},
        "cluster_manager": {"upstream_bind_config": {"source_address": {"address": ip, "port_value": 0}}},
        "overload_manager": {"resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                             "max_active_downstream_connections": 2147483647u64}}]},
    })
}
