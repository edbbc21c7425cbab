//! The one error type of the request path, and its mapping to an HTTP status and a body in each client
//! protocol's shape ([`Dialect`]).
//!
//! Every failure a client can see is a variant here; [`Error::response_in`] is the only place that turns one
//! into bytes on the wire, so status codes and body shapes stay consistent across endpoints and protocols.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

/// A failure on the request path, mapped to one status and one OpenAI-style error body.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The request body or a parameter is invalid (400).
    #[error("{message}")]
    InvalidRequest {
        /// Human-readable explanation.
        message: String,
        /// The offending parameter, when known.
        param: Option<String>,
        /// A machine-readable `code` the protocol defines for this case (e.g. the Responses API's
        /// `previous_response_not_found`); otherwise the status, as LiteLLM sends.
        code: Option<&'static str>,
    },
    /// The body exceeds the configured size limit (413).
    #[error("Request body is larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Missing or wrong API key (401). The message never contains the key.
    #[error("{0}")]
    Unauthorized(String),
    /// The requested model is neither a group, an alias nor a deployment id (400, LiteLLM's wording).
    #[error(
        "{route}: Invalid model name passed in model={model}. Call `/v1/models` to view available models for your key."
    )]
    UnknownModel {
        /// The API route the client called, e.g. `/chat/completions`.
        route: String,
        /// The name the client sent.
        model: String,
    },
    /// The model exists but cannot serve this endpoint or feature yet (400 or 501).
    #[error("{message}")]
    Unsupported {
        /// What is not supported, and what to do instead.
        message: String,
        /// 501 when llmux lacks the feature, 400 when the model cannot do it.
        not_implemented: bool,
    },
    /// An upstream engine answered with an error status; status and message are kept.
    #[error("{message}")]
    Upstream {
        /// The engine's status code.
        status: StatusCode,
        /// The engine's message, secrets removed.
        message: String,
        /// The engine's error type when it gave one.
        kind: Option<String>,
        /// Seconds from the engine's `retry-after` header, when present.
        retry_after: Option<u64>,
    },
    /// The engine could not be reached (refused, reset, DNS, TLS) or dropped the connection (502).
    #[error("{0}")]
    Connect(String),
    /// The engine did not answer in time (408, as LiteLLM's `Timeout`).
    #[error("{0}")]
    Timeout(String),
    /// The engine answered 2xx with a body llmux could not understand (502).
    #[error("{0}")]
    BadUpstreamResponse(String),
    /// The prompt fits no deployment's context window (400, LiteLLM's `ContextWindowExceededError`).
    #[error("{0}")]
    ContextWindowExceeded(String),
    /// No deployment can take the request now: all cooling down or over their limits (429, LiteLLM's
    /// `RouterRateLimitError`, whose message text clients grep for).
    #[error("{message}")]
    NoDeployments {
        /// LiteLLM's message.
        message: String,
        /// Every candidate was cooling down (type `all_deployments_in_cooldown`).
        all_cooling_down: bool,
        /// Seconds until a deployment is back, for `retry-after`.
        retry_after: u64,
    },
    /// No such route (404).
    #[error("{0}")]
    NotFound(String),
    /// The route exists for other methods (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A config reload found errors; the running config stays (400). Each line has its YAML path.
    #[error("the config was not reloaded; the running config stays. {}", .0.join("; "))]
    ConfigRejected(Vec<String>),
    /// A bug or an unexpected state inside llmux (500).
    #[error("{0}")]
    Internal(String),
    /// llmux itself is at a limit it keeps to stay up (the memory for buffered engine answers); not the
    /// engine's fault, so it neither cools the deployment down nor fails over (503).
    #[error("{0}")]
    Overloaded(String),
    /// Nothing awake could serve the request and the host that could, woken for it, did not answer in time
    /// (503; the message names the host).
    #[error("{0}")]
    HostAsleep(String),
    /// A virtual key past its `duration` (400, LiteLLM's `expired_key`).
    #[error("{0}")]
    KeyExpired(String),
    /// A virtual key's spend reached its `max_budget` (400, LiteLLM's `budget_exceeded`).
    #[error("{0}")]
    BudgetExceeded(String),
    /// A virtual key's `models` do not include the requested one (401, LiteLLM's `key_model_access_denied`).
    #[error("{0}")]
    ModelDenied(String),
    /// A virtual key is over its rpm, tpm or parallel-request limit (429).
    #[error("{message}")]
    KeyRateLimited {
        /// LiteLLM's message (names the key by its hash, never the key).
        message: String,
        /// Seconds until the minute's counts reset.
        retry_after: u64,
    },
    /// A key route or a virtual key was used while llmux has no key store (400, LiteLLM's `no_db_connection`).
    #[error("No connected db.")]
    NoDatabase,
    /// The request's head is larger than `llmux_settings.server.max_header_kb` (431).
    #[error("Request headers are larger than the limit of {limit} bytes")]
    HeadersTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

impl Error {
    /// A 400 for a bad request parameter.
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        Error::InvalidRequest { message: message.into(), param: param.map(str::to_owned), code: None }
    }

    /// A 400 with a protocol-defined `code`.
    pub fn invalid_with_code(message: impl Into<String>, param: Option<&str>, code: &'static str) -> Self {
        Error::InvalidRequest { message: message.into(), param: param.map(str::to_owned), code: Some(code) }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::InvalidRequest { .. }
            | Error::UnknownModel { .. }
            | Error::ContextWindowExceeded(_)
            | Error::ConfigRejected(_)
            | Error::KeyExpired(_)
            | Error::BudgetExceeded(_)
            | Error::NoDatabase => StatusCode::BAD_REQUEST,
            Error::ModelDenied(_) => StatusCode::UNAUTHORIZED,
            Error::KeyRateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::NoDeployments { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Unsupported { not_implemented: true, .. } => StatusCode::NOT_IMPLEMENTED,
            Error::Unsupported { not_implemented: false, .. } => StatusCode::BAD_REQUEST,
            Error::Upstream { status, .. } => *status,
            Error::Connect(_) | Error::BadUpstreamResponse(_) => StatusCode::BAD_GATEWAY,
            Error::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Overloaded(_) | Error::HostAsleep(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    /// The OpenAI error `type` field.
    pub fn kind(&self) -> &str {
        match self {
            Error::InvalidRequest { .. } | Error::UnknownModel { .. } | Error::BodyTooLarge { .. } => {
                "invalid_request_error"
            }
            Error::Unsupported { .. } => "not_supported_error",
            Error::ContextWindowExceeded(_) => "context_window_exceeded_error",
            Error::NoDeployments { all_cooling_down: true, .. } => "all_deployments_in_cooldown",
            Error::NoDeployments { .. } => "rate_limit_error",
            Error::Unauthorized(_) => "auth_error",
            Error::Upstream { kind: Some(kind), .. } => kind,
            Error::Upstream { status, .. } => upstream_kind(*status),
            Error::Connect(_) => "api_connection_error",
            Error::Timeout(_) => "timeout",
            Error::BadUpstreamResponse(_) => "bad_response_error",
            Error::NotFound(_) => "not_found_error",
            Error::MethodNotAllowed(_) => "invalid_request_error",
            Error::ConfigRejected(_) => "invalid_config",
            Error::Internal(_) => "internal_server_error",
            Error::Overloaded(_) | Error::HostAsleep(_) => "service_unavailable",
            Error::HeadersTooLarge { .. } => "invalid_request_error",
            Error::KeyExpired(_) => "expired_key",
            Error::BudgetExceeded(_) => "budget_exceeded",
            Error::ModelDenied(_) => "key_model_access_denied",
            Error::KeyRateLimited { .. } => "throttling_error",
            Error::NoDatabase => "no_db_connection",
        }
    }

    /// The body `{"error":{"message","type","param","code"}}`; `code` is the status as a string, as LiteLLM sends,
    /// unless the protocol defines one for the case.
    pub fn body(&self) -> ErrorBody<'_> {
        let (param, code) = match self {
            Error::InvalidRequest { param, code, .. } => (param.as_deref(), *code),
            Error::ModelDenied(_) => (Some("model"), None),
            _ => (None, None),
        };
        ErrorBody {
            error: ErrorDetail {
                message: self.to_string(),
                kind: self.kind(),
                param,
                code: code.map_or_else(|| self.status().as_u16().to_string(), str::to_owned),
            },
        }
    }

    /// The SSE event sent when a stream fails after its first byte: `data: {"error":…}` then `[DONE]`.
    pub fn sse_event(&self) -> bytes::Bytes {
        let json = serde_json::to_string(&self.body()).unwrap_or_else(|_| "{}".to_owned());
        bytes::Bytes::from(format!("data: {json}\n\ndata: [DONE]\n\n"))
    }
}

/// Whose error shape a client expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI's `{"error":{"message","type","param","code"}}` (chat completions, Responses, LiteLLM's routes).
    OpenAi,
    /// Anthropic's `{"type":"error","error":{"type","message"}}`.
    Anthropic,
    /// Ollama's `{"error":"…"}`.
    Ollama,
}

impl Error {
    /// The status in `dialect`: Ollama answers 404 for a model it does not have.
    pub fn status_in(&self, dialect: Dialect) -> StatusCode {
        match (self, dialect) {
            (Error::UnknownModel { .. }, Dialect::Ollama) => StatusCode::NOT_FOUND,
            _ => self.status(),
        }
    }

    /// The message in `dialect` (Ollama's own text for an unknown model, which its clients look for).
    pub fn message_in(&self, dialect: Dialect) -> String {
        match (self, dialect) {
            (Error::UnknownModel { model, .. }, Dialect::Ollama) => {
                format!("model \"{model}\" not found, try pulling it first")
            }
            _ => self.to_string(),
        }
    }

    /// Anthropic's error `type` for this error's status.
    pub fn anthropic_kind(&self) -> &'static str {
        match self.status().as_u16() {
            400 | 405 | 422 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            408 | 504 => "timeout_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            _ => "api_error",
        }
    }

    /// The error body in `dialect`.
    pub fn body_in(&self, dialect: Dialect) -> serde_json::Value {
        match dialect {
            Dialect::OpenAi => serde_json::to_value(self.body()).unwrap_or_default(),
            Dialect::Anthropic => serde_json::json!({
                "type": "error",
                "error": {"type": self.anthropic_kind(), "message": self.to_string()},
            }),
            Dialect::Ollama => serde_json::json!({"error": self.message_in(dialect)}),
        }
    }

    /// The whole error response in `dialect`: status, body, `retry-after`, `www-authenticate`.
    pub fn response_in(self, dialect: Dialect) -> Response {
        let status = self.status_in(dialect);
        let body = serde_json::to_vec(&self.body_in(dialect)).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let retry_after = match &self {
            Error::Upstream { retry_after, .. } => *retry_after,
            Error::NoDeployments { retry_after, .. } | Error::KeyRateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        if let Some(secs) = retry_after {
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, value);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

fn upstream_kind(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 404 | 422 => "invalid_request_error",
        401 | 403 => "auth_error",
        408 => "timeout",
        429 => "rate_limit_error",
        _ => "api_error",
    }
}

/// The serialised error envelope.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// The error itself.
    pub error: ErrorDetail<'a>,
}

/// OpenAI's error object.
#[derive(Debug, Serialize)]
pub struct ErrorDetail<'a> {
    /// Human-readable explanation.
    pub message: String,
    /// Error class, e.g. `invalid_request_error`.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// The offending parameter, or null.
    pub param: Option<&'a str>,
    /// The HTTP status as a string.
    pub code: String,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.response_in(Dialect::OpenAi)
    }
}

/// Result alias for the request path.
pub type Result<T, E = Error> = std::result::Result<T, E>;
