//! Whether a proxy's config can still change by itself, as istiod tells it. Settled
//! means:
//! - exactly one istiod pod reports a connection from the proxy (`/debug/syncz` of
//!   every ready istiod, of every revision), and no other proxy it reports could be
//!   taken for it by `/debug/sidecarz`'s substring lookup;
//! - every xDS type istiod sent it was acked and none rejected (`istioctl
//!   proxy-status`'s SYNCED), clusters included;
//! - the clusters it acked come from the push its SidecarScope was computed for
//!   (`/debug/sidecarz`), and that scope carries, for every service judged, exactly the
//!   DestinationRules the API server holds now (same names and resourceVersions): the
//!   acked push came after istiod had the config the step applied;
//! - nothing was sent to it between that report and a second one taken after its
//!   config dump was read again, so the dump is what it acked.
//!
//! What istiod does not answer, or answers in a shape not known here, is `Unreadable`:
//! the caller then waits for its deadline, as it would without this.
//!
//! Longer than most files because each condition above is a way an early failure could
//! be wrong; they stay together with the tests of the worlds that must not settle.

use super::Env;
use crate::cluster::{envoy_admin, istio_objects, istiod_debug};
use crate::telemetry::destination_rule::RuleSpec;
use crate::telemetry::proxy_config::DUMP_PATH;
use crate::telemetry::xds_sync::{self, ProxySync, Scope};
use serde_json::Value;
use std::collections::BTreeMap;

/// What istiod says of a proxy's config.
pub enum Settled {
    /// It will not change by itself; the proof, and the dump read inside it.
    Yes(Box<Proof>),
    /// Not (yet): why.
    No(String),
    /// istiod's account could not be read: why.
    Unreadable(String),
}

pub struct Proof {
    /// The proxy's config dump, read between two identical reports.
    pub dump: Value,
    /// The istiod pod the proxy is connected to.
    pub istiod: String,
    pub proxy: ProxySync,
    pub scope: Scope,
    /// The one DestinationRule the API server holds for a judged host, if any.
    pub rules: BTreeMap<String, RuleSpec>,
}

impl Proof {
    /// `istiod istiod-… reports <pod> SYNCED to push <version> (CDS nonce … sent and
    /// acked, every other type it sent acked too); its SidecarScope for that push carries
    /// DestinationRule ns/name@rv`.
    pub fn describe(&self) -> String {
        let cds = self
            .proxy
            .of_type(xds_sync::CLUSTER_TYPE)
            .map(|t| t.acked.as_str())
            .unwrap_or("");
        let rules: Vec<String> = self.rules.values().map(RuleSpec::label).collect();
        format!(
            "istiod {} reports {} SYNCED to push {} (CDS nonce {cds} sent and acked, and every other type it sent acked too); its SidecarScope for that push carries {}",
            self.istiod,
            self.proxy.id,
            self.scope.version,
            if rules.is_empty() {
                "no DestinationRule for the services judged, as the API server".to_string()
            } else {
                format!(
                    "DestinationRule {}, as the API server holds it",
                    rules.join(", ")
                )
            }
        )
    }

    /// Every type's nonces and when istiod last sent one, for the details.
    pub fn details(&self) -> Vec<String> {
        let mut out = vec![format!("istiod's sync report: {}", self.proxy.describe())];
        if let Some(t) = self.proxy.last_sent() {
            out.push(format!(
                "istiod last sent it config at {t} (istiod's clock)"
            ));
        }
        out
    }
}

/// Every DestinationRule of the cluster, as the API server holds it now.
async fn api_rules(env: &Env<'_>) -> Result<Vec<RuleSpec>, String> {
    Ok(istio_objects::destination_rules(&env.cluster.client)
        .await?
        .iter()
        .filter_map(RuleSpec::parse)
        .collect())
}

/// What every ready istiod reports: `(istiod pod, every proxy connected to it)`.
pub(super) async fn every_report(env: &Env<'_>) -> Result<Vec<(String, Vec<ProxySync>)>, String> {
    let mut out = Vec::new();
    for istiod in istiod_debug::ready_pods(&env.cluster.client).await? {
        let proxies = report_of(env, &istiod).await?;
        out.push((istiod, proxies));
    }
    Ok(out)
}

/// Every proxy connected to the istiod pod `istiod`, as its `/debug/syncz` reports them.
pub(super) async fn report_of(env: &Env<'_>, istiod: &str) -> Result<Vec<ProxySync>, String> {
    let body = istiod_debug::get_json(&env.cluster.streams, istiod, xds_sync::SYNCZ_PATH).await?;
    xds_sync::parse_syncz(&body).map_err(|e| {
        format!(
            "istiod {istiod}: {} in an unknown format: {e}",
            xds_sync::SYNCZ_PATH
        )
    })
}

/// The reports of the istiods that report `id`.
async fn reports(env: &Env<'_>, id: &str) -> Result<Vec<(String, Vec<ProxySync>)>, String> {
    let mut all = every_report(env).await?;
    all.retain(|(_, proxies)| proxies.iter().any(|p| p.id == id));
    Ok(all)
}

/// Whether the scope carries, for `host`, exactly the API server's rules for it.
fn same_rules<'a>(
    scope: &Scope,
    host: &str,
    api: &[&'a RuleSpec],
) -> Result<Option<&'a RuleSpec>, String> {
    let carried = scope.rules_for(host);
    let names = |v: &mut Vec<String>| {
        v.sort();
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let mismatch = || {
        format!(
            "for {host} istiod's SidecarScope (push {}) carries {}, the API server holds {}",
            scope.version,
            names(
                &mut carried
                    .iter()
                    .map(|r| format!("{}/{}@{}", r.namespace, r.name, r.resource_version))
                    .collect()
            ),
            names(&mut api.iter().map(|r| r.label()).collect())
        )
    };
    match (api, carried) {
        ([], []) => Ok(None),
        ([rule], [carried])
            if carried.from == [(rule.namespace.clone(), rule.name.clone())]
                && carried.resource_version == rule.resource_version =>
        {
            Ok(Some(*rule))
        }
        ([_, _, ..], _) => Err(format!(
            "{}; several DestinationRules may apply, which is not decided here",
            mismatch()
        )),
        _ => Err(mismatch()),
    }
}

/// The one report istiod gives of `id` among every istiod's reports: its istiod, the
/// proxy, and the push version of the clusters it acked; or why there is none to go by.
fn synced_report<'a>(
    id: &str,
    reports: &'a [(String, Vec<ProxySync>)],
) -> Result<(&'a str, &'a ProxySync, &'a str), Settled> {
    let (istiod, proxies) = match reports {
        [] => {
            return Err(Settled::No(format!(
                "no ready istiod reports a connection from {id}"
            )));
        }
        [(istiod, proxies)] => (istiod.as_str(), proxies),
        several => {
            return Err(Settled::No(format!(
                "{id} is reported by several istiods ({}): which one it follows is not certain",
                several
                    .iter()
                    .map(|(i, _)| i.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let mut own = proxies.iter().filter(|p| p.id == id);
    let (Some(proxy), None) = (own.next(), own.next()) else {
        return Err(Settled::No(format!(
            "istiod {istiod} reports two connections from {id}"
        )));
    };
    if let Some(other) = proxies
        .iter()
        .find(|p| xds_sync::could_be_mistaken_for(id, &p.id))
    {
        return Err(Settled::No(format!(
            "istiod {istiod} also reports {}, which its sidecarz lookup could take for {id}",
            other.id
        )));
    }
    let not_synced = proxy.not_synced();
    if !not_synced.is_empty() {
        return Err(Settled::No(format!(
            "istiod {istiod} reports {id} not synced: {}",
            not_synced.join("; ")
        )));
    }
    match proxy.cluster_version() {
        Ok(version) => Ok((istiod, proxy, version)),
        Err(e)
            if proxy
                .of_type(xds_sync::CLUSTER_TYPE)
                .is_none_or(|t| t.sent.is_empty()) =>
        {
            Err(Settled::No(e))
        }
        Err(e) => Err(Settled::Unreadable(format!("istiod {istiod}: {e}"))),
    }
}

/// Whether the config of `pod`'s proxy (in `namespace`) is settled for the service
/// hosts in `hosts`.
pub async fn examine(env: &Env<'_>, namespace: &str, pod: &str, hosts: &[String]) -> Settled {
    let id = xds_sync::proxy_id(pod, namespace);
    let first = match reports(env, &id).await {
        Ok(r) => r,
        Err(e) => return Settled::Unreadable(e),
    };
    let (istiod, proxy, version) = match synced_report(&id, &first) {
        Ok((istiod, proxy, version)) => (istiod.to_string(), proxy, version.to_string()),
        Err(settled) => return settled,
    };
    let scope =
        match istiod_debug::get_json(&env.cluster.streams, &istiod, &xds_sync::sidecarz_path(&id))
            .await
            .and_then(|body| {
                xds_sync::parse_sidecarz(&body).map_err(|e| {
                    format!("istiod {istiod}: /debug/sidecarz in an unknown format: {e}")
                })
            }) {
            Ok(s) => s,
            Err(e) => return Settled::Unreadable(e),
        };
    if scope.namespace != namespace {
        return Settled::No(format!(
            "istiod {istiod}'s sidecarz for {id} answered a scope of namespace `{}`",
            scope.namespace
        ));
    }
    if scope.version != version {
        return Settled::No(format!(
            "the clusters {id} acked come from push {version}, its SidecarScope from push {}: a push is under way",
            scope.version
        ));
    }
    let api = match api_rules(env).await {
        Ok(r) => r,
        Err(e) => return Settled::Unreadable(e),
    };
    let mut rules = BTreeMap::new();
    for host in hosts {
        let applying: Vec<&RuleSpec> = api.iter().filter(|r| r.may_apply(host)).collect();
        match same_rules(&scope, host, &applying) {
            Ok(Some(rule)) => {
                rules.insert(host.clone(), rule.clone());
            }
            Ok(None) => {}
            Err(e) => return Settled::No(e),
        }
    }
    let dump = match envoy_admin::get_json(&env.cluster.streams, namespace, pod, DUMP_PATH).await {
        Ok(d) => d,
        Err(e) => return Settled::No(e),
    };
    let again = match reports(env, &id).await {
        Ok(r) => r,
        Err(e) => return Settled::Unreadable(e),
    };
    let unchanged = again.len() == 1
        && again[0].0 == istiod
        && again[0]
            .1
            .iter()
            .filter(|p| p.id == id)
            .eq(std::iter::once(proxy));
    if !unchanged {
        return Settled::No(format!(
            "istiod's report on {id} changed while its config was read: a push arrived"
        ));
    }
    Settled::Yes(Box::new(Proof {
        dump,
        istiod,
        proxy: proxy.clone(),
        scope,
        rules,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::xds_sync::ScopeRule;
    use serde_json::json;

    fn rule(rv: &str) -> RuleSpec {
        RuleSpec::parse(&json!({
            "metadata": {"name": "name", "namespace": "sentences", "resourceVersion": rv},
            "spec": {"host": "name", "subsets": [{"name": "name-v1", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}]}
        }))
        .unwrap()
    }

    fn scope(rv: Option<&str>) -> Scope {
        let mut rules = BTreeMap::new();
        if let Some(rv) = rv {
            rules.insert(
                "name.sentences.svc.cluster.local".to_string(),
                vec![ScopeRule {
                    namespace: "sentences".into(),
                    name: "name".into(),
                    resource_version: rv.into(),
                    from: vec![("sentences".into(), "name".into())],
                }],
            );
        }
        Scope {
            version: "2026-08-31T10:00:01Z/17".into(),
            namespace: "sentences".into(),
            rules,
        }
    }

    const HOST: &str = "name.sentences.svc.cluster.local";
    const ID: &str = "sentences-6d8f9c-x2x7q.sentences";
    const V: &str = "2026-08-31T10:00:01Z/17";

    /// A syncz entry whose every type was sent the nonce of push `V`, acked `acked`.
    fn proxy(id: &str, acked: &str) -> ProxySync {
        let sent = format!("{V}1b4e28ba-2fa1-11d2-883f-0016d3cca427");
        let acked = if acked == "sent" {
            sent.clone()
        } else {
            acked.to_string()
        };
        let t = json!({"sent": sent, "acked": acked, "sentTime": "2026-08-31T10:00:01.1Z"});
        let entry = json!({"proxy": id, "proxy_type": "sidecar", "resources": {
            "type.googleapis.com/envoy.config.cluster.v3.Cluster": t,
            "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment": t}});
        xds_sync::parse_syncz(&json!([entry])).unwrap().remove(0)
    }

    fn report(reports: &[(String, Vec<ProxySync>)]) -> String {
        match synced_report(ID, reports) {
            Ok((istiod, proxy, version)) => format!("ok {istiod} {} {version}", proxy.id),
            Err(Settled::No(why)) => format!("no: {why}"),
            Err(Settled::Unreadable(why)) => format!("unreadable: {why}"),
            Err(Settled::Yes(_)) => unreachable!(),
        }
    }

    #[test]
    fn only_one_synced_report_of_exactly_this_proxy_counts() {
        let istiod = |name: &str, proxies: Vec<ProxySync>| (name.to_string(), proxies);
        assert_eq!(
            report(&[istiod(
                "istiod-a",
                vec![proxy(ID, "sent"), proxy("age-1.sentences", "sent")]
            )]),
            format!("ok istiod-a {ID} {V}")
        );
        // Nobody reports it; two istiods (a second revision, a reconnect) report it.
        assert!(report(&[]).starts_with("no: no ready istiod reports"));
        let two = report(&[
            istiod("istiod-a", vec![proxy(ID, "sent")]),
            istiod("istiod-canary-b", vec![proxy(ID, "sent")]),
        ]);
        assert!(
            two.contains("several istiods (istiod-a, istiod-canary-b)"),
            "{two}"
        );
        let twice = report(&[istiod(
            "istiod-a",
            vec![proxy(ID, "sent"), proxy(ID, "sent")],
        )]);
        assert!(twice.contains("two connections"), "{twice}");
        // A proxy whose ID contains ours: istiod's sidecarz lookup could answer for it.
        let shadow = report(&[istiod(
            "istiod-a",
            vec![
                proxy(ID, "sent"),
                proxy("sentences-6d8f9c-x2x7q.sentences-v2", "sent"),
            ],
        )]);
        assert!(shadow.contains("could take for"), "{shadow}");
    }

    #[test]
    fn a_stale_proxy_or_an_unknown_nonce_is_never_settled() {
        let stale = report(&[("istiod-a".into(), vec![proxy(ID, "")])]);
        assert!(
            stale.starts_with("no: ") && stale.contains("CDS STALE"),
            "{stale}"
        );
        let older = "2026-08-31T09:59:00Z/161b4e28ba-2fa1-11d2-883f-0016d3cca427";
        let behind = report(&[("istiod-a".into(), vec![proxy(ID, older)])]);
        assert!(behind.contains("CDS STALE"), "{behind}");
        // Synced, but nonces of a shape this harness cannot read a push version from.
        let mut odd = proxy(ID, "sent");
        for t in &mut odd.types {
            t.sent = "17".into();
            t.acked = "17".into();
        }
        let odd = report(&[("istiod-a".into(), vec![odd])]);
        assert!(
            odd.starts_with("unreadable: ") && odd.contains("not a push version"),
            "{odd}"
        );
    }

    #[test]
    fn the_scope_must_carry_the_rule_the_api_server_holds_now() {
        let now = rule("900");
        assert_eq!(
            same_rules(&scope(Some("900")), HOST, &[&now]).unwrap(),
            Some(&now)
        );
        // A push from before istiod saw the rule, or saw its last change.
        let e = same_rules(&scope(None), HOST, &[&now]).unwrap_err();
        assert!(
            e.contains("carries none, the API server holds sentences/name@900"),
            "{e}"
        );
        let e = same_rules(&scope(Some("812")), HOST, &[&now]).unwrap_err();
        assert!(
            e.contains("sentences/name@812") && e.contains("@900"),
            "{e}"
        );
        // A rule deleted since.
        assert!(same_rules(&scope(Some("900")), HOST, &[]).is_err());
        // Nothing on either side: settled, no rule to decide by.
        assert_eq!(same_rules(&scope(None), HOST, &[]).unwrap(), None);
        let other = rule("901");
        let e = same_rules(&scope(Some("900")), HOST, &[&now, &other]).unwrap_err();
        assert!(e.contains("several"), "{e}");
    }
}
