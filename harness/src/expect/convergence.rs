//! For a traffic verdict that did not hold: whether the mesh's config had converged by
//! then, as istiod tells it (`/debug/syncz` of every ready istiod): every proxy of the
//! app's namespace and every gateway of the ingress namespace SYNCED (every xDS type
//! istiod sent it acked), and since when (the last push istiod sent any of them).
//! Evidence only: it never changes a verdict, and an unreadable istiod is said as such.

use super::{Env, settled};
use crate::deadlines::POD_HTTP;
use crate::telemetry::xds_sync::{self, ProxySync};
use crate::verdict::{Judgement, Verdict};

/// Adds the note to a failed judgement's details.
pub async fn annotate(env: &Env<'_>, mut judgement: Judgement) -> Judgement {
    if judgement.verdict == Verdict::Failed {
        judgement.evidence.details.push(note(env).await);
    }
    judgement
}

/// One line on whether config had converged.
pub async fn note(env: &Env<'_>) -> String {
    let read = tokio::time::timeout(POD_HTTP, proxies(env))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "istiod did not answer within {} s",
                POD_HTTP.as_secs()
            ))
        });
    match read {
        Ok(proxies) => describe(&proxies, &env.config.app_namespace),
        Err(e) => {
            format!("config convergence unknown: istiod's sync status could not be read: {e}")
        }
    }
}

/// The proxies that carry the app's traffic, as every ready istiod reports them.
async fn proxies(env: &Env<'_>) -> Result<Vec<ProxySync>, String> {
    let config = env.config;
    Ok(settled::every_report(env)
        .await?
        .into_iter()
        .flat_map(|(_, proxies)| proxies)
        .filter(|p| match xds_sync::split_proxy_id(&p.id) {
            Some((_, ns)) if ns == config.app_namespace => true,
            Some((_, ns)) => ns == config.ingress_namespace && p.proxy_type == "router",
            None => false,
        })
        .collect())
}

fn describe(proxies: &[ProxySync], app_namespace: &str) -> String {
    if proxies.is_empty() {
        return format!(
            "config convergence unknown: istiod reports no proxy of {app_namespace} or the ingress gateway"
        );
    }
    let lagging: Vec<String> = proxies
        .iter()
        .filter_map(|p| {
            let why = p.not_synced();
            (!why.is_empty()).then(|| format!("{}: {}", p.id, why.join(", ")))
        })
        .collect();
    if !lagging.is_empty() {
        return format!(
            "config had not converged: istiod reports {} of {} proxies not synced ({})",
            lagging.len(),
            proxies.len(),
            lagging.join("; ")
        );
    }
    let last = xds_sync::latest_time(proxies.iter().filter_map(ProxySync::last_sent));
    let since = match last {
        Some(t) => {
            let age = t
                .parse::<k8s_openapi::jiff::Timestamp>()
                .ok()
                .map(|sent| k8s_openapi::jiff::Timestamp::now().duration_since(sent))
                .filter(|d| !d.is_negative())
                .map(|d| format!(", {:.1} s before this verdict", d.as_secs_f64()))
                .unwrap_or_default();
            format!("; the last push to them was sent at {t} (istiod's clock){age}")
        }
        None => String::new(),
    };
    format!(
        "config had converged: istiod reports all {} proxies of {app_namespace} and the ingress gateway SYNCED{since}",
        proxies.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn proxy(id: &str, acked: &str, sent_time: &str) -> Value {
        let sent = "2026-08-31T10:00:01Z/171b4e28ba-2fa1-11d2-883f-0016d3cca427";
        json!({"proxy": id, "proxy_type": "sidecar", "resources": {
            "type.googleapis.com/envoy.config.cluster.v3.Cluster": {"sent": sent, "acked": acked, "sentTime": sent_time}}})
    }

    #[test]
    fn converged_says_since_when_and_lagging_proxies_are_named() {
        let sent = "2026-08-31T10:00:01Z/171b4e28ba-2fa1-11d2-883f-0016d3cca427";
        let all = xds_sync::parse_syncz(&json!([
            proxy("age-1.sentences", sent, "2026-08-31T10:00:01.5Z"),
            proxy("name-1.sentences", sent, "2026-08-31T10:00:02.25Z"),
        ]))
        .unwrap();
        let text = describe(&all, "sentences");
        assert!(
            text.starts_with("config had converged: istiod reports all 2 proxies")
                && text.contains("sent at 2026-08-31T10:00:02.25Z (istiod's clock)"),
            "{text}"
        );
        let one_behind = xds_sync::parse_syncz(&json!([
            proxy("age-1.sentences", sent, "2026-08-31T10:00:01.5Z"),
            proxy("name-1.sentences", "", "2026-08-31T10:00:02.25Z"),
        ]))
        .unwrap();
        let text = describe(&one_behind, "sentences");
        assert!(
            text.starts_with("config had not converged: istiod reports 1 of 2")
                && text.contains("name-1.sentences: CDS STALE"),
            "{text}"
        );
        assert!(describe(&[], "sentences").contains("unknown"));
    }
}
