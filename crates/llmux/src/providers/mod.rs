//! Engine adapters: one [`Provider`] implementation per engine family, one folder each.
//!
//! A provider is a pure translator between llmux's canonical OpenAI form and an engine's wire format; it never
//! does I/O. The executor sends what [`Provider::build_request`] returns and feeds what comes back through
//! [`Provider::convert_response`] or a [`StreamConverter`]. Which LiteLLM prefix maps to which adapter, default
//! base URL and key variables is data, kept in [`ENGINES`].

pub mod ollama;
pub mod openai;

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};

use crate::config::{Deployment, EngineTarget};
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
    /// The client's own request when it spoke an engine family's native API: an engine of that family gets it
    /// as sent instead of a translation of `body`.
    pub native: Option<Native<'a>>,
}

/// A client request in an engine family's own API (today Ollama's `/api/*`), kept for engines that speak it.
#[derive(Debug, Clone, Copy)]
pub struct Native<'a> {
    /// The engine route it is a request for.
    pub endpoint: Endpoint,
    /// The body as the client sent it.
    pub body: &'a [u8],
    /// The model name the client sent (its answer repeats it).
    pub model: &'a str,
}

/// Marks a response whose body is the engine's own answer to a [`Native`] request, already in the client's
/// protocol: the edge passes it on without translating.
#[derive(Debug, Clone, Copy)]
pub struct NativeAnswer;

/// An HTTP `POST` for an engine; the executor adds transport concerns (timeouts, pooling).
#[derive(Debug)]
pub struct UpstreamRequest {
    /// Absolute URI.
    pub uri: Uri,
    /// Its headers (auth, content type).
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl UpstreamRequest {
    /// The request to send.
    pub fn into_http(self) -> http::Request<http_body_util::Full<Bytes>> {
        let mut request = http::Request::new(http_body_util::Full::new(self.body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.uri;
        *request.headers_mut() = self.headers;
        request
    }
}

/// Translates between OpenAI requests and one engine family's protocol.
pub trait Provider: Send + Sync + 'static {
    /// Builds the engine request for `call`.
    fn build_request(&self, call: &Call<'_>) -> Result<UpstreamRequest, Error>;

    /// Converts a complete 2xx engine body into the OpenAI response body for `call.op`.
    fn convert_response(&self, call: &Call<'_>, body: Bytes) -> Result<Converted, Error>;

    /// Whether a whole answer goes to the client exactly as the engine sent it ([`Provider::convert_response`]
    /// would return it unchanged): then it is passed through as it arrives instead of being read whole first.
    fn answer_unchanged(&self, _call: &Call<'_>) -> bool {
        false
    }

    /// A converter for a streamed answer, or `None` when the engine's stream is forwarded byte for byte.
    fn stream_converter(&self, call: &Call<'_>) -> Option<Box<dyn StreamConverter>>;

    /// Whether this attempt sends the client's [`Native`] request as is (and answers in the engine's own shape).
    fn native(&self, _call: &Call<'_>) -> bool {
        false
    }

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
    /// The tokens (prompt and completion) the engine reported using for this answer, when it says: what the
    /// minute's `tpm` usage counts instead of the prompt estimate, and the request's record keeps.
    pub usage: Option<crate::observe::Tokens>,
}

impl From<Bytes> for Converted {
    fn from(body: Bytes) -> Self {
        Converted { body, load_duration: None, usage: None }
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
    /// The tokens (prompt and completion) the engine reported for this answer, once its last event was fed;
    /// `None` when it does not say.
    fn usage(&self) -> Option<crate::observe::Tokens> {
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

/// An engine route, relative to a deployment's `api_base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// OpenAI's route for the operation (`/chat/completions`, `/completions`, `/embeddings`).
    OpenAi(Operation),
    /// Ollama's `/api/chat`.
    OllamaChat,
    /// Ollama's `/api/generate`.
    OllamaGenerate,
    /// Ollama's `/api/embed`.
    OllamaEmbed,
    /// Ollama's older `/api/embeddings` (one prompt).
    OllamaEmbeddings,
}

impl Endpoint {
    const COUNT: usize = 7;

    /// The route appended to `api_base`.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::OpenAi(op) => op.route(),
            Endpoint::OllamaChat => "/api/chat",
            Endpoint::OllamaGenerate => "/api/generate",
            Endpoint::OllamaEmbed => "/api/embed",
            Endpoint::OllamaEmbeddings => "/api/embeddings",
        }
    }

    /// Its slot in an engine's URI cache.
    fn slot(self) -> usize {
        match self {
            Endpoint::OpenAi(op) => op as usize,
            Endpoint::OllamaChat => 3,
            Endpoint::OllamaGenerate => 4,
            Endpoint::OllamaEmbed => 5,
            Endpoint::OllamaEmbeddings => 6,
        }
    }
}

/// An engine target's request URIs and `Authorization` value, made once instead of on every request (a URI
/// parse and two string builds each time, measured as a few percent of llmux's own CPU per request).
#[derive(Debug, Clone, Default)]
pub struct Wire(Box<WireCells>);

#[derive(Debug, Clone, Default)]
struct WireCells {
    uris: [OnceLock<Uri>; Endpoint::COUNT],
    /// `Basic <user:password>` from the URL, else `Bearer <api_key>` (marked sensitive), `None` without either;
    /// `Err` when the key cannot be a header.
    bearer: OnceLock<Result<Option<HeaderValue>, ()>>,
    /// `Host` for a plain-HTTP engine (which the client would otherwise format on every request).
    host: OnceLock<Option<HeaderValue>>,
}

impl EngineTarget {
    /// The absolute URI of `endpoint` on this engine.
    pub fn uri(&self, endpoint: Endpoint) -> Result<Uri, Error> {
        let cell = &self.wire.0.uris[endpoint.slot()];
        if let Some(uri) = cell.get() {
            return Ok(uri.clone());
        }
        let url = join_url(&self.api_base, endpoint.path());
        let uri = url
            .parse::<Uri>()
            .map_err(|e| Error::Internal(format!("engine URL {:?}: {e}", crate::redact::url(&url))))?;
        Ok(cell.get_or_init(|| uri).clone())
    }

    /// The headers of every request to this engine: JSON content, with a key `Authorization: Bearer` — or
    /// `Basic` when `api_base` carries `user:password@`, which wins over the key as in LiteLLM's HTTP client —
    /// and `litellm_params.extra_headers` (which may set `Authorization` themselves).
    pub fn request_headers(&self) -> Result<HeaderMap, Error> {
        let bearer = self.wire.0.bearer.get_or_init(|| {
            let value = match (&self.basic_auth, self.api_key.as_ref().filter(|k| !k.expose().is_empty())) {
                (Some(user), _) => {
                    use base64::Engine as _;
                    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user.expose()))
                }
                (None, Some(key)) => format!("Bearer {}", key.expose()),
                (None, None) => return Ok(None),
            };
            HeaderValue::from_str(&value).map_err(|_| ()).map(|mut v| {
                v.set_sensitive(true);
                Some(v)
            })
        });
        let bearer = bearer
            .as_ref()
            .map_err(|()| Error::Internal("the configured api_key is not a valid header value".to_owned()))?;
        let host = self.wire.0.host.get_or_init(|| plain_http_host(&self.api_base));
        let mut headers = HeaderMap::with_capacity(3 + self.extra_headers.len());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(value) = bearer {
            headers.insert(AUTHORIZATION, value.clone());
        }
        if let Some(value) = host {
            headers.insert(HOST, value.clone());
        }
        // Set last, so an `Authorization` written there wins; the body's type and the host stay llmux's.
        for (name, value) in self.extra_headers.iter().filter(|(n, _)| *n != CONTENT_TYPE && *n != HOST) {
            headers.insert(name.clone(), value.clone());
        }
        Ok(headers)
    }
}

/// The `Host` header for an `http://` base: its host, and its port unless 80. `None` for `https://` bases,
/// where the client decides (HTTP/2 carries the authority itself).
fn plain_http_host(api_base: &str) -> Option<HeaderValue> {
    let uri = api_base.parse::<Uri>().ok()?;
    if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
        return None;
    }
    let host = uri.host()?;
    match uri.port_u16() {
        Some(port) if port != 80 => HeaderValue::from_str(&format!("{host}:{port}")).ok(),
        _ => HeaderValue::from_str(host).ok(),
    }
}

/// Joins a base URL and a route, as LiteLLM's `ensure_api_route`: a base that already ends with the route is
/// used as is. The route goes onto the path, before a query the base carries (`…/v1?api-version=…` becomes
/// `…/v1/chat/completions?api-version=…`).
pub fn join_url(base: &str, route: &str) -> String {
    let (base, query) = match base.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (base, None),
    };
    let base = base.trim_end_matches('/');
    let mut url = if base.ends_with(route) { base.to_owned() } else { format!("{base}{route}") };
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(query);
    }
    url
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_for_plain_http_engines_only() {
        let host = |base: &str| plain_http_host(base).map(|v| v.to_str().unwrap_or("").to_owned());
        assert_eq!(host("http://gpu-box:11434").as_deref(), Some("gpu-box:11434"));
        assert_eq!(host("http://gpu-box/v1").as_deref(), Some("gpu-box"));
        assert_eq!(host("http://gpu-box:80/v1").as_deref(), Some("gpu-box"));
        assert_eq!(host("http://[::1]:8080/v1").as_deref(), Some("[::1]:8080"));
        assert_eq!(host("https://api.openai.com/v1"), None);
    }

    #[test]
    fn routes_go_before_the_query() {
        assert_eq!(
            join_url("http://e/v1?api-version=2&k=x", "/chat/completions"),
            "http://e/v1/chat/completions?api-version=2&k=x"
        );
        assert_eq!(join_url("http://e/v1/", "/embeddings"), "http://e/v1/embeddings");
        assert_eq!(join_url("http://e/api/chat?x=1", "/api/chat"), "http://e/api/chat?x=1");
    }
}
