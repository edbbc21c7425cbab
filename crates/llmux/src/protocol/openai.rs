//! OpenAI API types: the request head read on every request, full typed requests for translating engines,
//! and the response and stream chunk shapes.
//!
//! Every struct keeps the fields it does not name in `extra` (`#[serde(flatten)]`), so nothing a client sends
//! is lost on the way to an engine.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::Error;

/// The API operation a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/completions` (legacy text completion).
    Completion,
    /// `POST /v1/embeddings`.
    Embeddings,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 3] = [Operation::Chat, Operation::Completion, Operation::Embeddings];

    /// The route (without `/v1`), as OpenAI serves it and LiteLLM names it in error messages.
    pub fn route(self) -> &'static str {
        match self {
            Operation::Chat => "/chat/completions",
            Operation::Completion => "/completions",
            Operation::Embeddings => "/embeddings",
        }
    }
}

/// What llmux reads of every request without materialising the body: enough to route it, validate its shape,
/// and splice a new `model` into the original bytes for engines that speak OpenAI themselves.
#[derive(Debug)]
pub struct RequestHead<'a> {
    /// The model name the client asked for.
    pub model: Cow<'a, str>,
    /// Byte range of the `model` value (with its quotes) inside the body.
    pub model_span: std::ops::Range<usize>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// LiteLLM's per-request router controls, consumed by llmux and never sent to an engine.
    pub controls: RouterControls,
}

/// Body fields LiteLLM reads as router settings for one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouterControls {
    /// `num_retries`: overrides the configured retries (`0` also overrides `retry_policy`).
    pub num_retries: Option<u32>,
    /// `disable_fallbacks: true`: no fallback hops.
    pub disable_fallbacks: bool,
    /// Client-side `fallbacks`: model names tried after the configured chain.
    pub fallbacks: Option<Vec<String>>,
    /// `timeout` seconds for this request.
    pub timeout: Option<f64>,
    /// `stream_timeout` seconds for this request.
    pub stream_timeout: Option<f64>,
    /// `priority`: its place in the queue for a free slot, lower first (LiteLLM's scheduler).
    pub priority: Option<i64>,
}

impl RouterControls {
    /// The body fields these come from: stripped before a request reaches an engine.
    pub const FIELDS: &'static [&'static str] =
        &["num_retries", "disable_fallbacks", "fallbacks", "timeout", "stream_timeout", "priority"];

    /// Whether the client sent any of them.
    pub fn any(&self) -> bool {
        *self != RouterControls::default()
    }
}

#[derive(Deserialize)]
struct HeadFields<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    messages: Option<Shape>,
    prompt: Option<Shape>,
    input: Option<Shape>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    n: Option<u64>,
    // LiteLLM's router controls, listed here rather than flattened: `flatten` would buffer the body and break
    // the borrowed `RawValue` above.
    num_retries: Option<u32>,
    #[serde(default)]
    disable_fallbacks: bool,
    fallbacks: Option<Vec<String>>,
    timeout: Option<f64>,
    stream_timeout: Option<f64>,
    priority: Option<i64>,
}

/// What a request's payload field (`messages`, `prompt`, `input`) is, read without keeping it: the payload is
/// most of the body and only its shape is checked here.
enum Shape {
    Array { empty: bool },
    String,
    Other,
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Shape;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
                let mut empty = true;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    empty = false;
                }
                Ok(Shape::Array { empty })
            }
            fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
                Ok(Shape::String)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
                while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
                Ok(Shape::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_unit<E>(self) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

/// `stream_options` of a request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Send a final chunk with token usage.
    #[serde(default)]
    pub include_usage: bool,
    /// Fields llmux does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl<'a> RequestHead<'a> {
    /// Reads and checks the head of a request body for `op`.
    pub fn parse(body: &'a [u8], op: Operation) -> Result<Self, Error> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::invalid("Request body is empty: expected a JSON object", None));
        }
        // serde reads a struct from a JSON array too (by position); a request body is an object.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(Error::invalid("Invalid request body: expected a JSON object", None));
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        // Plain serde first: tracking the path costs a third of the parse, and only an error message needs it.
        let fields = match HeadFields::deserialize(&mut de) {
            Ok(fields) => fields,
            Err(_) => {
                let mut de = serde_json::Deserializer::from_slice(body);
                let traced: Result<HeadFields<'a>, _> = serde_path_to_error::deserialize(&mut de);
                return Err(traced.map_or_else(body_error, |_| Error::invalid("Invalid request body", None)));
            }
        };
        de.end().map_err(|e| Error::invalid(format!("Invalid JSON body: {e}"), None))?;

        let raw_model =
            fields.model.ok_or_else(|| Error::invalid("Missing required parameter: 'model'", Some("model")))?;
        // Borrowed unless the name has escapes (serde's own `Cow` always copies).
        let model: Cow<'a, str> = match serde_json::from_str::<&'a str>(raw_model.get()) {
            Ok(name) => Cow::Borrowed(name),
            Err(_) => Cow::Owned(
                serde_json::from_str::<String>(raw_model.get())
                    .map_err(|_| Error::invalid("'model' must be a string", Some("model")))?,
            ),
        };
        if model.is_empty() {
            return Err(Error::invalid("'model' must not be empty", Some("model")));
        }
        // No model has a newline or an escape in its name; refusing them keeps them out of logs and headers.
        if model.chars().any(char::is_control) {
            return Err(Error::invalid("'model' must not contain control characters", Some("model")));
        }
        let start = raw_model.get().as_ptr() as usize - body.as_ptr() as usize;
        let model_span = start..start + raw_model.get().len();

        let (name, raw, expected) = match op {
            Operation::Chat => ("messages", fields.messages, "an array of messages"),
            Operation::Completion => ("prompt", fields.prompt, "a string or an array"),
            Operation::Embeddings => ("input", fields.input, "a string or an array"),
        };
        let shape = raw.ok_or_else(|| Error::invalid(format!("Missing required parameter: '{name}'"), Some(name)))?;
        let ok = match op {
            Operation::Chat => matches!(shape, Shape::Array { empty: false }),
            Operation::Completion | Operation::Embeddings => matches!(shape, Shape::Array { .. } | Shape::String),
        };
        if !ok {
            return Err(Error::invalid(format!("'{name}' must be {expected}"), Some(name)));
        }
        let _ = (fields.temperature, fields.top_p, fields.max_tokens, fields.max_completion_tokens, fields.n);
        Ok(RequestHead {
            model,
            model_span,
            stream: fields.stream.unwrap_or(false) && op != Operation::Embeddings,
            include_usage: fields.stream_options.map(|o| o.include_usage).unwrap_or(false),
            controls: RouterControls {
                num_retries: fields.num_retries,
                disable_fallbacks: fields.disable_fallbacks,
                fallbacks: fields.fallbacks,
                timeout: fields.timeout.filter(|t| t.is_finite() && *t > 0.0),
                stream_timeout: fields.stream_timeout.filter(|t| t.is_finite() && *t > 0.0),
                priority: fields.priority,
            },
        })
    }

    /// The original body with `model` replaced by `upstream_model`; every other byte is kept as sent.
    pub fn splice_model(&self, body: &[u8], upstream_model: &str) -> bytes::Bytes {
        let quoted = serde_json::to_string(upstream_model).unwrap_or_else(|_| "\"\"".to_owned());
        let mut out = Vec::with_capacity(body.len() + quoted.len());
        out.extend_from_slice(&body[..self.model_span.start]);
        out.extend_from_slice(quoted.as_bytes());
        out.extend_from_slice(&body[self.model_span.end..]);
        out.into()
    }
}

/// Turns a serde error into a 400 that names the offending field.
pub fn body_error(err: serde_path_to_error::Error<serde_json::Error>) -> Error {
    let path = err.path().to_string();
    let inner = err.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return Error::invalid(format!("Invalid JSON body: {inner}"), None);
    }
    if path.is_empty() || path == "." {
        Error::invalid(format!("Invalid request body: {inner}"), None)
    } else {
        Error::invalid(format!("Invalid value for '{path}': {inner}"), Some(&path))
    }
}

/// Parses a full typed request, mapping errors to a 400 that names the field.
pub fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(body_error)
}

/// `POST /v1/chat/completions` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model, alias or group name.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Stream the answer as SSE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Stream options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Maximum tokens to generate (legacy name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Maximum tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Frequency penalty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Presence penalty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// `{"type":"json_object"}` or `{"type":"json_schema","json_schema":{…}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// `low` / `medium` / `high` / `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// Tool definitions (OpenAI schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// Tool choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// Everything else the client sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `stop`: one string or several.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop sequence.
    One(String),
    /// Several stop sequences.
    Many(Vec<String>),
}

impl Stop {
    /// The stop sequences as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text, or a list of content parts, or null (assistant turns with tool calls).
    #[serde(default)]
    pub content: Option<MessageContent>,
    /// Tool calls made by an assistant turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The call a tool message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Reasoning text of an assistant turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Everything else (`name`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Message content: a string or a list of parts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Typed parts (text, image_url, …).
    Parts(Vec<ContentPart>),
}

/// One part of a multi-part message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContentPart {
    /// `text`, `image_url`, `input_audio`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The image of an `image_url` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<ImageUrl>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `image_url`: `{"url": …}` or, from some clients, a bare string.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageUrl {
    /// `{"url": "data:image/png;base64,…", "detail": "auto"}`.
    Object {
        /// A data URL or an http(s) URL.
        url: String,
        /// Everything else (`detail`).
        #[serde(flatten)]
        extra: Map<String, Value>,
    },
    /// A bare URL string.
    Url(String),
}

impl ImageUrl {
    /// The URL.
    pub fn url(&self) -> &str {
        match self {
            ImageUrl::Object { url, .. } | ImageUrl::Url(url) => url,
        }
    }
}

impl MessageContent {
    /// The text of the content: a string as is, the `text` parts joined with newlines.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            MessageContent::Text(s) => Cow::Borrowed(s),
            MessageContent::Parts(parts) => {
                let texts: Vec<&str> = parts.iter().filter_map(|p| p.text.as_deref()).collect();
                Cow::Owned(texts.join("\n"))
            }
        }
    }
}

/// A tool call in a message or a response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolCall {
    /// Call id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Always `function`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The function called.
    pub function: FunctionCall,
    /// Position in a streamed delta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
}

/// A function call: name and JSON-encoded arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionCall {
    /// Function name.
    #[serde(default)]
    pub name: String,
    /// Arguments as a JSON string (OpenAI's wire form).
    #[serde(default)]
    pub arguments: String,
}

/// `POST /v1/completions` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompletionRequest {
    /// Model, alias or group name.
    pub model: String,
    /// The prompt: a string or a list of strings.
    pub prompt: Value,
    /// Stream the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Maximum tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Suffix after the completion (passed through where supported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `POST /v1/embeddings` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingsRequest {
    /// Model, alias or group name.
    pub model: String,
    /// A string or a list of strings.
    pub input: EmbeddingInput,
    /// `float` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    /// Requested output dimensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u64>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Embedding input.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// One text.
    One(String),
    /// Several texts.
    Many(Vec<String>),
}

impl EmbeddingInput {
    /// The texts as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            EmbeddingInput::One(s) => vec![s],
            EmbeddingInput::Many(v) => v,
        }
    }
}

/// Token usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
    /// Sum of both.
    pub total_tokens: u64,
}

impl Usage {
    /// Usage from prompt and completion counts.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage { prompt_tokens, completion_tokens, total_tokens: prompt_tokens.saturating_add(completion_tokens) }
    }
}

/// A non-streamed chat completion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// `chatcmpl-…`.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// The answers.
    pub choices: Vec<ChatChoice>,
    /// Token usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One answer of a chat completion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatChoice {
    /// Position.
    pub index: u32,
    /// The assistant message.
    pub message: ResponseMessage,
    /// `stop`, `length`, `tool_calls`, …
    pub finish_reason: Option<String>,
}

/// An assistant message in a response, or the delta of a stream chunk.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResponseMessage {
    /// `assistant` (omitted in later stream deltas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The text; serialised as `null` when absent, as OpenAI does for tool-call-only answers.
    #[serde(default)]
    pub content: Option<String>,
    /// Reasoning text (`thinking`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

/// One chunk of a streamed chat completion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    /// Same id for every chunk of one completion.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// Deltas (empty in the usage chunk).
    pub choices: Vec<ChunkChoice>,
    /// Usage, only in the final chunk when `include_usage` was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One delta of a stream chunk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// Position.
    pub index: u32,
    /// What is new in this chunk.
    pub delta: ResponseMessage,
    /// Set on the last content chunk.
    pub finish_reason: Option<String>,
}

/// A non-streamed legacy text completion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextCompletion {
    /// `cmpl-…`.
    pub id: String,
    /// Always `text_completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// The completions.
    pub choices: Vec<TextChoice>,
    /// Token usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One legacy completion choice (also the shape of a streamed one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextChoice {
    /// The text.
    pub text: String,
    /// Position.
    pub index: u32,
    /// Log probabilities (always null here).
    pub logprobs: Option<Value>,
    /// `stop`, `length`, or null mid-stream.
    pub finish_reason: Option<String>,
}

/// An embeddings response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingsResponse {
    /// Always `list`.
    pub object: String,
    /// One entry per input.
    pub data: Vec<Embedding>,
    /// The model that answered.
    pub model: String,
    /// Token usage (`completion_tokens` is 0).
    pub usage: EmbeddingUsage,
}

/// Usage of an embeddings call.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct EmbeddingUsage {
    /// Input tokens.
    pub prompt_tokens: u64,
    /// Same as `prompt_tokens`.
    pub total_tokens: u64,
}

/// One embedding.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Embedding {
    /// Always `embedding`.
    pub object: String,
    /// Position of the input.
    pub index: u32,
    /// The vector, or its base64 encoding when `encoding_format` was `base64`.
    pub embedding: Value,
}

/// A fresh id like `chatcmpl-…`, unique enough for client-side bookkeeping.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// Current Unix time in seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
