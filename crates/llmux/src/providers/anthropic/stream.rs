//! Anthropic's event stream as OpenAI chunks, event by event
//! (<https://docs.anthropic.com/en/docs/build-with-claude/streaming>): `message_start` opens the answer (its id,
//! model and prompt usage), `content_block_start`/`_delta` carry text, thinking (`reasoning_content`), tool
//! calls (named first, then `input_json_delta` pieces as argument text), `message_delta` the stop reason and
//! output usage, `message_stop` ends it; `ping` is dropped and an `error` event fails the stream.

use bytes::BytesMut;
use serde_json::{json, Value};

use super::response::{finish_reason, tokens, usage};
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
    /// Anthropic's usage so far (`message_start`'s, updated by `message_delta`).
    usage: Value,
    /// The OpenAI tool-call index of each content block that is a tool use.
    tool_index: Vec<(u64, usize)>,
    tools: usize,
    finish: Option<&'static str>,
    total: Option<Tokens>,
    ended: bool,
}

impl Events {
    /// A converter; `include_usage` adds OpenAI's usage chunk before `[DONE]`.
    pub fn new(include_usage: bool, created: u64) -> Self {
        Events {
            pending: Vec::new(),
            id: String::new(),
            model: String::new(),
            created,
            include_usage,
            usage: json!({}),
            tool_index: Vec::new(),
            tools: 0,
            finish: None,
            total: None,
            ended: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        super::super::sse::chat_chunk(&self.id, self.created, &self.model, delta, finish)
    }

    fn event(&mut self, data: &[u8], out: &mut BytesMut) -> Result<(), Error> {
        let event: Value = serde_json::from_slice(data)
            .map_err(|e| Error::BadUpstreamResponse(format!("an Anthropic stream event is not JSON: {e}")))?;
        match event.get("type").and_then(Value::as_str).unwrap_or("") {
            "message_start" => {
                let message = event.get("message").unwrap_or(&Value::Null);
                self.id = message.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
                self.model = message.get("model").and_then(Value::as_str).unwrap_or("").to_owned();
                if let Some(u) = message.get("usage") {
                    self.usage = u.clone();
                }
                push_sse(out, &self.chunk(json!({"role": "assistant", "content": ""}), None))?;
            }
            "content_block_start" => {
                let block = event.get("content_block").unwrap_or(&Value::Null);
                let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let at = self.tools;
                        self.tools += 1;
                        self.tool_index.push((index, at));
                        let call = json!([{
                            "index": at,
                            "id": block.get("id").cloned().unwrap_or(Value::Null),
                            "type": "function",
                            "function": {"name": block.get("name").cloned().unwrap_or(Value::Null), "arguments": ""},
                        }]);
                        push_sse(out, &self.chunk(json!({"tool_calls": call}), None))?;
                    }
                    Some("text") => {
                        if let Some(text) = block.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                            push_sse(out, &self.chunk(json!({"content": text}), None))?;
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = event.get("delta").unwrap_or(&Value::Null);
                let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                let text = |k: &str| delta.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                let out_delta = match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => json!({"content": text("text")}),
                    Some("thinking_delta") => json!({"reasoning_content": text("thinking")}),
                    Some("signature_delta") => {
                        json!({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": text("signature")}]})
                    }
                    Some("input_json_delta") => {
                        let at = self.tool_index.iter().find(|(i, _)| *i == index).map_or(0, |(_, at)| *at);
                        json!({"tool_calls": [{"index": at, "function": {"arguments": text("partial_json")}}]})
                    }
                    _ => return Ok(()),
                };
                push_sse(out, &self.chunk(out_delta, None))?;
            }
            "message_delta" => {
                if let Some(stop) = event.get("delta").and_then(|d| d.get("stop_reason")).and_then(Value::as_str) {
                    self.finish = Some(finish_reason(stop));
                }
                if let (Some(u), Some(have)) =
                    (event.get("usage").and_then(Value::as_object), self.usage.as_object_mut())
                {
                    for (k, v) in u.iter().filter(|(_, v)| !v.is_null()) {
                        have.insert(k.clone(), v.clone());
                    }
                }
            }
            "message_stop" => self.close(out)?,
            "error" => {
                let err = event.get("error").unwrap_or(&Value::Null);
                let kind = err.get("type").and_then(Value::as_str).unwrap_or("api_error");
                let message = err.get("message").and_then(Value::as_str).unwrap_or("the stream failed");
                return Err(Error::Upstream {
                    status: super::error_status(kind),
                    message: crate::redact::redact(message),
                    kind: Some(kind.to_owned()),
                    retry_after: None,
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn close(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        push_sse(out, &self.chunk(json!({}), Some(self.finish.unwrap_or("stop"))))?;
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
}

impl StreamConverter for Events {
    fn feed(&mut self, chunk: &[u8], out: &mut BytesMut) -> Result<(), Error> {
        self.pending.extend_from_slice(chunk);
        while let Some(end) = event_end(&self.pending) {
            let event: Vec<u8> = self.pending.drain(..end.1).collect();
            let data = data_of(&event[..end.0]);
            if !data.is_empty() && !self.ended {
                self.event(&data, out)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        if !self.ended {
            return Err(Error::BadUpstreamResponse("the Anthropic stream ended before message_stop".into()));
        }
        let _ = out;
        Ok(())
    }

    fn usage(&self) -> Option<Tokens> {
        self.total
    }
}
