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

/// The exit code and standard error of `child` once it ends, within 30 s (a hang is
/// killed and fails the test: a deadlock must not stall the test run).
pub fn wait_bounded(mut child: std::process::Child) -> (Option<i32>, String) {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the harness did not end within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut err);
    }
    (status.code(), err)
}
