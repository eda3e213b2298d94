//! One request's path through the mesh: the ingress gateway or an app's call, the
//! caller's proxy (route, cluster, endpoint, TLS origination, retries, local replies),
//! the destination's sidecar (accept or close, telemetry) and the app.
//!
//! Envoy behaviours reproduced (envoyproxy/envoy `source/common/router/router.cc`
//! `onUpstreamReset`, Istio's default retry policy in
//! pilot/pkg/networking/core/route/retry/retry.go — 2 retries on
//! `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`,
//! previous-hosts predicate):
//! - no ready endpoint: 503 `no healthy upstream`, flag `UH`;
//! - no route on the gateway: 404, empty body, flag `NR`;
//! - a STRICT sidecar closing a plaintext connection: 503 `upstream connect error or
//!   disconnect/reset before headers. reset reason: connection termination`, flag `UC`
//!   (not retried);
//! - TLS to a peer that does not terminate it: retried, then 503 `upstream connect error
//!   or disconnect/reset before headers. retried and the latest reset reason: remote
//!   connection failure, transport failure reason: TLS_error:|268435703:SSL
//!   routines:OPENSSL_internal:WRONG_VERSION_NUMBER:TLS_error_end`, flags `UF,URX`.

use crate::Inner;
use crate::app::{self, AppAnswer, AppWorld, CallRaised, WerkzeugPage};
use crate::http::{Request, Response};
use crate::objects::{Pod, ProxyKind, Service};
use crate::policy::{self, AcceptOverrides, Arrival, Origination};
use crate::routing::{self, Cluster, ClusterOptions};
use crate::stats::HopOutcome;
use crate::telemetry::{self, LogLine, Peer, ProxyMeta, RequestRecord, ServiceLabels};
use crate::world::World;
use std::sync::Arc;

pub(crate) const RESET_BEFORE_HEADERS: &str =
    "upstream connect error or disconnect/reset before headers. ";
pub(crate) const TLS_WRONG_VERSION: &str =
    "TLS_error:|268435703:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER:TLS_error_end";
const REFUSED: &str = "delayed connect error: Connection refused";
const MAX_DEPTH: u8 = 6;

/// Envoy's 503 body when an upstream resets before response headers.
pub(crate) fn reset_body(retried: bool, reason: &str, transport: &str) -> String {
    format!(
        "{RESET_BEFORE_HEADERS}{}reset reason: {reason}{}{transport}",
        if retried {
            "retried and the latest "
        } else {
            ""
        },
        if transport.is_empty() {
            ""
        } else {
            ", transport failure reason: "
        },
    )
}

/// The snapshots one request runs against.
pub(crate) struct Ctx {
    /// What proxies know (delayed by `push_delay`).
    pub cfg: Arc<World>,
    /// What Kubernetes knows now.
    pub now: Arc<World>,
    pub depth: u8,
}

/// What a proxy answers its downstream with.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: String,
    pub local: bool,
    pub flags: String,
    pub details: String,
    pub peer: Peer,
    pub mtls: bool,
    pub upstream_host: String,
    pub cluster: String,
    pub service: Option<ServiceLabels>,
}

impl Reply {
    fn local(status: u16, body: impl Into<String>, flags: &str, details: &str) -> Reply {
        Reply {
            status,
            body: body.into(),
            local: true,
            flags: flags.into(),
            details: details.into(),
            peer: Peer::Unknown,
            mtls: false,
            upstream_host: String::new(),
            cluster: String::new(),
            service: None,
        }
    }

    fn on(mut self, cluster: &Cluster, peer: Peer, host: String) -> Reply {
        self.cluster = cluster.name.clone();
        self.service = Some(service_labels(&cluster.service));
        self.peer = peer;
        self.upstream_host = host;
        self
    }

    /// The HTTP response Envoy writes downstream.
    pub fn response(&self) -> Response {
        let content_type = if self.local {
            if self.body.is_empty() {
                ""
            } else {
                "text/plain"
            }
        } else {
            "text/html; charset=utf-8"
        };
        let r = Response::new(self.status, content_type, self.body.clone());
        if self.local {
            r
        } else {
            r.with("x-envoy-upstream-service-time", "1")
        }
    }
}

/// A call from an app that raised (what Python `requests` throws).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallError {
    /// Connection reset / closed without a response.
    Reset,
    /// Connection refused (no endpoint behind a ClusterIP, no such port).
    Refused,
    /// The host does not resolve.
    Unresolved,
}

fn service_labels(s: &Service) -> ServiceLabels {
    ServiceLabels {
        host: s.host(),
        name: s.name.clone(),
        namespace: s.namespace.clone(),
    }
}

/// `http://host[:port][/path]` → (host, port, path).
fn parse_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, 80),
    };
    Some((host.to_string(), port, path))
}

struct AppCtx<'a> {
    inner: &'a Inner,
    ctx: &'a Ctx,
    pod: &'a Pod,
}

impl AppWorld for AppCtx<'_> {
    fn random(&self, below: u64) -> u64 {
        self.inner.random(below)
    }

    fn get(&self, url: &str) -> Result<String, CallRaised> {
        let deeper = Ctx {
            cfg: self.ctx.cfg.clone(),
            now: self.ctx.now.clone(),
            depth: self.ctx.depth + 1,
        };
        self.inner
            .app_call(&deeper, self.pod, url)
            .map(|r| r.body)
            .map_err(|_| CallRaised)
    }

    fn page_style(&self) -> WerkzeugPage {
        self.inner.options.werkzeug
    }
}

impl Inner {
    pub(crate) fn ctx(&self) -> Ctx {
        Ctx {
            cfg: self.config_view(),
            now: self.timeline.latest(),
            depth: 0,
        }
    }

    fn meta(&self, pod: &Pod, kind: ProxyKind) -> ProxyMeta {
        ProxyMeta::of(pod, kind, &self.options.trust_domain)
    }

    fn root(&self) -> &str {
        &self.options.root_namespace
    }

    /// A request on a gateway pod's listener `port` (TLS: after the handshake, with the
    /// SNI that selected the filter chain).
    pub(crate) fn gateway_request(
        &self,
        gw_uid: &str,
        port: u16,
        sni: Option<&str>,
        tls: bool,
        req: &Request,
    ) -> Response {
        let ctx = self.ctx();
        let Some(gw) = ctx.now.pod_by_uid(gw_uid).cloned() else {
            return Response::text(503, "no healthy upstream");
        };
        let meta = self.meta(&gw, ProxyKind::Gateway);
        if let Some((code, body)) = self.faults.gateway_answer() {
            self.stats.gateway(port, code);
            return Response::text(code, body);
        }
        let host = req.host.clone().unwrap_or_default();
        let servers = if tls {
            routing::tls_servers(&ctx.cfg, &gw, port, sni)
        } else {
            routing::http_servers(&ctx.cfg, &gw, port)
        };
        let reply = match routing::gateway_route(&ctx.cfg, &servers, &host, &req.path) {
            None => {
                let mut r = Reply::local(404, "", "NR", "route_not_found");
                r.service = Some(ServiceLabels {
                    host: host.clone(),
                    name: host.clone(),
                    namespace: String::new(),
                });
                r
            }
            Some((vs, route)) => {
                let roll = self.random(u64::MAX);
                match routing::pick_weighted(&route.route, roll).and_then(|d| {
                    routing::resolve_destination(&ctx.cfg, d, &vs.namespace, None)
                        .map(|(s, p)| (s.clone(), p, d.subset.clone()))
                }) {
                    None => Reply::local(503, "", "NC", "cluster_not_found"),
                    Some((service, sport, subset)) => self.proxy_upstream(
                        &ctx,
                        &gw,
                        &meta,
                        &service,
                        sport,
                        subset.as_deref(),
                        &req.path,
                    ),
                }
            }
        };
        self.record_source(&meta, &reply, req, &host);
        self.stats.gateway(port, reply.status);
        reply.response()
    }

    /// The caller proxy's `reporter="source"` series and access log line.
    fn record_source(&self, meta: &ProxyMeta, reply: &Reply, req: &Request, authority: &str) {
        let service = reply.service.clone().unwrap_or(ServiceLabels {
            host: "unknown".into(),
            name: "unknown".into(),
            namespace: String::new(),
        });
        let rec = RequestRecord {
            response_code: reply.status,
            response_flags: reply.flags.clone(),
            mtls: reply.mtls,
        };
        self.telemetry.count_request(
            &meta.uid,
            telemetry::source_labels(meta, &reply.peer, &service, &rec),
        );
        let line = LogLine {
            method: &req.method,
            path: &req.path,
            protocol: "HTTP/1.1",
            code: reply.status,
            flags: &reply.flags,
            details: &reply.details,
            bytes_sent: reply.body.len(),
            authority,
            upstream_host: &reply.upstream_host,
            upstream_cluster: &reply.cluster,
            ..LogLine::default()
        }
        .render();
        self.telemetry.log(&meta.uid, line);
    }

    /// Picks an endpoint round robin, avoiding hosts already tried (Envoy's
    /// `previous_hosts` retry predicate, 5 selection attempts).
    fn pick_endpoint(&self, cluster: &Cluster, tried: &[usize]) -> usize {
        let n = cluster.endpoints.len();
        let mut i = self.next_round_robin(&cluster.name, n);
        for _ in 0..5 {
            if !tried.contains(&i) {
                break;
            }
            i = self.next_round_robin(&cluster.name, n);
        }
        i
    }

    /// The caller's proxy sends a request to `service:port` (subset) and answers its
    /// downstream with the result.
    #[allow(clippy::too_many_arguments)]
    fn proxy_upstream(
        &self,
        ctx: &Ctx,
        caller: &Pod,
        meta: &ProxyMeta,
        service: &Service,
        port: u16,
        subset: Option<&str>,
        path: &str,
    ) -> Reply {
        let opts = ClusterOptions {
            ignore_rule_tls: self.faults.destination_rule_ignored(),
        };
        let Some(cluster) = routing::build_cluster(
            &ctx.cfg,
            service,
            port,
            subset,
            &caller.namespace,
            self.root(),
            opts,
        ) else {
            let mut r = Reply::local(503, "", "NC", "cluster_not_found");
            r.service = Some(service_labels(service));
            return r;
        };
        if cluster.endpoints.is_empty() {
            self.stats
                .hop(&meta.workload, &service.name, HopOutcome::NoEndpoint);
            return Reply::local(503, "no healthy upstream", "UH", "no_healthy_upstream").on(
                &cluster,
                Peer::Unknown,
                String::new(),
            );
        }
        let mut tried = vec![];
        let mut last_transport = TLS_WRONG_VERSION;
        for attempt in 0..3 {
            let retried = attempt > 0;
            let idx = self.pick_endpoint(&cluster, &tried);
            tried.push(idx);
            let ep = &cluster.endpoints[idx];
            let host = format!("{}:{}", ep.ip, ep.port);
            let endpoint_peer = Peer::endpoint(&ep.workload_meta);
            let dest = ep
                .pod
                .as_ref()
                .and_then(|p| ctx.now.pod_by_uid(&p.uid))
                .filter(|p| p.running());
            let Some(dest) = dest else {
                last_transport = REFUSED;
                continue;
            };
            if self.faults.backend_local_reply(&ep.workload) {
                self.stats
                    .hop(&meta.workload, &ep.workload, HopOutcome::LocalReply);
                return Reply::local(
                    503,
                    reset_body(retried, "connection termination", ""),
                    "UC",
                    "upstream_reset_before_response_started{connection_termination}",
                )
                .on(&cluster, endpoint_peer, host);
            }
            let mut origination = if cluster.originates_tls(ep) {
                Origination::MutualTls
            } else {
                Origination::Plaintext
            };
            let bug = origination == Origination::MutualTls
                && self.faults.plaintext_bug(&meta.workload, &ep.workload);
            if bug {
                origination = Origination::Plaintext;
            }
            let overrides = AcceptOverrides {
                strict_not_enforced: self.faults.strict_not_enforced(),
                plaintext_bug: bug,
            };
            match policy::arrive(&ctx.cfg, dest, ep.port, origination, self.root(), overrides) {
                Arrival::Accepted {
                    mtls,
                    through_sidecar,
                } => {
                    let outcome = if mtls {
                        HopOutcome::MutualTls
                    } else {
                        HopOutcome::Plaintext
                    };
                    self.stats.hop(&meta.workload, &ep.workload, outcome);
                    let answer = self.deliver(
                        ctx,
                        dest,
                        service,
                        ep.port,
                        path,
                        Some(meta),
                        mtls,
                        through_sidecar,
                    );
                    let peer = if through_sidecar {
                        Peer::Proxy(self.meta(dest, ProxyKind::Sidecar))
                    } else {
                        endpoint_peer
                    };
                    let mut r = Reply {
                        status: answer.status,
                        body: answer.body,
                        local: false,
                        flags: "-".into(),
                        details: "via_upstream".into(),
                        peer: Peer::Unknown,
                        mtls,
                        upstream_host: String::new(),
                        cluster: String::new(),
                        service: None,
                    }
                    .on(&cluster, peer, host);
                    r.mtls = mtls;
                    return r;
                }
                Arrival::NoFilterChain => {
                    self.closed_by_strict(&meta.workload, dest, &ep.workload, &caller_ip(caller));
                    return Reply::local(
                        503,
                        reset_body(retried, "connection termination", ""),
                        "UC",
                        "upstream_reset_before_response_started{connection_termination}",
                    )
                    .on(&cluster, endpoint_peer, host);
                }
                Arrival::TlsFailed => {
                    self.stats
                        .hop(&meta.workload, &ep.workload, HopOutcome::TlsHandshakeFailed);
                    last_transport = TLS_WRONG_VERSION;
                }
            }
        }
        let idx = tried.last().copied().unwrap_or(0);
        let ep = &cluster.endpoints[idx];
        Reply::local(
            503,
            reset_body(true, "remote connection failure", last_transport),
            "UF,URX",
            &format!(
                "upstream_reset_before_response_started{{remote_connection_failure,{}}}",
                last_transport.replace(' ', "_")
            ),
        )
        .on(
            &cluster,
            Peer::endpoint(&ep.workload_meta),
            format!("{}:{}", ep.ip, ep.port),
        )
    }

    /// A STRICT sidecar closes a plaintext connection: listener stat, `NR` log line.
    fn closed_by_strict(&self, from: &str, dest: &Pod, dest_workload: &str, remote: &str) {
        self.stats
            .hop(from, dest_workload, HopOutcome::ClosedByStrict);
        self.telemetry.count_no_filter_chain(&dest.uid);
        let local = format!("{}:5000", dest.ip.clone().unwrap_or_default());
        let line = LogLine {
            code: 0,
            flags: "NR",
            details: "filter_chain_not_found",
            downstream_local: &local,
            downstream_remote: remote,
            ..LogLine::default()
        }
        .render();
        self.telemetry.log(&dest.uid, line);
    }

    /// The destination pod handles a request that arrived (through its sidecar or not).
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &self,
        ctx: &Ctx,
        dest: &Pod,
        service: &Service,
        port: u16,
        path: &str,
        from: Option<&ProxyMeta>,
        mtls: bool,
        through_sidecar: bool,
    ) -> AppAnswer {
        let answer = self.run_app(ctx, dest, path);
        if through_sidecar {
            let own = self.meta(dest, ProxyKind::Sidecar);
            let peer = from
                .map(|m| Peer::Proxy(m.clone()))
                .unwrap_or(Peer::Unknown);
            let rec = RequestRecord {
                response_code: answer.status,
                response_flags: "-".into(),
                mtls,
            };
            self.telemetry.count_request(
                &dest.uid,
                telemetry::destination_labels(&own, &peer, &service_labels(service), &rec),
            );
            let authority = format!("{}:{port}", service.name);
            let cluster = format!("inbound|{port}||");
            let line = LogLine {
                method: "GET",
                path,
                protocol: "HTTP/1.1",
                code: answer.status,
                flags: "-",
                details: "via_upstream",
                bytes_sent: answer.body.len(),
                authority: &authority,
                upstream_cluster: &cluster,
                sni: if mtls { "outbound_.5000_._.svc" } else { "" },
                ..LogLine::default()
            }
            .render();
            self.telemetry.log(&dest.uid, line);
        }
        answer
    }

    pub(crate) fn run_app(&self, ctx: &Ctx, pod: &Pod, path: &str) -> AppAnswer {
        let world = AppCtx {
            inner: self,
            ctx,
            pod,
        };
        app::handle(&app::mode(pod), path, &world)
    }

    /// The app in `caller` calls `url` (`requests.get(url, timeout=1)`).
    pub(crate) fn app_call(&self, ctx: &Ctx, caller: &Pod, url: &str) -> Result<Reply, CallError> {
        if ctx.depth > MAX_DEPTH {
            return Err(CallError::Reset);
        }
        let (host, port, path) = parse_url(url).ok_or(CallError::Unresolved)?;
        let service = ctx
            .now
            .resolve(&host, &caller.namespace)
            .cloned()
            .ok_or(CallError::Unresolved)?;
        service.port(port).ok_or(CallError::Refused)?;
        let req = Request {
            method: "GET".into(),
            path: path.clone(),
            host: Some(format!("{host}:{port}")),
        };
        if caller.has_sidecar() {
            let meta = self.meta(caller, ProxyKind::Sidecar);
            let (target, tport, subset) = match routing::mesh_route(&ctx.cfg, &service, &path) {
                Some((vs, route)) => {
                    let roll = self.random(u64::MAX);
                    match routing::pick_weighted(&route.route, roll).and_then(|d| {
                        routing::resolve_destination(&ctx.cfg, d, &vs.namespace, Some(port))
                            .map(|(s, p)| (s.clone(), p, d.subset.clone()))
                    }) {
                        Some(t) => t,
                        None => {
                            let mut r = Reply::local(503, "", "NC", "cluster_not_found");
                            r.service = Some(service_labels(&service));
                            self.record_source(&meta, &r, &req, &format!("{host}:{port}"));
                            return Ok(r);
                        }
                    }
                }
                None => (service.clone(), port, None),
            };
            let reply =
                self.proxy_upstream(ctx, caller, &meta, &target, tport, subset.as_deref(), &path);
            self.record_source(&meta, &reply, &req, &format!("{host}:{port}"));
            return Ok(reply);
        }
        // No proxy: kube-proxy picks a ready endpoint of the ClusterIP.
        let sport = service.port(port).ok_or(CallError::Refused)?;
        let eps = routing::endpoints(&ctx.now, &service, sport);
        let from = caller.workload().name;
        if eps.is_empty() {
            self.stats.hop(&from, &service.name, HopOutcome::NoEndpoint);
            return Err(CallError::Refused);
        }
        let ep = &eps[self.next_round_robin(&format!("kube-proxy|{}", service.host()), eps.len())];
        let dest = ep
            .pod
            .as_ref()
            .filter(|p| p.running())
            .ok_or(CallError::Refused)?;
        if self.faults.backend_local_reply(&ep.workload) {
            self.stats.hop(&from, &ep.workload, HopOutcome::LocalReply);
            let mut r = Reply::local(
                503,
                reset_body(false, "connection termination", ""),
                "UC",
                "upstream_reset_before_response_started{connection_termination}",
            );
            r.service = Some(service_labels(&service));
            return Ok(r);
        }
        let overrides = AcceptOverrides {
            strict_not_enforced: self.faults.strict_not_enforced(),
            plaintext_bug: false,
        };
        match policy::arrive(
            &ctx.cfg,
            dest,
            ep.port,
            Origination::Plaintext,
            self.root(),
            overrides,
        ) {
            Arrival::Accepted {
                mtls,
                through_sidecar,
            } => {
                self.stats.hop(&from, &ep.workload, HopOutcome::Plaintext);
                let answer = self.deliver(
                    ctx,
                    dest,
                    &service,
                    ep.port,
                    &path,
                    None,
                    mtls,
                    through_sidecar,
                );
                let mut r = Reply {
                    status: answer.status,
                    body: answer.body,
                    local: false,
                    flags: "-".into(),
                    details: "via_upstream".into(),
                    peer: Peer::Unknown,
                    mtls: false,
                    upstream_host: format!("{}:{}", ep.ip, ep.port),
                    cluster: String::new(),
                    service: None,
                };
                r.service = Some(service_labels(&service));
                Ok(r)
            }
            Arrival::NoFilterChain => {
                self.closed_by_strict(&from, dest, &ep.workload, &caller_ip(caller));
                Err(CallError::Reset)
            }
            Arrival::TlsFailed => Err(CallError::Reset),
        }
    }
}

fn caller_ip(p: &Pod) -> String {
    format!("{}:43210", p.ip.clone().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_reset_bodies_read_as_envoy_writes_them() {
        assert_eq!(
            reset_body(false, "connection termination", ""),
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
        );
        assert_eq!(
            reset_body(true, "remote connection failure", TLS_WRONG_VERSION),
            "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure, transport failure reason: TLS_error:|268435703:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER:TLS_error_end"
        );
        assert_eq!(
            parse_url("http://name:5000"),
            Some(("name".into(), 5000, "/".into()))
        );
        assert_eq!(
            parse_url("http://age.s/x?y"),
            Some(("age.s".into(), 80, "/x?y".into()))
        );
    }
}
