//! Google's Gemini API, as Google AI Studio serves it (`gemini/` deployments,
//! <https://ai.google.dev/api/generate-content>): OpenAI chat requests are translated ([`request`]) and sent to
//! `models/{model}:generateContent` (`:streamGenerateContent?alt=sse` when streamed); the answer comes back as a
//! chat completion ([`response`]) or OpenAI chunks ([`stream`]). Embeddings go to `:batchEmbedContents`
//! ([`embed`], <https://ai.google.dev/api/embeddings>).
//!
//! The key travels as `x-goog-api-key`, never in the URL (where access logs would keep it). `api_base` is the URL
//! up to the API version, as LiteLLM joins it (`{api_base}/models/{model}:{method}`); a base that is only a host
//! (`https://generativelanguage.googleapis.com`, the default) gets `/v1beta`, the version LiteLLM speaks.

mod embed;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use serde_json::{Map, Value};

use super::{Call, Converted, Provider, StreamConverter, UpstreamRequest};
use crate::config::EngineTarget;
use crate::error::Error;
use crate::protocol::openai::Operation;

/// The API version added to a base URL that names none.
const API_VERSION: &str = "/v1beta";

/// The Gemini adapter.
pub struct Gemini;

fn engine<'a>(call: &Call<'a>) -> Result<&'a EngineTarget, Error> {
    call.deployment.engine().ok_or_else(|| Error::Internal("gemini called for a deployment without an engine".into()))
}

/// The seconds since the epoch, for `created`.
fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The model's name in a route: LiteLLM configs name it bare (`gemini-2.5-flash`), the API's own lists as
/// `models/gemini-2.5-flash`.
fn model_name(model: &str) -> &str {
    model.strip_prefix("models/").unwrap_or(model)
}

/// Whether a base URL is only a scheme and host (no path to keep).
fn host_only(base: &str) -> bool {
    let base = base.split(['?', '#']).next().unwrap_or(base);
    let rest = base.split_once("://").map_or(base, |(_, rest)| rest);
    rest.split_once('/').is_none_or(|(_, path)| path.trim_matches('/').is_empty())
}

/// The URI of `method` for `model` on `base`; streamed with `alt=sse` (SSE instead of one JSON array).
pub fn method_uri(base: &str, model: &str, method: &str, sse: bool) -> Result<Uri, Error> {
    let route = format!("/models/{}:{method}", model_name(model));
    let base = if host_only(base) { format!("{}{API_VERSION}", base.trim_end_matches('/')) } else { base.to_owned() };
    let mut url = super::join_url(&base, &route);
    if sse {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str("alt=sse");
    }
    url.parse::<Uri>().map_err(|e| Error::Internal(format!("engine URL {:?}: {e}", crate::redact::url(&url))))
}

/// The headers of every request: the engine's (content type, `extra_headers`) with the key as `x-goog-api-key`
/// instead of a bearer token.
fn headers(engine: &EngineTarget) -> Result<HeaderMap, Error> {
    let mut headers = engine.request_headers()?;
    if let Some(key) = engine.api_key.as_ref().filter(|k| !k.expose().is_empty()) {
        if !engine.extra_headers.iter().any(|(n, _)| *n == AUTHORIZATION) {
            headers.remove(AUTHORIZATION);
        }
        let mut value = HeaderValue::from_str(key.expose())
            .map_err(|_| Error::Internal("the configured api_key is not a valid header value".to_owned()))?;
        value.set_sensitive(true);
        headers.insert(HeaderName::from_static("x-goog-api-key"), value);
    }
    Ok(headers)
}

fn to_bytes(value: &impl serde::Serialize) -> Result<Bytes, Error> {
    serde_json::to_vec(value).map(Bytes::from).map_err(|e| Error::Internal(format!("serialising a request: {e}")))
}

/// Whether the client asked for base64 vectors.
fn wants_base64(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .is_some_and(|v| v.get("encoding_format").and_then(Value::as_str) == Some("base64"))
}

/// Seconds from a `google.rpc.RetryInfo` among an error's `details` (`"retryDelay": "12s"`, a protobuf
/// Duration in JSON), which Gemini sends with a 429 instead of a `retry-after` header.
fn retry_delay(details: &Value) -> Option<u64> {
    details.as_array()?.iter().find_map(|d| {
        let kind = d.get("@type").and_then(Value::as_str)?;
        if !kind.ends_with("google.rpc.RetryInfo") {
            return None;
        }
        let secs = d.get("retryDelay")?.as_str()?.strip_suffix('s')?.parse::<f64>().ok()?;
        (secs.is_finite() && secs >= 0.0).then(|| secs.ceil() as u64)
    })
}

impl Provider for Gemini {
    fn build_request(&self, call: &Call<'_>) -> Result<UpstreamRequest, Error> {
        let engine = engine(call)?;
        let headers = headers(engine)?;
        let openai: Map<String, Value> = crate::protocol::openai::parse_body(call.body)?;
        match call.op {
            Operation::Chat => {
                let stream = call.head.stream;
                let method = if stream { "streamGenerateContent" } else { "generateContent" };
                let uri = method_uri(&engine.api_base, call.model, method, stream)?;
                let body = request::to_gemini(&openai, model_name(call.model), &engine.extra_params)?;
                Ok(UpstreamRequest { uri, headers, body: to_bytes(&body)? })
            }
            Operation::Embeddings => {
                let uri = method_uri(&engine.api_base, call.model, "batchEmbedContents", false)?;
                let body = embed::to_gemini(&openai, model_name(call.model))?;
                Ok(UpstreamRequest { uri, headers, body: to_bytes(&body)? })
            }
            Operation::Completion => Err(Error::Unsupported {
                message: format!("{} is not served by gemini/ deployments: use /chat/completions", call.op.route()),
                not_implemented: false,
            }),
        }
    }

    fn convert_response(&self, call: &Call<'_>, body: Bytes) -> Result<Converted, Error> {
        if call.op == Operation::Embeddings {
            let out = embed::to_openai(&body, &call.head.model, wants_base64(call.body))?;
            return Ok(Converted::from(to_bytes(&out)?));
        }
        let (out, total) = response::to_openai(&body, model_name(call.model), now())?;
        Ok(Converted { body: to_bytes(&out)?, load_duration: None, usage: Some(total), timings: None })
    }

    fn stream_converter(&self, call: &Call<'_>) -> Option<Box<dyn StreamConverter>> {
        Some(Box::new(stream::Events::new(model_name(call.model), call.head.include_usage, now())))
    }

    /// Gemini's error body (`{"error": {"code", "message", "status", "details"}}`): status and message kept, and
    /// a `RetryInfo` delay in its details counts as `retry-after` (so a 429 cools the deployment down as long as
    /// Gemini asks). A prompt over the model's input limit ("The input token count (…) exceeds the maximum
    /// number of tokens allowed (…)") is recognised by the router's context-window markers.
    fn convert_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        let mut err = super::upstream_error(status, headers, body);
        if let Error::Upstream { retry_after, .. } = &mut err {
            if retry_after.is_none() {
                let json = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
                *retry_after = json.get("error").and_then(|e| e.get("details")).and_then(retry_delay);
            }
        }
        err
    }
}
