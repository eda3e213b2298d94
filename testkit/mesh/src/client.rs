//! One HTTP/1.1 GET on a new connection, as the app's `requests.get(url, timeout=1)`
//! makes it (no connection reuse), and as the stand-in reads Envoy's admin.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpSocket;

/// How a GET failed (what Python `requests` raises on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GetError {
    Connect(String),
    /// The connection closed or reset before a whole response arrived.
    Broken(String),
    Timeout,
}

impl std::fmt::Display for GetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GetError::Connect(e) => write!(f, "connect failed: {e}"),
            GetError::Broken(e) => write!(f, "connection broken: {e}"),
            GetError::Timeout => write!(f, "timed out"),
        }
    }
}

/// A response: status and body.
#[derive(Debug, Clone)]
pub(crate) struct Got {
    pub status: u16,
    pub body: String,
}

/// `GET path` with `Host: host` to `to`, from `from` (a local address to bind) when
/// given, all within `within`.
pub(crate) async fn get(
    to: SocketAddr,
    host: &str,
    path: &str,
    from: Option<IpAddr>,
    within: Duration,
) -> Result<Got, GetError> {
    tokio::time::timeout(within, exchange(to, host, path, from))
        .await
        .unwrap_or(Err(GetError::Timeout))
}

async fn exchange(
    to: SocketAddr,
    host: &str,
    path: &str,
    from: Option<IpAddr>,
) -> Result<Got, GetError> {
    let socket = TcpSocket::new_v4().map_err(|e| GetError::Connect(e.to_string()))?;
    if let Some(ip) = from {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| GetError::Connect(format!("cannot bind {ip}: {e}")))?;
    }
    let stream = socket
        .connect(to)
        .await
        .map_err(|e| GetError::Connect(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| GetError::Broken(e.to_string()))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "python-requests/2.24.0")
        .header(hyper::header::ACCEPT, "*/*")
        .body(Empty::<Bytes>::new())
        .map_err(|e| GetError::Broken(e.to_string()))?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| GetError::Broken(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| GetError::Broken(e.to_string()))?
            .to_bytes();
        Ok(Got {
            status,
            body: String::from_utf8_lossy(&body).to_string(),
        })
    }
    .await;
    driver.abort();
    result
}
