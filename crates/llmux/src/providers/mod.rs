//! Engine adapters: one [`Provider`] implementation per engine family, one folder each.
//!
//! A provider is a pure translator between llmux's canonical OpenAI form and an engine's wire format; it never
//! does I/O. The executor sends what [`Provider::build_request`] returns and feeds what comes back through
//! [`Provider::convert_response`] or a [`StreamConverter`]. Which LiteLLM prefix maps to which adapter, default
//! base URL and key variables is data, kept in [`ENGINES`] ([`engines`]); an engine's routes, URIs and request
//! headers are in [`endpoint`]; what differs between the engines on a host (how it is probed, whether it tells
//! what is loaded, whether it preloads) is data too, in [`profile`]. This module holds the trait and the types
//! every provider shares.

pub mod anthropic;
pub mod azure;
mod endpoint;
mod engines;
pub mod gemini;
pub mod ollama;
pub mod openai;
pub mod prices;
pub mod profile;
pub mod ratelimit;
pub mod sse;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode, Uri};

use crate::config::Deployment;
use crate::error::Error;
use crate::protocol::openai::{Operation, RequestHead};

pub use endpoint::{join_url, Endpoint, Wire};
pub use engines::{engine, Adapter, EngineSpec, ENGINES};

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
