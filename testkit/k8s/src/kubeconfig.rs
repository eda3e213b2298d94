//! Writing a kubeconfig that points at the fake (and that `kube::Config::
//! from_custom_kubeconfig`, kubectl and istioctl accept).

use base64::Engine;
use std::path::Path;

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

pub fn render(context: &str, server: &str, ca_pem: Option<&str>) -> String {
    let name = quoted(context);
    let ca = ca_pem
        .map(|pem| {
            format!(
                "    certificate-authority-data: {}\n",
                quoted(&base64::engine::general_purpose::STANDARD.encode(pem))
            )
        })
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {server}\n{ca}users:\n- name: {name}\n  user:\n    token: \"testkit-token\"\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n    namespace: \"default\"\ncurrent-context: {name}\npreferences: {{}}\n",
        server = quoted(server),
    )
}

pub fn write(
    path: &Path,
    context: &str,
    server: &str,
    ca_pem: Option<&str>,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, render(context, server, ca_pem))
}

#[cfg(test)]
mod tests {
    #[test]
    fn kubeconfig_parses_as_yaml_with_the_context_current() {
        let text = super::render("kind-mtls", "http://127.0.0.1:1234", Some("PEM"));
        let v: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(v["current-context"], "kind-mtls");
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "http://127.0.0.1:1234"
        );
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority-data"],
            "UEVN"
        );
        assert_eq!(v["contexts"][0]["context"]["user"], "kind-mtls");
    }
}
