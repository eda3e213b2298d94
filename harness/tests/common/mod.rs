//! Real peers on loopback for the tests: a small HTTP/1.1 server whose answers the test
//! decides per request (status and body, a connection reset, or silence).
#![allow(dead_code)]

pub mod kube_mock;
pub mod tls_server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Debug)]
pub enum Reply {
    Http {
        status: u16,
        body: Vec<u8>,
        content_type: &'static str,
    },
    /// Close with RST (SO_LINGER 0) right after reading the request.
    Reset,
    /// Read the request and never answer.
    Silent,
}

impl Reply {
    pub fn text(status: u16, body: &str) -> Reply {
        Reply::Http {
            status,
            body: body.as_bytes().to_vec(),
            content_type: "text/plain",
        }
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves on 127.0.0.1 (ephemeral port); `handler(path, n)` gets the request path and
/// how many requests came before.
pub async fn serve<F>(handler: F) -> TestServer
where
    F: Fn(&str, usize) -> Reply + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    let handler = Arc::new(handler);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = Arc::clone(&handler);
            let counter = Arc::clone(&counter);
            tokio::spawn(async move { connection(stream, handler, counter).await });
        }
    });
    TestServer {
        addr,
        requests,
        task,
    }
}

async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    loop {
        let n = stream.read(&mut byte).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Some(String::from_utf8_lossy(&buf).to_string());
        }
    }
}

async fn connection<F>(mut stream: TcpStream, handler: Arc<F>, counter: Arc<AtomicUsize>)
where
    F: Fn(&str, usize) -> Reply + Send + Sync + 'static,
{
    let _ = stream.set_nodelay(true);
    while let Some(head) = read_head(&mut stream).await {
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let n = counter.fetch_add(1, Ordering::SeqCst);
        match handler(&path, n) {
            Reply::Http {
                status,
                body,
                content_type,
            } => {
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                if stream.write_all(head.as_bytes()).await.is_err()
                    || stream.write_all(&body).await.is_err()
                {
                    return;
                }
            }
            Reply::Reset => {
                let _ = stream.set_zero_linger();
                return;
            }
            Reply::Silent => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
        }
    }
}

/// Whether tests that need an absent binary must fail instead of skipping (CI sets it).
pub fn require_all() -> bool {
    std::env::var_os("HARNESS_REQUIRE_ALL_TESTS").is_some()
}

/// Finds `name` on PATH, or says why the test skips (and fails when CI requires all).
pub fn binary_or_skip(name: &str, test: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if require_all() {
            panic!(
                "{test}: `{name}` is not installed and HARNESS_REQUIRE_ALL_TESTS is set (.ci/run installs it)"
            );
        }
        eprintln!(
            "SKIP {test}: `{name}` is not installed (apt-get install {name}); .ci/run installs it"
        );
    }
    found
}
