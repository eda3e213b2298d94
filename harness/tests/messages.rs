//! What the binary says when a kubeconfig or its server is not what a user thinks:
//! words, never Rust debug text, and the HTTP status where there is one.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};

/// A server on loopback answering every request with `status` and `body`.
fn answering(status: &'static str, content_type: &'static str, body: &'static str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{address}")
}

fn kubeconfig(dir: &Path, server: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\nclusters:\n- name: k\n  cluster: {{server: \"{server}\"}}\nusers:\n- name: u\n  user: {{token: t}}\n"
        ),
    )
    .unwrap();
    path
}

fn run(dir: &Path, kubeconfig: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--istio-version",
            "1.31.2",
            "--reports-dir",
            dir.join("reports").to_str().unwrap(),
        ])
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env_remove("KUBECONFIG")
        .output()
        .unwrap()
}

fn error_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    lines[0].to_string()
}

fn no_debug_text(line: &str) {
    for debug in ["Status {", "Some(", "OtherError", "'\"", "\"'"] {
        assert!(!line.contains(debug), "debug text `{debug}` in: {line}");
    }
}

#[test]
fn an_empty_kubeconfig_says_it_has_no_contexts() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    let out = run(dir.path(), &empty);
    assert_eq!(out.status.code(), Some(2));
    let line = error_line(&out);
    assert!(line.contains("has no contexts"), "{line}");
    no_debug_text(&line);
}

#[test]
fn a_server_answering_200_with_a_web_page_is_not_a_kubernetes_api_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = answering("200 OK", "text/html", "<html>welcome</html>");
    let out = run(dir.path(), &kubeconfig(dir.path(), &server));
    assert_eq!(out.status.code(), Some(3));
    let line = error_line(&out);
    assert!(line.contains("not as a Kubernetes API server"), "{line}");
    no_debug_text(&line);
}

#[test]
fn a_401_without_a_status_body_names_the_http_status() {
    let dir = tempfile::tempdir().unwrap();
    let server = answering("401 Unauthorized", "text/plain", "Unauthorized");
    let out = run(dir.path(), &kubeconfig(dir.path(), &server));
    assert_eq!(out.status.code(), Some(3));
    let line = error_line(&out);
    assert!(line.contains("401 Unauthorized"), "{line}");
    assert!(!line.contains("answered 0"), "{line}");
    no_debug_text(&line);
}

#[test]
fn a_500_with_a_status_body_reads_without_its_debug_form() {
    let dir = tempfile::tempdir().unwrap();
    let server = answering(
        "500 Internal Server Error",
        "application/json",
        r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"etcdserver: request timed out","reason":"InternalError","code":500}"#,
    );
    let out = run(dir.path(), &kubeconfig(dir.path(), &server));
    assert_eq!(out.status.code(), Some(3));
    let line = error_line(&out);
    assert!(
        line.contains("500") && line.contains("etcdserver: request timed out"),
        "{line}"
    );
    no_debug_text(&line);
}
