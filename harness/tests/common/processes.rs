//! Looking at processes the tests started, by PID (Linux `/proc`).
#![allow(dead_code)]

/// Whether a process runs (a zombie waiting to be reaped does not).
pub fn process_runs(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(!matches!(state, 'Z' | 'X'))
        })
        .unwrap_or(false)
}
