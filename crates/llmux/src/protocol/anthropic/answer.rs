//! The OpenAI answer as Anthropic's: a whole `message`, or the stream of named events.

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Dialect, Error};
use crate::protocol::translate::{push_named_event, to_bytes, Chunk, ChunkEncoder, Completion, Usage};

/// A fresh id in Anthropic's style (`msg_…`, `toolu_…`).
pub(super) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// Anthropic's `message` object.
#[derive(Debug, Serialize)]
pub(super) struct Message<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<OutBlock>,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<String>,
    usage: OutUsage,
}

/// A content block of an answer.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutBlock {
    Thinking { thinking: String, signature: String },
    Text { text: String },
    ToolUse { id: String, name: String, input: Value },
}

/// `usage` of a whole message (and of `message_start`).
#[derive(Debug, Default, Serialize)]
struct OutUsage {
    input_tokens: u64,
    output_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
}

impl OutUsage {
    /// OpenAI's `prompt_tokens` include cached ones; Anthropic's `input_tokens` are the uncached rest, so that
    /// `input_tokens + cache_read_input_tokens` is the whole prompt.
    fn of(usage: &Usage) -> Self {
        let cached = usage.cached_tokens.unwrap_or(0).min(usage.prompt_tokens);
        OutUsage {
            input_tokens: usage.prompt_tokens - cached,
            output_tokens: usage.completion_tokens,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: cached,
        }
    }
}

/// OpenAI's `finish_reason` as Anthropic's `stop_reason`. OpenAI's `stop` covers both a natural end and a
/// matched stop sequence, and engines do not say which, so it is always `end_turn`.
fn stop_reason(finish: Option<&str>, made_tool_calls: bool) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        // Some engines end a tool-calling turn with `stop`; Anthropic's clients run tools on `tool_use`.
        _ if made_tool_calls => "tool_use",
        _ => "end_turn",
    }
}

/// Tool call arguments (OpenAI's JSON text) as Anthropic's `input` object.
///
/// Anthropic's `input` is always an object, and its SDKs and Claude Code parse it as one. Arguments that are
/// not a JSON object (truncated or malformed model output) are kept whole as `{"_raw": "<text>"}` rather than
/// dropped or failing the answer: the client still gets the call, its schema check fails on `_raw`, and the
/// agent answers the model with a tool error, which lets the model try again (Claude Code does exactly that).
/// Arguments a model double-encoded as a JSON string holding an object are unwrapped.
pub(super) fn tool_input(arguments: &str) -> Value {
    let trimmed = arguments.trim();
    if trimmed.is_empty() {
        return Value::Object(Map::new());
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(Value::Object(map)) => Value::Object(map),
        Ok(Value::String(inner)) => match serde_json::from_str::<Value>(&inner) {
            Ok(Value::Object(map)) => Value::Object(map),
            _ => raw_input(arguments),
        },
        _ => raw_input(arguments),
    }
}

fn raw_input(arguments: &str) -> Value {
    let mut map = Map::new();
    map.insert("_raw".to_owned(), Value::String(arguments.to_owned()));
    Value::Object(map)
}

/// A whole OpenAI answer as Anthropic's `message`, named `model` as the client asked.
pub(super) fn whole(openai: &[u8], model: &str) -> Result<Bytes, Error> {
    let completion = Completion::parse(openai)?;
    let choice = completion.choices.into_iter().next().unwrap_or_default();
    let message = choice.message;
    let mut content = Vec::new();
    if let Some(thinking) = message.reasoning_content.filter(|t| !t.is_empty()) {
        content.push(OutBlock::Thinking { thinking, signature: String::new() });
    }
    if let Some(text) = message.content.filter(|t| !t.is_empty()) {
        content.push(OutBlock::Text { text });
    }
    let calls = message.tool_calls.unwrap_or_default();
    let made_tool_calls = !calls.is_empty();
    for call in calls {
        content.push(OutBlock::ToolUse {
            id: call.id.filter(|id| !id.is_empty()).unwrap_or_else(|| new_id("toolu")),
            name: call.function.name,
            input: tool_input(&call.function.arguments),
        });
    }
    let id = new_id("msg");
    to_bytes(&Message {
        id: &id,
        kind: "message",
        role: "assistant",
        model,
        content,
        stop_reason: Some(stop_reason(choice.finish_reason.as_deref(), made_tool_calls)),
        stop_sequence: None,
        usage: completion.usage.as_ref().map(OutUsage::of).unwrap_or_default(),
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Streaming.
// ---------------------------------------------------------------------------------------------------------------

/// One event of Anthropic's stream; its `type` is also the SSE event name.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent<'a> {
    MessageStart { message: Message<'a> },
    ContentBlockStart { index: u32, content_block: OutBlock },
    ContentBlockDelta { index: u32, delta: BlockDelta },
    ContentBlockStop { index: u32 },
    MessageDelta { delta: MessageDeltaBody, usage: DeltaUsage },
    MessageStop,
    Ping,
}

impl StreamEvent<'_> {
    fn name(&self) -> &'static str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
            StreamEvent::Ping => "ping",
        }
    }

    fn push(&self, out: &mut BytesMut) -> Result<(), Error> {
        push_named_event(out, self.name(), self)
    }
}

#[derive(Debug, Serialize)]
#[serde(tag = "type")]
enum BlockDelta {
    #[serde(rename = "text_delta")]
    Text { text: String },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: String },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: String },
}

#[derive(Debug, Serialize)]
struct MessageDeltaBody {
    stop_reason: &'static str,
    stop_sequence: Option<String>,
}

/// `usage` of `message_delta`: cumulative counts; the input ones only when the engine reported them (the SDKs
/// keep `message_start`'s values for fields that are absent).
#[derive(Debug, Serialize)]
struct DeltaUsage {
    output_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_read_input_tokens: Option<u64>,
}

/// The text block kinds that stream as deltas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextKind {
    Thinking,
    Text,
}

/// A tool call being streamed by the engine.
#[derive(Debug)]
struct PendingTool {
    /// The call's `index` in OpenAI's deltas.
    openai_index: u32,
    id: Option<String>,
    name: String,
    arguments: String,
}

/// Turns OpenAI chunks into Anthropic's event sequence: `message_start`, blocks (`content_block_start`, deltas,
/// `content_block_stop`, indexed from 0 in order), `message_delta`, `message_stop`.
///
/// Thinking and text stream delta by delta; a change of kind closes the open block and opens the next. Tool
/// calls are gathered until something else comes or the answer ends, then sent each as one block with its
/// whole input in one `input_json_delta`: the input is then always one complete JSON object (clients parse
/// the joined `partial_json` and fail on anything else), and engines that interleave pieces of several calls
/// still give contiguous blocks.
#[derive(Debug)]
pub(super) struct Encoder {
    id: String,
    model: String,
    /// The request's estimated input tokens, for `message_start` (engines report usage only at the end).
    estimate: u64,
    started: bool,
    next_index: u32,
    open: Option<(u32, TextKind)>,
    tools: Vec<PendingTool>,
    made_tool_calls: bool,
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

impl Encoder {
    /// An encoder answering as `model`.
    pub(super) fn new(model: String, estimate: u64) -> Self {
        Encoder {
            id: new_id("msg"),
            model,
            estimate,
            started: false,
            next_index: 0,
            open: None,
            tools: Vec::new(),
            made_tool_calls: false,
            finish_reason: None,
            usage: None,
        }
    }

    fn start(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        StreamEvent::MessageStart {
            message: Message {
                id: &self.id,
                kind: "message",
                role: "assistant",
                model: &self.model,
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: None,
                usage: OutUsage { input_tokens: self.estimate, ..OutUsage::default() },
            },
        }
        .push(out)
    }

    fn close_open(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        if let Some((index, _)) = self.open.take() {
            StreamEvent::ContentBlockStop { index }.push(out)?;
        }
        Ok(())
    }

    /// Sends the gathered tool calls, each as one block.
    fn flush_tools(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        for tool in std::mem::take(&mut self.tools) {
            let index = self.next_index;
            self.next_index += 1;
            self.made_tool_calls = true;
            StreamEvent::ContentBlockStart {
                index,
                content_block: OutBlock::ToolUse {
                    id: tool.id.filter(|id| !id.is_empty()).unwrap_or_else(|| new_id("toolu")),
                    name: tool.name,
                    input: Value::Object(Map::new()),
                },
            }
            .push(out)?;
            let input = tool_input(&tool.arguments);
            if input.as_object().is_some_and(|m| !m.is_empty()) {
                StreamEvent::ContentBlockDelta {
                    index,
                    delta: BlockDelta::InputJson { partial_json: input.to_string() },
                }
                .push(out)?;
            }
            StreamEvent::ContentBlockStop { index }.push(out)?;
        }
        Ok(())
    }

    fn text(&mut self, kind: TextKind, text: String, out: &mut BytesMut) -> Result<(), Error> {
        if text.is_empty() {
            return Ok(());
        }
        self.flush_tools(out)?;
        let index = match self.open {
            Some((index, open)) if open == kind => index,
            _ => {
                self.close_open(out)?;
                let index = self.next_index;
                self.next_index += 1;
                self.open = Some((index, kind));
                let content_block = match kind {
                    TextKind::Thinking => OutBlock::Thinking { thinking: String::new(), signature: String::new() },
                    TextKind::Text => OutBlock::Text { text: String::new() },
                };
                StreamEvent::ContentBlockStart { index, content_block }.push(out)?;
                index
            }
        };
        let delta = match kind {
            TextKind::Thinking => BlockDelta::Thinking { thinking: text },
            TextKind::Text => BlockDelta::Text { text },
        };
        StreamEvent::ContentBlockDelta { index, delta }.push(out)
    }
}

impl ChunkEncoder for Encoder {
    fn chunk(&mut self, chunk: Chunk, out: &mut BytesMut) -> Result<(), Error> {
        self.start(out)?;
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        // Anthropic has one answer per message: other choices (n > 1) have nowhere to go.
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            let delta = choice.delta;
            if let Some(reasoning) = delta.reasoning_content {
                self.text(TextKind::Thinking, reasoning, out)?;
            }
            if let Some(content) = delta.content {
                self.text(TextKind::Text, content, out)?;
            }
            for piece in delta.tool_calls.unwrap_or_default() {
                self.close_open(out)?;
                let function = piece.function.unwrap_or_default();
                match self.tools.iter_mut().find(|t| t.openai_index == piece.index) {
                    Some(tool) => {
                        if tool.id.is_none() {
                            tool.id = piece.id;
                        }
                        tool.name.push_str(function.name.as_deref().unwrap_or(""));
                        tool.arguments.push_str(function.arguments.as_deref().unwrap_or(""));
                    }
                    None => self.tools.push(PendingTool {
                        openai_index: piece.index,
                        id: piece.id,
                        name: function.name.unwrap_or_default(),
                        arguments: function.arguments.unwrap_or_default(),
                    }),
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
            }
        }
        Ok(())
    }

    fn keepalive(&mut self, out: &mut BytesMut) {
        // Serialising these two fixed events cannot fail in practice; a failure would only skip a ping.
        let _ = self.start(out).and_then(|()| StreamEvent::Ping.push(out));
    }

    fn fail(&mut self, error: &Error, out: &mut BytesMut) {
        // Anthropic ends a failed stream with one `error` event and closes nothing before it.
        if push_named_event(out, "error", &error.body_in(Dialect::Anthropic)).is_err() {
            out.extend_from_slice(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"stream failed\"}}\n\n");
        }
    }

    fn finish(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        self.start(out)?;
        self.close_open(out)?;
        self.flush_tools(out)?;
        let usage = self.usage.as_ref().map(OutUsage::of);
        StreamEvent::MessageDelta {
            delta: MessageDeltaBody {
                stop_reason: stop_reason(self.finish_reason.as_deref(), self.made_tool_calls),
                stop_sequence: None,
            },
            usage: DeltaUsage {
                output_tokens: usage.as_ref().map_or(0, |u| u.output_tokens),
                input_tokens: usage.as_ref().map(|u| u.input_tokens),
                cache_read_input_tokens: usage.as_ref().map(|u| u.cache_read_input_tokens),
            },
        }
        .push(out)?;
        StreamEvent::MessageStop.push(out)
    }
}
