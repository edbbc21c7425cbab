//! The engine's reply: one `/api/chat` or `/api/generate` object, whole or one stream line, parsed borrowing
//! from the body, with what both the whole answer and the stream read from it (tokens, timings, finish reason,
//! a leading `<think>` block, tool calls in OpenAI's form).

use std::borrow::Cow;

use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::Error;
use crate::observe::Tokens;
use crate::providers::upstream_error;
use crate::router::speed::Timings;

/// One Ollama reply object. Strings borrow from the body when they hold no escapes.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Reply<'a> {
    /// `/api/chat`: the assistant message (or its next piece).
    #[serde(borrow)]
    pub(super) message: Option<ReplyMessage<'a>>,
    /// `/api/generate`: the text (or its next piece).
    #[serde(borrow)]
    pub(super) response: Option<Cow<'a, str>>,
    /// `/api/generate`: reasoning text.
    #[serde(borrow)]
    pub(super) thinking: Option<Cow<'a, str>>,
    /// The last object of an answer.
    #[serde(default)]
    pub(super) done: bool,
    /// `stop`, `length`, `load`, …
    #[serde(borrow)]
    pub(super) done_reason: Option<Cow<'a, str>>,
    /// Prompt tokens.
    pub(super) prompt_eval_count: Option<u64>,
    /// Nanoseconds spent reading them.
    pub(super) prompt_eval_duration: Option<u64>,
    /// Generated tokens.
    pub(super) eval_count: Option<u64>,
    /// Nanoseconds spent generating them.
    pub(super) eval_duration: Option<u64>,
    /// Nanoseconds spent loading the model for this answer (on the last object).
    pub(super) load_duration: Option<u64>,
    /// Set instead of everything else when the engine fails mid-answer.
    #[serde(borrow)]
    pub(super) error: Option<&'a RawValue>,
}

impl Reply<'_> {
    /// `load_duration`, when the engine gave it.
    pub(super) fn load_duration(&self) -> Option<std::time::Duration> {
        self.load_duration.map(std::time::Duration::from_nanos)
    }

    /// The tokens the engine reported (prompt and generated), when it gave either count.
    pub(super) fn tokens(&self) -> Option<Tokens> {
        tokens(self.prompt_eval_count, self.eval_count)
    }

    /// The counts with the time each took, when the engine gave them.
    pub(super) fn timings(&self) -> Option<Timings> {
        timings([self.prompt_eval_count, self.prompt_eval_duration, self.eval_count, self.eval_duration])
    }
}

/// Ollama's `prompt_eval_count`, `prompt_eval_duration`, `eval_count` and `eval_duration` (ns) as timings;
/// `None` when it gave neither duration.
pub(super) fn timings([prompt, prompt_ns, generated, generated_ns]: [Option<u64>; 4]) -> Option<Timings> {
    (prompt_ns.is_some() || generated_ns.is_some()).then(|| Timings {
        prompt_n: prompt.unwrap_or(0),
        prompt_ms: prompt_ns.unwrap_or(0) as f64 / 1e6,
        predicted_n: generated.unwrap_or(0),
        predicted_ms: generated_ns.unwrap_or(0) as f64 / 1e6,
    })
}

/// Prompt and generated tokens, when Ollama gave either count (it leaves `prompt_eval_count` out when the
/// whole prompt came from its cache).
pub(super) fn tokens(prompt: Option<u64>, generated: Option<u64>) -> Option<Tokens> {
    (prompt.is_some() || generated.is_some())
        .then(|| Tokens { input: prompt.unwrap_or(0), output: generated.unwrap_or(0) })
}

/// `message` of an `/api/chat` reply.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ReplyMessage<'a> {
    #[serde(borrow)]
    pub(super) content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) thinking: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) tool_calls: Option<Vec<ReplyToolCall<'a>>>,
}

/// One tool call of a reply. Ollama sends each call whole, arguments as an object.
#[derive(Debug, Deserialize)]
pub(super) struct ReplyToolCall<'a> {
    /// Recent Ollama versions give an id; older ones none.
    #[serde(borrow)]
    pub(super) id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) function: ReplyFunction<'a>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ReplyFunction<'a> {
    #[serde(borrow, default)]
    pub(super) name: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) arguments: Option<&'a RawValue>,
}

impl<'a> ReplyToolCall<'a> {
    /// The call id, made up when the engine gave none (OpenAI clients key tool results by it).
    pub(super) fn id(&self) -> Cow<'a, str> {
        match &self.id {
            Some(id) if !id.is_empty() => id.clone(),
            _ => Cow::Owned(new_call_id()),
        }
    }

    /// The arguments as OpenAI's JSON string: an object's JSON text as sent, a string's contents.
    pub(super) fn arguments(&self) -> Cow<'a, str> {
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
pub(super) fn valid_utf8(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match std::str::from_utf8(bytes) {
        Ok(_) => std::borrow::Cow::Borrowed(bytes),
        Err(_) => std::borrow::Cow::Owned(String::from_utf8_lossy(bytes).into_owned().into_bytes()),
    }
}

/// Parses a whole (non-streamed) reply; a reply carrying `error` is the engine's failure.
pub(super) fn parse_reply(body: &[u8]) -> Result<Reply<'_>, Error> {
    let reply: Reply<'_> = serde_json::from_slice(body)
        .map_err(|e| Error::BadUpstreamResponse(format!("Ollama answered with a body llmux cannot read: {e}")))?;
    if reply.error.is_some() {
        return Err(engine_failure(body));
    }
    Ok(reply)
}

/// An `{"error": …}` object received with a 2xx status (mid-stream, typically): the engine failed.
pub(super) fn engine_failure(body: &[u8]) -> Error {
    upstream_error(StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new(), body)
}

/// OpenAI's `finish_reason` for Ollama's `done_reason`.
pub(super) fn finish_reason(done_reason: Option<&str>, tool_calls: bool) -> &'static str {
    match done_reason {
        _ if tool_calls => "tool_calls",
        Some("length") => "length",
        // `stop`, and `load`/`unload`/absent, which only end an answer normally.
        _ => "stop",
    }
}

/// Splits a leading `<think>…</think>` block out of `content`: (reasoning, answer). An unclosed block is all
/// reasoning (the answer was cut off while thinking), as the stream converter sees it.
pub(super) fn split_think(content: &str) -> (Option<&str>, &str) {
    let Some(rest) = content.trim_start().strip_prefix(THINK_OPEN) else {
        return (None, content);
    };
    match rest.find(THINK_CLOSE) {
        Some(end) => (Some(rest[..end].trim()), rest[end + THINK_CLOSE.len()..].trim_start()),
        None => (Some(rest.trim()), ""),
    }
}

pub(super) const THINK_OPEN: &str = "<think>";
pub(super) const THINK_CLOSE: &str = "</think>";
