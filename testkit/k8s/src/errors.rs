//! API errors and the `metav1.Status` objects that carry them, worded like the real
//! API server's.

use crate::kinds::KindInfo;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The Status reason Kubernetes uses for an HTTP code.
pub fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

fn details(info: &KindInfo, name: &str) -> Value {
    json!({"name": name, "group": info.group, "kind": info.plural})
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn not_found(info: &KindInfo, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", info.resource()),
        )
        .with_details(details(info, name))
    }

    /// A path that serves nothing.
    pub fn no_route() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn namespace_not_found(namespace: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("namespaces \"{namespace}\" not found"),
        )
        .with_details(json!({"name": namespace, "kind": "namespaces"}))
    }

    pub fn already_exists(info: &KindInfo, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", info.resource()),
        )
        .with_details(details(info, name))
    }

    /// The optimistic-concurrency conflict of a stale resourceVersion or uid.
    pub fn conflict(info: &KindInfo, name: &str, why: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                info.resource()
            ),
        )
        .with_details(details(info, name))
    }

    pub fn stale(info: &KindInfo, name: &str) -> ApiError {
        ApiError::conflict(
            info,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn forbidden(info: &KindInfo, name: &str, why: &str) -> ApiError {
        ApiError::new(
            403,
            "Forbidden",
            format!("{} \"{name}\" is forbidden: {why}", info.resource()),
        )
        .with_details(details(info, name))
    }

    /// 422 with one cause per (field, message), e.g.
    /// `Deployment.apps "x" is invalid: spec.selector: Required value`.
    pub fn invalid(info: &KindInfo, name: &str, causes: &[(String, String)]) -> ApiError {
        let text = match causes {
            [(field, msg)] => format!("{field}: {msg}"),
            _ => format!(
                "[{}]",
                causes
                    .iter()
                    .map(|(f, m)| format!("{f}: {m}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        ApiError::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {text}", info.group_kind()),
        )
        .with_details(json!({
            "name": name, "group": info.group, "kind": info.kind,
            "causes": causes.iter().map(|(f, m)| json!({
                "reason": if m.starts_with("Required") { "FieldValueRequired" } else { "FieldValueInvalid" },
                "message": m, "field": f,
            })).collect::<Vec<_>>(),
        }))
    }

    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> ApiError {
        ApiError::new(415, "UnsupportedMediaType", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message)
    }

    /// The metav1.Status object.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}
