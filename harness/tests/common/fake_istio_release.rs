//! Istio release archives for the tests, served on loopback: `istio-<v>/bin/istioctl`
//! (a small shell script that does to the stand-in's fake API server, with `curl`, what
//! istioctl would do to a cluster) and `istio-<v>/samples/addons/prometheus.yaml`, with
//! the `.sha256` beside each archive, as the release host publishes them. The harness
//! finds them through `HARNESS_ISTIO_DOWNLOAD_URL`.
//!
//! What the fake istioctl does (the server and token come from the `--kubeconfig` the
//! harness passes):
//! - `version --remote=false --short` → `client version: <v>`;
//! - `install`/`upgrade` without a revision: the `istiod` and `istio-ingressgateway`
//!   Deployments get the images of `--set hub`/`--set tag` (in place);
//! - `install --set revision=<r>`: `istiod-<r>` as `testkit_mesh::Mesh::istiod_revision`
//!   renders it (server-side apply); with a profile other than `minimal` the ingress
//!   gateway also moves to revision `<r>` (labels and image, in place);
//! - `tag set <tag> --revision <r>`: the MutatingWebhookConfiguration
//!   `istio-revision-tag-<tag>` labelled `istio.io/tag`, `istio.io/rev`;
//! - `uninstall --revision <r>`: deletes `istiod` (`default`) or `istiod-<r>`, and the
//!   ingress gateway when it still carries `istio.io/rev: <r>` (as istioctl prunes it).
//!
//! With `FAKE_ISTIOCTL_NOOP=1` in its environment it exits 0 and changes nothing.
#![allow(dead_code)]

use crate::common::{Reply, TestServer, serve};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// The fake istioctl of `version`.
pub fn istioctl_script(version: &str) -> String {
    let manifests: Vec<String> = testkit_mesh::Mesh::istiod_revision(version, "__REVISION__")
        .iter()
        .map(|o| serde_json::to_string(o).expect("json"))
        .collect();
    let deployment = manifests
        .iter()
        .find(|m| m.contains("\"kind\":\"Deployment\""))
        .cloned()
        .unwrap_or_default();
    let service = manifests
        .iter()
        .find(|m| m.contains("\"kind\":\"Service\""))
        .cloned()
        .unwrap_or_default();
    SCRIPT
        .replace("@VERSION@", version)
        .replace("@DEPLOYMENT@", &deployment)
        .replace("@SERVICE@", &service)
}

const SCRIPT: &str = r#"#!/bin/sh
# A stand-in for istioctl @VERSION@ in the harness's tests: does to the fake API server,
# with curl, what istioctl would do to a cluster (see fake_istio_release.rs).
set -u
VERSION='@VERSION@'
verb="${1:-}"
[ $# -gt 0 ] && shift
sub=""
if [ "$verb" = tag ]; then sub="${1:-}"; [ $# -gt 0 ] && shift; fi
kubeconfig=""; revision=""; profile="default"; hub="docker.io/istio"; tag="$VERSION"; name=""
while [ $# -gt 0 ]; do
  case "$1" in
    --kubeconfig) kubeconfig="$2"; shift 2 ;;
    --context) shift 2 ;;
    --revision|-r) revision="$2"; shift 2 ;;
    --set|-s)
      case "$2" in
        revision=*) revision="${2#revision=}" ;;
        profile=*) profile="${2#profile=}" ;;
        hub=*) hub="${2#hub=}" ;;
        tag=*) tag="${2#tag=}" ;;
      esac
      shift 2 ;;
    -*) shift ;;
    *) [ -z "$name" ] && name="$1"; shift ;;
  esac
done
if [ "$verb" = version ]; then echo "client version: $VERSION"; exit 0; fi
if [ -n "${FAKE_ISTIOCTL_NOOP:-}" ]; then echo "fake istioctl: FAKE_ISTIOCTL_NOOP is set: nothing changed"; exit 0; fi
[ -n "$kubeconfig" ] || { echo "fake istioctl: needs --kubeconfig" >&2; exit 2; }
field() { sed -n "s/^ *$1: *\"\{0,1\}\([^\"]*\)\"\{0,1\} *\$/\1/p" "$kubeconfig" | head -n 1; }
server=$(field server); token=$(field token); ca=$(field certificate-authority-data)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tls=""
if [ -n "$ca" ]; then printf '%s' "$ca" | base64 -d > "$work/ca.pem"; tls="--cacert $work/ca.pem"; fi
# call METHOD PATH [CONTENT-TYPE FILE]: prints the HTTP status; the body goes to $work/out.
call() {
  m="$1"; p="$2"; shift 2
  if [ $# -gt 0 ]; then
    curl -sS $tls -o "$work/out" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $token" \
      -H "Content-Type: $1" --data-binary "@$2" "$server$p"
  else
    curl -sS $tls -o "$work/out" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $token" "$server$p"
  fi
}
must() { code=$(call "$@"); case "$code" in 2*) ;; *) echo "fake istioctl: $1 $2 answered $code: $(cat "$work/out")" >&2; exit 1 ;; esac; }
deploy=/apis/apps/v1/namespaces/istio-system/deployments
services=/api/v1/namespaces/istio-system/services
SMP=application/strategic-merge-patch+json
APPLY="application/apply-patch+yaml"
gateway() { # in place: the gateway's proxy image, and the revision it belongs to
  printf '{"metadata":{"labels":{"istio.io/rev":"%s"}},"spec":{"template":{"metadata":{"labels":{"istio.io/rev":"%s"},"annotations":{"istio.io/rev":"%s"}},"spec":{"containers":[{"name":"istio-proxy","image":"%s/proxyv2:%s"}]}}}}' \
    "$1" "$1" "$1" "$hub" "$tag" > "$work/gateway.json"
  must PATCH "$deploy/istio-ingressgateway" "$SMP" "$work/gateway.json"
  echo "✔ Ingress gateways installed (revision $1, $tag)"
}
case "$verb" in
  install|upgrade)
    if [ -z "$revision" ] || [ "$revision" = default ]; then
      printf '{"spec":{"template":{"spec":{"containers":[{"name":"discovery","image":"%s/pilot:%s"}]}}}}' "$hub" "$tag" > "$work/istiod.json"
      must PATCH "$deploy/istiod" "$SMP" "$work/istiod.json"
      echo "✔ Istiod installed ($tag)"
      gateway default
    else
      sed "s/__REVISION__/$revision/g" > "$work/istiod.json" <<'JSON'
@DEPLOYMENT@
JSON
      sed "s/__REVISION__/$revision/g" > "$work/service.json" <<'JSON'
@SERVICE@
JSON
      must PATCH "$deploy/istiod-$revision?fieldManager=istioctl&force=true" "$APPLY" "$work/istiod.json"
      must PATCH "$services/istiod-$revision?fieldManager=istioctl&force=true" "$APPLY" "$work/service.json"
      echo "✔ Istiod installed (revision $revision, $VERSION)"
      if [ "$profile" != minimal ]; then gateway "$revision"; fi
    fi
    echo "✔ Installation complete" ;;
  tag)
    [ "$sub" = set ] && [ -n "$name" ] && [ -n "$revision" ] || { echo "fake istioctl: only 'tag set <tag> --revision <r>'" >&2; exit 2; }
    printf '{"apiVersion":"admissionregistration.k8s.io/v1","kind":"MutatingWebhookConfiguration","metadata":{"name":"istio-revision-tag-%s","labels":{"istio.io/tag":"%s","istio.io/rev":"%s"}},"webhooks":[]}' \
      "$name" "$name" "$revision" > "$work/tag.json"
    must PATCH "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/istio-revision-tag-$name?fieldManager=istioctl&force=true" "$APPLY" "$work/tag.json"
    echo "Revision tag \"$name\" created, referencing control plane revision \"$revision\"." ;;
  uninstall)
    [ -n "$revision" ] || { echo "fake istioctl: uninstall needs --revision" >&2; exit 2; }
    if [ "$revision" = default ]; then istiod=istiod; else istiod="istiod-$revision"; fi
    must DELETE "$deploy/$istiod"
    code=$(call GET "$services/$istiod"); [ "$code" = 200 ] && must DELETE "$services/$istiod"
    code=$(call GET "$deploy/istio-ingressgateway")
    if [ "$code" = 200 ] && grep -q "\"istio.io/rev\": *\"$revision\"" "$work/out"; then
      must DELETE "$deploy/istio-ingressgateway"
      echo "  Removed Deployment:istio-system:istio-ingressgateway."
    fi
    echo "✔ Uninstall complete" ;;
  *) echo "fake istioctl: unsupported command '$verb'" >&2; exit 2 ;;
esac
"#;

/// A minimal addon: the stand-in runs Prometheus already, so the harness never
/// applies it; the archive must hold one all the same.
const ADDON: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: prometheus\n  namespace: istio-system\ndata:\n  prometheus.yml: |\n    global:\n      scrape_interval: 15s\n";

/// The release archive of `version` (`istio-<v>/bin/istioctl`, the addon) as bytes.
pub fn archive(version: &str) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(encoder);
    let mut add = |path: String, mode: u32, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        tar.append_data(&mut header, path, bytes)
            .expect("tar entry");
    };
    add(
        format!("istio-{version}/bin/istioctl"),
        0o755,
        istioctl_script(version).as_bytes(),
    );
    add(
        format!("istio-{version}/samples/addons/prometheus.yaml"),
        0o644,
        ADDON.as_bytes(),
    );
    tar.into_inner()
        .expect("tar finished")
        .finish()
        .expect("gzip finished")
}

/// Release archives of `versions` (for every platform name) served on loopback.
pub struct FakeReleases {
    pub server: TestServer,
    /// For `HARNESS_ISTIO_DOWNLOAD_URL`.
    pub url_template: String,
}

pub async fn serve_releases(versions: &[&str]) -> FakeReleases {
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    for v in versions {
        let bytes = archive(v);
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        files.insert(
            format!("/istio/{v}.sha256"),
            format!("{digest}  istio-{v}.tar.gz\n").into_bytes(),
        );
        files.insert(format!("/istio/{v}.tar.gz"), bytes);
    }
    let files = Arc::new(files);
    let server = serve(move |path, _| {
        // /istio/<v>/istio-<v>-<platform>.tar.gz[.sha256] → /istio/<v>.tar.gz[.sha256]
        let mut parts = path.trim_start_matches('/').splitn(3, '/');
        let key = match (parts.next(), parts.next(), parts.next()) {
            (Some("istio"), Some(v), Some(file)) => {
                let suffix = if file.ends_with(".sha256") {
                    ".sha256"
                } else {
                    ""
                };
                format!("/istio/{v}.tar.gz{suffix}").replace(".tar.gz.sha256", ".sha256")
            }
            _ => String::new(),
        };
        match files.get(&key) {
            Some(bytes) => Reply::Http {
                status: 200,
                body: bytes.clone(),
                content_type: "application/octet-stream",
            },
            None => Reply::text(404, "not found"),
        }
    })
    .await;
    let url_template = format!(
        "http://{}/istio/{{version}}/istio-{{version}}-{{platform}}.tar.gz",
        server.addr
    );
    FakeReleases {
        server,
        url_template,
    }
}
