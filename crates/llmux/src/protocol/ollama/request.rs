//! Ollama requests (`/api/chat`, `/api/generate`, `/api/embed`, `/api/embeddings`) as OpenAI requests.
//!
//! Ollama-only knobs travel as extra fields that the Ollama provider reads again (`options`, `think`,
//! `keep_alive`, generate's `suffix`/`template`/`raw`, embed's `truncate`), and the portable ones are also
//! mapped to OpenAI's own fields so OpenAI-compatible engines get them (`num_predict` → `max_tokens`, `format` →
//! `response_format`, a `think` level → `reasoning_effort`).

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{routable_name, Route};
use crate::config::Config;
use crate::error::Error;
use crate::protocol::openai::{
    parse_body, ChatMessage, ChatRequest as OpenAiChat, ContentPart, FunctionCall, ImageUrl, MessageContent, Stop,
    StreamOptions, ToolCall,
};

/// `POST /api/chat`.
#[derive(Debug, Deserialize)]
pub(super) struct ChatRequest {
    /// The model name.
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation.
    #[serde(default)]
    pub messages: Option<Vec<Message>>,
    /// Tools, in OpenAI's schema (which Ollama uses).
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(flatten)]
    pub common: Common,
}

/// `POST /api/generate`.
#[derive(Debug, Deserialize)]
pub(super) struct GenerateRequest {
    /// The model name.
    #[serde(default)]
    pub model: Option<String>,
    /// The prompt.
    #[serde(default)]
    pub prompt: Option<String>,
    /// Images for the prompt, raw base64.
    #[serde(default)]
    pub images: Option<Vec<String>>,
    /// A system prompt replacing the model's.
    #[serde(default)]
    pub system: Option<String>,
    /// The deprecated token memory of an earlier answer: not carried (see the module docs of `ollama`).
    #[serde(default)]
    pub context: Option<Value>,
    #[serde(flatten)]
    pub common: Common,
}

/// What `/api/chat` and `/api/generate` share.
#[derive(Debug, Deserialize)]
pub(super) struct Common {
    /// `"json"` or a JSON schema.
    #[serde(default)]
    pub format: Option<Value>,
    /// Ollama's model options (`num_ctx`, `num_predict`, `temperature`, …).
    #[serde(default)]
    pub options: Option<Map<String, Value>>,
    /// Absent means a stream, in Ollama.
    #[serde(default)]
    pub stream: Option<bool>,
    /// How long the engine keeps the model loaded.
    #[serde(default)]
    pub keep_alive: Option<Value>,
    /// `true`/`false`, or a level (`low`, `medium`, `high`).
    #[serde(default)]
    pub think: Option<Value>,
    /// Everything else (`suffix`, `template`, `raw`, `logprobs`, …), sent on as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One Ollama chat message.
#[derive(Debug, Deserialize)]
pub(super) struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text.
    #[serde(default)]
    pub content: Option<String>,
    /// Images, raw base64.
    #[serde(default)]
    pub images: Option<Vec<String>>,
    /// An assistant turn's reasoning.
    #[serde(default)]
    pub thinking: Option<String>,
    /// An assistant turn's tool calls.
    #[serde(default)]
    pub tool_calls: Option<Vec<InToolCall>>,
    /// A tool result's function name.
    #[serde(default)]
    pub tool_name: Option<String>,
    /// A tool result's call id (recent Ollama clients send it).
    #[serde(default)]
    pub tool_call_id: Option<String>,
}

/// An assistant tool call as Ollama writes it: arguments as an object.
#[derive(Debug, Deserialize)]
pub(super) struct InToolCall {
    /// Recent Ollama versions give one.
    #[serde(default)]
    pub id: Option<String>,
    /// The function called.
    pub function: InFunction,
}

/// The function of an [`InToolCall`].
#[derive(Debug, Deserialize)]
pub(super) struct InFunction {
    /// Function name.
    pub name: String,
    /// Arguments: an object (a string is taken as JSON text).
    #[serde(default)]
    pub arguments: Option<Value>,
}

/// `POST /api/embed` and `POST /api/embeddings`.
#[derive(Debug, Deserialize)]
pub(super) struct EmbedRequest {
    /// The model name.
    #[serde(default)]
    pub model: Option<String>,
    /// `/api/embed`: one text or several.
    #[serde(default)]
    pub input: Option<Value>,
    /// `/api/embeddings`: one text.
    #[serde(default)]
    pub prompt: Option<String>,
    /// Output dimensions.
    #[serde(default)]
    pub dimensions: Option<u64>,
    /// Everything else (`options`, `keep_alive`, `truncate`), sent on as is for the Ollama provider.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The OpenAI embeddings request.
#[derive(Debug, Serialize)]
struct OpenAiEmbed {
    model: String,
    input: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u64>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// The client's body as an OpenAI request: (the model name the client sent, the OpenAI body).
pub(super) fn to_openai(route: Route, body: &[u8], config: &Config) -> Result<(String, Vec<u8>), Error> {
    let (sent, out) = match route {
        Route::Chat => {
            let req: ChatRequest = parse_body(body)?;
            let model = model_of(req.model)?;
            let name = routable_name(config, route.operation(), &model)?;
            let messages = chat_messages(req.messages.unwrap_or_default())?;
            if messages.is_empty() {
                return Err(no_preload("messages"));
            }
            (model, serialise(&chat(name, messages, req.tools, req.common)?)?)
        }
        Route::Generate => {
            let req: GenerateRequest = parse_body(body)?;
            let model = model_of(req.model)?;
            let name = routable_name(config, route.operation(), &model)?;
            let prompt = req.prompt.unwrap_or_default();
            let images = req.images.unwrap_or_default();
            if prompt.is_empty() && images.is_empty() {
                return Err(no_preload("prompt"));
            }
            let mut messages = Vec::with_capacity(2);
            if let Some(system) = req.system.filter(|s| !s.is_empty()) {
                messages.push(text_message("system", system));
            }
            messages.push(ChatMessage {
                role: "user".into(),
                content: Some(content(prompt, &images, "images")?),
                tool_calls: None,
                tool_call_id: None,
                reasoning_content: None,
                extra: Map::new(),
            });
            // `context` is read (so it does not travel as an extra field) and not carried: no engine behind an
            // OpenAI request takes Ollama's token memory, and llmux's answers never hand one out.
            let _ = req.context;
            (model, serialise(&chat(name, messages, None, req.common)?)?)
        }
        Route::Embed | Route::Embeddings => {
            let req: EmbedRequest = parse_body(body)?;
            let model = model_of(req.model)?;
            let name = routable_name(config, route.operation(), &model)?;
            let input = if route == Route::Embed {
                match req.input {
                    Some(v @ Value::String(_)) => v,
                    Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                        if items.is_empty() {
                            return Err(Error::invalid("'input' must not be empty", Some("input")));
                        }
                        Value::Array(items)
                    }
                    Some(_) => {
                        return Err(Error::invalid("'input' must be a string or a list of strings", Some("input")))
                    }
                    None => return Err(Error::invalid("'input' is required", Some("input"))),
                }
            } else {
                Value::String(req.prompt.unwrap_or_default())
            };
            let mut extra = req.extra;
            extra.remove("stream");
            (model, serialise(&OpenAiEmbed { model: name, input, dimensions: req.dimensions, extra })?)
        }
    };
    Ok((sent, out))
}

fn model_of(model: Option<String>) -> Result<String, Error> {
    model.filter(|m| !m.is_empty()).ok_or_else(|| Error::invalid("model is required", Some("model")))
}

/// Ollama loads (or, with `keep_alive: 0`, unloads) a model for an empty request; llmux does neither.
fn no_preload(field: &str) -> Error {
    Error::invalid(
        format!(
            "'{field}' is empty: llmux loads models on demand and does not preload or unload them on an engine; \
             send something to answer"
        ),
        Some(field),
    )
}

fn serialise(body: &impl Serialize) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(body).map_err(|e| Error::Internal(format!("serialising the OpenAI request: {e}")))
}

/// The OpenAI chat request for `messages` and the shared knobs.
fn chat(
    model: String,
    messages: Vec<ChatMessage>,
    tools: Option<Vec<Value>>,
    common: Common,
) -> Result<OpenAiChat, Error> {
    let Common { format, options, stream, keep_alive, think, mut extra } = common;
    // Ollama streams unless told not to.
    let stream = stream.unwrap_or(true);
    let mut req = OpenAiChat {
        model,
        messages,
        stream: Some(stream),
        stream_options: stream.then(|| StreamOptions { include_usage: true, extra: Map::new() }),
        max_tokens: None,
        max_completion_tokens: None,
        temperature: None,
        top_p: None,
        seed: None,
        stop: None,
        frequency_penalty: None,
        presence_penalty: None,
        response_format: response_format(format)?,
        reasoning_effort: None,
        tools: tools.filter(|t| !t.is_empty()),
        tool_choice: None,
        extra: Map::new(),
    };
    if let Some(options) = options {
        sampling(&options, &mut req, &mut extra)?;
        extra.insert("options".into(), Value::Object(options));
    }
    if let Some(think) = think.filter(|t| !t.is_null()) {
        match &think {
            Value::Bool(_) => {}
            Value::String(level) if matches!(level.as_str(), "low" | "medium" | "high") => {
                req.reasoning_effort = Some(level.clone());
            }
            _ => {
                return Err(Error::invalid(
                    "'think' must be true, false, \"low\", \"medium\" or \"high\"",
                    Some("think"),
                ))
            }
        }
        extra.insert("think".into(), think);
    }
    if let Some(keep_alive) = keep_alive.filter(|k| !k.is_null()) {
        extra.insert("keep_alive".into(), keep_alive);
    }
    // What the OpenAI request already says in its own words must not come twice.
    for key in ["model", "messages", "stream", "stream_options", "response_format", "tools"] {
        extra.remove(key);
    }
    req.extra = extra;
    Ok(req)
}

/// The portable `options` as OpenAI fields, for engines that do not read Ollama's `options` (the Ollama provider
/// reads `options` itself, and the values agree).
fn sampling(options: &Map<String, Value>, req: &mut OpenAiChat, extra: &mut Map<String, Value>) -> Result<(), Error> {
    let bad = |key: &str, what: &str| {
        Error::invalid(format!("'options.{key}' must be {what}"), Some(&format!("options.{key}")))
    };
    for (key, value) in options.iter().filter(|(_, v)| !v.is_null()) {
        match key.as_str() {
            // -1 (no limit) and -2 (fill the context) have no OpenAI spelling: no limit is sent.
            "num_predict" => match value.as_i64() {
                Some(n) if n > 0 => req.max_tokens = u64::try_from(n).ok(),
                Some(_) => {}
                None => return Err(bad(key, "an integer")),
            },
            "temperature" => req.temperature = Some(value.as_f64().ok_or_else(|| bad(key, "a number"))?),
            "top_p" => req.top_p = Some(value.as_f64().ok_or_else(|| bad(key, "a number"))?),
            "presence_penalty" => req.presence_penalty = Some(value.as_f64().ok_or_else(|| bad(key, "a number"))?),
            "seed" => req.seed = Some(value.as_i64().ok_or_else(|| bad(key, "an integer"))?),
            "stop" => {
                req.stop = Some(match value {
                    Value::String(s) => Stop::One(s.clone()),
                    Value::Array(items) => Stop::Many(
                        items
                            .iter()
                            .map(|s| s.as_str().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| bad(key, "a list of strings"))?,
                    ),
                    _ => return Err(bad(key, "a list of strings")),
                })
            }
            // vLLM and llama.cpp read these at the top level; the Ollama provider moves them back into `options`.
            // (`frequency_penalty` is not mapped: the Ollama provider reads OpenAI's as `repeat_penalty`.)
            "top_k" | "min_p" => {
                extra.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    Ok(())
}

/// Ollama's `format` as OpenAI's `response_format`.
fn response_format(format: Option<Value>) -> Result<Option<Value>, Error> {
    match format {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "json" => Ok(Some(serde_json::json!({"type": "json_object"}))),
        Some(schema @ Value::Object(_)) => Ok(Some(serde_json::json!({
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": schema},
        }))),
        Some(_) => Err(Error::invalid("'format' must be \"json\" or a JSON schema object", Some("format"))),
    }
}

fn text_message(role: &str, text: String) -> ChatMessage {
    ChatMessage {
        role: role.into(),
        content: Some(MessageContent::Text(text)),
        tool_calls: None,
        tool_call_id: None,
        reasoning_content: None,
        extra: Map::new(),
    }
}

/// Text with images as OpenAI content: a string alone, or a text part and one `image_url` part per image.
fn content(text: String, images: &[String], param: &str) -> Result<MessageContent, Error> {
    if images.is_empty() {
        return Ok(MessageContent::Text(text));
    }
    let mut parts = Vec::with_capacity(images.len() + 1);
    if !text.is_empty() {
        parts.push(ContentPart { kind: "text".into(), text: Some(text), image_url: None, extra: Map::new() });
    }
    for (j, image) in images.iter().enumerate() {
        let url = image_url(image).ok_or_else(|| {
            Error::invalid(format!("'{param}[{j}]' is not a base64-encoded image"), Some(&format!("{param}[{j}]")))
        })?;
        parts.push(ContentPart {
            kind: "image_url".into(),
            text: None,
            image_url: Some(ImageUrl::Object { url, extra: Map::new() }),
            extra: Map::new(),
        });
    }
    Ok(MessageContent::Parts(parts))
}

/// An Ollama image (raw base64) as a data URL, its type read from the first bytes; a data URL or an http(s) URL
/// (which some clients send) goes as it is.
fn image_url(image: &str) -> Option<String> {
    let image = image.trim();
    if image.starts_with("data:") || image.starts_with("http://") || image.starts_with("https://") {
        return Some(image.to_owned());
    }
    // 16 base64 characters are 12 bytes: enough for every signature below (WebP's is at 8..12).
    let head: String = image.chars().take(16).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(head.trim_end_matches('='))
        .ok()
        .or_else(|| base64::engine::general_purpose::STANDARD_NO_PAD.decode(head.trim_end_matches('=')).ok())?;
    if bytes.is_empty() {
        return None;
    }
    Some(format!("data:{};base64,{image}", sniff(&bytes)))
}

/// The MIME type of an image from its first bytes; JPEG when unknown (what cameras and most clients send).
pub(super) fn sniff(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(b"\x89PNG") {
        "image/png"
    } else if bytes.starts_with(b"GIF8") {
        "image/gif"
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        "image/webp"
    } else {
        "image/jpeg"
    }
}

/// Ollama messages as OpenAI messages: images as data URLs, tool call arguments as JSON text, and each tool result
/// tied by id to the call it answers (Ollama names only the function).
fn chat_messages(messages: Vec<Message>) -> Result<Vec<ChatMessage>, Error> {
    // Calls of the latest assistant turn not answered yet: (id, function name).
    let mut open: Vec<(String, String)> = Vec::new();
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "user" | "assistant" | "tool" => m.role,
            "developer" => "system".into(),
            other => {
                return Err(Error::invalid(
                    format!("invalid role '{other}': expected system, user, assistant or tool"),
                    Some(&format!("messages[{i}].role")),
                ))
            }
        };
        let text = m.content.unwrap_or_default();
        let images = m.images.unwrap_or_default();
        let mut message = ChatMessage {
            content: None,
            tool_calls: None,
            tool_call_id: None,
            reasoning_content: m.thinking.filter(|t| !t.is_empty()),
            extra: Map::new(),
            role,
        };
        match message.role.as_str() {
            "assistant" => {
                let calls: Vec<ToolCall> = m
                    .tool_calls
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                    .map(|(j, c)| ToolCall {
                        id: Some(c.id.filter(|id| !id.is_empty()).unwrap_or_else(|| format!("call_{i}_{j}"))),
                        kind: Some("function".into()),
                        function: FunctionCall {
                            name: c.function.name,
                            arguments: arguments_text(c.function.arguments),
                        },
                        index: None,
                    })
                    .collect();
                open = calls.iter().map(|c| (c.id.clone().unwrap_or_default(), c.function.name.clone())).collect();
                // OpenAI leaves a pure tool-call turn without content.
                if calls.is_empty() || !text.is_empty() || !images.is_empty() {
                    message.content = Some(content(text, &images, &format!("messages[{i}].images"))?);
                }
                message.tool_calls = (!calls.is_empty()).then_some(calls);
            }
            "tool" => {
                let by_id = m.tool_call_id.filter(|id| !id.is_empty());
                let found = match &by_id {
                    Some(id) => open.iter().position(|(open_id, _)| open_id == id),
                    None => m
                        .tool_name
                        .as_deref()
                        .and_then(|name| open.iter().position(|(_, n)| n == name))
                        .or_else(|| (!open.is_empty()).then_some(0)),
                };
                let id = match (by_id, found) {
                    (Some(id), found) => {
                        if let Some(p) = found {
                            open.remove(p);
                        }
                        id
                    }
                    (None, Some(p)) => open.remove(p).0,
                    // A result for no call llmux saw: its own id, and the function's name for engines that read it.
                    (None, None) => {
                        if let Some(name) = &m.tool_name {
                            message.extra.insert("name".into(), Value::String(name.clone()));
                        }
                        format!("call_{i}")
                    }
                };
                message.tool_call_id = Some(id);
                message.content = Some(content(text, &images, &format!("messages[{i}].images"))?);
            }
            _ => message.content = Some(content(text, &images, &format!("messages[{i}].images"))?),
        }
        out.push(message);
    }
    Ok(out)
}

/// Ollama's argument object as OpenAI's JSON text (a string is taken to be JSON text already).
fn arguments_text(arguments: Option<Value>) -> String {
    match arguments {
        None | Some(Value::Null) => "{}".into(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    }
}
