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

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Whether tests that need an absent binary must fail instead of skipping (CI sets it).
pub fn require_all() -> bool {
    std::env::var_os("HARNESS_REQUIRE_ALL_TESTS").is_some()
}

/// `name` on PATH, if it is there.
pub fn find_binary(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// A test (in a `harness = false` test binary) that needs the program `name`: without
/// it the trial is reported *ignored* with the reason in cargo test's own output and
/// summary line ("test x ... ignored, prometheus is not installed ..."), unless
/// HARNESS_REQUIRE_ALL_TESTS is set (CI), where it fails. `install` says how to get it.
pub fn trial_needing(
    test_name: &'static str,
    name: &'static str,
    install: &'static str,
    test: impl FnOnce(std::path::PathBuf) + Send + 'static,
) -> libtest_mimic::Trial {
    libtest_mimic::Trial::ignorable_test(test_name, move || {
        let Some(path) = find_binary(name) else {
            let why = format!("`{name}` is not installed ({install})");
            if require_all() {
                return Err(format!("{why} and HARNESS_REQUIRE_ALL_TESTS is set").into());
            }
            return Ok(libtest_mimic::Completion::ignored_with(why));
        };
        test(path);
        Ok(libtest_mimic::Completion::Completed)
    })
}

/// A test that needs several programs: ignored with the first missing one's reason
/// (failed under HARNESS_REQUIRE_ALL_TESTS); `test` gets their paths in order.
pub fn trial_needing_each(
    test_name: &'static str,
    programs: &'static [(&'static str, &'static str)],
    test: impl FnOnce(Vec<std::path::PathBuf>) + Send + 'static,
) -> libtest_mimic::Trial {
    libtest_mimic::Trial::ignorable_test(test_name, move || {
        let mut paths = Vec::new();
        for (name, install) in programs {
            let Some(path) = find_binary(name) else {
                let why = format!("`{name}` is not installed ({install})");
                if require_all() {
                    return Err(format!("{why} and HARNESS_REQUIRE_ALL_TESTS is set").into());
                }
                return Ok(libtest_mimic::Completion::ignored_with(why));
            };
            paths.push(path);
        }
        test(paths);
        Ok(libtest_mimic::Completion::Completed)
    })
}

/// The folder of real upstream output (`../shared/fixtures/upstream` beside the
/// checkout; a clone alone does not have it).
pub fn upstream_fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/upstream")
}

/// A test of a parser against one file of real upstream output: ignored with the reason
/// when the file is not there, failed instead under HARNESS_REQUIRE_UPSTREAM_FIXTURES
/// (`.ci/run` sets it: `../shared` is beside the checkout there, not in a clone).
pub fn trial_on_fixture(
    test_name: &'static str,
    file: &'static str,
    test: impl FnOnce(serde_json::Value) + Send + 'static,
) -> libtest_mimic::Trial {
    libtest_mimic::Trial::ignorable_test(test_name, move || {
        let path = upstream_fixtures().join(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                let why = format!(
                    "the upstream fixture {} cannot be read ({e}); it lives in ../shared beside the checkout",
                    path.display()
                );
                if std::env::var_os("HARNESS_REQUIRE_UPSTREAM_FIXTURES").is_some() {
                    return Err(
                        format!("{why} and HARNESS_REQUIRE_UPSTREAM_FIXTURES is set").into(),
                    );
                }
                return Ok(libtest_mimic::Completion::ignored_with(why));
            }
        };
        let value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
        test(value);
        Ok(libtest_mimic::Completion::Completed)
    })
}

/// A plain test in a `harness = false` test binary.
pub fn trial(
    test_name: &'static str,
    test: impl FnOnce() + Send + 'static,
) -> libtest_mimic::Trial {
    libtest_mimic::Trial::test(test_name, move || {
        test();
        Ok(())
    })
}

/// Runs an async test body on its own runtime (two workers, like #[tokio::test]
/// with the multi-thread flavour).
pub fn block_on<T, F: std::future::Future<Output = T>>(test: F) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(test)
}
