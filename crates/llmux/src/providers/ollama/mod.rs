//! Ollama's native API: `ollama_chat/` speaks `POST /api/chat`, `ollama/` speaks `POST /api/generate`, and both
//! embed through `POST /api/embed`.
//!
//! The translation follows LiteLLM's (`litellm/llms/ollama/`), with the divergences named where they happen:
//! `ollama_chat/` serves embeddings too, the answer reports the model name the client asked for, one stream
//! keeps one id, and tools sent to the generate endpoint are refused instead of silently lost.
//!
//! Layout: this file holds the [`Provider`] and what the three routes share (options, switches, content parts,
//! the parsed engine reply); `chat.rs`, `generate.rs` and `embed.rs` hold one route each; `stream.rs` turns
//! Ollama's NDJSON stream into OpenAI SSE.

mod chat;
mod embed;
mod generate;
mod native;
mod stream;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{upstream_error, Call, Converted, Endpoint, Provider, StreamConverter, UpstreamRequest};
use crate::config::EngineTarget;
use crate::error::Error;
use crate::observe::Tokens;
use crate::protocol::openai::{ContentPart, MessageContent, Operation, Stop};
use crate::router::speed::Timings;

/// The Ollama adapter. `chat: true` is LiteLLM's `ollama_chat/` prefix (`/api/chat`); `chat: false` is `ollama/`
/// (`/api/generate`, with chat messages flattened into one prompt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ollama {
    /// Chat requests go to `/api/chat` (true) or `/api/generate` (false).
    pub chat: bool,
}

/// The Ollama endpoint one request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Chat,
    Generate,
    Embed,
}

impl Ollama {
    fn route(self, op: Operation) -> Route {
        match op {
            Operation::Chat if self.chat => Route::Chat,
            // A legacy completion is a raw prompt, which is what `/api/generate` takes, whatever the prefix.
            Operation::Chat | Operation::Completion => Route::Generate,
            // LiteLLM fails `ollama_chat/` embeddings; the model is an Ollama model either way (spec §12.2).
            Operation::Embeddings => Route::Embed,
        }
    }
}

impl Provider for Ollama {
    fn build_request(&self, call: &Call<'_>) -> Result<UpstreamRequest, Error> {
        let target = engine_target(call)?;
        if let Some(native) = call.native_to(Endpoint::is_ollama) {
            let body = native::request(native.body, target, call.model)?;
            return Ok(UpstreamRequest { uri: target.uri(native.endpoint)?, headers: target.request_headers()?, body });
        }
        let (endpoint, body) = match self.route(call.op) {
            Route::Chat => (Endpoint::OllamaChat, chat::request(call, target)?),
            Route::Generate => (Endpoint::OllamaGenerate, generate::request(call, target)?),
            Route::Embed => (Endpoint::OllamaEmbed, embed::request(call, target)?),
        };
        Ok(UpstreamRequest { uri: target.uri(endpoint)?, headers: target.request_headers()?, body })
    }

    fn convert_response(&self, call: &Call<'_>, body: Bytes) -> Result<Converted, Error> {
        if let Some(asked) = call.native_to(Endpoint::is_ollama) {
            return Ok(native::response(body, &native::Rename::new(call.model, asked.model)));
        }
        match self.route(call.op) {
            Route::Chat => chat::response(call, &body),
            Route::Generate => generate::response(call, &body),
            Route::Embed => embed::response(call, &body),
        }
    }

    fn stream_converter(&self, call: &Call<'_>) -> Option<Box<dyn StreamConverter>> {
        if let Some(asked) = call.native_to(Endpoint::is_ollama) {
            return Some(Box::new(native::Tap::new(native::Rename::new(call.model, asked.model))));
        }
        let kind = match (self.route(call.op), call.op) {
            (Route::Chat, _) => stream::Kind::Chat,
            (Route::Generate, Operation::Completion) => stream::Kind::Text,
            (Route::Generate, _) => stream::Kind::GenerateChat,
            // `/api/embed` never streams.
            (Route::Embed, _) => return None,
        };
        Some(Box::new(stream::NdjsonConverter::new(kind, call)))
    }

    fn native(&self, call: &Call<'_>) -> bool {
        call.native_to(Endpoint::is_ollama).is_some()
    }

    fn convert_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        let mut error = upstream_error(status, headers, body);
        // Older Ollama answers 500 "…: no such file or directory" for a model whose blobs are missing; LiteLLM
        // treats it as the caller's mistake (spec §7), and a 500 would wrongly cool the deployment down.
        if let Error::Upstream { status, message, .. } = &mut error {
            if status.is_server_error() && message.contains("no such file or directory") {
                *status = StatusCode::BAD_REQUEST;
            }
        }
        error
    }
}

/// The engine a call goes to; the router never hands a provider an auto-router deployment.
fn engine_target<'a>(call: &Call<'a>) -> Result<&'a EngineTarget, Error> {
    call.deployment
        .engine()
        .ok_or_else(|| Error::Internal(format!("deployment '{}' has no engine to call", call.deployment.id)))
}

/// Serialises an engine request body.
fn to_body(body: &impl serde::Serialize) -> Result<Bytes, Error> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| Error::Internal(format!("serialising the Ollama request: {e}")))
}

/// Serialises a client response body.
fn to_response(body: &impl serde::Serialize) -> Result<Bytes, Error> {
    serde_json::to_vec(body).map(Bytes::from).map_err(|e| Error::Internal(format!("serialising the response: {e}")))
}

// ---------------------------------------------------------------------------------------------------------------
// Options and switches shared by `/api/chat` and `/api/generate`.
// ---------------------------------------------------------------------------------------------------------------

/// Ollama `options` a client may send at the top level of an OpenAI request (LiteLLM's provider-specific params).
/// Only these leave the request's unknown fields; anything else a client adds (`user`, `n`, …) has no Ollama
/// meaning.
const OPTION_KEYS: &[&str] = &[
    "num_ctx",
    "num_predict",
    "num_keep",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "num_thread",
    "num_gqa",
    "top_k",
    "min_p",
    "typical_p",
    "tfs_z",
    "repeat_last_n",
    "repeat_penalty",
    "mirostat",
    "mirostat_eta",
    "mirostat_tau",
    "penalize_newline",
    "use_mmap",
    "use_mlock",
    "numa",
    "low_vram",
];

/// Deployment parameters that are not sampling options: handled on their own (`think`, `format`, …) or meaningless
/// to Ollama. Everything else in `litellm_params` goes into `options`, as LiteLLM does.
const NOT_OPTIONS: &[&str] = &[
    "think",
    "thinking",
    "format",
    "response_format",
    "reasoning_effort",
    "keep_alive",
    "options",
    "model",
    "messages",
    "prompt",
    "input",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "parallel_tool_calls",
    "images",
    "n",
    "user",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "metadata",
    "drop_params",
    "additional_drop_params",
    "max_retries",
    "api_version",
    "organization",
    "custom_llm_provider",
    "suffix",
    "system",
    "template",
    "raw",
    "context",
    "truncate",
    "dimensions",
    "encoding_format",
];

/// The OpenAI sampling parameters of one request, in the order they are applied (a later one wins).
type Sampling<'a> = [(&'a str, Option<Value>)];

/// What `/api/chat` and `/api/generate` share, resolved from the request and the deployment.
#[derive(Debug, Default)]
struct Switches {
    /// Ollama `options`.
    options: Map<String, Value>,
    /// `format`: `"json"` or a JSON schema.
    format: Option<Value>,
    /// `think`: a bool, or an effort string for gpt-oss.
    think: Option<Value>,
    /// `keep_alive`.
    keep_alive: Option<Value>,
    /// Route-specific top-level fields (`suffix`, `system`, … for generate), request over deployment.
    top: Map<String, Value>,
}

/// The request's view for [`switches`].
struct RequestKnobs<'a> {
    /// OpenAI sampling parameters, typed fields turned into values.
    sampling: &'a Sampling<'a>,
    /// The request's unknown fields.
    extra: &'a Map<String, Value>,
    /// `response_format`.
    response_format: Option<&'a Value>,
    /// `reasoning_effort`.
    reasoning_effort: Option<&'a str>,
    /// Top-level Ollama fields this route lifts out of the request and the deployment.
    lift: &'a [&'a str],
    /// The model the engine is asked for (reasoning switches depend on the model family).
    model: &'a str,
}

/// Resolves options and switches. The deployment's `litellm_params` come first and the request's fields second, so
/// the client wins; within each, native Ollama options beat mapped OpenAI ones (`repeat_penalty` over
/// `frequency_penalty`).
fn switches(target: &EngineTarget, req: RequestKnobs<'_>) -> Result<Switches, Error> {
    let deployment = &target.extra_params;
    let mut out = Switches::default();

    for (key, value) in deployment.iter().filter(|(_, v)| !v.is_null()) {
        map_sampling(&mut out.options, key, value);
    }
    for (key, value) in deployment.iter().filter(|(_, v)| !v.is_null()) {
        if key == "options" {
            merge_object(&mut out.options, value);
        } else if req.lift.contains(&key.as_str()) {
            out.top.insert(key.clone(), value.clone());
        } else if !NOT_OPTIONS.contains(&key.as_str()) && !is_sampling(key) {
            out.options.insert(key.clone(), value.clone());
        }
    }

    for (key, value) in req.sampling {
        if let Some(value) = value.as_ref().filter(|v| !v.is_null()) {
            map_sampling(&mut out.options, key, value);
        }
    }
    for (key, value) in req.extra.iter().filter(|(_, v)| !v.is_null()) {
        if OPTION_KEYS.contains(&key.as_str()) {
            out.options.insert(key.clone(), value.clone());
        } else if req.lift.contains(&key.as_str()) {
            out.top.insert(key.clone(), value.clone());
        }
    }
    if let Some(options) = req.extra.get("options") {
        merge_object(&mut out.options, options);
    }

    // A `response_format` the client sent, even `text`, decides; the deployment's only fills in when it sent none.
    out.format = match (non_null(req.response_format), non_null(req.extra.get("format"))) {
        (Some(rf), _) => format_of(rf)?,
        (None, Some(format)) => Some(format.clone()),
        (None, None) => match non_null(deployment.get("response_format")) {
            Some(rf) => format_of(rf)?,
            None => non_null(deployment.get("format")).cloned(),
        },
    };

    let model = req.model;
    out.think = non_null(req.extra.get("think"))
        .cloned()
        .or_else(|| req.reasoning_effort.map(|e| think_of(e, model)))
        .or_else(|| thinking_effort(req.extra.get("thinking")).map(|e| think_of(e, model)))
        .or_else(|| non_null(deployment.get("think")).cloned())
        .or_else(|| deployment.get("reasoning_effort").and_then(Value::as_str).map(|e| think_of(e, model)));

    out.keep_alive = non_null(req.extra.get("keep_alive"))
        .or(target.keep_alive.as_ref())
        .or_else(|| non_null(deployment.get("keep_alive")))
        .cloned();
    Ok(out)
}

fn non_null(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| !v.is_null())
}

fn is_sampling(key: &str) -> bool {
    matches!(
        key,
        "max_tokens"
            | "max_completion_tokens"
            | "temperature"
            | "top_p"
            | "seed"
            | "stop"
            | "frequency_penalty"
            | "presence_penalty"
    )
}

/// Maps one OpenAI sampling parameter into `options`; other keys are left alone.
fn map_sampling(options: &mut Map<String, Value>, key: &str, value: &Value) {
    let name = match key {
        "max_tokens" | "max_completion_tokens" => "num_predict",
        "temperature" | "top_p" | "seed" | "presence_penalty" => key,
        // LiteLLM copies the value as is, though the scales differ (OpenAI 0 = off, Ollama 1 = off).
        "frequency_penalty" => "repeat_penalty",
        "stop" => {
            let stop = match value {
                Value::String(s) => Value::Array(vec![Value::String(s.clone())]),
                other => other.clone(),
            };
            options.insert("stop".to_owned(), stop);
            return;
        }
        _ => return,
    };
    options.insert(name.to_owned(), value.clone());
}

fn merge_object(options: &mut Map<String, Value>, value: &Value) {
    if let Value::Object(map) = value {
        for (k, v) in map.iter().filter(|(_, v)| !v.is_null()) {
            options.insert(k.clone(), v.clone());
        }
    }
}

/// `stop` as a value for [`map_sampling`].
fn stop_value(stop: &Option<Stop>) -> Option<Value> {
    stop.as_ref().map(|s| match s {
        Stop::One(s) => Value::Array(vec![Value::String(s.clone())]),
        Stop::Many(v) => Value::Array(v.iter().cloned().map(Value::String).collect()),
    })
}

/// `response_format` → Ollama `format`.
fn format_of(response_format: &Value) -> Result<Option<Value>, Error> {
    match response_format.get("type").and_then(Value::as_str) {
        Some("json_object") => Ok(Some(Value::String("json".to_owned()))),
        Some("json_schema") => Ok(Some(
            response_format
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .filter(|s| s.is_object())
                .cloned()
                // A json_schema without a schema still asks for JSON.
                .unwrap_or_else(|| Value::String("json".to_owned())),
        )),
        Some("text") => Ok(None),
        _ => Err(Error::invalid(
            "'response_format.type' must be 'text', 'json_object' or 'json_schema'",
            Some("response_format"),
        )),
    }
}

/// Anthropic's `thinking: {type, budget_tokens}` (Cline sends it on chat completions) as a reasoning effort:
/// `disabled` is off; `enabled` is low below 4,096 budget tokens, medium below 16,384, high above.
fn thinking_effort(thinking: Option<&Value>) -> Option<&'static str> {
    let thinking = thinking?;
    match thinking.get("type").and_then(Value::as_str)? {
        "enabled" => Some(match thinking.get("budget_tokens").and_then(Value::as_u64) {
            Some(b) if b < 4096 => "low",
            Some(b) if b < 16384 => "medium",
            Some(_) => "high",
            None => "medium",
        }),
        "disabled" => Some("none"),
        _ => None,
    }
}

/// `reasoning_effort` → Ollama `think`: gpt-oss takes the effort level itself, other models only on/off.
fn think_of(effort: &str, model: &str) -> Value {
    let name = model.rsplit('/').next().unwrap_or(model);
    match effort {
        "low" | "medium" | "high" if name.starts_with("gpt-oss") => Value::String(effort.to_owned()),
        "low" | "medium" | "high" => Value::Bool(true),
        // `none`, `minimal` and anything else turn thinking off, as LiteLLM.
        _ => Value::Bool(false),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Message content.
// ---------------------------------------------------------------------------------------------------------------

/// The text of a message's content (text parts joined with newlines), its images appended to `images`.
fn content_text<'a>(
    content: Option<&'a MessageContent>,
    index: usize,
    images: &mut Vec<&'a str>,
) -> Result<Cow<'a, str>, Error> {
    let parts = match content {
        None => return Ok(Cow::Borrowed("")),
        Some(MessageContent::Text(text)) => return Ok(Cow::Borrowed(text)),
        Some(MessageContent::Parts(parts)) => parts,
    };
    let mut texts: Vec<&str> = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        match part.kind.as_str() {
            "text" => texts.push(part.text.as_deref().unwrap_or("")),
            "image_url" => images.push(image_of(part, index, j)?),
            other => {
                return Err(Error::invalid(
                    format!("Content parts of type '{other}' are not supported by Ollama"),
                    Some(&format!("messages[{index}].content[{j}].type")),
                ))
            }
        }
    }
    Ok(match texts.as_slice() {
        [] => Cow::Borrowed(""),
        [one] => Cow::Borrowed(one),
        many => Cow::Owned(many.join("\n")),
    })
}

/// The base64 payload of an `image_url` part.
fn image_of(part: &ContentPart, index: usize, j: usize) -> Result<&str, Error> {
    let param = || format!("messages[{index}].content[{j}].image_url");
    let url = part
        .image_url
        .as_ref()
        .map(|u| u.url())
        .ok_or_else(|| Error::invalid("An 'image_url' part needs an 'image_url'", Some(&param())))?;
    match url.strip_prefix("data:") {
        Some(rest) => match rest.split_once(',') {
            Some((meta, data)) if meta.ends_with(";base64") => Ok(data),
            _ => Err(Error::invalid("Image data URLs must be base64-encoded", Some(&param()))),
        },
        // Ollama only decodes base64 and answers 400 for a URL; fetching it would be I/O, which providers never
        // do, so http(s) URLs (and bare base64) go as sent, as LiteLLM's chat path does.
        None => Ok(url),
    }
}

/// Tool call id → function name over the assistant turns, for Ollama's `tool_name` on tool results.
fn tool_names(messages: &[crate::protocol::openai::ChatMessage]) -> HashMap<&str, &str> {
    messages
        .iter()
        .filter_map(|m| m.tool_calls.as_deref())
        .flatten()
        .filter_map(|c| Some((c.id.as_deref()?, c.function.name.as_str())))
        .collect()
}

/// OpenAI tool call arguments (a JSON string) → Ollama's object; a string that does not parse goes as is.
fn arguments_value(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(Map::new());
    }
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_owned()))
}

// ---------------------------------------------------------------------------------------------------------------
// The engine's reply: one `/api/chat` or `/api/generate` object, whole or one stream line.
// ---------------------------------------------------------------------------------------------------------------

/// One Ollama reply object. Strings borrow from the body when they hold no escapes.
#[derive(Debug, Default, Deserialize)]
struct Reply<'a> {
    /// `/api/chat`: the assistant message (or its next piece).
    #[serde(borrow)]
    message: Option<ReplyMessage<'a>>,
    /// `/api/generate`: the text (or its next piece).
    #[serde(borrow)]
    response: Option<Cow<'a, str>>,
    /// `/api/generate`: reasoning text.
    #[serde(borrow)]
    thinking: Option<Cow<'a, str>>,
    /// The last object of an answer.
    #[serde(default)]
    done: bool,
    /// `stop`, `length`, `load`, …
    #[serde(borrow)]
    done_reason: Option<Cow<'a, str>>,
    /// Prompt tokens.
    prompt_eval_count: Option<u64>,
    /// Nanoseconds spent reading them.
    prompt_eval_duration: Option<u64>,
    /// Generated tokens.
    eval_count: Option<u64>,
    /// Nanoseconds spent generating them.
    eval_duration: Option<u64>,
    /// Nanoseconds spent loading the model for this answer (on the last object).
    load_duration: Option<u64>,
    /// Set instead of everything else when the engine fails mid-answer.
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

impl Reply<'_> {
    /// `load_duration`, when the engine gave it.
    fn load_duration(&self) -> Option<std::time::Duration> {
        self.load_duration.map(std::time::Duration::from_nanos)
    }

    /// The tokens the engine reported (prompt and generated), when it gave either count.
    fn tokens(&self) -> Option<Tokens> {
        tokens(self.prompt_eval_count, self.eval_count)
    }

    /// The counts with the time each took, when the engine gave them.
    fn timings(&self) -> Option<Timings> {
        timings([self.prompt_eval_count, self.prompt_eval_duration, self.eval_count, self.eval_duration])
    }
}

/// Ollama's `prompt_eval_count`, `prompt_eval_duration`, `eval_count` and `eval_duration` (ns) as timings;
/// `None` when it gave neither duration.
fn timings([prompt, prompt_ns, generated, generated_ns]: [Option<u64>; 4]) -> Option<Timings> {
    (prompt_ns.is_some() || generated_ns.is_some()).then(|| Timings {
        prompt_n: prompt.unwrap_or(0),
        prompt_ms: prompt_ns.unwrap_or(0) as f64 / 1e6,
        predicted_n: generated.unwrap_or(0),
        predicted_ms: generated_ns.unwrap_or(0) as f64 / 1e6,
    })
}

/// Prompt and generated tokens, when Ollama gave either count (it leaves `prompt_eval_count` out when the
/// whole prompt came from its cache).
fn tokens(prompt: Option<u64>, generated: Option<u64>) -> Option<Tokens> {
    (prompt.is_some() || generated.is_some())
        .then(|| Tokens { input: prompt.unwrap_or(0), output: generated.unwrap_or(0) })
}

/// `message` of an `/api/chat` reply.
#[derive(Debug, Default, Deserialize)]
struct ReplyMessage<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tool_calls: Option<Vec<ReplyToolCall<'a>>>,
}

/// One tool call of a reply. Ollama sends each call whole, arguments as an object.
#[derive(Debug, Deserialize)]
struct ReplyToolCall<'a> {
    /// Recent Ollama versions give an id; older ones none.
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    function: ReplyFunction<'a>,
}

#[derive(Debug, Deserialize)]
struct ReplyFunction<'a> {
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    arguments: Option<&'a RawValue>,
}

impl<'a> ReplyToolCall<'a> {
    /// The call id, made up when the engine gave none (OpenAI clients key tool results by it).
    fn id(&self) -> Cow<'a, str> {
        match &self.id {
            Some(id) if !id.is_empty() => id.clone(),
            _ => Cow::Owned(new_call_id()),
        }
    }

    /// The arguments as OpenAI's JSON string: an object's JSON text as sent, a string's contents.
    fn arguments(&self) -> Cow<'a, str> {
        match self.function.arguments.map(RawValue::get) {
            None | Some("null") => Cow::Borrowed("{}"),
            Some(raw) if raw.starts_with('"') => {
                serde_json::from_str::<String>(raw).map(Cow::Owned).unwrap_or(Cow::Borrowed(raw))
            }
            Some(raw) => Cow::Borrowed(raw),
        }
    }
}

/// A fresh tool call id in OpenAI's `call_…` form.
fn new_call_id() -> String {
    format!("call_{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..))
}

/// `bytes`, with invalid UTF-8 replaced by U+FFFD: an engine that cuts a character in two (llama.cpp at
/// `max_tokens`, a model emitting raw bytes) still gets its answer through, as text can carry it.
fn valid_utf8(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match std::str::from_utf8(bytes) {
        Ok(_) => std::borrow::Cow::Borrowed(bytes),
        Err(_) => std::borrow::Cow::Owned(String::from_utf8_lossy(bytes).into_owned().into_bytes()),
    }
}

/// Parses a whole (non-streamed) reply; a reply carrying `error` is the engine's failure.
fn parse_reply(body: &[u8]) -> Result<Reply<'_>, Error> {
    let reply: Reply<'_> = serde_json::from_slice(body)
        .map_err(|e| Error::BadUpstreamResponse(format!("Ollama answered with a body llmux cannot read: {e}")))?;
    if reply.error.is_some() {
        return Err(engine_failure(body));
    }
    Ok(reply)
}

/// An `{"error": …}` object received with a 2xx status (mid-stream, typically): the engine failed.
fn engine_failure(body: &[u8]) -> Error {
    upstream_error(StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new(), body)
}

/// OpenAI's `finish_reason` for Ollama's `done_reason`.
fn finish_reason(done_reason: Option<&str>, tool_calls: bool) -> &'static str {
    match done_reason {
        _ if tool_calls => "tool_calls",
        Some("length") => "length",
        // `stop`, and `load`/`unload`/absent, which only end an answer normally.
        _ => "stop",
    }
}

/// Splits a leading `<think>…</think>` block out of `content`: (reasoning, answer). An unclosed block is all
/// reasoning (the answer was cut off while thinking), as the stream converter sees it.
fn split_think(content: &str) -> (Option<&str>, &str) {
    let Some(rest) = content.trim_start().strip_prefix(THINK_OPEN) else {
        return (None, content);
    };
    match rest.find(THINK_CLOSE) {
        Some(end) => (Some(rest[..end].trim()), rest[end + THINK_CLOSE.len()..].trim_start()),
        None => (Some(rest.trim()), ""),
    }
}

const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";
