//! Classifying one request's result: `ok` (200 and a sentence of the deployed app),
//! `http-error` (any other answer, with its status and who produced it), `reset`,
//! `refused`, `timeout`, `tls`.

pub use super::class::{Origin, ResultClass};
use super::class::{is_app_error_page, is_envoy_local_reply};
use super::sentence::{Grammar, Sentence};
use std::time::Duration;

/// What the TLS layer said, when it said anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSignal {
    /// The server sent an alert, e.g. `CertificateRequired` (TLS 1.3, on first read) or
    /// `HandshakeFailure` (TLS 1.2, during the handshake).
    Alert(String),
    /// This client refused the server's certificate (wrong CA, wrong name): a harness or
    /// configuration problem, never a rejection by the server.
    ServerUntrusted(String),
    /// Another TLS error.
    Other(String),
}

/// One request's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub class: ResultClass,
    pub status: Option<u16>,
    /// Who produced the HTTP answer, when there was one.
    pub origin: Option<Origin>,
    /// The parsed sentence of an `ok` answer.
    pub sentence: Option<Sentence>,
    pub tls: Option<TlsSignal>,
    /// Error chain or a body excerpt, for the evidence.
    pub detail: String,
    pub elapsed: Duration,
}

impl Observation {
    /// `ok (200)`, `http-500 (500: boom)`, `reset (connection reset by peer)`.
    pub fn short(&self) -> String {
        let detail: String = self.detail.chars().take(120).collect();
        match self.status {
            Some(code) if detail.is_empty() => format!("{} ({code})", self.class),
            Some(code) => format!("{} ({code}: {detail})", self.class),
            None => format!("{} ({detail})", self.class),
        }
    }

    /// Whether the request reached something that answers (HTTP or TLS), i.e. the path
    /// to the gateway works; refused, timed-out and not-reached requests did not.
    pub fn reached(&self) -> bool {
        !matches!(
            self.class,
            ResultClass::Refused | ResultClass::Timeout | ResultClass::NotReached
        )
    }

    /// The harness's own path failed while this request was under way (a port-forward
    /// could not be opened or broke): `cause` says how. A result that is not an HTTP
    /// answer then proves nothing about Istio.
    pub fn path_failed(mut self, cause: &str) -> Observation {
        if self.status.is_none() {
            self.class = ResultClass::NotReached;
            self.tls = None;
            self.detail = format!("{cause} ({})", self.detail);
        }
        self
    }
}

/// Classifies an HTTP answer: `ok` only for 200 with a sentence `grammar` accepts.
pub fn answer(status: u16, body: &str, elapsed: Duration, grammar: &Grammar) -> Observation {
    let excerpt: String = body.trim().chars().take(200).collect();
    let sentence = if status == 200 {
        grammar.parse(body)
    } else {
        None
    };
    let origin = if sentence.is_some() || (status == 500 && is_app_error_page(body)) {
        Origin::App
    } else if is_envoy_local_reply(body) {
        Origin::Envoy
    } else {
        Origin::Unknown
    };
    Observation {
        class: if sentence.is_some() {
            ResultClass::Ok
        } else {
            ResultClass::HttpError(Some(status))
        },
        status: Some(status),
        origin: Some(origin),
        sentence,
        tls: None,
        detail: excerpt,
        elapsed,
    }
}

/// The error chain as one line.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in layers(error) {
        let text = e.to_string();
        // Outer layers often repeat the inner message; keep each text once.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// Classifies a transport error by walking its source chain.
pub fn transport_error(
    error: &(dyn std::error::Error + 'static),
    timed_out: bool,
    elapsed: Duration,
) -> Observation {
    let detail = chain(error);
    let class = if timed_out {
        ResultClass::Timeout
    } else {
        classify_chain(error, &detail)
    };
    Observation {
        class,
        status: None,
        origin: None,
        sentence: None,
        tls: tls_signal(error),
        detail,
        elapsed,
    }
}

/// Every error of the chain, including errors wrapped inside `io::Error`s: their
/// `source()` skips the wrapped error itself, which is where rustls puts its own.
fn layers<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out: Vec<&'a (dyn std::error::Error + 'static)> = Vec::new();
    let mut stack = vec![error];
    while let Some(e) = stack.pop() {
        out.push(e);
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            stack.push(inner);
        } else if let Some(source) = e.source() {
            stack.push(source);
        }
    }
    out
}

/// The rustls error in the chain, if any, as a signal.
pub fn tls_signal(error: &(dyn std::error::Error + 'static)) -> Option<TlsSignal> {
    layers(error)
        .into_iter()
        .find_map(|e| e.downcast_ref::<rustls::Error>())
        .map(|tls| match tls {
            rustls::Error::AlertReceived(alert) => TlsSignal::Alert(format!("{alert:?}")),
            rustls::Error::InvalidCertificate(why) => {
                TlsSignal::ServerUntrusted(crate::words::certificate_problem(why))
            }
            other => TlsSignal::Other(other.to_string()),
        })
}

fn classify_chain(error: &(dyn std::error::Error + 'static), text: &str) -> ResultClass {
    let all = layers(error);
    if all
        .iter()
        .any(|e| e.downcast_ref::<rustls::Error>().is_some())
    {
        return ResultClass::Tls;
    }
    for e in &all {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match io.kind() {
                ConnectionRefused => return ResultClass::Refused,
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
                    return ResultClass::Reset;
                }
                TimedOut => return ResultClass::Timeout,
                _ => {}
            }
        }
    }
    // hyper's "connection closed before message completed" carries no io::Error.
    let lower = text.to_ascii_lowercase();
    if lower.contains("connection closed before message completed")
        || lower.contains("connection reset")
    {
        ResultClass::Reset
    } else if lower.contains("connection refused") {
        ResultClass::Refused
    } else if lower.contains("timed out") {
        ResultClass::Timeout
    } else {
        // Any other transport failure after connecting: the peer went away.
        ResultClass::Reset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_200_with_a_sentence_is_ok() {
        let d = Duration::ZERO;
        let g = Grammar::app_defaults();
        assert_eq!(
            answer(200, "Peter is 42 years", d, &g).class,
            ResultClass::Ok
        );
        assert_eq!(
            answer(200, "Ray is 42 years\n", d, &g).class,
            ResultClass::Ok
        );
        // A backend error pasted into the sentence: still 200, not a sentence.
        let pasted = answer(200, "no healthy upstream is 42 years", d, &g);
        assert_eq!(pasted.class, ResultClass::HttpError(Some(200)));
        assert_eq!(pasted.origin, Some(Origin::Envoy));
        assert_eq!(
            answer(200, "", d, &g).class,
            ResultClass::HttpError(Some(200))
        );
        assert_eq!(
            answer(500, "Peter is 42 years", d, &g).class,
            ResultClass::HttpError(Some(500))
        );
        // A name the app is not configured with is not its sentence.
        assert_eq!(
            answer(200, "Alice is 42 years", d, &g).class,
            ResultClass::HttpError(Some(200))
        );
    }

    #[test]
    fn a_500_is_the_apps_only_with_its_own_error_page() {
        let d = Duration::ZERO;
        let g = Grammar::app_defaults();
        let page = "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was unable to complete your request. Either the server is overloaded or there is an error in the application.</p>\n";
        assert_eq!(answer(500, page, d, &g).origin, Some(Origin::App));
        assert_eq!(answer(500, "", d, &g).origin, Some(Origin::Unknown));
        assert_eq!(
            answer(503, "no healthy upstream", d, &g).origin,
            Some(Origin::Envoy)
        );
        assert_eq!(
            answer(500, "upstream connect error or disconnect/reset before headers. reset reason: connection termination", d, &g).origin,
            Some(Origin::Envoy)
        );
    }

    #[test]
    fn io_errors_in_the_chain_decide_the_class() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            transport_error(&refused, false, Duration::ZERO).class,
            ResultClass::Refused
        );
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(
            transport_error(&reset, false, Duration::ZERO).class,
            ResultClass::Reset
        );
        let tls = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert_eq!(
            transport_error(&tls, false, Duration::ZERO).class,
            ResultClass::Tls
        );
        assert_eq!(
            transport_error(&reset, true, Duration::ZERO).class,
            ResultClass::Timeout
        );
    }
}
