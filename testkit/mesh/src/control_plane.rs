//! The objects an installed Istio (`istioctl install --set profile=default --set
//! hub=docker.io/istio --set tag=<version>`) and its Prometheus addon leave in the
//! cluster, as the charts render them (istio/istio release-1.31:
//! `manifests/charts/istio-control/istio-discovery/templates/{deployment,service}.yaml`,
//! `manifests/charts/gateways/istio-ingress/{values.yaml,templates/deployment.yaml,
//! templates/service.yaml}`, `samples/addons/prometheus.yaml`). Abridged to the fields
//! a controller, the injector and the harness read.

use serde_json::{Value, json};

const NS: &str = "istio-system";

fn istio_labels(version: &str) -> Value {
    json!({
        "app.kubernetes.io/part-of": "istio",
        "app.kubernetes.io/version": version,
        "app.kubernetes.io/instance": "istio",
        "helm.sh/chart": format!("istiod-{version}"),
    })
}

/// What `istioctl install` stamps on every object it applies
/// (operator/pkg/install `getOwnerLabels`, `applyLabelsAndAnnotations`).
fn owner_labels(version: &str, revision: &str) -> Value {
    json!({
        "operator.istio.io/managed": "Reconcile",
        "operator.istio.io/version": version,
        "install.operator.istio.io/owning-resource-namespace": NS,
        "istio.io/rev": revision,
    })
}

fn merge(a: Value, b: &Value) -> Value {
    let mut a = a;
    if let (Some(m), Some(n)) = (a.as_object_mut(), b.as_object()) {
        for (k, v) in n {
            m.insert(k.clone(), v.clone());
        }
    }
    a
}

/// istiod of `revision` (`default`: the install without `--set revision`, Deployment
/// `istiod` selecting `istio: pilot`; else `istiod-<revision>` selecting `app: istiod`
/// and `istio.io/rev`, chart `templates/deployment.yaml`).
pub(crate) fn istiod(version: &str, revision: &str) -> Vec<Value> {
    let default = revision == "default";
    let name = if default {
        "istiod".to_string()
    } else {
        format!("istiod-{revision}")
    };
    let selector = if default {
        json!({"istio": "pilot"})
    } else {
        json!({"app": "istiod", "istio.io/rev": revision})
    };
    let labels = merge(
        merge(
            json!({"app": "istiod", "istio.io/rev": revision, "install.operator.istio.io/owning-resource": "unknown",
                   "operator.istio.io/component": "Pilot", "istio": "pilot", "release": "istio",
                   "app.kubernetes.io/name": "istiod"}),
            &istio_labels(version),
        ),
        &owner_labels(version, revision),
    );
    let pod_labels = merge(
        json!({"app": "istiod", "istio.io/rev": revision, "install.operator.istio.io/owning-resource": "unknown",
               "sidecar.istio.io/inject": "false", "operator.istio.io/component": "Pilot", "istio": "pilot",
               "istio.io/dataplane-mode": "none", "app.kubernetes.io/name": "istiod"}),
        &istio_labels(version),
    );
    vec![
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {
                "replicas": 1,
                "strategy": {"rollingUpdate": {"maxSurge": "100%", "maxUnavailable": "25%"}},
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": pod_labels,
                                 "annotations": {"prometheus.io/port": "15014", "prometheus.io/scrape": "true",
                                                 "sidecar.istio.io/inject": "false"}},
                    "spec": {
                        "serviceAccountName": "istiod",
                        "containers": [{
                            "name": "discovery",
                            "image": format!("docker.io/istio/pilot:{version}"),
                            "args": ["discovery", "--monitoringAddr=:15014", "--log_output_level=default:info",
                                     "--domain", "cluster.local", "--keepaliveMaxServerConnectionAge", "30m"],
                            "ports": [
                                {"containerPort": 8080, "name": "http-debug", "protocol": "TCP"},
                                {"containerPort": 15010, "name": "grpc-xds", "protocol": "TCP"},
                                {"containerPort": 15012, "name": "tls-xds", "protocol": "TCP"},
                                {"containerPort": 15017, "name": "https-webhooks", "protocol": "TCP"},
                                {"containerPort": 15014, "name": "http-monitoring", "protocol": "TCP"}
                            ],
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080},
                                               "initialDelaySeconds": 1, "periodSeconds": 3, "timeoutSeconds": 5},
                            "env": [{"name": "REVISION", "value": revision},
                                    {"name": "PILOT_CERT_PROVIDER", "value": "istiod"}]
                        }]
                    }
                }
            }
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NS,
                         "labels": merge(merge(json!({"istio.io/rev": revision, "install.operator.istio.io/owning-resource": "unknown",
                                                "operator.istio.io/component": "Pilot", "app": "istiod", "istio": "pilot",
                                                "release": "istio", "app.kubernetes.io/name": "istiod"}), &istio_labels(version)),
                                         &owner_labels(version, revision))},
            "spec": {
                "ports": [
                    {"port": 15010, "name": "grpc-xds", "protocol": "TCP"},
                    {"port": 15012, "name": "https-dns", "protocol": "TCP"},
                    {"port": 443, "name": "https-webhook", "targetPort": 15017, "protocol": "TCP"},
                    {"port": 15014, "name": "http-monitoring", "protocol": "TCP"}
                ],
                "selector": if default { json!({"app": "istiod", "istio": "pilot"}) } else { json!({"app": "istiod", "istio.io/rev": revision}) }
            }
        }),
    ]
}

fn ingress_gateway(version: &str) -> Vec<Value> {
    let selector = json!({"app": "istio-ingressgateway", "istio": "ingressgateway"});
    let labels = merge(
        merge(
            selector.clone(),
            &json!({"release": "istio", "istio.io/rev": "default",
            "install.operator.istio.io/owning-resource": "unknown", "operator.istio.io/component": "IngressGateways",
            "app.kubernetes.io/name": "istio-ingressgateway", "istio.io/dataplane-mode": "none"}),
        ),
        &merge(istio_labels(version), &owner_labels(version, "default")),
    );
    let pod_labels = merge(
        selector.clone(),
        &json!({"heritage": "Tiller", "release": "istio", "chart": "gateways",
                "service.istio.io/canonical-name": "istio-ingressgateway",
                "service.istio.io/canonical-revision": "latest", "istio.io/rev": "default",
                "install.operator.istio.io/owning-resource": "unknown",
                "operator.istio.io/component": "IngressGateways", "sidecar.istio.io/inject": "false",
                "app.kubernetes.io/name": "istio-ingressgateway", "istio.io/dataplane-mode": "none"}),
    );
    let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}});
    vec![
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "istio-ingressgateway", "namespace": NS, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "strategy": {"rollingUpdate": {"maxSurge": "100%", "maxUnavailable": "25%"}},
                "template": {
                    "metadata": {
                        "labels": pod_labels,
                        "annotations": {"istio.io/rev": "default", "prometheus.io/port": "15020",
                                        "prometheus.io/scrape": "true", "prometheus.io/path": "/stats/prometheus",
                                        "sidecar.istio.io/inject": "false"}
                    },
                    "spec": {
                        "securityContext": {"runAsUser": 1337, "runAsGroup": 1337, "runAsNonRoot": true},
                        "serviceAccountName": "istio-ingressgateway-service-account",
                        "containers": [{
                            "name": "istio-proxy",
                            "image": format!("docker.io/istio/proxyv2:{version}"),
                            "ports": [
                                {"containerPort": 15021, "protocol": "TCP"},
                                {"containerPort": 8080, "protocol": "TCP"},
                                {"containerPort": 8443, "protocol": "TCP"},
                                {"containerPort": 15090, "protocol": "TCP", "name": "http-envoy-prom"}
                            ],
                            "args": ["proxy", "router", "--domain", "$(POD_NAMESPACE).svc.cluster.local",
                                     "--proxyLogLevel=warning", "--proxyComponentLogLevel=misc:error",
                                     "--log_output_level=default:info"],
                            "readinessProbe": {"failureThreshold": 30, "httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"},
                                               "initialDelaySeconds": 1, "periodSeconds": 2, "successThreshold": 1, "timeoutSeconds": 1},
                            "env": [
                                field("NODE_NAME", "spec.nodeName"),
                                field("POD_NAME", "metadata.name"),
                                field("POD_NAMESPACE", "metadata.namespace"),
                                field("INSTANCE_IP", "status.podIP"),
                                field("HOST_IP", "status.hostIP"),
                                field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
                                {"name": "ISTIO_META_WORKLOAD_NAME", "value": "istio-ingressgateway"},
                                {"name": "ISTIO_META_OWNER", "value": "kubernetes://apis/apps/v1/namespaces/istio-system/deployments/istio-ingressgateway"},
                                {"name": "ISTIO_META_MESH_ID", "value": "cluster.local"},
                                {"name": "TRUST_DOMAIN", "value": "cluster.local"},
                                {"name": "ISTIO_META_UNPRIVILEGED_POD", "value": "true"},
                                {"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"},
                                field("ISTIO_META_NODE_NAME", "spec.nodeName")
                            ]
                        }]
                    }
                }
            }
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "istio-ingressgateway", "namespace": NS,
                         "labels": merge(selector.clone(), &json!({"release": "istio", "istio.io/rev": "default",
                             "install.operator.istio.io/owning-resource": "unknown",
                             "operator.istio.io/component": "IngressGateways",
                             "app.kubernetes.io/name": "istio-ingressgateway"}))},
            "spec": {
                "type": "LoadBalancer",
                "selector": selector,
                "ports": [
                    {"name": "status-port", "port": 15021, "protocol": "TCP", "targetPort": 15021},
                    {"name": "http2", "port": 80, "protocol": "TCP", "targetPort": 8080},
                    {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443}
                ]
            }
        }),
    ]
}

fn prometheus() -> Vec<Value> {
    let labels = json!({"app.kubernetes.io/component": "server", "app.kubernetes.io/name": "prometheus",
        "app.kubernetes.io/instance": "prometheus", "app.kubernetes.io/version": "v3.10.0",
        "helm.sh/chart": "prometheus-28.13.0", "app.kubernetes.io/part-of": "prometheus"});
    let selector = json!({"app.kubernetes.io/component": "server", "app.kubernetes.io/name": "prometheus",
        "app.kubernetes.io/instance": "prometheus"});
    let pod_labels = merge(labels.clone(), &json!({"sidecar.istio.io/inject": "false"}));
    vec![
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "prometheus", "namespace": NS, "labels": labels},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": pod_labels},
                    "spec": {
                        "serviceAccountName": "prometheus",
                        "containers": [
                            {"name": "prometheus-server-configmap-reload",
                             "image": "ghcr.io/prometheus-operator/prometheus-config-reloader:v0.89.0",
                             "args": ["--watched-dir=/etc/config", "--listen-address=0.0.0.0:8080",
                                      "--reload-url=http://127.0.0.1:9090/-/reload"],
                             "ports": [{"containerPort": 8080, "name": "metrics"}]},
                            {"name": "prometheus-server", "image": "docker.io/prom/prometheus:v3.10.0",
                             "args": ["--storage.tsdb.retention.time=15d", "--config.file=/etc/config/prometheus.yml",
                                      "--storage.tsdb.path=/data", "--web.enable-lifecycle"],
                             "ports": [{"containerPort": 9090}],
                             "readinessProbe": {"httpGet": {"path": "/-/ready", "port": 9090, "scheme": "HTTP"},
                                                "periodSeconds": 5, "timeoutSeconds": 4}}
                        ]
                    }
                }
            }
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "prometheus", "namespace": NS, "labels": labels},
            "spec": {"ports": [{"name": "http", "port": 9090, "protocol": "TCP", "targetPort": 9090}],
                     "selector": selector, "type": "ClusterIP"}
        }),
    ]
}

/// One injector webhook (chart `templates/mutatingwebhook.yaml`), sending to `service`.
fn injector_webhook(
    name: &str,
    service: &str,
    namespace_selector: Value,
    object_selector: Value,
) -> Value {
    json!({
        "name": name,
        "clientConfig": {"service": {"name": service, "namespace": NS, "path": "/inject", "port": 443}},
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
        "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"],
        "namespaceSelector": namespace_selector,
        "objectSelector": object_selector,
    })
}

fn not_false() -> Value {
    json!({"key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"]})
}

/// The `rev.namespace.` and `rev.object.` webhooks answering `istio.io/rev=<value>`.
fn revision_webhooks(value: &str, service: &str) -> Vec<Value> {
    vec![
        injector_webhook(
            "rev.namespace.sidecar-injector.istio.io",
            service,
            json!({"matchExpressions": [{"key": "istio.io/rev", "operator": "In", "values": [value]},
                                        {"key": "istio-injection", "operator": "DoesNotExist"}]}),
            json!({"matchExpressions": [not_false()]}),
        ),
        injector_webhook(
            "rev.object.sidecar-injector.istio.io",
            service,
            json!({"matchExpressions": [{"key": "istio.io/rev", "operator": "DoesNotExist"},
                                        {"key": "istio-injection", "operator": "DoesNotExist"}]}),
            json!({"matchExpressions": [not_false(), {"key": "istio.io/rev", "operator": "In", "values": [value]}]}),
        ),
    ]
}

/// The `namespace.` and `object.` webhooks answering `istio-injection=enabled` and
/// `sidecar.istio.io/inject=true`.
fn default_webhooks(service: &str) -> Vec<Value> {
    vec![
        injector_webhook(
            "namespace.sidecar-injector.istio.io",
            service,
            json!({"matchExpressions": [{"key": "istio-injection", "operator": "In", "values": ["enabled"]}]}),
            json!({"matchExpressions": [not_false()]}),
        ),
        injector_webhook(
            "object.sidecar-injector.istio.io",
            service,
            json!({"matchExpressions": [{"key": "istio-injection", "operator": "DoesNotExist"},
                                        {"key": "istio.io/rev", "operator": "DoesNotExist"}]}),
            json!({"matchExpressions": [{"key": "sidecar.istio.io/inject", "operator": "In", "values": ["true"]},
                                        {"key": "istio.io/rev", "operator": "DoesNotExist"}]}),
        ),
    ]
}

/// `istio-sidecar-injector[-<revision>]`: the revision's own injector webhooks.
pub(crate) fn injector(version: &str, revision: &str) -> Value {
    let default = revision == "default";
    let (name, service) = if default {
        ("istio-sidecar-injector".to_string(), "istiod".to_string())
    } else {
        (
            format!("istio-sidecar-injector-{revision}"),
            format!("istiod-{revision}"),
        )
    };
    let mut webhooks = revision_webhooks(revision, &service);
    if default {
        webhooks.extend(default_webhooks(&service));
    }
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name, "labels": merge(merge(json!({"app": "sidecar-injector", "istio.io/rev": revision,
            "operator.istio.io/component": "Pilot", "release": "istio"}), &istio_labels(version)), &owner_labels(version, revision))},
        "webhooks": webhooks,
    })
}

/// The revision tag `tag` pointing at `revision` (`istioctl tag set`, or the `default`
/// tag `istioctl install` makes; chart `templates/revision-tags-mwc.yaml`): the webhook
/// configuration and its Service. `installed`: made by the install (with its owner
/// labels), not by `tag set` (which strips every `operator.istio.io` label).
pub(crate) fn revision_tag(
    version: &str,
    tag: &str,
    revision: &str,
    installed: bool,
) -> Vec<Value> {
    let service = if revision == "default" {
        "istiod".to_string()
    } else {
        format!("istiod-{revision}")
    };
    let mut webhooks = revision_webhooks(tag, &service);
    if tag == "default" {
        webhooks.extend(default_webhooks(&service));
    }
    let mut labels = merge(
        json!({"istio.io/tag": tag, "istio.io/rev": revision, "app": "sidecar-injector", "release": "istio",
               "app.kubernetes.io/name": "istiod"}),
        &istio_labels(version),
    );
    if installed {
        labels = merge(
            merge(
                labels,
                &json!({"operator.istio.io/component": "Pilot",
                                   "install.operator.istio.io/owning-resource-not-pruned": "true"}),
            ),
            &owner_labels(version, revision),
        );
    }
    let selector = json!({"app": "istiod", "istio.io/rev": revision});
    vec![
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": format!("istio-revision-tag-{tag}"), "labels": labels},
            "webhooks": webhooks,
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("istiod-revision-tag-{tag}"), "namespace": NS,
                         "labels": merge(labels.clone(), &json!({"app": "istiod", "istio": "pilot"}))},
            "spec": {
                "ports": [
                    {"port": 15010, "name": "grpc-xds", "protocol": "TCP"},
                    {"port": 15012, "name": "https-dns", "protocol": "TCP"},
                    {"port": 443, "name": "https-webhook", "targetPort": 15017, "protocol": "TCP"},
                    {"port": 15014, "name": "http-monitoring", "protocol": "TCP"}
                ],
                "selector": selector,
            }
        }),
    ]
}

/// What `istioctl` leaves of a revision's injector once the `default` tag took over
/// (istioctl/pkg/tag/util.go `DeactivateIstioInjectionWebhook`): every webhook's
/// selectors match `istio.io/deactivated: never-match`.
pub(crate) fn deactivated(mut injector: Value) -> Value {
    if let Some(hooks) = injector["webhooks"].as_array_mut() {
        for h in hooks {
            h["namespaceSelector"] =
                json!({"matchLabels": {"istio.io/deactivated": "never-match"}});
            h["objectSelector"] = json!({"matchLabels": {"istio.io/deactivated": "never-match"}});
        }
    }
    injector
}

/// Objects that make an installed Istio of `version` and its Prometheus addon, as
/// `istioctl install` leaves them: the `istio-system` Namespace, istiod (Deployment,
/// Service, its injector webhooks deactivated), the `default` revision tag it creates,
/// the ingress gateway and Prometheus (Deployments and Services).
pub(crate) fn objects(version: &str) -> Vec<Value> {
    let mut out = vec![json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NS, "labels": {"kubernetes.io/metadata.name": NS}}
    })];
    out.extend(istiod(version, "default"));
    out.push(deactivated(injector(version, "default")));
    out.extend(revision_tag(version, "default", "default", true));
    out.extend(ingress_gateway(version));
    out.extend(prometheus());
    out
}

/// Whether a pod is the Prometheus server (its container `prometheus-server`, port 9090).
pub(crate) fn is_prometheus(pod: &crate::objects::Pod) -> bool {
    crate::objects::container(&pod.spec, "containers", "prometheus-server").is_some()
}

/// Whether a pod is istiod (its container `discovery`).
pub(crate) fn is_istiod(pod: &crate::objects::Pod) -> bool {
    crate::objects::container(&pod.spec, "containers", "discovery").is_some()
}

/// Whether a pod runs one of Istio's own components rather than an app.
pub(crate) fn is_istio_component(pod: &crate::objects::Pod) -> bool {
    is_istiod(pod)
        || pod.proxy_kind() == Some(crate::objects::ProxyKind::Gateway)
        || is_prometheus(pod)
}
