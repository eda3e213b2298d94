//! One HTTP/1.1 GET to a port of a pod through a port-forward, its body read as JSON:
//! how the harness reads what listens only on a pod's loopback (Envoy's admin API) or
//! answers loopback callers without credentials (istiod's debug endpoints). The
//! kubelet's runtime dials `localhost:<port>` inside the pod's network namespace
//! (containerd `pkg/cri/server/sandbox_portforward_linux.go`), so the pod sees a
//! loopback caller.

use crate::deadlines::POD_HTTP as DEADLINE;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::Api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` on `port` of the pod; the body as JSON. `what` names the server in errors
/// (`Envoy admin`, `istiod's debug endpoint`).
pub async fn get_json(
    client: &Client,
    namespace: &str,
    pod: &str,
    port: u16,
    path: &str,
    what: &str,
) -> Result<serde_json::Value, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let exchange = async {
        let mut forwarder = pods.portforward(pod, &[port]).await.map_err(|e| {
            let e = crate::words::Said::said(&e);
            format!("cannot port-forward to {namespace}/{pod}:{port}: {e}")
        })?;
        let mut stream = forwarder
            .take_stream(port)
            .ok_or_else(|| format!("no stream for {namespace}/{pod}:{port}"))?;
        // The kubelet reports a port it cannot reach on the port's error channel.
        let error = forwarder.take_error(port);
        // HTTP/1.1: Envoy refuses HTTP/1.0 unless configured to accept it.
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        drop(stream);
        if response.is_empty() {
            let cause = match error {
                Some(e) => tokio::time::timeout(std::time::Duration::from_millis(500), e)
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            let _ = forwarder.join().await;
            return Err(format!(
                "the port-forward to {namespace}/{pod}:{port} brought no answer{}",
                cause
                    .map(|c| format!(": {}", crate::exit::one_line(&c)))
                    .unwrap_or_default()
            ));
        }
        let _ = forwarder.join().await;
        Ok::<_, String>(response)
    };
    let response = tokio::time::timeout(DEADLINE, exchange)
        .await
        .map_err(|_| {
            format!(
                "{what} of {namespace}/{pod} did not answer {path} within {} s",
                DEADLINE.as_secs()
            )
        })??;
    let body = http_body(&response)
        .map_err(|e| format!("{what} of {namespace}/{pod} answered {path} with {e}"))?;
    serde_json::from_slice(&body)
        .map_err(|e| format!("{what} of {namespace}/{pod}: {path} is not JSON: {e}"))
}

/// The body of a raw HTTP/1.1 response read to its end: status 200 required; plain or
/// chunked transfer encoding.
pub fn http_body(response: &[u8]) -> Result<Vec<u8>, String> {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| "no HTTP headers".to_string())?;
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("`{status}`"));
    }
    let body = &response[split + 4..];
    if !head
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"))
    {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| "a truncated chunk".to_string())?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("a bad chunk size `{size_text}`"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size {
            return Err("a truncated chunk".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_bodies_are_read_and_errors_are_refused() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{\"a\": 1}";
        assert_eq!(http_body(plain).unwrap(), b"{\"a\": 1}");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n5\r\n: 1}\n\r\n0\r\n\r\n";
        assert_eq!(http_body(chunked).unwrap(), b"{\"a\": 1}\n");
        let refused = b"HTTP/1.1 426 Upgrade Required\r\n\r\n";
        assert!(http_body(refused).unwrap_err().contains("426"));
        assert!(http_body(b"garbage").is_err());
    }
}
