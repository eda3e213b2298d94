//! Envoy routes from VirtualService HTTP routes, as istiod translates them
//! (pilot/pkg/networking/core/route/route.go): one route per `match`, a single
//! destination as `cluster`, several as `weighted_clusters`, and Istio's default retry
//! policy (pilot/pkg/networking/core/route/retry/retry.go: 2 retries on
//! `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`,
//! previous-hosts predicate, 5 host selection attempts).

use crate::istio_config::{HttpRoute, RouteDestination, UriMatch, fqdn};
use crate::routing;
use crate::world::World;
use serde_json::{Value, json};

pub(crate) fn retry_policy() -> Value {
    json!({
        "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        "num_retries": 2,
        "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
        "host_selection_retry_max_attempts": "5",
        "retriable_status_codes": [503]
    })
}

fn route_match(m: Option<&UriMatch>) -> Value {
    match m {
        None => json!({"prefix": "/"}),
        Some(UriMatch::Exact(p)) => json!({"path": p, "case_sensitive": true}),
        Some(UriMatch::Prefix(p)) => json!({"prefix": p, "case_sensitive": true}),
        Some(UriMatch::Regex(r)) => json!({"safe_regex": {"regex": r}}),
    }
}

/// The cluster a route destination names: `outbound|<port>|<subset>|<host>` (short
/// hosts resolve in the VirtualService's namespace; the port is the destination's,
/// else the Service's only one, else `default_port`). Named even when no such
/// Service exists: Envoy then answers `NC`.
pub(crate) fn destination_cluster(
    world: &World,
    dest: &RouteDestination,
    vs_namespace: &str,
    default_port: Option<u16>,
) -> String {
    let (host, port) = match routing::resolve_destination(world, dest, vs_namespace, default_port) {
        Some((service, port)) => (service.host(), port),
        None => (
            fqdn(&dest.host, vs_namespace),
            dest.port.or(default_port).unwrap_or(80),
        ),
    };
    format!(
        "outbound|{port}|{}|{host}",
        dest.subset.as_deref().unwrap_or("")
    )
}

/// The action towards weighted clusters; `split(cluster)` names a share that goes to
/// another cluster instead (the `PlaintextShare` fault).
pub(crate) fn route_action(
    clusters: &[(String, u32)],
    split: &dyn Fn(&str) -> Option<(String, f64)>,
) -> Value {
    let mut weighted: Vec<(String, u64)> = vec![];
    let total: u64 = clusters.iter().map(|(_, w)| u64::from(*w)).sum();
    for (name, w) in clusters {
        // Scaled to 1000 so a share splits a weight finely.
        let scaled = (u64::from(*w) * 1000)
            .checked_div(total)
            .unwrap_or(1000 / clusters.len().max(1) as u64);
        match split(name) {
            Some((twin, share)) => {
                let moved = ((scaled as f64) * share).round() as u64;
                if scaled > moved {
                    weighted.push((name.clone(), scaled - moved));
                }
                if moved > 0 {
                    weighted.push((twin, moved));
                }
            }
            None => weighted.push((name.clone(), scaled)),
        }
    }
    weighted.retain(|(_, w)| *w > 0);
    let mut action = if weighted.len() == 1 {
        json!({"cluster": weighted[0].0})
    } else {
        json!({"weighted_clusters": {"clusters": weighted.iter()
            .map(|(n, w)| json!({"name": n, "weight": w})).collect::<Vec<_>>()}})
    };
    action["timeout"] = json!("0s");
    action["retry_policy"] = retry_policy();
    action["max_grpc_timeout"] = json!("0s");
    action
}

/// The Envoy routes of one VirtualService HTTP route.
pub(crate) fn http_routes(
    world: &World,
    route: &HttpRoute,
    vs_namespace: &str,
    default_port: Option<u16>,
    split: &dyn Fn(&str) -> Option<(String, f64)>,
) -> Vec<Value> {
    let clusters: Vec<(String, u32)> = route
        .route
        .iter()
        .map(|d| {
            (
                destination_cluster(world, d, vs_namespace, default_port),
                d.weight,
            )
        })
        .collect();
    if clusters.is_empty() {
        return vec![];
    }
    let action = route_action(&clusters, split);
    let matches: Vec<Option<&UriMatch>> = if route.matches.is_empty() {
        vec![None]
    } else {
        route.matches.iter().map(Option::as_ref).collect()
    };
    matches
        .into_iter()
        .map(|m| json!({"match": route_match(m), "route": action}))
        .collect()
}

/// A route answering by itself (the `GatewayAnswers` fault).
pub(crate) fn direct_response(status: u16, body: &str) -> Value {
    json!({"match": {"prefix": "/"}, "direct_response": {"status": status, "body": {"inline_string": body}}})
}
