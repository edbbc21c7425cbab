//! Fault injection: the [`Fault`] knob and how a request is failed.
//!
//! Faults that can be decided before any output is produced (an error
//! status, a hang, a dropped connection for a non-streaming request, a
//! malformed non-streaming body) are applied by [`Ctx::gate`]. Faults that
//! happen in the middle of a stream (`drop_after_chunks`, `malformed`) are
//! applied by the stream writer in [`crate::stream`]. `refuse` is applied at
//! accept time by the server loop, and by [`Ctx::gate`] for requests that
//! arrive on connections opened before the fault was set.

use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::state::Ctx;

/// A fault the mock injects into inference requests.
///
/// JSON forms (as accepted by `POST /mock/config` and `--config-json`):
///
/// | JSON | variant |
/// |------|---------|
/// | `"none"` or `null` | [`Fault::None`] |
/// | `{"status": 503, "body": ..., "retry_after": 2}` | [`Fault::Status`] (status 200–599; `body`, `retry_after` optional) |
/// | `"hang"` | [`Fault::Hang`] |
/// | `{"drop_after_chunks": 3}` | [`Fault::DropAfterChunks`] |
/// | `"refuse"` | [`Fault::Refuse`] |
/// | `"malformed"` | [`Fault::Malformed`] |
/// | `{"endless": 500}` | [`Fault::Endless`] (status 200–599) |
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub enum Fault {
    /// Answer normally.
    #[default]
    None,
    /// Answer with this HTTP status.
    Status {
        /// HTTP status code.
        status: u16,
        /// Response body. A JSON string is sent as plain text, anything else
        /// as JSON; absent = an error in the engine's own shape.
        body: Option<Value>,
        /// Value of a `Retry-After` header, in seconds (for Gemini's paths, the body's `RetryInfo` delay instead).
        retry_after: Option<u64>,
    },
    /// Accept the request and never answer (until the client gives up).
    Hang,
    /// Streaming: send this many chunks, then close the connection without
    /// the final chunk / `[DONE]` (never more than all but the last chunk).
    /// Non-streaming: close the connection without any response.
    DropAfterChunks(u32),
    /// Close new TCP connections right after accept, without a response;
    /// requests on already open connections get their connection closed.
    /// `/mock/*` control requests are still served.
    Refuse,
    /// Answer 200 with invalid JSON, or with a broken NDJSON/SSE line in a stream.
    Malformed,
    /// Answer this status with a chunked body that never ends (64 KiB chunks of a JSON error text that never
    /// closes), as a broken engine or a hostile one might: the client must stop reading on its own.
    Endless(u16),
}

impl Fault {
    /// An error-status fault with the engine's default error body.
    pub fn status(status: u16) -> Self {
        Fault::Status { status, body: None, retry_after: None }
    }

    /// Whether this is [`Fault::None`].
    pub fn is_none(&self) -> bool {
        matches!(self, Fault::None)
    }
}

impl TryFrom<Value> for Fault {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        const EXPECTED: &str = "expected \"none\", \"hang\", \"refuse\", \"malformed\", \
             {\"status\": 200..=599, \"body\"?: ..., \"retry_after\"?: SECS}, {\"drop_after_chunks\": N} or {\"endless\": 200..=599}";
        match value {
            Value::Null => Ok(Fault::None),
            Value::String(word) => match word.as_str() {
                "none" | "" => Ok(Fault::None),
                "hang" => Ok(Fault::Hang),
                "refuse" => Ok(Fault::Refuse),
                "malformed" => Ok(Fault::Malformed),
                other => Err(format!("unknown fault {other:?}: {EXPECTED}")),
            },
            Value::Object(map) => {
                if let Some(n) = map.get("drop_after_chunks") {
                    if map.len() != 1 {
                        return Err(format!("drop_after_chunks takes no other keys: {EXPECTED}"));
                    }
                    let n = n
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or("drop_after_chunks must be a non-negative integer")?;
                    return Ok(Fault::DropAfterChunks(n));
                }
                if let Some(s) = map.get("endless") {
                    let status = s
                        .as_u64()
                        .and_then(|s| u16::try_from(s).ok())
                        .filter(|s| (200..=599).contains(s))
                        .filter(|_| map.len() == 1)
                        .ok_or_else(|| format!("endless takes a status 200..=599 and no other keys: {EXPECTED}"))?;
                    return Ok(Fault::Endless(status));
                }
                let status = map
                    .get("status")
                    .and_then(Value::as_u64)
                    .and_then(|s| u16::try_from(s).ok())
                    .filter(|s| (200..=599).contains(s))
                    .ok_or_else(|| format!("fault object needs a valid \"status\": {EXPECTED}"))?;
                if let Some(key) = map.keys().find(|k| !matches!(k.as_str(), "status" | "body" | "retry_after")) {
                    return Err(format!("unknown key {key:?} in status fault: {EXPECTED}"));
                }
                let body = map.get("body").filter(|b| !b.is_null()).cloned();
                let retry_after = match map.get("retry_after") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(v.as_u64().ok_or("retry_after must be whole seconds")?),
                };
                Ok(Fault::Status { status, body, retry_after })
            }
            other => Err(format!("invalid fault {other}: {EXPECTED}")),
        }
    }
}

impl From<Fault> for Value {
    fn from(fault: Fault) -> Self {
        match fault {
            Fault::None => json!("none"),
            Fault::Hang => json!("hang"),
            Fault::Refuse => json!("refuse"),
            Fault::Malformed => json!("malformed"),
            Fault::DropAfterChunks(n) => json!({ "drop_after_chunks": n }),
            Fault::Endless(status) => json!({ "endless": status }),
            Fault::Status { status, body, retry_after } => {
                let mut obj = json!({ "status": status });
                if let Some(body) = body {
                    obj["body"] = body;
                }
                if let Some(secs) = retry_after {
                    obj["retry_after"] = json!(secs);
                }
                obj
            }
        }
    }
}

/// Which protocol family an endpoint speaks; decides the error body shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    /// `/api/*`: `{"error": "message"}`.
    Ollama,
    /// `/v1/*`: `{"error": {"code", "message", "type"}}` (llama.cpp's).
    OpenAi,
    /// `/v1/messages`: `{"type": "error", "error": {"type", "message"}}` (Anthropic's).
    Anthropic,
    /// `/v1beta/*`: `{"error": {"code", "message", "status"}}` (Gemini's).
    Gemini,
}

impl Proto {
    /// The protocol spoken on `path`.
    pub(crate) fn for_path(path: &str) -> Self {
        // llama.cpp's own endpoints answer errors in its (OpenAI-like) shape too.
        if path == "/v1/messages" {
            Proto::Anthropic
        } else if path.starts_with("/v1beta/") {
            Proto::Gemini
        } else if path.starts_with("/v1/")
            || path.starts_with("/openai/")
            || matches!(path, "/health" | "/slots" | "/props")
        {
            Proto::OpenAi
        } else {
            Proto::Ollama
        }
    }

    /// An error response in this protocol's shape.
    pub(crate) fn error(self, status: StatusCode, message: &str) -> Response {
        match self {
            Proto::Ollama => crate::ollama::error(status, message),
            Proto::OpenAi => crate::openai::error(status, message),
            Proto::Anthropic => crate::anthropic::error(status, message),
            Proto::Gemini => crate::gemini::error(status, message),
        }
    }
}

impl Ctx {
    /// Applies the request's latency and any fault that ends the request
    /// before normal output starts; called by the engine middleware.
    ///
    /// Returns `Some(response)` when the request must be answered with it,
    /// never returns for hangs and dropped connections, and returns `None`
    /// when the handler should go on (stream-level faults included).
    pub(crate) async fn gate(&self, proto: Proto, stream: bool) -> Option<Response> {
        if self.faultable && self.cfg.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.cfg.latency_ms)).await;
        }
        match &self.fault {
            Fault::None => None,
            Fault::Status { status, body, retry_after } => {
                self.track.mark_faulted();
                Some(status_response(proto, &self.cfg.name, *status, body.as_ref(), *retry_after))
            }
            Fault::Hang => {
                // Left unmarked on purpose: when the client gives up, the
                // abandoned request shows up as cancelled in the stats.
                std::future::pending::<()>().await;
                None
            }
            Fault::Refuse => Some(self.kill_connection().await),
            Fault::DropAfterChunks(_) if !stream => Some(self.kill_connection().await),
            Fault::Malformed if !stream => {
                self.track.mark_faulted();
                Some(malformed_body())
            }
            Fault::DropAfterChunks(_) | Fault::Malformed => None,
            Fault::Endless(status) => {
                self.track.mark_faulted();
                Some(endless_body(*status))
            }
        }
    }

    /// Closes this request's connection without answering.
    async fn kill_connection(&self) -> Response {
        self.track.mark_faulted();
        match &self.conn {
            Some(conn) => {
                conn.kill();
                // The connection task drops this future along with the
                // connection; waiting here keeps any response from being sent.
                std::future::pending::<Response>().await
            }
            None => (StatusCode::INTERNAL_SERVER_ERROR, "connection control missing").into_response(),
        }
    }
}

/// The response for a [`Fault::Status`].
fn status_response(proto: Proto, host: &str, status: u16, body: Option<&Value>, retry_after: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match body {
        Some(Value::String(text)) => {
            let mut r = Response::new(Body::from(text.clone()));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            r
        }
        Some(value) => axum::Json(value.clone()).into_response(),
        // Gemini says how long to wait in the body's `RetryInfo`, with no `Retry-After` header.
        None if proto == Proto::Gemini => {
            let message = format!("mock {host}: injected fault (HTTP {status})");
            return crate::gemini::error_with_retry(code, &message, retry_after);
        }
        None => proto.error(code, &format!("mock {host}: injected fault (HTTP {status})")),
    };
    *resp.status_mut() = code;
    if let Some(secs) = retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// `status` with a chunked body that never ends: `{"error":{"message":"` and then `x` forever.
fn endless_body(status: u16) -> Response {
    let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
    let head = futures_util::stream::once(async {
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"error\":{\"message\":\""))
    });
    let rest = futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
    let mut resp = Response::new(Body::from_stream(futures_util::StreamExt::chain(head, rest)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A 200 whose JSON body is cut off mid-object.
fn malformed_body() -> Response {
    let mut resp = Response::new(Body::from(r#"{"model": "mock", "message": {"role": "assist"#));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_json_round_trip() {
        for (text, fault) in [
            (r#""none""#, Fault::None),
            ("null", Fault::None),
            (r#""hang""#, Fault::Hang),
            (r#""refuse""#, Fault::Refuse),
            (r#""malformed""#, Fault::Malformed),
            (r#"{"drop_after_chunks":2}"#, Fault::DropAfterChunks(2)),
            (r#"{"endless":500}"#, Fault::Endless(500)),
            (r#"{"status":503}"#, Fault::status(503)),
            (
                r#"{"status":429,"body":"slow down","retry_after":3}"#,
                Fault::Status { status: 429, body: Some(json!("slow down")), retry_after: Some(3) },
            ),
        ] {
            let parsed: Fault = serde_json::from_str(text).unwrap();
            assert_eq!(parsed, fault, "{text}");
            let back: Fault = serde_json::from_value(serde_json::to_value(&parsed).unwrap()).unwrap();
            assert_eq!(back, fault);
        }
    }

    #[test]
    fn fault_json_errors_are_helpful() {
        for bad in [r#""explode""#, r#"{"status":"x"}"#, r#"{"status":101}"#, r#"{"status":500,"bodyy":1}"#, "3"] {
            let err = serde_json::from_str::<Fault>(bad).unwrap_err().to_string();
            assert!(err.contains("expected"), "{bad}: {err}");
        }
    }
}
