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

/// Finds the object named `name` anywhere in a config dump.
pub fn find_cluster<'a>(dump: &'a Value, name: &str) -> Option<&'a Value> {
    find(dump, &|o| {
        o.get("name").and_then(Value::as_str) == Some(name)
    })
}

fn find<'a>(value: &'a Value, wanted: &dyn Fn(&Value) -> bool) -> Option<&'a Value> {
    match value {
        Value::Object(map) => {
            if wanted(value) {
                return Some(value);
            }
            map.values().find_map(|v| find(v, wanted))
        }
        Value::Array(items) => items.iter().find_map(|v| find(v, wanted)),
        _ => None,
    }
}

/// The endpoints EDS delivered for the cluster `name` (empty when the dump has none).
pub fn endpoints(dump: &Value, name: &str) -> Vec<Endpoint> {
    let Some(assignment) = find(dump, &|o| {
        field(o, "cluster_name", "clusterName").and_then(Value::as_str) == Some(name)
    }) else {
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
            origination(find_cluster(&d, &name).unwrap(), &endpoints(&d, &name))
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
        assert!(
            find_cluster(&d, "outbound|5000|name-v3|name.sentences.svc.cluster.local").is_none()
        );
    }

    #[test]
    fn the_auto_mtls_match_alone_proves_nothing() {
        // Istio adds the tlsMode match to every in-mesh cluster; an endpoint without a
        // sidecar gets plaintext.
        let d = dump(false);
        let name = cluster_name("age", "sentences", 5000, None);
        let o = origination(find_cluster(&d, &name).unwrap(), &endpoints(&d, &name));
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
}
