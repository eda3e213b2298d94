//! The second oracle, independent of Prometheus: whether the calling proxy's Envoy
//! cluster for a service (and subset) originates mutual TLS towards its endpoints, read
//! from `/config_dump?include_eds` (Istio: `pilot/pkg/networking/core/cluster_tls.go`,
//! `pilot/pkg/xds/endpoints/mtls_checker.go`):
//! - a DestinationRule subset with `ISTIO_MUTUAL`: a TLS `transport_socket` on the
//!   cluster, for every endpoint;
//! - `DISABLE`: no transport socket;
//! - auto mTLS (no TLS setting): a `tlsMode: istio` transport-socket *match*. Istio adds
//!   it to every in-mesh cluster whatever the endpoints, so it proves nothing by
//!   itself: TLS is used only towards endpoints whose EDS metadata carries
//!   `envoy.transport_socket_match: {tlsMode: istio}` (their pod has a sidecar).

use serde_json::Value;

pub const TLS_SOCKET: &str = "envoy.transport_sockets.tls";
pub const DUMP_PATH: &str = "/config_dump?include_eds";

/// `outbound|5000|name-v1|name.sentences.svc.cluster.local`.
pub fn cluster_name(service: &str, namespace: &str, port: u16, subset: Option<&str>) -> String {
    format!(
        "outbound|{port}|{}|{service}.{namespace}.svc.cluster.local",
        subset.unwrap_or("")
    )
}

/// A field in either spelling: Envoy's admin API writes snake_case, istioctl camelCase.
fn field<'a>(object: &'a Value, snake: &str, camel: &str) -> Option<&'a Value> {
    object.get(snake).or_else(|| object.get(camel))
}

fn is_tls_socket(socket: &Value) -> bool {
    socket.get("name").and_then(Value::as_str) == Some(TLS_SOCKET)
}

/// One endpoint of a cluster as EDS delivered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub address: String,
    /// `envoy.transport_socket_match.tlsMode` of its metadata (`istio` when its pod has
    /// a sidecar).
    pub tls_mode: Option<String>,
}

/// What the cluster does towards the endpoints looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origination {
    /// A TLS transport socket for every endpoint (DestinationRule ISTIO_MUTUAL).
    Tls,
    /// Auto mTLS: TLS towards the endpoints with `tlsMode: istio`, plaintext to the rest.
    Auto { tls: usize, plaintext: usize },
    /// No TLS (DestinationRule DISABLE, or nothing set up).
    Plaintext,
}

impl Origination {
    /// Whether every call to the endpoints looked at is mTLS (`Some(true)`), none is
    /// (`Some(false)`), or it cannot be said (`None`): some are, or under auto mTLS no
    /// endpoint was there to look at (EDS has not delivered them yet).
    pub fn mtls(&self) -> Option<bool> {
        match self {
            Origination::Tls => Some(true),
            Origination::Plaintext => Some(false),
            Origination::Auto { tls, plaintext } => match (*tls, *plaintext) {
                (0, 0) => None,
                (0, _) => Some(false),
                (_, 0) => Some(true),
                _ => None,
            },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Origination::Tls => "TLS to every endpoint (envoy.transport_sockets.tls)".into(),
            Origination::Plaintext => "plaintext (no transport socket)".into(),
            Origination::Auto { tls, plaintext } => format!(
                "auto mTLS: {tls} endpoint(s) with tlsMode: istio (TLS), {plaintext} without (plaintext)"
            ),
        }
    }
}

/// Whether the cluster has Istio's auto-mTLS match (`tlsMode: istio` → TLS socket).
fn has_auto_mtls_match(cluster: &Value) -> bool {
    field(
        cluster,
        "transport_socket_matches",
        "transportSocketMatches",
    )
    .and_then(Value::as_array)
    .is_some_and(|matches| {
        matches.iter().any(|m| {
            let istio = m
                .get("match")
                .and_then(|mm| field(mm, "tlsMode", "tls_mode"))
                .and_then(Value::as_str)
                == Some("istio");
            istio && field(m, "transport_socket", "transportSocket").is_some_and(is_tls_socket)
        })
    })
}

/// What the cluster originates towards `endpoints` (those of the cluster, or only the
/// pods of one workload).
pub fn origination(cluster: &Value, endpoints: &[Endpoint]) -> Origination {
    if field(cluster, "transport_socket", "transportSocket").is_some_and(is_tls_socket) {
        return Origination::Tls;
    }
    if has_auto_mtls_match(cluster) {
        let tls = endpoints
            .iter()
            .filter(|e| e.tls_mode.as_deref() == Some("istio"))
            .count();
        return Origination::Auto {
            tls,
            plaintext: endpoints.len() - tls,
        };
    }
    Origination::Plaintext
}

const CLUSTERS_DUMP: &str = "type.googleapis.com/envoy.admin.v3.ClustersConfigDump";
const DYNAMIC_CLUSTER: &str =
    "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.DynamicCluster";
const STATIC_CLUSTER: &str = "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.StaticCluster";
const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const ENDPOINTS_DUMP: &str = "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump";
const LOAD_ASSIGNMENT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// Where a cluster stands in a proxy's config dump.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ClusterLookup<'a> {
    /// Active (`static_clusters`, `dynamic_active_clusters`): the proxy uses it.
    Active(&'a Value),
    /// Only under `dynamic_warming_clusters`: the proxy has it but does not use it yet
    /// (its endpoints or secrets have not arrived).
    Warming(&'a Value),
    Absent,
}

impl<'a> ClusterLookup<'a> {
    pub fn active(self) -> Option<&'a Value> {
        match self {
            ClusterLookup::Active(c) => Some(c),
            _ => None,
        }
    }
}

fn type_of(item: &Value) -> &str {
    item.get("@type").and_then(Value::as_str).unwrap_or("")
}

/// The top-level items of a dump: `configs` of `/config_dump`, or the dump itself when
/// it is one item.
fn items(dump: &Value) -> Vec<&Value> {
    match dump.get("configs").and_then(Value::as_array) {
        Some(configs) => configs.iter().collect(),
        None => vec![dump],
    }
}

/// The `cluster` of each entry of a ClustersConfigDump list.
fn listed_clusters(section: Option<&Value>) -> impl Iterator<Item = &Value> {
    section
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.get("cluster"))
}

fn named(cluster: &Value, name: &str) -> bool {
    cluster.get("name").and_then(Value::as_str) == Some(name)
}

/// The cluster `name` as the dump holds it, read only where Envoy's admin API puts
/// clusters: the ClustersConfigDump (`static_clusters`, `dynamic_active_clusters`,
/// `dynamic_warming_clusters`), or items of `?resource=` dumps whose `@type` is a
/// cluster. A route's `weighted_clusters` entry or a listener's stat prefix that
/// carries the same name is never taken for it.
pub fn find_cluster<'a>(dump: &'a Value, name: &str) -> ClusterLookup<'a> {
    let mut warming = None;
    for item in items(dump) {
        match type_of(item) {
            CLUSTERS_DUMP => {
                let active = listed_clusters(field(item, "static_clusters", "staticClusters"))
                    .chain(listed_clusters(field(
                        item,
                        "dynamic_active_clusters",
                        "dynamicActiveClusters",
                    )))
                    .find(|c| named(c, name));
                if let Some(c) = active {
                    return ClusterLookup::Active(c);
                }
                warming = warming.or_else(|| {
                    listed_clusters(field(
                        item,
                        "dynamic_warming_clusters",
                        "dynamicWarmingClusters",
                    ))
                    .find(|c| named(c, name))
                });
            }
            DYNAMIC_CLUSTER | STATIC_CLUSTER => {
                if let Some(c) = item.get("cluster").filter(|c| named(c, name)) {
                    return ClusterLookup::Active(c);
                }
            }
            CLUSTER if named(item, name) => return ClusterLookup::Active(item),
            _ => {}
        }
    }
    warming.map_or(ClusterLookup::Absent, ClusterLookup::Warming)
}

/// Every ClusterLoadAssignment of the dump: the `endpoint_config` of EndpointsConfigDump
/// entries (static and dynamic), or `?resource=` items that are assignments.
fn load_assignments(dump: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for item in items(dump) {
        match type_of(item) {
            ENDPOINTS_DUMP => {
                for section in [
                    field(item, "static_endpoint_configs", "staticEndpointConfigs"),
                    field(item, "dynamic_endpoint_configs", "dynamicEndpointConfigs"),
                ] {
                    out.extend(
                        section
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(|e| field(e, "endpoint_config", "endpointConfig")),
                    );
                }
            }
            LOAD_ASSIGNMENT => out.push(item),
            _ => {}
        }
    }
    out
}

/// The endpoints EDS delivered for the cluster `name` (empty when the dump has none),
/// read only from the dump's endpoint section.
pub fn endpoints(dump: &Value, name: &str) -> Vec<Endpoint> {
    let Some(assignment) = load_assignments(dump)
        .into_iter()
        .find(|a| field(a, "cluster_name", "clusterName").and_then(Value::as_str) == Some(name))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for locality in assignment
        .get("endpoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for lb in field(locality, "lb_endpoints", "lbEndpoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let address = lb
                .pointer("/endpoint/address/socket_address/address")
                .or_else(|| lb.pointer("/endpoint/address/socketAddress/address"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let metadata = lb
                .pointer("/metadata/filter_metadata")
                .or_else(|| lb.pointer("/metadata/filterMetadata"));
            let tls_mode = metadata
                .and_then(|m| m.get("envoy.transport_socket_match"))
                .and_then(|m| field(m, "tlsMode", "tls_mode"))
                .and_then(Value::as_str)
                .map(str::to_string);
            out.push(Endpoint { address, tls_mode });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lb(ip: &str, istio: bool) -> Value {
        let mut metadata = json!({"istio": {"workload": "w;sentences;w;;Kubernetes"}});
        if istio {
            metadata["envoy.transport_socket_match"] = json!({"tlsMode": "istio"});
        }
        json!({"endpoint": {"address": {"socket_address": {"address": ip, "port_value": 5000}}},
               "health_status": "HEALTHY", "metadata": {"filter_metadata": metadata}})
    }

    fn dump(age_endpoint_has_sidecar: bool) -> Value {
        let auto = json!([
            {"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": {"name": "envoy.transport_sockets.tls"}},
            {"name": "tlsMode-disabled", "match": {}, "transport_socket": {"name": "envoy.transport_sockets.raw_buffer"}}]);
        json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "dynamic_active_clusters": [
                {"cluster": {"name": "outbound|5000|name-v1|name.sentences.svc.cluster.local", "type": "EDS"}},
                {"cluster": {"name": "outbound|5000|name-v2|name.sentences.svc.cluster.local", "type": "EDS",
                             "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {}}}},
                {"cluster": {"name": "outbound|5000||age.sentences.svc.cluster.local", "type": "EDS",
                             "transport_socket_matches": auto}}]},
            {"@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump", "dynamic_endpoint_configs": [
                {"endpoint_config": {"cluster_name": "outbound|5000||age.sentences.svc.cluster.local",
                  "endpoints": [{"locality": {}, "lb_endpoints": [lb("10.244.0.7", age_endpoint_has_sidecar)]}]}},
                {"endpoint_config": {"cluster_name": "outbound|5000|name-v1|name.sentences.svc.cluster.local",
                  "endpoints": [{"locality": {}, "lb_endpoints": [lb("10.244.0.8", false)]}]}}]}
        ]})
    }

    #[test]
    fn subsets_under_disable_and_istio_mutual_and_auto_mtls_are_told_apart() {
        let d = dump(true);
        let find = |subset: Option<&str>, service: &str| {
            let name = cluster_name(service, "sentences", 5000, subset);
            origination(
                find_cluster(&d, &name).active().unwrap(),
                &endpoints(&d, &name),
            )
        };
        assert_eq!(find(Some("name-v1"), "name"), Origination::Plaintext);
        assert_eq!(find(Some("name-v2"), "name"), Origination::Tls);
        assert_eq!(
            find(None, "age"),
            Origination::Auto {
                tls: 1,
                plaintext: 0
            }
        );
        assert_eq!(find(None, "age").mtls(), Some(true));
        assert_eq!(
            find_cluster(&d, "outbound|5000|name-v3|name.sentences.svc.cluster.local"),
            ClusterLookup::Absent
        );
    }

    #[test]
    fn the_auto_mtls_match_alone_proves_nothing() {
        // Istio adds the tlsMode match to every in-mesh cluster; an endpoint without a
        // sidecar gets plaintext.
        let d = dump(false);
        let name = cluster_name("age", "sentences", 5000, None);
        let o = origination(
            find_cluster(&d, &name).active().unwrap(),
            &endpoints(&d, &name),
        );
        assert_eq!(
            o,
            Origination::Auto {
                tls: 0,
                plaintext: 1
            }
        );
        assert_eq!(o.mtls(), Some(false));
        assert!(
            o.describe().contains("0 endpoint(s) with tlsMode: istio"),
            "{}",
            o.describe()
        );
        assert_eq!(
            Origination::Auto {
                tls: 1,
                plaintext: 1
            }
            .mtls(),
            None
        );
        // No endpoint yet: nothing shows what the cluster sends.
        assert_eq!(
            Origination::Auto {
                tls: 0,
                plaintext: 0
            }
            .mtls(),
            None
        );
    }

    #[test]
    fn istioctl_camel_case_is_read_too() {
        let c = json!({"name": "x", "transportSocket": {"name": "envoy.transport_sockets.tls"}});
        assert_eq!(origination(&c, &[]), Origination::Tls);
    }

    /// A dump whose route sends half the traffic to a subset cluster that does not
    /// exist: the route entry carries the cluster's name, and nothing else.
    fn dump_with_route_to_missing(subset: &str) -> Value {
        let missing = cluster_name("name", "sentences", 5000, Some(subset));
        json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", "dynamic_route_configs": [
                {"route_config": {"@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "name": "5000",
                  "virtual_hosts": [{"name": "name.sentences.svc.cluster.local:5000", "domains": ["name"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": [
                        {"name": missing, "weight": 50},
                        {"name": "outbound|5000|name-v2|name.sentences.svc.cluster.local", "weight": 50}]}}}]}]}}]},
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "dynamic_active_clusters": [
                {"cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                  "name": "outbound|5000|name-v2|name.sentences.svc.cluster.local", "type": "EDS",
                  "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {}}}}]}
        ]})
    }

    #[test]
    fn a_route_entry_naming_a_missing_cluster_is_not_read_as_a_plaintext_cluster() {
        // Before: any object named like the cluster matched, so the route's
        // `weighted_clusters` entry (no transport socket) read as a plaintext cluster and
        // `{subset: name-v1, mtls: false}` passed with the cluster missing.
        let d = dump_with_route_to_missing("name-v1");
        let v1 = cluster_name("name", "sentences", 5000, Some("name-v1"));
        assert_eq!(find_cluster(&d, &v1), ClusterLookup::Absent);
        let v2 = cluster_name("name", "sentences", 5000, Some("name-v2"));
        let found = find_cluster(&d, &v2).active().expect("the real v2 cluster");
        assert_eq!(origination(found, &endpoints(&d, &v2)), Origination::Tls);
    }

    #[test]
    fn a_missing_mtls_subset_is_absent_not_plaintext() {
        // Before: with name-v2 missing, the route entry was found and the failure said
        // "plaintext" instead of "not in the config".
        let d = dump_with_route_to_missing("name-v2");
        let mut d2 = d.clone();
        d2["configs"][1]["dynamic_active_clusters"] = json!([]);
        let v2 = cluster_name("name", "sentences", 5000, Some("name-v2"));
        assert_eq!(find_cluster(&d2, &v2), ClusterLookup::Absent);
    }

    #[test]
    fn a_warming_cluster_is_not_live() {
        let name = cluster_name("age", "sentences", 5000, None);
        let d = json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "dynamic_warming_clusters": [
                {"version_info": "2026-12-07T11:00:00Z/3", "cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                  "name": name, "type": "EDS", "transport_socket": {"name": "envoy.transport_sockets.tls"}}}]}
        ]});
        assert!(matches!(find_cluster(&d, &name), ClusterLookup::Warming(_)));
        assert_eq!(find_cluster(&d, &name).active(), None);
    }

    #[test]
    fn resource_filtered_dumps_are_read_by_their_type() {
        let name = cluster_name("age", "sentences", 5000, None);
        let d = json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.DynamicCluster", "version_info": "1",
             "cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": name}},
            {"@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", "cluster_name": name,
             "endpoints": [{"lb_endpoints": [lb("10.244.0.9", true)]}]}
        ]});
        assert!(find_cluster(&d, &name).active().is_some());
        assert_eq!(endpoints(&d, &name).len(), 1);
        // An endpoint-shaped object outside the endpoint section is not EDS.
        let stray = json!({"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "x": {"cluster_name": name, "endpoints": [{"lb_endpoints": [lb("10.244.0.9", true)]}]}}]});
        assert!(endpoints(&stray, &name).is_empty());
    }
}
