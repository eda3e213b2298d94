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

use crate::objects::{Pod, ProxyKind};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::SystemTime;

/// A proxy's node metadata, as far as telemetry uses it.
#[derive(Debug, Clone)]
pub(crate) struct ProxyMeta {
    pub uid: String,
    pub pod: String,
    pub namespace: String,
    pub ip: String,
    pub kind: ProxyKind,
    pub workload: String,
    pub labels: BTreeMap<String, String>,
    pub canonical_name: String,
    pub canonical_revision: String,
    pub principal: String,
    pub version: String,
    pub service_account: String,
}

impl ProxyMeta {
    pub fn of(pod: &Pod, kind: ProxyKind, trust_domain: &str) -> ProxyMeta {
        let (canonical_name, canonical_revision) = pod.canonical();
        ProxyMeta {
            uid: pod.uid.clone(),
            pod: pod.name.clone(),
            namespace: pod.namespace.clone(),
            ip: pod.ip.clone().unwrap_or_default(),
            kind,
            workload: pod.workload_name(),
            labels: pod.labels.clone(),
            canonical_name,
            canonical_revision,
            principal: pod.principal(trust_domain),
            version: pod.proxy_version(),
            service_account: pod.service_account.clone(),
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

/// Counters and log of one proxy (one pod: a restarted pod is a new one).
#[derive(Debug, Default)]
struct ProxyRecord {
    requests: BTreeMap<LabelSet, u64>,
    no_filter_chain_match: u64,
    log: VecDeque<String>,
}

const LOG_LINES: usize = 2000;

/// Every proxy's counters.
#[derive(Default)]
pub(crate) struct Registry {
    proxies: Mutex<HashMap<String, ProxyRecord>>,
}

impl Registry {
    fn with<R>(&self, uid: &str, f: impl FnOnce(&mut ProxyRecord) -> R) -> R {
        let mut m = self.proxies.lock().unwrap_or_else(|p| p.into_inner());
        f(m.entry(uid.to_string()).or_default())
    }

    pub fn count_request(&self, uid: &str, labels: LabelSet) {
        self.with(uid, |r| *r.requests.entry(labels).or_default() += 1);
    }

    pub fn count_no_filter_chain(&self, uid: &str) {
        self.with(uid, |r| r.no_filter_chain_match += 1);
    }

    pub fn log(&self, uid: &str, line: String) {
        self.with(uid, |r| {
            if r.log.len() >= LOG_LINES {
                r.log.pop_front();
            }
            r.log.push_back(line);
        });
    }

    pub fn logs(&self, uid: &str) -> Vec<String> {
        self.with(uid, |r| r.log.iter().cloned().collect())
    }

    /// Forgets proxies whose pods are gone.
    pub fn retain(&self, alive: impl Fn(&str) -> bool) {
        let mut m = self.proxies.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|uid, _| alive(uid));
    }

    /// Envoy's `/stats/prometheus` for this proxy. `listener_stats` says whether the
    /// proxy's stats matcher includes `listener.0.0.0.0_15006.no_filter_chain_match`.
    pub fn render(&self, meta: &ProxyMeta, listener_stats: bool) -> String {
        let (requests, nfcm) = self.with(&meta.uid, |r| {
            (
                r.requests
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect::<Vec<_>>(),
                r.no_filter_chain_match,
            )
        });
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
        if listener_stats && meta.kind == ProxyKind::Sidecar {
            out.push_str("# TYPE envoy_listener_no_filter_chain_match counter\n");
            let _ = writeln!(
                out,
                "envoy_listener_no_filter_chain_match{{envoy_listener_address=\"0.0.0.0_15006\"}} {nfcm}"
            );
        }
        out.push_str("# TYPE envoy_server_live gauge\nenvoy_server_live 1\n");
        out
    }

    /// Envoy's `/stats` text format (same selection).
    pub fn render_text(&self, meta: &ProxyMeta, listener_stats: bool) -> String {
        let nfcm = self.with(&meta.uid, |r| r.no_filter_chain_match);
        let mut out = String::new();
        if listener_stats && meta.kind == ProxyKind::Sidecar {
            let _ = writeln!(out, "listener.0.0.0.0_15006.no_filter_chain_match: {nfcm}");
        }
        out.push_str("server.live: 1\n");
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

/// One access-log line in Istio's default text format
/// (pilot/pkg/model/telemetry_logging.go `EnvoyTextLogFormat`).
#[derive(Debug, Default)]
pub(crate) struct LogLine<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub protocol: &'a str,
    pub code: u16,
    pub flags: &'a str,
    pub details: &'a str,
    pub termination: &'a str,
    pub transport_failure: &'a str,
    pub bytes_sent: usize,
    pub authority: &'a str,
    pub upstream_host: &'a str,
    pub upstream_cluster: &'a str,
    pub downstream_local: &'a str,
    pub downstream_remote: &'a str,
    pub sni: &'a str,
    pub route: &'a str,
}

impl LogLine<'_> {
    pub fn render(&self) -> String {
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_string()
            } else {
                s.to_string()
            }
        };
        format!(
            "[{}] \"{} {} {}\" {} {} {} {} \"{}\" 0 {} 0 - \"-\" \"-\" \"-\" \"{}\" \"{}\" {} - {} {} {} {}",
            timestamp(SystemTime::now()),
            dash(self.method),
            dash(self.path),
            dash(self.protocol),
            self.code,
            dash(self.flags),
            dash(self.details),
            dash(self.termination),
            dash(self.transport_failure),
            self.bytes_sent,
            dash(self.authority),
            dash(self.upstream_host),
            dash(self.upstream_cluster),
            dash(self.downstream_local),
            dash(self.downstream_remote),
            dash(self.sni),
            dash(self.route),
        )
    }
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
