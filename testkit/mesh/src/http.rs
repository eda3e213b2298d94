//! HTTP/1.1 plumbing shared by every simulated server (gateway ports, Envoy admin,
//! merged metrics, the app's own port): hyper serving a synchronous handler over any
//! stream, with bounded lifetimes. Envoy refuses HTTP/1.0 by default (`426 Upgrade
//! Required`, `http_protocol_options.accept_http_10: false`); pilot-agent's Go server
//! and Flask do not.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Longest a connection may live.
pub(crate) const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

/// A request as the handlers see it.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// Path and query.
    pub path: String,
    pub body: Bytes,
}

impl Request {
    /// The query parameter `key` (without a value: empty).
    pub fn query(&self, key: &str) -> Option<String> {
        let q = self.path.split_once('?')?.1;
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then(|| v.to_string())
        })
    }

    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or(&self.path)
    }
}

/// A response to write.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response {
        let mut headers = vec![];
        if !content_type.is_empty() {
            headers.push(("content-type".to_string(), content_type.to_string()));
        }
        Response {
            status,
            headers,
            body: body.into(),
        }
    }

    pub fn text(status: u16, body: impl Into<Bytes>) -> Response {
        Response::new(status, "text/plain; charset=UTF-8", body)
    }

    pub fn json(value: &serde_json::Value) -> Response {
        let body = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into());
        Response::new(200, "application/json", body + "\n")
    }

    pub fn with(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

pub(crate) type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// A handler that answers later.
pub(crate) type AsyncHandler =
    Arc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = Response> + Send>> + Send + Sync>;

/// Serves HTTP/1.1 on `io` until the peer closes or [`CONNECTION_LIFETIME`] passes.
/// `envoy`: answer HTTP/1.0 with 426 and name the server `istio-envoy`.
pub(crate) async fn serve<IO>(io: IO, handler: Handler, envoy: bool)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handler: AsyncHandler = Arc::new(move |req| {
        let response = handler(req);
        Box::pin(async move { response })
    });
    serve_async(io, handler, envoy).await;
}

/// [`serve`] with an asynchronous handler.
pub(crate) async fn serve_async<IO>(io: IO, handler: AsyncHandler, envoy: bool)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let handler = handler.clone();
        async move {
            let response = if envoy && req.version() == hyper::Version::HTTP_10 {
                Response::new(426, "", Bytes::new())
            } else {
                let path = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".into());
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                handler(Request { path, body }).await
            };
            Ok::<_, Infallible>(to_hyper(response, envoy))
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
}

fn to_hyper(r: Response, envoy: bool) -> hyper::Response<Full<Bytes>> {
    let mut b = hyper::Response::builder().status(r.status);
    let mut has_server = false;
    for (k, v) in &r.headers {
        has_server |= k.eq_ignore_ascii_case("server");
        b = b.header(k.as_str(), v.as_str());
    }
    if envoy && !has_server {
        b = b.header("server", "istio-envoy");
    }
    b.body(Full::new(r.body.clone())).unwrap_or_else(|_| {
        let mut fallback = hyper::Response::new(Full::new(r.body));
        *fallback.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        fallback
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_found_with_or_without_values() {
        let r = Request {
            path: "/config_dump?resource=dynamic_active_clusters&include_eds".into(),
            body: Bytes::new(),
        };
        assert_eq!(
            r.query("resource").as_deref(),
            Some("dynamic_active_clusters")
        );
        assert_eq!(r.query("include_eds").as_deref(), Some(""));
        assert_eq!(r.query("mask"), None);
        assert_eq!(r.path_only(), "/config_dump");
    }
}
