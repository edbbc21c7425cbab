//! The request head: what llmux reads of every request without materialising the body (model and its byte
//! span, stream flags, LiteLLM's router controls, the payload's shape). Apart from the typed requests because
//! it is on every request's path and borrows from the body instead of copying it.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{body_error, Operation, StreamOptions};
use crate::error::Error;

/// What llmux reads of every request without materialising the body: enough to route it, validate its shape,
/// and splice a new `model` into the original bytes for engines that speak OpenAI themselves.
#[derive(Debug)]
pub struct RequestHead<'a> {
    /// The model name the client asked for.
    pub model: Cow<'a, str>,
    /// Byte range of the `model` value (with its quotes) inside the body.
    pub model_span: std::ops::Range<usize>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// LiteLLM's per-request router controls, consumed by llmux and never sent to an engine.
    pub controls: RouterControls,
}

/// Body fields LiteLLM reads as router settings for one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouterControls {
    /// `num_retries`: overrides the configured retries (`0` also overrides `retry_policy`).
    pub num_retries: Option<u32>,
    /// `disable_fallbacks: true`: no fallback hops.
    pub disable_fallbacks: bool,
    /// Client-side `fallbacks`: model names tried after the configured chain.
    pub fallbacks: Option<Vec<String>>,
    /// `timeout` seconds for this request.
    pub timeout: Option<f64>,
    /// `stream_timeout` seconds for this request.
    pub stream_timeout: Option<f64>,
    /// `priority`: its place in the queue for a free slot, lower first (LiteLLM's scheduler).
    pub priority: Option<i64>,
}

impl RouterControls {
    /// The body fields these come from: stripped before a request reaches an engine.
    pub const FIELDS: &'static [&'static str] =
        &["num_retries", "disable_fallbacks", "fallbacks", "timeout", "stream_timeout", "priority"];

    /// Whether the client sent any of them.
    pub fn any(&self) -> bool {
        *self != RouterControls::default()
    }
}

#[derive(Deserialize)]
struct HeadFields<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    messages: Option<Shape>,
    prompt: Option<Shape>,
    input: Option<Shape>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    n: Option<u64>,
    // LiteLLM's router controls, listed here rather than flattened: `flatten` would buffer the body and break
    // the borrowed `RawValue` above.
    num_retries: Option<u32>,
    #[serde(default)]
    disable_fallbacks: bool,
    fallbacks: Option<Vec<String>>,
    timeout: Option<f64>,
    stream_timeout: Option<f64>,
    priority: Option<i64>,
}

/// What a request's payload field (`messages`, `prompt`, `input`) is, read without keeping it: the payload is
/// most of the body and only its shape is checked here.
enum Shape {
    Array { empty: bool },
    String,
    Other,
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Shape;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
                let mut empty = true;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    empty = false;
                }
                Ok(Shape::Array { empty })
            }
            fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
                Ok(Shape::String)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
                while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
                Ok(Shape::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_unit<E>(self) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

impl<'a> RequestHead<'a> {
    /// Reads and checks the head of a request body for `op`.
    pub fn parse(body: &'a [u8], op: Operation) -> Result<Self, Error> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::invalid("Request body is empty: expected a JSON object", None));
        }
        // serde reads a struct from a JSON array too (by position); a request body is an object.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(Error::invalid("Invalid request body: expected a JSON object", None));
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        // Plain serde first: tracking the path costs a third of the parse, and only an error message needs it.
        let fields = match HeadFields::deserialize(&mut de) {
            Ok(fields) => fields,
            Err(_) => {
                let mut de = serde_json::Deserializer::from_slice(body);
                let traced: Result<HeadFields<'a>, _> = serde_path_to_error::deserialize(&mut de);
                return Err(traced.map_or_else(body_error, |_| Error::invalid("Invalid request body", None)));
            }
        };
        de.end().map_err(|e| Error::invalid(format!("Invalid JSON body: {e}"), None))?;

        let raw_model =
            fields.model.ok_or_else(|| Error::invalid("Missing required parameter: 'model'", Some("model")))?;
        // Borrowed unless the name has escapes (serde's own `Cow` always copies).
        let model: Cow<'a, str> = match serde_json::from_str::<&'a str>(raw_model.get()) {
            Ok(name) => Cow::Borrowed(name),
            Err(_) => Cow::Owned(
                serde_json::from_str::<String>(raw_model.get())
                    .map_err(|_| Error::invalid("'model' must be a string", Some("model")))?,
            ),
        };
        if model.is_empty() {
            return Err(Error::invalid("'model' must not be empty", Some("model")));
        }
        // No model has a newline or an escape in its name; refusing them keeps them out of logs and headers.
        if model.chars().any(char::is_control) {
            return Err(Error::invalid("'model' must not contain control characters", Some("model")));
        }
        let start = raw_model.get().as_ptr() as usize - body.as_ptr() as usize;
        let model_span = start..start + raw_model.get().len();

        let (name, raw, expected) = match op {
            Operation::Chat => ("messages", fields.messages, "an array of messages"),
            Operation::Completion => ("prompt", fields.prompt, "a string or an array"),
            Operation::Embeddings => ("input", fields.input, "a string or an array"),
        };
        let shape = raw.ok_or_else(|| Error::invalid(format!("Missing required parameter: '{name}'"), Some(name)))?;
        let ok = match op {
            Operation::Chat => matches!(shape, Shape::Array { empty: false }),
            Operation::Completion | Operation::Embeddings => matches!(shape, Shape::Array { .. } | Shape::String),
        };
        if !ok {
            return Err(Error::invalid(format!("'{name}' must be {expected}"), Some(name)));
        }
        let _ = (fields.temperature, fields.top_p, fields.max_tokens, fields.max_completion_tokens, fields.n);
        Ok(RequestHead {
            model,
            model_span,
            stream: fields.stream.unwrap_or(false) && op != Operation::Embeddings,
            include_usage: fields.stream_options.map(|o| o.include_usage).unwrap_or(false),
            controls: RouterControls {
                num_retries: fields.num_retries,
                disable_fallbacks: fields.disable_fallbacks,
                fallbacks: fields.fallbacks,
                timeout: fields.timeout.filter(|t| t.is_finite() && *t > 0.0),
                stream_timeout: fields.stream_timeout.filter(|t| t.is_finite() && *t > 0.0),
                priority: fields.priority,
            },
        })
    }

    /// The original body with `model` replaced by `upstream_model`; every other byte is kept as sent.
    pub fn splice_model(&self, body: &[u8], upstream_model: &str) -> bytes::Bytes {
        let quoted = serde_json::to_string(upstream_model).unwrap_or_else(|_| "\"\"".to_owned());
        let mut out = Vec::with_capacity(body.len() + quoted.len());
        out.extend_from_slice(&body[..self.model_span.start]);
        out.extend_from_slice(quoted.as_bytes());
        out.extend_from_slice(&body[self.model_span.end..]);
        out.into()
    }
}
