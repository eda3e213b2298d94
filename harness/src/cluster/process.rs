//! Running the external tools (kind, istioctl) with a deadline; their output is
//! returned, and a failure says what ran and what it printed.
//!
//! Each tool runs in a process group of its own and is listed while it runs, so an
//! interrupted run can stop exactly what it started ([`stop_running`]): exiting does
//! not stop children, and a `kind create cluster` left running would finish making a
//! cluster after the harness deleted it.

use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

/// Process-group ids of the tools running now (each tool leads its own group).
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn running() -> std::sync::MutexGuard<'static, Vec<u32>> {
    RUNNING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Lists a started tool until it is dropped.
struct Listed(Option<u32>);

impl Listed {
    fn new(pid: Option<u32>) -> Listed {
        if let Some(pid) = pid {
            running().push(pid);
        }
        Listed(pid)
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            running().retain(|p| *p != pid);
        }
    }
}

/// Kills every tool this process started that is still running, with the processes
/// it started itself (kind's `docker` calls): their whole process group. Returns the
/// group ids signalled.
pub fn stop_running() -> Vec<u32> {
    let groups: Vec<u32> = running().drain(..).collect();
    #[cfg(unix)]
    for pid in &groups {
        if let Some(pid) = i32::try_from(*pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            // Already gone is fine: the group was only ever ours.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
    groups
}

pub async fn run(program: &Path, args: &[&str], deadline: Duration) -> Result<String, String> {
    let shown = format!("{} {}", program.display(), args.join(" "));
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start `{shown}`: {e}"))?;
    let _listed = Listed::new(child.id());
    let output = tokio::time::timeout(deadline, child.wait_with_output())
        .await
        .map_err(|_| format!("`{shown}` did not finish within {} s", deadline.as_secs()))?
        .map_err(|e| format!("`{shown}` failed: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).to_string())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        Err(format!("`{shown}` exited with {}: {last}", output.status))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_running_tool_and_what_it_started_are_stopped_and_then_unlisted() {
        let dir = tempfile::tempdir().unwrap();
        let grandchild = dir.path().join("grandchild.pid");
        // The tool starts a child of its own (as kind starts docker) and waits.
        let script = format!("sleep 30 & echo $! > {}; wait", grandchild.display());
        let tool = tokio::spawn(async move {
            run(Path::new("sh"), &["-c", &script], Duration::from_secs(60)).await
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !grandchild.exists() || running().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the tool never started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pid = std::fs::read_to_string(&grandchild).unwrap();
        let stopped = stop_running();
        assert!(!stopped.is_empty());
        let result = tokio::time::timeout(Duration::from_secs(10), tool)
            .await
            .expect("a stopped tool ends its run")
            .unwrap();
        assert!(result.unwrap_err().contains("exited with"));
        assert!(running().is_empty());
        // The tool's own child went with its group: gone, or a zombie until reaped.
        let alive = || {
            std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
                .ok()
                .and_then(|stat| {
                    let state = stat.rsplit_once(") ")?.1.chars().next()?;
                    Some(!matches!(state, 'Z' | 'X'))
                })
                .unwrap_or(false)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while alive() {
            assert!(
                std::time::Instant::now() < deadline,
                "the grandchild survived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
