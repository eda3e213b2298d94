//! Downloads are verified against the published checksum, served by a real HTTP server
//! on loopback; the release archive yields istioctl and the Prometheus addon.

mod common;

use common::{Reply, serve};
use harness::cluster::download::{fetch_verified, sha256_file};
use harness::cluster::tools::extract;
use sha2::{Digest, Sha256};

fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A small istio-<v>-linux-amd64.tar.gz with the two files the harness takes from it.
fn release_archive(version: &str) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, body) in [
        (
            format!("istio-{version}/bin/istioctl"),
            b"#!/bin/sh\necho 1.31.2\n".to_vec(),
        ),
        (
            format!("istio-{version}/samples/addons/prometheus.yaml"),
            b"apiVersion: v1\nkind: Service\nmetadata:\n  name: prometheus\n".to_vec(),
        ),
        (
            format!("istio-{version}/samples/bookinfo/README.md"),
            b"not wanted".to_vec(),
        ),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        tar.append_data(&mut header, path, body.as_slice()).unwrap();
    }
    let raw = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    gz.finish().unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

#[tokio::test]
async fn a_good_archive_is_kept_with_its_digest_and_reused_offline() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let archive = release_archive("1.31.2");
    let sum = format!("{}  istio-1.31.2-linux-amd64.tar.gz\n", digest(&archive));
    let served = archive.clone();
    let server = serve(move |path, _| match path {
        "/istio.tar.gz" => Reply::Http {
            status: 200,
            body: served.clone(),
            content_type: "application/gzip",
        },
        "/istio.tar.gz.sha256" => Reply::text(200, &sum),
        _ => Reply::text(404, "no"),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("istio-1.31.2-linux-amd64.tar.gz");
    let base = format!("http://{}", server.addr);
    fetch_verified(
        &client(),
        &format!("{base}/istio.tar.gz"),
        &format!("{base}/istio.tar.gz.sha256"),
        &dest,
    )
    .await
    .unwrap();
    assert_eq!(sha256_file(&dest).unwrap(), digest(&archive));
    let fetched = server.requests.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(fetched, 2);

    // A verified copy is reused without asking the server again.
    fetch_verified(
        &client(),
        "http://127.0.0.1:1/unreachable",
        "http://127.0.0.1:1/unreachable.sha256",
        &dest,
    )
    .await
    .unwrap();

    extract(&dest, &dir.path().join("istio-1.31.2"), "1.31.2").unwrap();
    assert!(dir.path().join("istio-1.31.2/bin/istioctl").is_file());
    assert!(
        dir.path()
            .join("istio-1.31.2/samples/addons/prometheus.yaml")
            .is_file()
    );
    assert!(
        !dir.path().join("istio-1.31.2/samples/bookinfo").exists(),
        "only what the harness needs"
    );
}

#[tokio::test]
async fn a_tampered_archive_is_refused_naming_the_file_and_both_digests() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let archive = release_archive("1.31.2");
    let published = digest(&archive);
    let mut tampered = archive.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    let actual = digest(&tampered);
    let sum = format!("{published}  istio-1.31.2-linux-amd64.tar.gz\n");
    let server = serve(move |path, _| match path {
        "/istio.tar.gz" => Reply::Http {
            status: 200,
            body: tampered.clone(),
            content_type: "application/gzip",
        },
        "/istio.tar.gz.sha256" => Reply::text(200, &sum),
        _ => Reply::text(404, "no"),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("istio-1.31.2-linux-amd64.tar.gz");
    let base = format!("http://{}", server.addr);
    let err = fetch_verified(
        &client(),
        &format!("{base}/istio.tar.gz"),
        &format!("{base}/istio.tar.gz.sha256"),
        &dest,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        format!(
            "checksum mismatch for istio-1.31.2-linux-amd64.tar.gz: published {published}, downloaded {actual}; refusing to run it"
        )
    );
    assert!(!dest.exists(), "nothing unverified is left in the cache");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "no partial file either"
    );
}

#[tokio::test]
async fn a_missing_checksum_file_is_an_error_not_a_pass() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = serve(|path, _| match path {
        "/kind" => Reply::text(200, "binary"),
        _ => Reply::text(404, "Not Found"),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://{}", server.addr);
    let err = fetch_verified(
        &client(),
        &format!("{base}/kind"),
        &format!("{base}/kind.sha256sum"),
        &dir.path().join("kind"),
    )
    .await
    .unwrap_err();
    assert!(err.contains("cannot fetch the checksum"), "{err}");
    assert!(!dir.path().join("kind").exists());
}
