//! Chat chunks → the Responses event stream: the encoder that opens, fills and closes one output item at a time,
//! and the event bodies it writes. Apart from the whole answer in [`super`] because only streaming has state
//! (sequence numbers, the item being streamed) to carry between chunks.

use std::sync::Arc;

use bytes::BytesMut;
use serde::Serialize;
use serde_json::{json, Value};

use super::{call_item, incomplete_reason, item_id, keep, response, usage_json, Item, Part, ResponseView};
use crate::error::Error;
use crate::protocol::responses::{Store, Turn};
use crate::protocol::translate::{push_named_event, Chunk, ChunkEncoder, Usage};

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
