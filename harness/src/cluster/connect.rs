//! Connecting to a cluster: the kubeconfig (a file, or KUBECONFIG / ~/.kube/config),
//! a client whose calls cannot hang, and the server checks of the preflight.

use crate::exit::one_line;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::path::Path;
use std::time::Duration;

/// Bound on one preflight request to the API server.
pub const SERVER_CHECK_TIMEOUT: Duration = Duration::from_secs(6);

/// Loads the kubeconfig (`path`, else KUBECONFIG, else ~/.kube/config) and builds a
/// client for `context` with connect and read timeouts.
pub async fn client(path: Option<&Path>, context: Option<&str>) -> Result<Client, String> {
    let kubeconfig = match path {
        Some(path) => {
            if !path.exists() {
                return Err(format!(
                    "kubeconfig {} does not exist; pass --kubeconfig with the file of an existing cluster, or omit it to let the harness create a kind cluster",
                    path.display()
                ));
            }
            Kubeconfig::read_from(path).map_err(|e| {
                format!(
                    "kubeconfig {} is malformed ({}); fix the file or pass another with --kubeconfig",
                    path.display(),
                    one_line(&e.to_string())
                )
            })?
        }
        None => Kubeconfig::read().map_err(|e| {
            format!(
                "cannot read a kubeconfig from KUBECONFIG or ~/.kube/config ({}); pass --kubeconfig FILE",
                one_line(&e.to_string())
            )
        })?,
    };
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..KubeConfigOptions::default()
    };
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| {
            let which = path
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "the kubeconfig".into());
            format!(
                "cannot use {which}{} ({}); check --context and the file",
                context
                    .map(|c| format!(" with context `{c}`"))
                    .unwrap_or_default(),
                one_line(&e.to_string())
            )
        })?;
    config.connect_timeout = Some(Duration::from_secs(3));
    config.read_timeout = Some(Duration::from_secs(30));
    Client::try_from(config).map_err(|e| format!("cannot build a Kubernetes client ({e})"))
}

/// What the preflight learnt about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// e.g. `v1.34.0`
    pub git_version: String,
    pub major: u32,
    pub minor: u32,
}

/// `"33+"` (as some providers report it) → 33.
fn leading_number(text: &str) -> Option<u32> {
    let digits: String = text.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Reaches the API server (bounded), checks its version against `minimum` and that the
/// user may read cluster-wide objects. Each failure is one line with what to do.
pub async fn check_server(client: &Client, minimum: (u32, u32)) -> Result<ServerInfo, String> {
    let version = tokio::time::timeout(SERVER_CHECK_TIMEOUT, client.apiserver_version())
        .await
        .map_err(|_| format!("the API server did not answer within {} s; is the cluster running and the kubeconfig's server address right?", SERVER_CHECK_TIMEOUT.as_secs()))?
        .map_err(|e| format!("the API server is unreachable ({e}); is the cluster running and the kubeconfig's server address right?"))?;
    let (major, minor) = match (
        leading_number(&version.major),
        leading_number(&version.minor),
    ) {
        (Some(major), Some(minor)) => (major, minor),
        _ => {
            return Err(format!(
                "the API server reported an unreadable version `{}`.`{}`",
                version.major, version.minor
            ));
        }
    };
    if (major, minor) < minimum {
        return Err(format!(
            "Kubernetes {} is too old: the harness needs {}.{} or newer (native sidecars); use a newer cluster or let the harness create one",
            version.git_version, minimum.0, minimum.1
        ));
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    match tokio::time::timeout(
        SERVER_CHECK_TIMEOUT,
        namespaces.list(&ListParams::default().limit(1)),
    )
    .await
    {
        Err(_) => {
            return Err(format!(
                "the API server did not answer a namespace list within {} s",
                SERVER_CHECK_TIMEOUT.as_secs()
            ));
        }
        Ok(Err(kube::Error::Api(status))) if status.code == 401 || status.code == 403 => {
            return Err(format!(
                "no permission: the kubeconfig's user may not list namespaces ({}); the harness installs Istio and needs cluster-admin",
                status.message
            ));
        }
        Ok(Err(e)) => return Err(format!("cannot list namespaces ({e})")),
        Ok(Ok(_)) => {}
    }
    Ok(ServerInfo {
        git_version: version.git_version,
        major,
        minor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_minor_versions_are_read() {
        assert_eq!(leading_number("33+"), Some(33));
        assert_eq!(leading_number("1"), Some(1));
        assert_eq!(leading_number("x"), None);
    }
}
