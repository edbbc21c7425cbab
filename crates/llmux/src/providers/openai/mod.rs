//! Engines that speak OpenAI's API themselves (vLLM, llama.cpp's server, LM Studio, llamafile, OpenAI,
//! OpenRouter): the request is forwarded with only `model` rewritten, and the answer, streamed or not, is
//! forwarded byte for byte.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{Call, Converted, Endpoint, Provider, StreamConverter, UpstreamRequest};
use crate::error::Error;
use crate::observe::Tokens;
use crate::protocol::openai::RouterControls;
use crate::router::speed::Timings;

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
        let mut tail = UsageTail::default();
        tail.feed(&body);
        Ok(Converted { timings: tail.timings(), ..body.into() })
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

/// The request pinned to llama.cpp's slot `slot` (`id_slot`, with `cache_prompt` so the slot keeps the prompt):
/// the fields go last in the object, so nothing is re-serialised and the byte offsets the model name is spliced
/// at stay valid. A body that sets `id_slot` itself is left as the client wrote it.
pub fn with_slot(body: &[u8], slot: usize) -> Bytes {
    let close = body.iter().rposition(|&b| !b.is_ascii_whitespace());
    match close.filter(|&i| body[i] == b'}' && memchr::memmem::find(body, b"\"id_slot\"").is_none()) {
        Some(i) => {
            let empty = body[..i].trim_ascii_end().ends_with(b"{");
            let fields = format!("{}\"id_slot\":{slot},\"cache_prompt\":true", if empty { "" } else { "," });
            Bytes::from([&body[..i], fields.as_bytes(), &body[i..]].concat())
        }
        None => Bytes::copy_from_slice(body),
    }
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

    /// llama.cpp's `timings` in what was fed (on the last event of a stream, at the end of a whole answer);
    /// `None` when the tail holds none.
    pub fn timings(&self) -> Option<Timings> {
        let at = memchr::memmem::rfind(&self.bytes, b"\"timings\"")?;
        let rest = &self.bytes[at..];
        Some(Timings {
            prompt_n: number_after(rest, b"\"prompt_n\"")? as u64,
            prompt_ms: number_after(rest, b"\"prompt_ms\"")?,
            predicted_n: number_after(rest, b"\"predicted_n\"")? as u64,
            predicted_ms: number_after(rest, b"\"predicted_ms\"")?,
        })
    }
}

/// The JSON number after the first `key` (with its quotes) in `bytes`.
fn number_after(bytes: &[u8], key: &[u8]) -> Option<f64> {
    let at = memchr::memmem::find(bytes, key)?;
    let rest = bytes[at + key.len()..].trim_ascii_start().strip_prefix(b":")?.trim_ascii_start();
    let len = rest.iter().take_while(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E')).count();
    std::str::from_utf8(&rest[..len]).ok()?.parse().ok().filter(|n: &f64| n.is_finite() && *n >= 0.0)
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
        assert_eq!(tail.timings(), None, "the timings object lacks the counts");
        let mut llama = UsageTail::default();
        llama.feed(br#"data: {"choices":[],"timings":{"cache_n":20,"prompt_n":1200,"prompt_ms":600.5,"prompt_per_token_ms":0.5,"predicted_n":64,"predicted_ms":2.56e3}}"#);
        let t = Timings { prompt_n: 1200, prompt_ms: 600.5, predicted_n: 64, predicted_ms: 2560.0 };
        assert_eq!(llama.timings(), Some(t));
    }

    #[test]
    fn a_request_is_pinned_to_a_slot_unless_it_names_one() {
        let pinned = with_slot(br#" {"model":"m","messages":[]} "#, 2);
        let v: serde_json::Value = serde_json::from_slice(&pinned).unwrap();
        assert_eq!(
            (v["id_slot"].as_u64(), v["cache_prompt"].as_bool(), v["model"].as_str()),
            (Some(2), Some(true), Some("m"))
        );
        assert_eq!(&with_slot(br#"{"id_slot":0,"model":"m"}"#, 2)[..], br#"{"id_slot":0,"model":"m"}"#);
        let empty: serde_json::Value = serde_json::from_slice(&with_slot(b"{}", 1)).unwrap();
        assert_eq!(empty["id_slot"], 1);

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
