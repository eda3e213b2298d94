//! Why traffic fails when a caller's Envoy cannot complete mutual TLS with its
//! upstream: Envoy answers `503` with `upstream connect error or disconnect/reset before
//! headers. retried and the latest reset reason: remote connection failure` (the
//! frontend pastes it into its page, or the gateway sends it), and its access log says
//! why, in `%UPSTREAM_TRANSPORT_FAILURE_REASON%` (flags `URX,UF`):
//! `TLS_error:|268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:…` when
//! the upstream's certificate does not verify against the caller's root (two revisions
//! that do not share one). Such a failure does not heal by itself within a step, so a
//! traffic wait that sees it ends at once, quoting the caller's own log line.

use super::Env;
use super::traffic::Stop;
use crate::cluster::{istio, workloads};
use crate::probe::classify::Observation;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Envoy's words for an upstream it could not connect to (Envoy 1.40 leaves the
/// transport failure out of the body).
const RESET: &str = "upstream connect error or disconnect/reset before headers";
const CONNECTION_FAILURE: &str = "remote connection failure";
/// BoringSSL's reason when the peer's certificate does not verify.
const VERIFY_FAILED: &str = "CERTIFICATE_VERIFY_FAILED";

/// How often the callers' logs are read at most.
const EVERY: Duration = Duration::from_secs(2);
/// How much of each log is looked at.
const TAIL_LINES: i64 = 200;

/// Looks at the callers' logs when an answer shows Envoy failing to connect upstream.
pub struct HandshakeWatch<'a, 'e> {
    env: &'a Env<'e>,
    last: Mutex<Option<Instant>>,
    /// Only log lines of requests since then count (an old failure proves nothing now).
    since: k8s_openapi::jiff::Timestamp,
}

impl<'a, 'e> HandshakeWatch<'a, 'e> {
    pub fn new(env: &'a Env<'e>) -> HandshakeWatch<'a, 'e> {
        HandshakeWatch {
            env,
            last: Mutex::new(None),
            // Some slack for a node clock a little behind the harness's.
            since: k8s_openapi::jiff::Timestamp::now()
                .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(5))
                .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now()),
        }
    }

    /// The pods whose Envoy may be the caller: the ingress gateway's and the
    /// frontend's (the app's `sentence` workloads).
    async fn callers(&self) -> Vec<Pod> {
        let client = &self.env.cluster.client;
        let mut pods: Vec<Pod> =
            Api::<Pod>::namespaced(client.clone(), &self.env.config.ingress_namespace)
                .list(&ListParams::default().labels(istio::INGRESS_GATEWAY_SELECTOR))
                .await
                .map(|l| l.items)
                .unwrap_or_default();
        for (name, workload) in &self.env.suite.app.deployments {
            if workload.mode == "sentence"
                && let Ok(p) =
                    workloads::pods_of(client, &self.env.config.app_namespace, name).await
            {
                pods.extend(p);
            }
        }
        pods
    }

    async fn verify_failure(&self) -> Option<String> {
        let client = &self.env.cluster.client;
        for pod in self.callers().await {
            let (Some(name), Some(namespace)) =
                (pod.metadata.name.clone(), pod.metadata.namespace.clone())
            else {
                continue;
            };
            let params = LogParams {
                container: Some(workloads::SIDECAR_CONTAINER.to_string()),
                tail_lines: Some(TAIL_LINES),
                ..LogParams::default()
            };
            let Ok(text) = Api::<Pod>::namespaced(client.clone(), &namespace)
                .logs(&name, &params)
                .await
            else {
                continue;
            };
            let recent = |l: &&str| {
                started_at(l).is_some_and(|t| t >= self.since) && l.contains(VERIFY_FAILED)
            };
            if let Some(line) = text.lines().rev().find(recent) {
                let revision = super::proxy_versions::proxy_of(&pod)
                    .map(|(_, r)| r)
                    .unwrap_or_else(|_| istio::DEFAULT_REVISION.to_string());
                let excerpt: String = line.chars().take(400).collect();
                return Some(format!(
                    "{namespace}/{name} (revision {revision}) fails the TLS handshake with its upstream: the upstream's certificate does not verify against the root it trusts ({VERIFY_FAILED}); its log: {excerpt}"
                ));
            }
        }
        None
    }
}

/// When the request of an access-log line started (`[%START_TIME%]`, RFC 3339).
fn started_at(line: &str) -> Option<k8s_openapi::jiff::Timestamp> {
    line.strip_prefix('[')?.split_once(']')?.0.parse().ok()
}

impl Stop for HandshakeWatch<'_, '_> {
    fn why<'b>(
        &'b self,
        obs: &'b Observation,
    ) -> Pin<Box<dyn Future<Output = Option<String>> + Send + 'b>> {
        Box::pin(async move {
            if !(obs.detail.contains(RESET) && obs.detail.contains(CONNECTION_FAILURE)) {
                return None;
            }
            {
                let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
                if last.is_some_and(|t| t.elapsed() < EVERY) {
                    return None;
                }
                *last = Some(Instant::now());
            }
            self.verify_failure().await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_log_lines_are_dated_by_their_start_time() {
        let line = "[2026-12-07T12:52:34.598Z] \"GET / HTTP/1.1\" 503 URX,UF upstream_reset_before_response_started{remote_connection_failure|TLS_error:|268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:TLS_error_end} - \"-\"";
        let t = started_at(line).expect("a start time");
        assert_eq!(t.to_string(), "2026-12-07T12:52:34.598Z");
        assert!(started_at("Envoy says hello").is_none());
    }
}
