//! Ollama's NDJSON stream (one JSON object per line) → OpenAI SSE chunks.
//!
//! Network chunks split lines anywhere, including inside a multi-byte UTF-8 character, so bytes are buffered
//! until a newline and only whole lines are parsed. Every chunk of one answer carries the same id; the first
//! carries `role`; the `done` line closes the answer with `finish_reason`, the usage chunk when asked for, and
//! `[DONE]`. A stream that ends without its `done` line is an error, never a quiet success.

use std::borrow::Cow;

use bytes::BytesMut;
use serde::Serialize;

use super::reply::{engine_failure, finish_reason, valid_utf8, Reply, THINK_CLOSE, THINK_OPEN};
use crate::error::Error;
use crate::protocol::openai::{new_id, unix_now, Usage};
use crate::providers::{push_sse, Call, StreamConverter, SSE_DONE};

/// A line longer than this is not Ollama talking; stop buffering instead of growing without bound.
const MAX_LINE: usize = 64 * 1024 * 1024;

/// What the stream carries and what the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `/api/chat` lines → `chat.completion.chunk`.
    Chat,
    /// `/api/generate` lines → `chat.completion.chunk` (an `ollama/` chat request).
    GenerateChat,
    /// `/api/generate` lines → legacy `text_completion` chunks.
    Text,
}

/// The stream converter for all three Ollama streams.
pub(super) struct NdjsonConverter {
    kind: Kind,
    /// Bytes of a line not yet ended; its capacity is reused from line to line.
    line: Vec<u8>,
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    /// The first chunk (with `role`) has been sent.
    started: bool,
    /// Tool calls sent so far: the next call's `index`, and whether `finish_reason` is `tool_calls`.
    tool_calls: u32,
    /// The `done` line has been handled and `[DONE]` sent.
    done: bool,
    /// What the `done` line said loading the model took.
    load_duration: Option<std::time::Duration>,
    /// What the `done` line said the answer used, in tokens (prompt and generated).
    usage: Option<crate::observe::Tokens>,
    /// ... and how long reading the prompt and writing the answer took.
    timings: Option<crate::router::speed::Timings>,
    think: ThinkSplitter,
    /// This line's reasoning and answer text, reused from line to line.
    reasoning: String,
    content: String,
}

impl NdjsonConverter {
    /// A converter for one answer to `call`.
    pub(super) fn new(kind: Kind, call: &Call<'_>) -> Self {
        NdjsonConverter {
            kind,
            line: Vec::new(),
            id: new_id(if kind == Kind::Text { "cmpl" } else { "chatcmpl" }),
            model: call.head.model.clone().into_owned(),
            created: unix_now(),
            include_usage: call.head.include_usage,
            started: false,
            tool_calls: 0,
            done: false,
            load_duration: None,
            usage: None,
            timings: None,
            think: ThinkSplitter::default(),
            reasoning: String::new(),
            content: String::new(),
        }
    }

    fn on_line(&mut self, line: &[u8], out: &mut BytesMut) -> Result<(), Error> {
        let line = line.trim_ascii();
        // Anything after the final object (there should be nothing) cannot change the answer.
        if line.is_empty() || self.done {
            return Ok(());
        }
        let line = valid_utf8(line);
        let line = line.as_ref();
        let reply: Reply<'_> = serde_json::from_slice(line)
            .map_err(|e| Error::BadUpstreamResponse(format!("Ollama sent a stream line llmux cannot read: {e}")))?;
        if reply.error.is_some() {
            return Err(engine_failure(line));
        }
        if reply.done {
            self.load_duration = reply.load_duration();
            self.usage = reply.tokens();
            self.timings = reply.timings();
        }
        match self.kind {
            Kind::Text => self.text_line(reply, out),
            Kind::Chat | Kind::GenerateChat => self.chat_line(reply, out),
        }
    }

    fn chat_line(&mut self, mut reply: Reply<'_>, out: &mut BytesMut) -> Result<(), Error> {
        let (content, thinking, calls) = match self.kind {
            Kind::Chat => {
                let m = reply.message.take().unwrap_or_default();
                (m.content, m.thinking, m.tool_calls.unwrap_or_default())
            }
            _ => (reply.response.take(), reply.thinking.take(), Vec::new()),
        };
        self.reasoning.clear();
        self.content.clear();
        if let Some(thinking) = thinking {
            self.reasoning.push_str(&thinking);
        }
        if let Some(content) = content {
            self.think.push(&content, &mut self.reasoning, &mut self.content);
        }
        if reply.done {
            self.think.flush(&mut self.reasoning, &mut self.content);
        }
        let calls: Vec<ToolCallOut<'_>> = calls
            .iter()
            .map(|c| {
                let index = self.tool_calls;
                self.tool_calls += 1;
                ToolCallOut {
                    index,
                    id: c.id(),
                    kind: "function",
                    function: FunctionOut { name: &c.function.name, arguments: c.arguments() },
                }
            })
            .collect();

        if !self.started || !self.reasoning.is_empty() || !self.content.is_empty() || !calls.is_empty() {
            let delta = Delta {
                role: (!self.started).then_some("assistant"),
                // OpenAI's first chunk carries `content: ""`; later ones only what is new.
                content: (!self.started || !self.content.is_empty()).then_some(self.content.as_str()),
                reasoning_content: (!self.reasoning.is_empty()).then_some(self.reasoning.as_str()),
                tool_calls: (!calls.is_empty()).then_some(calls.as_slice()),
            };
            self.started = true;
            self.push_chat(out, [DeltaChoice { index: 0, delta, finish_reason: None }], None)?;
        }

        if reply.done {
            let reason = finish_reason(reply.done_reason.as_deref(), self.tool_calls > 0);
            self.push_chat(
                out,
                [DeltaChoice { index: 0, delta: Delta::default(), finish_reason: Some(reason) }],
                None,
            )?;
            if self.include_usage {
                self.push_chat(out, [] as [DeltaChoice<'_>; 0], Some(usage(&reply)))?;
            }
            self.close(out);
        }
        Ok(())
    }

    fn text_line(&mut self, reply: Reply<'_>, out: &mut BytesMut) -> Result<(), Error> {
        let text = reply.response.as_deref().unwrap_or("");
        if !self.started || !text.is_empty() {
            self.started = true;
            self.push_text(out, [TextChoiceOut { text, index: 0, logprobs: None, finish_reason: None }], None)?;
        }
        if reply.done {
            let reason = finish_reason(reply.done_reason.as_deref(), false);
            self.push_text(
                out,
                [TextChoiceOut { text: "", index: 0, logprobs: None, finish_reason: Some(reason) }],
                None,
            )?;
            if self.include_usage {
                self.push_text(out, [] as [TextChoiceOut<'_>; 0], Some(usage(&reply)))?;
            }
            self.close(out);
        }
        Ok(())
    }

    fn push_chat<C: Serialize>(&self, out: &mut BytesMut, choices: C, usage: Option<Usage>) -> Result<(), Error> {
        push_sse(
            out,
            &Chunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices,
                usage,
            },
        )
    }

    fn push_text<C: Serialize>(&self, out: &mut BytesMut, choices: C, usage: Option<Usage>) -> Result<(), Error> {
        push_sse(
            out,
            &Chunk {
                id: &self.id,
                object: "text_completion",
                created: self.created,
                model: &self.model,
                choices,
                usage,
            },
        )
    }

    fn close(&mut self, out: &mut BytesMut) {
        out.extend_from_slice(SSE_DONE);
        self.done = true;
        // Nothing more will be parsed; give the buffers back.
        self.line = Vec::new();
        self.reasoning = String::new();
        self.content = String::new();
    }
}

fn usage(reply: &Reply<'_>) -> Usage {
    Usage::new(reply.prompt_eval_count.unwrap_or(0), reply.eval_count.unwrap_or(0))
}

impl StreamConverter for NdjsonConverter {
    fn load_duration(&self) -> Option<std::time::Duration> {
        self.load_duration
    }

    fn usage(&self) -> Option<crate::observe::Tokens> {
        self.usage
    }

    fn timings(&self) -> Option<crate::router::speed::Timings> {
        self.timings
    }

    fn feed(&mut self, chunk: &[u8], out: &mut BytesMut) -> Result<(), Error> {
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = (&rest[..pos], &rest[pos + 1..]);
            rest = tail;
            if self.line.is_empty() {
                // The whole line is in this chunk: parse it in place, no copy.
                self.on_line(head, out)?;
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(head);
                let result = self.on_line(&line, out);
                line.clear();
                if !self.done {
                    self.line = line;
                }
                result?;
            }
        }
        if !rest.is_empty() && !self.done {
            if self.line.len() + rest.len() > MAX_LINE {
                return Err(Error::BadUpstreamResponse(format!(
                    "Ollama sent a stream line longer than {MAX_LINE} bytes"
                )));
            }
            self.line.extend_from_slice(rest);
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        if !self.line.is_empty() {
            // A last line without its newline still counts.
            let line = std::mem::take(&mut self.line);
            self.on_line(&line, out)?;
        }
        if self.done {
            Ok(())
        } else {
            Err(Error::BadUpstreamResponse("engine closed the stream before it finished".to_owned()))
        }
    }
}

/// One SSE chunk, borrowing everything (same shape as `protocol::openai::ChatCompletionChunk` and the legacy
/// completion chunk).
#[derive(Serialize)]
struct Chunk<'a, C> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: C,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct DeltaChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'a str>,
}

#[derive(Default, Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<&'a [ToolCallOut<'a>]>,
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    index: u32,
    id: Cow<'a, str>,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: &'a str,
    arguments: Cow<'a, str>,
}

#[derive(Serialize)]
struct TextChoiceOut<'a> {
    text: &'a str,
    index: u32,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

/// Where the splitter is in a `<think>…</think>` block at the start of the answer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ThinkState {
    /// Nothing but whitespace seen yet: the answer may still open with `<think>`.
    #[default]
    Start,
    /// Inside the block: text is reasoning.
    Inside,
    /// Just past `</think>`: whitespace before the answer is dropped.
    After,
    /// The answer proper: text passes through.
    Content,
}

/// Splits a leading `<think>…</think>` block out of streamed text (models that think inline instead of through
/// Ollama's `thinking` field), with the tags split across lines anywhere.
#[derive(Debug, Default)]
struct ThinkSplitter {
    state: ThinkState,
    /// Text held back while it might still be (part of) a tag.
    pending: String,
}

impl ThinkSplitter {
    /// Routes `text` into `reasoning` and `content`, holding back what cannot be decided yet.
    fn push(&mut self, text: &str, reasoning: &mut String, content: &mut String) {
        match self.state {
            ThinkState::Content => content.push_str(text),
            ThinkState::After => {
                let text = text.trim_start();
                if !text.is_empty() {
                    self.state = ThinkState::Content;
                    content.push_str(text);
                }
            }
            ThinkState::Start => {
                if self.pending.is_empty() && !text.trim_start().is_empty() && !text.trim_start().starts_with('<') {
                    // The usual case: the answer starts with text, no buffering.
                    self.state = ThinkState::Content;
                    content.push_str(text);
                    return;
                }
                self.pending.push_str(text);
                let start = self.pending.len() - self.pending.trim_start().len();
                let head = &self.pending[start..];
                if head.is_empty() || (head.len() < THINK_OPEN.len() && THINK_OPEN.starts_with(head)) {
                    return;
                }
                if head.starts_with(THINK_OPEN) {
                    let rest = self.pending.split_off(start + THINK_OPEN.len());
                    self.pending.clear();
                    self.state = ThinkState::Inside;
                    self.push(&rest, reasoning, content);
                } else {
                    self.state = ThinkState::Content;
                    content.push_str(&self.pending);
                    self.pending.clear();
                }
            }
            ThinkState::Inside => {
                if self.pending.is_empty() {
                    self.inside(text, reasoning, content);
                } else {
                    let mut joined = std::mem::take(&mut self.pending);
                    joined.push_str(text);
                    self.inside(&joined, reasoning, content);
                }
            }
        }
    }

    fn inside(&mut self, text: &str, reasoning: &mut String, content: &mut String) {
        if let Some(end) = text.find(THINK_CLOSE) {
            reasoning.push_str(&text[..end]);
            self.state = ThinkState::After;
            self.push(&text[end + THINK_CLOSE.len()..], reasoning, content);
            return;
        }
        // Hold back a tail that may be the start of `</think>`; the tag is ASCII, so the cut is a char boundary.
        let keep = (1..THINK_CLOSE.len()).rev().find(|&k| text.ends_with(&THINK_CLOSE[..k])).unwrap_or(0);
        reasoning.push_str(&text[..text.len() - keep]);
        self.pending.push_str(&text[text.len() - keep..]);
    }

    /// The answer ended: whatever was held back is released where it was heading.
    fn flush(&mut self, reasoning: &mut String, content: &mut String) {
        match self.state {
            ThinkState::Inside => reasoning.push_str(&self.pending),
            _ => content.push_str(&self.pending),
        }
        self.pending.clear();
    }
}
