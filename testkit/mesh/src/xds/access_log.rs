//! Access logs as Istio configures them with `meshConfig.accessLogFile=/dev/stdout`
//! (pilot/pkg/model/telemetry_logging.go `EnvoyTextLogFormat`; the listener-level log
//! only for `NR`, no filter chain, pilot/pkg/networking/core/accesslog.go
//! `listenerAccessLogFilter`), and one JSON log per proxy that stands in for Istio's
//! `istio_stats` filter: the stand-in derives `istio_requests_total` from what Envoy
//! records there (the peer certificate's URI SAN, the metadata-exchange headers, the
//! cluster and endpoint), so telemetry follows what the real Envoys did.

use serde_json::{Value, json};
use std::path::Path;

/// Istio's default text format.
pub(crate) const ISTIO_TEXT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

/// The header a proxy's metadata exchange carries its node ID in (Istio's
/// `peer_metadata` filter sends it on requests and answers with it on responses).
pub(crate) const PEER_ID_HEADER: &str = "x-envoy-peer-metadata-id";

fn file_log(path: &str, format: Value) -> Value {
    json!({
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path,
            "log_format": format,
        }
    })
}

/// The HTTP access log Istio writes to the proxy's standard output.
pub(crate) fn stdout_log() -> Value {
    file_log(
        "/dev/stdout",
        json!({"text_format_source": {"inline_string": ISTIO_TEXT_FORMAT}}),
    )
}

/// The listener's log: only connections no filter chain matched (`NR`).
pub(crate) fn listener_log() -> Value {
    let mut log = stdout_log();
    log["filter"] = json!({"response_flag_filter": {"flags": ["NR"]}});
    log
}

/// A listener's `access_log`: Istio's `NR` log when the proxy logs, else none.
pub(crate) fn listener_logs(on: bool) -> Value {
    if on {
        json!([listener_log()])
    } else {
        json!([])
    }
}

/// An HTTP connection manager's logs: Istio's (when the proxy logs) and the stand-in's
/// telemetry log, which is always there (it stands in for the stats filter).
pub(crate) fn http_logs(on: bool, telemetry_path: &Path, direction: Direction) -> Vec<Value> {
    let mut logs = Vec::new();
    if on {
        logs.push(stdout_log());
    }
    logs.push(telemetry_log(telemetry_path, direction));
    logs
}

/// Which side of the proxy a request log describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// A request to the proxy's own workload (Istio's `reporter="destination"`).
    Inbound,
    /// A request the proxy sends on (`reporter="source"`): a sidecar's outbound, or a
    /// gateway.
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// The JSON log the telemetry is derived from.
pub(crate) fn telemetry_log(path: &Path, direction: Direction) -> Value {
    let fields = json!({
        "dir": direction.as_str(),
        "code": "%RESPONSE_CODE%",
        "flags": "%RESPONSE_FLAGS%",
        "authority": "%REQ(:AUTHORITY)%",
        "local_port": "%DOWNSTREAM_LOCAL_PORT%",
        "downstream_peer_san": "%DOWNSTREAM_PEER_URI_SAN%",
        "downstream_local_san": "%DOWNSTREAM_LOCAL_URI_SAN%",
        "request_peer_id": format!("%REQ({})%", PEER_ID_HEADER.to_uppercase()),
        "cluster": "%UPSTREAM_CLUSTER_RAW%",
        "upstream_host": "%UPSTREAM_HOST%",
        "upstream_workload": "%UPSTREAM_METADATA(istio:workload)%",
        "upstream_peer_san": "%UPSTREAM_PEER_URI_SAN%",
        "response_peer_id": format!("%RESP({})%", PEER_ID_HEADER.to_uppercase()),
    });
    file_log(&path.display().to_string(), json!({"json_format": fields}))
}
