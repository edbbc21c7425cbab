//! An OpenAI chat answer → the Response object, whole or as the Responses event stream; either way the
//! finished response is stored (unless the request said `store: false`).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::{Store, Stored, Turn};
use crate::error::Error;
use crate::protocol::openai::{new_id, ChatMessage, FunctionCall, MessageContent, ToolCall};
use crate::protocol::translate::{push_named_event, to_bytes, Chunk, ChunkEncoder, Completion, Usage};

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

/// A streamed event: its `type` and `sequence_number` with the event's own fields.
#[derive(Serialize)]
struct Event<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    sequence_number: u64,
    #[serde(flatten)]
    body: T,
}

/// The body of an event that carries the whole response.
#[derive(Serialize)]
struct WithResponse<'a> {
    response: &'a ResponseView<'a>,
}

/// The body of a text or reasoning delta (the per-token event).
#[derive(Serialize)]
struct TextDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: u32,
    delta: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<[(); 0]>,
}

/// The body of a function call's arguments delta.
#[derive(Serialize)]
struct ArgumentsDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    delta: &'a str,
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

/// The item being streamed now (one at a time: engines stream reasoning, then text, then calls).
#[derive(Debug)]
enum Open {
    Reasoning { index: usize, id: String, text: String },
    Message { index: usize, id: String, text: String },
    Call { chat_index: u32, index: usize, id: String, call_id: String, name: String, arguments: String },
}

/// Chat chunks → Responses events.
pub(crate) struct Encoder {
    turn: Turn,
    store: Arc<Store>,
    sequence: u64,
    started: bool,
    /// Finished items, in output order.
    done: Vec<Item>,
    open: Option<Open>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

impl Encoder {
    /// An encoder for `turn`'s answer, storing it in `store` when done.
    pub(crate) fn new(turn: Turn, store: Arc<Store>) -> Self {
        Encoder {
            turn,
            store,
            sequence: 0,
            started: false,
            done: Vec::new(),
            open: None,
            finish_reason: None,
            usage: None,
        }
    }

    fn emit<T: Serialize>(&mut self, out: &mut BytesMut, kind: &str, body: T) -> Result<(), Error> {
        let sequence_number = self.sequence;
        self.sequence += 1;
        push_named_event(out, kind, &Event { kind, sequence_number, body })
    }

    fn start(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        let (created, in_progress) = (self.sequence, self.sequence + 1);
        self.sequence += 2;
        let snapshot = response(&self.turn, "in_progress", &[], None, None, Value::Null);
        for (kind, sequence_number) in [("response.created", created), ("response.in_progress", in_progress)] {
            push_named_event(out, kind, &Event { kind, sequence_number, body: WithResponse { response: &snapshot } })?;
        }
        Ok(())
    }

    fn next_index(&self) -> usize {
        self.done.len() + usize::from(self.open.is_some())
    }

    fn added(&mut self, out: &mut BytesMut, index: usize, item: &Item) -> Result<(), Error> {
        self.emit(out, "response.output_item.added", json!({"output_index": index, "item": item}))
    }

    fn reasoning(&mut self, out: &mut BytesMut, delta: &str) -> Result<(), Error> {
        if !matches!(self.open, Some(Open::Reasoning { .. })) {
            self.close(out, "completed")?;
            let index = self.next_index();
            let id = item_id("rs");
            let item =
                Item::Reasoning { id: id.clone(), summary: Vec::new(), content: Vec::new(), status: "in_progress" };
            self.added(out, index, &item)?;
            self.open = Some(Open::Reasoning { index, id, text: String::new() });
        }
        if let Some(Open::Reasoning { index, id, text }) = &mut self.open {
            text.push_str(delta);
            let event = TextDelta { item_id: id, output_index: *index, content_index: 0, delta, logprobs: None };
            let (kind, sequence_number) = ("response.reasoning_text.delta", self.sequence);
            self.sequence += 1;
            push_named_event(out, kind, &Event { kind, sequence_number, body: event })?;
        }
        Ok(())
    }

    fn text(&mut self, out: &mut BytesMut, delta: &str) -> Result<(), Error> {
        if !matches!(self.open, Some(Open::Message { .. })) {
            self.close(out, "completed")?;
            let index = self.next_index();
            let id = item_id("msg");
            let item = Item::Message { id: id.clone(), status: "in_progress", role: "assistant", content: Vec::new() };
            self.added(out, index, &item)?;
            let part = Part::output_text(String::new());
            let event = json!({"item_id": id, "output_index": index, "content_index": 0, "part": part});
            self.emit(out, "response.content_part.added", event)?;
            self.open = Some(Open::Message { index, id, text: String::new() });
        }
        if let Some(Open::Message { index, id, text }) = &mut self.open {
            text.push_str(delta);
            let event = TextDelta { item_id: id, output_index: *index, content_index: 0, delta, logprobs: Some([]) };
            let (kind, sequence_number) = ("response.output_text.delta", self.sequence);
            self.sequence += 1;
            push_named_event(out, kind, &Event { kind, sequence_number, body: event })?;
        }
        Ok(())
    }

    fn call(&mut self, out: &mut BytesMut, piece: crate::protocol::translate::ToolCallDelta) -> Result<(), Error> {
        let function = piece.function.unwrap_or_default();
        let same = matches!(&self.open, Some(Open::Call { chat_index, .. }) if *chat_index == piece.index);
        if !same {
            self.close(out, "completed")?;
            let index = self.next_index();
            let id = item_id("fc");
            let call_id = piece.id.clone().unwrap_or_else(|| item_id("call"));
            let name = function.name.clone().unwrap_or_default();
            let item = call_item(&self.turn, id.clone(), call_id.clone(), &name, String::new(), "in_progress");
            self.added(out, index, &item)?;
            self.open =
                Some(Open::Call { chat_index: piece.index, index, id, call_id, name, arguments: String::new() });
        } else if let (Some(Open::Call { name, .. }), Some(more)) = (&mut self.open, function.name.as_deref()) {
            // A name split over pieces (rare): the done item has all of it.
            name.push_str(more);
        }
        let custom = matches!(&self.open, Some(Open::Call { name, .. }) if self.turn.tools.custom.contains(name));
        if let (Some(Open::Call { index, id, arguments, .. }), Some(delta)) = (&mut self.open, function.arguments) {
            arguments.push_str(&delta);
            // A custom tool's input is JSON-decoded at the end; its arguments are not the client's to see.
            if !custom && !delta.is_empty() {
                let event = ArgumentsDelta { item_id: id, output_index: *index, delta: &delta };
                let (kind, sequence_number) = ("response.function_call_arguments.delta", self.sequence);
                self.sequence += 1;
                push_named_event(out, kind, &Event { kind, sequence_number, body: event })?;
            }
        }
        Ok(())
    }

    /// Finishes the open item, if any.
    fn close(&mut self, out: &mut BytesMut, status: &'static str) -> Result<(), Error> {
        let Some(open) = self.open.take() else { return Ok(()) };
        let (index, item) = match open {
            Open::Reasoning { index, id, text } => {
                let event = json!({"item_id": id, "output_index": index, "content_index": 0, "text": text});
                self.emit(out, "response.reasoning_text.done", event)?;
                let item =
                    Item::Reasoning { id, summary: Vec::new(), content: vec![Part::reasoning_text(text)], status };
                (index, item)
            }
            Open::Message { index, id, text } => {
                let event =
                    json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []});
                self.emit(out, "response.output_text.done", event)?;
                let part = Part::output_text(text);
                let event = json!({"item_id": id, "output_index": index, "content_index": 0, "part": part});
                self.emit(out, "response.content_part.done", event)?;
                (index, Item::Message { id, status, role: "assistant", content: vec![part] })
            }
            Open::Call { index, id, call_id, name, arguments, .. } => {
                let item = call_item(&self.turn, id.clone(), call_id, &name, arguments, status);
                match &item {
                    Item::CustomToolCall { input, .. } => {
                        let event = json!({"item_id": id, "output_index": index, "delta": input});
                        self.emit(out, "response.custom_tool_call_input.delta", event)?;
                        let event = json!({"item_id": id, "output_index": index, "input": input});
                        self.emit(out, "response.custom_tool_call_input.done", event)?;
                    }
                    Item::FunctionCall { name, arguments, .. } => {
                        let event = json!({"item_id": id, "output_index": index, "name": name, "arguments": arguments});
                        self.emit(out, "response.function_call_arguments.done", event)?;
                    }
                    _ => {}
                }
                (index, item)
            }
        };
        self.emit(out, "response.output_item.done", json!({"output_index": index, "item": item}))?;
        self.done.push(item);
        Ok(())
    }
}

impl ChunkEncoder for Encoder {
    fn chunk(&mut self, chunk: Chunk, out: &mut BytesMut) -> Result<(), Error> {
        self.start(out)?;
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        // Only the first choice: the Responses API has one answer.
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            let delta = choice.delta;
            if let Some(r) = delta.reasoning_content.as_deref().filter(|r| !r.is_empty()) {
                self.reasoning(out, r)?;
            }
            if let Some(t) = delta.content.as_deref().filter(|t| !t.is_empty()) {
                self.text(out, t)?;
            }
            for piece in delta.tool_calls.into_iter().flatten() {
                self.call(out, piece)?;
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
        Ok(())
    }

    fn keepalive(&mut self, out: &mut BytesMut) {
        // Tell the client its response exists while a cold engine loads, then keep the line busy.
        if self.start(out).is_ok() {
            out.extend_from_slice(b": keepalive\n\n");
        }
    }

    fn fail(&mut self, error: &Error, out: &mut BytesMut) {
        let _ = self.start(out);
        let _ = self.close(out, "incomplete");
        // Codex reads `code`: a rate limit's "try again in" delays its retry; any other failure is retried.
        let code = match error {
            Error::ContextWindowExceeded(_) => "context_length_exceeded",
            e if e.status() == http::StatusCode::TOO_MANY_REQUESTS => "rate_limit_exceeded",
            _ => "server_error",
        };
        let failure = json!({"code": code, "message": error.to_string()});
        let usage = self.usage.map(|u| usage_json(Some(u)));
        let sequence_number = self.sequence;
        self.sequence += 1;
        let r = response(&self.turn, "failed", &self.done, usage, None, failure);
        let kind = "response.failed";
        let _ = push_named_event(out, kind, &Event { kind, sequence_number, body: WithResponse { response: &r } });
    }

    fn finish(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        self.start(out)?;
        let reason = incomplete_reason(self.finish_reason.as_deref());
        let status = if reason.is_some() { "incomplete" } else { "completed" };
        if self.open.is_none() && self.done.is_empty() {
            // An engine that said nothing still answers with one (empty) message, as a whole answer would.
            self.text(out, "")?;
        }
        self.close(out, if reason.is_some() { "incomplete" } else { "completed" })?;
        let kind = if reason.is_some() { "response.incomplete" } else { "response.completed" };
        let sequence_number = self.sequence;
        self.sequence += 1;
        let r = response(&self.turn, status, &self.done, Some(usage_json(self.usage)), reason, Value::Null);
        push_named_event(out, kind, &Event { kind, sequence_number, body: WithResponse { response: &r } })?;
        let json = serde_json::value::to_raw_value(&r).ok();
        if let Some(json) = json.filter(|_| self.turn.store) {
            keep(&mut self.turn, &self.store, json, &self.done);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::openai::parse_body;
    use crate::protocol::responses::{input::to_chat, CreateRequest};
    use crate::protocol::translate::SseEvents;

    fn turn(body: Value, store: &Store) -> Turn {
        let req: CreateRequest = parse_body(body.to_string().as_bytes()).unwrap();
        to_chat(req, store).unwrap().1
    }

    fn chunk(v: Value) -> Chunk {
        serde_json::from_value(v).unwrap()
    }

    /// The events of a stream: (event name, data).
    fn events(bytes: &[u8]) -> Vec<(String, Value)> {
        let text = String::from_utf8_lossy(bytes);
        text.split("\n\n")
            .filter(|b| b.starts_with("event: "))
            .map(|b| {
                let (head, data) = b.split_once('\n').unwrap();
                let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                (head["event: ".len()..].to_owned(), data)
            })
            .collect()
    }

    #[test]
    fn whole_answer_with_reasoning_text_and_a_call() {
        let store = Store::new();
        let mut t = turn(
            json!({"model": "alias", "input": "x", "tools": [
            {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "g"}]}]}),
            &store,
        );
        let completion = Completion::parse(br#"{"model":"upstream","choices":[{"message":{"content":"hello","reasoning_content":"think","tool_calls":[{"id":"call_1","type":"function","function":{"name":"ns__g","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8,"prompt_tokens_details":{"cached_tokens":2}}}"#).unwrap();
        let r: Value = serde_json::from_slice(&whole(&mut t, completion, &store).unwrap()).unwrap();
        assert_eq!(r["model"], "alias");
        assert_eq!(r["status"], "completed");
        let types: Vec<&str> = r["output"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["reasoning", "message", "function_call"]);
        assert_eq!(r["output"][0]["content"][0], json!({"type": "reasoning_text", "text": "think"}));
        assert_eq!(r["output"][1]["content"][0], json!({"type": "output_text", "text": "hello", "annotations": []}));
        assert_eq!(r["output"][2]["name"], "g");
        assert_eq!(r["output"][2]["namespace"], "ns");
        assert_eq!(r["output"][2]["call_id"], "call_1");
        assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"], 2);
        assert_eq!(r["usage"]["total_tokens"], 8);
        let stored = store.get(r["id"].as_str().unwrap()).unwrap();
        let last = stored.conversation.last().unwrap();
        assert_eq!(last.tool_calls.as_ref().unwrap()[0].function.name, "ns__g", "stored under the engine's name");
        assert_eq!(last.reasoning_content.as_deref(), Some("think"));
    }

    #[test]
    fn length_is_incomplete_and_store_false_keeps_nothing() {
        let store = Store::new();
        let mut t = turn(json!({"model": "m", "input": "x", "store": false, "max_output_tokens": 3}), &store);
        let completion =
            Completion::parse(br#"{"choices":[{"message":{"content":"abc"},"finish_reason":"length"}]}"#).unwrap();
        let r: Value = serde_json::from_slice(&whole(&mut t, completion, &store).unwrap()).unwrap();
        assert_eq!(r["status"], "incomplete");
        assert_eq!(r["incomplete_details"], json!({"reason": "max_output_tokens"}));
        assert_eq!(r["output"][0]["status"], "incomplete");
        assert!(store.is_empty());
    }

    #[test]
    fn stream_events_in_order_with_a_tool_call() {
        let store = Arc::new(Store::new());
        let t = turn(
            json!({"model": "m", "input": "x", "stream": true, "tools": [{"type": "function", "name": "f"}]}),
            &store,
        );
        let id = t.id.clone();
        let mut enc = Encoder::new(t, store.clone());
        let mut out = BytesMut::new();
        enc.keepalive(&mut out);
        for c in [
            json!({"choices": [{"index": 0, "delta": {"reasoning_content": "hm"}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "He"}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "llo"}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_9", "function": {"name": "f", "arguments": "{\"a\""}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}}),
        ] {
            enc.chunk(chunk(c), &mut out).unwrap();
        }
        enc.finish(&mut out).unwrap();
        assert!(String::from_utf8_lossy(&out).contains(": keepalive\n\n"));
        let events = events(&out);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.reasoning_text.delta",
                "response.reasoning_text.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, (name, data)) in events.iter().enumerate() {
            assert_eq!(data["type"], json!(name));
            assert_eq!(data["sequence_number"], json!(i));
        }
        assert_eq!(events[10].1["text"], "Hello");
        assert_eq!(events[13].1["output_index"], 2);
        assert_eq!(events[16].1["arguments"], "{\"a\":1}");
        let done = &events[18].1["response"];
        assert_eq!(done["id"], json!(id));
        assert_eq!(done["output"][2]["call_id"], "call_9");
        assert_eq!(done["usage"]["output_tokens"], 6);
        assert!(store.get(&id).is_some(), "a finished stream is stored");
    }

    #[test]
    fn a_failed_stream_ends_with_response_failed() {
        let store = Arc::new(Store::new());
        let t = turn(json!({"model": "m", "input": "x", "stream": true}), &store);
        let id = t.id.clone();
        let mut enc = Encoder::new(t, store.clone());
        let mut out = BytesMut::new();
        enc.chunk(chunk(json!({"choices": [{"index": 0, "delta": {"content": "par"}}]})), &mut out).unwrap();
        enc.fail(&Error::Connect("the answer broke off".into()), &mut out);
        let events = events(&out);
        let (name, data) = events.last().unwrap();
        assert_eq!(name, "response.failed");
        assert_eq!(data["response"]["status"], "failed");
        assert_eq!(data["response"]["error"], json!({"code": "server_error", "message": "the answer broke off"}));
        assert_eq!(data["response"]["output"][0]["status"], "incomplete");
        assert!(store.get(&id).is_none(), "a failed response is not stored");
        // Nothing sent yet: still created first, then failed.
        let mut enc = Encoder::new(turn(json!({"model": "m", "input": "x"}), &store), store.clone());
        let mut out = BytesMut::new();
        enc.fail(&Error::NoDeployments { message: "busy".into(), all_cooling_down: false, retry_after: 3 }, &mut out);
        let names: Vec<String> = super::tests::events(&out)
            .into_iter()
            .map(|(n, d)| {
                if n == "response.failed" {
                    assert_eq!(d["response"]["error"]["code"], "rate_limit_exceeded");
                }
                n
            })
            .collect();
        assert_eq!(names, ["response.created", "response.in_progress", "response.failed"]);
        let _ = SseEvents::default();
    }
}
