//! Downloads are verified against the published checksum, served by a real HTTP server
//! on loopback; the release archive yields istioctl and the Prometheus addon.

mod common;
#[path = "common/release_list.rs"]
mod release_list;

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
    assert!(!err.not_found);
    assert_eq!(
        err.message,
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
    assert!(err.not_found, "{err:?}");
    assert_eq!(
        err.message,
        format!("there is no {base}/kind.sha256sum (404)")
    );
    assert!(!dir.path().join("kind").exists());
}

#[tokio::test]
async fn a_release_archive_that_is_not_there_is_explained_from_the_release_list() {
    use harness::cluster::releases::ReleaseSource;
    use harness::cluster::tools::missing_release;
    use release_list::{paged, releases};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let host = serve(|_, _| Reply::text(404, "Not Found")).await;
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://{}", host.addr);
    let err = fetch_verified(
        &client(),
        &format!("{base}/istio-1.31.99-linux-amd64.tar.gz"),
        &format!("{base}/istio-1.31.99-linux-amd64.tar.gz.sha256"),
        &dir.path().join("istio-1.31.99-linux-amd64.tar.gz"),
    )
    .await
    .unwrap_err();
    assert!(err.not_found, "{err:?}");
    let list = release_list::serve(paged(
        releases(&["1.31.2", "1.31.1", "1.30.5", "1.29.7", "1.27.3"]),
        100,
        false,
    ));
    let source = |url: &str| ReleaseSource {
        url: url.to_string(),
        token: None,
        cache_dir: Some(dir.path().to_path_buf()),
    };
    let versions = harness::config::Versions::embedded();

    // Never released: named, with the newest patch of its minor (through the same
    // path a run takes to its release).
    let why = harness::cluster::tools::istio_from(
        &versions,
        "1.31.99",
        dir.path(),
        &format!("{base}/istio-1.31.99-linux-amd64.tar.gz"),
        &source(&list.url),
    )
    .await
    .unwrap_err();
    assert!(
        why.starts_with("Istio 1.31.99 was never released; the newest 1.31 patch is 1.31.2")
            && why.contains("istio-1.31.99-linux-amd64.tar.gz.sha256 (404)"),
        "{why}"
    );
    // Released, yet not on the download host: the host is what lacks it.
    let why = missing_release(
        &source(&list.url),
        &versions,
        "1.30.5",
        "there is no X (404)",
    )
    .await;
    assert!(
        why.starts_with("Istio 1.30.5 is released, but there is no X (404)")
            && why.contains("HARNESS_ISTIO_DOWNLOAD_URL"),
        "{why}"
    );
    // The list cannot be read any more, but the reads above cached it: a cached copy
    // may predate the release, so it is quoted, not taken for the truth.
    let url = list.url.clone();
    drop(list);
    let why = missing_release(&source(&url), &versions, "1.31.99", "there is no X (404)").await;
    assert!(
        why.starts_with(
            "there is no X (404); by the cached release list, Istio 1.31.99 was never released"
        ) && why.contains("using the copy cached"),
        "{why}"
    );
    // No list to ask (and no cached copy): the 404 stands, and the doubt is said.
    let port = common::closed_port();
    let empty_cache = tempfile::tempdir().unwrap();
    let why = missing_release(
        &ReleaseSource {
            url: format!("http://127.0.0.1:{port}/releases"),
            token: None,
            cache_dir: Some(empty_cache.path().to_path_buf()),
        },
        &versions,
        "1.31.99",
        "there is no X (404)",
    )
    .await;
    assert!(
        why.starts_with("there is no X (404); whether Istio 1.31.99 was ever released is unknown"),
        "{why}"
    );
}
