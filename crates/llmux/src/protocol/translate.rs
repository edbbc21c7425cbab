//! The seam between a client protocol other than OpenAI chat completions (Anthropic Messages, OpenAI
//! Responses, Ollama's `/api/*`) and the one internal request.
//!
//! A [`Translator`] is made per request: it turns the client's body into an OpenAI request (the canonical form
//! the router, executor and every provider already speak), and turns the OpenAI answer back into the client's
//! shape — whole, or chunk by chunk through a [`ChunkEncoder`]. Translators do no I/O; `server::inbound` drives
//! them. The OpenAI answer types here are lenient (every field optional) because they read what engines sent
//! through the passthrough adapter, not only what llmux wrote.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::Value;

use crate::config::Config;
use crate::error::{Dialect, Error};
use crate::protocol::openai::Operation;

/// The canonical request a translator produced.
#[derive(Debug)]
pub struct Canonical {
    /// The OpenAI operation it asks for.
    pub op: Operation,
    /// An OpenAI request body for `op` (a streamed chat always asks for `stream_options.include_usage`).
    pub body: Vec<u8>,
    /// When the client spoke an engine family's own API (Ollama's): engines of that family get the client's body
    /// as sent, and answer the client directly.
    pub native: Option<NativeRoute>,
}

/// What a client's own request in an engine family's API is: which engine route, for which model name.
#[derive(Debug, Clone)]
pub struct NativeRoute {
    /// The engine route the client's body is a request for.
    pub endpoint: crate::providers::Endpoint,
    /// The model name the client sent (answers repeat it).
    pub model: String,
}

/// What [`Translator::prepare`] returns: a future to await before translating.
pub type Preparation<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

/// One client protocol, for one request.
pub trait Translator: Send + 'static {
    /// Whose error shape this protocol uses.
    fn dialect(&self) -> Dialect;

    /// Work needing I/O before [`Translator::request`], which does none: the Responses API loads a
    /// `previous_response_id` that another replica stored. Nothing by default.
    fn prepare<'a>(&'a self, _body: &'a [u8]) -> Option<Preparation<'a>> {
        None
    }

    /// The client's body as an OpenAI request. Errors are the client's fault (a 400 in its own shape).
    /// `config` tells which model names route (Ollama clients add `:latest` to names without a tag).
    fn request(&mut self, body: &[u8], config: &Config) -> Result<Canonical, Error>;

    /// A whole OpenAI answer (the JSON body of a 2xx) as the client's answer body.
    fn response(&mut self, openai: &[u8]) -> Result<Bytes, Error>;

    /// The encoder for a streamed answer; called once, after [`Translator::request`] asked for a stream.
    fn stream(&mut self) -> Box<dyn ChunkEncoder>;

    /// The content type of a streamed answer.
    fn stream_content_type(&self) -> &'static str {
        "text/event-stream"
    }

    /// Whether a stream may begin before an engine answers, with [`ChunkEncoder::keepalive`] events while a
    /// cold engine loads (SSE protocols can; Ollama's NDJSON has no comment line).
    fn keepalive(&self) -> bool {
        true
    }
}

/// Turns OpenAI stream chunks into one client protocol's stream.
pub trait ChunkEncoder: Send {
    /// One chunk from the engine (already in OpenAI's shape).
    fn chunk(&mut self, chunk: Chunk, out: &mut BytesMut) -> Result<(), Error>;
    /// Nothing has come for a while (a cold engine is loading): something that keeps the connection open.
    fn keepalive(&mut self, _out: &mut BytesMut) {}
    /// The stream failed (before or after its first chunk): the protocol's error event, which ends it.
    fn fail(&mut self, error: &Error, out: &mut BytesMut);
    /// The OpenAI stream ended cleanly (`[DONE]` or its end): the protocol's closing events.
    fn finish(&mut self, out: &mut BytesMut) -> Result<(), Error>;
}

/// One chunk of an OpenAI chat stream, read leniently.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Chunk {
    /// The completion id.
    #[serde(default)]
    pub id: Option<String>,
    /// The model that answered.
    #[serde(default)]
    pub model: Option<String>,
    /// Deltas (empty in a usage-only chunk).
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    /// Usage, in the last chunk.
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// One choice of a [`Chunk`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChunkChoice {
    /// Which choice.
    #[serde(default)]
    pub index: u32,
    /// What is new.
    #[serde(default)]
    pub delta: Delta,
    /// Why the choice ended, on its last chunk.
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// What a chunk adds to the answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Delta {
    /// Answer text.
    #[serde(default)]
    pub content: Option<String>,
    /// Reasoning text (`reasoning_content`, or `reasoning` as some engines name it).
    #[serde(default, alias = "reasoning")]
    pub reasoning_content: Option<String>,
    /// Pieces of tool calls.
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

/// A piece of a streamed tool call: the first piece of a call has its id and name, later ones add arguments.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ToolCallDelta {
    /// Which call of the answer this piece belongs to.
    #[serde(default)]
    pub index: u32,
    /// The call id (first piece).
    #[serde(default)]
    pub id: Option<String>,
    /// Name and argument text.
    #[serde(default)]
    pub function: Option<FunctionDelta>,
}

/// The function part of a [`ToolCallDelta`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FunctionDelta {
    /// Function name (first piece).
    #[serde(default)]
    pub name: Option<String>,
    /// More of the JSON argument text.
    #[serde(default)]
    pub arguments: Option<String>,
}

/// Token usage, read leniently.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Generated tokens.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Both.
    #[serde(default)]
    pub total_tokens: u64,
    /// Prompt tokens served from the engine's cache, when it says.
    #[serde(default, deserialize_with = "cached_tokens", rename = "prompt_tokens_details")]
    pub cached_tokens: Option<u64>,
    /// Reasoning tokens among the generated ones, when the engine says.
    #[serde(default, deserialize_with = "reasoning_tokens", rename = "completion_tokens_details")]
    pub reasoning_tokens: Option<u64>,
}

fn cached_tokens<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(v.as_ref().and_then(|v| v.get("cached_tokens")).and_then(Value::as_u64))
}

fn reasoning_tokens<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(v.as_ref().and_then(|v| v.get("reasoning_tokens")).and_then(Value::as_u64))
}

/// A whole OpenAI chat completion, read leniently.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Completion {
    /// The completion id.
    #[serde(default)]
    pub id: Option<String>,
    /// The model that answered.
    #[serde(default)]
    pub model: Option<String>,
    /// The answers (llmux's translated protocols use the first).
    #[serde(default)]
    pub choices: Vec<CompletionChoice>,
    /// Token usage.
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// One answer of a [`Completion`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CompletionChoice {
    /// The assistant message.
    #[serde(default)]
    pub message: AnswerMessage,
    /// `stop`, `length`, `tool_calls`, `content_filter`.
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// The assistant message of a [`Completion`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AnswerMessage {
    /// Answer text.
    #[serde(default)]
    pub content: Option<String>,
    /// Reasoning text.
    #[serde(default, alias = "reasoning")]
    pub reasoning_content: Option<String>,
    /// Tool calls, arguments as JSON text.
    #[serde(default)]
    pub tool_calls: Option<Vec<crate::protocol::openai::ToolCall>>,
}

impl Completion {
    /// Reads a whole OpenAI answer.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(body)
            .map_err(|e| Error::BadUpstreamResponse(format!("the engine's answer could not be read: {e}")))
    }
}

/// What the executor's OpenAI stream carries, event by event.
#[derive(Debug)]
pub enum Event {
    /// A chunk.
    Chunk(Chunk),
    /// A keep-alive comment.
    KeepAlive,
    /// An error event (the stream ends after it).
    Error(Error),
    /// `[DONE]`.
    Done,
}

/// Splits OpenAI SSE bytes into events as they arrive, whatever the network chunking.
#[derive(Debug, Default)]
pub struct SseEvents {
    pending: BytesMut,
}

impl SseEvents {
    /// Feeds bytes; returns the events completed by them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = find_blank_line(&self.pending) {
            let block = self.pending.split_to(end.0);
            let _ = self.pending.split_to(end.1);
            if let Some(event) = parse_block(&block) {
                events.push(event);
            }
        }
        events
    }
}

/// The end of the first event block: (where its text ends, how many separator bytes follow).
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = memchr::memmem::find(buf, b"\n\n").map(|p| (p, 2));
    let crlf = memchr::memmem::find(buf, b"\r\n\r\n").map(|p| (p, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn parse_block(block: &[u8]) -> Option<Event> {
    let text = String::from_utf8_lossy(block);
    let mut data = String::new();
    let mut comment = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
        } else if line.starts_with(':') {
            comment = true;
        }
    }
    if data.is_empty() {
        return comment.then_some(Event::KeepAlive);
    }
    if data.trim() == "[DONE]" {
        return Some(Event::Done);
    }
    // Straight into a chunk (one parse per event, on the per-chunk path); only an event that is no chunk at
    // all is looked at again for an error object.
    match serde_json::from_str::<Chunk>(&data) {
        Ok(chunk) if !chunk.choices.is_empty() || chunk.usage.is_some() => Some(Event::Chunk(chunk)),
        parsed => match serde_json::from_str::<Value>(&data) {
            Ok(value) => match value.get("error") {
                Some(err) => Some(Event::Error(relayed_error(err, None))),
                None => parsed.ok().map(Event::Chunk),
            },
            Err(e) => Some(Event::Error(Error::BadUpstreamResponse(format!(
                "the engine sent a stream event llmux cannot read: {e}"
            )))),
        },
    }
}

/// An OpenAI error object (`{"message","type","code"}`) the executor rendered, as an [`Error`] again, so a
/// translator can render it in its own protocol. `status` is the HTTP status when known; otherwise `code`.
pub fn relayed_error(err: &Value, status: Option<http::StatusCode>) -> Error {
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| err.as_str().map(str::to_owned))
        .unwrap_or_else(|| err.to_string());
    let code = err
        .get("code")
        .and_then(|c| c.as_u64().or_else(|| c.as_str().and_then(|s| s.parse().ok())))
        .and_then(|c| u16::try_from(c).ok())
        .and_then(|c| http::StatusCode::from_u16(c).ok());
    let status = status.or(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let kind = err.get("type").and_then(Value::as_str).map(str::to_owned);
    Error::Upstream { status, message, kind, retry_after: None }
}

/// An OpenAI error response body (`{"error":{…}}`) with its status, as an [`Error`].
pub fn relayed_error_body(status: http::StatusCode, body: &[u8]) -> Error {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => relayed_error(v.get("error").unwrap_or(&v), Some(status)),
        Err(_) => Error::Upstream {
            status,
            message: String::from_utf8_lossy(body).trim().to_owned(),
            kind: None,
            retry_after: None,
        },
    }
}

/// The text of one SSE event with a name, as Anthropic and the Responses API frame theirs.
pub fn push_named_event(out: &mut BytesMut, name: &str, json: &impl serde::Serialize) -> Result<(), Error> {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    serde_json::to_writer(bytes::BufMut::writer(&mut *out), json)
        .map_err(|e| Error::Internal(format!("serialising an event: {e}")))?;
    out.extend_from_slice(b"\n\n");
    Ok(())
}

/// One JSON line of an NDJSON stream.
pub fn push_json_line(out: &mut BytesMut, json: &impl serde::Serialize) -> Result<(), Error> {
    serde_json::to_writer(bytes::BufMut::writer(&mut *out), json)
        .map_err(|e| Error::Internal(format!("serialising a line: {e}")))?;
    out.extend_from_slice(b"\n");
    Ok(())
}

/// Serialises a whole answer body.
pub fn to_bytes(json: &impl serde::Serialize) -> Result<Bytes, Error> {
    serde_json::to_vec(json).map(Bytes::from).map_err(|e| Error::Internal(format!("serialising an answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_any_chunking() {
        let stream = b"data: {\"id\":\"a\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n: keep-alive\n\ndata: {\"choices\":[{\"delta\":{\"reasoning\":\"r\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5,\"prompt_tokens_details\":{\"cached_tokens\":1}}}\r\n\r\ndata: [DONE]\n\n";
        for split in 1..stream.len() {
            let mut sse = SseEvents::default();
            let mut events = sse.feed(&stream[..split]);
            events.extend(sse.feed(&stream[split..]));
            assert_eq!(events.len(), 4, "split at {split}");
            let Event::Chunk(first) = &events[0] else { panic!("{events:?}") };
            assert_eq!(first.choices[0].delta.content.as_deref(), Some("Hel"));
            assert!(matches!(events[1], Event::KeepAlive));
            let Event::Chunk(last) = &events[2] else { panic!("{events:?}") };
            assert_eq!(last.choices[0].delta.reasoning_content.as_deref(), Some("r"));
            let usage = last.usage.unwrap_or_default();
            assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens), (3, 2, Some(1)));
            assert!(matches!(events[3], Event::Done));
        }
    }

    #[test]
    fn error_events_keep_status_and_message() {
        let mut sse = SseEvents::default();
        let events = sse.feed(b"data: {\"error\":{\"message\":\"boom\",\"type\":\"timeout\",\"code\":\"408\"}}\n\n");
        let Some(Event::Error(err)) = events.into_iter().next() else { panic!("no error") };
        assert_eq!(err.status(), http::StatusCode::REQUEST_TIMEOUT);
        assert_eq!(err.to_string(), "boom");
    }
}
