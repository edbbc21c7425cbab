//! OpenAI answers as Ollama's: whole objects, and NDJSON lines for a stream.
//!
//! A stream is one line per piece of text or reasoning (`done: false`), tool calls in a line of their own once
//! they are complete (as Ollama sends them, whole), and a last line with `done: true`, `done_reason`, the counts
//! and the durations. A failure after the first line is one `{"error": …}` line, as Ollama ends a failed stream.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::{elapsed_ns, now_rfc3339, Route};
use crate::error::{Dialect, Error};
use crate::protocol::openai::ToolCall;
use crate::protocol::translate::{push_json_line, to_bytes, Chunk, ChunkEncoder, Completion, Usage};

/// One `/api/chat` answer object (whole, or one line of a stream).
#[derive(Debug, Serialize)]
struct ChatLine<'a> {
    model: &'a str,
    created_at: String,
    message: OutMessage<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<&'a str>,
    done: bool,
    #[serde(flatten)]
    stats: Option<Stats>,
}

/// One `/api/generate` answer object (whole, or one line of a stream).
#[derive(Debug, Serialize)]
struct GenerateLine<'a> {
    model: &'a str,
    created_at: String,
    response: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<&'a str>,
    done: bool,
    #[serde(flatten)]
    stats: Option<Stats>,
}

/// The assistant message of a [`ChatLine`].
#[derive(Debug, Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutToolCall>,
}

/// A tool call in Ollama's shape: arguments as an object.
#[derive(Debug, Serialize)]
struct OutToolCall {
    /// The engine's call id (recent Ollama versions send one; clients may return it as `tool_call_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    function: OutFunction,
}

/// The function of an [`OutToolCall`].
#[derive(Debug, Serialize)]
struct OutFunction {
    index: u32,
    name: String,
    arguments: Value,
}

/// The counts and durations of a last answer object. Durations are nanoseconds measured by llmux.
#[derive(Debug, Serialize)]
struct Stats {
    total_duration: u64,
    load_duration: u64,
    prompt_eval_count: u64,
    prompt_eval_duration: u64,
    eval_count: u64,
    eval_duration: u64,
}

impl Stats {
    /// `total` nanoseconds, of which `waited` before the first token.
    fn new(usage: Option<Usage>, total: u64, waited: u64) -> Self {
        let usage = usage.unwrap_or_default();
        let waited = waited.min(total);
        Stats {
            total_duration: total,
            load_duration: 0,
            prompt_eval_count: usage.prompt_tokens,
            prompt_eval_duration: waited,
            eval_count: usage.completion_tokens,
            eval_duration: total - waited,
        }
    }
}

/// Ollama's `done_reason` for OpenAI's `finish_reason`: only `length` differs from `stop` (Ollama ends a
/// tool-call answer with `stop`).
fn done_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "length",
        _ => "stop",
    }
}

/// OpenAI's JSON argument text as Ollama's object. Text that is not JSON (a call cut off by `max_tokens`) is kept
/// as a string rather than lost.
fn arguments_value(text: &str) -> Value {
    if text.trim().is_empty() {
        return json!({});
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn out_calls(calls: Option<Vec<ToolCall>>) -> Vec<OutToolCall> {
    calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, c)| OutToolCall {
            id: c.id.filter(|id| !id.is_empty()),
            function: OutFunction {
                index: c.index.unwrap_or(u32::try_from(i).unwrap_or(0)),
                arguments: arguments_value(&c.function.arguments),
                name: c.function.name,
            },
        })
        .collect()
}

/// A whole OpenAI chat answer as Ollama's `/api/chat` or `/api/generate` answer.
pub(super) fn whole(route: Route, model: &str, openai: &[u8], took: u64) -> Result<Bytes, Error> {
    let completion = Completion::parse(openai)?;
    let choice = completion.choices.into_iter().next().unwrap_or_default();
    let stats = Some(Stats::new(completion.usage, took, 0));
    let reason = Some(done_reason(choice.finish_reason.as_deref()));
    let message = choice.message;
    let content = message.content.unwrap_or_default();
    let thinking = message.reasoning_content.filter(|t| !t.is_empty());
    let created_at = now_rfc3339();
    if route == Route::Generate {
        return to_bytes(&GenerateLine {
            model,
            created_at,
            response: &content,
            thinking: thinking.as_deref(),
            done_reason: reason,
            done: true,
            stats,
        });
    }
    to_bytes(&ChatLine {
        model,
        created_at,
        message: OutMessage {
            role: "assistant",
            content: &content,
            thinking: thinking.as_deref(),
            tool_calls: out_calls(message.tool_calls),
        },
        done_reason: reason,
        done: true,
        stats,
    })
}

/// An OpenAI embeddings answer, read leniently; vectors stay raw JSON so floats go out digit for digit.
#[derive(Debug, Deserialize)]
struct Embeddings<'a> {
    #[serde(borrow)]
    data: Vec<EmbeddingItem<'a>>,
    #[serde(default)]
    usage: Option<EmbeddingUsage>,
}

#[derive(Debug, Deserialize)]
struct EmbeddingItem<'a> {
    #[serde(default)]
    index: usize,
    #[serde(borrow)]
    embedding: &'a RawValue,
}

#[derive(Debug, Default, Deserialize)]
struct EmbeddingUsage {
    #[serde(default)]
    prompt_tokens: u64,
}

/// `/api/embed`'s answer.
#[derive(Debug, Serialize)]
struct EmbedAnswer<'a> {
    model: &'a str,
    embeddings: Vec<&'a RawValue>,
    total_duration: u64,
    load_duration: u64,
    prompt_eval_count: u64,
}

/// An OpenAI embeddings answer as `/api/embed`'s or `/api/embeddings`'s.
pub(super) fn embeddings(route: Route, model: &str, openai: &[u8], took: u64) -> Result<Bytes, Error> {
    let mut answer: Embeddings<'_> = serde_json::from_slice(openai)
        .map_err(|e| Error::BadUpstreamResponse(format!("the engine's embeddings could not be read: {e}")))?;
    answer.data.sort_by_key(|d| d.index);
    if let Some(bad) = answer.data.iter().find(|d| !d.embedding.get().starts_with('[')) {
        return Err(Error::BadUpstreamResponse(format!(
            "the engine sent an embedding that is not a list of numbers: {:.40}",
            bad.embedding.get()
        )));
    }
    let vectors: Vec<&RawValue> = answer.data.iter().map(|d| d.embedding).collect();
    if route == Route::Embeddings {
        let first = vectors.first().map_or("[]", |v| v.get());
        return Ok(Bytes::from(format!("{{\"embedding\":{first}}}")));
    }
    to_bytes(&EmbedAnswer {
        model,
        embeddings: vectors,
        total_duration: took,
        load_duration: 0,
        prompt_eval_count: answer.usage.unwrap_or_default().prompt_tokens,
    })
}

/// A tool call being streamed: OpenAI sends its name first and its arguments in pieces.
#[derive(Debug, Default)]
struct PendingCall {
    index: u32,
    id: Option<String>,
    name: String,
    arguments: String,
}

/// The NDJSON encoder of one streamed answer.
#[derive(Debug)]
pub(super) struct Lines {
    generate: bool,
    model: String,
    started: Instant,
    /// When the first piece came (`prompt_eval_duration` ends there).
    first: Option<Instant>,
    calls: Vec<PendingCall>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

impl Lines {
    /// An encoder for `/api/generate` (`generate`) or `/api/chat`, answering as `model`.
    pub(super) fn new(generate: bool, model: String, started: Instant) -> Self {
        Lines { generate, model, started, first: None, calls: Vec::new(), finish_reason: None, usage: None }
    }

    /// One `done: false` line with text or reasoning.
    fn piece(&self, content: &str, thinking: Option<&str>, out: &mut BytesMut) -> Result<(), Error> {
        let created_at = now_rfc3339();
        if self.generate {
            push_json_line(
                out,
                &GenerateLine {
                    model: &self.model,
                    created_at,
                    response: content,
                    thinking,
                    done_reason: None,
                    done: false,
                    stats: None,
                },
            )
        } else {
            let message = OutMessage { role: "assistant", content, thinking, tool_calls: Vec::new() };
            push_json_line(
                out,
                &ChatLine { model: &self.model, created_at, message, done_reason: None, done: false, stats: None },
            )
        }
    }

    /// The complete tool calls, in a `done: false` line of their own (Ollama sends each call whole).
    fn flush_calls(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        if self.calls.is_empty() || self.generate {
            self.calls.clear();
            return Ok(());
        }
        let tool_calls = std::mem::take(&mut self.calls)
            .into_iter()
            .map(|c| OutToolCall {
                id: c.id,
                function: OutFunction { index: c.index, arguments: arguments_value(&c.arguments), name: c.name },
            })
            .collect();
        let message = OutMessage { role: "assistant", content: "", thinking: None, tool_calls };
        push_json_line(
            out,
            &ChatLine {
                model: &self.model,
                created_at: now_rfc3339(),
                message,
                done_reason: None,
                done: false,
                stats: None,
            },
        )
    }
}

impl ChunkEncoder for Lines {
    fn chunk(&mut self, chunk: Chunk, out: &mut BytesMut) -> Result<(), Error> {
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        // llmux asks for one answer; an engine that sends more choices has the first one shown.
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            let delta = choice.delta;
            let reasoning = delta.reasoning_content.filter(|r| !r.is_empty());
            let content = delta.content.filter(|c| !c.is_empty());
            let calls = delta.tool_calls.filter(|c| !c.is_empty());
            if self.first.is_none() && (reasoning.is_some() || content.is_some() || calls.is_some()) {
                self.first = Some(Instant::now());
            }
            if let Some(reasoning) = reasoning {
                self.piece("", Some(&reasoning), out)?;
            }
            if let Some(content) = content {
                self.piece(&content, None, out)?;
            }
            for piece in calls.into_iter().flatten() {
                let at = match self.calls.iter().position(|c| c.index == piece.index) {
                    Some(at) => at,
                    None => {
                        self.calls.push(PendingCall { index: piece.index, ..PendingCall::default() });
                        self.calls.len() - 1
                    }
                };
                let call = &mut self.calls[at];
                if let Some(id) = piece.id.filter(|id| !id.is_empty()) {
                    call.id = Some(id);
                }
                if let Some(function) = piece.function {
                    if let Some(name) = function.name.filter(|n| !n.is_empty()) {
                        call.name = name;
                    }
                    if let Some(arguments) = function.arguments {
                        call.arguments.push_str(&arguments);
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
                self.flush_calls(out)?;
            }
        }
        Ok(())
    }

    fn fail(&mut self, error: &Error, out: &mut BytesMut) {
        // Ollama ends a failed stream with one error line; the SDKs raise it.
        let line = json!({"error": error.message_in(Dialect::Ollama)});
        if push_json_line(out, &line).is_err() {
            out.extend_from_slice(b"{\"error\":\"the stream failed\"}\n");
        }
    }

    fn finish(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        self.flush_calls(out)?;
        let total = elapsed_ns(self.started);
        let waited = self.first.map_or(total, |first| {
            u64::try_from(first.saturating_duration_since(self.started).as_nanos()).unwrap_or(total)
        });
        let stats = Some(Stats::new(self.usage, total, waited));
        let reason = Some(done_reason(self.finish_reason.as_deref()));
        let created_at = now_rfc3339();
        if self.generate {
            push_json_line(
                out,
                &GenerateLine {
                    model: &self.model,
                    created_at,
                    response: "",
                    thinking: None,
                    done_reason: reason,
                    done: true,
                    stats,
                },
            )
        } else {
            let message = OutMessage { role: "assistant", content: "", thinking: None, tool_calls: Vec::new() };
            push_json_line(
                out,
                &ChatLine { model: &self.model, created_at, message, done_reason: reason, done: true, stats },
            )
        }
    }
}
