//! Anthropic's Messages API (`anthropic/` deployments, <https://docs.anthropic.com/en/api/messages>): OpenAI
//! chat requests are translated ([`request`]) and the answer comes back as a chat completion ([`response`]) or
//! OpenAI chunks ([`stream`]). A client that itself spoke `/v1/messages` has its request forwarded as sent (only
//! `model` replaced) and gets the answer, streamed or not, exactly as Anthropic wrote it.
//!
//! Every request carries the key as `x-api-key` and `anthropic-version: 2023-06-01`; `extra_headers` (such as
//! `anthropic-beta` for prompt-caching or other betas) are added as configured.

mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{Map, Value};

use super::{Call, Converted, Endpoint, Provider, StreamConverter, UpstreamRequest};
use crate::config::EngineTarget;
use crate::error::Error;
use crate::protocol::openai::{Operation, RouterControls};

pub use request::DEFAULT_MAX_TOKENS;

/// The API version llmux speaks (and LiteLLM sends).
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The Anthropic adapter.
pub struct Anthropic;

fn engine<'a>(call: &Call<'a>) -> Result<&'a EngineTarget, Error> {
    call.deployment
        .engine()
        .ok_or_else(|| Error::Internal("anthropic called for a deployment without an engine".into()))
}

/// LiteLLM's per-model default for `max_tokens`: `model_info.max_output_tokens` (or `max_tokens`), else the
/// model's from the bundled table.
fn max_output(call: &Call<'_>, engine: &EngineTarget) -> Option<u64> {
    let info = &call.deployment.model_info;
    info.get("max_output_tokens")
        .or_else(|| info.get("max_tokens"))
        .and_then(Value::as_u64)
        .or_else(|| super::prices::lookup("anthropic", &engine.upstream_model).and_then(|p| p.max_output_tokens))
}

/// The seconds since the epoch, for `created`.
fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The headers of every request: the engine's (content type, `extra_headers`), the key as `x-api-key` instead
/// of a bearer token, and the API version unless `extra_headers` set one.
fn headers(engine: &EngineTarget) -> Result<HeaderMap, Error> {
    let mut headers = engine.request_headers()?;
    let configured = |name: &str| engine.extra_headers.iter().any(|(n, _)| n.as_str() == name);
    if let Some(key) = engine.api_key.as_ref().filter(|k| !k.expose().is_empty()) {
        if !configured("authorization") {
            headers.remove(AUTHORIZATION);
        }
        let mut value = HeaderValue::from_str(key.expose())
            .map_err(|_| Error::Internal("the configured api_key is not a valid header value".to_owned()))?;
        value.set_sensitive(true);
        headers.insert(HeaderName::from_static("x-api-key"), value);
    }
    if !configured("anthropic-version") {
        headers.insert(HeaderName::from_static("anthropic-version"), HeaderValue::from_static(ANTHROPIC_VERSION));
    }
    Ok(headers)
}

/// The client's own Messages request, for this deployment: `model` replaced, LiteLLM's router controls removed,
/// the deployment's parameters added where the client set none.
fn native_body(body: &[u8], model: &str, extra: &Map<String, Value>) -> Result<Bytes, Error> {
    let mut map: Map<String, Value> = crate::protocol::openai::parse_body(body)?;
    map.insert("model".into(), Value::String(model.to_owned()));
    for field in RouterControls::FIELDS {
        map.remove(*field);
    }
    for (k, v) in extra {
        map.entry(k.clone()).or_insert_with(|| v.clone());
    }
    to_bytes(&map)
}

fn to_bytes(value: &impl serde::Serialize) -> Result<Bytes, Error> {
    serde_json::to_vec(value).map(Bytes::from).map_err(|e| Error::Internal(format!("serialising a request: {e}")))
}

/// The HTTP status Anthropic uses for an error `type` (<https://docs.anthropic.com/en/api/errors>), for errors
/// that arrive inside a stream.
pub fn error_status(kind: &str) -> StatusCode {
    let code = match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    };
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl Provider for Anthropic {
    fn build_request(&self, call: &Call<'_>) -> Result<UpstreamRequest, Error> {
        let engine = engine(call)?;
        let uri = engine.uri(Endpoint::AnthropicMessages)?;
        let headers = headers(engine)?;
        if let Some(native) = call.native_to(Endpoint::is_anthropic) {
            return Ok(UpstreamRequest {
                uri,
                headers,
                body: native_body(native.body, call.model, &engine.extra_params)?,
            });
        }
        if call.op != Operation::Chat {
            return Err(Error::Unsupported {
                message: format!(
                    "{} is not served by anthropic/ deployments: Anthropic's Messages API answers chat only",
                    call.op.route()
                ),
                not_implemented: false,
            });
        }
        let openai: Map<String, Value> = crate::protocol::openai::parse_body(call.body)?;
        let mut body = request::to_anthropic(&openai, call.model, max_output(call, engine), &engine.extra_params)?;
        for field in RouterControls::FIELDS {
            body.remove(*field);
        }
        Ok(UpstreamRequest { uri, headers, body: to_bytes(&body)? })
    }

    fn convert_response(&self, call: &Call<'_>, body: Bytes) -> Result<Converted, Error> {
        if call.native_to(Endpoint::is_anthropic).is_some() {
            let usage = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| Some(response::tokens(&response::usage(v.get("usage")?))));
            return Ok(Converted { body, load_duration: None, usage, timings: None });
        }
        let (out, total) = response::to_openai(&body, now())?;
        Ok(Converted { body: to_bytes(&out)?, load_duration: None, usage: Some(total), timings: None })
    }

    fn stream_converter(&self, call: &Call<'_>) -> Option<Box<dyn StreamConverter>> {
        if call.native_to(Endpoint::is_anthropic).is_some() {
            return None;
        }
        Some(Box::new(stream::Events::new(call.head.include_usage, now())))
    }

    fn native(&self, call: &Call<'_>) -> bool {
        call.native_to(Endpoint::is_anthropic).is_some()
    }

    fn convert_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        super::upstream_error(status, headers, body)
    }
}
