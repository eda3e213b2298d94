//! `tls-accepts` and `tls-rejects`: the MUTUAL ingress gateway, probed with this run's
//! PKI. The client always verifies the gateway against the run's CA and names
//! `sentences.example.com` (SNI and Host).
//!
//! A rejection is a TLS alert of the kind the documented refusal sends (SPEC §4): Envoy
//! (BoringSSL) always sends one. A reset or EOF without an alert, a refused connection,
//! a timeout or an HTTP answer is not a rejection: a gateway that closes silently, a
//! dead port-forward and a gateway that lets the client through must not pass. A
//! negative check only counts after a positive control in the same step (checked at
//! load): a client with the CA's certificate got through.
//!
//! About 480 lines with its tests: the rejection rule is judged here against scripted
//! probes of the wrong worlds review found (an HTTP answer among alerts), beside the rule.

use super::{Env, each_replica, secs, traffic};
use crate::config::HOST;
use crate::deadlines;
use crate::pki::{Pki, files};
use crate::probe::Probe;
use crate::probe::class::ResultClass;
use crate::probe::classify::Observation;
use crate::probe::http::Target;
use crate::probe::tally::Tally;
use crate::probe::tls::{self as tls_probe, ClientIdentity, TlsProbe, TlsVersions};
use crate::suite::duration::HumanDuration;
use crate::suite::validation::Validation;
use crate::suite::{Expectation, SuiteError};
use crate::verdict::{Evidence, Judgement, Verdict};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

fn tls_consecutive() -> u32 {
    3
}
fn tls_deadline() -> HumanDuration {
    HumanDuration(deadlines::TLS)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsAccepts {
    pub client: ClientIdentity,
    #[serde(default = "tls_consecutive")]
    pub consecutive: u32,
    #[serde(default = "tls_deadline")]
    pub deadline: HumanDuration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsRejects {
    pub client: ClientIdentity,
    #[serde(default = "tls_consecutive")]
    pub consecutive: u32,
    #[serde(default = "tls_deadline")]
    pub deadline: HumanDuration,
}

/// The curl command that reproduces a TLS probe by hand.
pub fn curl_line(pki: &Pki, address: std::net::SocketAddr, identity: ClientIdentity) -> String {
    let port = address.port();
    let cert = match identity {
        ClientIdentity::Trusted => format!(
            " --cert {} --key {}",
            pki.path(files::CLIENT_CERT),
            pki.path(files::CLIENT_KEY)
        ),
        ClientIdentity::Untrusted => format!(
            " --cert {} --key {}",
            pki.path(files::UNTRUSTED_CLIENT_CERT),
            pki.path(files::UNTRUSTED_CLIENT_KEY)
        ),
        ClientIdentity::None => String::new(),
    };
    format!(
        "curl -sv --resolve {HOST}:{port}:{} --cacert {}{cert} https://{HOST}:{port}/",
        address.ip(),
        pki.path(files::CA_CERT)
    )
}

fn pki<'a>(env: &Env<'a>) -> Result<&'a Pki, String> {
    env.pki
        .ok_or_else(|| "no PKI was issued in this run: an earlier step must `issue-pki`".into())
}

/// The probe for `identity` towards `target`, with the run's PKI.
fn probe(env: &Env<'_>, identity: ClientIdentity, target: Target) -> Result<TlsProbe, String> {
    let pki = pki(env)?;
    let client = match identity {
        ClientIdentity::Trusted => Some((pki.client_cert.as_str(), pki.client_key.as_str())),
        ClientIdentity::Untrusted => Some((
            pki.untrusted_client_cert.as_str(),
            pki.untrusted_client_key.as_str(),
        )),
        ClientIdentity::None => None,
    };
    let config = tls_probe::client_config(&pki.ca_cert, client, TlsVersions::Any)?;
    TlsProbe::new(
        HOST,
        target,
        config,
        identity,
        std::sync::Arc::clone(&env.suite.app.grammar),
    )
}

/// `check` (given where to connect) on every ready gateway replica, or on the given
/// address, judged together, with the curl line that reproduces it for `identity`.
async fn on_each_replica<F, Fut>(env: &Env<'_>, identity: ClientIdentity, check: F) -> Judgement
where
    F: Fn(Target) -> Result<Fut, String>,
    Fut: std::future::Future<Output = Judgement> + Send + 'static,
{
    let replicas = each_replica::replicas(
        env.cluster.gateway_tls_pods.as_ref(),
        &env.cluster.gateway_tls,
    )
    .await;
    let (pki, replicas) = match (pki(env), replicas) {
        (Ok(pki), Ok(replicas)) => (pki, replicas),
        (Err(e), _) | (_, Err(e)) => return Judgement::errored(e, Duration::ZERO),
    };
    let judgement = each_replica::judge(replicas, |replica| check(replica.target.clone())).await;
    with_curl(judgement, env, pki, identity)
}

/// How an attempt that should have been refused ended instead, for the evidence.
fn not_a_rejection(obs: &Observation) -> String {
    match (&obs.class, tls_probe::alert(obs)) {
        (_, Some(alert)) => format!("alert {alert} (not one a refused client gets)"),
        (ResultClass::Reset, None) => "closed without a TLS alert".into(),
        _ => obs.short(),
    }
}

/// K consecutive rejections with one of `identity`'s alerts, each followed at once by
/// the trusted client (`control`) getting through: a gateway that refuses everyone
/// (a rotated CA, a replica with a stale credential) proves nothing about client
/// certificates.
pub async fn rejections<P: Probe, C: Probe>(
    probe: &P,
    control: &C,
    identity: ClientIdentity,
    k: u32,
    deadline: Duration,
) -> Judgement {
    let accepted = identity.rejection_alerts();
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut alerts: BTreeMap<String, u32> = BTreeMap::new();
    let mut others: BTreeMap<String, u32> = BTreeMap::new();
    let mut control_refused: BTreeMap<String, u32> = BTreeMap::new();
    let mut controls = 0u32;
    let mut http_answers = 0u32;
    let mut run = 0;
    while started.elapsed() < deadline {
        let obs = probe.once().await;
        tally.add(&obs);
        match tls_probe::alert(&obs).filter(|a| accepted.contains(a)) {
            Some(alert) => {
                controls += 1;
                let check = control.once().await;
                if check.class != ResultClass::Ok {
                    run = 0;
                    *control_refused.entry(check.short()).or_default() += 1;
                    continue;
                }
                *alerts.entry(alert.to_string()).or_default() += 1;
                run += 1;
                tally.longest_run = tally.longest_run.max(run);
                if run >= k {
                    let seen = alerts
                        .iter()
                        .map(|(s, n)| format!("alert {s}×{n}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Judgement::passed(
                        Evidence::new(format!(
                            "{k} consecutive rejections with a TLS alert ({seen}), each followed by the trusted client getting a sentence, after {} attempts in {}",
                            tally.sent,
                            secs(started.elapsed())
                        ))
                        .with_details(vec![
                            format!("target: {}", probe.target()),
                            format!("alerts accepted as a rejection: {}", accepted.join(", ")),
                            format!("attempts: {}; classes: {}", tally.sent, tally.classes()),
                            format!(
                                "trusted client right after a rejection: {} of {controls} got a sentence",
                                controls - control_refused.values().sum::<u32>()
                            ),
                        ]),
                        started.elapsed(),
                    );
                }
            }
            None => {
                run = 0;
                if obs.status.is_some() {
                    // The positive control before this check got through the same
                    // listener, so it serves this host over TLS: a client that must be
                    // refused getting an HTTP answer is the outcome violated, however
                    // many rejections come before or after it.
                    http_answers += 1;
                    *others.entry(not_a_rejection(&obs)).or_default() += 1;
                    break;
                }
                if obs.reached() {
                    *others.entry(not_a_rejection(&obs)).or_default() += 1;
                }
                let left = deadline.saturating_sub(started.elapsed());
                tokio::time::sleep(
                    deadlines::TRAFFIC_PACE
                        .max(Duration::from_millis(100))
                        .min(left),
                )
                .await;
            }
        }
    }
    let mut details = tally.details(&probe.target());
    details.push(format!(
        "alerts accepted as a rejection: {}",
        accepted.join(", ")
    ));
    let others_text = others
        .iter()
        .map(|(s, n)| format!("{s}×{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let refused_text = control_refused
        .iter()
        .map(|(s, n)| format!("{s}×{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    if !control_refused.is_empty() {
        details.push(format!(
            "trusted client right after a rejection: {refused_text}"
        ));
    }
    let (verdict, summary) = if http_answers > 0 {
        (
            Verdict::Failed,
            format!(
                "expected a rejection with a TLS alert, but the gateway answered HTTP at attempt {} (after {} rejection(s) with an alert): {others_text}",
                tally.sent,
                alerts.values().sum::<u32>()
            ),
        )
    } else if let Some(why) = &tally.server_untrusted {
        (
            Verdict::Errored,
            format!(
                "this client does not trust the gateway's certificate ({why}): the TLS secret or the SNI is wrong; no verdict on client certificates"
            ),
        )
    } else if !control_refused.is_empty() && tally.longest_run < k {
        (
            Verdict::Failed,
            format!(
                "the gateway refused the trusted client too, right after rejecting this one ({refused_text}; {} of {controls} checks): the rejections are not about this client's certificate; at most {} rejections in a row with the trusted client still served",
                control_refused.values().sum::<u32>(),
                tally.longest_run
            ),
        )
    } else if !others.is_empty() {
        (
            Verdict::Failed,
            format!(
                "the gateway did not reject with a TLS alert ({}): {others_text}; at most {} rejections in a row",
                accepted.join(" or "),
                tally.longest_run
            ),
        )
    } else {
        (
            Verdict::Errored,
            format!(
                "no TLS alert and no answer ({}); a refused connection, a timeout or a failed port-forward is not a rejection: the path to the gateway is down",
                tally.classes()
            ),
        )
    };
    Judgement {
        verdict,
        evidence: Evidence::new(summary).with_details(details),
        elapsed: started.elapsed(),
    }
}

fn with_curl(
    mut judgement: Judgement,
    env: &Env<'_>,
    pki: &Pki,
    identity: ClientIdentity,
) -> Judgement {
    let turns = match env.cluster.gateway_tls_pods {
        Some(_) => " (this forward takes the gateway replicas in turn: repeat it to reach each)",
        None => "",
    };
    judgement.evidence.details.push(format!(
        "reproduce: {}{turns}",
        curl_line(pki, env.cluster.gateway_tls.address, identity)
    ));
    judgement
}

impl TlsAccepts {
    /// The part of the step's time it spends (see [`Part`](crate::verdict::Part)).
    pub fn part(&self) -> crate::verdict::Part {
        crate::verdict::Part::Traffic
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
        ctx.positive("tls-accepts.consecutive", self.consecutive)
    }

    pub fn deadline(&self) -> Duration {
        self.deadline.0
    }

    pub async fn judge(&self, env: &Env<'_>) -> Judgement {
        let (identity, k, deadline) = (self.client, self.consecutive, self.deadline.0);
        on_each_replica(env, identity, |target| {
            let p = probe(env, identity, target)?;
            Ok(async move { traffic::flows(&p, k, &[], deadline).await })
        })
        .await
    }
}

impl fmt::Display for TlsAccepts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MUTUAL gateway accepts a client with {}: {} consecutive 200s with a sentence (within {})",
            self.client, self.consecutive, self.deadline
        )
    }
}

impl TlsRejects {
    /// The part of the step's time it spends (see [`Part`](crate::verdict::Part)).
    pub fn part(&self) -> crate::verdict::Part {
        crate::verdict::Part::Traffic
    }

    /// The least time it takes in a world already as expected: nothing beyond the
    /// cluster's own waits.
    pub fn least_time(&self, _scrape: Duration) -> Duration {
        Duration::ZERO
    }

    pub fn validate(
        &self,
        ctx: &mut Validation<'_>,
        earlier: &[Expectation],
    ) -> Result<(), SuiteError> {
        ctx.positive("tls-rejects.consecutive", self.consecutive)?;
        if self.client == ClientIdentity::Trusted {
            return Err(
                ctx.at_step("`tls-rejects` with the trusted client contradicts the exercise")
            );
        }
        let positive = earlier.iter().any(
            |e| matches!(e, Expectation::TlsAccepts(t) if t.client == ClientIdentity::Trusted),
        );
        if !positive {
            return Err(ctx.at_step(
                "`tls-rejects` needs a positive control first in the same step: `tls-accepts: { client: trusted }`",
            ));
        }
        Ok(())
    }

    pub fn deadline(&self) -> Duration {
        self.deadline.0
    }

    pub async fn judge(&self, env: &Env<'_>) -> Judgement {
        let (identity, k, deadline) = (self.client, self.consecutive, self.deadline.0);
        on_each_replica(env, identity, |target| {
            let p = probe(env, identity, target.clone())?;
            let control = probe(env, ClientIdentity::Trusted, target)?;
            Ok(async move { rejections(&p, &control, identity, k, deadline).await })
        })
        .await
    }
}

impl fmt::Display for TlsRejects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MUTUAL gateway rejects a client with {} with a TLS alert ({}), {} consecutive times, the trusted client served right after each (within {})",
            self.client,
            self.client.rejection_alerts().join(" or "),
            self.consecutive,
            self.deadline
        )
    }
}

#[cfg(test)]
mod adversarial_tests {
    //! Wrong worlds fed to the rejection verdict through scripted probes.

    use super::*;
    use crate::probe::classify::{self, TlsSignal};
    use crate::probe::sentence::Grammar;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// Answers from a script, the last answer repeating once the script runs out.
    struct Scripted(Mutex<VecDeque<Observation>>);

    impl Scripted {
        fn new(script: Vec<Observation>) -> Scripted {
            Scripted(Mutex::new(script.into()))
        }
    }

    impl Probe for Scripted {
        async fn once(&self) -> Observation {
            let mut script = self.0.lock().unwrap();
            if script.len() > 1 {
                script.pop_front().unwrap()
            } else {
                script.front().cloned().unwrap()
            }
        }

        fn target(&self) -> String {
            "scripted".into()
        }
    }

    fn sentence() -> Observation {
        classify::answer(
            200,
            "Peter is 42 years",
            Duration::ZERO,
            &Grammar::app_defaults(),
        )
    }

    fn alert(name: &str) -> Observation {
        Observation {
            class: ResultClass::Tls,
            status: None,
            origin: None,
            sentence: None,
            tls: Some(TlsSignal::Alert(name.into())),
            detail: format!("received fatal alert: {name}"),
            elapsed: Duration::ZERO,
        }
    }

    /// A gateway that serves some clients *without* a certificate (e.g. one replica of
    /// two behind `--ingress-address` still on a stale SIMPLE listener, or a listener
    /// drained late): a client without a certificate got a sentence; however many
    /// rejections follow in a row, the verdict fails at that answer.
    #[tokio::test]
    async fn a_client_without_a_certificate_served_a_sentence_fails_o8() {
        let none = Scripted::new(vec![
            sentence(),
            alert("CertificateRequired"),
            sentence(),
            alert("CertificateRequired"),
            alert("CertificateRequired"),
            alert("CertificateRequired"),
        ]);
        let control = Scripted::new(vec![sentence()]);
        let j = rejections(
            &none,
            &control,
            ClientIdentity::None,
            3,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(
            j.verdict,
            Verdict::Failed,
            "a client without a certificate got a sentence: {}",
            j.evidence.summary
        );
    }

    /// The same for O9: a client with a certificate from another CA got a sentence.
    #[tokio::test]
    async fn an_untrusted_client_served_a_sentence_fails_o9() {
        let untrusted = Scripted::new(vec![
            sentence(),
            alert("UnknownCA"),
            alert("UnknownCA"),
            alert("UnknownCA"),
        ]);
        let control = Scripted::new(vec![sentence()]);
        let j = rejections(
            &untrusted,
            &control,
            ClientIdentity::Untrusted,
            3,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(j.verdict, Verdict::Failed, "{}", j.evidence.summary);
        assert!(
            j.evidence
                .summary
                .contains("answered HTTP at attempt 1 (after 0 rejection(s) with an alert)"),
            "{}",
            j.evidence.summary
        );
    }
}
