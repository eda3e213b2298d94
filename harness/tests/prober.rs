//! The traffic prober against real HTTP servers on loopback: every class, every
//! expectation, and each expectation failing on the wrong behaviour.

mod common;

use common::{Reply, serve};
use harness::probe::Probe;
use harness::probe::expect::{consecutive, holds};
use harness::probe::http::HttpProbe;
use harness::runner::record::Verdict;
use harness::suite::model::ResultClass;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const HOST: &str = "sentences.example.com";

fn probe(addr: std::net::SocketAddr) -> HttpProbe {
    let _ = rustls::crypto::ring::default_provider().install_default();
    HttpProbe::new(HOST, addr).unwrap()
}

#[tokio::test]
async fn each_result_is_classified() {
    let ok = serve(|_, _| Reply::text(200, "Alice is 42 years")).await;
    let not_sentence = serve(|_, _| Reply::text(200, "Alice is <html>503</html> years")).await;
    let error = serve(|_, _| Reply::text(500, "upstream connect error")).await;
    let reset = serve(|_, _| Reply::Reset).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    assert_eq!(probe(ok.addr).once().await.class, ResultClass::Ok);
    let o = probe(not_sentence.addr).once().await;
    assert_eq!(
        (o.class, o.status),
        (ResultClass::HttpError(Some(200)), Some(200)),
        "a 200 that is not a sentence is an error"
    );
    assert_eq!(
        probe(error.addr).once().await.class,
        ResultClass::HttpError(Some(500))
    );
    let o = probe(reset.addr).once().await;
    assert_eq!(o.class, ResultClass::Reset, "{}", o.short());
    let o = probe(closed).once().await;
    assert_eq!(o.class, ResultClass::Refused, "{}", o.short());
}

#[tokio::test]
async fn the_host_header_names_the_gateway_host() {
    let seen = Arc::new(std::sync::Mutex::new(String::new()));
    // The test server only sees the path; check the Host via a raw listener instead.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 2048];
        let n = s.read(&mut buf).await.unwrap();
        *record.lock().unwrap() = String::from_utf8_lossy(&buf[..n]).to_string();
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 17\r\n\r\nAlice is 42 years")
            .await
            .unwrap();
    });
    assert_eq!(probe(addr).once().await.class, ResultClass::Ok);
    let head = seen.lock().unwrap().to_ascii_lowercase();
    assert!(
        head.contains("\r\nhost: sentences.example.com\r\n"),
        "{head}"
    );
}

#[tokio::test]
async fn flows_passes_on_sentences_and_fails_on_anything_else() {
    let ok = serve(|_, _| Reply::text(200, "Alice is 42 years")).await;
    let j = consecutive(
        &probe(ok.addr),
        ResultClass::Ok,
        10,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(j.verdict, Verdict::Passed, "{}", j.evidence.summary);
    assert!(
        j.evidence
            .summary
            .starts_with("10 consecutive ok after 10 requests"),
        "{}",
        j.evidence.summary
    );

    let bad = serve(|_, _| Reply::text(200, "Alice is  years")).await;
    let j = consecutive(
        &probe(bad.addr),
        ResultClass::Ok,
        10,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(j.verdict, Verdict::Failed);
    assert!(
        j.evidence
            .summary
            .contains("saw at most 0 in a row; classes: http-200×"),
        "{}",
        j.evidence.summary
    );
}

#[tokio::test]
async fn fails_with_http_500_passes_on_500s_and_fails_on_200s() {
    let errors = serve(|_, _| Reply::text(500, "Internal Server Error")).await;
    let j = consecutive(
        &probe(errors.addr),
        ResultClass::HttpError(Some(500)),
        20,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(j.verdict, Verdict::Passed, "{}", j.evidence.summary);
    assert!(
        j.evidence.summary.contains("classes: http-500×20"),
        "{}",
        j.evidence.summary
    );

    // 17 errors then sentences: never 20 in a row.
    let mostly = serve(|_, n| {
        if n % 18 == 17 {
            Reply::text(200, "Alice is 42 years")
        } else {
            Reply::text(500, "boom")
        }
    })
    .await;
    let j = consecutive(
        &probe(mostly.addr),
        ResultClass::HttpError(Some(500)),
        20,
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(j.verdict, Verdict::Failed);
    assert!(
        j.evidence.summary.starts_with(
            "expected 20 consecutive http-500, saw at most 17 in a row; classes: http-500×"
        ),
        "{}",
        j.evidence.summary
    );
    assert!(j.evidence.summary.contains("ok×"), "{}", j.evidence.summary);
}

#[tokio::test]
async fn a_dead_path_is_an_environment_error_not_a_verdict() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let j = consecutive(
        &probe(closed),
        ResultClass::HttpError(Some(500)),
        20,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(
        j.verdict,
        Verdict::Errored,
        "refused connections cannot prove O3: {}",
        j.evidence.summary
    );
    assert!(
        j.evidence
            .summary
            .contains("no request reached the gateway (refused×"),
        "{}",
        j.evidence.summary
    );
    let j = consecutive(&probe(closed), ResultClass::Ok, 5, Duration::from_secs(1)).await;
    assert_eq!(j.verdict, Verdict::Errored);
}

#[tokio::test]
async fn resets_are_their_own_class() {
    let reset = serve(|_, _| Reply::Reset).await;
    let j = consecutive(
        &probe(reset.addr),
        ResultClass::Reset,
        3,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(j.verdict, Verdict::Passed, "{}", j.evidence.summary);
    let j = consecutive(
        &probe(reset.addr),
        ResultClass::Ok,
        3,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(
        j.verdict,
        Verdict::Failed,
        "a reset reached the server side: a verdict, {}",
        j.evidence.summary
    );
}

#[tokio::test]
async fn a_flip_from_500_to_200_converges_and_its_detection_latency_is_measured() {
    let flipped = Arc::new(AtomicBool::new(false));
    let state = Arc::clone(&flipped);
    let server = serve(move |_, _| {
        if state.load(Ordering::SeqCst) {
            Reply::text(200, "Alice is 42 years")
        } else {
            Reply::text(500, "boom")
        }
    })
    .await;
    let flip_after = Duration::from_millis(1500);
    let flipper = Arc::clone(&flipped);
    let flip_at = Arc::new(std::sync::Mutex::new(None));
    let record = Arc::clone(&flip_at);
    tokio::spawn(async move {
        tokio::time::sleep(flip_after).await;
        flipper.store(true, Ordering::SeqCst);
        *record.lock().unwrap() = Some(Instant::now());
    });
    let j = consecutive(
        &probe(server.addr),
        ResultClass::Ok,
        10,
        Duration::from_secs(20),
    )
    .await;
    let done = Instant::now();
    assert_eq!(j.verdict, Verdict::Passed, "{}", j.evidence.summary);
    let flipped_at = flip_at.lock().unwrap().expect("the flip happened");
    let latency = done - flipped_at;
    eprintln!(
        "detection latency after the flip (K=10): {:.0} ms",
        latency.as_secs_f64() * 1000.0
    );
    assert!(
        latency < Duration::from_millis(1500),
        "backoff is bounded at 1 s: latency {latency:?}"
    );
    assert!(
        j.evidence.summary.contains("http-500×"),
        "the 500s before the flip are in the evidence: {}",
        j.evidence.summary
    );
}

#[tokio::test]
async fn a_server_that_never_converges_fails_at_the_deadline_with_evidence() {
    let server = serve(|_, _| Reply::text(503, "no healthy upstream")).await;
    let started = Instant::now();
    let j = consecutive(
        &probe(server.addr),
        ResultClass::Ok,
        10,
        Duration::from_secs(2),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(j.verdict, Verdict::Failed);
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    assert!(
        j.evidence
            .summary
            .contains("last: http-503 (503: no healthy upstream)"),
        "{}",
        j.evidence.summary
    );
    assert!(
        j.evidence
            .details
            .iter()
            .any(|d| d.starts_with("target: GET http://sentences.example.com:")),
        "{:?}",
        j.evidence.details
    );
}

#[tokio::test]
async fn holds_passes_when_nothing_changes_and_fails_on_the_first_deviation() {
    let ok = serve(|_, _| Reply::text(200, "Alice is 42 years")).await;
    let j = holds(&probe(ok.addr), ResultClass::Ok, Duration::from_secs(2), 5).await;
    assert_eq!(j.verdict, Verdict::Passed, "{}", j.evidence.summary);
    assert!(
        j.evidence.summary.starts_with("all "),
        "{}",
        j.evidence.summary
    );

    // STRICT taking effect mid-window would look like this: 500s after a while.
    let breaks = serve(|_, n| {
        if n < 6 {
            Reply::text(200, "Alice is 42 years")
        } else {
            Reply::text(500, "boom")
        }
    })
    .await;
    let started = Instant::now();
    let j = holds(
        &probe(breaks.addr),
        ResultClass::Ok,
        Duration::from_secs(5),
        5,
    )
    .await;
    assert_eq!(j.verdict, Verdict::Failed);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "fails at once, not at the end of the window"
    );
    assert!(
        j.evidence.summary.contains("request 7 at")
            && j.evidence.summary.contains("was http-500 (500: boom)"),
        "{}",
        j.evidence.summary
    );
}

#[tokio::test]
async fn a_hold_with_too_few_requests_proves_nothing() {
    let ok = serve(|_, _| Reply::text(200, "Alice is 42 years")).await;
    let j = holds(
        &probe(ok.addr),
        ResultClass::Ok,
        Duration::from_millis(300),
        50,
    )
    .await;
    assert_eq!(j.verdict, Verdict::Errored, "{}", j.evidence.summary);
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout() {
    let silent = serve(|_, _| Reply::Silent).await;
    let o = probe(silent.addr).once().await;
    assert_eq!(o.class, ResultClass::Timeout, "{}", o.short());
    assert!(o.elapsed >= harness::probe::http::REQUEST_TIMEOUT);
    assert!(!o.reached(), "a timeout proves nothing about Istio");
}
