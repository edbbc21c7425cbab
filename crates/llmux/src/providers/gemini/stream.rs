//! Gemini's `streamGenerateContent?alt=sse` as OpenAI chunks. Each `data:` event is a whole
//! `GenerateContentResponse` holding the next piece of the answer (<https://ai.google.dev/api/generate-content>,
//! "Response body" of `models.streamGenerateContent`): its text parts become content deltas, thought parts
//! `reasoning_content` deltas, `functionCall` parts whole tool-call deltas; the last one carries `finishReason`
//! and the final `usageMetadata`. The stream has no closing event: it ends when the body does, and a stream that
//! ends before any `finishReason` was cut off. An `{"error": …}` event fails the stream with its status.

use bytes::BytesMut;
use http::StatusCode;
use serde_json::{json, Value};

use super::response::{finish_reason, tokens, tool_call, usage};
use crate::error::Error;
use crate::observe::Tokens;
use crate::providers::sse::{data_of, event_end};
use crate::providers::{push_sse, StreamConverter, SSE_DONE};

/// Converts one streamed answer.
pub struct Events {
    /// Bytes of an event not complete yet.
    pending: Vec<u8>,
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    /// Whether the first chunk (with the role) went out.
    started: bool,
    /// The latest `usageMetadata` (each event carries the running totals).
    usage: Value,
    /// Tool calls sent so far, for the index of the next.
    tools: usize,
    /// Gemini's `finishReason`, once an event carried it.
    finish: Option<String>,
    total: Option<Tokens>,
}

impl Events {
    /// A converter for `model`; `include_usage` adds OpenAI's usage chunk before `[DONE]`.
    pub fn new(model: &str, include_usage: bool, created: u64) -> Self {
        Events {
            pending: Vec::new(),
            id: crate::protocol::openai::new_id("chatcmpl"),
            model: model.to_owned(),
            created,
            include_usage,
            started: false,
            usage: Value::Null,
            tools: 0,
            finish: None,
            total: None,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        super::super::sse::chat_chunk(&self.id, self.created, &self.model, delta, finish)
    }

    fn event(&mut self, data: &[u8], out: &mut BytesMut) -> Result<(), Error> {
        let event: Value = serde_json::from_slice(data)
            .map_err(|e| Error::BadUpstreamResponse(format!("a Gemini stream event is not JSON: {e}")))?;
        if let Some(err) = event.get("error") {
            let code = err.get("code").and_then(Value::as_u64).and_then(|c| u16::try_from(c).ok());
            let message = err.get("message").and_then(Value::as_str).unwrap_or("the stream failed");
            return Err(Error::Upstream {
                status: code.and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                message: crate::redact::redact(message),
                kind: err.get("status").and_then(Value::as_str).map(str::to_owned),
                retry_after: None,
            });
        }
        if !self.started {
            self.started = true;
            if let Some(id) = event.get("responseId").and_then(Value::as_str) {
                self.id = id.to_owned();
            }
            if let Some(version) = event.get("modelVersion").and_then(Value::as_str) {
                self.model = version.to_owned();
            }
            push_sse(out, &self.chunk(json!({"role": "assistant", "content": ""}), None))?;
        }
        if let Some(meta) = event.get("usageMetadata") {
            self.usage = meta.clone();
        }
        let candidate = event.get("candidates").and_then(|c| c.get(0));
        let parts = candidate.and_then(|c| c.get("content")).and_then(|c| c.get("parts")).and_then(Value::as_array);
        for part in parts.into_iter().flatten() {
            let delta = if part.get("functionCall").is_some() {
                let call = tool_call(part, self.tools);
                self.tools += 1;
                json!({"tool_calls": [call]})
            } else if let Some(text) = part.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                if part.get("thought").and_then(Value::as_bool) == Some(true) {
                    json!({"reasoning_content": text})
                } else {
                    json!({"content": text})
                }
            } else {
                continue;
            };
            push_sse(out, &self.chunk(delta, None))?;
        }
        if let Some(reason) = candidate.and_then(|c| c.get("finishReason")).and_then(Value::as_str) {
            self.finish = Some(reason.to_owned());
        } else if event.get("promptFeedback").and_then(|f| f.get("blockReason")).is_some() {
            // A blocked prompt: no candidates at all, as in the whole answer.
            self.finish = Some("SAFETY".to_owned());
        }
        Ok(())
    }
}

impl StreamConverter for Events {
    fn feed(&mut self, chunk: &[u8], out: &mut BytesMut) -> Result<(), Error> {
        self.pending.extend_from_slice(chunk);
        while let Some(end) = event_end(&self.pending) {
            let event: Vec<u8> = self.pending.drain(..end.1).collect();
            let data = data_of(&event[..end.0]);
            if !data.is_empty() {
                self.event(&data, out)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        // An event the engine did not close with a blank line before the end of the body still counts.
        let rest = std::mem::take(&mut self.pending);
        let data = data_of(&rest);
        if !data.is_empty() {
            self.event(&data, out)?;
        }
        let Some(reason) = self.finish.take() else {
            return Err(Error::BadUpstreamResponse("the Gemini stream ended before a finishReason".into()));
        };
        let reason = finish_reason(&reason, self.tools > 0);
        push_sse(out, &self.chunk(json!({}), Some(reason)))?;
        let usage = usage(&self.usage);
        self.total = Some(tokens(&usage));
        if self.include_usage {
            let mut last = self.chunk(json!({}), None);
            last["choices"] = json!([]);
            last["usage"] = usage;
            push_sse(out, &last)?;
        }
        out.extend_from_slice(SSE_DONE);
        Ok(())
    }

    fn usage(&self) -> Option<Tokens> {
        self.total
    }
}
