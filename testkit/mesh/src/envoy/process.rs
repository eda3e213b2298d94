//! One Envoy process: started from a bootstrap file, its standard output and error
//! kept as the pod's `istio-proxy` log (Istio writes access logs to `/dev/stdout`),
//! stopped by its PID when dropped.
//!
//! Every Envoy is forked by one long-lived thread and, where `setpriv` exists, with
//! `PR_SET_PDEATHSIG` (which fires when the *forking thread* ends): so an Envoy never
//! outlives the test process, not even one killed by a signal.

use super::binary::{EnvoyBinary, setpriv};
use std::collections::VecDeque;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;

/// The most log lines kept per proxy.
const LOG_LINES: usize = 50_000;

/// A proxy's log: the lines Envoy wrote, oldest first, and how many were dropped.
#[derive(Debug, Default)]
pub(crate) struct ProcessLog {
    pub dropped: usize,
    pub lines: VecDeque<String>,
}

impl ProcessLog {
    fn push(&mut self, line: String) {
        if self.lines.len() >= LOG_LINES {
            self.lines.pop_front();
            self.dropped += 1;
        }
        self.lines.push_back(line);
    }

    /// Lines from the `from`-th written on, and the index after the last.
    pub fn since(&self, from: usize) -> (Vec<String>, usize) {
        let skip = from.saturating_sub(self.dropped);
        let lines: Vec<String> = self.lines.iter().skip(skip).cloned().collect();
        (lines, self.dropped + self.lines.len())
    }
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// The thread every Envoy is forked from; it lives as long as the process.
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        let _ = std::thread::Builder::new()
            .name("envoy-spawner".into())
            .spawn(move || {
                while let Ok((mut command, reply)) = rx.recv() {
                    let _ = reply.send(command.spawn());
                }
            });
        Mutex::new(tx)
    })
}

fn spawn(command: Command) -> std::io::Result<Child> {
    let (tx, rx) = mpsc::channel();
    spawner()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((command, tx))
        .map_err(|_| std::io::Error::other("the Envoy spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("the Envoy spawner thread is gone"))?
}

pub(crate) struct EnvoyProcess {
    child: Mutex<Child>,
    pub pid: u32,
    pub log: Arc<Mutex<ProcessLog>>,
    readers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for EnvoyProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvoyProcess")
            .field("pid", &self.pid)
            .finish()
    }
}

impl Drop for EnvoyProcess {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
        for r in &self.readers {
            r.abort();
        }
    }
}

fn read_lines<R>(
    runtime: &tokio::runtime::Handle,
    from: R,
    log: Arc<Mutex<ProcessLog>>,
) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    runtime.spawn(async move {
        let mut lines = BufReader::new(from).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            log.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    })
}

impl EnvoyProcess {
    /// Starts Envoy on `bootstrap` (one worker thread, no hot restart, access logs
    /// flushed every 20 ms so telemetry read from them is current).
    pub fn start(
        binary: &EnvoyBinary,
        bootstrap: &Path,
        runtime: &tokio::runtime::Handle,
    ) -> Result<EnvoyProcess, String> {
        let envoy_args = [
            "-c".to_string(),
            bootstrap.display().to_string(),
            "--disable-hot-restart".into(),
            "--concurrency".into(),
            "1".into(),
            "--log-level".into(),
            "warning".into(),
            // Deprecation notices of fields istiod still writes, once per update.
            "--component-log-level".into(),
            "misc:error".into(),
            "--file-flush-interval-msec".into(),
            "20".into(),
            // Istio's `drainDuration`: connections on a replaced filter chain or listener
            // finish their requests instead of being cut.
            "--drain-time-s".into(),
            "45".into(),
        ];
        let mut command = match setpriv() {
            Some(setpriv) => {
                let mut c = Command::new(setpriv);
                c.arg("--pdeathsig").arg("KILL").arg("--").arg(&binary.path);
                c
            }
            None => Command::new(&binary.path),
        };
        command
            .args(envoy_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child =
            spawn(command).map_err(|e| format!("cannot start {}: {e}", binary.path.display()))?;
        let pid = child.id();
        let log = Arc::new(Mutex::new(ProcessLog::default()));
        let mut readers = Vec::new();
        let _guard = runtime.enter();
        if let Some(out) = child.stdout.take()
            && let Ok(out) = tokio::process::ChildStdout::from_std(out)
        {
            readers.push(read_lines(runtime, out, Arc::clone(&log)));
        }
        if let Some(err) = child.stderr.take()
            && let Ok(err) = tokio::process::ChildStderr::from_std(err)
        {
            readers.push(read_lines(runtime, err, Arc::clone(&log)));
        }
        Ok(EnvoyProcess {
            child: Mutex::new(child),
            pid,
            log,
            readers,
        })
    }

    /// Whether the process has exited, and how.
    pub fn exited(&self) -> Option<String> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("cannot be waited for: {e}")),
        }
    }

    /// The last `n` lines of its log, for error messages.
    pub fn tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let skip = log.lines.len().saturating_sub(n);
        log.lines
            .iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}
