//! Envoy's admin API (port 15000) of a simulated proxy: `/config_dump` (with
//! `resource=` and `include_eds`), `/server_info`, `/stats`, `/stats/prometheus`,
//! `/ready`, reflecting the config the proxy got (`push_delay` old).
//!
//! Shapes follow Envoy's admin protos (`envoy.admin.v3.*ConfigDump`, snake_case JSON)
//! and Istio's golden dumps (istio/istio release-1.31
//! `istioctl/pkg/describe/testdata/describe/http_config.json`,
//! `istioctl/pkg/writer/envoy/configdump/testdata/endpoint/configdump.json`); the
//! cluster TLS shapes follow pilot/pkg/networking/core/cluster_tls.go: auto mTLS is a
//! `transport_socket_matches` pair (`tlsMode-istio` → `envoy.transport_sockets.tls`,
//! `tlsMode-disabled` → raw buffer), a DestinationRule `ISTIO_MUTUAL` a cluster
//! `transport_socket`, `DISABLE` none. Listeners and routes are abridged.

use crate::http::{Request, Response};
use crate::istio_config::{ClientTlsMode, MtlsMode};
use crate::objects::{Pod, ProxyKind};
use crate::policy::workload_mode;
use crate::routing::{self, Cluster, ClusterOptions, ClusterTls};
use crate::telemetry::{ProxyMeta, timestamp};
use crate::world::World;
use crate::{Inner, MeshOptions};
use serde_json::{Value, json};
use std::time::SystemTime;

/// The Envoy release an Istio minor ships (istio/proxy `ENVOY_VERSION.txt`: 1.30 →
/// 1.38.x, 1.31 → 1.39.x).
pub(crate) fn envoy_version(istio: &str) -> String {
    let mut parts = istio.split('.');
    let minor = parts
        .nth(1)
        .and_then(|m| m.parse::<u32>().ok())
        .unwrap_or(31);
    format!("1.{}.1-dev", minor + 8)
}

fn node(meta: &ProxyMeta, pod: &Pod) -> Value {
    let role = match meta.kind {
        ProxyKind::Sidecar => "sidecar",
        ProxyKind::Gateway => "router",
    };
    json!({
        "id": format!("{role}~{}~{}.{}~{}.svc.cluster.local", meta.ip, meta.pod, meta.namespace, meta.namespace),
        "cluster": format!("{}.{}", meta.workload, meta.namespace),
        "metadata": {
            "ISTIO_VERSION": meta.version,
            "NAMESPACE": meta.namespace,
            "NAME": meta.pod,
            "WORKLOAD_NAME": meta.workload,
            "LABELS": meta.labels,
            "ANNOTATIONS": pod.annotations,
            "CLUSTER_ID": "Kubernetes",
            "MESH_ID": "cluster.local",
            "INSTANCE_IPS": meta.ip,
            "SERVICE_ACCOUNT": meta.service_account,
            "INTERCEPTION_MODE": "REDIRECT",
            "PROXY_CONFIG": {"binaryPath": "/usr/local/bin/envoy", "statusPort": 15020,
                             "discoveryAddress": "istiod.istio-system.svc:15012"},
        },
        "locality": {},
        "user_agent_name": "envoy",
        "user_agent_build_version": build_version(&meta.version),
    })
}

fn build_version(istio: &str) -> Value {
    let envoy = envoy_version(istio);
    let nums: Vec<u32> = envoy
        .trim_end_matches("-dev")
        .split('.')
        .filter_map(|n| n.parse().ok())
        .collect();
    json!({
        "version": {"major_number": nums.first().copied().unwrap_or(1),
                    "minor_number": nums.get(1).copied().unwrap_or(39),
                    "patch": nums.get(2).copied().unwrap_or(1)},
        "metadata": {"build.type": "RELEASE", "revision.sha": "0000000000000000000000000000000000000000",
                     "revision.status": "Clean", "ssl.version": "BoringSSL"}
    })
}

/// `/server_info`.
pub(crate) fn server_info(meta: &ProxyMeta, pod: &Pod) -> Value {
    json!({
        "version": format!("0000000000000000000000000000000000000000/{}/Clean/RELEASE/BoringSSL", envoy_version(&meta.version)),
        "state": "LIVE",
        "hot_restart_version": "disabled",
        "command_line_options": {
            "base_id": "0", "concurrency": 2, "config_path": "etc/istio/proxy/envoy-rev.json",
            "log_level": "warning", "service_cluster": format!("{}.{}", meta.workload, meta.namespace),
            "service_node": node(meta, pod)["id"], "mode": "Serve", "drain_strategy": "Immediate",
        },
        "node": node(meta, pod),
        "uptime_current_epoch": "60s",
        "uptime_all_epochs": "60s",
    })
}

fn sds(name: &str) -> Value {
    json!({
        "name": name,
        "sds_config": {
            "api_config_source": {"api_type": "GRPC", "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}],
                                  "set_node_on_first_message_only": true, "transport_api_version": "V3"},
            "initial_fetch_timeout": "0s", "resource_api_version": "V3"
        }
    })
}

/// The `UpstreamTlsContext` of an Istio mTLS cluster.
fn istio_mutual_socket(sni: &str, sans: &[String]) -> Value {
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
                "alpn_protocols": ["istio-peer-exchange", "istio"],
                "tls_certificate_sds_secret_configs": [sds("default")],
                "combined_validation_context": {
                    "default_validation_context": {
                        "match_subject_alt_names": sans.iter().map(|s| json!({"exact": s})).collect::<Vec<_>>()
                    },
                    "validation_context_sds_secret_config": sds("ROOTCA")
                }
            },
            "sni": sni
        }
    })
}

fn raw_buffer() -> Value {
    json!({"name": "envoy.transport_sockets.raw_buffer",
           "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}})
}

pub(crate) fn cluster_json(c: &Cluster) -> Value {
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
    let mut cluster = json!({
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        "name": c.name,
        "type": "EDS",
        "eds_cluster_config": {
            "eds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
            "service_name": c.name
        },
        "connect_timeout": "10s",
        "lb_policy": "LEAST_REQUEST",
        "circuit_breakers": {"thresholds": [{"max_connections": 4294967295u64, "max_pending_requests": 4294967295u64,
            "max_requests": 4294967295u64, "max_retries": 4294967295u64, "track_remaining": true}]},
        "common_lb_config": {},
        "metadata": {"filter_metadata": {"istio": istio}},
        "filters": [{"name": "istio.metadata_exchange", "typed_config": {
            "@type": "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange",
            "protocol": "istio-peer-exchange", "enable_discovery": true}}],
    });
    let sans = &c.service_accounts;
    match c.tls {
        ClusterTls::Auto => {
            cluster["transport_socket_matches"] = json!([
                {"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": istio_mutual_socket(&c.sni(), sans)},
                {"name": "tlsMode-disabled", "match": {}, "transport_socket": raw_buffer()}
            ]);
        }
        ClusterTls::Rule(ClientTlsMode::IstioMutual) => {
            cluster["transport_socket"] = istio_mutual_socket(&c.sni(), sans);
        }
        ClusterTls::Rule(ClientTlsMode::Simple | ClientTlsMode::Mutual) => {
            cluster["transport_socket"] = json!({"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": {"tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"}}}});
        }
        ClusterTls::Rule(ClientTlsMode::Disable) | ClusterTls::Off => {}
    }
    cluster
}

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

/// Every outbound cluster the proxy has: each Service port, and each subset of the
/// DestinationRule that applies from the proxy's namespace.
pub(crate) fn outbound_clusters(
    world: &World,
    client_ns: &str,
    options: &MeshOptions,
    ignore_rule_tls: bool,
) -> Vec<Cluster> {
    let opts = ClusterOptions { ignore_rule_tls };
    let mut out = vec![];
    for s in &world.services {
        let rule = routing::destination_rule(world, s, client_ns, &options.root_namespace);
        for p in &s.ports {
            let mut subsets: Vec<Option<&str>> = vec![None];
            if let Some(r) = rule {
                subsets.extend(r.subsets.iter().map(|x| Some(x.name.as_str())));
            }
            for subset in subsets {
                if let Some(c) = routing::build_cluster(
                    world,
                    s,
                    p.port,
                    subset,
                    client_ns,
                    &options.root_namespace,
                    opts,
                ) {
                    out.push(c);
                }
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn stamped(inner: Value, key: &str, version: &str, now: &str) -> Value {
    json!({"version_info": version, key: inner, "last_updated": now})
}

/// The pod ports a sidecar intercepts for its Services, with the mode that applies.
fn inbound_ports(world: &World, pod: &Pod, root: &str) -> Vec<(u16, MtlsMode, String)> {
    let mut ports = vec![];
    for s in world.services.iter().filter(|s| {
        s.namespace == pod.namespace
            && !s.selector.is_empty()
            && crate::objects::selector_matches(&s.selector, &pod.labels)
    }) {
        for p in &s.ports {
            if let Some(t) = s.target_port(p, pod)
                && !ports.iter().any(|(x, _, _)| *x == t)
            {
                ports.push((t, workload_mode(world, pod, t, root), s.host()));
            }
        }
    }
    ports
}

fn listeners(
    world: &World,
    pod: &Pod,
    meta: &ProxyMeta,
    root: &str,
    version: &str,
    now: &str,
) -> Value {
    let mut out = vec![];
    match meta.kind {
        ProxyKind::Sidecar => {
            let mut chains = vec![];
            for (port, mode, _host) in inbound_ports(world, pod, root) {
                let tls_chain = json!({
                    "filter_chain_match": {"destination_port": port, "transport_protocol": "tls"},
                    "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                        "common_tls_context": {"alpn_protocols": ["h2", "http/1.1"],
                            "tls_certificate_sds_secret_configs": [sds("default")],
                            "combined_validation_context": {"default_validation_context": {}, "validation_context_sds_secret_config": sds("ROOTCA")}},
                        "require_client_certificate": true}},
                    "name": format!("0.0.0.0_{port}")
                });
                let raw_chain = json!({
                    "filter_chain_match": {"destination_port": port, "transport_protocol": "raw_buffer"},
                    "name": format!("0.0.0.0_{port}")
                });
                match mode {
                    MtlsMode::Strict => chains.push(tls_chain),
                    MtlsMode::Permissive => {
                        chains.push(tls_chain);
                        chains.push(raw_chain);
                    }
                    MtlsMode::Disable => chains.push(raw_chain),
                }
            }
            let l = json!({"@type": "type.googleapis.com/envoy.config.listener.v3.Listener", "name": "virtualInbound",
                "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15006}},
                "filter_chains": chains, "use_original_dst": true, "traffic_direction": "INBOUND"});
            out.push(json!({"name": "virtualInbound", "active_state": stamped(l, "listener", version, now)}));
            let l = json!({"@type": "type.googleapis.com/envoy.config.listener.v3.Listener", "name": "virtualOutbound",
                "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15001}},
                "use_original_dst": true, "traffic_direction": "OUTBOUND"});
            out.push(json!({"name": "virtualOutbound", "active_state": stamped(l, "listener", version, now)}));
        }
        ProxyKind::Gateway => {
            for (port, tls) in routing::gateway_listeners(world, pod) {
                let name = format!("0.0.0.0_{port}");
                let l = json!({"@type": "type.googleapis.com/envoy.config.listener.v3.Listener", "name": name,
                    "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
                    "filter_chains": [{"filter_chain_match": if tls { json!({"transport_protocol": "tls"}) } else { json!({}) }}],
                    "traffic_direction": "OUTBOUND"});
                out.push(
                    json!({"name": name, "active_state": stamped(l, "listener", version, now)}),
                );
            }
        }
    }
    json!({"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "version_info": version, "dynamic_listeners": out})
}

/// `GET /config_dump[?resource=X][&include_eds]`.
pub(crate) fn config_dump(inner: &Inner, pod: &Pod, meta: &ProxyMeta, req: &Request) -> Response {
    let world = inner.config_view();
    let now = timestamp(SystemTime::now());
    // Envoy shows the version_info of the xDS response: istiod's push version.
    let version = world.push_version.clone();
    let clusters = outbound_clusters(
        &world,
        &pod.namespace,
        &inner.options,
        inner.faults.destination_rule_ignored(),
    );
    let mut dynamic: Vec<Value> = clusters
        .iter()
        .map(|c| stamped(cluster_json(c), "cluster", &version, &now))
        .collect();
    for name in [
        "BlackHoleCluster",
        "PassthroughCluster",
        "InboundPassthroughCluster",
    ] {
        dynamic.push(stamped(
            json!({"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": name,
                   "type": if name == "BlackHoleCluster" { "STATIC" } else { "ORIGINAL_DST" },
                   "connect_timeout": "10s"}),
            "cluster",
            &version,
            &now,
        ));
    }
    if meta.kind == ProxyKind::Sidecar {
        for (port, _, host) in inbound_ports(&world, pod, &inner.options.root_namespace) {
            dynamic.push(stamped(
                json!({"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                       "name": format!("inbound|{port}||"), "type": "ORIGINAL_DST", "connect_timeout": "10s",
                       "metadata": {"filter_metadata": {"istio": {"services": [{"host": host}]}}}}),
                "cluster",
                &version,
                &now,
            ));
        }
    }
    let statics: Vec<Value> = ["prometheus_stats", "agent", "sds-grpc", "xds-grpc"]
        .iter()
        .map(|n| {
            json!({"cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": n,
                                "type": "STATIC", "connect_timeout": "1s"}, "last_updated": now})
        })
        .collect();
    let bootstrap = json!({"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
        "bootstrap": {"node": node(meta, pod),
                      "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15000}}}},
        "last_updated": now});
    let clusters_dump = json!({"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
        "version_info": version, "static_clusters": statics, "dynamic_active_clusters": dynamic});
    let endpoints_dump = json!({"@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
        "dynamic_endpoint_configs": clusters.iter().map(|c| json!({"endpoint_config": load_assignment(c)})).collect::<Vec<_>>()});
    let routes_dump = routes(&world, pod, meta, &version, &now);
    let secrets: Vec<Value> = ["default", "ROOTCA"]
        .iter()
        .map(|n| {
            json!({"name": n, "version_info": version, "last_updated": now,
                   "secret": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret", "name": n}})
        })
        .collect();
    let mut configs = vec![bootstrap, clusters_dump];
    if req.query("include_eds").is_some() {
        configs.push(endpoints_dump);
    }
    configs.push(listeners(
        &world,
        pod,
        meta,
        &inner.options.root_namespace,
        &version,
        &now,
    ));
    configs.push(json!({"@type": "type.googleapis.com/envoy.admin.v3.ScopedRoutesConfigDump"}));
    configs.push(routes_dump);
    configs.push(json!({"@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump", "dynamic_active_secrets": secrets}));
    match req.query("resource") {
        None => Response::json(&json!({"configs": configs})),
        Some(resource) => {
            for cfg in &configs {
                if let Some(items) = cfg.get(&resource).and_then(Value::as_array) {
                    let base = cfg.get("@type").and_then(Value::as_str).unwrap_or("");
                    let item_type = format!("{base}.{}", item_type(&resource));
                    let typed: Vec<Value> = items
                        .iter()
                        .map(|i| {
                            let mut m = serde_json::Map::new();
                            m.insert("@type".into(), json!(item_type));
                            if let Some(o) = i.as_object() {
                                m.extend(o.clone());
                            }
                            Value::Object(m)
                        })
                        .collect();
                    return Response::json(&json!({"configs": typed}));
                }
            }
            Response::text(
                404,
                format!("resource {resource} not found in config dump\n"),
            )
        }
    }
}

fn item_type(resource: &str) -> &'static str {
    match resource {
        "dynamic_active_clusters" | "dynamic_warming_clusters" => "DynamicCluster",
        "static_clusters" => "StaticCluster",
        "dynamic_endpoint_configs" => "DynamicEndpointConfig",
        "dynamic_listeners" => "DynamicListener",
        "dynamic_route_configs" => "DynamicRouteConfig",
        "dynamic_active_secrets" => "DynamicSecret",
        _ => "Item",
    }
}

fn routes(world: &World, pod: &Pod, meta: &ProxyMeta, version: &str, now: &str) -> Value {
    let mut configs = vec![];
    match meta.kind {
        ProxyKind::Sidecar => {
            let mut by_port: std::collections::BTreeMap<u16, Vec<Value>> = Default::default();
            for s in &world.services {
                for p in &s.ports {
                    let cluster = routing::cluster_name(s, p.port, None);
                    let route = match routing::mesh_route(world, s, "/") {
                        Some((vs, r)) => {
                            let weighted: Vec<Value> = r
                                .route
                                .iter()
                                .filter_map(|d| {
                                    let (svc, port) = routing::resolve_destination(world, d, &vs.namespace, Some(p.port))?;
                                    Some(json!({"name": routing::cluster_name(svc, port, d.subset.as_deref()), "weight": d.weight}))
                                })
                                .collect();
                            json!({"weighted_clusters": {"clusters": weighted}})
                        }
                        None => json!({"cluster": cluster}),
                    };
                    by_port.entry(p.port).or_default().push(json!({
                        "name": format!("{}:{}", s.host(), p.port),
                        "domains": [format!("{}.{}", s.name, s.namespace), s.host(), s.name.clone()],
                        "routes": [{"match": {"prefix": "/"}, "route": route, "name": "default"}]
                    }));
                }
            }
            for (port, vhosts) in by_port {
                configs.push(stamped(
                    json!({"@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                           "name": port.to_string(), "virtual_hosts": vhosts, "validate_clusters": false}),
                    "route_config",
                    version,
                    now,
                ));
            }
        }
        ProxyKind::Gateway => {
            for (port, tls) in routing::gateway_listeners(world, pod) {
                let scheme = if tls { "https" } else { "http" };
                configs.push(stamped(
                    json!({"@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                           "name": format!("{scheme}.{port}"), "validate_clusters": false}),
                    "route_config",
                    version,
                    now,
                ));
            }
        }
    }
    json!({"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", "dynamic_route_configs": configs})
}

/// Whether the proxy's stats matcher keeps `stat` (pkg/bootstrap/config.go
/// `getStatsOptions` and the bootstrap template's `stats_matcher.inclusion_list`):
/// pod annotations `sidecar.istio.io/statsInclusion{Prefixes,Suffixes,Regexps}` replace
/// the mesh's `proxyStatsMatcher`; Istio's required entries are always added.
pub(crate) fn stat_included(pod: &Pod, options: &MeshOptions, stat: &str) -> bool {
    let ip = pod.ip.clone().unwrap_or_default();
    let list = |anno: &str, mesh: &[String], required: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = match pod.annotations.get(anno) {
            Some(a) if !a.is_empty() => a.split(',').map(|s| s.trim().to_string()).collect(),
            _ => mesh.to_vec(),
        };
        v.extend(required.iter().map(|s| s.to_string()));
        v.into_iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.replace("{pod_ip}", &ip))
            .collect()
    };
    let prefixes = list(
        "sidecar.istio.io/statsInclusionPrefixes",
        &options.stats_inclusion_prefixes,
        &[
            "cluster_manager",
            "listener_manager",
            "server",
            "cluster.xds-grpc",
            "wasm",
            "reporter=",
            "component",
            "istio",
        ],
    );
    let suffixes = list(
        "sidecar.istio.io/statsInclusionSuffixes",
        &options.stats_inclusion_suffixes,
        &[
            "rbac.allowed",
            "rbac.denied",
            "shadow_allowed",
            "shadow_denied",
            "downstream_cx_active",
        ],
    );
    let regexps = list(
        "sidecar.istio.io/statsInclusionRegexps",
        &options.stats_inclusion_regexps,
        &[r"vhost\..*\.route\..*"],
    );
    prefixes.iter().any(|p| stat.starts_with(p.as_str()))
        || suffixes.iter().any(|s| stat.ends_with(s.as_str()))
        || regexps.iter().any(|r| {
            regex::Regex::new(&format!("^(?:{r})$"))
                .map(|re| re.is_match(stat))
                .unwrap_or(false)
        })
}

pub(crate) const NO_FILTER_CHAIN_STAT: &str = "listener.0.0.0.0_15006.no_filter_chain_match";

/// The admin handler of one proxy.
pub(crate) fn handle(inner: &Inner, pod: &Pod, req: &Request) -> Response {
    let Some(kind) = pod.live_proxy() else {
        return Response::text(503, "no proxy\n");
    };
    let meta = ProxyMeta::of(pod, kind, &inner.options.trust_domain);
    let listener_stat = stat_included(pod, &inner.options, NO_FILTER_CHAIN_STAT);
    match req.path_only() {
        "/config_dump" => config_dump(inner, pod, &meta, req),
        "/server_info" => Response::json(&server_info(&meta, pod)),
        "/stats/prometheus" => Response::new(
            200,
            "text/plain; charset=UTF-8",
            inner.telemetry.render(&meta, listener_stat),
        ),
        "/stats" => Response::text(200, inner.telemetry.render_text(&meta, listener_stat)),
        "/ready" => Response::text(200, "LIVE\n"),
        "/" => Response::text(200, "envoy admin\n"),
        _ => Response::text(
            404,
            "invalid path. admin commands are:\n  /config_dump\n  /ready\n  /server_info\n  /stats\n  /stats/prometheus\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_follows_the_istio_minor() {
        assert_eq!(envoy_version("1.31.0"), "1.39.1-dev");
        assert_eq!(envoy_version("1.30.4"), "1.38.1-dev");
    }
}
