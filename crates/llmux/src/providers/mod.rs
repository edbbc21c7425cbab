//! Engine adapters: one [`Provider`] implementation per engine family, one folder each.
//!
//! A provider is a pure translator between llmux's canonical OpenAI form and an engine's wire format; it never
//! does I/O. The executor sends what [`Provider::build_request`] returns and feeds what comes back through
//! [`Provider::convert_response`] or a [`StreamConverter`]. Which LiteLLM prefix maps to which adapter, default
//! base URL and key variables is data, kept in [`ENGINES`]; what differs between the engines on a host (how it is
//! probed, whether it tells what is loaded, whether it preloads) is data too, in [`profile`].

pub mod anthropic;
pub mod azure;
pub mod gemini;
pub mod ollama;
pub mod openai;
pub mod prices;
pub mod profile;
pub mod ratelimit;
pub mod sse;

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};

use crate::config::{Deployment, EngineTarget};
use crate::error::Error;
use crate::protocol::openai::{Operation, RequestHead};
use profile::EngineProfile;

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

impl<'a> Call<'a> {
    /// The client's native request when it is in the API `family` speaks (an Ollama request is nothing to an
    /// Anthropic engine, and the other way round).
    pub fn native_to(&self, family: fn(Endpoint) -> bool) -> Option<Native<'a>> {
        self.native.filter(|n| family(n.endpoint))
    }
}

/// A client request in an engine family's own API (Ollama's `/api/*`, Anthropic's `/v1/messages`), kept for
/// engines that speak it.
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
    /// How long reading the prompt and writing the answer took the engine, when it says (what speeds are learned
    /// from).
    pub timings: Option<crate::router::speed::Timings>,
}

impl From<Bytes> for Converted {
    fn from(body: Bytes) -> Self {
        Converted { body, load_duration: None, usage: None, timings: None }
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
    /// How long reading the prompt and writing the answer took the engine, once its last event was fed; `None`
    /// when it does not say.
    fn timings(&self) -> Option<crate::router::speed::Timings> {
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
    /// Any engine that speaks OpenAI's API (vLLM, llama.cpp, LM Studio, llamafile, OpenAI and the
    /// OpenAI-compatible clouds).
    OpenAiCompatible,
    /// Anthropic's Messages API (`/v1/messages`).
    Anthropic,
    /// Azure OpenAI: OpenAI's API under a deployment path, the key as `api-key`.
    Azure,
    /// Google's Gemini API (AI Studio): `models/{model}:generateContent`, the key as `x-goog-api-key`.
    Gemini,
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
    /// Environment variables read, in order, for the base URL when the deployment sets none.
    pub api_base_env: &'static [&'static str],
    /// Environment variables read, in order, for the key when the deployment sets none.
    pub api_key_env: &'static [&'static str],
    /// Key sent when neither the deployment nor the environment gives one (some engines require a header).
    pub default_api_key: Option<&'static str>,
    /// A hosted API rather than a machine of the lab: never probed in the background (a probe would cost
    /// requests against the account's rate limit and tell nothing about residency).
    pub cloud: bool,
    /// The engine on the hosts of its deployments; `None` for an API with no model list llmux reads.
    pub profile: Option<&'static EngineProfile>,
}

/// A local engine family's row.
const fn local(
    prefix: &'static str,
    adapter: Adapter,
    default_api_base: Option<&'static str>,
    api_base_env: &'static [&'static str],
    api_key_env: &'static [&'static str],
    default_api_key: Option<&'static str>,
    profile: &'static EngineProfile,
) -> EngineSpec {
    EngineSpec {
        prefix,
        adapter,
        default_api_base,
        api_base_env,
        api_key_env,
        default_api_key,
        cloud: false,
        profile: Some(profile),
    }
}

/// A hosted provider's row: its public endpoint and the variables LiteLLM reads. At another `api_base` (a
/// gateway, a self-hosted server) an OpenAI-compatible one is probed like any OpenAI-compatible engine.
const fn cloud(
    prefix: &'static str,
    adapter: Adapter,
    default_api_base: &'static str,
    api_base_env: &'static [&'static str],
    api_key_env: &'static [&'static str],
) -> EngineSpec {
    EngineSpec {
        prefix,
        adapter,
        default_api_base: Some(default_api_base),
        api_base_env,
        api_key_env,
        default_api_key: None,
        cloud: true,
        profile: match adapter {
            Adapter::OpenAiCompatible => Some(&profile::OPENAI_COMPATIBLE),
            _ => None,
        },
    }
}

/// The engines llmux knows, by LiteLLM prefix. The cloud rows carry LiteLLM's own defaults (base URL, then the
/// variables it reads in order), from `litellm/litellm_core_utils/get_llm_provider_logic.py`
/// (`_get_openai_compatible_provider_info`) and each provider's `litellm/llms/<provider>/chat/transformation.py`
/// (`BerriAI/litellm`, main of 2026-12), so a LiteLLM config that names only `model:` and a key variable works
/// unchanged. `api_base` in the config always wins.
pub const ENGINES: &[EngineSpec] = &[
    local(
        "ollama_chat",
        Adapter::Ollama { chat: true },
        Some("http://localhost:11434"),
        &["OLLAMA_API_BASE"],
        &["OLLAMA_API_KEY"],
        None,
        &profile::OLLAMA,
    ),
    local(
        "ollama",
        Adapter::Ollama { chat: false },
        Some("http://localhost:11434"),
        &["OLLAMA_API_BASE"],
        &["OLLAMA_API_KEY"],
        None,
        &profile::OLLAMA,
    ),
    local(
        "hosted_vllm",
        Adapter::OpenAiCompatible,
        None,
        &["HOSTED_VLLM_API_BASE"],
        &["HOSTED_VLLM_API_KEY"],
        Some("fake-api-key"),
        &profile::OPENAI_COMPATIBLE,
    ),
    local(
        "lm_studio",
        Adapter::OpenAiCompatible,
        None,
        &["LM_STUDIO_API_BASE"],
        &["LM_STUDIO_API_KEY"],
        Some("fake-api-key"),
        &profile::LM_STUDIO,
    ),
    local(
        "llamafile",
        Adapter::OpenAiCompatible,
        Some("http://127.0.0.1:8080/v1"),
        &["LLAMAFILE_API_BASE"],
        &["LLAMAFILE_API_KEY"],
        None,
        &profile::OPENAI_COMPATIBLE,
    ),
    cloud(
        "anthropic",
        Adapter::Anthropic,
        "https://api.anthropic.com",
        &["ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"],
        &["ANTHROPIC_API_KEY"],
    ),
    // No default endpoint: every Azure resource has its own (`api_base` or `AZURE_API_BASE`).
    EngineSpec {
        prefix: "azure",
        adapter: Adapter::Azure,
        default_api_base: None,
        api_base_env: &["AZURE_API_BASE"],
        api_key_env: &["AZURE_OPENAI_API_KEY", "AZURE_API_KEY"],
        default_api_key: None,
        cloud: true,
        profile: None,
    },
    // LiteLLM's `litellm/llms/gemini/common_utils.py` (`GeminiModelInfo.get_api_base`, `get_api_key_from_env`).
    cloud(
        "gemini",
        Adapter::Gemini,
        "https://generativelanguage.googleapis.com",
        &["GEMINI_API_BASE"],
        &["GOOGLE_API_KEY", "GEMINI_API_KEY"],
    ),
    cloud(
        "openai",
        Adapter::OpenAiCompatible,
        "https://api.openai.com/v1",
        &["OPENAI_BASE_URL", "OPENAI_API_BASE"],
        &["OPENAI_API_KEY"],
    ),
    cloud(
        "openrouter",
        Adapter::OpenAiCompatible,
        "https://openrouter.ai/api/v1",
        &["OPENROUTER_API_BASE"],
        &["OPENROUTER_API_KEY", "OR_API_KEY"],
    ),
    cloud("groq", Adapter::OpenAiCompatible, "https://api.groq.com/openai/v1", &["GROQ_API_BASE"], &["GROQ_API_KEY"]),
    cloud(
        "deepseek",
        Adapter::OpenAiCompatible,
        "https://api.deepseek.com/beta",
        &["DEEPSEEK_API_BASE"],
        &["DEEPSEEK_API_KEY"],
    ),
    cloud(
        "mistral",
        Adapter::OpenAiCompatible,
        "https://api.mistral.ai/v1",
        &["MISTRAL_AZURE_API_BASE"],
        &["MISTRAL_AZURE_API_KEY", "MISTRAL_API_KEY"],
    ),
    cloud(
        "together_ai",
        Adapter::OpenAiCompatible,
        "https://api.together.xyz/v1",
        &["TOGETHER_AI_API_BASE"],
        &["TOGETHER_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHERAI_API_KEY", "TOGETHER_AI_TOKEN"],
    ),
    cloud(
        "fireworks_ai",
        Adapter::OpenAiCompatible,
        "https://api.fireworks.ai/inference/v1",
        &["FIREWORKS_API_BASE"],
        &["FIREWORKS_API_KEY", "FIREWORKS_AI_API_KEY", "FIREWORKSAI_API_KEY", "FIREWORKS_AI_TOKEN"],
    ),
    cloud("xai", Adapter::OpenAiCompatible, "https://api.x.ai/v1", &["XAI_API_BASE"], &["XAI_API_KEY"]),
    cloud(
        "perplexity",
        Adapter::OpenAiCompatible,
        "https://api.perplexity.ai",
        &["PERPLEXITY_API_BASE"],
        &["PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"],
    ),
    cloud(
        "cerebras",
        Adapter::OpenAiCompatible,
        "https://api.cerebras.ai/v1",
        &["CEREBRAS_API_BASE"],
        &["CEREBRAS_API_KEY"],
    ),
    cloud(
        "nvidia_nim",
        Adapter::OpenAiCompatible,
        "https://integrate.api.nvidia.com/v1",
        &["NVIDIA_NIM_API_BASE"],
        &["NVIDIA_NIM_API_KEY"],
    ),
    cloud(
        "deepinfra",
        Adapter::OpenAiCompatible,
        "https://api.deepinfra.com/v1/openai",
        &["DEEPINFRA_API_BASE"],
        &["DEEPINFRA_API_KEY"],
    ),
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
            Adapter::Anthropic => &anthropic::Anthropic,
            Adapter::Azure => &azure::Azure,
            Adapter::Gemini => &gemini::Gemini,
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
    /// Anthropic's `/v1/messages`.
    AnthropicMessages,
}

impl Endpoint {
    const COUNT: usize = 8;

    /// Whether this is a route of Ollama's API.
    pub fn is_ollama(self) -> bool {
        matches!(
            self,
            Endpoint::OllamaChat | Endpoint::OllamaGenerate | Endpoint::OllamaEmbed | Endpoint::OllamaEmbeddings
        )
    }

    /// Whether this is a route of Anthropic's API.
    pub fn is_anthropic(self) -> bool {
        self == Endpoint::AnthropicMessages
    }

    /// The route appended to `api_base`.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::OpenAi(op) => op.route(),
            Endpoint::OllamaChat => "/api/chat",
            Endpoint::OllamaGenerate => "/api/generate",
            Endpoint::OllamaEmbed => "/api/embed",
            Endpoint::OllamaEmbeddings => "/api/embeddings",
            Endpoint::AnthropicMessages => "/v1/messages",
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
            Endpoint::AnthropicMessages => 7,
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
/// `{"error":"…"}`, `{"message":"…"}` or the text; `retry-after` (or `retry-after-ms`) kept.
pub fn upstream_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
    let retry_after = ratelimit::retry_after(headers, std::time::SystemTime::now());
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
    use crate::protocol::openai::Operation;

    #[test]
    fn host_header_for_plain_http_engines_only() {
        let host = |base: &str| plain_http_host(base).map(|v| v.to_str().unwrap_or("").to_owned());
        assert_eq!(host("http://gpu-box:11434").as_deref(), Some("gpu-box:11434"));
        assert_eq!(host("http://gpu-box/v1").as_deref(), Some("gpu-box"));
        assert_eq!(host("http://gpu-box:80/v1").as_deref(), Some("gpu-box"));
        assert_eq!(host("http://[::1]:8080/v1").as_deref(), Some("[::1]:8080"));
        assert_eq!(host("https://api.openai.com/v1"), None);
    }

    /// A LiteLLM config naming only `model:` and a key variable reaches each provider's public endpoint with that
    /// key; `api_base` overrides; the public endpoints are not probed, a local one is.
    #[test]
    fn cloud_presets_fill_in_base_url_and_key() {
        let yaml = "model_list:
  - {model_name: a, litellm_params: {model: groq/llama-3.3-70b-versatile}}
  - {model_name: b, litellm_params: {model: together_ai/meta-llama/Llama-3-70b, api_key: sk-inline}}
  - {model_name: c, litellm_params: {model: anthropic/claude-sonnet-4-5}}
  - {model_name: d, litellm_params: {model: mistral/mistral-large-latest, api_base: 'http://127.0.0.1:9/v1'}}
  - {model_name: e, litellm_params: {model: fireworks_ai/accounts/fireworks/models/x}}
  - {model_name: f, litellm_params: {model: gemini/gemini-2.5-flash}}
";
        let env = |name: &str| match name {
            "GROQ_API_KEY" => Some("gsk-from-env".to_owned()),
            "TOGETHER_API_KEY" => Some("not-used".to_owned()),
            "ANTHROPIC_API_KEY" => Some("sk-ant-env".to_owned()),
            "MISTRAL_API_KEY" => Some("mistral-env".to_owned()),
            "FIREWORKS_AI_API_KEY" => Some("fw-second-variable".to_owned()),
            "GEMINI_API_KEY" => Some("gemini-env".to_owned()),
            _ => None,
        };
        let (config, _) = crate::config::load_str(yaml, &env).unwrap();
        let engine = |i: usize| config.deployments[i].engine().unwrap();
        let key = |i: usize| engine(i).api_key.as_ref().map(|k| k.expose().to_owned());
        assert_eq!(
            engine(0).uri(Endpoint::OpenAi(Operation::Chat)).unwrap(),
            "https://api.groq.com/openai/v1/chat/completions"
        );
        assert_eq!(key(0).as_deref(), Some("gsk-from-env"));
        assert_eq!(engine(1).api_base, "https://api.together.xyz/v1");
        assert_eq!(engine(1).upstream_model, "meta-llama/Llama-3-70b");
        assert_eq!(key(1).as_deref(), Some("sk-inline"), "the config's key wins over the variable");
        assert_eq!(engine(2).uri(Endpoint::AnthropicMessages).unwrap(), "https://api.anthropic.com/v1/messages");
        assert_eq!(engine(2).adapter(), Adapter::Anthropic);
        assert_eq!(engine(3).api_base, "http://127.0.0.1:9/v1");
        assert_eq!(key(3).as_deref(), Some("mistral-env"));
        assert_eq!(key(4).as_deref(), Some("fw-second-variable"), "LiteLLM's later variables are read too");
        assert_eq!((engine(5).adapter(), key(5).as_deref()), (Adapter::Gemini, Some("gemini-env")));
        assert_eq!(engine(5).api_base, "https://generativelanguage.googleapis.com");
        let probed = |i: usize| !config.hosts[config.deployments[i].host.unwrap()].probe_disabled;
        assert!(!probed(0) && !probed(2) && !probed(5), "public endpoints are not probed");
        assert!(probed(3), "an OpenAI-compatible api_base of one's own is");
        for spec in ENGINES.iter().filter(|e| e.cloud) {
            // Azure has none: every resource has its own endpoint.
            let base = spec.default_api_base.unwrap_or(if spec.prefix == "azure" { "https://" } else { "" });
            assert!(base.starts_with("https://"), "{}: {base}", spec.prefix);
            assert!(!spec.api_key_env.is_empty(), "{}", spec.prefix);
        }
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
