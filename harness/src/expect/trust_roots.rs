//! `trust-roots`: whether the proxies of every control plane revision in play trust each
//! other's workload certificates, read from each proxy's own config dump: the root it
//! verifies peers with (SDS secret `ROOTCA`, `validation_context.trusted_ca`) and the
//! certificate it presents (SDS secret `default`, `tls_certificate.certificate_chain`).
//! Revision A's proxies trust revision B's when a certificate of a B proxy verifies
//! against A's roots (a real path validation). Revisions whose istiods share a root
//! (`istio-ca-secret` of one namespace, or one `cacerts`) pass; revisions with a
//! `cacerts` each, or istiods in different namespaces, fail, and every mTLS hop between
//! them would fail the handshake (`CERTIFICATE_VERIFY_FAILED`, `URX,UF`).
//!
//! Final as soon as every pod's dump shows both secrets: a root does not change by
//! itself within a step. Each revision's roots are named by their SHA-256 fingerprint.

use super::Env;
use super::proxy_versions::{pods_and_rollout, proxy_of};
use crate::cluster::envoy_admin;
use crate::suite::duration::HumanDuration;
use crate::suite::validation::Validation;
use crate::suite::{Expectation, SuiteError};
use crate::verdict::{Evidence, Judgement};
use crate::wait::{self, Look};
use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

fn trust_deadline() -> HumanDuration {
    HumanDuration(crate::deadlines::SIDECARS)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRoots {
    /// Workloads (or `istio-ingressgateway`) whose proxies are compared.
    pub workloads: Vec<Spanned<String>>,
    #[serde(default = "trust_deadline")]
    pub deadline: HumanDuration,
}

/// The certificates a proxy trusts and presents, DER.
#[derive(Clone, Debug)]
struct Identity {
    pod: String,
    roots: Vec<Vec<u8>>,
    chain: Vec<Vec<u8>>,
}

/// `sha256:ab12cd34…` (the first 8 bytes, for reading).
fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The DER certificates of a `DataSource` (`inline_bytes` is base64 of the PEM,
/// `inline_string` the PEM).
fn certificates(source: &Value) -> Vec<Vec<u8>> {
    let pem = if let Some(b) = source.get("inline_bytes").and_then(Value::as_str) {
        base64::engine::general_purpose::STANDARD
            .decode(b)
            .unwrap_or_default()
    } else {
        source
            .get("inline_string")
            .and_then(Value::as_str)
            .unwrap_or("")
            .as_bytes()
            .to_vec()
    };
    CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .map(|c| c.as_ref().to_vec())
        .collect()
}

/// DER certificates.
type Certificates = Vec<Vec<u8>>;

/// The `ROOTCA` and `default` secrets of a config dump: (roots, chain).
fn identity_of(dump: &Value) -> Result<(Certificates, Certificates), String> {
    let secrets: Vec<&Value> = dump
        .get("configs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| {
            c.get("@type").and_then(Value::as_str)
                == Some("type.googleapis.com/envoy.admin.v3.SecretsConfigDump")
        })
        .flat_map(|c| {
            c.get("dynamic_active_secrets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .collect();
    let secret = |name: &str| {
        secrets
            .iter()
            .find(|s| s.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|s| s.get("secret"))
    };
    let roots = secret("ROOTCA")
        .and_then(|s| s.pointer("/validation_context/trusted_ca"))
        .map(certificates)
        .unwrap_or_default();
    let chain = secret("default")
        .and_then(|s| s.pointer("/tls_certificate/certificate_chain"))
        .map(certificates)
        .unwrap_or_default();
    match (roots.is_empty(), chain.is_empty()) {
        (false, false) => Ok((roots, chain)),
        (true, _) => Err("its config dump has no ROOTCA secret yet".into()),
        (_, true) => Err("its config dump has no workload certificate (`default`) yet".into()),
    }
}

/// Whether `chain` (leaf first) verifies against `roots`.
fn verifies(chain: &[Vec<u8>], roots: &[Vec<u8>]) -> bool {
    let ders: Vec<CertificateDer<'_>> =
        roots.iter().map(|r| CertificateDer::from(&r[..])).collect();
    let anchors: Vec<_> = ders
        .iter()
        .filter_map(|d| webpki::anchor_from_trusted_cert(d).ok())
        .collect();
    let Some((leaf, rest)) = chain.split_first() else {
        return false;
    };
    let leaf = CertificateDer::from(&leaf[..]);
    let intermediates: Vec<CertificateDer<'_>> =
        rest.iter().map(|c| CertificateDer::from(&c[..])).collect();
    let Ok(ee) = webpki::EndEntityCert::try_from(&leaf) else {
        return false;
    };
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        UnixTime::now(),
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .is_ok()
}

/// Revision → the identities of its proxies.
type ByRevision = BTreeMap<String, Vec<Identity>>;

/// Every ordered pair (A, B) of revisions where A's proxies do not trust B's.
fn distrust(by_revision: &ByRevision) -> Vec<String> {
    let mut out = vec![];
    for (a, a_ids) in by_revision {
        for (b, b_ids) in by_revision {
            if a == b {
                continue;
            }
            let a_roots: Vec<Vec<u8>> = a_ids.iter().flat_map(|i| i.roots.clone()).collect();
            if let Some(untrusted) = b_ids.iter().find(|i| !verifies(&i.chain, &a_roots)) {
                out.push(format!(
                    "revision {a}'s proxies do not trust revision {b}'s certificates: {}'s certificate chains to {}, while {a} trusts {}",
                    untrusted.pod,
                    roots_of(std::slice::from_ref(untrusted)),
                    roots_of(a_ids),
                ));
            }
        }
    }
    out
}

fn roots_of(ids: &[Identity]) -> String {
    let mut fps: Vec<String> = ids
        .iter()
        .flat_map(|i| i.roots.iter().map(|r| fingerprint(r)))
        .collect();
    fps.sort();
    fps.dedup();
    format!("root {}", fps.join(" + "))
}

impl TrustRoots {
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
        if self.workloads.is_empty() {
            return Err(ctx.at_step("`trust-roots` names no workload"));
        }
        for w in &self.workloads {
            ctx.workload(w, true)?;
        }
        Ok(())
    }

    pub fn deadline(&self) -> Duration {
        self.deadline.0
    }

    /// Every listed workload's proxies, by revision; or why one cannot be read yet.
    async fn read(&self, env: &Env<'_>) -> Result<ByRevision, String> {
        let mut by_revision = ByRevision::new();
        for w in &self.workloads {
            let (pods, _) = pods_and_rollout(env, &w.value).await?;
            if pods.is_empty() {
                return Err(format!("{} has no pods", w.value));
            }
            for pod in pods {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let namespace = pod.metadata.namespace.clone().unwrap_or_default();
                let (_, revision) = proxy_of(&pod).map_err(|e| format!("{name}: {e}"))?;
                let dump =
                    envoy_admin::get_json(&env.cluster.streams, &namespace, &name, "/config_dump")
                        .await
                        .map_err(|e| format!("{name}: {e}"))?;
                let (roots, chain) = identity_of(&dump).map_err(|e| format!("{name}: {e}"))?;
                by_revision.entry(revision).or_default().push(Identity {
                    pod: name,
                    roots,
                    chain,
                });
            }
        }
        Ok(by_revision)
    }

    pub async fn judge(&self, env: &Env<'_>) -> Judgement {
        let started = Instant::now();
        wait::until_final(self.deadline.0, crate::deadlines::POLL, || async {
            let by_revision = match self.read(env).await {
                Ok(b) => b,
                Err(why) => {
                    return Look::Pending(Judgement::errored(
                        format!("cannot compare the revisions' roots: {why}"),
                        started.elapsed(),
                    ));
                }
            };
            let lines: Vec<String> = by_revision
                .iter()
                .map(|(rev, ids)| {
                    format!(
                        "revision {rev} ({}): trusts {}",
                        ids.iter()
                            .map(|i| i.pod.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        roots_of(ids)
                    )
                })
                .collect();
            let broken = distrust(&by_revision);
            let elapsed = started.elapsed();
            let mut evidence = if broken.is_empty() {
                Evidence::new(format!(
                    "every revision's proxies trust every other's certificates ({})",
                    lines.join("; ")
                ))
            } else {
                Evidence::new(format!("{}; {}", broken.join("; "), lines.join("; ")))
            };
            evidence.details = lines;
            evidence.details.extend(broken.iter().cloned());
            evidence.timing.convergence = elapsed;
            Look::Final(if broken.is_empty() {
                Judgement::passed(evidence, elapsed)
            } else {
                Judgement::failed(evidence, elapsed)
            })
        })
        .await
    }
}

impl fmt::Display for TrustRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.workloads.iter().map(|w| w.value.as_str()).collect();
        write!(
            f,
            "the proxies of {} trust each other's certificates across revisions (within {})",
            names.join(", "),
            self.deadline
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};

    fn root() -> CertifiedIssuer<'static, KeyPair> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    }

    fn leaf(ca: &CertifiedIssuer<'static, KeyPair>, sa: &str) -> Vec<u8> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = vec![SanType::URI(
            format!("spiffe://cluster.local/ns/sentences/sa/{sa}")
                .try_into()
                .unwrap(),
        )];
        p.signed_by(&KeyPair::generate().unwrap(), ca)
            .unwrap()
            .der()
            .to_vec()
    }

    fn id(pod: &str, ca: &CertifiedIssuer<'static, KeyPair>) -> Identity {
        Identity {
            pod: pod.into(),
            roots: vec![ca.der().to_vec()],
            chain: vec![leaf(ca, pod)],
        }
    }

    #[test]
    fn revisions_sharing_a_root_trust_each_other_and_separate_roots_do_not() {
        let shared = root();
        let same: ByRevision = BTreeMap::from([
            ("default".to_string(), vec![id("sentences-1", &shared)]),
            ("1-31-2".to_string(), vec![id("age-1", &shared)]),
        ]);
        assert!(distrust(&same).is_empty());
        let other = root();
        let split: ByRevision = BTreeMap::from([
            ("default".to_string(), vec![id("sentences-1", &shared)]),
            ("1-31-2".to_string(), vec![id("age-1", &other)]),
        ]);
        let broken = distrust(&split);
        assert_eq!(broken.len(), 2, "{broken:?}");
        assert!(
            broken[0].starts_with("revision 1-31-2's proxies do not trust revision default's certificates: sentences-1's certificate chains to root sha256:"),
            "{}",
            broken[0]
        );
        // A bundle with both roots (a root rotation) trusts both.
        let mut both = id("age-1", &other);
        both.roots.push(shared.der().to_vec());
        let rotating: ByRevision = BTreeMap::from([
            ("default".to_string(), vec![id("sentences-1", &shared)]),
            ("1-31-2".to_string(), vec![both]),
        ]);
        assert_eq!(
            distrust(&rotating).len(),
            1,
            "only default distrusts 1-31-2"
        );
    }

    #[test]
    fn a_dump_without_the_secrets_is_not_read_as_trusting_nothing() {
        let dump = serde_json::json!({"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump"}]});
        assert!(identity_of(&dump).unwrap_err().contains("no ROOTCA"));
    }
}
