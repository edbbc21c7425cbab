//! Engines that speak OpenAI's API themselves (vLLM, llama.cpp's server, LM Studio, llamafile, OpenAI,
//! OpenRouter): the request is forwarded with only `model` rewritten, and the answer, streamed or not, is
//! forwarded byte for byte.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{Call, Converted, Endpoint, Provider, StreamConverter, UpstreamRequest};
use crate::error::Error;
use crate::observe::Tokens;
use crate::protocol::openai::RouterControls;

/// The OpenAI-compatible passthrough adapter.
pub struct OpenAiCompatible;

impl Provider for OpenAiCompatible {
    fn build_request(&self, call: &Call<'_>) -> Result<UpstreamRequest, Error> {
        let engine = call
            .deployment
            .engine()
            .ok_or_else(|| Error::Internal("passthrough called for a deployment without an engine".into()))?;
        let body = if engine.extra_params.is_empty() && !call.head.controls.any() {
            call.head.splice_model(call.body, call.model)
        } else {
            with_defaults(call.body, call.model, &engine.extra_params)?
        };
        Ok(UpstreamRequest { uri: engine.uri(Endpoint::OpenAi(call.op))?, headers: engine.request_headers()?, body })
    }

    fn convert_response(&self, _call: &Call<'_>, body: Bytes) -> Result<Converted, Error> {
        Ok(body.into())
    }

    fn answer_unchanged(&self, _call: &Call<'_>) -> bool {
        true
    }

    fn stream_converter(&self, _call: &Call<'_>) -> Option<Box<dyn StreamConverter>> {
        None
    }
}

/// The body with `model` replaced, LiteLLM's router controls removed, and the deployment's extra parameters added
/// where the client did not set them (LiteLLM sends `litellm_params` such as `temperature` as call defaults).
/// Only this path re-serialises.
fn with_defaults(body: &[u8], model: &str, defaults: &Map<String, Value>) -> Result<Bytes, Error> {
    let mut map: Map<String, Value> = crate::protocol::openai::parse_body(body)?;
    map.insert("model".to_owned(), Value::String(model.to_owned()));
    for field in RouterControls::FIELDS {
        map.remove(*field);
    }
    for (k, v) in defaults {
        map.entry(k.clone()).or_insert_with(|| v.clone());
    }
    serde_json::to_vec(&map).map(Bytes::from).map_err(|e| Error::Internal(format!("serialising a request: {e}")))
}

/// How many of an answer's last bytes [`UsageTail`] keeps: an OpenAI-style `usage` object (with its details),
/// and what engines write after it (llama.cpp's `timings`), fit with room to spare.
const USAGE_TAIL: usize = 4096;

/// The last bytes of an OpenAI-style answer passing through unchanged, kept to read the `usage` the engine
/// reports (at the end of a whole answer; in the last event of a stream when the client asked `include_usage`)
/// without parsing the answer: a copy of at most a few KB per answer and one byte search at its end.
#[derive(Debug, Default)]
pub struct UsageTail {
    bytes: Vec<u8>,
}

impl UsageTail {
    /// Another piece of the answer, in order.
    pub fn feed(&mut self, chunk: &[u8]) {
        if chunk.len() >= USAGE_TAIL {
            self.bytes.clear();
            self.bytes.extend_from_slice(&chunk[chunk.len() - USAGE_TAIL..]);
            return;
        }
        // Up to twice the tail is kept, so the front is dropped (a move) once per tail's worth, not per chunk.
        if self.bytes.len() + chunk.len() > 2 * USAGE_TAIL {
            let drop = self.bytes.len() + chunk.len() - USAGE_TAIL;
            self.bytes.drain(..drop.min(self.bytes.len()));
        }
        self.bytes.extend_from_slice(chunk);
    }

    /// The last usage in what was fed (the final usage of a stream that reports it on every chunk): its
    /// `prompt_tokens` and `completion_tokens` (the rest of `total_tokens` when an engine gives only that);
    /// `None` when the tail holds no `total_tokens`.
    pub fn tokens(&self) -> Option<Tokens> {
        let total = count_after(&self.bytes, b"\"total_tokens\"")?;
        let input = count_after(&self.bytes, b"\"prompt_tokens\"").unwrap_or(0);
        let output = count_after(&self.bytes, b"\"completion_tokens\"").unwrap_or(total.saturating_sub(input));
        Some(Tokens { input, output })
    }
}

/// The number after the last `key` (with its quotes) in `bytes`. A key inside a string value is escaped
/// (`\"total_tokens\"`), so it does not match.
fn count_after(bytes: &[u8], key: &[u8]) -> Option<u64> {
    let at = memchr::memmem::rfind(bytes, key)?;
    let rest = bytes[at + key.len()..].trim_ascii_start().strip_prefix(b":")?.trim_ascii_start();
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::openai::{Operation, RequestHead};

    #[test]
    fn usage_is_read_from_the_tail_of_an_answer_or_stream() {
        let answer = br#"{"id":"x","choices":[{"message":{"content":"the \"total_tokens\": 7"}}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens": 15},"timings":{"n":1}}"#;
        let mut tail = UsageTail::default();
        for piece in answer.chunks(7) {
            tail.feed(piece);
        }
        assert_eq!(tail.tokens(), Some(Tokens { input: 10, output: 5 }));

        let mut stream = UsageTail::default();
        for i in 0..2000 {
            stream.feed(
                format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"w{i}\"}}}}],\"usage\":null}}\n\n").as_bytes(),
            );
        }
        assert_eq!(stream.tokens(), None, "no usage chunk (the client did not ask include_usage)");
        stream
            .feed(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"total_tokens\":2003}}\n\ndata: [DONE]\n\n");
        assert_eq!(stream.tokens(), Some(Tokens { input: 3, output: 2000 }), "completion = total - prompt");
        assert!(stream.bytes.len() <= 2 * USAGE_TAIL);

        let mut big = UsageTail::default();
        big.feed(&[b' '; 3 * USAGE_TAIL]);
        big.feed(br#"{"total_tokens":9}"#);
        assert_eq!(big.tokens(), Some(Tokens { input: 0, output: 9 }));
        let total = |bytes: &[u8]| count_after(bytes, b"\"total_tokens\"");
        assert_eq!(total(br#"{"content":"\"total_tokens\": 4"}"#), None, "escaped, inside a string");
        assert_eq!(total(br#"{"total_tokens":null}"#), None);
    }

    #[test]
    fn splice_keeps_every_other_byte() {
        let body = br#"{ "messages":[{"role":"user","content":"hi"}], "model" : "coding","x_custom":{"a":[1,2]},"temperature":0.25}"#;
        let head = RequestHead::parse(body, Operation::Chat).unwrap();
        assert_eq!(head.model, "coding");
        let out = head.splice_model(body, "qwen3:8b");
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{ "messages":[{"role":"user","content":"hi"}], "model" : "qwen3:8b","x_custom":{"a":[1,2]},"temperature":0.25}"#
        );
    }

    #[test]
    fn escaped_model_names_are_decoded_and_replaced_whole() {
        let body = br#"{"model":"a\"b\u00e9","messages":[{"role":"user","content":"x"}]}"#;
        let head = RequestHead::parse(body, Operation::Chat).unwrap();
        assert_eq!(head.model, "a\"b\u{e9}");
        let out = head.splice_model(body, "m");
        assert_eq!(&out[..], br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#);
    }

    #[test]
    fn defaults_do_not_override_client_values() {
        let mut defaults = Map::new();
        defaults.insert("temperature".into(), Value::from(0.1));
        defaults.insert("top_k".into(), Value::from(20));
        let out = with_defaults(br#"{"model":"a","temperature":0.9,"messages":[]}"#, "b", &defaults).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "b");
        assert_eq!(v["temperature"], 0.9);
        assert_eq!(v["top_k"], 20);
    }
}
