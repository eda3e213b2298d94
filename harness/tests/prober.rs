//! The traffic prober against real HTTP servers on loopback: every class, every
//! expectation, and each expectation failing on the wrong behaviour.

mod common;

use common::{Reply, serve};
use harness::cluster::portforward::PathHealth;
use harness::expect::traffic::{fails, flows, holds};
use harness::probe::Probe;
use harness::probe::class::{Origin, ResultClass};
use harness::probe::http::{HttpProbe, Target};
use harness::probe::sentence::Grammar;
use harness::verdict::Verdict;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const HOST: &str = "sentences.example.com";

/// The exercise's app: `name` (Peter, Ray, Egon) and `name-v2` (the musketeers).
fn exercise() -> Arc<Grammar> {
    Arc::new(Grammar::new(
        &[
            (
                "name".into(),
                vec!["Peter".into(), "Ray".into(), "Egon".into()],
            ),
            (
                "name-v2".into(),
                vec!["Athos (v2)".into(), "Porthos (v2)".into()],
            ),
        ],
        (0, 100),
    ))
}

fn probe(addr: std::net::SocketAddr) -> HttpProbe {
    let _ = rustls::crypto::ring::default_provider().install_default();
    HttpProbe::new(HOST, Target::direct(addr), exercise()).unwrap()
}

/// Werkzeug's default 500 page: what the frontend answers when a backend call raised.
const APP_500: &str = "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was unable to complete your request. Either the server is overloaded or there is an error in the application.</p>\n";

fn app_500() -> Reply {
    Reply::Http {
        status: 500,
        body: APP_500.as_bytes().to_vec(),
        content_type: "text/html; charset=utf-8",
    }
}

#[tokio::test]
async fn each_result_is_classified() {
    let ok = serve(|_, _| Reply::text(200, "Peter is 42 years")).await;
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
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 17\r\n\r\nPeter is 42 years")
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
    let ok = serve(|_, n| {
        if n % 2 == 0 {
            Reply::text(200, "Peter is 42 years")
        } else {
            Reply::text(200, "Athos (v2) is 7 years")
        }
    })
    .await;
    let j = flows(&probe(ok.addr), 10, &[], Duration::from_secs(10)).await;
    assert_eq!(j.verdict, Verdict::Passed, "{}", j.evidence.summary);
    assert!(
        j.evidence
            .summary
            .starts_with("10 consecutive sentences after 10 requests"),
        "{}",
        j.evidence.summary
    );
    assert!(
        j.evidence.summary.contains("names from name×5, name-v2×5"),
        "answers are counted per name workload: {}",
        j.evidence.summary
    );

    // What the frontend answers when a backend's Envoy answered by itself: a 200 with
    // the local reply pasted in. Not a sentence; and a name the app is not configured
    // with is not one either.
    for body in [
        "no healthy upstream is 42 years",
        "upstream connect error or disconnect/reset before headers. reset reason: connection termination is 42 years",
        "Alice is 42 years",
        "Peter is  years",
    ] {
        let bad = serve(move |_, _| Reply::text(200, body)).await;
        let j = flows(&probe(bad.addr), 10, &[], Duration::from_secs(1)).await;
        assert_eq!(j.verdict, Verdict::Failed, "{body}: {}", j.evidence.summary);
        assert!(
            j.evidence
                .summary
                .contains("saw at most 0 in a row; classes: http-200×"),
            "{}",
            j.evidence.summary
        );
    }

    // Half the answers pasted: the evidence names what broke the runs even when the
    // last answer was a good sentence.
    let half = serve(|_, n| {
        if n % 2 == 0 {
            Reply::text(200, "no healthy upstream is 42 years")
        } else {
            Reply::text(200, "Peter is 42 years")
        }
    })
    .await;
    let j = flows(&probe(half.addr), 10, &[], Duration::from_secs(1)).await;
    assert_eq!(j.verdict, Verdict::Failed, "{}", j.evidence.summary);
    let summary = &j.evidence.summary;
    assert!(
        summary.contains("saw at most 1 in a row")
            && summary.contains("http-200 (200: no healthy upstream is 42 years)"),
        "{summary}"
    );
}

#[tokio::test]
async fn flows_from_each_needs_every_listed_workload_in_the_final_run() {
    let only_v1 = serve(|_, _| Reply::text(200, "Ray is 3 years")).await;
    let j = flows(
        &probe(only_v1.addr),
        10,
        &["name".into(), "name-v2".into()],
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(j.verdict, Verdict::Failed, "{}", j.evidence.summary);
    assert!(
        j.evidence.summary.contains("never answered: name-v2"),
        "{}",
        j.evidence.summary
    );
    let both = serve(|_, n| {
        if n == 12 {
            Reply::text(200, "Porthos (v2) is 3 years")
        } else {
            Reply::text(200, "Ray is 3 years")
        }
    })
    .await;
    let j = flows(
        &probe(both.addr),
        10,
        &["name".into(), "name-v2".into()],
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(j.verdict, Verdict::Passed, "{}", j.evidence.summary);
}

#[tokio::test]
async fn fails_counts_only_the_apps_own_500_page_over_a_window() {
    let errors = serve(|_, _| app_500()).await;
    let started = Instant::now();
    let j = fails(
        &probe(errors.addr),
        ResultClass::HttpError(Some(500)),
        10,
        Duration::from_millis(1500),
        10,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(j.verdict, Verdict::Passed, "{}", j.evidence.summary);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "100 % errors is shown over the window"
    );
    assert!(
        j.evidence
            .summary
            .contains("error answers: 500 from the app×"),
        "{}",
        j.evidence.summary
    );

    // A gateway that answers 500 by itself (empty body, or its own text) never reached
    // the app: O3 must not pass on it. Nor on an Envoy local reply.
    for (status, body) in [
        (500, ""),
        (
            500,
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
        ),
        (503, "no healthy upstream"),
    ] {
        let gateway = serve(move |_, _| Reply::text(status, body)).await;
        let j = fails(
            &probe(gateway.addr),
            ResultClass::HttpError(Some(500)),
            10,
            Duration::from_secs(1),
            5,
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(j.verdict, Verdict::Failed, "{body}: {}", j.evidence.summary);
        assert!(
            j.evidence.summary.contains("error answers:")
                && !j.evidence.summary.contains("from the app×"),
            "{}",
            j.evidence.summary
        );
    }
}

#[tokio::test]
async fn fails_breaks_when_a_request_succeeds_inside_the_window() {
    // 100 % errors means every request: one sentence in the window fails the verdict.
    let mostly = serve(|_, n| {
        if n == 25 {
            Reply::text(200, "Peter is 42 years")
        } else {
            app_500()
        }
    })
    .await;
    let j = fails(
        &probe(mostly.addr),
        ResultClass::HttpError(Some(500)),
        10,
        Duration::from_secs(5),
        5,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(j.verdict, Verdict::Failed, "{}", j.evidence.summary);
    assert!(
        j.evidence
            .summary
            .contains("was ok (200: Peter is 42 years)"),
        "{}",
        j.evidence.summary
    );
}

#[tokio::test]
async fn a_dead_path_is_an_environment_error_not_a_verdict() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let j = fails(
        &probe(closed),
        ResultClass::HttpError(Some(500)),
        20,
        Duration::from_secs(1),
        5,
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
    let j = flows(&probe(closed), 5, &[], Duration::from_secs(1)).await;
    assert_eq!(j.verdict, Verdict::Errored);
}

#[tokio::test]
async fn a_failing_port_forward_is_not_reached_never_a_reset() {
    // The forward accepts the local connection, then cannot reach the pod: the client
    // sees an EOF, which on its own looks exactly like a reset. The forward records the
    // failure; the probe reports "not reached" and the verdict is an environment error.
    let health = Arc::new(PathHealth::default());
    let recorder = Arc::clone(&health);
    let server = serve(move |_, _| {
        recorder.record("port-forward to istio-system/gw:8080 failed: connection refused".into());
        Reply::Reset
    })
    .await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let probe = HttpProbe::new(
        HOST,
        Target {
            address: server.addr,
            health: Some(Arc::clone(&health)),
        },
        exercise(),
    )
    .unwrap();
    let o = probe.once().await;
    assert_eq!(o.class, ResultClass::NotReached, "{}", o.short());
    assert!(o.detail.contains("connection refused"), "{}", o.detail);
    assert!(!o.reached());
    let j = fails(
        &probe,
        ResultClass::HttpError(Some(500)),
        5,
        Duration::from_secs(1),
        5,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(j.verdict, Verdict::Errored, "{}", j.evidence.summary);
    let j = holds(&probe, ResultClass::Ok, Duration::from_secs(1), 2).await;
    assert_eq!(j.verdict, Verdict::Errored, "{}", j.evidence.summary);
}

#[tokio::test]
async fn resets_are_a_verdict_when_the_path_is_fine() {
    let reset = serve(|_, _| Reply::Reset).await;
    let o = probe(reset.addr).once().await;
    assert_eq!(o.class, ResultClass::Reset);
    assert!(o.reached(), "a reset came from the far side");
    let j = flows(&probe(reset.addr), 3, &[], Duration::from_secs(1)).await;
    assert_eq!(
        j.verdict,
        Verdict::Failed,
        "a reset reached the server side: a verdict, {}",
        j.evidence.summary
    );
}

#[tokio::test]
async fn a_flip_from_500_to_200_is_seen_within_a_pace() {
    let flipped = Arc::new(AtomicBool::new(false));
    let state = Arc::clone(&flipped);
    let server = serve(move |_, _| {
        if state.load(Ordering::SeqCst) {
            Reply::text(200, "Egon is 42 years")
        } else {
            app_500()
        }
    })
    .await;
    let flip_after = Duration::from_millis(700);
    let flipper = Arc::clone(&flipped);
    let flip_at = Arc::new(std::sync::Mutex::new(None));
    let record = Arc::clone(&flip_at);
    tokio::spawn(async move {
        tokio::time::sleep(flip_after).await;
        flipper.store(true, Ordering::SeqCst);
        *record.lock().unwrap() = Some(Instant::now());
    });
    let j = flows(&probe(server.addr), 1, &[], Duration::from_secs(20)).await;
    let done = Instant::now();
    assert_eq!(j.verdict, Verdict::Passed, "{}", j.evidence.summary);
    let flipped_at = flip_at.lock().unwrap().expect("the flip happened");
    let latency = done - flipped_at;
    eprintln!(
        "detection latency after the flip (K=1): {:.0} ms",
        latency.as_secs_f64() * 1000.0
    );
    assert!(
        latency < Duration::from_millis(500),
        "paced at 25 ms, never backing off: latency {latency:?}"
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
    let j = flows(&probe(server.addr), 10, &[], Duration::from_secs(2)).await;
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
    assert!(
        j.evidence
            .details
            .iter()
            .any(|d| d.starts_with("error answers: 503 from an Envoy local reply×")),
        "{:?}",
        j.evidence.details
    );
}

#[tokio::test]
async fn holds_passes_when_nothing_changes_and_fails_on_the_first_deviation() {
    let ok = serve(|_, _| Reply::text(200, "Peter is 42 years")).await;
    let j = holds(&probe(ok.addr), ResultClass::Ok, Duration::from_secs(2), 5).await;
    assert_eq!(j.verdict, Verdict::Passed, "{}", j.evidence.summary);
    assert!(
        j.evidence.summary.starts_with("all "),
        "{}",
        j.evidence.summary
    );

    // STRICT taking effect mid-window would look like this: the app's 500s after a while.
    let breaks = serve(|_, n| {
        if n < 6 {
            Reply::text(200, "Peter is 42 years")
        } else {
            app_500()
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
        j.evidence.summary.contains("request 7 of the window")
            && j.evidence.summary.contains("http-500 (500: "),
        "{}",
        j.evidence.summary
    );
}

#[tokio::test]
async fn a_hold_with_too_few_requests_proves_nothing() {
    let ok = serve(|_, _| Reply::text(200, "Peter is 42 years")).await;
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
async fn origins_of_error_answers_are_told_apart() {
    let app = serve(|_, _| app_500()).await;
    let gateway = serve(|_, _| Reply::text(503, "no healthy upstream")).await;
    assert_eq!(probe(app.addr).once().await.origin, Some(Origin::App));
    assert_eq!(probe(gateway.addr).once().await.origin, Some(Origin::Envoy));
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout() {
    let silent = serve(|_, _| Reply::Silent).await;
    let o = probe(silent.addr).once().await;
    assert_eq!(o.class, ResultClass::Timeout, "{}", o.short());
    assert!(o.elapsed >= harness::probe::http::REQUEST_TIMEOUT);
    assert!(!o.reached(), "a timeout proves nothing about Istio");
}
