//! API errors and their JSON bodies, in the shape Django REST framework clients expect:
//! `{"detail": "..."}` or per-field `{"field": ["message", ...]}`.

use actix_web::{http::StatusCode, web, HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

/// Per-field validation messages; nested lists (batch entries) are JSON values too.
pub type FieldErrors = Map<String, Value>;

/// Error bodies: `{"detail": "..."}` (a 400 may carry per-field messages instead).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    detail: String,
}

/// A 400: `{"detail": "..."}` (the body is not JSON, for one) or per-field messages.
// Documentation only: the answers are built by `ApiError`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum BadRequestBody {
    Detail(ErrorBody),
    Fields(FieldErrorsBody),
}

/// Per-field validation messages, `{"field": ["message", ...]}` (`non_field_errors` for the
/// body as a whole).
// Documentation of `FieldErrors` only.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct FieldErrorsBody(std::collections::BTreeMap<String, FieldError>);

/// A field's messages; an object field (`interval`) has the messages of each of its fields
/// instead, and a list field (`log_entries`) one object of them per item (`{}` for an item
/// without errors).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum FieldError {
    Messages(Vec<FieldMessage>),
    Nested(std::collections::BTreeMap<String, Vec<String>>),
}

/// One message of a field, or the messages of one item of a list field.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum FieldMessage {
    Message(String),
    Item(std::collections::BTreeMap<String, Vec<String>>),
}

/// Adds `message` to the list of messages of `field`.
pub fn push(errors: &mut FieldErrors, field: &str, message: impl Into<String>) {
    let entry = errors.entry(field.to_owned()).or_insert_with(|| json!([]));
    if let Value::Array(list) = entry {
        list.push(Value::String(message.into()));
    }
}

/// `Retry-After` of a 503 [`ApiError::Busy`], in seconds.
pub const BUSY_RETRY_AFTER_SECS: u64 = 1;
/// The answer to a request whose query Postgres cancelled at the statement time-out.
pub const QUERY_TIMEOUT_DETAIL: &str = "The query took longer than the server allows and was cancelled; narrow it (filters, a shorter time range, a smaller limit) or retry later.";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed")]
    Validation(FieldErrors),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may be known, but this is turned off or not theirs to do.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the resource is not in a state that allows it yet.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body did not arrive in time.
    #[error("{0}")]
    RequestTimeout(String),
    /// Too much is being received at once: 503 with `Retry-After`, the detail shown.
    #[error("{0}")]
    Busy(String),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// Postgres cancelled a statement that ran past the pool's `statement_timeout`
    /// (`LOGCANARY_READ_STATEMENT_TIMEOUT_MS` for reads): 503 saying so, since a narrower
    /// query or a later retry may succeed.
    #[error("statement time-out: {0}")]
    QueryTimeout(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// One field, one message.
    pub fn field(name: &str, message: impl Into<String>) -> Self {
        let mut errors = Map::new();
        errors.insert(name.to_owned(), json!([message.into()]));
        ApiError::Validation(errors)
    }
}

impl From<db::DbError> for ApiError {
    fn from(e: db::DbError) -> Self {
        if e.is_statement_timeout() {
            ApiError::QueryTimeout(e.to_string())
        } else if e.is_transient() {
            ApiError::Unavailable(e.to_string())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Busy(_) | ApiError::Unavailable(_) | ApiError::QueryTimeout(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = match self {
            ApiError::Validation(fields) => Value::Object(fields.clone()),
            ApiError::Internal(detail) => {
                // The cause goes to the log (with the request id), not to the client.
                tracing::error!(error = %detail, "Request failed with an internal error.");
                json!({"detail": "Internal server error."})
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "Request failed: a dependency is unavailable.");
                json!({"detail": "Service temporarily unavailable, retry later."})
            }
            ApiError::QueryTimeout(detail) => {
                tracing::warn!(error = %detail, "Request failed: a statement ran past its time-out.");
                json!({"detail": QUERY_TIMEOUT_DETAIL})
            }
            other => json!({"detail": other.to_string()}),
        };
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Busy(_)) {
            response.insert_header((actix_web::http::header::RETRY_AFTER, BUSY_RETRY_AFTER_SECS));
        }
        if matches!(self, ApiError::RequestTimeout(_) | ApiError::Busy(_)) {
            // The rest of the body is not read: the connection cannot be reused.
            response.insert_header((
                actix_web::http::header::CONNECTION,
                actix_web::http::header::HeaderValue::from_static("close"),
            ));
        }
        response.json(body)
    }
}

/// actix-web's extractor settings with our error bodies, registered on the whole app so a
/// rejected query string or path answers in the same JSON shape as every handler error.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error, _req| {
        ApiError::BadRequest(format!("Invalid query string: {error}")).into()
    })
}

/// See [`query_config`]. A path segment that does not fit its type names no resource.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|_error, _req| ApiError::NotFound("Not found.".into()).into())
}
