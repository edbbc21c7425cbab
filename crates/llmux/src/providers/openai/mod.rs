//! Engines that speak OpenAI's API themselves (vLLM, llama.cpp's server, LM Studio, llamafile, OpenAI,
//! OpenRouter): the request is forwarded with only `model` rewritten, and the answer, streamed or not, is
//! forwarded byte for byte.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{Call, Converted, Endpoint, Provider, StreamConverter, UpstreamRequest};
use crate::error::Error;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::openai::{Operation, RequestHead};

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
