//! The second oracle, independent of Prometheus: whether the calling sidecar's Envoy
//! cluster for a service (and subset) originates TLS. Under a DestinationRule with
//! `DISABLE` the cluster has no transport socket; with `ISTIO_MUTUAL` it has
//! `envoy.transport_sockets.tls`; with auto-mTLS (no DestinationRule) it has a
//! `tlsMode: istio` transport socket match that uses TLS towards sidecar endpoints.

use serde_json::Value;

pub const TLS_SOCKET: &str = "envoy.transport_sockets.tls";

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

/// What the cluster does towards its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origination {
    /// A TLS transport socket for every endpoint (DestinationRule ISTIO_MUTUAL).
    Tls,
    /// TLS towards endpoints with a sidecar (`tlsMode: istio`), plaintext to others.
    AutoMtls,
    /// No TLS (DestinationRule DISABLE, or nothing set up).
    Plaintext,
}

impl Origination {
    /// Whether calls to sidecar endpoints use mutual TLS.
    pub fn mtls(&self) -> bool {
        !matches!(self, Origination::Plaintext)
    }
}

pub fn origination(cluster: &Value) -> Origination {
    if field(cluster, "transport_socket", "transportSocket").is_some_and(is_tls_socket) {
        return Origination::Tls;
    }
    let auto = field(
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
    });
    if auto {
        Origination::AutoMtls
    } else {
        Origination::Plaintext
    }
}

/// Finds the cluster named `name` anywhere in a config dump (with or without the
/// `resource=dynamic_active_clusters` filter).
pub fn find_cluster<'a>(dump: &'a Value, name: &str) -> Option<&'a Value> {
    match dump {
        Value::Object(map) => {
            if map.get("name").and_then(Value::as_str) == Some(name) {
                return Some(dump);
            }
            map.values().find_map(|v| find_cluster(v, name))
        }
        Value::Array(items) => items.iter().find_map(|v| find_cluster(v, name)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dump() -> Value {
        json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.DynamicCluster",
             "cluster": {"name": "outbound|5000|name-v1|name.sentences.svc.cluster.local", "type": "EDS"}},
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.DynamicCluster",
             "cluster": {"name": "outbound|5000|name-v2|name.sentences.svc.cluster.local", "type": "EDS",
                         "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {}}}},
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.DynamicCluster",
             "cluster": {"name": "outbound|5000||age.sentences.svc.cluster.local", "type": "EDS",
                         "transport_socket_matches": [
                             {"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": {"name": "envoy.transport_sockets.tls"}},
                             {"name": "tlsMode-disabled", "match": {}, "transport_socket": {"name": "envoy.transport_sockets.raw_buffer"}}]}}
        ]})
    }

    #[test]
    fn subsets_under_disable_and_istio_mutual_and_auto_mtls_are_told_apart() {
        let d = dump();
        let v1 = find_cluster(
            &d,
            &cluster_name("name", "sentences", 5000, Some("name-v1")),
        )
        .unwrap();
        let v2 = find_cluster(
            &d,
            &cluster_name("name", "sentences", 5000, Some("name-v2")),
        )
        .unwrap();
        let age = find_cluster(&d, &cluster_name("age", "sentences", 5000, None)).unwrap();
        assert_eq!(origination(v1), Origination::Plaintext);
        assert_eq!(origination(v2), Origination::Tls);
        assert_eq!(origination(age), Origination::AutoMtls);
        assert!(
            find_cluster(&d, "outbound|5000|name-v3|name.sentences.svc.cluster.local").is_none()
        );
    }

    #[test]
    fn istioctl_camel_case_is_read_too() {
        let c = json!({"name": "x", "transportSocket": {"name": "envoy.transport_sockets.tls"}});
        assert_eq!(origination(&c), Origination::Tls);
    }
}
