//! Port-forwarding through the API server: the websocket upgrade of
//! `pods/{name}/portforward` and the `v4.channel.k8s.io` channel protocol kube's
//! `Portforwarder` speaks (port i: data channel 2i, error channel 2i+1, each opened by
//! a `[channel, port_lo, port_hi]` frame). Where a (pod, port) lands is the port-forward
//! hook's answer; without a hook nothing listens in the pod.

use crate::cluster::Shared;
use crate::errors::{ApiError, ApiResult, reason_for};
use crate::server::{Body, Req, error_response};
use crate::{meta, names};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

const PROTOCOL: &str = "v4.channel.k8s.io";

/// Where a port-forward to (pod, port) lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// Pump bytes both ways to this (loopback) address.
    Tcp(SocketAddr),
    /// Send this text on the port's error channel, then close (kubelet's "connection
    /// refused" case).
    Refused(String),
    /// Upgrade, send the initial port frames, then close the websocket without data or
    /// error (a dropped forward).
    CloseAfterUpgrade,
    /// Answer the upgrade request with this HTTP status and a metav1.Status body.
    RejectUpgrade { status: u16, message: String },
}

/// The kubelet's (containerd's) message when nothing listens on `port` in the pod.
pub fn connection_refused_message(pod: &Value, port: u16) -> String {
    let sandbox = names::hex_id(meta::uid(pod), 64);
    let netns = names::hex_id(&format!("netns/{}", meta::uid(pod)), 32);
    format!(
        "error forwarding port {port} to pod {sandbox}, uid : failed to execute portforward in network namespace \"/var/run/netns/cni-{}-{}-{}-{}-{}\": failed to connect to localhost:{port} inside namespace \"{sandbox}\", IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused IPv6 dial tcp6 [::1]:{port}: connect: connection refused ",
        &netns[0..8],
        &netns[8..12],
        &netns[12..16],
        &netns[16..20],
        &netns[20..32]
    )
}

fn header_has(req: &Req, name: http::header::HeaderName, token: &str) -> bool {
    req.headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Checks the request and the pod, asks the hook where each port lands, and answers
/// 101 Switching Protocols (the forwarding itself runs in a spawned task).
pub fn start(
    shared: Arc<Shared>,
    pod: Value,
    req: &Req,
    on_upgrade: hyper::upgrade::OnUpgrade,
) -> ApiResult<Response<Body>> {
    let name = meta::name(&pod).to_string();
    let mut ports = Vec::new();
    for raw in req.query.all("ports").iter().flat_map(|v| v.split(',')) {
        match raw.trim().parse::<u16>() {
            Ok(p) if p > 0 => ports.push(p),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "invalid port \"{raw}\": must be between 1 and 65535, inclusive"
                )));
            }
        }
    }
    if ports.is_empty() {
        return Err(ApiError::bad_request("at least one port must be specified"));
    }
    if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
    if phase != "Running" {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: pod {name} is not running (phase {phase})"
        )));
    }
    let key = req.headers.get(http::header::SEC_WEBSOCKET_KEY).cloned();
    let (Some(key), true) = (key, header_has(req, http::header::UPGRADE, "websocket")) else {
        return Err(ApiError::bad_request(
            "unable to upgrade connection: the testkit fake forwards ports over websockets only (Upgrade: websocket)",
        ));
    };
    if !header_has(req, http::header::SEC_WEBSOCKET_PROTOCOL, PROTOCOL) {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: none of the offered subprotocols is supported (want {PROTOCOL})"
        )));
    }
    let hook = shared.port_forward_hook();
    let mut upstreams = Vec::new();
    for port in &ports {
        let up = match &hook {
            Some(h) => catch_unwind(AssertUnwindSafe(|| h(&pod, *port))).unwrap_or_else(|_| {
                Upstream::RejectUpgrade {
                    status: 500,
                    message: "the port-forward hook panicked".into(),
                }
            }),
            None => Upstream::Refused(connection_refused_message(&pod, *port)),
        };
        if let Upstream::RejectUpgrade { status, message } = &up {
            return Ok(error_response(&ApiError::new(
                *status,
                reason_for(*status),
                message.clone(),
            )));
        }
        upstreams.push(up);
    }
    let accept = derive_accept_key(key.as_bytes());
    let mut stop = shared.stopped();
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        tokio::select! {
            _ = forward(ws, ports, upstreams, pod) => {}
            _ = stop.changed() => {}
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        http::header::SEC_WEBSOCKET_PROTOCOL,
        http::HeaderValue::from_static(PROTOCOL),
    );
    if let Ok(v) = http::HeaderValue::from_str(&accept) {
        h.insert(http::header::SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok(r)
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut m = Vec::with_capacity(data.len() + 1);
    m.push(channel);
    m.extend_from_slice(data);
    Message::binary(m)
}

/// One port: connect to the upstream and pump, or report the failure on the error
/// channel. Returns when the upstream side is done.
async fn port_task(
    index: usize,
    port: u16,
    upstream: Upstream,
    pod: Value,
    out: mpsc::UnboundedSender<Message>,
    mut from_client: mpsc::UnboundedReceiver<Bytes>,
) {
    let data = (2 * index) as u8;
    let error = data + 1;
    match upstream {
        Upstream::Tcp(addr) => {
            let connected =
                tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
                    .await;
            let Ok(Ok(tcp)) = connected else {
                let _ = out.send(frame(
                    error,
                    connection_refused_message(&pod, port).as_bytes(),
                ));
                return;
            };
            let (mut r, mut w) = tcp.into_split();
            tokio::spawn(async move {
                while let Some(b) = from_client.recv().await {
                    if w.write_all(&b).await.is_err() {
                        break;
                    }
                }
                let _ = w.shutdown().await;
            });
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if out.send(frame(data, &buf[..n])).is_err() {
                            break;
                        }
                    }
                }
            }
        }
        Upstream::Refused(text) => {
            let _ = out.send(frame(error, text.as_bytes()));
        }
        Upstream::CloseAfterUpgrade | Upstream::RejectUpgrade { .. } => {}
    }
}

async fn forward<S>(ws: WebSocketStream<S>, ports: Vec<u16>, upstreams: Vec<Upstream>, pod: Value)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    for (i, port) in ports.iter().enumerate() {
        let [lo, hi] = port.to_le_bytes();
        let _ = out_tx.send(frame((2 * i) as u8, &[lo, hi]));
        let _ = out_tx.send(frame((2 * i + 1) as u8, &[lo, hi]));
    }
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<()>();
    let mut to_ports = Vec::new();
    let mut tasks = Vec::new();
    for (i, (port, upstream)) in ports.iter().zip(upstreams).enumerate() {
        let (tx, rx) = mpsc::unbounded_channel();
        to_ports.push(tx);
        let (out, done, pod) = (out_tx.clone(), done_tx.clone(), pod.clone());
        let port = *port;
        tasks.push(tokio::spawn(async move {
            port_task(i, port, upstream, pod, out, rx).await;
            let _ = done.send(());
        }));
    }
    let mut remaining = ports.len();
    let mut client_closed = false;
    while remaining > 0 {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(b))) if b.len() > 1 => {
                    let channel = b[0] as usize;
                    if channel.is_multiple_of(2)
                        && let Some(tx) = to_ports.get(channel / 2)
                    {
                        let _ = tx.send(b.slice(1..));
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    client_closed = true;
                    break;
                }
                Some(Ok(_)) => {}
            },
            Some(()) = done_rx.recv() => remaining -= 1,
        }
    }
    drop(to_ports);
    for t in &tasks {
        t.abort();
    }
    drop(out_tx);
    let _ = writer.await;
    if !client_closed {
        // Give the client a moment to answer the Close frame.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(m)) = stream.next().await {
                if m.is_close() {
                    break;
                }
            }
        })
        .await;
    }
}
