//! One run per reports folder: `<reports-dir>/.harness.lock` holds the PID of the run
//! that writes there (and, on Linux, when that process started, so a PID reused by an
//! unrelated process does not keep the folder locked). A second run into the folder is
//! refused naming the first; the lock of a process that is gone is taken over.

use std::io::Write;
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = ".harness.lock";

/// Held for the run; dropping it (or [`release`]) removes the lock.
#[derive(Debug)]
pub struct ReportsLock {
    path: PathBuf,
}

impl Drop for ReportsLock {
    fn drop(&mut self) {
        release_file(&self.path);
    }
}

/// `pid start` of this process.
fn own_stamp() -> String {
    stamp_of(std::process::id())
}

fn stamp_of(pid: u32) -> String {
    match start_time(pid) {
        Some(start) => format!("{pid} {start}"),
        None => pid.to_string(),
    }
}

/// Field 22 of `/proc/<pid>/stat` (after the parenthesised command, which may hold
/// spaces): clock ticks since boot when the process started.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_command = &stat[stat.rfind(')')? + 1..];
    after_command.split_whitespace().nth(19).map(str::to_string)
}

/// Whether the process a lock names is still the one that wrote it.
fn holder_alive(stamp: &str) -> bool {
    let mut parts = stamp.split_whitespace();
    let Some(pid) = parts.next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    if !process_exists(pid) {
        return false;
    }
    match (parts.next(), start_time(pid)) {
        (Some(recorded), Some(now)) => recorded == now,
        _ => true,
    }
}

fn process_exists(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        // It exists, and belongs to someone else.
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// Takes the reports folder for this run, or says which run has it.
pub fn acquire(dir: &Path) -> Result<ReportsLock, String> {
    let path = dir.join(FILE_NAME);
    // Twice at most: once more after removing a stale lock.
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut file) => {
                file.write_all(own_stamp().as_bytes())
                    .map_err(|e| format!("cannot write the lock {}: {e}", path.display()))?;
                return Ok(ReportsLock { path });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let stamp = std::fs::read_to_string(&path).unwrap_or_default();
                if holder_alive(&stamp) {
                    let pid = stamp.split_whitespace().next().unwrap_or("?");
                    return Err(format!(
                        "the reports folder {} is in use by another run of the harness (PID {pid}, lock {}): wait for it to end, or pass another --reports-dir",
                        dir.display(),
                        path.display()
                    ));
                }
                tracing::debug!("taking over the stale lock {} ({stamp})", path.display());
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(format!(
                            "cannot remove the stale lock {} of a run that is gone: {e}",
                            path.display()
                        ));
                    }
                }
            }
            Err(e) => {
                return Err(format!(
                    "cannot create the lock {} ({e}); pass --reports-dir with a writable folder",
                    path.display()
                ));
            }
        }
    }
    Err(format!(
        "another run took the reports folder {} at the same moment: pass another --reports-dir",
        dir.display()
    ))
}

/// Removes this process's lock of `dir`, if it holds one (for exits that skip
/// destructors).
pub fn release(dir: &Path) {
    release_file(&dir.join(FILE_NAME));
}

fn release_file(path: &Path) {
    let ours = std::fs::read_to_string(path).is_ok_and(|s| s.trim() == own_stamp());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_is_refused_naming_the_first_and_the_lock_goes_with_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let held = acquire(dir.path()).unwrap();
        let e = acquire(dir.path()).unwrap_err();
        assert!(
            e.contains(&format!("PID {}", std::process::id())) && e.contains("--reports-dir"),
            "{e}"
        );
        drop(held);
        assert!(!dir.path().join(FILE_NAME).exists());
        let _again = acquire(dir.path()).unwrap();
    }

    #[test]
    fn the_lock_of_a_process_that_is_gone_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), format!("{gone} 1")).unwrap();
        let _taken = acquire(dir.path()).unwrap();
        // A PID that lives on with another start time is another process.
        let reused = format!("{} 0", std::process::id());
        assert!(!holder_alive(&reused));
        assert!(holder_alive(&own_stamp()));
        assert!(!holder_alive("garbage"));
    }
}
