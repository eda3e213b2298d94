//! `proxy-config`: the calling workload's Envoy clusters towards a service (and subset)
//! originate mutual TLS — or do not. Read from the caller's Envoy admin through a
//! port-forward, independent of Prometheus; polled until the config arrived (istiod
//! pushes within 100 ms–10 s), so behaviour is judged only after config converged. A
//! contradiction ends the wait at once when istiod reports the proxy synced to the
//! current config and a DestinationRule it carries decides the cluster by itself (see
//! `settled.rs`); until then, or when istiod cannot be read, the deadline decides.
//!
//! Longer than most files because which cluster a caller uses (Service, subset by
//! labels) and when a contradiction is final belong to this one expectation.

use super::settled::{self, Proof, Settled};
use super::{Env, secs};
use crate::cluster::istio;
use crate::cluster::{envoy_admin, workloads};
use crate::deadlines;
use crate::suite::duration::HumanDuration;
use crate::suite::validation::Validation;
use crate::suite::{Expectation, INGRESS_GATEWAY_WORKLOAD, SuiteError};
use crate::telemetry::destination_rule::RuleSpec;
use crate::telemetry::proxy_config::{self, DUMP_PATH};
use crate::verdict::{Evidence, Judgement};
use crate::wait::{self, Look};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

fn app_port() -> u16 {
    5000
}
fn proxy_config_deadline() -> HumanDuration {
    HumanDuration(deadlines::PROXY_CONFIG)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// The workload whose sidecar (or the ingress gateway) originates the calls.
    pub client: Spanned<String>,
    pub clusters: Vec<ClusterExpectation>,
    #[serde(default = "proxy_config_deadline")]
    pub deadline: HumanDuration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterExpectation {
    /// Service name in the app namespace.
    pub service: String,
    #[serde(default)]
    pub subset: Option<String>,
    #[serde(default = "app_port")]
    pub port: u16,
    pub mtls: bool,
}

/// Where the calls of `workload` originate: its namespace and Deployment.
fn caller(env: &Env<'_>, workload: &str) -> (String, String) {
    if workload == INGRESS_GATEWAY_WORKLOAD {
        (
            env.config.ingress_namespace.clone(),
            istio::INGRESS_GATEWAY.to_string(),
        )
    } else {
        (env.config.app_namespace.clone(), workload.to_string())
    }
}

/// The caller's clusters and the endpoints EDS gave them.
pub async fn config_dump(env: &Env<'_>, workload: &str) -> Result<serde_json::Value, String> {
    let (namespace, deployment) = caller(env, workload);
    envoy_admin::get_json_of(&env.cluster.streams, &namespace, &deployment, DUMP_PATH).await
}

/// Whether `from`'s proxy originates mTLS towards the pods of workload `to`: the
/// cluster it uses for them, and the endpoints of that cluster that are `to`'s pods.
pub async fn mtls_towards(env: &Env<'_>, from: &str, to: &str) -> Result<bool, String> {
    let dump = config_dump(env, from).await?;
    let name = cluster_towards(env, to).await?;
    let cluster = match proxy_config::find_cluster(&dump, &name) {
        proxy_config::ClusterLookup::Active(c) => c,
        proxy_config::ClusterLookup::Warming(_) => {
            return Err(format!(
                "{from}'s cluster {name} is still warming (its endpoints or secrets have not arrived): it carries no traffic yet"
            ));
        }
        proxy_config::ClusterLookup::Absent => {
            return Err(format!("{from}'s proxy has no cluster {name}"));
        }
    };
    let pods = workloads::pods_of(&env.cluster.client, &env.config.app_namespace, to).await?;
    let ips: Vec<String> = pods
        .iter()
        .flat_map(|p| p.status.iter().flat_map(|s| s.pod_ips.iter().flatten()))
        .map(|ip| ip.ip.clone())
        .collect();
    let towards: Vec<_> = proxy_config::endpoints(&dump, &name)
        .into_iter()
        .filter(|e| ips.contains(&e.address))
        .collect();
    let origination = proxy_config::origination(cluster, &towards);
    origination.mtls().ok_or_else(|| {
        if towards.is_empty() {
            format!("{from}'s cluster {name} has no endpoint of {to} yet (EDS): nothing shows what it sends")
        } else {
            format!(
                "{from}'s cluster {name} mixes mTLS and plaintext towards {to}: {}",
                origination.describe()
            )
        }
    })
}

fn labels_match(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The Envoy cluster a caller uses towards workload `to`: the Service selecting `to`'s
/// pods and, when a DestinationRule for that Service has a subset whose labels select
/// them, that subset. Nothing is assumed about names.
pub async fn cluster_towards(env: &Env<'_>, to: &str) -> Result<String, String> {
    let client = &env.cluster.client;
    let namespace = &env.config.app_namespace;
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(to)
        .await
        .map_err(|e| {
            let e = crate::words::Said::said(&e);
            format!("cannot read deployment {namespace}/{to}: {e}")
        })?;
    let pod_labels = deployment
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.labels)
        .unwrap_or_default();
    let services = Api::<Service>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| {
            let e = crate::words::Said::said(&e);
            format!("cannot list services in {namespace}: {e}")
        })?;
    let service = services
        .items
        .into_iter()
        .find(|s| {
            labels_match(
                &s.spec
                    .as_ref()
                    .and_then(|s| s.selector.clone())
                    .unwrap_or_default(),
                &pod_labels,
            )
        })
        .ok_or_else(|| format!("no Service in {namespace} selects the pods of {to}"))?;
    let service_name = service.metadata.name.clone().unwrap_or_default();
    let port = service
        .spec
        .and_then(|s| s.ports)
        .and_then(|p| p.first().map(|p| p.port))
        .unwrap_or(5000);
    let fqdn = format!("{service_name}.{namespace}.svc.cluster.local");
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "networking.istio.io",
        "v1",
        "DestinationRule",
    ));
    let rules: Vec<DynamicObject> =
        Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource)
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
    let subset = rules
        .iter()
        .filter(|r| {
            let host = r
                .data
                .pointer("/spec/host")
                .and_then(|h| h.as_str())
                .unwrap_or("");
            host == service_name || host == fqdn || host == format!("{service_name}.{namespace}")
        })
        .flat_map(|r| {
            r.data
                .pointer("/spec/subsets")
                .and_then(|s| s.as_array())
                .cloned()
                .unwrap_or_default()
        })
        .find(|subset| {
            let labels: BTreeMap<String, String> = subset
                .get("labels")
                .and_then(|l| l.as_object())
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            labels_match(&labels, &pod_labels)
        })
        .and_then(|s| s.get("name").and_then(|n| n.as_str()).map(str::to_string));
    let port =
        u16::try_from(port).map_err(|_| format!("service {service_name} has port {port}"))?;
    Ok(proxy_config::cluster_name(
        &service_name,
        namespace,
        port,
        subset.as_deref(),
    ))
}

impl ProxyConfig {
    /// The part of the step's time it spends (see [`Part`](crate::verdict::Part)).
    pub fn part(&self) -> crate::verdict::Part {
        crate::verdict::Part::Convergence
    }

    /// The least time it takes in a world already as expected: nothing beyond the
    /// cluster's own waits.
    pub fn least_time(&self, _scrape: Duration) -> Duration {
        Duration::ZERO
    }

    pub fn validate(
        &self,
        ctx: &mut Validation<'_>,
        _earlier: &[Expectation],
    ) -> Result<(), SuiteError> {
        ctx.workload(&self.client, true)?;
        if self.clusters.is_empty() {
            return Err(ctx.error(&self.client.referenced, "`proxy-config` names no cluster"));
        }
        Ok(())
    }

    pub fn deadline(&self) -> Duration {
        self.deadline.0
    }

    /// What the dump shows for each expected cluster.
    fn observe(&self, app_namespace: &str, dump: &serde_json::Value) -> Vec<Observed> {
        self.clusters
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let name = proxy_config::cluster_name(
                    &c.service,
                    app_namespace,
                    c.port,
                    c.subset.as_deref(),
                );
                let found = proxy_config::find_cluster(dump, &name);
                let origination = found.active().map(|cluster| {
                    proxy_config::origination(cluster, &proxy_config::endpoints(dump, &name))
                });
                Observed {
                    index,
                    name,
                    origination,
                    warming: matches!(found, proxy_config::ClusterLookup::Warming(_)),
                }
            })
            .collect()
    }

    fn line(&self, o: &Observed) -> String {
        let c = &self.clusters[o.index];
        match &o.origination {
            Some(origination) => format!(
                "{}: {} — expected {}",
                o.name,
                origination.describe(),
                if c.mtls {
                    "mTLS to every endpoint"
                } else {
                    "plaintext"
                }
            ),
            None if o.warming => format!(
                "{}: still warming in {}'s config (dynamic_warming_clusters: its endpoints or secrets have not arrived, so it carries no traffic)",
                o.name, self.client.value
            ),
            None => format!("{}: not in {}'s config yet", o.name, self.client.value),
        }
    }

    fn holds(&self, o: &Observed) -> bool {
        o.origination
            .as_ref()
            .is_some_and(|origination| origination.mtls() == Some(self.clusters[o.index].mtls))
    }

    /// Why the contradiction on this cluster is final under `proof`, or why it is not:
    /// a DestinationRule istiod pushed (and the proxy acked) must decide the cluster
    /// by itself: define its subset when it is missing, fix its TLS mode when it is
    /// there. Auto mTLS depends on endpoints, which may still change.
    fn why_final(
        &self,
        app_namespace: &str,
        o: &Observed,
        rules: &BTreeMap<String, RuleSpec>,
    ) -> Result<String, String> {
        let c = &self.clusters[o.index];
        let rule = rules.get(&host(c, app_namespace)).ok_or_else(|| {
            format!(
                "no DestinationRule decides {}: auto mTLS depends on endpoints, which may still change",
                o.name
            )
        })?;
        match (&o.origination, c.subset.as_deref()) {
            (None, _) if o.warming => Err(format!(
                "{} is warming: its endpoints or secrets may still arrive",
                o.name
            )),
            (None, Some(subset)) if rule.defines(subset) => Ok(format!(
                "DestinationRule {} defines subset {subset}, yet the synced proxy has no cluster {}",
                rule.label(),
                o.name
            )),
            (None, _) => Err(format!(
                "{} is missing and DestinationRule {} does not define it",
                o.name,
                rule.label()
            )),
            (Some(_), subset) => rule.fixed_tls(subset).map(|mode| {
                format!(
                    "DestinationRule {} sets {mode} for {}",
                    rule.label(),
                    o.name
                )
            }),
        }
    }

    pub async fn judge(&self, env: &Env<'_>) -> Judgement {
        let started = Instant::now();
        let (namespace, deployment) = caller(env, &self.client.value);
        wait::until_final(self.deadline.0, deadlines::POLL, || {
            self.look(env, &namespace, &deployment, started)
        })
        .await
    }

    /// One look at the caller's config; on a contradiction, whether it is final.
    async fn look(
        &self,
        env: &Env<'_>,
        namespace: &str,
        deployment: &str,
        started: Instant,
    ) -> Look<Judgement> {
        // Not readable yet (a pod starting): an error only if it stays so.
        let not_yet = |err: String| Look::Pending(Judgement::errored(err, started.elapsed()));
        let client = &env.cluster.client;
        let pod = match envoy_admin::ready_pod_of(client, namespace, deployment).await {
            Ok(p) => p,
            Err(err) => return not_yet(err),
        };
        let streams = &env.cluster.streams;
        let dump = match envoy_admin::get_json(streams, namespace, &pod, DUMP_PATH).await {
            Ok(d) => d,
            Err(err) => return not_yet(err),
        };
        let observed = self.observe(&env.config.app_namespace, &dump);
        if observed.iter().all(|o| self.holds(o)) {
            return Look::Final(self.verdict(&observed, started, None));
        }
        self.contradicted(env, namespace, &pod, observed, started)
            .await
    }

    /// The config contradicts the expectation: final when istiod reports it will not
    /// change by itself; otherwise pending (istiod may still be pushing), saying why.
    async fn contradicted(
        &self,
        env: &Env<'_>,
        namespace: &str,
        pod: &str,
        mut observed: Vec<Observed>,
        started: Instant,
    ) -> Look<Judgement> {
        let app_namespace = &env.config.app_namespace;
        let hosts: Vec<String> = self
            .clusters
            .iter()
            .map(|c| host(c, app_namespace))
            .collect();
        // Bounded like the dump's own exchange: istiod may accept and never answer. A
        // bound cut to what is left of the deadline would only blank the last look.
        let budget = deadlines::POD_HTTP;
        let asked = Instant::now();
        let examined = tokio::time::timeout(budget, settled::examine(env, namespace, pod, &hosts))
            .await
            .unwrap_or_else(|_| {
                Settled::Unreadable(format!("istiod did not answer within {}", secs(budget)))
            });
        let note = match examined {
            Settled::Yes(proof) => {
                observed = self.observe(app_namespace, &proof.dump);
                if observed.iter().all(|o| self.holds(o)) {
                    return Look::Final(self.verdict(&observed, started, None));
                }
                let (finals, open): (Vec<_>, Vec<_>) = observed
                    .iter()
                    .filter(|o| !self.holds(o))
                    .map(|o| self.why_final(app_namespace, o, &proof.rules))
                    .partition(Result::is_ok);
                let finals: Vec<String> = finals.into_iter().filter_map(Result::ok).collect();
                if !finals.is_empty() {
                    let settled = Some((proof.as_ref(), finals));
                    return Look::Final(self.verdict(&observed, started, settled));
                }
                let open: Vec<String> = open.into_iter().filter_map(Result::err).collect();
                format!(
                    "istiod reported {pod} synced, but what it contradicts may still change: {}",
                    open.join("; ")
                )
            }
            Settled::No(why) => format!("istiod never reported this config final: {why}"),
            Settled::Unreadable(why) => format!(
                "istiod's sync status could not be read, so the wait ran to its deadline: {why}"
            ),
        };
        // A slow istiod makes the look stale; what is judged (perhaps at the deadline)
        // is the config as it is now.
        if asked.elapsed() > deadlines::POLL
            && let Ok(dump) =
                envoy_admin::get_json(&env.cluster.streams, namespace, pod, DUMP_PATH).await
        {
            observed = self.observe(app_namespace, &dump);
            if observed.iter().all(|o| self.holds(o)) {
                return Look::Final(self.verdict(&observed, started, None));
            }
        }
        let mut judgement = self.verdict(&observed, started, None);
        judgement.evidence.summary = format!("{}; {note}", judgement.evidence.summary);
        judgement.evidence.details.push(note);
        Look::Pending(judgement)
    }

    /// Passed when every cluster is as expected; otherwise failed, with the proof when
    /// the contradiction is final.
    fn verdict(
        &self,
        observed: &[Observed],
        started: Instant,
        settled: Option<(&Proof, Vec<String>)>,
    ) -> Judgement {
        let lines: Vec<String> = observed.iter().map(|o| self.line(o)).collect();
        let elapsed = started.elapsed();
        let holds = observed.iter().all(|o| self.holds(o));
        let summary = if holds {
            format!("every cluster as expected after {}", secs(elapsed))
        } else {
            lines.join("; ")
        };
        let mut evidence = Evidence::new(summary).with_details(lines);
        evidence.timing.convergence = elapsed;
        if holds {
            return Judgement::passed(evidence, elapsed);
        }
        if let Some((proof, finals)) = settled {
            evidence.summary = format!(
                "{}; final {} after the start: {}; {}",
                evidence.summary,
                secs(elapsed),
                proof.describe(),
                finals.join("; ")
            );
            evidence.details.extend(finals);
            evidence.details.extend(proof.details());
        }
        Judgement::failed(evidence, elapsed)
    }
}

/// The service host of a cluster expectation: `name.sentences.svc.cluster.local`.
fn host(c: &ClusterExpectation, app_namespace: &str) -> String {
    format!("{}.{app_namespace}.svc.cluster.local", c.service)
}

/// One expected cluster as a config dump shows it.
struct Observed {
    /// Its place in `clusters`.
    index: usize,
    name: String,
    /// `None`: the proxy has no such cluster in use.
    origination: Option<proxy_config::Origination>,
    /// The proxy has the cluster only under `dynamic_warming_clusters`.
    warming: bool,
}

impl fmt::Display for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let clusters = self
            .clusters
            .iter()
            .map(|c| {
                format!(
                    "{}{} {}",
                    c.service,
                    c.subset
                        .as_deref()
                        .map(|s| format!("/{s}"))
                        .unwrap_or_default(),
                    if c.mtls { "mTLS" } else { "plaintext" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        write!(
            f,
            "{}'s proxy config: {} (within {})",
            self.client.value, clusters, self.deadline
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn expectation() -> ProxyConfig {
        serde_saphyr::from_str(
            "client: sentences\nclusters:\n  - { service: name, subset: name-v1, mtls: false }\n  - { service: name, subset: name-v2, mtls: true }\n  - { service: age, mtls: true }\n",
        )
        .unwrap()
    }

    /// name-v1 with auto mTLS (its rule's DISABLE ignored) towards a sidecar, age with
    /// auto mTLS towards a pod without tlsMode yet, no name-v2 cluster.
    fn dump() -> Value {
        let auto = json!([{"name": "tlsMode-istio", "match": {"tlsMode": "istio"},
                           "transport_socket": {"name": "envoy.transport_sockets.tls"}}]);
        let lb = |ip: &str, istio: bool| {
            let mut fm = json!({});
            if istio {
                fm["envoy.transport_socket_match"] = json!({"tlsMode": "istio"});
            }
            json!({"endpoint": {"address": {"socket_address": {"address": ip}}}, "metadata": {"filter_metadata": fm}})
        };
        json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "dynamic_active_clusters": [
                {"cluster": {"name": "outbound|5000|name-v1|name.sentences.svc.cluster.local", "transport_socket_matches": auto}},
                {"cluster": {"name": "outbound|5000||age.sentences.svc.cluster.local", "transport_socket_matches": auto}}]},
            {"@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump", "dynamic_endpoint_configs": [
                {"endpoint_config": {"cluster_name": "outbound|5000|name-v1|name.sentences.svc.cluster.local",
                                     "endpoints": [{"lb_endpoints": [lb("10.0.0.8", true)]}]}},
                {"endpoint_config": {"cluster_name": "outbound|5000||age.sentences.svc.cluster.local",
                                     "endpoints": [{"lb_endpoints": [lb("10.0.0.7", false)]}]}}]}
        ]})
    }

    fn rules(spec: Value) -> BTreeMap<String, RuleSpec> {
        let rule = RuleSpec::parse(&json!({
            "metadata": {"name": "name", "namespace": "sentences", "resourceVersion": "812"},
            "spec": spec
        }))
        .unwrap();
        BTreeMap::from([("name.sentences.svc.cluster.local".to_string(), rule)])
    }

    fn exercise_rule() -> BTreeMap<String, RuleSpec> {
        rules(json!({"host": "name", "subsets": [
            {"name": "name-v1", "trafficPolicy": {"tls": {"mode": "DISABLE"}}},
            {"name": "name-v2", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}]}))
    }

    #[test]
    fn a_contradiction_the_synced_rule_decides_is_final() {
        let e = expectation();
        let seen = e.observe("sentences", &dump());
        assert!(seen.iter().all(|o| !e.holds(o)), "all three contradict");
        let rules = exercise_rule();
        let v1 = e.why_final("sentences", &seen[0], &rules).unwrap();
        assert_eq!(
            v1,
            "DestinationRule sentences/name@812 sets DISABLE for outbound|5000|name-v1|name.sentences.svc.cluster.local"
        );
        let v2 = e.why_final("sentences", &seen[1], &rules).unwrap();
        assert!(
            v2.contains("defines subset name-v2, yet the synced proxy has no cluster"),
            "{v2}"
        );
    }

    #[test]
    fn auto_mtls_and_undecided_rules_are_never_final() {
        let e = expectation();
        let seen = e.observe("sentences", &dump());
        // age: no rule, its endpoint may still get its sidecar's tlsMode.
        let age = e
            .why_final("sentences", &seen[2], &exercise_rule())
            .unwrap_err();
        assert!(age.contains("auto mTLS depends on endpoints"), "{age}");
        // A rule without TLS for the subset, one without the subset, port-level settings.
        let plain = rules(json!({"host": "name", "subsets": [{"name": "name-v1"}]}));
        assert!(
            e.why_final("sentences", &seen[0], &plain)
                .unwrap_err()
                .contains("sets no TLS mode")
        );
        assert!(
            e.why_final("sentences", &seen[1], &plain)
                .unwrap_err()
                .contains("does not define it")
        );
        let ports = rules(
            json!({"host": "name", "trafficPolicy": {"portLevelSettings": [
            {"port": {"number": 5000}, "tls": {"mode": "ISTIO_MUTUAL"}}]},
            "subsets": [{"name": "name-v1", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}]}),
        );
        assert!(
            e.why_final("sentences", &seen[0], &ports)
                .unwrap_err()
                .contains("port-level")
        );
    }
}
