//! `POST /api/embed`: OpenAI embeddings for both Ollama prefixes.

use std::borrow::Cow;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::request::{is_sampling, merge_object, NOT_OPTIONS, OPTION_KEYS};
use super::{to_body, to_response};
use crate::config::EngineTarget;
use crate::error::Error;
use crate::protocol::openai::{parse_body, EmbeddingUsage, EmbeddingsRequest};
use crate::providers::{Call, Converted};

/// The `/api/embed` request body.
#[derive(Serialize)]
struct EmbedBody<'a> {
    model: &'a str,
    input: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncate: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<&'a Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    options: Map<String, Value>,
}

/// Builds the `/api/embed` body: input always a list, `dimensions`/`truncate`/`keep_alive` top level (request over
/// deployment), the deployment's other params and the request's Ollama options in `options`.
pub(super) fn request(call: &Call<'_>, target: &EngineTarget) -> Result<Bytes, Error> {
    let req: EmbeddingsRequest = parse_body(call.body)?;
    let input = req.input.into_vec();
    if input.is_empty() {
        return Err(Error::invalid("'input' must not be empty", Some("input")));
    }
    let deployment = &target.extra_params;
    let get = |key: &str| {
        req.extra.get(key).filter(|v| !v.is_null()).or_else(|| deployment.get(key).filter(|v| !v.is_null()))
    };

    let mut options = Map::new();
    for (key, value) in deployment.iter().filter(|(_, v)| !v.is_null()) {
        if key == "options" {
            merge_object(&mut options, value);
        } else if !NOT_OPTIONS.contains(&key.as_str()) && !is_sampling(key) {
            options.insert(key.clone(), value.clone());
        }
    }
    for (key, value) in req.extra.iter().filter(|(k, v)| OPTION_KEYS.contains(&k.as_str()) && !v.is_null()) {
        options.insert(key.clone(), value.clone());
    }
    if let Some(value) = req.extra.get("options") {
        merge_object(&mut options, value);
    }

    let dimensions = req.dimensions.or_else(|| deployment.get("dimensions").and_then(Value::as_u64));
    let keep_alive = req
        .extra
        .get("keep_alive")
        .filter(|v| !v.is_null())
        .or(target.keep_alive.as_ref())
        .or_else(|| get("keep_alive"));
    to_body(&EmbedBody { model: call.model, input, dimensions, truncate: get("truncate"), keep_alive, options })
}

/// The `/api/embed` answer; vectors kept as raw JSON so float output is forwarded digit for digit.
#[derive(Deserialize)]
struct EmbedReply<'a> {
    #[serde(borrow)]
    embeddings: Vec<&'a RawValue>,
    prompt_eval_count: Option<u64>,
    /// Nanoseconds spent loading the model.
    load_duration: Option<u64>,
}

/// What llmux reads of the request again when answering.
#[derive(Deserialize)]
struct Encoding<'a> {
    #[serde(borrow)]
    encoding_format: Option<Cow<'a, str>>,
}

/// OpenAI's embeddings response (same shape as `protocol::openai::EmbeddingsResponse`, borrowing the vectors).
#[derive(Serialize)]
struct EmbeddingsOut<'a> {
    object: &'static str,
    data: Vec<EmbeddingOut<'a>>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct EmbeddingOut<'a> {
    object: &'static str,
    index: u32,
    embedding: Vector<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector<'a> {
    Floats(&'a RawValue),
    Base64(String),
}

/// `/api/embed` answer → OpenAI embeddings list; with `encoding_format: "base64"`, each vector as the base64 of its
/// little-endian f32 values, as OpenAI sends.
pub(super) fn response(call: &Call<'_>, body: &[u8]) -> Result<Converted, Error> {
    let reply: EmbedReply<'_> = serde_json::from_slice(body).map_err(|e| {
        Error::BadUpstreamResponse(format!("Ollama answered /api/embed with a body llmux cannot read: {e}"))
    })?;
    let base64 = serde_json::from_slice::<Encoding<'_>>(call.body)
        .ok()
        .and_then(|e| e.encoding_format)
        .is_some_and(|f| f == "base64");
    let mut data = Vec::with_capacity(reply.embeddings.len());
    for (index, raw) in reply.embeddings.iter().enumerate() {
        let embedding = if base64 { Vector::Base64(encode(raw)?) } else { Vector::Floats(raw) };
        data.push(EmbeddingOut { object: "embedding", index: index as u32, embedding });
    }
    let tokens = reply.prompt_eval_count.unwrap_or(0);
    let body = to_response(&EmbeddingsOut {
        object: "list",
        data,
        model: &call.head.model,
        usage: EmbeddingUsage { prompt_tokens: tokens, total_tokens: tokens },
    })?;
    let load_duration = reply.load_duration.map(std::time::Duration::from_nanos);
    Ok(Converted {
        body,
        load_duration,
        usage: reply.prompt_eval_count.map(|input| crate::observe::Tokens { input, output: 0 }),
        timings: None,
    })
}

fn encode(raw: &RawValue) -> Result<String, Error> {
    let floats: Vec<f32> = serde_json::from_str(raw.get()).map_err(|e| {
        Error::BadUpstreamResponse(format!("Ollama sent an embedding that is not a list of numbers: {e}"))
    })?;
    let mut bytes = Vec::with_capacity(floats.len() * 4);
    for f in floats {
        bytes.extend_from_slice(&f.to_le_bytes());
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}
