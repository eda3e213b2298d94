//! What a step expects: the closed vocabulary of expectations. Each family lives in its
//! own file with its schema and defaults, its validation at load time (errors at
//! `file:line:column`), its description for the plan and the report, its deadline, and
//! `judge`, which returns a verdict with its evidence. This enum only delegates.
//!
//! Adding an expectation kind: a file here with a struct that has `validate`,
//! `deadline`, `part`, `least_time`, `judge` and `Display`, a variant below, and a line
//! in `each!`.

mod convergence;
mod each_replica;
mod handshake;
pub mod mtls;
mod phase;
pub mod proxy_config;
pub mod proxy_log;
pub mod proxy_versions;
mod served_by;
mod settled;
pub mod sidecars;
pub mod telemetry;
pub mod tls;
pub mod traffic;
pub mod trust_roots;

use crate::cluster::Live;
use crate::config::{HOST, RunConfig};
use crate::pki::Pki;
use crate::probe::http::HttpProbe;
use crate::suite::validation::Validation;
use crate::suite::{Step, Suite, SuiteError};
use crate::verdict::{Judgement, Part};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// What a step expects, judged in order; the first that does not hold ends the step.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Expectation {
    /// Named workloads have (or have not) a ready `istio-proxy` in every pod.
    Sidecars(sidecars::Sidecars),
    /// Requests through the ingress answer 200 with a sentence of the deployed app.
    Flows(traffic::Flows),
    /// Requests through the ingress get the app's own error answer, every one over a window.
    Fails(traffic::Fails),
    /// Every request over a window after the change ends in the given class.
    Holds(traffic::Holds),
    /// A TLS client with the given identity gets through the MUTUAL gateway.
    TlsAccepts(tls::TlsAccepts),
    /// A TLS client with the given identity is refused with a TLS alert.
    TlsRejects(tls::TlsRejects),
    /// Telemetry per edge (Kiali's padlock, and no plaintext where mTLS is required).
    Mtls(mtls::Mtls),
    /// The client sidecar's clusters originate (or do not originate) mutual TLS.
    ProxyConfig(proxy_config::ProxyConfig),
    /// What the proxies report about the phase's requests (the exercise's Kiali views).
    Telemetry(telemetry::Telemetry),
    /// A sidecar's access log shows why traffic fails.
    ProxyLog(proxy_log::ProxyLog),
    /// In an upgrade run: which workloads' proxies run the old or the new version.
    ProxyVersions(proxy_versions::ProxyVersions),
    /// The proxies of every revision in play trust each other's certificates.
    TrustRoots(trust_roots::TrustRoots),
}

/// One `match` over the families: `each!(self, e => e.method())`.
macro_rules! each {
    ($expectation:expr, $e:ident => $body:expr) => {
        match $expectation {
            Expectation::Sidecars($e) => $body,
            Expectation::Flows($e) => $body,
            Expectation::Fails($e) => $body,
            Expectation::Holds($e) => $body,
            Expectation::TlsAccepts($e) => $body,
            Expectation::TlsRejects($e) => $body,
            Expectation::Mtls($e) => $body,
            Expectation::ProxyConfig($e) => $body,
            Expectation::Telemetry($e) => $body,
            Expectation::ProxyLog($e) => $body,
            Expectation::ProxyVersions($e) => $body,
            Expectation::TrustRoots($e) => $body,
        }
    };
}

impl Expectation {
    /// Checks the expectation against the suite; `earlier` are the step's expectations
    /// before this one (a negative TLS check needs a positive control among them).
    pub fn validate(
        &self,
        ctx: &mut Validation<'_>,
        earlier: &[Expectation],
    ) -> Result<(), SuiteError> {
        each!(self, e => e.validate(ctx, earlier))
    }

    /// The longest this expectation may take.
    pub fn deadline(&self) -> Duration {
        each!(self, e => e.deadline())
    }

    /// The least time this expectation takes even in a world that is already as
    /// expected: its windows, and for a telemetry phase one scrape before its traffic and
    /// two after (`scrape` is Prometheus's interval). Waits for the cluster come on top.
    pub fn least_time(&self, scrape: Duration) -> Duration {
        each!(self, e => e.least_time(scrape))
    }

    /// The part of a step's time this expectation spends: waiting for the data plane
    /// (sidecars, proxy config and versions), sending requests, or waiting for scrapes.
    pub fn part(&self) -> Part {
        each!(self, e => e.part())
    }

    /// Judges. The time the evidence does not split itself (all of it, for most
    /// families) is charged to the part of the step the expectation belongs to, so the
    /// report's breakdown adds up to the step's time.
    pub async fn judge(&self, env: &Env<'_>) -> Judgement {
        let started = std::time::Instant::now();
        let mut judgement = each!(self, e => e.judge(env).await);
        let timing = &mut judgement.evidence.timing;
        let unaccounted = started.elapsed().saturating_sub(timing.total());
        *timing.part_mut(self.part()) += unaccounted;
        judgement
    }
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        each!(self, e => e.fmt(f))
    }
}

/// What an expectation judges with.
pub struct Env<'a> {
    pub config: &'a RunConfig,
    pub suite: &'a Suite,
    pub step: &'a Step,
    pub cluster: &'a Live,
    /// This run's PKI, once an `issue-pki` action issued it.
    pub pki: Option<&'a Pki>,
}

impl Env<'_> {
    /// The HTTP probe through the gateway, judging answers against the suite's app.
    pub fn http_probe(&self) -> Result<HttpProbe, String> {
        HttpProbe::new(
            HOST,
            self.cluster.gateway_http.clone(),
            std::sync::Arc::clone(&self.suite.app.grammar),
        )
    }
}

/// `12.3 s`
pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod display_tests {
    use super::Expectation;
    use crate::verdict::Timing;
    use std::time::Duration;

    #[test]
    fn every_family_charges_its_time_to_a_part_of_the_step() {
        let part = |yaml: &str| {
            let e: Expectation = serde_saphyr::from_str(yaml).unwrap();
            let mut timing = Timing::default();
            *timing.part_mut(e.part()) = Duration::from_secs(1);
            timing.describe()
        };
        let convergence = "actions 0.0 s, convergence 1.0 s, traffic 0.0 s, telemetry 0.0 s";
        let traffic = "actions 0.0 s, convergence 0.0 s, traffic 1.0 s, telemetry 0.0 s";
        assert_eq!(part("sidecars: { present: [age] }"), convergence);
        assert_eq!(part("holds: { class: ok, window: 20s }"), traffic);
        assert_eq!(part("fails: { class: http-500 }"), traffic);
        assert_eq!(part("flows: { consecutive: 3 }"), traffic);
    }

    #[test]
    fn each_family_describes_itself() {
        let e: super::Expectation = serde_saphyr::from_str("flows: { consecutive: 3 }").unwrap();
        assert!(e.to_string().starts_with("traffic flows"), "{e}");
        let a: crate::action::Action = serde_saphyr::from_str("apply: [x]").unwrap();
        assert_eq!(a.to_string(), "apply x");
    }
}
