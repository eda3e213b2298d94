//! Running the external tools (kind, istioctl) with a deadline; their output is
//! returned, and a failure says what ran and what it printed.
//!
//! Each tool runs in a process group of its own and is listed while it runs, so an
//! interrupted run can stop exactly what it started ([`stop_running`]): exiting does
//! not stop children, and a `kind create cluster` left running would finish making a
//! cluster after the harness deleted it.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The tools running now, by process-group id (each tool leads its own group), and
/// whether the run is being interrupted (then nothing new starts).
pub struct Tools {
    state: Mutex<State>,
}

struct State {
    stopping: bool,
    groups: Vec<u32>,
}

/// The process's tools: what the interrupt handler stops.
static TOOLS: Tools = Tools::new();

#[cfg(unix)]
fn kill_group(pid: u32) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        // Already gone is fine: the group was only ever ours.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

#[cfg(not(unix))]
fn kill_group(_pid: u32) {}

/// Lists a started tool until it is dropped. Dropped before its tool was reaped (a
/// deadline passed), it kills the tool's whole group: `kill_on_drop` reaches only the
/// tool itself, not what it started.
struct Listed<'a> {
    tools: &'a Tools,
    pid: Option<u32>,
    reaped: bool,
}

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            if !self.reaped {
                kill_group(pid);
            }
            self.tools.state().groups.retain(|p| *p != pid);
        }
    }
}

/// Whether an interruption stops the tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnInterrupt {
    /// Killed with its group, and not started once the run is being interrupted.
    Stop,
    /// Left to finish (`kind delete cluster`: stopping it half-way would leave the
    /// cluster behind).
    Finish,
}

impl Tools {
    pub const fn new() -> Tools {
        Tools {
            state: Mutex::new(State {
                stopping: false,
                groups: Vec::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The process groups listed now.
    pub fn listed(&self) -> Vec<u32> {
        self.state().groups.clone()
    }

    /// From now on no stoppable tool starts, and every one still running is killed
    /// with the processes it started itself (kind's `docker` calls): its whole process
    /// group. Returns the group ids signalled.
    pub fn stop_running(&self) -> Vec<u32> {
        let groups: Vec<u32> = {
            let mut state = self.state();
            state.stopping = true;
            state.groups.drain(..).collect()
        };
        for pid in &groups {
            kill_group(*pid);
        }
        groups
    }

    pub async fn run_with(
        &self,
        program: &Path,
        args: &[&str],
        deadline: Duration,
        on_interrupt: OnInterrupt,
    ) -> Result<String, String> {
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
        // Started and listed under one lock, so an interruption either sees the tool
        // or has already forbidden it to start.
        let (child, mut listed) = {
            let mut state = self.state();
            if on_interrupt == OnInterrupt::Stop && state.stopping {
                return Err(format!(
                    "`{shown}` not started: the run is being interrupted"
                ));
            }
            let child = command
                .spawn()
                .map_err(|e| format!("cannot start `{shown}`: {e}"))?;
            let pid = child.id().filter(|_| on_interrupt == OnInterrupt::Stop);
            if let Some(pid) = pid {
                state.groups.push(pid);
            }
            (
                child,
                Listed {
                    tools: self,
                    pid,
                    reaped: false,
                },
            )
        };
        let output = tokio::time::timeout(deadline, child.wait_with_output())
            .await
            .map_err(|_| format!("`{shown}` did not finish within {} s", deadline.as_secs()))?;
        listed.reaped = true;
        let output = output.map_err(|e| format!("`{shown}` failed: {e}"))?;
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
}

impl Default for Tools {
    fn default() -> Tools {
        Tools::new()
    }
}

/// Stops the process's tools (see [`Tools::stop_running`]); for the interrupt handler.
pub fn stop_running() -> Vec<u32> {
    TOOLS.stop_running()
}

/// Runs a tool that an interruption stops.
pub async fn run(program: &Path, args: &[&str], deadline: Duration) -> Result<String, String> {
    run_with(program, args, deadline, OnInterrupt::Stop).await
}

/// A binary from the cache folder runs only if it still has the digest recorded when
/// it was verified (a download against its published checksum, or extracted from a
/// verified archive): checked right before each run.
pub fn check_cached(program: &Path) -> Result<(), String> {
    match super::download::cache_dir() {
        Ok(cache) if program.starts_with(&cache) => super::download::verify_recorded(program),
        _ => Ok(()),
    }
}

/// Runs a tool with the given behaviour on interruption.
pub async fn run_with(
    program: &Path,
    args: &[&str],
    deadline: Duration,
    on_interrupt: OnInterrupt,
) -> Result<String, String> {
    check_cached(program)?;
    TOOLS.run_with(program, args, deadline, on_interrupt).await
}
