//! Where a request goes: Gateway servers and the VirtualServices bound to them, mesh
//! VirtualServices for sidecars, DestinationRule subsets, and the Envoy clusters with
//! their endpoints (EndpointSlices' ready endpoints and their `targetRef` pods).
//!
//! Sources: pilot/pkg/networking/core/gateway.go (a server port maps to the gateway
//! pod's port through the gateway Service's `targetPort`), cluster_builder.go (cluster
//! names `outbound|<port>|<subset>|<fqdn>`, subset clusters), xds/endpoints/
//! endpoint_builder.go + mtls_checker.go (per-endpoint `tlsMode` and `istio.workload`
//! metadata).

use crate::istio_config::{
    ClientTlsMode, DestinationRule, Gateway, MtlsMode, RouteDestination, Server, fqdn,
    host_matches, server_host,
};
use crate::objects::{Pod, Service, ServicePort, canonical_service, selector_matches};
use crate::policy::{namespace_mode, workload_mode};
use crate::world::World;

/// How a cluster decides on TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClusterTls {
    /// A DestinationRule set the mode for this cluster.
    Rule(ClientTlsMode),
    /// Auto mTLS: TLS to endpoints labelled `tlsMode: istio`, plaintext to the others.
    Auto,
    /// Neither (the namespace's PeerAuthentication is DISABLE): plaintext.
    Off,
}

/// One endpoint of a cluster, as EDS describes it.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub ip: String,
    pub port: u16,
    /// The pod as istiod saw it (uid, labels, workload).
    pub pod: Option<Pod>,
    /// `filter_metadata["envoy.transport_socket_match"].tlsMode == "istio"`.
    pub tls_mode_istio: bool,
    /// `filter_metadata.istio.workload`: `workload;namespace;canonical;revision;cluster`.
    pub workload_meta: String,
    pub workload: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    pub name: String,
    pub service: Service,
    pub port: u16,
    pub subset: Option<String>,
    pub tls: ClusterTls,
    /// (namespace, name) of the DestinationRule that shaped the cluster.
    pub rule: Option<(String, String)>,
    pub endpoints: Vec<Endpoint>,
    /// The SANs an ISTIO_MUTUAL client accepts: the endpoints' service accounts.
    pub service_accounts: Vec<String>,
}

impl Cluster {
    pub fn sni(&self) -> String {
        format!(
            "outbound_.{}_.{}_.{}",
            self.port,
            self.subset.as_deref().unwrap_or(""),
            self.service.host()
        )
    }
}

pub(crate) fn cluster_name(service: &Service, port: u16, subset: Option<&str>) -> String {
    format!(
        "outbound|{port}|{}|{}",
        subset.unwrap_or(""),
        service.host()
    )
}

/// The DestinationRule for a service as seen from a client in `client_ns`: the
/// client's namespace first, then the service's, then the root namespace; oldest wins.
pub(crate) fn destination_rule<'a>(
    world: &'a World,
    service: &Service,
    client_ns: &str,
    root_ns: &str,
) -> Option<&'a DestinationRule> {
    let host = service.host();
    let matching = |ns: &str| {
        world
            .destination_rules
            .iter()
            .find(|r| r.namespace == ns && host_matches(&fqdn(&r.host, &r.namespace), &host))
    };
    matching(client_ns)
        .or_else(|| matching(&service.namespace))
        .or_else(|| matching(root_ns))
}

/// Options that bend cluster building (faults).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ClusterOptions {
    /// Ignore DestinationRule traffic policies (subsets still exist).
    pub ignore_rule_tls: bool,
}

/// The cluster `outbound|port|subset|host` as the client proxy in `client_ns` has it;
/// `None` when the subset is not defined (Envoy: no cluster, `NC`).
pub(crate) fn build_cluster(
    world: &World,
    service: &Service,
    port: u16,
    subset: Option<&str>,
    client_ns: &str,
    root_ns: &str,
    opts: ClusterOptions,
) -> Option<Cluster> {
    let rule = destination_rule(world, service, client_ns, root_ns);
    let subset_def = match subset {
        Some(s) => Some(rule?.subsets.iter().find(|x| x.name == s)?),
        None => None,
    };
    // mtls_checker.go tlsModeForDestinationRule: subset's mode, else the rule's.
    let rule_mode = if opts.ignore_rule_tls {
        None
    } else {
        subset_def
            .and_then(|s| s.tls.for_port(port))
            .or_else(|| rule.and_then(|r| r.tls.for_port(port)))
    };
    let tls = match rule_mode {
        Some(m) => ClusterTls::Rule(m),
        // cluster_tls.go buildUpstreamTLSSettings: auto mTLS unless the service's
        // (namespace-level) mode is DISABLE.
        None if namespace_mode(world, &service.namespace, root_ns) == MtlsMode::Disable => {
            ClusterTls::Off
        }
        None => ClusterTls::Auto,
    };
    let sport = service.port(port)?;
    let mut endpoints = endpoints(world, service, sport);
    if let Some(s) = subset_def {
        endpoints.retain(|e| {
            e.pod
                .as_ref()
                .is_some_and(|p| selector_matches(&s.labels, &p.labels))
        });
    }
    for e in &mut endpoints {
        // mtls_checker.go checkMtlsEnabled: a rule's mode decides for every endpoint;
        // otherwise the pod's `security.istio.io/tlsMode` label and its peer policy.
        e.tls_mode_istio = match rule_mode {
            Some(m) => m == ClientTlsMode::IstioMutual,
            None => e.pod.as_ref().is_some_and(|p| {
                p.labels
                    .get("security.istio.io/tlsMode")
                    .map(String::as_str)
                    == Some("istio")
                    && workload_mode(world, p, e.port, root_ns) != MtlsMode::Disable
            }),
        };
    }
    let mut service_accounts: Vec<String> = endpoints
        .iter()
        .filter_map(|e| e.pod.as_ref().map(|p| p.principal("cluster.local")))
        .collect();
    service_accounts.sort();
    service_accounts.dedup();
    Some(Cluster {
        name: cluster_name(service, port, subset),
        service: service.clone(),
        port,
        subset: subset.map(str::to_string),
        tls,
        rule: rule.map(|r| (r.namespace.clone(), r.name.clone())),
        endpoints,
        service_accounts,
    })
}

/// Ready endpoints of a Service port, from its EndpointSlices (or, when the Service has
/// no slice at all, from the running ready pods its selector matches).
pub(crate) fn endpoints(world: &World, service: &Service, port: &ServicePort) -> Vec<Endpoint> {
    let slices: Vec<_> = world
        .slices
        .iter()
        .filter(|s| s.namespace == service.namespace && s.service == service.name)
        .collect();
    let mut out = vec![];
    if slices.is_empty() {
        if service.selector.is_empty() {
            return out;
        }
        for pod in world.pods.iter().filter(|p| {
            p.namespace == service.namespace
                && selector_matches(&service.selector, &p.labels)
                && p.running()
                && p.ready
                && !p.deleting
        }) {
            if let (Some(ip), Some(target)) = (&pod.ip, service.target_port(port, pod)) {
                out.push(endpoint(ip, target, Some(pod)));
            }
        }
        return out;
    }
    for slice in slices {
        let slice_port = slice
            .ports
            .iter()
            .find(|(n, _)| *n == port.name)
            .or_else(|| (slice.ports.len() == 1).then(|| &slice.ports[0]))
            .map(|(_, p)| *p);
        for e in slice.endpoints.iter().filter(|e| e.ready) {
            let pod = e
                .pod
                .as_ref()
                .and_then(|(ns, n)| world.pod(ns, n))
                .or_else(|| e.addresses.first().and_then(|ip| world.pod_by_ip(ip)));
            let target = slice_port.or_else(|| pod.and_then(|p| service.target_port(port, p)));
            if let (Some(ip), Some(target)) = (e.addresses.first(), target) {
                out.push(endpoint(ip, target, pod));
            }
        }
    }
    out
}

fn endpoint(ip: &str, port: u16, pod: Option<&Pod>) -> Endpoint {
    let (workload, meta) = match pod {
        Some(p) => {
            let w = p.workload().name;
            let (cname, mut crev) = canonical_service(&p.labels, &w);
            // util.go AppendLbEndpointMetadata: the default revision is not sent.
            if crev == "latest" {
                crev.clear();
            }
            let meta = format!("{w};{};{cname};{crev};Kubernetes", p.namespace);
            (w, meta)
        }
        None => (String::new(), String::new()),
    };
    Endpoint {
        ip: ip.to_string(),
        port,
        pod: pod.cloned(),
        tls_mode_istio: false,
        workload_meta: meta,
        workload,
    }
}

/// A Gateway server as a gateway pod serves it.
#[derive(Debug, Clone)]
pub(crate) struct BoundServer<'a> {
    pub gateway: &'a Gateway,
    pub server: &'a Server,
    /// The pod port Envoy listens on for this server.
    pub target_port: u16,
}

/// The Gateway servers that select `gw_pod`: a server's port maps to the pod port the
/// gateway Service sends it to (`80 → 8080`), else to itself.
pub(crate) fn gateway_servers<'a>(world: &'a World, gw_pod: &Pod) -> Vec<BoundServer<'a>> {
    let mut out = vec![];
    for gw in &world.gateways {
        if !selector_matches(&gw.selector, &gw_pod.labels) {
            continue;
        }
        for server in &gw.servers {
            let target_port = world
                .services
                .iter()
                .filter(|s| {
                    s.namespace == gw_pod.namespace
                        && !s.selector.is_empty()
                        && selector_matches(&s.selector, &gw_pod.labels)
                })
                .find_map(|s| {
                    let p = s.port(server.port)?;
                    s.target_port(p, gw_pod)
                })
                .unwrap_or(server.port);
            out.push(BoundServer {
                gateway: gw,
                server,
                target_port,
            });
        }
    }
    out
}

/// Whether `server` (of `gateway`) accepts `host`, and which VirtualService namespaces
/// it admits for that host.
pub(crate) fn server_admits(gateway: &Gateway, server: &Server, host: &str, vs_ns: &str) -> bool {
    server.hosts.iter().any(|entry| {
        let (ns, pattern) = server_host(entry, &gateway.namespace);
        ns.as_deref().is_none_or(|ns| ns == vs_ns) && host_matches(&pattern, host)
    })
}

/// A route destination's Service (short names resolve in the VirtualService's
/// namespace) and port (given, else the Service's only port, else `default_port`).
pub(crate) fn resolve_destination<'a>(
    world: &'a World,
    dest: &RouteDestination,
    vs_ns: &str,
    default_port: Option<u16>,
) -> Option<(&'a Service, u16)> {
    let service = world.resolve(&dest.host, vs_ns)?;
    let port = dest
        .port
        .or_else(|| (service.ports.len() == 1).then(|| service.ports[0].port))
        .or(default_port)?;
    Some((service, port))
}
