//! Connecting to a cluster: the kubeconfig (a file, or KUBECONFIG / ~/.kube/config),
//! clients whose calls cannot hang, and the server checks of the preflight. Every
//! failure is one line that says what is wrong in words (unreachable, credentials
//! rejected, certificate not trusted, too old), never a debug dump.

use crate::deadlines::PREFLIGHT_REQUEST as SERVER_CHECK_TIMEOUT;
use crate::exit::one_line;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::path::Path;
use std::time::Duration;

/// A cluster's clients: `client` for API calls (each bounded), `streams` for
/// port-forwards, whose connections stay open and idle for as long as the run needs
/// them (a read timeout would cut them).
#[derive(Clone)]
pub struct Clients {
    pub client: Client,
    pub streams: Client,
    /// `context <name> (user <user>, server <url>)`, for messages.
    pub identity: String,
}

/// The user's kubeconfig and context, checked before anything is touched: the file
/// exists and parses, and the context (given, or the current one) is in it.
pub fn check_kubeconfig(path: Option<&Path>, context: Option<&str>) -> Result<(), String> {
    let kubeconfig = read_kubeconfig(path)?;
    let which = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the kubeconfig (KUBECONFIG or ~/.kube/config)".into());
    let names: Vec<&str> = kubeconfig
        .contexts
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    if names.is_empty() {
        return Err(format!(
            "{which} has no contexts (is it empty?); pass --kubeconfig with the file of an existing cluster, or omit --kubeconfig and --context to let the harness create a kind cluster"
        ));
    }
    let wanted = match context.or(kubeconfig.current_context.as_deref()) {
        Some(c) => c,
        None => {
            return Err(format!(
                "{which} sets no current context; pass --context (contexts: {})",
                names.join(", ")
            ));
        }
    };
    if !names.contains(&wanted) {
        return Err(format!(
            "context `{wanted}` is not in {which}; contexts there: {}",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ));
    }
    Ok(())
}

fn read_kubeconfig(path: Option<&Path>) -> Result<Kubeconfig, String> {
    match path {
        Some(path) => {
            if path.is_dir() {
                return Err(format!(
                    "kubeconfig {} is a directory, not a file; pass the kubeconfig file itself with --kubeconfig",
                    path.display()
                ));
            }
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
                    crate::words::unquoted_paths(&one_line(&e.to_string()))
                )
            })
        }
        None => Kubeconfig::read().map_err(|e| {
            format!(
                "cannot read a kubeconfig from KUBECONFIG or ~/.kube/config ({}); pass --kubeconfig FILE",
                crate::words::unquoted_paths(&one_line(&e.to_string()))
            )
        }),
    }
}

/// Loads the kubeconfig (`path`, else KUBECONFIG, else ~/.kube/config) and builds the
/// clients for `context`.
pub async fn clients(path: Option<&Path>, context: Option<&str>) -> Result<Clients, String> {
    let kubeconfig = read_kubeconfig(path)?;
    let context_name = context
        .map(str::to_string)
        .or_else(|| kubeconfig.current_context.clone())
        .unwrap_or_else(|| "?".into());
    let user = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.user.clone())
        .unwrap_or_else(|| "?".into());
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
                crate::words::unquoted_paths(&one_line(&e.to_string()))
            )
        })?;
    let identity = format!(
        "context `{context_name}` (user `{user}`, server {})",
        config.cluster_url
    );
    config.connect_timeout = Some(Duration::from_secs(3));
    let mut streams = config.clone();
    streams.read_timeout = None;
    streams.write_timeout = None;
    config.read_timeout = Some(Duration::from_secs(30));
    let build = |c: Config| {
        Client::try_from(c).map_err(|e| format!("cannot build a Kubernetes client ({e})"))
    };
    Ok(Clients {
        client: build(config)?,
        streams: build(streams)?,
        identity,
    })
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

/// Every error of a chain, including those wrapped inside `io::Error`s.
fn chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        out.push(e);
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    out
}

/// A request to the API server that failed, in words: what it means and what to do.
pub fn explain(error: &kube::Error, identity: &str) -> String {
    if let kube::Error::Api(status) = error {
        return match status.code {
            401 => format!(
                "the API server rejected the credentials of {identity} (401 Unauthorized); refresh them or pass another --context/--kubeconfig"
            ),
            403 => format!(
                "the API server rejected the credentials of {identity} for lack of permission (403 Forbidden: {}); the harness installs Istio and needs cluster-admin",
                one_line(&status.message)
            ),
            code => format!(
                "the API server answered {code} ({}) to {identity}",
                one_line(&status.message)
            ),
        };
    }
    let layers = chain(error);
    let tls = layers
        .iter()
        .find_map(|e| e.downcast_ref::<rustls::Error>());
    if let Some(rustls::Error::InvalidCertificate(why)) = tls {
        let why = match why {
            rustls::CertificateError::UnknownIssuer => {
                "signed by a CA the kubeconfig does not hold".to_string()
            }
            rustls::CertificateError::BadSignature => "its signature does not verify".to_string(),
            other => crate::words::certificate_problem(other),
        };
        return format!(
            "the API server's certificate is not trusted ({why}) for {identity}; the kubeconfig belongs to another cluster, or the cluster was recreated"
        );
    }
    if let Some(tls) = tls {
        return format!("TLS with the API server failed ({tls}) for {identity}");
    }
    if let kube::Error::SerdeError(e) = error {
        return format!(
            "the server at {identity} answered, but not as a Kubernetes API server (its answer is not the JSON an API server sends: {e}); check the kubeconfig's server address"
        );
    }
    for e in &layers {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match io.kind() {
                ConnectionRefused => {
                    return format!(
                        "the API server is unreachable: connection refused at {identity}; is the cluster running?"
                    );
                }
                TimedOut => {
                    return format!(
                        "the API server is unreachable: the connection timed out at {identity}; is the cluster running and its address right?"
                    );
                }
                _ => {}
            }
        }
    }
    let text = layers
        .last()
        .map(|e| e.to_string())
        .unwrap_or_else(|| error.to_string());
    format!(
        "the API server is unreachable at {identity} ({}); is the cluster running and the kubeconfig's server address right?",
        one_line(&text)
    )
}

/// Reaches the API server (bounded), checks its version against `minimum` and that the
/// user may read cluster-wide objects. Each failure is one line with what to do.
pub async fn check_server(clients: &Clients, minimum: (u32, u32)) -> Result<ServerInfo, String> {
    let client = &clients.client;
    let identity = &clients.identity;
    let version = tokio::time::timeout(SERVER_CHECK_TIMEOUT, client.apiserver_version())
        .await
        .map_err(|_| format!("the API server did not answer within {} s at {identity}; is the cluster running and the kubeconfig's server address right?", SERVER_CHECK_TIMEOUT.as_secs()))?
        .map_err(|e| explain(&e, identity))?;
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
        Ok(Err(e)) => return Err(explain(&e, identity)),
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
