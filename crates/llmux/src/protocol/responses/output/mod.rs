//! An OpenAI chat answer → the Response object, whole or as the Responses event stream ([`stream`]); either way
//! the finished response is stored (unless the request said `store: false`). This module holds the output items,
//! the Response object and the whole answer, which the stream builds its events from.

mod stream;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::{Store, Stored, Turn};
use crate::error::Error;
use crate::protocol::openai::{new_id, ChatMessage, FunctionCall, MessageContent, ToolCall};
use crate::protocol::translate::{to_bytes, Completion, Usage};

pub(crate) use stream::Encoder;

/// One output item.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Item {
    /// The engine's reasoning text (there is no summary: engines do not write one).
    Reasoning {
        /// `rs_…`.
        id: String,
        /// Always empty.
        summary: Vec<Value>,
        /// One `reasoning_text` part.
        content: Vec<Part>,
        /// `in_progress`, `completed`, `incomplete`.
        status: &'static str,
    },
    /// The answer text.
    Message {
        /// `msg_…`.
        id: String,
        /// `in_progress`, `completed`, `incomplete`.
        status: &'static str,
        /// Always `assistant`.
        role: &'static str,
        /// One `output_text` part (none while it is only added).
        content: Vec<Part>,
    },
    /// A call of a `function` tool.
    FunctionCall {
        /// `fc_…`.
        id: String,
        /// The engine's call id (what `function_call_output` answers).
        call_id: String,
        /// The function's name (within its namespace).
        name: String,
        /// JSON text.
        arguments: String,
        /// `in_progress`, `completed`, `incomplete`.
        status: &'static str,
        /// The namespace of a tool offered in a `namespace`.
        #[serde(skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
    },
    /// A call of a `custom` (freeform) tool.
    CustomToolCall {
        /// `ctc_…`.
        id: String,
        /// The engine's call id.
        call_id: String,
        /// The tool's name.
        name: String,
        /// The free-form input.
        input: String,
        /// `in_progress`, `completed`, `incomplete`.
        status: &'static str,
    },
}

/// A text part of a message or reasoning item.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Part {
    #[serde(rename = "type")]
    kind: &'static str,
    text: String,
    /// `[]` on `output_text`, absent on `reasoning_text`.
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<Vec<Value>>,
}

impl Part {
    fn output_text(text: String) -> Part {
        Part { kind: "output_text", text, annotations: Some(Vec::new()) }
    }
    fn reasoning_text(text: String) -> Part {
        Part { kind: "reasoning_text", text, annotations: None }
    }
}

fn item_id(prefix: &str) -> String {
    new_id(prefix).replace('-', "_")
}

/// The output item for a call the engine made to chat function `chat_name`.
fn call_item(
    turn: &Turn,
    id: String,
    call_id: String,
    chat_name: &str,
    arguments: String,
    status: &'static str,
) -> Item {
    if turn.tools.custom.contains(chat_name) {
        let input = serde_json::from_str::<Value>(&arguments)
            .ok()
            .and_then(|v| v.get("input").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or(arguments);
        return Item::CustomToolCall { id, call_id, name: chat_name.to_owned(), input, status };
    }
    let (name, namespace) = match turn.tools.namespaced.get(chat_name) {
        Some((ns, name)) => (name.clone(), Some(ns.clone())),
        None => (chat_name.to_owned(), None),
    };
    Item::FunctionCall { id, call_id, name, arguments, status, namespace }
}

/// Why an answer is incomplete, from the engine's finish reason.
fn incomplete_reason(finish_reason: Option<&str>) -> Option<&'static str> {
    match finish_reason {
        Some("length") => Some("max_output_tokens"),
        Some("content_filter") => Some("content_filter"),
        _ => None,
    }
}

fn usage_json(usage: Option<Usage>) -> Value {
    let u = usage.unwrap_or_default();
    let total = if u.total_tokens > 0 { u.total_tokens } else { u.prompt_tokens.saturating_add(u.completion_tokens) };
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens.unwrap_or(0)},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens.unwrap_or(0)},
        "total_tokens": total,
    })
}

/// The Response object: the request's echo fields plus these. Serialised straight from borrowed parts (building
/// it as a `Value` was most of the translation's CPU).
#[derive(Serialize)]
struct ResponseView<'a> {
    #[serde(flatten)]
    base: &'a super::Echo,
    status: &'a str,
    output: &'a [Item],
    usage: Option<Value>,
    error: Value,
    incomplete_details: Option<Reason<'a>>,
}

#[derive(Serialize)]
struct Reason<'a> {
    reason: &'a str,
}

fn response<'a>(
    turn: &'a Turn,
    status: &'a str,
    output: &'a [Item],
    usage: Option<Value>,
    reason: Option<&'a str>,
    error: Value,
) -> ResponseView<'a> {
    ResponseView {
        base: &turn.base,
        status,
        output,
        usage,
        error,
        incomplete_details: reason.map(|reason| Reason { reason }),
    }
}

/// The assistant turn as a chat message, for the stored conversation.
fn assistant_message(output: &[Item]) -> ChatMessage {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for item in output {
        match item {
            Item::Reasoning { content, .. } => content.iter().for_each(|p| reasoning.push_str(&p.text)),
            Item::Message { content, .. } => content.iter().for_each(|p| text.push_str(&p.text)),
            Item::FunctionCall { call_id, name, arguments, namespace, .. } => calls.push(ToolCall {
                id: Some(call_id.clone()),
                kind: Some("function".into()),
                function: FunctionCall {
                    name: super::ToolNames::chat_name(namespace.as_deref(), name),
                    arguments: arguments.clone(),
                },
                index: None,
            }),
            Item::CustomToolCall { call_id, name, input, .. } => calls.push(ToolCall {
                id: Some(call_id.clone()),
                kind: Some("function".into()),
                function: FunctionCall { name: name.clone(), arguments: json!({ "input": input }).to_string() },
                index: None,
            }),
        }
    }
    ChatMessage {
        role: "assistant".into(),
        content: (!text.is_empty() || calls.is_empty()).then_some(MessageContent::Text(text)),
        tool_calls: (!calls.is_empty()).then_some(calls),
        tool_call_id: None,
        reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
        extra: Map::new(),
    }
}

/// Keeps a finished response (its JSON text). The turn's conversation moves into the
/// store (it is the request's whole prompt: copying it per answer showed in the CPU per request).
fn keep(turn: &mut Turn, store: &Store, json: Box<RawValue>, output: &[Item]) {
    let mut conversation = std::mem::take(&mut turn.conversation);
    conversation.push(assistant_message(output));
    let input_items = std::mem::take(&mut turn.input_items);
    store.put(turn.id.clone(), Stored::new(json, conversation, input_items));
}

/// A whole chat completion as a Response object's JSON (stored).
pub(crate) fn whole(turn: &mut Turn, completion: Completion, store: &Store) -> Result<Bytes, Error> {
    let choice = completion.choices.into_iter().next().unwrap_or_default();
    let reason = incomplete_reason(choice.finish_reason.as_deref());
    let item_status = if reason.is_some() { "incomplete" } else { "completed" };
    let message = choice.message;
    let mut output = Vec::new();
    if let Some(reasoning) = message.reasoning_content.filter(|r| !r.is_empty()) {
        output.push(Item::Reasoning {
            id: item_id("rs"),
            summary: Vec::new(),
            content: vec![Part::reasoning_text(reasoning)],
            status: item_status,
        });
    }
    let calls = message.tool_calls.unwrap_or_default();
    let text = message.content.unwrap_or_default();
    if !text.is_empty() || calls.is_empty() {
        output.push(Item::Message {
            id: item_id("msg"),
            status: item_status,
            role: "assistant",
            content: vec![Part::output_text(text)],
        });
    }
    for call in calls {
        let call_id = call.id.unwrap_or_else(|| item_id("call"));
        output.push(call_item(turn, item_id("fc"), call_id, &call.function.name, call.function.arguments, "completed"));
    }
    let status = if reason.is_some() { "incomplete" } else { "completed" };
    let bytes = {
        let r = response(turn, status, &output, Some(usage_json(completion.usage)), reason, Value::Null);
        to_bytes(&r)?
    };
    // The stored copy is the same text: parsed back into a raw value without building a tree.
    if turn.store {
        let json = std::str::from_utf8(&bytes).ok().and_then(|text| RawValue::from_string(text.to_owned()).ok());
        if let Some(json) = json {
            keep(turn, store, json, &output);
        }
    }
    Ok(bytes)
}
