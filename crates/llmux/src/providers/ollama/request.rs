//! What `/api/chat` and `/api/generate` requests share: Ollama `options` and the switches (`format`, `think`,
//! `keep_alive`, top-level fields) resolved from the request and the deployment, and message content as Ollama
//! takes it (text, base64 images, tool names and arguments). The routes' own request shapes are in `chat.rs`
//! and `generate.rs`.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::config::EngineTarget;
use crate::error::Error;
use crate::protocol::openai::{ContentPart, MessageContent, Stop};

/// Ollama `options` a client may send at the top level of an OpenAI request (LiteLLM's provider-specific params).
/// Only these leave the request's unknown fields; anything else a client adds (`user`, `n`, …) has no Ollama
/// meaning.
pub(super) const OPTION_KEYS: &[&str] = &[
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
pub(super) const NOT_OPTIONS: &[&str] = &[
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
pub(super) type Sampling<'a> = [(&'a str, Option<Value>)];

/// What `/api/chat` and `/api/generate` share, resolved from the request and the deployment.
#[derive(Debug, Default)]
pub(super) struct Switches {
    /// Ollama `options`.
    pub(super) options: Map<String, Value>,
    /// `format`: `"json"` or a JSON schema.
    pub(super) format: Option<Value>,
    /// `think`: a bool, or an effort string for gpt-oss.
    pub(super) think: Option<Value>,
    /// `keep_alive`.
    pub(super) keep_alive: Option<Value>,
    /// Route-specific top-level fields (`suffix`, `system`, … for generate), request over deployment.
    pub(super) top: Map<String, Value>,
}

/// The request's view for [`switches`].
pub(super) struct RequestKnobs<'a> {
    /// OpenAI sampling parameters, typed fields turned into values.
    pub(super) sampling: &'a Sampling<'a>,
    /// The request's unknown fields.
    pub(super) extra: &'a Map<String, Value>,
    /// `response_format`.
    pub(super) response_format: Option<&'a Value>,
    /// `reasoning_effort`.
    pub(super) reasoning_effort: Option<&'a str>,
    /// Top-level Ollama fields this route lifts out of the request and the deployment.
    pub(super) lift: &'a [&'a str],
    /// The model the engine is asked for (reasoning switches depend on the model family).
    pub(super) model: &'a str,
}

/// Resolves options and switches. The deployment's `litellm_params` come first and the request's fields second, so
/// the client wins; within each, native Ollama options beat mapped OpenAI ones (`repeat_penalty` over
/// `frequency_penalty`).
pub(super) fn switches(target: &EngineTarget, req: RequestKnobs<'_>) -> Result<Switches, Error> {
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

pub(super) fn is_sampling(key: &str) -> bool {
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
pub(super) fn map_sampling(options: &mut Map<String, Value>, key: &str, value: &Value) {
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

pub(super) fn merge_object(options: &mut Map<String, Value>, value: &Value) {
    if let Value::Object(map) = value {
        for (k, v) in map.iter().filter(|(_, v)| !v.is_null()) {
            options.insert(k.clone(), v.clone());
        }
    }
}

/// `stop` as a value for [`map_sampling`].
pub(super) fn stop_value(stop: &Option<Stop>) -> Option<Value> {
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
pub(super) fn content_text<'a>(
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
pub(super) fn tool_names(messages: &[crate::protocol::openai::ChatMessage]) -> HashMap<&str, &str> {
    messages
        .iter()
        .filter_map(|m| m.tool_calls.as_deref())
        .flatten()
        .filter_map(|c| Some((c.id.as_deref()?, c.function.name.as_str())))
        .collect()
}

/// OpenAI tool call arguments (a JSON string) → Ollama's object; a string that does not parse goes as is.
pub(super) fn arguments_value(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(Map::new());
    }
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_owned()))
}
