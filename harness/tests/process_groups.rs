//! The tools the harness runs (kind, istioctl), as real processes: each in a process
//! group of its own, stopped with what it started on interruption or at its deadline,
//! and a tool that must finish (`kind delete`) never stopped.
#![cfg(target_os = "linux")]

#[path = "common/processes.rs"]
mod processes;

use harness::cluster::process::{OnInterrupt, Tools};
use processes::process_runs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A tool that starts a child of its own (as kind starts docker) and waits for it.
fn tool_with_a_child(pid_file: &Path) -> String {
    format!("sleep 30 & echo $! > {}; wait", pid_file.display())
}

/// Runs `sh -c script` as a tool of `tools`, in the background.
fn spawn(
    tools: &Arc<Tools>,
    script: String,
    deadline: Duration,
    on_interrupt: OnInterrupt,
) -> tokio::task::JoinHandle<Result<String, String>> {
    let tools = Arc::clone(tools);
    tokio::spawn(async move {
        tools
            .run_with(Path::new("sh"), &["-c", &script], deadline, on_interrupt)
            .await
    })
}

#[tokio::test]
async fn a_running_tool_and_what_it_started_are_stopped_and_nothing_starts_after() {
    let tools = Arc::new(Tools::new());
    let dir = tempfile::tempdir().unwrap();
    let grandchild = dir.path().join("grandchild.pid");
    let tool = spawn(
        &tools,
        tool_with_a_child(&grandchild),
        Duration::from_secs(60),
        OnInterrupt::Stop,
    );
    until("the tool never started", || {
        grandchild.exists() && !tools.listed().is_empty()
    })
    .await;
    let pid = std::fs::read_to_string(&grandchild).unwrap();
    assert!(!tools.stop_running().is_empty());
    let result = tokio::time::timeout(Duration::from_secs(10), tool)
        .await
        .expect("a stopped tool ends its run")
        .unwrap();
    assert!(result.unwrap_err().contains("exited with"));
    assert!(tools.listed().is_empty());
    until("the tool's own child survived", || !process_runs(&pid)).await;

    // Once stopping, a stoppable tool is not started; one that must finish is.
    let refused = tools
        .run_with(
            Path::new("true"),
            &[],
            Duration::from_secs(10),
            OnInterrupt::Stop,
        )
        .await
        .unwrap_err();
    assert!(
        refused.contains("not started: the run is being interrupted"),
        "{refused}"
    );
    tools
        .run_with(
            Path::new("true"),
            &[],
            Duration::from_secs(10),
            OnInterrupt::Finish,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_tool_past_its_deadline_is_killed_with_what_it_started() {
    let tools = Tools::new();
    let dir = tempfile::tempdir().unwrap();
    let grandchild = dir.path().join("grandchild.pid");
    let script = tool_with_a_child(&grandchild);
    let err = tools
        .run_with(
            Path::new("sh"),
            &["-c", &script],
            Duration::from_millis(500),
            OnInterrupt::Stop,
        )
        .await
        .unwrap_err();
    assert!(err.contains("did not finish within"), "{err}");
    assert!(tools.listed().is_empty());
    let pid = std::fs::read_to_string(&grandchild).unwrap();
    until("the tool's own child outlived its deadline", || {
        !process_runs(&pid)
    })
    .await;
}

#[tokio::test]
async fn a_tool_that_must_finish_is_never_listed() {
    let tools = Arc::new(Tools::new());
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let tool = spawn(
        &tools,
        format!("touch {}; sleep 0.5", started.display()),
        Duration::from_secs(10),
        OnInterrupt::Finish,
    );
    until("the tool never started", || started.exists()).await;
    assert!(tools.stop_running().is_empty());
    tool.await.unwrap().expect("left to finish");
}
