//! Istio's standard metrics as each proxy emits them, and its access log.
//!
//! Labels follow the `istio_stats` filter (istio/proxy release-1.30
//! `source/extensions/filters/http/istio_stats/istio_stats.cc`, moved into Envoy's tree
//! for 1.31): the reporter's own side comes from its node metadata (`WORKLOAD_NAME`,
//! `NAMESPACE`, `LABELS.app`/`version` raw, canonical labels); the peer's from the
//! `peer_metadata` filter — HTTP metadata-exchange headers, which any proxy caller
//! sends whether or not the connection is TLS — or, on the client side, from the
//! endpoint's `istio.workload` metadata (no app/version there). Workload discovery by
//! peer IP needs `PEER_METADATA_DISCOVERY` (off for sidecars outside ambient), so a
//! caller without a proxy is `unknown`. `connection_security_policy` is `mutual_tls`
//! when the downstream presented a certificate, else `none`, and always `unknown` for
//! `reporter="source"`.

use crate::objects::{Pod, Service, selector_matches};
use crate::world::World;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::SystemTime;

/// A proxy's node metadata, as far as telemetry uses it.
#[derive(Debug, Clone)]
pub(crate) struct ProxyMeta {
    pub uid: String,
    pub pod: String,
    pub namespace: String,
    pub workload: String,
    pub labels: BTreeMap<String, String>,
    pub canonical_name: String,
    pub canonical_revision: String,
    pub principal: String,
    pub version: String,
}

impl ProxyMeta {
    pub fn of(pod: &Pod, trust_domain: &str) -> ProxyMeta {
        let (canonical_name, canonical_revision) = pod.canonical();
        ProxyMeta {
            uid: pod.uid.clone(),
            pod: pod.name.clone(),
            namespace: pod.namespace.clone(),
            workload: pod.workload_name(),
            labels: pod.labels.clone(),
            canonical_name,
            canonical_revision,
            principal: pod.principal(trust_domain),
            version: pod.proxy_version(),
        }
    }

    /// Own `app` label as the stats filter reads it (raw, may be empty).
    fn own(&self, key: &str) -> String {
        self.labels.get(key).cloned().unwrap_or_default()
    }

    /// App name as the metadata exchange carries it: `app.kubernetes.io/name`, `app`.
    fn exchanged_app(&self) -> Option<&str> {
        self.labels
            .get("app.kubernetes.io/name")
            .or_else(|| self.labels.get("app"))
            .map(String::as_str)
    }

    fn exchanged_version(&self) -> Option<&str> {
        self.labels
            .get("app.kubernetes.io/version")
            .or_else(|| self.labels.get("version"))
            .map(String::as_str)
    }
}

/// What a reporter knows about the other side.
#[derive(Debug, Clone)]
pub(crate) enum Peer {
    /// Metadata exchange: the other side is a proxy.
    Proxy(ProxyMeta),
    /// The endpoint's `istio.workload` metadata (client side only).
    Endpoint {
        workload: String,
        namespace: String,
        canonical_name: String,
        canonical_revision: String,
    },
    Unknown,
}

impl Peer {
    pub fn endpoint(meta: &str) -> Peer {
        let parts: Vec<&str> = meta.split(';').collect();
        if parts.len() < 5 {
            return Peer::Unknown;
        }
        Peer::Endpoint {
            workload: parts[0].into(),
            namespace: parts[1].into(),
            canonical_name: parts[2].into(),
            canonical_revision: parts[3].into(),
        }
    }
}

fn or_unknown(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "unknown".into(),
    }
}

/// The service the request was for: (host, name, namespace).
#[derive(Debug, Clone)]
pub(crate) struct ServiceLabels {
    pub host: String,
    pub name: String,
    pub namespace: String,
}

/// One request as a reporter records it.
#[derive(Debug, Clone)]
pub(crate) struct RequestRecord {
    pub response_code: u16,
    pub response_flags: String,
    /// Whether the connection with the peer was mutual TLS.
    pub mtls: bool,
}

pub(crate) type LabelSet = Vec<(&'static str, String)>;

/// `reporter="destination"`: the server sidecar's view.
pub(crate) fn destination_labels(
    own: &ProxyMeta,
    peer: &Peer,
    service: &ServiceLabels,
    rec: &RequestRecord,
) -> LabelSet {
    let p = match peer {
        Peer::Proxy(p) => Some(p),
        _ => None,
    };
    vec![
        ("reporter", "destination".into()),
        (
            "source_workload",
            or_unknown(p.map(|p| p.workload.as_str())),
        ),
        (
            "source_canonical_service",
            or_unknown(p.map(|p| p.canonical_name.as_str())),
        ),
        (
            "source_canonical_revision",
            p.map(|p| p.canonical_revision.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "latest".into()),
        ),
        (
            "source_workload_namespace",
            or_unknown(p.map(|p| p.namespace.as_str())),
        ),
        (
            "source_principal",
            if rec.mtls {
                or_unknown(p.map(|p| p.principal.as_str()))
            } else {
                "unknown".into()
            },
        ),
        (
            "source_app",
            or_unknown(p.and_then(ProxyMeta::exchanged_app)),
        ),
        (
            "source_version",
            or_unknown(p.and_then(ProxyMeta::exchanged_version)),
        ),
        ("source_cluster", or_unknown(p.map(|_| "Kubernetes"))),
        ("destination_workload", own.workload.clone()),
        ("destination_workload_namespace", own.namespace.clone()),
        (
            "destination_principal",
            if rec.mtls {
                own.principal.clone()
            } else {
                "unknown".into()
            },
        ),
        ("destination_app", own.own("app")),
        ("destination_version", own.own("version")),
        ("destination_service", service.host.clone()),
        ("destination_canonical_service", own.canonical_name.clone()),
        (
            "destination_canonical_revision",
            own.canonical_revision.clone(),
        ),
        ("destination_service_name", service.name.clone()),
        ("destination_service_namespace", own.namespace.clone()),
        ("destination_cluster", "Kubernetes".into()),
        ("request_protocol", "http".into()),
        ("response_code", rec.response_code.to_string()),
        ("grpc_response_status", String::new()),
        ("response_flags", rec.response_flags.clone()),
        (
            "connection_security_policy",
            if rec.mtls { "mutual_tls" } else { "none" }.into(),
        ),
    ]
}

/// `reporter="source"`: the client sidecar's or gateway's view.
pub(crate) fn source_labels(
    own: &ProxyMeta,
    peer: &Peer,
    service: &ServiceLabels,
    rec: &RequestRecord,
) -> LabelSet {
    let (workload, namespace, principal, app, version, cname, crev, cluster) = match peer {
        Peer::Proxy(p) => (
            or_unknown(Some(&p.workload)),
            or_unknown(Some(&p.namespace)),
            if rec.mtls {
                p.principal.clone()
            } else {
                "unknown".into()
            },
            or_unknown(p.exchanged_app()),
            or_unknown(p.exchanged_version()),
            or_unknown(Some(&p.canonical_name)),
            if p.canonical_revision.is_empty() {
                "latest".into()
            } else {
                p.canonical_revision.clone()
            },
            "Kubernetes".to_string(),
        ),
        Peer::Endpoint {
            workload,
            namespace,
            canonical_name,
            canonical_revision,
        } => (
            or_unknown(Some(workload)),
            or_unknown(Some(namespace)),
            "unknown".into(),
            "unknown".into(),
            "unknown".into(),
            or_unknown(Some(canonical_name)),
            if canonical_revision.is_empty() {
                "latest".into()
            } else {
                canonical_revision.clone()
            },
            "Kubernetes".into(),
        ),
        Peer::Unknown => (
            "unknown".into(),
            "unknown".into(),
            "unknown".into(),
            "unknown".into(),
            "unknown".into(),
            "unknown".into(),
            "latest".into(),
            "unknown".into(),
        ),
    };
    let service_namespace = if service.namespace.is_empty() {
        namespace.clone()
    } else {
        service.namespace.clone()
    };
    vec![
        ("reporter", "source".into()),
        ("source_workload", own.workload.clone()),
        ("source_canonical_service", own.canonical_name.clone()),
        ("source_canonical_revision", own.canonical_revision.clone()),
        ("source_workload_namespace", own.namespace.clone()),
        (
            "source_principal",
            if rec.mtls {
                own.principal.clone()
            } else {
                "unknown".into()
            },
        ),
        ("source_app", own.own("app")),
        ("source_version", own.own("version")),
        ("source_cluster", "Kubernetes".into()),
        ("destination_workload", workload),
        ("destination_workload_namespace", namespace),
        ("destination_principal", principal),
        ("destination_app", app),
        ("destination_version", version),
        ("destination_service", service.host.clone()),
        ("destination_canonical_service", cname),
        ("destination_canonical_revision", crev),
        ("destination_service_name", service.name.clone()),
        ("destination_service_namespace", service_namespace),
        ("destination_cluster", cluster),
        ("request_protocol", "http".into()),
        ("response_code", rec.response_code.to_string()),
        ("grpc_response_status", String::new()),
        ("response_flags", rec.response_flags.clone()),
        ("connection_security_policy", "unknown".into()),
    ]
}

/// Every proxy's counters, by pod uid, derived from its Envoy's telemetry log.
#[derive(Default)]
pub(crate) struct Registry {
    proxies: Mutex<HashMap<String, BTreeMap<LabelSet, u64>>>,
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) if s != "-" => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// The host of a cluster named `outbound|<port>|<subset>|<host>` (or its plaintext
/// twin).
fn cluster_host(cluster: &str) -> Option<&str> {
    let host = cluster.split('|').nth(3)?;
    Some(host.split('~').next().unwrap_or(host))
}

fn service_labels_of(s: &Service) -> ServiceLabels {
    ServiceLabels {
        host: s.host(),
        name: s.name.clone(),
        namespace: s.namespace.clone(),
    }
}

fn strip_port(authority: &str) -> &str {
    match authority.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !h.is_empty() => h,
        _ => authority,
    }
}

/// The proxy named by a metadata-exchange node ID, as it was in `world`.
fn peer_of(id: &str, world: &World, trust_domain: &str) -> Peer {
    let Some((ns, pod)) = crate::xds::pod_of_node_id(id) else {
        return Peer::Unknown;
    };
    match world.pod(ns, pod) {
        Some(p) => Peer::Proxy(ProxyMeta::of(p, trust_domain)),
        None => Peer::Unknown,
    }
}

/// The `istio_requests_total` labels one telemetry-log record stands for.
pub(crate) fn labels_of(
    record: &Value,
    own: &ProxyMeta,
    world: &World,
    trust_domain: &str,
) -> Option<LabelSet> {
    let code: u16 = text(record, "code").parse().ok()?;
    let flags = match text(record, "flags") {
        f if f.is_empty() => "-".to_string(),
        f => f,
    };
    let authority = text(record, "authority");
    match text(record, "dir").as_str() {
        "inbound" => {
            let port: u16 = text(record, "local_port").parse().unwrap_or(0);
            let pod = world.pod(&own.namespace, &own.pod)?;
            let host = strip_port(&authority);
            let mut services: Vec<&Service> = world
                .services
                .iter()
                .filter(|s| {
                    s.namespace == own.namespace
                        && !s.selector.is_empty()
                        && selector_matches(&s.selector, &pod.labels)
                        && s.ports.iter().any(|p| s.target_port(p, pod) == Some(port))
                })
                .collect();
            services.sort_by_key(|s| {
                (
                    s.name != host.split('.').next().unwrap_or(host),
                    s.name.clone(),
                )
            });
            let service = services.first().map(|s| service_labels_of(s))?;
            let peer = match text(record, "request_peer_id") {
                id if id.is_empty() => Peer::Unknown,
                id => peer_of(&id, world, trust_domain),
            };
            let rec = RequestRecord {
                response_code: code,
                response_flags: flags,
                mtls: !text(record, "downstream_peer_san").is_empty()
                    && !text(record, "downstream_local_san").is_empty(),
            };
            Some(destination_labels(own, &peer, &service, &rec))
        }
        "outbound" => {
            let cluster = text(record, "cluster");
            let service = match cluster_host(&cluster) {
                Some(host) => world
                    .services
                    .iter()
                    .find(|s| s.host() == host)
                    .map(service_labels_of)
                    .unwrap_or(ServiceLabels {
                        host: host.to_string(),
                        name: host.to_string(),
                        namespace: String::new(),
                    }),
                None => {
                    let host = strip_port(&authority);
                    match world.resolve(host, &own.namespace) {
                        Some(s) => service_labels_of(s),
                        None => ServiceLabels {
                            host: host.to_string(),
                            name: host.to_string(),
                            namespace: String::new(),
                        },
                    }
                }
            };
            let peer = match (
                text(record, "response_peer_id"),
                text(record, "upstream_workload"),
            ) {
                (id, _) if !id.is_empty() => peer_of(&id, world, trust_domain),
                (_, w) if !w.is_empty() => Peer::endpoint(&w),
                _ => Peer::Unknown,
            };
            let rec = RequestRecord {
                response_code: code,
                response_flags: flags,
                mtls: !text(record, "upstream_peer_san").is_empty(),
            };
            Some(source_labels(own, &peer, &service, &rec))
        }
        _ => None,
    }
}

impl Registry {
    /// Counts what `lines` of `own`'s telemetry log record.
    pub fn ingest(&self, own: &ProxyMeta, lines: &[String], world: &World, trust_domain: &str) {
        if lines.is_empty() {
            return;
        }
        let mut m = self.proxies.lock().unwrap_or_else(|p| p.into_inner());
        let counters = m.entry(own.uid.clone()).or_default();
        for line in lines {
            let Ok(record) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if let Some(labels) = labels_of(&record, own, world, trust_domain) {
                *counters.entry(labels).or_default() += 1;
            }
        }
    }

    /// Forgets proxies whose pods are gone.
    pub fn retain(&self, alive: impl Fn(&str) -> bool) {
        let mut m = self.proxies.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|uid, _| alive(uid));
    }

    /// The proxy's Prometheus text: `istio_requests_total`, `istio_build`, and whether
    /// its Envoy is live.
    pub fn render(&self, meta: &ProxyMeta, live: bool) -> String {
        let requests: Vec<(LabelSet, u64)> = self
            .proxies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&meta.uid)
            .map(|c| c.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        let mut out = String::new();
        if !requests.is_empty() {
            out.push_str("# TYPE istio_requests_total counter\n");
            for (labels, value) in requests {
                let _ = writeln!(
                    out,
                    "istio_requests_total{{{}}} {value}",
                    render_labels(&labels)
                );
            }
        }
        out.push_str("# TYPE istio_build gauge\n");
        let _ = writeln!(
            out,
            "istio_build{{component=\"proxy\",tag=\"{}\"}} 1",
            escape(&meta.version)
        );
        let _ = writeln!(
            out,
            "# TYPE envoy_server_live gauge\nenvoy_server_live {}",
            u8::from(live)
        );
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render_labels(labels: &LabelSet) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// RFC 3339 UTC with milliseconds, as Envoy's `%START_TIME%`.
pub(crate) fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_787_000_000_123);
        assert_eq!(timestamp(t), "2026-08-17T20:53:20.123Z");
    }
}
