//! Running the external tools (kind, istioctl) with a deadline; their output is
//! returned, and a failure says what ran and what it printed.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

pub async fn run(program: &Path, args: &[&str], deadline: Duration) -> Result<String, String> {
    let shown = format!("{} {}", program.display(), args.join(" "));
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start `{shown}`: {e}"))?;
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
