//! Engine adapters: one [`Provider`] implementation per engine family, one folder each.
//!
//! A provider is a pure translator between llmux's canonical OpenAI form and an engine's wire format; it never
//! does I/O. The executor sends what [`Provider::build_request`] returns and feeds what comes back through
//! [`Provider::convert_response`] or a [`StreamConverter`]. Which LiteLLM prefix maps to which adapter, default
//! base URL and key variables is data, kept in [`ENGINES`].

pub mod ollama;
pub mod openai;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};

use crate::config::Deployment;
use crate::error::Error;
use crate::protocol::openai::{Operation, RequestHead};

/// Everything a provider needs to translate one attempt.
pub struct Call<'a> {
    /// What the client asked for.
    pub op: Operation,
    /// The deployment chosen for this attempt.
    pub deployment: &'a Deployment,
    /// The model name to ask the engine for (the configured one, or a wildcard's filled in).
    pub model: &'a str,
    /// The client's body as received.
    pub body: &'a [u8],
    /// The head read from `body`.
    pub head: &'a RequestHead<'a>,
}

/// An HTTP request for an engine; the executor adds transport concerns (timeouts, pooling).
#[derive(Debug)]
pub struct UpstreamRequest {
    /// Absolute URL.
    pub url: String,
    /// Extra headers (auth, content type).
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// Translates between OpenAI requests and one engine family's protocol.
pub trait Provider: Send + Sync + 'static {
    /// Builds the engine request for `call`.
    fn build_request(&self, call: &Call<'_>) -> Result<UpstreamRequest, Error>;

    /// Converts a complete 2xx engine body into the OpenAI response body for `call.op`.
    fn convert_response(&self, call: &Call<'_>, body: Bytes) -> Result<Converted, Error>;

    /// A converter for a streamed answer, or `None` when the engine's stream is forwarded byte for byte.
    fn stream_converter(&self, call: &Call<'_>) -> Option<Box<dyn StreamConverter>>;

    /// Converts an engine error status and body into the client's error, keeping status and message.
    fn convert_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        upstream_error(status, headers, body)
    }
}

/// A complete engine answer in OpenAI's form, with what the engine said about it on the way.
#[derive(Debug)]
pub struct Converted {
    /// The OpenAI response body.
    pub body: Bytes,
    /// How long the engine spent loading the model for this answer (Ollama's `load_duration`), when it says.
    pub load_duration: Option<std::time::Duration>,
}

impl From<Bytes> for Converted {
    fn from(body: Bytes) -> Self {
        Converted { body, load_duration: None }
    }
}

/// Turns an engine's streamed bytes into OpenAI SSE events as they arrive.
pub trait StreamConverter: Send {
    /// Consumes one network chunk, appending zero or more complete SSE events to `out`.
    fn feed(&mut self, chunk: &[u8], out: &mut BytesMut) -> Result<(), Error>;
    /// The engine's stream ended cleanly: flush what is pending and append the closing events.
    fn finish(&mut self, out: &mut BytesMut) -> Result<(), Error>;
    /// How long the engine said it spent loading the model for this answer, once its last event was fed
    /// (Ollama's `load_duration`); `None` when it does not say.
    fn load_duration(&self) -> Option<std::time::Duration> {
        None
    }
}

/// The engine families llmux can talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// Ollama's native API (`/api/chat`, `/api/generate`, `/api/embed`).
    Ollama {
        /// `ollama_chat/` (true) uses `/api/chat`; `ollama/` uses `/api/generate`.
        chat: bool,
    },
    /// Any engine that speaks OpenAI's API (vLLM, llama.cpp, LM Studio, llamafile, OpenAI, …).
    OpenAiCompatible,
}

/// One row of the engine table: a LiteLLM model prefix and what it means.
#[derive(Debug)]
pub struct EngineSpec {
    /// The prefix before the first `/` in `litellm_params.model`.
    pub prefix: &'static str,
    /// The adapter that speaks to it.
    pub adapter: Adapter,
    /// Base URL when the deployment sets none and no variable below is set.
    pub default_api_base: Option<&'static str>,
    /// Environment variable read for the base URL when the deployment sets none.
    pub api_base_env: Option<&'static str>,
    /// Environment variable read for the key when the deployment sets none.
    pub api_key_env: Option<&'static str>,
    /// Key sent when neither the deployment nor the environment gives one (some engines require a header).
    pub default_api_key: Option<&'static str>,
}

/// The engines llmux knows, by LiteLLM prefix.
pub const ENGINES: &[EngineSpec] = &[
    EngineSpec {
        prefix: "ollama_chat",
        adapter: Adapter::Ollama { chat: true },
        default_api_base: Some("http://localhost:11434"),
        api_base_env: Some("OLLAMA_API_BASE"),
        api_key_env: Some("OLLAMA_API_KEY"),
        default_api_key: None,
    },
    EngineSpec {
        prefix: "ollama",
        adapter: Adapter::Ollama { chat: false },
        default_api_base: Some("http://localhost:11434"),
        api_base_env: Some("OLLAMA_API_BASE"),
        api_key_env: Some("OLLAMA_API_KEY"),
        default_api_key: None,
    },
    EngineSpec {
        prefix: "openai",
        adapter: Adapter::OpenAiCompatible,
        default_api_base: Some("https://api.openai.com/v1"),
        api_base_env: Some("OPENAI_API_BASE"),
        api_key_env: Some("OPENAI_API_KEY"),
        default_api_key: None,
    },
    EngineSpec {
        prefix: "hosted_vllm",
        adapter: Adapter::OpenAiCompatible,
        default_api_base: None,
        api_base_env: Some("HOSTED_VLLM_API_BASE"),
        api_key_env: Some("HOSTED_VLLM_API_KEY"),
        default_api_key: Some("fake-api-key"),
    },
    EngineSpec {
        prefix: "lm_studio",
        adapter: Adapter::OpenAiCompatible,
        default_api_base: None,
        api_base_env: Some("LM_STUDIO_API_BASE"),
        api_key_env: Some("LM_STUDIO_API_KEY"),
        default_api_key: Some("fake-api-key"),
    },
    EngineSpec {
        prefix: "llamafile",
        adapter: Adapter::OpenAiCompatible,
        default_api_base: Some("http://127.0.0.1:8080/v1"),
        api_base_env: Some("LLAMAFILE_API_BASE"),
        api_key_env: Some("LLAMAFILE_API_KEY"),
        default_api_key: None,
    },
    EngineSpec {
        prefix: "openrouter",
        adapter: Adapter::OpenAiCompatible,
        default_api_base: Some("https://openrouter.ai/api/v1"),
        api_base_env: Some("OPENROUTER_API_BASE"),
        api_key_env: Some("OPENROUTER_API_KEY"),
        default_api_key: None,
    },
];

/// Looks up an engine by prefix.
pub fn engine(prefix: &str) -> Option<&'static EngineSpec> {
    ENGINES.iter().find(|e| e.prefix == prefix)
}

impl Adapter {
    /// The provider implementation for this adapter.
    pub fn provider(self) -> &'static dyn Provider {
        match self {
            Adapter::Ollama { chat: true } => &ollama::Ollama { chat: true },
            Adapter::Ollama { chat: false } => &ollama::Ollama { chat: false },
            Adapter::OpenAiCompatible => &openai::OpenAiCompatible,
        }
    }
}

/// Joins a base URL and a route, as LiteLLM's `ensure_api_route`: a base that already ends with the route is
/// used as is.
pub fn join_url(base: &str, route: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with(route) {
        base.to_owned()
    } else {
        format!("{base}{route}")
    }
}

/// The default mapping of an engine error: status kept; the message taken from `{"error":{"message"}}`,
/// `{"error":"…"}`, `{"message":"…"}` or the text; `retry-after` kept.
pub fn upstream_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v.ceil() as u64);
    let (message, kind) = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(json) => {
            let err = json.get("error").unwrap_or(&json);
            let message = err
                .get("message")
                .and_then(|m| m.as_str())
                .or_else(|| err.as_str())
                .or_else(|| json.get("detail").and_then(|d| d.as_str()))
                .map(str::to_owned)
                .unwrap_or_else(|| json.to_string());
            let kind = err.get("type").and_then(|t| t.as_str()).map(str::to_owned);
            (message, kind)
        }
        Err(_) => (String::from_utf8_lossy(body).trim().to_owned(), None),
    };
    let message =
        if message.is_empty() { format!("Upstream engine answered {status}") } else { crate::redact::redact(&message) };
    Error::Upstream { status, message, kind, retry_after }
}

/// Appends one SSE `data:` event carrying `json` to `out`.
pub fn push_sse(out: &mut BytesMut, json: &impl serde::Serialize) -> Result<(), Error> {
    out.extend_from_slice(b"data: ");
    serde_json::to_writer(bytes::BufMut::writer(&mut *out), json)
        .map_err(|e| Error::Internal(format!("serialising a chunk: {e}")))?;
    out.extend_from_slice(b"\n\n");
    Ok(())
}

/// The closing event of every OpenAI stream.
pub const SSE_DONE: &[u8] = b"data: [DONE]\n\n";
