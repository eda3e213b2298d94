//! A proxy's outbound clusters and their endpoints, in the shapes istiod builds
//! (pilot/pkg/networking/core/cluster_builder.go, cluster_tls.go; EDS from
//! pilot/pkg/xds/endpoints/endpoint_builder.go, mtls_checker.go): one cluster
//! `outbound|<port>|<subset>|<host>` per Service port and DestinationRule subset, its TLS
//! as [`routing::build_cluster`] decides (auto mTLS: a `tlsMode: istio` transport
//! socket match; a rule's `ISTIO_MUTUAL`: a transport socket; `DISABLE`: none), and
//! EDS endpoints carrying `envoy.transport_socket_match.tlsMode` and `istio.workload`.

use super::tls;
use crate::envoy::xds_server::source;
use crate::faults::ConfigFaults;
use crate::istio_config::ClientTlsMode;
use crate::routing::{self, Cluster, ClusterOptions, ClusterTls};
use crate::world::World;
use serde_json::{Value, json};

/// The cluster's name when a fault sends part of the traffic around its TLS.
pub(crate) fn plaintext_twin(name: &str) -> String {
    format!("{name}~plaintext-share")
}

/// Every outbound cluster a proxy in `client_ns` has: each Service port, and each
/// subset of the DestinationRule that applies from there.
pub(crate) fn outbound(
    world: &World,
    client_ns: &str,
    root_ns: &str,
    faults: &ConfigFaults,
) -> Vec<Cluster> {
    let opts = ClusterOptions {
        ignore_rule_tls: faults.destination_rule_ignored(),
    };
    let mut out = vec![];
    for s in &world.services {
        let rule = routing::destination_rule(world, s, client_ns, root_ns);
        for p in &s.ports {
            let mut subsets: Vec<Option<&str>> = vec![None];
            if let Some(r) = rule
                && !faults.subset_clusters_missing()
            {
                subsets.extend(r.subsets.iter().map(|x| Some(x.name.as_str())));
            }
            for subset in subsets {
                if let Some(c) =
                    routing::build_cluster(world, s, p.port, subset, client_ns, root_ns, opts)
                {
                    out.push(c);
                }
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The Envoy cluster, its endpoints from EDS.
pub(crate) fn cluster_json(c: &Cluster, faults: &ConfigFaults) -> Value {
    let mut istio = json!({
        "default_original_port": c.port,
        "services": [{"host": c.service.host(), "name": c.service.name, "namespace": c.service.namespace}],
    });
    if let Some((ns, name)) = &c.rule {
        istio["config"] = json!(format!(
            "/apis/networking.istio.io/v1/namespaces/{ns}/destination-rule/{name}"
        ));
    }
    if let Some(s) = &c.subset {
        istio["subset"] = json!(s);
    }
    let eds_config = if c.subset.is_some() && faults.subset_clusters_warming() {
        // istiod's own shape; the ADS stream it names never answers here.
        json!({"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"})
    } else {
        source()
    };
    let mut cluster = json!({
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        "name": c.name,
        "type": "EDS",
        "eds_cluster_config": {"eds_config": eds_config, "service_name": c.name},
        "connect_timeout": "10s",
        "lb_policy": "LEAST_REQUEST",
        "circuit_breakers": {"thresholds": [{"max_connections": 4294967295u64, "max_pending_requests": 4294967295u64,
            "max_requests": 4294967295u64, "max_retries": 4294967295u64, "track_remaining": true}]},
        "common_lb_config": {},
        "metadata": {"filter_metadata": {"istio": istio}},
    });
    let mutual = || tls::upstream_istio_mutual(&c.sni(), &c.service_accounts);
    match c.tls {
        ClusterTls::Auto => {
            cluster["transport_socket_matches"] = json!([
                {"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": mutual()},
                {"name": "tlsMode-disabled", "match": {}, "transport_socket": tls::raw_buffer()}
            ]);
        }
        ClusterTls::Rule(ClientTlsMode::IstioMutual) => {
            if !faults.istio_mutual_sends_plaintext() {
                cluster["transport_socket"] = mutual();
            }
        }
        ClusterTls::Rule(ClientTlsMode::Simple | ClientTlsMode::Mutual) => {
            cluster["transport_socket"] = json!({"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": {"tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"}},
                "sni": c.service.host()}});
        }
        ClusterTls::Rule(ClientTlsMode::Disable) => {
            if faults.disable_still_sends_mtls() {
                cluster["transport_socket"] = mutual();
            }
        }
        ClusterTls::Off => {}
    }
    cluster
}

/// A twin of `c` without TLS, reading the same endpoints (the `PlaintextShare` fault).
pub(crate) fn plaintext_twin_json(c: &Cluster) -> Value {
    let name = plaintext_twin(&c.name);
    json!({
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        "name": name,
        "type": "EDS",
        "eds_cluster_config": {"eds_config": source(), "service_name": c.name},
        "connect_timeout": "10s",
        "lb_policy": "LEAST_REQUEST",
    })
}

/// The cluster's `ClusterLoadAssignment`.
pub(crate) fn load_assignment(c: &Cluster) -> Value {
    let lb: Vec<Value> = c
        .endpoints
        .iter()
        .map(|e| {
            let mut fm = json!({});
            if e.tls_mode_istio {
                fm["envoy.transport_socket_match"] = json!({"tlsMode": "istio"});
            }
            if !e.workload_meta.is_empty() {
                fm["istio"] = json!({"workload": e.workload_meta});
            }
            json!({
                "endpoint": {"address": {"socket_address": {"address": e.ip, "port_value": e.port}},
                             "health_check_config": {}},
                "health_status": "HEALTHY",
                "metadata": {"filter_metadata": fm},
                "load_balancing_weight": 1
            })
        })
        .collect();
    let mut cla = json!({
        "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        "cluster_name": c.name,
        "policy": {"overprovisioning_factor": 140}
    });
    if !lb.is_empty() {
        let n = lb.len();
        cla["endpoints"] =
            json!([{"locality": {}, "lb_endpoints": lb, "load_balancing_weight": n}]);
    }
    cla
}

/// The inbound cluster of a sidecar's port: the app behind it.
pub(crate) fn inbound(port: u16, app: &str) -> Value {
    let name = format!("inbound|{port}||");
    json!({
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        "name": name,
        "type": "STATIC",
        "connect_timeout": "10s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": app, "port_value": port}}}}]}]},
        "metadata": {"filter_metadata": {"istio": {"services": []}}},
    })
}
