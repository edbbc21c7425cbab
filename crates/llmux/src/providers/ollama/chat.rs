//! `POST /api/chat`: OpenAI chat requests to Ollama's chat shape and its answer back.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

use super::reply::{finish_reason, parse_reply, split_think, valid_utf8, Reply, ReplyToolCall};
use super::request::{arguments_value, content_text, stop_value, switches, tool_names, RequestKnobs};
use super::{to_body, to_response};
use crate::config::EngineTarget;
use crate::error::Error;
use crate::protocol::openai::{
    new_id, parse_body, unix_now, ChatChoice, ChatCompletion, ChatMessage, ChatRequest, FunctionCall, ResponseMessage,
    ToolCall, Usage,
};
use crate::providers::{Call, Converted};

/// The `/api/chat` request body.
#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    /// Always explicit: Ollama streams unless told otherwise.
    stream: bool,
    #[serde(skip_serializing_if = "Map::is_empty")]
    options: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Cow<'a, [Value]>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    think: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<Value>,
}

/// One Ollama chat message.
#[derive(Debug, Serialize)]
pub(super) struct Message<'a> {
    pub(super) role: &'a str,
    pub(super) content: Cow<'a, str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) images: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) thinking: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) tool_calls: Vec<OutToolCall<'a>>,
    /// Ollama's name for the function a tool result answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tool_name: Option<&'a str>,
    /// Kept for engines behind Ollama-compatible proxies; Ollama ignores it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tool_call_id: Option<&'a str>,
}

/// An assistant tool call in Ollama's shape: arguments as an object.
#[derive(Debug, Serialize)]
pub(super) struct OutToolCall<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<&'a str>,
    pub(super) function: OutFunction<'a>,
}

/// The function of an [`OutToolCall`].
#[derive(Debug, Serialize)]
pub(super) struct OutFunction<'a> {
    pub(super) name: &'a str,
    pub(super) arguments: Value,
}

/// Builds the `/api/chat` body.
pub(super) fn request(call: &Call<'_>, target: &EngineTarget) -> Result<Bytes, Error> {
    let req: ChatRequest = parse_body(call.body)?;
    let sampling = sampling(&req);
    let switches = switches(
        target,
        RequestKnobs {
            model: call.model,
            sampling: &sampling,
            extra: &req.extra,
            response_format: req.response_format.as_ref(),
            reasoning_effort: req.reasoning_effort.as_deref(),
            lift: &[],
        },
    )?;
    let body = ChatBody {
        model: call.model,
        messages: messages(&req.messages)?,
        stream: call.head.stream,
        options: switches.options,
        format: switches.format,
        tools: tools(&req),
        think: switches.think,
        keep_alive: switches.keep_alive,
    };
    to_body(&body)
}

/// The typed OpenAI sampling fields of a chat request, in the order they apply (`max_completion_tokens`, the
/// current name, over `max_tokens`).
pub(super) fn sampling(req: &ChatRequest) -> [(&'static str, Option<Value>); 8] {
    [
        ("max_tokens", req.max_tokens.map(Value::from)),
        ("max_completion_tokens", req.max_completion_tokens.map(Value::from)),
        ("temperature", req.temperature.map(Value::from)),
        ("top_p", req.top_p.map(Value::from)),
        ("seed", req.seed.map(Value::from)),
        ("stop", stop_value(&req.stop)),
        ("frequency_penalty", req.frequency_penalty.map(Value::from)),
        ("presence_penalty", req.presence_penalty.map(Value::from)),
    ]
}

/// `tools` as sent (Ollama takes OpenAI's tool schema), legacy `functions` wrapped into tools. `tool_choice` is
/// never sent (it hangs Ollama, per LiteLLM); `"none"` is honoured by not offering the tools at all.
fn tools(req: &ChatRequest) -> Option<Cow<'_, [Value]>> {
    if req.tool_choice.as_ref().and_then(Value::as_str) == Some("none") {
        return None;
    }
    if let Some(tools) = req.tools.as_deref().filter(|t| !t.is_empty()) {
        return Some(Cow::Borrowed(tools));
    }
    let functions = req.extra.get("functions")?.as_array().filter(|f| !f.is_empty())?;
    Some(Cow::Owned(functions.iter().map(|f| serde_json::json!({"type": "function", "function": f})).collect()))
}

/// OpenAI messages → Ollama messages.
pub(super) fn messages(messages: &[ChatMessage]) -> Result<Vec<Message<'_>>, Error> {
    let names = tool_names(messages);
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "developer" => "system",
            "function" => "tool",
            role @ ("system" | "user" | "assistant" | "tool") => role,
            other => {
                return Err(Error::invalid(
                    format!("Invalid role '{other}': expected system, developer, user, assistant or tool"),
                    Some(&format!("messages[{i}].role")),
                ))
            }
        };
        let mut images = Vec::new();
        let content = content_text(m.content.as_ref(), i, &mut images)?;
        let tool_calls = m
            .tool_calls
            .iter()
            .flatten()
            .map(|c| OutToolCall {
                id: c.id.as_deref(),
                function: OutFunction { name: &c.function.name, arguments: arguments_value(&c.function.arguments) },
            })
            .collect();
        let tool_name = if role == "tool" {
            m.tool_call_id
                .as_deref()
                .and_then(|id| names.get(id).copied())
                .or_else(|| m.extra.get("name").and_then(Value::as_str))
        } else {
            None
        };
        out.push(Message {
            role,
            content,
            images,
            thinking: m.reasoning_content.as_deref().filter(|t| !t.is_empty()),
            tool_calls,
            tool_name,
            tool_call_id: m.tool_call_id.as_deref(),
        });
    }
    Ok(out)
}

/// `/api/chat` answer → `chat.completion`.
pub(super) fn response(call: &Call<'_>, body: &[u8]) -> Result<Converted, Error> {
    let body = valid_utf8(body);
    let mut reply = parse_reply(&body)?;
    let message = reply.message.take().unwrap_or_default();
    let out = chat_completion(call, message.content, message.thinking, message.tool_calls.unwrap_or_default(), &reply)?;
    Ok(Converted { body: out, load_duration: reply.load_duration(), usage: reply.tokens(), timings: reply.timings() })
}

/// Builds a `chat.completion` from an answer's parts (shared with `/api/generate` answering a chat request).
pub(super) fn chat_completion(
    call: &Call<'_>,
    content: Option<Cow<'_, str>>,
    thinking: Option<Cow<'_, str>>,
    tool_calls: Vec<ReplyToolCall<'_>>,
    reply: &Reply<'_>,
) -> Result<Bytes, Error> {
    let content = content.unwrap_or_default();
    let (reasoning, text) = match thinking.as_deref().filter(|t| !t.is_empty()) {
        Some(thinking) => (Some(thinking), content.as_ref()),
        None => split_think(&content),
    };
    let tool_calls: Vec<ToolCall> = tool_calls
        .iter()
        .map(|c| ToolCall {
            id: Some(c.id().into_owned()),
            kind: Some("function".to_owned()),
            function: FunctionCall {
                name: c.function.name.clone().into_owned(),
                arguments: c.arguments().into_owned(),
            },
            index: None,
        })
        .collect();
    let has_tools = !tool_calls.is_empty();
    let completion = ChatCompletion {
        id: new_id("chatcmpl"),
        object: "chat.completion".to_owned(),
        created: unix_now(),
        model: call.head.model.clone().into_owned(),
        choices: vec![ChatChoice {
            index: 0,
            message: ResponseMessage {
                role: Some("assistant".to_owned()),
                // OpenAI leaves content null on a pure tool-call turn.
                content: (!(has_tools && text.is_empty())).then(|| text.to_owned()),
                reasoning_content: reasoning.filter(|r| !r.is_empty()).map(str::to_owned),
                tool_calls: has_tools.then_some(tool_calls),
            },
            finish_reason: Some(finish_reason(reply.done_reason.as_deref(), has_tools).to_owned()),
        }],
        usage: Some(Usage::new(reply.prompt_eval_count.unwrap_or(0), reply.eval_count.unwrap_or(0))),
    };
    to_response(&completion)
}
