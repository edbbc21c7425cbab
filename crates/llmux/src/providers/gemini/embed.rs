//! OpenAI embeddings through Gemini's `batchEmbedContents` (<https://ai.google.dev/api/embeddings>): every input
//! a request `{model: "models/…", content: {parts: [{text}]}}` (with `dimensions` as `outputDimensionality`), and
//! the answer's `embeddings[].values` as OpenAI's list, base64-encoded when the client asked
//! `encoding_format: "base64"` (as the OpenAI SDK does by default).

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::error::Error;

/// The `batchEmbedContents` body for an OpenAI embeddings request to `model`.
pub fn to_gemini(openai: &Map<String, Value>, model: &str) -> Result<Value, Error> {
    let texts: Vec<&str> = match openai.get("input") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).collect()
        }
        _ => {
            return Err(Error::invalid(
                "Gemini embeds text only: 'input' must be a string or a list of strings",
                Some("input"),
            ))
        }
    };
    let dimensions = openai.get("dimensions").and_then(Value::as_u64);
    let requests: Vec<Value> = texts
        .iter()
        .map(|text| {
            let mut request = json!({"model": format!("models/{model}"), "content": {"parts": [{"text": text}]}});
            if let Some(d) = dimensions {
                request["outputDimensionality"] = json!(d);
            }
            // Gemini's own per-request fields, sent through the SDK's `extra_body` (`taskType`, `title`).
            for key in ["taskType", "title"] {
                if let Some(v) = openai.get(key) {
                    request[key] = v.clone();
                }
            }
            request
        })
        .collect();
    Ok(json!({"requests": requests}))
}

/// The OpenAI embeddings list for a `batchEmbedContents` answer; `model` as the client named it.
pub fn to_openai(body: &[u8], model: &str, base64: bool) -> Result<Value, Error> {
    let answer: Value = serde_json::from_slice(body)
        .map_err(|e| Error::BadUpstreamResponse(format!("the Gemini embeddings answer is not JSON: {e}")))?;
    let embeddings = answer
        .get("embeddings")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::BadUpstreamResponse("the Gemini embeddings answer has no embeddings list".into()))?;
    let mut data = Vec::with_capacity(embeddings.len());
    for (index, embedding) in embeddings.iter().enumerate() {
        let values = embedding.get("values").cloned().unwrap_or_else(|| json!([]));
        let vector = if base64 { Value::String(encode(&values)?) } else { values };
        data.push(json!({"object": "embedding", "index": index, "embedding": vector}));
    }
    // The API reports no token counts for embeddings.
    Ok(json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 0, "total_tokens": 0}}))
}

/// The base64 of a vector's little-endian f32 values, as OpenAI sends it.
fn encode(values: &Value) -> Result<String, Error> {
    let floats: Vec<f32> = serde_json::from_value(values.clone()).map_err(|e| {
        Error::BadUpstreamResponse(format!("Gemini sent an embedding that is not a list of numbers: {e}"))
    })?;
    let bytes: Vec<u8> = floats.iter().flat_map(|f| f.to_le_bytes()).collect();
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}
