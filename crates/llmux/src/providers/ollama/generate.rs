//! `POST /api/generate`: one prompt in, text out. Serves `ollama/` chat requests (messages flattened into a
//! prompt as LiteLLM's `ollama_pt` does) and legacy `/v1/completions` (the raw prompt).

use std::borrow::Cow;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

use super::chat::{chat_completion, sampling};
use super::reply::{finish_reason, parse_reply, valid_utf8};
use super::request::{arguments_value, content_text, stop_value, switches, RequestKnobs};
use super::{to_body, to_response};
use crate::config::EngineTarget;
use crate::error::Error;
use crate::protocol::openai::{
    new_id, parse_body, unix_now, ChatMessage, ChatRequest, CompletionRequest, Operation, TextChoice, TextCompletion,
    Usage,
};
use crate::providers::{Call, Converted};

/// Top-level `/api/generate` fields a request or a deployment may set.
const LIFT: &[&str] = &["suffix", "system", "template", "raw"];

/// The `/api/generate` request body.
#[derive(Serialize)]
struct GenerateBody<'a> {
    model: &'a str,
    prompt: Cow<'a, str>,
    /// Always explicit: Ollama streams unless told otherwise.
    stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    images: Vec<&'a str>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    options: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    think: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<Value>,
    /// `suffix`, `system`, `template`, `raw` when set.
    #[serde(flatten)]
    top: Map<String, Value>,
}

/// Builds the `/api/generate` body for a chat or a legacy completion request.
pub(super) fn request(call: &Call<'_>, target: &EngineTarget) -> Result<Bytes, Error> {
    if call.op == Operation::Completion {
        completion_request(call, target)
    } else {
        chat_request(call, target)
    }
}

fn chat_request(call: &Call<'_>, target: &EngineTarget) -> Result<Bytes, Error> {
    let req: ChatRequest = parse_body(call.body)?;
    let offers_tools = req.tools.as_ref().is_some_and(|t| !t.is_empty())
        || req.extra.get("functions").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    // LiteLLM drops tools here without a word and the model then answers as if it had none; a clear refusal
    // tells the operator to use the prefix that supports them. `tool_choice: "none"` asks for no calls anyway.
    if offers_tools && req.tool_choice.as_ref().and_then(Value::as_str) != Some("none") {
        return Err(Error::Unsupported {
            message: format!(
                "Model '{}' is served through ollama/ (Ollama's /api/generate), which does not support tools; \
                 use the ollama_chat/ prefix for tool calling",
                call.head.model
            ),
            not_implemented: false,
        });
    }
    let sampling = sampling(&req);
    let switches = switches(
        target,
        RequestKnobs {
            model: call.model,
            sampling: &sampling,
            extra: &req.extra,
            response_format: req.response_format.as_ref(),
            reasoning_effort: req.reasoning_effort.as_deref(),
            lift: LIFT,
        },
    )?;
    let mut images = Vec::new();
    let prompt = prompt(&req.messages, &mut images)?;
    to_body(&GenerateBody {
        model: call.model,
        prompt: Cow::Owned(prompt),
        stream: call.head.stream,
        images,
        options: switches.options,
        format: switches.format,
        think: switches.think,
        keep_alive: switches.keep_alive,
        top: switches.top,
    })
}

fn completion_request(call: &Call<'_>, target: &EngineTarget) -> Result<Bytes, Error> {
    let req: CompletionRequest = parse_body(call.body)?;
    let prompt = match &req.prompt {
        Value::String(s) => s.as_str(),
        Value::Array(items) => match items.as_slice() {
            [Value::String(s)] => s.as_str(),
            // Ollama answers one prompt per call; OpenAI's batch of prompts would need several calls.
            [_, _, ..] => {
                return Err(Error::invalid(
                    "Ollama completes one prompt per request: send 'prompt' as a string or a one-element list",
                    Some("prompt"),
                ))
            }
            _ => return Err(Error::invalid("'prompt' must be a string or a list of one string", Some("prompt"))),
        },
        _ => return Err(Error::invalid("'prompt' must be a string or a list of one string", Some("prompt"))),
    };
    let sampling = [
        ("max_tokens", req.max_tokens.map(Value::from)),
        ("temperature", req.temperature.map(Value::from)),
        ("top_p", req.top_p.map(Value::from)),
        ("seed", req.seed.map(Value::from)),
        ("stop", stop_value(&req.stop)),
        ("frequency_penalty", req.extra.get("frequency_penalty").cloned()),
        ("presence_penalty", req.extra.get("presence_penalty").cloned()),
    ];
    let mut switches = switches(
        target,
        RequestKnobs {
            model: call.model,
            sampling: &sampling,
            extra: &req.extra,
            response_format: req.extra.get("response_format"),
            reasoning_effort: req.extra.get("reasoning_effort").and_then(Value::as_str),
            lift: LIFT,
        },
    )?;
    if let Some(suffix) = &req.suffix {
        switches.top.insert("suffix".to_owned(), Value::String(suffix.clone()));
    }
    to_body(&GenerateBody {
        model: call.model,
        prompt: Cow::Borrowed(prompt),
        stream: call.head.stream,
        images: Vec::new(),
        options: switches.options,
        format: switches.format,
        think: switches.think,
        keep_alive: switches.keep_alive,
        top: switches.top,
    })
}

/// Which `### …:` block a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    System,
    User,
    Assistant,
}

impl Block {
    fn header(self) -> &'static str {
        match self {
            Block::System => "### System:\n",
            Block::User => "### User:\n",
            Block::Assistant => "### Assistant:\n",
        }
    }
}

/// Flattens chat messages into LiteLLM's `ollama_pt` prompt: `### System:` / `### User:` / `### Assistant:`
/// blocks, consecutive messages of one block merged (joined with a newline, where LiteLLM glues them together),
/// tool results as user text, assistant tool calls as one JSON object per line under `Tool Calls:`. Images of
/// every message are collected into `images`.
pub(super) fn prompt<'a>(messages: &'a [ChatMessage], images: &mut Vec<&'a str>) -> Result<String, Error> {
    let mut prompt = String::new();
    let mut block: Option<Block> = None;
    let mut text = String::new();
    for (i, m) in messages.iter().enumerate() {
        let kind = match m.role.as_str() {
            "system" | "developer" => Block::System,
            "user" | "tool" | "function" => Block::User,
            "assistant" => Block::Assistant,
            other => {
                return Err(Error::invalid(
                    format!("Invalid role '{other}': expected system, developer, user, assistant or tool"),
                    Some(&format!("messages[{i}].role")),
                ))
            }
        };
        if block != Some(kind) {
            flush(&mut prompt, block, &mut text);
            block = Some(kind);
        }
        let content = content_text(m.content.as_ref(), i, images)?;
        push_line(&mut text, &content);
        if let Some(calls) = m.tool_calls.as_deref().filter(|c| !c.is_empty()) {
            push_line(&mut text, "Tool Calls:");
            for c in calls {
                let call = serde_json::json!({
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": arguments_value(&c.function.arguments)},
                });
                push_line(&mut text, &call.to_string());
            }
        }
    }
    flush(&mut prompt, block, &mut text);
    Ok(prompt)
}

fn push_line(text: &mut String, line: &str) {
    if line.is_empty() {
        return;
    }
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(line);
}

fn flush(prompt: &mut String, block: Option<Block>, text: &mut String) {
    if let Some(block) = block.filter(|_| !text.is_empty()) {
        prompt.push_str(block.header());
        prompt.push_str(text);
        prompt.push_str("\n\n");
    }
    text.clear();
}

/// `/api/generate` answer → `chat.completion` or `text_completion`.
pub(super) fn response(call: &Call<'_>, body: &[u8]) -> Result<Converted, Error> {
    let body = valid_utf8(body);
    let mut reply = parse_reply(&body)?;
    let (load_duration, usage, timings) = (reply.load_duration(), reply.tokens(), reply.timings());
    if call.op != Operation::Completion {
        let (text, thinking) = (reply.response.take(), reply.thinking.take());
        let body = chat_completion(call, text, thinking, Vec::new(), &reply)?;
        return Ok(Converted { body, load_duration, usage, timings });
    }
    let completion = TextCompletion {
        id: new_id("cmpl"),
        object: "text_completion".to_owned(),
        created: unix_now(),
        model: call.head.model.clone().into_owned(),
        choices: vec![TextChoice {
            text: reply.response.take().unwrap_or_default().into_owned(),
            index: 0,
            logprobs: None,
            finish_reason: Some(finish_reason(reply.done_reason.as_deref(), false).to_owned()),
        }],
        usage: Some(Usage::new(reply.prompt_eval_count.unwrap_or(0), reply.eval_count.unwrap_or(0))),
    };
    Ok(Converted { body: to_response(&completion)?, load_duration, usage, timings })
}
