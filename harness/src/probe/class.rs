//! What one request ended as: its class (as suite files name it) and, for an HTTP
//! answer, who produced it.

use std::fmt;

/// The class of one request's result: `ok` (200 and a sentence of the deployed app),
/// `http-error` (any other answer), `http-NNN`, `reset`, `refused`, `timeout`, `tls`,
/// and `not-reached` (the harness's own path to the gateway failed: a port-forward
/// that could not be opened or broke).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResultClass {
    Ok,
    HttpError(Option<u16>),
    Reset,
    Refused,
    Timeout,
    Tls,
    NotReached,
}

impl ResultClass {
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "ok" => ResultClass::Ok,
            "http-error" => ResultClass::HttpError(None),
            "reset" => ResultClass::Reset,
            "refused" => ResultClass::Refused,
            "timeout" => ResultClass::Timeout,
            "tls" => ResultClass::Tls,
            "not-reached" => ResultClass::NotReached,
            other => match other.strip_prefix("http-").map(str::parse::<u16>) {
                Some(Ok(code)) if (100..600).contains(&code) => ResultClass::HttpError(Some(code)),
                _ => {
                    return Err(format!(
                        "unknown result class `{other}` (expected ok, http-error, http-NNN, reset, refused, timeout, tls or not-reached)"
                    ));
                }
            },
        })
    }

    /// Whether a concrete result of class `seen` is what `self` asks for.
    pub fn matches(self, seen: ResultClass) -> bool {
        match (self, seen) {
            (ResultClass::HttpError(None), ResultClass::HttpError(_)) => true,
            (want, seen) => want == seen,
        }
    }

    /// A class proving the request reached an HTTP server (not a dead path).
    pub fn is_http(self) -> bool {
        matches!(self, ResultClass::Ok | ResultClass::HttpError(_))
    }
}

impl fmt::Display for ResultClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResultClass::Ok => f.write_str("ok"),
            ResultClass::HttpError(None) => f.write_str("http-error"),
            ResultClass::HttpError(Some(code)) => write!(f, "http-{code}"),
            ResultClass::Reset => f.write_str("reset"),
            ResultClass::Refused => f.write_str("refused"),
            ResultClass::Timeout => f.write_str("timeout"),
            ResultClass::Tls => f.write_str("tls"),
            ResultClass::NotReached => f.write_str("not-reached"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for ResultClass {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ResultClass::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Who produced an HTTP answer, judged from its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// The app itself: a sentence, or the frontend's own error page (Flask/Werkzeug's
    /// "Internal Server Error" page, which it answers when a backend call raised).
    App,
    /// An Envoy local reply (`no healthy upstream`, `upstream connect error ...`): the
    /// gateway or a sidecar answered, not the app.
    Envoy,
    /// Neither (an empty body, something else).
    Unknown,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::App => "the app",
            Origin::Envoy => "an Envoy local reply",
            Origin::Unknown => "not the app",
        })
    }
}

/// Werkzeug's default 500 page (the frontend's answer when `requests.get` raised),
/// recognised by its title and heading.
pub fn is_app_error_page(body: &str) -> bool {
    body.contains("<title>500 Internal Server Error</title>")
        && body.contains("<h1>Internal Server Error</h1>")
}

/// Bodies Envoy answers by itself (local replies), anywhere in the body: the frontend
/// pastes a backend's body into its sentence whatever its status.
pub const ENVOY_LOCAL_REPLIES: [&str; 5] = [
    "upstream connect error or disconnect/reset before headers",
    "no healthy upstream",
    "upstream request timeout",
    "no route to host",
    "delayed connect error",
];

pub fn is_envoy_local_reply(body: &str) -> bool {
    ENVOY_LOCAL_REPLIES.iter().any(|r| body.contains(r))
}
