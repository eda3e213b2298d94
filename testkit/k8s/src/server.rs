//! The HTTP side of the API server: accepting connections (plain or TLS), recording
//! requests, injecting faults, routing `/api` and `/apis` paths to collections, items
//! and subresources, and answering with JSON objects or `metav1.Status` errors.

use crate::cluster::{ApplyTarget, Shared, lock};
use crate::errors::{ApiError, ApiResult};
use crate::faults::ApiFault;
use crate::kinds::{KindInfo, split_api_version};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{DeleteOptions, Deleted, Propagation, Write};
use crate::{discovery, logs, meta, patch, portforward};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// The raw query string ("" when none).
    pub query: String,
    pub content_type: Option<String>,
    /// The body as JSON when it parses, else as a JSON string; null when empty.
    pub body: Value,
}

pub type Body = Full<Bytes>;

/// Returned by the service to make hyper close the connection without an answer.
#[derive(Debug)]
pub struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for Dropped {}

/// Accepts connections until the cluster stops; `tls` wraps each one first.
pub async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut stop = shared.stopped();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((tcp, _)) = accepted else {
            continue;
        };
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        serve_connection(shared, stream).await;
                    }
                }
                None => serve_connection(shared, tcp).await,
            }
        });
    }
}

async fn serve_connection<S>(shared: Arc<Shared>, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(shared.clone(), req));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

pub fn json_response(code: u16, body: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

fn text_response(text: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r
}

/// Decoded `key=value` pairs of a query string.
pub struct Query(Vec<(String, String)>);

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-decoding; `+` is a space in query strings only.
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(if b == b'+' && plus_is_space { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    pub fn parse(q: &str) -> Query {
        Query(
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k, true), percent_decode(v, true))
                })
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated key.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

/// A parsed request, handed to the route handlers.
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: Query,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub content_type: String,
}

impl Req {
    /// The body as JSON, or YAML where the API accepts it.
    fn object(&self) -> ApiResult<Value> {
        if self.body.is_empty() {
            return Err(ApiError::bad_request("the request body is empty"));
        }
        parse_body(&self.body)
    }
}

fn parse_body(body: &[u8]) -> ApiResult<Value> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
    serde_saphyr::from_str::<Value>(text).map_err(|e| {
        ApiError::bad_request(format!(
            "error decoding the request body as JSON or YAML: {e}"
        ))
    })
}

async fn handle(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Dropped> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(error_response(&ApiError::bad_request(
                "cannot read the request body",
            )));
        }
    };
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or_default().to_string();
    lock(&shared.requests).push(RequestRecord {
        method: parts.method.to_string(),
        path: path.clone(),
        query: raw_query.clone(),
        content_type: content_type.clone(),
        body: if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
        },
    });
    let fault = lock(&shared.faults).take(parts.method.as_str(), &path);
    match fault {
        Some(ApiFault::Status {
            code,
            reason,
            message,
        }) => {
            return Ok(error_response(&ApiError::new(code, &reason, message)));
        }
        Some(ApiFault::Hang) => {
            let mut stop = shared.stopped();
            let _ = stop.changed().await;
            return Err(Dropped);
        }
        Some(ApiFault::CloseConnection) => return Err(Dropped),
        None => {}
    }
    let req = Req {
        method: parts.method,
        path,
        query: Query::parse(&raw_query),
        headers: parts.headers,
        body,
        content_type: content_type
            .as_deref()
            .and_then(|c| c.split(';').next())
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    };
    Ok(route(&shared, req, on_upgrade).unwrap_or_else(|e| error_response(&e)))
}

/// Where a resource path points.
struct Target {
    info: Arc<KindInfo>,
    version: String,
    /// None: across all namespaces (or a cluster-scoped kind).
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn route(
    shared: &Arc<Shared>,
    req: Req,
    on_upgrade: hyper::upgrade::OnUpgrade,
) -> ApiResult<Response<Body>> {
    let segments: Vec<String> = req
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let get_only = |r: ApiResult<Response<Body>>| {
        if req.method == Method::GET {
            r
        } else {
            Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({} {})",
                req.method, req.path
            )))
        }
    };
    let kinds = shared.lock().kinds().clone();
    let aggregated = req.headers.get_all(http::header::ACCEPT).iter().any(|v| {
        v.to_str()
            .is_ok_and(|a| a.contains("as=APIGroupDiscoveryList"))
    });
    match segs.as_slice() {
        ["version"] => get_only(Ok(json_response(
            200,
            &discovery::version(shared.options.kubernetes_version),
        ))),
        ["healthz"] | ["livez"] | ["readyz"] => get_only(Ok(text_response("ok".into()))),
        ["api"] | ["apis"] if aggregated => {
            let doc = discovery::aggregated(&kinds, segs == ["api"]);
            let mut r = json_response(200, &doc);
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(discovery::AGGREGATED),
            );
            get_only(Ok(r))
        }
        ["api"] => get_only(Ok(json_response(
            200,
            &discovery::core_versions(&shared.authority),
        ))),
        ["apis"] => get_only(Ok(json_response(200, &discovery::group_list(&kinds)))),
        ["api", v] => get_only(
            discovery::resource_list(&kinds, "", v)
                .map(|l| json_response(200, &l))
                .ok_or_else(ApiError::no_route),
        ),
        ["apis", g] => get_only(
            discovery::group(&kinds, g)
                .map(|l| json_response(200, &l))
                .ok_or_else(ApiError::no_route),
        ),
        ["apis", g, v] => get_only(
            discovery::resource_list(&kinds, g, v)
                .map(|l| json_response(200, &l))
                .ok_or_else(ApiError::no_route),
        ),
        ["api", v, rest @ ..] => {
            let target = resolve(&kinds, "", v, rest)?;
            resource(shared, req, target, on_upgrade)
        }
        ["apis", g, v, rest @ ..] => {
            let target = resolve(&kinds, g, v, rest)?;
            resource(shared, req, target, on_upgrade)
        }
        _ => Err(ApiError::no_route()),
    }
}

fn resolve(
    kinds: &crate::kinds::Kinds,
    group: &str,
    version: &str,
    rest: &[&str],
) -> ApiResult<Target> {
    let target = |plural: &str,
                  ns: Option<&str>,
                  name: Option<&&str>,
                  sub: Option<&&str>|
     -> ApiResult<Target> {
        let info = kinds
            .by_plural(group, version, plural)
            .ok_or_else(ApiError::no_route)?;
        if ns.is_some() != info.namespaced && name.is_some() {
            return Err(ApiError::no_route());
        }
        Ok(Target {
            info,
            version: version.to_string(),
            namespace: ns.map(str::to_string),
            name: name.map(|n| n.to_string()),
            subresource: sub.map(|s| s.to_string()),
        })
    };
    let namespaced_plural = |p: &str| {
        kinds
            .by_plural(group, version, p)
            .is_some_and(|k| k.namespaced)
    };
    match rest {
        ["namespaces", ns, plural, tail @ ..] if !group.is_empty() || namespaced_plural(plural) => {
            if !namespaced_plural(plural) {
                return Err(ApiError::no_route());
            }
            if tail.len() > 2 {
                return Err(ApiError::no_route());
            }
            target(plural, Some(ns), tail.first(), tail.get(1))
        }
        [plural] => target(plural, None, None, None),
        [plural, name] => target(plural, None, Some(name), None),
        [plural, name, sub] => target(plural, None, Some(name), Some(sub)),
        _ => Err(ApiError::no_route()),
    }
}

/// Sets the apiVersion a response carries: the one requested.
fn as_version(mut obj: Value, info: &KindInfo, version: &str) -> Value {
    if obj.is_object() {
        obj["apiVersion"] = json!(info.api_version(version));
        obj["kind"] = json!(info.kind);
    }
    obj
}

fn check_body_identity(
    info: &KindInfo,
    version: &str,
    namespace: Option<&str>,
    obj: &Value,
) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    if let Some(av) = obj["apiVersion"].as_str() {
        let (g, v) = split_api_version(av);
        if g != info.group || v != version {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                info.api_version(version)
            )));
        }
    }
    if let Some(k) = obj["kind"].as_str()
        && k != info.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            info.kind
        )));
    }
    if let (Some(ns), Some(body_ns)) = (namespace, obj["metadata"]["namespace"].as_str())
        && info.namespaced
        && !body_ns.is_empty()
        && body_ns != ns
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

fn resource(
    shared: &Arc<Shared>,
    req: Req,
    t: Target,
    on_upgrade: hyper::upgrade::OnUpgrade,
) -> ApiResult<Response<Body>> {
    if req.query.all("dryRun").iter().any(|d| !d.is_empty()) {
        // A dry-run pod create goes through admission (the injector, whose webhook
        // declares `sideEffects: None`) and is not persisted. Any other dry run is
        // refused loudly: silently persisting it would hide a difference.
        let pod_create = req.method == Method::POST
            && t.name.is_none()
            && t.info.is("", "Pod")
            && req.query.all("dryRun") == ["All"];
        if !pod_create {
            return Err(ApiError::bad_request(
                "dryRun is not supported by the testkit fake API server (only dryRun=All on a pod create)",
            ));
        }
        let obj = req.object()?;
        check_body_identity(&t.info, &t.version, t.namespace.as_deref(), &obj)?;
        let admitted =
            shared.create_dry_run(&t.info, t.namespace.as_deref().unwrap_or_default(), obj)?;
        return Ok(json_response(
            201,
            &as_version(admitted, &t.info, &t.version),
        ));
    }
    let info = t.info.clone();
    let ns = t.namespace.clone().unwrap_or_default();
    let Some(name) = t.name.clone() else {
        return collection(shared, &req, &t);
    };
    match t.subresource.as_deref() {
        None => item(shared, &req, &t, &ns, &name),
        Some(sub) if !info.has_subresource(sub) => Err(ApiError::no_route()),
        Some("status") => status_subresource(shared, &req, &t, &ns, &name),
        Some("scale") => scale(shared, &req, &t, &ns, &name),
        Some("log") => {
            if req.method != Method::GET {
                return Err(ApiError::method_not_allowed(
                    "only GET is allowed on pods/log",
                ));
            }
            let store = shared.lock();
            let pod = store
                .get(&info, &ns, &name)
                .ok_or_else(|| ApiError::not_found(&info, &name))?;
            let text = logs::pod_log(
                &store,
                pod,
                req.query.get("container"),
                req.query.get("tailLines"),
                req.query.flag("previous"),
            )?;
            Ok(text_response(text))
        }
        Some("portforward") => {
            if req.method != Method::GET && req.method != Method::POST {
                return Err(ApiError::method_not_allowed(
                    "only GET and POST are allowed on pods/portforward",
                ));
            }
            let pod = shared
                .lock()
                .get(&info, &ns, &name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(&info, &name))?;
            portforward::start(shared.clone(), pod, &req, on_upgrade)
        }
        Some("finalize") => {
            if req.method != Method::PUT {
                return Err(ApiError::method_not_allowed(
                    "only PUT is allowed on namespaces/finalize",
                ));
            }
            let body = req.object()?;
            let mut store = shared.lock();
            let mut live = store
                .get(&info, "", &name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(&info, &name))?;
            live["spec"]["finalizers"] = body["spec"]["finalizers"].clone();
            let out = store.replace(&info, "", &name, live, Write::Internal)?;
            Ok(json_response(200, &as_version(out, &info, &t.version)))
        }
        Some(_) => Err(ApiError::no_route()),
    }
}

fn list_object(info: &KindInfo, version: &str, revision: String, items: Vec<Value>) -> Value {
    json!({
        "kind": format!("{}List", info.kind),
        "apiVersion": info.api_version(version),
        "metadata": {"resourceVersion": revision},
        "items": items,
    })
}

fn selected(req: &Req, info: &KindInfo, store_items: Vec<&Value>) -> ApiResult<Vec<Value>> {
    let labels = LabelSelector::parse(req.query.get("labelSelector").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(req.query.get("fieldSelector").unwrap_or_default(), info)
        .map_err(ApiError::bad_request)?;
    Ok(store_items
        .into_iter()
        .filter(|o| labels.matches(meta::labels(o)) && fields.matches(o))
        .cloned()
        .collect())
}

fn collection(shared: &Arc<Shared>, req: &Req, t: &Target) -> ApiResult<Response<Body>> {
    let info = &t.info;
    match req.method {
        Method::GET => {
            if req.query.flag("watch") {
                return Err(ApiError::method_not_allowed(
                    "watch is not supported by the testkit fake API server; list and poll instead",
                ));
            }
            let store = shared.lock();
            let items = selected(req, info, store.list(info, t.namespace.as_deref()))?;
            let items = items
                .into_iter()
                .map(|o| as_version(o, info, &t.version))
                .collect();
            Ok(json_response(
                200,
                &list_object(info, &t.version, store.revision(), items),
            ))
        }
        Method::POST => {
            if info.namespaced && t.namespace.is_none() {
                return Err(ApiError::method_not_allowed(format!(
                    "{} can only be created in a namespace",
                    info.resource()
                )));
            }
            let obj = req.object()?;
            check_body_identity(info, &t.version, t.namespace.as_deref(), &obj)?;
            let created = shared.create(info, t.namespace.as_deref().unwrap_or_default(), obj)?;
            if let Some(manager) = req.query.get("fieldManager").filter(|m| !m.is_empty()) {
                shared.lock().record_updater(meta::uid(&created), manager);
            }
            Ok(json_response(201, &as_version(created, info, &t.version)))
        }
        Method::DELETE => {
            let opts = delete_options(req)?;
            let mut store = shared.lock();
            let victims = selected(req, info, store.list(info, t.namespace.as_deref()))?;
            let mut items = Vec::new();
            for v in victims {
                if let Ok(d) = store.delete(info, meta::namespace(&v), meta::name(&v), &opts) {
                    let (Deleted::Gone(o) | Deleted::Pending(o)) = d;
                    items.push(as_version(o, info, &t.version));
                }
            }
            Ok(json_response(
                200,
                &list_object(info, &t.version, store.revision(), items),
            ))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} on {})",
            req.method,
            info.resource()
        ))),
    }
}

fn delete_options(req: &Req) -> ApiResult<DeleteOptions> {
    let body = if req.body.is_empty() {
        Value::Null
    } else {
        parse_body(&req.body)?
    };
    if body["dryRun"].as_array().is_some_and(|d| !d.is_empty()) {
        return Err(ApiError::bad_request(
            "dryRun is not supported by the testkit fake API server",
        ));
    }
    let policy = body["propagationPolicy"]
        .as_str()
        .map(str::to_string)
        .or_else(|| req.query.get("propagationPolicy").map(str::to_string));
    let orphan = body["orphanDependents"]
        .as_bool()
        .or_else(|| req.query.get("orphanDependents").map(|v| v == "true"));
    let propagation = match (policy.as_deref(), orphan) {
        (Some("Foreground"), _) => Propagation::Foreground,
        (Some("Orphan"), _) | (None, Some(true)) => Propagation::Orphan,
        (Some("Background") | None, _) => Propagation::Background,
        (Some(other), _) => {
            return Err(ApiError::new(
                422,
                "Invalid",
                format!(
                    "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                ),
            ));
        }
    };
    let grace = body["gracePeriodSeconds"].as_i64().or_else(|| {
        req.query
            .get("gracePeriodSeconds")
            .and_then(|g| g.parse().ok())
    });
    Ok(DeleteOptions {
        propagation,
        grace_period_seconds: grace,
        precondition_uid: body["preconditions"]["uid"].as_str().map(str::to_string),
        precondition_resource_version: body["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
    })
}

const PATCH_TYPES: &str =
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

/// 415 for a patch type the resource does not take (checked before the object is
/// looked up, as the API server negotiates it first).
fn check_patch_type(req: &Req, info: &KindInfo) -> ApiResult<()> {
    let accepted = if info.builtin {
        format!("{PATCH_TYPES}, application/strategic-merge-patch+json")
    } else {
        PATCH_TYPES.to_string()
    };
    let ok = match req.content_type.as_str() {
        "application/merge-patch+json"
        | "application/json-patch+json"
        | "application/apply-patch+yaml" => true,
        "application/strategic-merge-patch+json" => info.builtin,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: {accepted}"
        )))
    }
}

/// Applies a non-apply patch of `req` to `live`.
fn apply_patch(req: &Req, info: &KindInfo, live: &Value) -> ApiResult<Value> {
    check_patch_type(req, info)?;
    let mut obj = live.clone();
    let p = req.object()?;
    match req.content_type.as_str() {
        "application/merge-patch+json" => {
            if !p.is_object() {
                return Err(ApiError::bad_request(
                    "the merge patch must be a JSON object",
                ));
            }
            patch::merge_patch(&mut obj, &p);
        }
        "application/strategic-merge-patch+json" => {
            patch::strategic_merge_patch(&mut obj, &p).map_err(ApiError::bad_request)?;
        }
        "application/json-patch+json" => {
            patch::json_patch(&mut obj, &p).map_err(|e| match e {
                patch::JsonPatchError::Decode(m) => ApiError::bad_request(m),
                patch::JsonPatchError::Apply(m) => ApiError::new(422, "Invalid", m),
            })?;
        }
        _ => {
            return Err(ApiError::unsupported_media_type(
                "server-side apply is not supported by the testkit fake on this subresource",
            ));
        }
    }
    Ok(obj)
}

fn item(
    shared: &Arc<Shared>,
    req: &Req,
    t: &Target,
    ns: &str,
    name: &str,
) -> ApiResult<Response<Body>> {
    let info = &t.info;
    let reply = |code: u16, obj: Value| Ok(json_response(code, &as_version(obj, info, &t.version)));
    match req.method {
        Method::GET => {
            if req.query.flag("watch") {
                return Err(ApiError::method_not_allowed(
                    "watch is not supported by the testkit fake API server",
                ));
            }
            let obj = shared
                .lock()
                .get(info, ns, name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(info, name))?;
            reply(200, obj)
        }
        Method::PUT => {
            let obj = req.object()?;
            check_body_identity(info, &t.version, Some(ns), &obj)?;
            if let Some(n) = obj["metadata"]["name"].as_str()
                && n != name
            {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            let out = shared.lock().replace(info, ns, name, obj, Write::Main)?;
            reply(200, out)
        }
        Method::PATCH => {
            check_patch_type(req, info)?;
            if req.content_type == "application/apply-patch+yaml" {
                let Some(manager) = req.query.get("fieldManager").filter(|m| !m.is_empty()) else {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                    ));
                };
                let body = req.object()?;
                let target = ApplyTarget {
                    info,
                    version: &t.version,
                    namespace: ns,
                    name,
                };
                let (out, created) =
                    shared.apply(&target, body, manager, req.query.flag("force"))?;
                return reply(if created { 201 } else { 200 }, out);
            }
            if req.query.get("force").is_some() {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch",
                ));
            }
            let mut store = shared.lock();
            let live = store
                .get(info, ns, name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(info, name))?;
            let patched = apply_patch(req, info, &live)?;
            let out = store.replace(info, ns, name, patched, Write::Main)?;
            reply(200, out)
        }
        Method::DELETE => {
            let opts = delete_options(req)?;
            let outcome = shared.lock().delete(info, ns, name, &opts)?;
            match outcome {
                Deleted::Pending(obj) => reply(200, obj),
                Deleted::Gone(obj) => Ok(json_response(
                    200,
                    &json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                        "details": {"name": name, "group": info.group, "kind": info.plural, "uid": meta::uid(&obj)},
                    }),
                )),
            }
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            req.method
        ))),
    }
}

fn status_subresource(
    shared: &Arc<Shared>,
    req: &Req,
    t: &Target,
    ns: &str,
    name: &str,
) -> ApiResult<Response<Body>> {
    let info = &t.info;
    let reply = |obj: Value| Ok(json_response(200, &as_version(obj, info, &t.version)));
    let mut store = shared.lock();
    let live = store
        .get(info, ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(info, name))?;
    match req.method {
        Method::GET => reply(live),
        Method::PUT => {
            let obj = req.object()?;
            check_body_identity(info, &t.version, Some(ns), &obj)?;
            reply(store.replace(info, ns, name, obj, Write::Status)?)
        }
        Method::PATCH => {
            let patched = if req.content_type == "application/apply-patch+yaml" {
                // Apply to status: merged like a merge patch of the status alone.
                let body = req.object()?;
                let mut obj = live.clone();
                patch::merge_patch(&mut obj["status"], &body["status"]);
                obj
            } else {
                apply_patch(req, info, &live)?
            };
            reply(store.replace(info, ns, name, patched, Write::Status)?)
        }
        _ => Err(ApiError::method_not_allowed(
            "only GET, PUT and PATCH are allowed on status",
        )),
    }
}

fn scale_object(obj: &Value) -> Value {
    let selector = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"], "uid": obj["metadata"]["uid"],
                     "resourceVersion": obj["metadata"]["resourceVersion"], "creationTimestamp": obj["metadata"]["creationTimestamp"]},
        "spec": {"replicas": meta::replicas(obj)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

fn scale(
    shared: &Arc<Shared>,
    req: &Req,
    t: &Target,
    ns: &str,
    name: &str,
) -> ApiResult<Response<Body>> {
    let info = &t.info;
    let mut store = shared.lock();
    let live = store
        .get(info, ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(info, name))?;
    let current = scale_object(&live);
    let wanted = match req.method {
        Method::GET => return Ok(json_response(200, &current)),
        Method::PUT => req.object()?,
        Method::PATCH => apply_patch(req, info, &current)?,
        _ => {
            return Err(ApiError::method_not_allowed(
                "only GET, PUT and PATCH are allowed on scale",
            ));
        }
    };
    let Some(replicas) = wanted["spec"]["replicas"].as_i64().filter(|r| *r >= 0) else {
        return Err(ApiError::new(
            422,
            "Invalid",
            format!(
                "Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: must be greater than or equal to 0"
            ),
        ));
    };
    let mut obj = live;
    obj["spec"]["replicas"] = json!(replicas);
    if let Some(rv) = wanted["metadata"]["resourceVersion"].as_str() {
        obj["metadata"]["resourceVersion"] = json!(rv);
    }
    let out = store.replace(info, ns, name, obj, Write::Main)?;
    Ok(json_response(200, &scale_object(&out)))
}
