//! The closed vocabulary of suite files. Every struct refuses unknown fields; every
//! reference that the loader validates (manifests, workloads) keeps its position.

use super::duration::HumanDuration;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::fmt;
use std::time::Duration;

/// `suites/index.yaml`: which suites exist, in the order a full run takes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteIndex {
    pub suites: Vec<Spanned<String>>,
}

/// `suites/<name>/suite.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteFile {
    pub title: String,
    /// Deployments of the app (in the app namespace) that steps may name.
    pub workloads: Vec<String>,
    pub steps: Vec<StepFile>,
    /// Actions run after the last step unless the user asked to keep what was created.
    #[serde(default)]
    pub teardown: Vec<Action>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    pub id: Spanned<String>,
    pub title: String,
    /// The documented outcome this step proves (O1..O9), for the plan and the report.
    #[serde(default)]
    pub outcome: Option<String>,
    #[serde(default)]
    pub actions: Vec<Action>,
    pub expect: Vec<Expectation>,
}

/// What a step changes, in order.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Action {
    /// Server-side apply the manifests (create or update).
    Apply(Vec<Spanned<String>>),
    /// Create what is missing; leave what exists untouched (no rollout).
    Ensure(Vec<Spanned<String>>),
    /// Delete the objects of the manifests and wait until they are gone.
    Delete(Vec<Spanned<String>>),
    /// Set the pod template label `sidecar.istio.io/inject` and wait for the rollout.
    Inject(InjectAction),
    /// Issue this run's PKI, then apply the manifest that carries it (the TLS Secret).
    IssuePki(PkiAction),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectAction {
    pub sidecar: bool,
    pub workloads: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PkiAction {
    pub secret: Spanned<String>,
}

/// What a step expects, judged in order; the first that does not hold ends the step.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Expectation {
    /// Named workloads have (or have not) an `istio-proxy` sidecar in every pod.
    Sidecars(SidecarsExpectation),
    /// K consecutive requests through the ingress answer 200 with a sentence.
    Flows(FlowsExpectation),
    /// K consecutive requests through the ingress end in the given HTTP class.
    Fails(FailsExpectation),
    /// Every request over a window after the change ends in the given class.
    Holds(HoldsExpectation),
    /// A TLS client with the given identity gets through the MUTUAL gateway.
    TlsAccepts(TlsExpectation),
    /// A TLS client with the given identity is refused at the TLS layer.
    TlsRejects(TlsExpectation),
    /// Telemetry (Kiali's padlock rule) on each named edge, from deltas of this phase.
    Mtls(MtlsExpectation),
    /// The client sidecar's clusters originate (or do not originate) mutual TLS.
    ProxyConfig(ProxyConfigExpectation),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SidecarsExpectation {
    #[serde(default)]
    pub present: Vec<Spanned<String>>,
    #[serde(default)]
    pub absent: Vec<Spanned<String>>,
    #[serde(default = "defaults::rollout_deadline")]
    pub deadline: HumanDuration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowsExpectation {
    #[serde(default = "defaults::flows_consecutive")]
    pub consecutive: u32,
    #[serde(default = "defaults::traffic_deadline")]
    pub deadline: HumanDuration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailsExpectation {
    pub class: Spanned<ResultClass>,
    #[serde(default = "defaults::fails_consecutive")]
    pub consecutive: u32,
    #[serde(default = "defaults::traffic_deadline")]
    pub deadline: HumanDuration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldsExpectation {
    pub class: ResultClass,
    #[serde(default = "defaults::hold_window")]
    pub window: HumanDuration,
    /// At least this many results inside the window, or the hold proves nothing.
    #[serde(default = "defaults::hold_min_requests")]
    pub min_requests: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsExpectation {
    pub client: ClientIdentity,
    #[serde(default = "defaults::tls_consecutive")]
    pub consecutive: u32,
    #[serde(default = "defaults::tls_deadline")]
    pub deadline: HumanDuration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtlsExpectation {
    pub edges: Vec<EdgeExpectation>,
    /// Requests sent through the ingress during the phase.
    #[serde(default = "defaults::telemetry_requests")]
    pub requests: u32,
    #[serde(default = "defaults::telemetry_deadline")]
    pub deadline: HumanDuration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeExpectation {
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    pub padlock: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfigExpectation {
    /// The workload whose sidecar (or the ingress gateway) originates the calls.
    pub client: Spanned<String>,
    pub clusters: Vec<ClusterExpectation>,
    #[serde(default = "defaults::rollout_deadline")]
    pub deadline: HumanDuration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterExpectation {
    /// Service name in the app namespace.
    pub service: String,
    #[serde(default)]
    pub subset: Option<String>,
    #[serde(default = "defaults::app_port")]
    pub port: u16,
    pub mtls: bool,
}

/// Who the TLS client claims to be.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ClientIdentity {
    /// The client certificate signed by this run's CA.
    Trusted,
    /// No client certificate at all.
    None,
    /// A client certificate from an unrelated CA.
    Untrusted,
}

impl fmt::Display for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientIdentity::Trusted => "client certificate from the run's CA",
            ClientIdentity::None => "no client certificate",
            ClientIdentity::Untrusted => "client certificate from an unrelated CA",
        })
    }
}

/// The class of one request's result, as the prober classifies it and suites name it:
/// `ok`, `http-error` (any non-sentence answer), `http-NNN`, `reset`, `refused`,
/// `timeout`, `tls`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResultClass {
    Ok,
    HttpError(Option<u16>),
    Reset,
    Refused,
    Timeout,
    Tls,
}

impl ResultClass {
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "ok" => ResultClass::Ok,
            "http-error" => ResultClass::HttpError(None),
            "reset" => ResultClass::Reset,
            "refused" => ResultClass::Refused,
            "timeout" => ResultClass::Timeout,
            "tls" => ResultClass::Tls,
            other => match other.strip_prefix("http-").map(str::parse::<u16>) {
                Some(Ok(code)) if (100..600).contains(&code) => ResultClass::HttpError(Some(code)),
                _ => {
                    return Err(format!(
                        "unknown result class `{other}` (expected ok, http-error, http-NNN, reset, refused, timeout or tls)"
                    ));
                }
            },
        })
    }

    /// Whether a concrete result of class `seen` is what `self` asks for.
    pub fn matches(self, seen: ResultClass) -> bool {
        match (self, seen) {
            (ResultClass::HttpError(None), ResultClass::HttpError(_)) => true,
            (want, seen) => want == seen,
        }
    }

    /// A class proving the request reached an HTTP server (not a dead path).
    pub fn is_http(self) -> bool {
        matches!(self, ResultClass::Ok | ResultClass::HttpError(_))
    }
}

impl fmt::Display for ResultClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResultClass::Ok => f.write_str("ok"),
            ResultClass::HttpError(None) => f.write_str("http-error"),
            ResultClass::HttpError(Some(code)) => write!(f, "http-{code}"),
            ResultClass::Reset => f.write_str("reset"),
            ResultClass::Refused => f.write_str("refused"),
            ResultClass::Timeout => f.write_str("timeout"),
            ResultClass::Tls => f.write_str("tls"),
        }
    }
}

impl<'de> Deserialize<'de> for ResultClass {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ResultClass::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Defaults chosen from SPEC §4–§5: istiod pushes within 100 ms–10 s, rollouts take
/// tens of seconds on kind, Prometheus scrapes every 15 s.
pub mod defaults {
    use super::*;

    pub fn rollout_deadline() -> HumanDuration {
        HumanDuration(Duration::from_secs(240))
    }
    pub fn traffic_deadline() -> HumanDuration {
        HumanDuration(Duration::from_secs(120))
    }
    pub fn flows_consecutive() -> u32 {
        10
    }
    pub fn fails_consecutive() -> u32 {
        20
    }
    pub fn hold_window() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
    pub fn hold_min_requests() -> u32 {
        20
    }
    pub fn tls_consecutive() -> u32 {
        3
    }
    pub fn tls_deadline() -> HumanDuration {
        HumanDuration(Duration::from_secs(120))
    }
    pub fn telemetry_requests() -> u32 {
        40
    }
    pub fn telemetry_deadline() -> HumanDuration {
        HumanDuration(Duration::from_secs(180))
    }
    pub fn app_port() -> u16 {
        5000
    }
}

impl Expectation {
    /// The longest this expectation may take, for the plan.
    pub fn deadline(&self) -> Duration {
        match self {
            Expectation::Sidecars(e) => e.deadline.0,
            Expectation::Flows(e) => e.deadline.0,
            Expectation::Fails(e) => e.deadline.0,
            Expectation::Holds(e) => e.window.0,
            Expectation::TlsAccepts(e) | Expectation::TlsRejects(e) => e.deadline.0,
            Expectation::Mtls(e) => e.deadline.0,
            Expectation::ProxyConfig(e) => e.deadline.0,
        }
    }
}

/// `a, b, c` from spanned names.
fn names(list: &[Spanned<String>]) -> String {
    list.iter()
        .map(|s| s.value.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expectation::Sidecars(e) => {
                let mut parts = Vec::new();
                if !e.present.is_empty() {
                    parts.push(format!("sidecar in {}", names(&e.present)));
                }
                if !e.absent.is_empty() {
                    parts.push(format!("no sidecar in {}", names(&e.absent)));
                }
                write!(f, "{} (within {})", parts.join("; "), e.deadline)
            }
            Expectation::Flows(e) => write!(
                f,
                "traffic flows: {} consecutive 200 with a sentence (within {})",
                e.consecutive, e.deadline
            ),
            Expectation::Fails(e) => write!(
                f,
                "traffic fails: {} consecutive {} (within {})",
                e.consecutive, e.class.value, e.deadline
            ),
            Expectation::Holds(e) => write!(
                f,
                "every request over {} ends {} (at least {} requests)",
                e.window, e.class, e.min_requests
            ),
            Expectation::TlsAccepts(e) => write!(
                f,
                "MUTUAL gateway accepts a client with {}: {} consecutive 200 with a sentence (within {})",
                e.client, e.consecutive, e.deadline
            ),
            Expectation::TlsRejects(e) => write!(
                f,
                "MUTUAL gateway rejects a client with {} at the TLS layer, {} consecutive times (within {})",
                e.client, e.consecutive, e.deadline
            ),
            Expectation::Mtls(e) => {
                let edges = e
                    .edges
                    .iter()
                    .map(|edge| {
                        format!(
                            "{} → {} {}",
                            edge.from.value,
                            edge.to.value,
                            if edge.padlock { "mTLS" } else { "no mTLS" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                write!(
                    f,
                    "telemetry after {} requests: {} (within {})",
                    e.requests, edges, e.deadline
                )
            }
            Expectation::ProxyConfig(e) => {
                let clusters = e
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
                    e.client.value, clusters, e.deadline
                )
            }
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Apply(m) => write!(f, "apply {}", names(m)),
            Action::Ensure(m) => {
                write!(f, "ensure {} exist (create only what is missing)", names(m))
            }
            Action::Delete(m) => write!(f, "delete {} and wait until gone", names(m)),
            Action::Inject(i) => write!(
                f,
                "{} sidecar injection for {} and wait for the rollout",
                if i.sidecar { "enable" } else { "disable" },
                names(&i.workloads)
            ),
            Action::IssuePki(p) => write!(f, "issue the run's PKI, then apply {}", p.secret.value),
        }
    }
}
