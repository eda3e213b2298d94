//! What a DestinationRule, as the API server holds it, decides about a client's
//! cluster towards a service: whether it defines the cluster's subset, and whether it
//! alone fixes the cluster's TLS mode (Istio 1.30/1.31):
//! - its `host` names a service: a name without a dot is `<name>.<rule's
//!   namespace>.svc.cluster.local`, anything else is taken as written, `*` and `*.x`
//!   are wildcards (`pilot/pkg/model/config.go` `ResolveShortnameToFQDN`);
//! - a subset's `trafficPolicy.tls` replaces the rule's, port-level settings replace
//!   both for their port (`pilot/pkg/networking/util/util.go`
//!   `MergeSubsetTrafficPolicy`, `pilot/pkg/model/destination_rule.go`
//!   `MergeTrafficPolicy`); with an explicit `tls.mode` the cluster gets no auto-mTLS
//!   (`pilot/pkg/networking/core/cluster_tls.go`).
//!
//! Only the simple, certain cases are decided; anything else is "cannot tell", which
//! never ends a wait early.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSpec {
    pub namespace: String,
    pub name: String,
    pub resource_version: String,
    pub host: String,
    pub tls: Option<String>,
    pub subsets: Vec<SubsetSpec>,
    /// Whether any traffic policy has `portLevelSettings` (a port-dependent mode).
    pub port_level: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubsetSpec {
    pub name: String,
    pub tls: Option<String>,
}

fn tls_mode(policy: Option<&Value>) -> Option<String> {
    policy?.pointer("/tls/mode")?.as_str().map(str::to_string)
}

fn port_level(policy: Option<&Value>) -> bool {
    policy
        .and_then(|p| p.get("portLevelSettings"))
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty())
}

impl RuleSpec {
    /// From a DestinationRule object (`metadata` and `spec`).
    pub fn parse(object: &Value) -> Option<RuleSpec> {
        let meta = object.get("metadata")?;
        let spec = object.get("spec")?;
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
        let top = spec.get("trafficPolicy");
        let subsets: Vec<(SubsetSpec, bool)> = spec
            .get("subsets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let policy = s.get("trafficPolicy");
                Some((
                    SubsetSpec {
                        name: text(s, "name")?,
                        tls: tls_mode(policy),
                    },
                    port_level(policy),
                ))
            })
            .collect();
        Some(RuleSpec {
            namespace: text(meta, "namespace")?,
            name: text(meta, "name")?,
            resource_version: text(meta, "resourceVersion").unwrap_or_default(),
            host: text(spec, "host")?,
            tls: tls_mode(top),
            port_level: port_level(top) || subsets.iter().any(|(_, p)| *p),
            subsets: subsets.into_iter().map(|(s, _)| s).collect(),
        })
    }

    /// `namespace/name@resourceVersion`.
    pub fn label(&self) -> String {
        format!("{}/{}@{}", self.namespace, self.name, self.resource_version)
    }

    /// Whether the rule may apply to the service host `fqdn`. Generous on purpose: a
    /// rule counted here that istiod does not apply only keeps a wait going.
    pub fn may_apply(&self, fqdn: &str) -> bool {
        let host = self.host.as_str();
        if host == "*" {
            return true;
        }
        if let Some(suffix) = host.strip_prefix('*') {
            return fqdn.ends_with(suffix);
        }
        let ns = &self.namespace;
        // As Istio resolves it, and the forms cluster DNS would accept.
        [
            format!("{host}.{ns}.svc.cluster.local"),
            host.to_string(),
            format!("{host}.svc.cluster.local"),
            format!("{host}.cluster.local"),
        ]
        .iter()
        .any(|h| h == fqdn)
    }

    pub fn defines(&self, subset: &str) -> bool {
        self.subsets.iter().any(|s| s.name == subset)
    }

    /// The TLS mode the rule alone fixes for the cluster of `subset` (none: the
    /// default cluster), or why it does not: no mode (auto mTLS decides per endpoint),
    /// port-level settings, an undefined subset.
    pub fn fixed_tls(&self, subset: Option<&str>) -> Result<String, String> {
        if self.port_level {
            return Err(format!(
                "DestinationRule {} has port-level settings",
                self.label()
            ));
        }
        let subset_mode = match subset {
            None => None,
            Some(name) => self
                .subsets
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| {
                    format!("DestinationRule {} defines no subset {name}", self.label())
                })?
                .tls
                .clone(),
        };
        subset_mode.or_else(|| self.tls.clone()).ok_or_else(|| {
            format!(
                "DestinationRule {} sets no TLS mode for it (auto mTLS decides per endpoint)",
                self.label()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(spec: Value) -> RuleSpec {
        RuleSpec::parse(&json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "name", "namespace": "sentences", "resourceVersion": "812"},
            "spec": spec
        }))
        .unwrap()
    }

    /// The exercise's rule (suites/mesh/manifests).
    fn exercise() -> RuleSpec {
        rule(json!({"host": "name", "subsets": [
            {"name": "name-v1", "labels": {"version": "v1"}, "trafficPolicy": {"tls": {"mode": "DISABLE"}}},
            {"name": "name-v2", "labels": {"version": "v2"}, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}]}))
    }

    #[test]
    fn the_exercises_subsets_fix_their_tls_and_the_default_cluster_is_auto() {
        let r = exercise();
        assert_eq!(r.label(), "sentences/name@812");
        assert!(r.may_apply("name.sentences.svc.cluster.local"));
        assert!(!r.may_apply("age.sentences.svc.cluster.local"));
        assert!(!r.may_apply("name.other.svc.cluster.local"));
        assert!(r.defines("name-v1") && !r.defines("name-v3"));
        assert_eq!(r.fixed_tls(Some("name-v1")).unwrap(), "DISABLE");
        assert_eq!(r.fixed_tls(Some("name-v2")).unwrap(), "ISTIO_MUTUAL");
        assert!(r.fixed_tls(None).unwrap_err().contains("auto mTLS"));
        assert!(
            r.fixed_tls(Some("name-v3"))
                .unwrap_err()
                .contains("no subset name-v3")
        );
    }

    #[test]
    fn a_subset_without_tls_inherits_the_rules_and_port_levels_are_not_decided() {
        let r = rule(json!({"host": "name.sentences.svc.cluster.local",
            "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
            "subsets": [{"name": "v1"}]}));
        assert!(r.may_apply("name.sentences.svc.cluster.local"));
        assert_eq!(r.fixed_tls(Some("v1")).unwrap(), "ISTIO_MUTUAL");
        assert_eq!(r.fixed_tls(None).unwrap(), "ISTIO_MUTUAL");
        let r = rule(
            json!({"host": "name", "subsets": [{"name": "v1", "trafficPolicy": {
            "tls": {"mode": "DISABLE"},
            "portLevelSettings": [{"port": {"number": 5000}, "tls": {"mode": "ISTIO_MUTUAL"}}]}}]}),
        );
        assert!(r.fixed_tls(Some("v1")).unwrap_err().contains("port-level"));
    }

    #[test]
    fn wildcards_and_other_host_forms_may_apply() {
        assert!(rule(json!({"host": "*"})).may_apply("name.sentences.svc.cluster.local"));
        let w = rule(json!({"host": "*.sentences.svc.cluster.local"}));
        assert!(w.may_apply("name.sentences.svc.cluster.local"));
        assert!(!w.may_apply("name.other.svc.cluster.local"));
        assert!(
            rule(json!({"host": "name.sentences"})).may_apply("name.sentences.svc.cluster.local")
        );
        assert!(RuleSpec::parse(&json!({"metadata": {"name": "x"}, "spec": {}})).is_none());
    }
}
