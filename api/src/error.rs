//! The api's one error type, rendered as the JSON envelope of CONTRACT.md. Internal
//! errors are logged with their cause and shown as a short message with a request id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clawlink_common::codes::ErrorCode;
use serde_json::{Value, json};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub retryable: bool,
    pub missing_fields: Vec<String>,
    pub invalid_fields: Vec<String>,
    pub details: Vec<Value>,
    pub hint: Option<String>,
    pub input_schema: Option<Value>,
    pub retry_after: Option<u64>,
    /// Extra top-level fields (for example `executionId` of a failed call).
    pub extra: serde_json::Map<String, Value>,
    /// Extra fields inside the `error` object (for example `providerStatus`).
    pub error_extra: serde_json::Map<String, Value>,
}

impl ApiError {
    /// An error with the code's own status and kind (`clawlink_common::codes`).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let status = code.http_status();
        Self {
            status,
            code,
            message: message.into(),
            retryable: status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE,
            missing_fields: Vec::new(),
            invalid_fields: Vec::new(),
            details: Vec::new(),
            hint: None,
            input_schema: None,
            retry_after: None,
            extra: serde_json::Map::new(),
            error_extra: serde_json::Map::new(),
        }
    }

    /// The same error answered with another status: only for a refusal axum made before
    /// our code ran, whose status already says what it means.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// A dependency is down: 503 with `Retry-After`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorCode::ServiceUnavailable, message);
        e.retry_after = Some(2);
        e
    }

    /// Something of ours failed. Logs the cause; the caller sees the request's id only
    /// (the one in `x-request-id` and on the request's log lines).
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let request_id =
            clawlink_common::telemetry::current_request_id().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        tracing::error!(%request_id, error = %cause, "internal error");
        let mut e = Self::new(
            ErrorCode::InternalError,
            format!(
                "Something went wrong on our side (request {request_id}). Try again; if it persists, report the request id."
            ),
        );
        e.retryable = true;
        e.error_extra.insert("requestId".into(), Value::String(request_id));
        e
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn details(mut self, details: impl IntoIterator<Item = Value>) -> Self {
        self.details = details.into_iter().collect();
        self
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        database_error(&err)
    }
}

/// A batched write's failure: shared by every call in the batch, or (a row Postgres
/// refused, which the batch isolates) this call's own.
impl From<clawlink_common::batch::BatchError> for ApiError {
    fn from(err: clawlink_common::batch::BatchError) -> Self {
        database_error(&err)
    }
}

/// SQLSTATE classes that say the server, not the request, is the trouble: 08 connection
/// exception, 53 insufficient resources (too many connections), 57 operator intervention
/// (57P01 a restart or fast shutdown ending the session, 57P03 "the database system is
/// starting up"). Seen on a Postgres restart under load (`ha::a_postgres_restart…`).
fn server_is_away(err: &sqlx::Error) -> bool {
    err.as_database_error().and_then(|e| e.code()).is_some_and(|c| ["08", "53", "57"].iter().any(|k| c.starts_with(k)))
}

fn database_error(err: &sqlx::Error) -> ApiError {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            tracing::warn!(error = %err, "database unavailable");
            ApiError::unavailable("The database is unavailable; try again shortly.")
        }
        _ if server_is_away(err) => {
            tracing::warn!(error = %err, "database unavailable");
            ApiError::unavailable("The database is unavailable; try again shortly.")
        }
        // SQLSTATE class 22: a value of the request Postgres cannot store. The same request
        // would fail again, so it is the caller's to fix (body checks catch what they know
        // of, such as NUL, before this).
        _ if err.as_database_error().and_then(|e| e.code()).is_some_and(|c| c.starts_with("22")) => {
            tracing::warn!(error = %err, "the database refused a value of the request");
            ApiError::new(ErrorCode::InvalidBody, "The request holds a value that cannot be stored.")
        }
        _ => ApiError::internal(err),
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(err: redis::RedisError) -> Self {
        tracing::warn!(error = %err, "redis unavailable");
        ApiError::unavailable("The result store is unavailable; try again shortly.")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "ok": false,
            "error": {"type": self.code.kind(), "code": self.code, "message": self.message, "retryable": self.retryable},
        });
        let obj = body.as_object_mut().expect("object");
        if let Some(error) = obj.get_mut("error").and_then(Value::as_object_mut) {
            error.extend(self.error_extra);
        }
        if !self.missing_fields.is_empty() {
            obj.insert("missingFields".into(), json!(self.missing_fields));
        }
        if !self.invalid_fields.is_empty() {
            obj.insert("invalidFields".into(), json!(self.invalid_fields));
        }
        if !self.details.is_empty() {
            obj.insert("details".into(), Value::Array(self.details));
        }
        if let Some(hint) = self.hint {
            obj.insert("hint".into(), json!(hint));
        }
        if let Some(schema) = self.input_schema {
            obj.insert("inputSchema".into(), schema);
        }
        for (k, v) in self.extra {
            obj.insert(k, v);
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        // RFC 9110 §15.5.2: every 401 names how to authenticate. RFC 6750 §3: a Bearer
        // challenge, with `invalid_token` when the credential sent is not valid. No
        // `resource_metadata` (RFC 9728): devices pair in the browser, not by OAuth.
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = if self.code == ErrorCode::InvalidCredential {
                r#"Bearer realm="clawlink", error="invalid_token""#
            } else {
                r#"Bearer realm="clawlink""#
            };
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

/// `axum::Json` whose rejections (bad JSON, wrong content type, body too large, NUL in a
/// string: `crate::body`) use the envelope instead of axum's plain-text answers. The body
/// must be a JSON object: serde would otherwise fill a struct from an array by position,
/// so `[{…}, null, true]` on execute would be a confirmed call.
pub struct ApiJson<T>(pub T);

impl From<crate::body::Unread> for ApiError {
    fn from(unread: crate::body::Unread) -> Self {
        let (code, message) = unread.refusal();
        ApiError::new(code, message)
    }
}

impl<S, T> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = crate::body::read(axum::extract::Request::from_parts(parts.clone(), body), state).await?;
        let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes.clone()));
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) if is_object(&bytes) => Ok(ApiJson(v)),
            Ok(_) => Err(ApiError::new(ErrorCode::InvalidBody, "The body must be a JSON object.")),
            Err(rejection) => {
                let status = rejection.status();
                let err = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(ErrorCode::BodyTooLarge, "The request body is too large.")
                } else if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                    ApiError::new(
                        ErrorCode::UnsupportedMediaType,
                        "Send the body as JSON with Content-Type: application/json.",
                    )
                } else {
                    ApiError::new(
                        ErrorCode::InvalidBody,
                        format!("The body is not valid JSON for this endpoint: {}", rejection.body_text()),
                    )
                };
                Err(err)
            }
        }
    }
}

/// Whether valid JSON text is an object (its first byte past whitespace is `{`).
fn is_object(json: &[u8]) -> bool {
    json.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')) == Some(&b'{')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_500_names_the_request_id_of_its_answer() {
        let request = axum::http::Request::builder()
            .uri("/x")
            .header("x-request-id", "req-500")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = clawlink_common::telemetry::traced("api", "/x", request, |_| async {
            ApiError::internal("the disk is on fire").into_response()
        })
        .await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()["x-request-id"], "req-500");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["requestId"], "req-500", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("req-500"), "{body}");
        assert!(!body.to_string().contains("on fire"), "the cause stays in the log: {body}");
    }
}
