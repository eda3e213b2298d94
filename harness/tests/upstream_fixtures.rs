//! The harness's parsers of admin output against output a real istio-proxy, Envoy and
//! istiod produced (`../shared/fixtures/upstream/`, copied unchanged from istio/istio
//! and kiali/kiali; its README names each file's origin). Read from that path, never
//! copied into the project.

mod common;

use harness::telemetry::proxy_config::{
    ClusterLookup, Endpoint, Origination, endpoints, find_cluster, origination,
};
use harness::telemetry::xds_sync::{self, TypeStatus};
use serde_json::Value;

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let trials = vec![
        common::trial_on_fixture(
            "a_sidecar_dump_with_routes_first_yields_its_clusters_and_not_its_route_entries",
            "istio_describe_http_config.json",
            describe_http_config,
        ),
        common::trial_on_fixture(
            "an_endpoints_dump_yields_each_endpoint_with_its_tls_mode",
            "istio_endpoint_configdump.json",
            endpoint_configdump,
        ),
        common::trial_on_fixture(
            "a_waypoint_dump_yields_static_and_dynamic_clusters_and_internal_endpoints",
            "istio_proxyconfig_config_dump.json",
            waypoint_config_dump,
        ),
        common::trial_on_fixture(
            "an_istiod_syncz_in_the_flat_form_of_istio_1_14_is_read_per_type",
            "kiali_registry_syncz.json",
            kiali_syncz,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn describe_http_config(dump: Value) {
    // The RoutesConfigDump comes first and its routes name
    // `outbound|9080||productpage…` as their cluster; the ClustersConfigDump holds only
    // the `v1` subset cluster.
    let v1 = "outbound|9080|v1|productpage.default.svc.cluster.local";
    let cluster = find_cluster(&dump, v1)
        .active()
        .expect("the v1 subset cluster is active");
    assert_eq!(
        cluster.get("@type").and_then(Value::as_str),
        Some("type.googleapis.com/envoy.config.cluster.v3.Cluster"),
        "the object found is the cluster itself"
    );
    // Istio's auto mTLS: a tlsMode match, and no EDS in this dump, so nothing says what
    // it sends.
    let o = origination(cluster, &endpoints(&dump, v1));
    assert_eq!(
        o,
        Origination::Auto {
            tls: 0,
            plaintext: 0
        }
    );
    assert_eq!(o.mtls(), None);
    let routed_only = "outbound|9080||productpage.default.svc.cluster.local";
    assert!(dump.to_string().contains(routed_only), "the routes name it");
    assert_eq!(find_cluster(&dump, routed_only), ClusterLookup::Absent);
}

fn addresses(eps: &[Endpoint]) -> Vec<(&str, Option<&str>)> {
    eps.iter()
        .map(|e| (e.address.as_str(), e.tls_mode.as_deref()))
        .collect()
}

fn endpoint_configdump(dump: Value) {
    let reviews = endpoints(&dump, "outbound|9080||reviews.default.svc.cluster.local");
    assert_eq!(
        addresses(&reviews),
        [
            ("10.244.0.192", Some("istio")),
            ("10.244.0.193", Some("istio")),
            ("10.244.0.195", Some("istio"))
        ]
    );
    // istiod has no sidecar: no tlsMode on its endpoint.
    let istiod = endpoints(
        &dump,
        "outbound|15012||istiod.istio-system.svc.cluster.local",
    );
    assert_eq!(addresses(&istiod), [("10.244.0.175", None)]);
    let dns = endpoints(&dump, "outbound|53||kube-dns.kube-system.svc.cluster.local");
    assert_eq!(dns.len(), 2);
    assert!(dns.iter().all(|e| e.tls_mode.is_none()));
    // Static assignments are endpoints too; clusters without any yield none.
    assert_eq!(addresses(&endpoints(&dump, "agent")), [("127.0.0.1", None)]);
    assert!(endpoints(&dump, "BlackHoleCluster").is_empty());
    assert!(endpoints(&dump, "outbound|9080||nowhere.default.svc.cluster.local").is_empty());
    // This dump has no clusters section: no cluster is found in it.
    assert_eq!(
        find_cluster(&dump, "outbound|9080||reviews.default.svc.cluster.local"),
        ClusterLookup::Absent
    );
}

fn waypoint_config_dump(dump: Value) {
    let vip = "inbound-vip|8000|http|httpbin.default.svc.cluster.local";
    let cluster = find_cluster(&dump, vip)
        .active()
        .expect("a dynamic cluster");
    assert!(cluster.get("transport_socket").is_some());
    assert!(
        find_cluster(&dump, "agent").active().is_some(),
        "a static one"
    );
    // HBONE: an internal address, no socket address, and `tunnel`-style metadata
    // instead of tlsMode.
    let internal = endpoints(
        &dump,
        "inbound-vip|8100|http|httpbin.default.svc.cluster.local",
    );
    assert_eq!(addresses(&internal), [("", None)]);
    let stats = endpoints(&dump, "prometheus_stats");
    assert_eq!(addresses(&stats), [("127.0.0.1", None)]);
}

fn kiali_syncz(body: Value) {
    let proxies = xds_sync::parse_syncz(&body).expect("istiod's 1.14 syncz parses");
    assert_eq!(proxies.len(), 34);
    for p in &proxies {
        assert!(xds_sync::split_proxy_id(&p.id).is_some(), "{}", p.id);
        assert!(p.not_synced().is_empty(), "{}: {:?}", p.id, p.not_synced());
        let cds = p
            .of_type(xds_sync::CLUSTER_TYPE)
            .expect("CDS is always there");
        assert_eq!(cds.status(), TypeStatus::Synced, "{}", p.id);
        let version = p.cluster_version().expect("the acked CDS nonce has a UUID");
        assert_eq!(
            format!("{version}{}", &cds.acked[version.len()..]),
            cds.acked
        );
        assert!(!version.is_empty());
    }
    // One proxy was never sent routes (the flat form then has no route_* keys).
    let not_sent: Vec<&str> = proxies
        .iter()
        .filter(|p| {
            p.of_type("type.googleapis.com/envoy.config.route.v3.RouteConfiguration")
                .is_some_and(|t| t.status() == TypeStatus::NotSent)
        })
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(not_sent.len(), 1, "{not_sent:?}");
    let ingress = proxies
        .iter()
        .find(|p| p.id == "istio-ingressgateway-c974cd485-qdc7m.istio-system")
        .expect("the ingress gateway is listed");
    assert_eq!(ingress.istio_version, "1.14.1");
}
