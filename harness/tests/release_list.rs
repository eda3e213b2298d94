//! The Istio release list read from a real HTTP server on loopback: pages followed by
//! `Link` header and by page number, drafts and pre-releases never resolved to, the
//! token sent only where it belongs, and the cached copy used only when the list
//! cannot be read.

#[path = "common/release_list.rs"]
mod release_list;

use harness::cluster::releases::{self, ReleaseSource};
use harness::resolve::resolve;
use harness::version::{Minor, VersionRequest};
use release_list::{Response, paged, release, releases, serve};
use serde_json::Value;

const FLOOR: Minor = Minor {
    major: 1,
    minor: 28,
};

fn source(url: &str, cache: &std::path::Path, token: Option<&str>) -> ReleaseSource {
    ReleaseSource {
        url: url.to_string(),
        token: token.map(str::to_string),
        cache_dir: Some(cache.to_path_buf()),
    }
}

/// Newest first, as GitHub lists them: pre-releases (flagged, or tagged only), a draft,
/// patches of three minors, then a page of minors older than the harness supports and,
/// after it, a page the client must never need (a 1.31 patch it would otherwise pick).
fn history() -> Vec<Value> {
    vec![
        release("1.32.0-rc.1", true, false),
        release("1.31.3", false, true),
        release("1.31.2", false, false),
        release("1.30.5", false, false),
        release("1.33.0", true, false),
        release("1.32.0-beta.0", false, false),
        release("1.31.1", false, false),
        release("1.30.4", false, false),
        release("1.29.7", false, false),
        release("1.27.3", false, false),
        release("1.26.9", false, false),
        release("1.27.2", false, false),
        release("1.31.99", false, false),
    ]
}

fn resolved(list: &[releases::Release], text: &str) -> Result<String, String> {
    resolve(&VersionRequest::parse(text).unwrap(), text, list).map(|r| r.version)
}

#[tokio::test]
async fn pages_are_followed_by_link_header_and_only_stable_releases_resolve() {
    let server = serve(paged(history(), 3, true));
    let cache = tempfile::tempdir().unwrap();
    let list = releases::fetch(&source(&server.url, cache.path(), None), FLOOR)
        .await
        .unwrap();
    assert!(list.from_cache.is_none());
    let list = list.releases;
    assert_eq!(
        resolved(&list, "1.31").unwrap(),
        "1.31.2",
        "not the draft 1.31.3"
    );
    assert_eq!(resolved(&list, "1.30").unwrap(), "1.30.5");
    assert_eq!(
        resolved(&list, "latest").unwrap(),
        "1.31.2",
        "no pre-release"
    );
    assert_eq!(
        resolved(&list, "1.32").unwrap_err(),
        "Istio 1.32 has no release yet, only pre-releases (pass 1.32.0-rc.1 to test the newest); the newest release is 1.31.2"
    );
    assert_eq!(
        resolved(&list, "1.31.9").unwrap_err(),
        "Istio 1.31.9 was never released; the newest 1.31 patch is 1.31.2"
    );
    assert_eq!(resolved(&list, "1.32.0-rc.1").unwrap(), "1.32.0-rc.1");
    // Page 1 by number, then wherever the Link header pointed; the page of old minors
    // ends the read, so page 5 is never asked for.
    let requests = server.requests();
    assert_eq!(server.pages(), ["1", "2", "3", "4"]);
    assert_eq!(requests[0].query("per_page"), Some("100"));
    assert!(requests[1..].iter().all(|r| r.query("via") == Some("link")));
    for r in &requests {
        assert!(
            r.header("user-agent")
                .is_some_and(|ua| ua.starts_with("istio-mtls-harness/")),
            "GitHub requires a User-Agent: {r:?}"
        );
        assert_eq!(r.header("authorization"), None, "no token, no header");
    }
}

#[tokio::test]
async fn without_a_link_header_pages_are_asked_for_by_number_until_one_is_empty() {
    let server = serve(paged(
        releases(&[
            "1.31.2", "1.31.1", "1.30.5", "1.31.0", "1.30.4", "1.30.3", "1.30.2",
        ]),
        3,
        false,
    ));
    let cache = tempfile::tempdir().unwrap();
    let list = releases::fetch(&source(&server.url, cache.path(), None), FLOOR)
        .await
        .unwrap()
        .releases;
    assert_eq!(list.len(), 7);
    assert_eq!(server.pages(), ["1", "2", "3", "4"]);
    assert_eq!(resolved(&list, "1.30").unwrap(), "1.30.5");
}

#[tokio::test]
async fn the_token_is_sent_as_bearer_to_the_list_host_only() {
    // Page 2 is linked on another host name (localhost): it gets no token.
    let server = serve(|request, url| {
        let page = request.query("page").unwrap_or("1");
        if page == "1" {
            let next = url.replace("127.0.0.1", "localhost");
            Response {
                status: 200,
                headers: vec![("link".into(), format!("<{next}?page=2>; rel=\"next\""))],
                body: Value::Array(releases(&["1.31.2"])).to_string(),
            }
        } else if page == "2" {
            Response::json(&Value::Array(releases(&["1.30.5"])))
        } else {
            Response::json(&Value::Array(Vec::new()))
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let list = releases::fetch(
        &source(&server.url, cache.path(), Some("s3cr3t-token")),
        FLOOR,
    )
    .await
    .unwrap()
    .releases;
    assert_eq!(list.len(), 2);
    let requests = server.requests();
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer s3cr3t-token")
    );
    assert_eq!(requests[1].header("authorization"), None);
}

#[tokio::test]
async fn the_cached_copy_stands_in_only_when_the_list_cannot_be_read() {
    let cache = tempfile::tempdir().unwrap();
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let newer = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (f, n) = (failing.clone(), newer.clone());
    let server = serve(move |request, url| {
        use std::sync::atomic::Ordering::SeqCst;
        if f.load(SeqCst) {
            return Response {
                status: 500,
                headers: Vec::new(),
                body: "{}".into(),
            };
        }
        let tags: &[&str] = if n.load(SeqCst) {
            &["1.31.3", "1.31.2"]
        } else {
            &["1.31.2", "1.30.5"]
        };
        paged(releases(tags), 100, false)(request, url)
    });
    let src = source(&server.url, cache.path(), None);
    let first = releases::fetch(&src, FLOOR).await.unwrap();
    assert!(first.from_cache.is_none());

    // Reachable again with a newer list: the cache is not used.
    newer.store(true, std::sync::atomic::Ordering::SeqCst);
    let second = releases::fetch(&src, FLOOR).await.unwrap();
    assert!(second.from_cache.is_none());
    assert_eq!(resolved(&second.releases, "1.31").unwrap(), "1.31.3");

    // The server fails: the copy of the last read stands in, and says so.
    failing.store(true, std::sync::atomic::Ordering::SeqCst);
    let cached = releases::fetch(&src, FLOOR).await.unwrap();
    let note = cached.from_cache.expect("read from the cache");
    assert!(
        note.starts_with(&format!(
            "cannot read the Istio release list {}: HTTP 500",
            server.url
        )) && note.contains("using the copy cached less than a minute ago"),
        "{note}"
    );
    assert_eq!(resolved(&cached.releases, "1.31").unwrap(), "1.31.3");

    // Unreachable altogether: the same.
    let url = server.url.clone();
    drop(server);
    let cached = releases::fetch(&src, FLOOR).await.unwrap();
    assert!(cached.from_cache.is_some());

    // Unreachable and nothing cached (another folder): an error saying both.
    let empty = tempfile::tempdir().unwrap();
    let err = releases::fetch(&source(&url, empty.path(), None), FLOOR)
        .await
        .unwrap_err();
    assert!(
        err.starts_with(&format!("cannot read the Istio release list {url}: "))
            && err.ends_with(", and no copy of it is cached"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[tokio::test]
async fn a_used_up_rate_limit_says_to_set_a_token() {
    let server = serve(|_, _| Response {
        status: 403,
        headers: vec![("x-ratelimit-remaining".into(), "0".into())],
        body: r#"{"message":"API rate limit exceeded"}"#.into(),
    });
    let cache = tempfile::tempdir().unwrap();
    let err = releases::fetch(&source(&server.url, cache.path(), None), FLOOR)
        .await
        .unwrap_err();
    assert!(
        err.contains("HTTP 403 Forbidden: the rate limit is used up (set GITHUB_TOKEN"),
        "{err}"
    );
}

#[tokio::test]
async fn a_page_that_is_not_a_release_list_is_an_error() {
    let server = serve(|_, _| Response {
        status: 200,
        headers: Vec::new(),
        body: "<html>captive portal</html>".into(),
    });
    let cache = tempfile::tempdir().unwrap();
    let err = releases::fetch(&source(&server.url, cache.path(), None), FLOOR)
        .await
        .unwrap_err();
    assert!(err.contains("page 1 is not a list of releases"), "{err}");
}
