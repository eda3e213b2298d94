//! Preflight checks: each returns one line saying what is wrong and what to do, well
//! within 10 seconds (nothing here may hang).

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one preflight probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(4);

/// Where the Docker engine listens: `DOCKER_HOST` (unless empty) or the default socket.
pub fn docker_endpoint() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string())
}

/// The engine's address schemes the harness reaches; others (`ssh://`, `npipe://`,
/// `fd://`) are refused at once, saying what works instead.
fn check_scheme(endpoint: &str) -> Result<(), String> {
    if endpoint.starts_with("unix://") || endpoint.starts_with("tcp://") {
        return Ok(());
    }
    let scheme = endpoint.split_once("://").map_or(endpoint, |(s, _)| s);
    let instead = if scheme == "ssh" {
        " (forward the remote engine's socket, e.g. `ssh -nNT -L /tmp/docker.sock:/var/run/docker.sock HOST`, and set DOCKER_HOST=unix:///tmp/docker.sock)"
    } else {
        ""
    };
    Err(format!(
        "DOCKER_HOST `{endpoint}` uses `{scheme}`, which the harness does not support: it reaches the Docker engine over unix:// or tcp:// only{instead}; or pass --kubeconfig to use an existing cluster"
    ))
}

/// Asks the Docker engine at `endpoint` (`unix://PATH` or `tcp://HOST:PORT`) for
/// `/_ping`. kind needs a running engine; the docker CLI alone is not enough.
pub async fn docker_reachable(endpoint: &str) -> Result<(), String> {
    check_scheme(endpoint)?;
    let advice = "kind needs a running Docker engine: start Docker, or pass --kubeconfig to use an existing cluster";
    let request = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n";
    let exchange = async {
        let mut response = Vec::new();
        if let Some(path) = endpoint.strip_prefix("unix://") {
            let mut stream = tokio::net::UnixStream::connect(path).await?;
            stream.write_all(request).await?;
            stream.read_to_end(&mut response).await?;
        } else if let Some(addr) = endpoint.strip_prefix("tcp://") {
            let mut stream = tokio::net::TcpStream::connect(addr).await?;
            stream.write_all(request).await?;
            stream.read_to_end(&mut response).await?;
        } else {
            return Err(std::io::Error::other(format!(
                "unsupported DOCKER_HOST scheme in `{endpoint}`"
            )));
        }
        Ok::<_, std::io::Error>(response)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, exchange).await {
        Err(_) => Err(format!(
            "no Docker engine answered at {endpoint} within {} s; {advice}",
            PROBE_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(format!(
            "no Docker engine reachable at {endpoint} ({e}); {advice}"
        )),
        Ok(Ok(response)) => {
            let text = String::from_utf8_lossy(&response);
            let status_ok = text.lines().next().is_some_and(|l| l.contains(" 200"));
            if status_ok {
                Ok(())
            } else {
                let first = text.lines().next().unwrap_or("no answer");
                Err(format!(
                    "the Docker engine at {endpoint} answered `{first}` to /_ping; {advice}"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    #[tokio::test]
    async fn an_ssh_docker_host_is_refused_at_once_saying_what_works() {
        let started = std::time::Instant::now();
        let err = docker_reachable("ssh://builder@remote").await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            err.contains("does not support")
                && err.contains("unix:// or tcp://")
                && err.contains("ssh -nNT -L")
                && err.contains("--kubeconfig"),
            "{err}"
        );
        let err = docker_reachable("npipe:////./pipe/docker_engine")
            .await
            .unwrap_err();
        assert!(err.contains("uses `npipe`"), "{err}");
    }

    #[tokio::test]
    async fn missing_socket_is_one_clear_line() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("unix://{}", dir.path().join("docker.sock").display());
        let started = std::time::Instant::now();
        let err = docker_reachable(&endpoint).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(err.contains("no Docker engine reachable"), "{err}");
        assert!(err.contains("--kubeconfig"), "says what to do: {err}");
        assert!(!err.contains('\n'));
    }

    #[tokio::test]
    async fn a_real_ping_answer_passes_and_a_wrong_one_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            for answer in [
                "HTTP/1.0 200 OK\r\n\r\nOK",
                "HTTP/1.0 500 Internal Server Error\r\n\r\n",
            ] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let endpoint = format!("unix://{}", path.display());
        docker_reachable(&endpoint).await.unwrap();
        let err = docker_reachable(&endpoint).await.unwrap_err();
        assert!(err.contains("500"), "{err}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_silent_engine_times_out_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let _listener = UnixListener::bind(&path).unwrap(); // accepts into the backlog, never answers
        let started = std::time::Instant::now();
        let err = docker_reachable(&format!("unix://{}", path.display()))
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        assert!(err.contains("within"), "{err}");
    }
}
