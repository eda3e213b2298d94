//! A loopback stand-in for GitHub's releases API: pages of release JSON chosen by the
//! `page` query parameter, with or without a `Link` header pointing to the next page.
//! Plain threads, so tests that run the binary and async tests can both use it; every
//! request is recorded with its headers.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Request {
    /// Path and query, as sent.
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter's value.
    pub fn query(&self, name: &str) -> Option<&str> {
        let (_, query) = self.path.split_once('?')?;
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(body: &Value) -> Response {
        Response {
            status: 200,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }
}

type Handler = dyn Fn(&Request, &str) -> Response + Send + Sync;

pub struct ReleaseServer {
    /// The release list's URL (`http://127.0.0.1:<port>/repos/istio/istio/releases`).
    pub url: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ReleaseServer {
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The `page` of every request so far, in order.
    pub fn pages(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| r.query("page").unwrap_or("-").to_string())
            .collect()
    }
}

/// Stops accepting and closes the port: the list becomes unreachable.
impl Drop for ReleaseServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves `handler(request, base_url)` on 127.0.0.1 (ephemeral port).
pub fn serve(
    handler: impl Fn(&Request, &str) -> Response + Send + Sync + 'static,
) -> ReleaseServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let url = format!("{base}/repos/istio/istio/releases");
    let requests = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let handler: Arc<Handler> = Arc::new(handler);
    let thread = {
        let requests = Arc::clone(&requests);
        let stop = Arc::clone(&stop);
        let url = url.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let handler = Arc::clone(&handler);
                        let requests = Arc::clone(&requests);
                        let url = url.clone();
                        std::thread::spawn(move || answer(stream, &*handler, &requests, &url));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => return,
                }
            }
        })
    };
    ReleaseServer {
        url,
        requests,
        stop,
        thread: Some(thread),
    }
}

fn answer(stream: TcpStream, handler: &Handler, requests: &Mutex<Vec<Request>>, url: &str) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let request = Request { path, headers };
    requests.lock().unwrap().push(request.clone());
    let response = handler(&request, url);
    let mut head = format!(
        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        response.status,
        response.body.len()
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = &stream;
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(response.body.as_bytes());
}

/// A release as the API lists it (with the fields the harness ignores, too).
pub fn release(tag: &str, prerelease: bool, draft: bool) -> Value {
    json!({
        "tag_name": tag,
        "name": format!("Istio {tag}"),
        "prerelease": prerelease,
        "draft": draft,
        "body": "[Artifacts](https://github.com/istio/istio/releases)",
    })
}

/// Stable releases by tag.
pub fn releases(tags: &[&str]) -> Vec<Value> {
    tags.iter().map(|t| release(t, false, false)).collect()
}

/// Serves `all` in pages of `per_page` (whatever the client asks for), chosen by the
/// `page` parameter; past the end, an empty list. With `link`, each page but the last
/// carries a `Link` header to the next one (in a form the client could not guess:
/// `via=link`) and every page one to the last.
pub fn paged(
    all: Vec<Value>,
    per_page: usize,
    link: bool,
) -> impl Fn(&Request, &str) -> Response + Send + Sync + 'static {
    move |request, url| {
        let page: usize = request
            .query("page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(1);
        let pages = all.len().div_ceil(per_page);
        let items: Vec<Value> = all
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .cloned()
            .collect();
        let mut response = Response::json(&Value::Array(items));
        if link {
            let mut links = Vec::new();
            if page < pages {
                links.push(format!("<{url}?via=link&page={}>; rel=\"next\"", page + 1));
            }
            links.push(format!("<{url}?via=link&page={pages}>; rel=\"last\""));
            response
                .headers
                .push(("link".to_string(), links.join(", ")));
        }
        response
    }
}
