//! kind: create, reuse, export the kubeconfig of, and delete a cluster by name.

use super::process::run;
use crate::deadlines::{
    IMAGE_PULL, KIND_CREATE as CREATE_DEADLINE, KIND_DELETE, KIND_EXPORT_LOGS, TOOL_QUICK as QUICK,
};
use std::path::{Path, PathBuf};

/// A kind cluster this run created (and so deletes, unless `--keep-cluster`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedCluster {
    pub kind: PathBuf,
    pub name: String,
}

impl OwnedCluster {
    /// How to delete it by hand.
    pub fn delete_command(&self) -> String {
        format!("kind delete cluster --name {}", self.name)
    }
}

/// `docker exec <name>-control-plane crictl pull <image>`: an image pulled onto the
/// node ahead of the pod that needs it (best effort; the kubelet pulls it otherwise).
pub fn prepull_args(name: &str, image: &str) -> Vec<String> {
    [
        "exec",
        &format!("{name}-control-plane"),
        "crictl",
        "pull",
        image,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub async fn prepull(name: &str, image: &str) -> Result<(), String> {
    let args = prepull_args(name, image);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(Path::new("docker"), &args, IMAGE_PULL)
        .await
        .map(|_| ())
}

/// The arguments of `kind create cluster` (also shown by `--dry-run`).
pub fn create_args(name: &str, node_image: &str, config: &Path, kubeconfig: &Path) -> Vec<String> {
    [
        "create",
        "cluster",
        "--name",
        name,
        "--image",
        node_image,
        "--config",
        &config.display().to_string(),
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        "--wait",
        "180s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub async fn exists(kind: &Path, name: &str) -> Result<bool, String> {
    let out = run(kind, &["get", "clusters"], QUICK).await?;
    Ok(out.lines().any(|l| l.trim() == name))
}

pub async fn create(
    kind: &Path,
    name: &str,
    node_image: &str,
    config: &Path,
    kubeconfig: &Path,
) -> Result<(), String> {
    let args = create_args(name, node_image, config, kubeconfig);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(kind, &args, CREATE_DEADLINE).await.map(|_| ())
}

/// Writes the cluster's kubeconfig to `path` (kind merges into it; the harness uses a
/// file of its own so the user's ~/.kube/config is never touched).
pub async fn export_kubeconfig(kind: &Path, name: &str, path: &Path) -> Result<(), String> {
    let out = run(kind, &["get", "kubeconfig", "--name", name], QUICK).await?;
    crate::report::write_atomically(path, out.as_bytes(), true).map(|_| ())
}

/// Left to finish when the run is interrupted: a half-done delete leaves the cluster.
pub async fn delete(kind: &Path, name: &str) -> Result<(), String> {
    super::process::run_with(
        kind,
        &["delete", "cluster", "--name", name],
        KIND_DELETE,
        super::process::OnInterrupt::Finish,
    )
    .await
    .map(|_| ())
}

/// `kind export logs` into `dir` (for the diagnostics bundle).
pub async fn export_logs(kind: &Path, name: &str, dir: &Path) -> Result<(), String> {
    let dir = dir.display().to_string();
    run(
        kind,
        &["export", "logs", &dir, "--name", name],
        KIND_EXPORT_LOGS,
    )
    .await
    .map(|_| ())
}

/// The node image of an existing kind cluster, read from its control-plane container.
pub async fn node_image(name: &str) -> Option<String> {
    let docker = Path::new("docker");
    let container = format!("{name}-control-plane");
    run(
        docker,
        &["inspect", "--format", "{{.Config.Image}}", &container],
        QUICK,
    )
    .await
    .ok()
    .map(|s| s.trim().to_string())
    .filter(|s| !s.is_empty())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The kubeconfig holds the cluster's admin credentials: whatever mode kind (or an
    /// earlier run) left on the file, the harness's copy is 0600.
    #[tokio::test]
    async fn the_exported_kubeconfig_is_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let kind = dir.path().join("kind");
        std::fs::write(
            &kind,
            "#!/bin/sh\necho 'apiVersion: v1\nkind: Config\nusers:\n- name: kind-x\n  user:\n    client-key-data: c2VjcmV0'\n",
        )
        .unwrap();
        std::fs::set_permissions(&kind, std::fs::Permissions::from_mode(0o755)).unwrap();
        let kubeconfig = dir.path().join("reports/kubeconfig");
        std::fs::create_dir_all(kubeconfig.parent().unwrap()).unwrap();
        std::fs::write(&kubeconfig, "left by kind").unwrap();
        std::fs::set_permissions(&kubeconfig, std::fs::Permissions::from_mode(0o644)).unwrap();
        export_kubeconfig(&kind, "x", &kubeconfig).await.unwrap();
        let mode = std::fs::metadata(&kubeconfig).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            std::fs::read_to_string(&kubeconfig)
                .unwrap()
                .contains("client-key-data")
        );
    }
}
