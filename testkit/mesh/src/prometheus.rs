//! Prometheus, as Istio's addon runs it and as a real process for tests.
//!
//! The addon (istio/istio release-1.30 and release-1.31 `samples/addons/prometheus.yaml`,
//! identical; Prometheus v3.10.0) reads its config from ConfigMap `prometheus`, key
//! `prometheus.yml`: `global.scrape_interval: 15s`, `scrape_timeout: 10s`. Job
//! `kubernetes-pods` (`honor_labels: true`, `kubernetes_sd_configs: role: pod`) keeps pods
//! annotated `prometheus.io/scrape: "true"` (and not `scrape_slow`), takes
//! `__metrics_path__` from `prometheus.io/path` and the port from `prometheus.io/port`,
//! maps every pod label to a target label (`labelmap __meta_kubernetes_pod_label_(.+)`,
//! names sanitized), adds `namespace`, `pod`, `node`, and drops pods in phase
//! Pending|Succeeded|Failed|Completed. The simulation writes the result of those
//! relabelings as a file_sd file whose targets all point at the mesh's metrics server.

use crate::objects::sanitize_label_name;
use crate::world::World;
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The `kubernetes-pods` targets of `world`, as file_sd JSON.
pub(crate) fn file_sd_targets(world: &World, metrics: SocketAddr) -> Value {
    let mut groups = vec![];
    for pod in &world.pods {
        if pod
            .annotations
            .get("prometheus.io/scrape")
            .map(String::as_str)
            != Some("true")
        {
            continue;
        }
        if pod
            .annotations
            .get("prometheus.io/scrape_slow")
            .map(String::as_str)
            == Some("true")
        {
            continue;
        }
        if matches!(
            pod.phase.as_str(),
            "Pending" | "Succeeded" | "Failed" | "Completed"
        ) || pod.ip.is_none()
        {
            continue;
        }
        let path = pod
            .annotations
            .get("prometheus.io/path")
            .filter(|p| !p.is_empty())
            .cloned()
            .unwrap_or_else(|| "/metrics".into());
        let port = pod
            .annotations
            .get("prometheus.io/port")
            .cloned()
            .unwrap_or_else(|| "80".into());
        let mut labels = Map::new();
        for (k, v) in &pod.labels {
            labels.insert(sanitize_label_name(k), json!(v));
        }
        labels.insert(
            "__metrics_path__".into(),
            json!(format!(
                "/{}/{}/{port}/{}",
                pod.namespace,
                pod.name,
                path.trim_start_matches('/')
            )),
        );
        labels.insert("namespace".into(), json!(pod.namespace));
        labels.insert("pod".into(), json!(pod.name));
        if !pod.node.is_empty() {
            labels.insert("node".into(), json!(pod.node));
        }
        groups.push(json!({"targets": [metrics.to_string()], "labels": labels}));
    }
    Value::Array(groups)
}

/// Writes `content` to `path` atomically if it changed.
pub(crate) fn write_if_changed(path: &Path, content: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(content) {
        return Ok(());
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path)
}

/// A Prometheus duration (`1s`, `500ms`).
fn prom_duration(d: Duration) -> String {
    let ms = d.as_millis().max(1);
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A real Prometheus process for tests: config with `scrape_interval`, job
/// `kubernetes-pods` reading `file_sd`, tsdb in a temp dir, listening on an ephemeral
/// loopback port; stopped by its PID on drop.
pub struct PrometheusProcess {
    pub url: String,
    pub address: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for PrometheusProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusProcess")
            .field("url", &self.url)
            .field("pid", &self.child.id())
            .finish()
    }
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PrometheusProcess {
    /// The config Prometheus runs with.
    pub fn config_yaml(file_sd: &Path, scrape_interval: Duration) -> String {
        let interval = prom_duration(scrape_interval);
        // Prometheus refuses a global scrape_timeout above the interval.
        let timeout = prom_duration(scrape_interval.min(Duration::from_secs(10)));
        format!(
            "global:\n  scrape_interval: {interval}\n  scrape_timeout: {timeout}\n  evaluation_interval: {interval}\n\
             scrape_configs:\n- job_name: kubernetes-pods\n  honor_labels: true\n  file_sd_configs:\n  - files:\n    - {}\n    refresh_interval: 1s\n",
            serde_json::to_string(&file_sd.display().to_string()).unwrap_or_default()
        )
    }

    /// Starts Prometheus and waits (at most 20 s) until `/-/ready` answers 200.
    pub async fn start(
        binary: &Path,
        file_sd: &Path,
        scrape_interval: Duration,
    ) -> Result<PrometheusProcess, String> {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(binary, file_sd, scrape_interval).await {
                Ok(p) => return Ok(p),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn try_start(
        binary: &Path,
        file_sd: &Path,
        scrape_interval: Duration,
    ) -> Result<PrometheusProcess, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, Self::config_yaml(file_sd, scrape_interval))
            .map_err(|e| format!("writing {}: {e}", config.display()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::File::create(dir.path().join("prometheus.log"))
            .map_err(|e| format!("log file: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .arg("--web.enable-lifecycle")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        let mut p = PrometheusProcess {
            url: format!("http://{address}"),
            address,
            child,
            dir,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                return Err(format!("prometheus exited with {status}: {}", p.log_tail()));
            }
            if let Ok((200, _)) = get(address, "/-/ready").await {
                return Ok(p);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "prometheus did not become ready within 20 s: {}",
                    p.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// `GET path` on this Prometheus: (status, body).
    pub async fn get(&self, path: &str) -> Result<(u16, String), String> {
        get(self.address, path).await
    }
}

/// A minimal HTTP/1.1 GET (bounded: 10 s, 16 MiB).
pub(crate) async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = vec![];
        (&mut s)
            .take(16 << 20)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| "timed out".to_string())??;
    parse_response(&buf)
}

/// Status and body of a raw HTTP/1.1 response (plain or chunked).
pub(crate) fn parse_response(buf: &[u8]) -> Result<(u16, String), String> {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP headers")?;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let body = &buf[split + 4..];
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    if !chunked {
        return Ok((status, String::from_utf8_lossy(body).to_string()));
    }
    let mut out = vec![];
    let mut rest = body;
    while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&rest[..end])
                .split(';')
                .next()
                .unwrap_or("")
                .trim(),
            16,
        )
        .map_err(|_| "bad chunk")?;
        rest = &rest[end + 2..];
        if size == 0 || rest.len() < size {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
    Ok((status, String::from_utf8_lossy(&out).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_keeps_the_timeout_within_the_interval() {
        let y =
            PrometheusProcess::config_yaml(Path::new("/tmp/sd.json"), Duration::from_millis(1500));
        assert!(y.contains("scrape_interval: 1500ms"));
        assert!(y.contains("scrape_timeout: 1500ms"));
        assert!(y.contains("job_name: kubernetes-pods"));
        let y = PrometheusProcess::config_yaml(Path::new("/tmp/sd.json"), Duration::from_secs(15));
        assert!(y.contains("scrape_timeout: 10s"));
    }

    #[test]
    fn chunked_bodies_are_joined() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(r).unwrap(), (200, "abcde".into()));
    }
}
