//! Ollama's native API: `ollama_chat/` speaks `POST /api/chat`, `ollama/` speaks `POST /api/generate`, and both
//! embed through `POST /api/embed`.
//!
//! The translation follows LiteLLM's (`litellm/llms/ollama/`), with the divergences named where they happen:
//! `ollama_chat/` serves embeddings too, the answer reports the model name the client asked for, one stream
//! keeps one id, and tools sent to the generate endpoint are refused instead of silently lost.
//!
//! Layout: this file holds the [`Provider`]; `request.rs` what the chat and generate requests share (options,
//! switches, content parts); `reply.rs` the parsed engine reply; `chat.rs`, `generate.rs` and `embed.rs` hold
//! one route each; `stream.rs` turns Ollama's NDJSON stream into OpenAI SSE; `native.rs` passes Ollama clients'
//! own requests through.

mod chat;
mod embed;
mod generate;
mod native;
mod reply;
mod request;
mod stream;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::{upstream_error, Call, Converted, Endpoint, Provider, StreamConverter, UpstreamRequest};
use crate::config::EngineTarget;
use crate::error::Error;
use crate::protocol::openai::Operation;

/// The Ollama adapter. `chat: true` is LiteLLM's `ollama_chat/` prefix (`/api/chat`); `chat: false` is `ollama/`
/// (`/api/generate`, with chat messages flattened into one prompt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ollama {
    /// Chat requests go to `/api/chat` (true) or `/api/generate` (false).
    pub chat: bool,
}

/// The Ollama endpoint one request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Chat,
    Generate,
    Embed,
}

impl Ollama {
    fn route(self, op: Operation) -> Route {
        match op {
            Operation::Chat if self.chat => Route::Chat,
            // A legacy completion is a raw prompt, which is what `/api/generate` takes, whatever the prefix.
            Operation::Chat | Operation::Completion => Route::Generate,
            // LiteLLM fails `ollama_chat/` embeddings; the model is an Ollama model either way (spec §12.2).
            Operation::Embeddings => Route::Embed,
        }
    }
}

impl Provider for Ollama {
    fn build_request(&self, call: &Call<'_>) -> Result<UpstreamRequest, Error> {
        let target = engine_target(call)?;
        if let Some(native) = call.native_to(Endpoint::is_ollama) {
            let body = native::request(native.body, target, call.model)?;
            return Ok(UpstreamRequest { uri: target.uri(native.endpoint)?, headers: target.request_headers()?, body });
        }
        let (endpoint, body) = match self.route(call.op) {
            Route::Chat => (Endpoint::OllamaChat, chat::request(call, target)?),
            Route::Generate => (Endpoint::OllamaGenerate, generate::request(call, target)?),
            Route::Embed => (Endpoint::OllamaEmbed, embed::request(call, target)?),
        };
        Ok(UpstreamRequest { uri: target.uri(endpoint)?, headers: target.request_headers()?, body })
    }

    fn convert_response(&self, call: &Call<'_>, body: Bytes) -> Result<Converted, Error> {
        if let Some(asked) = call.native_to(Endpoint::is_ollama) {
            return Ok(native::response(body, &native::Rename::new(call.model, asked.model)));
        }
        match self.route(call.op) {
            Route::Chat => chat::response(call, &body),
            Route::Generate => generate::response(call, &body),
            Route::Embed => embed::response(call, &body),
        }
    }

    fn stream_converter(&self, call: &Call<'_>) -> Option<Box<dyn StreamConverter>> {
        if let Some(asked) = call.native_to(Endpoint::is_ollama) {
            return Some(Box::new(native::Tap::new(native::Rename::new(call.model, asked.model))));
        }
        let kind = match (self.route(call.op), call.op) {
            (Route::Chat, _) => stream::Kind::Chat,
            (Route::Generate, Operation::Completion) => stream::Kind::Text,
            (Route::Generate, _) => stream::Kind::GenerateChat,
            // `/api/embed` never streams.
            (Route::Embed, _) => return None,
        };
        Some(Box::new(stream::NdjsonConverter::new(kind, call)))
    }

    fn native(&self, call: &Call<'_>) -> bool {
        call.native_to(Endpoint::is_ollama).is_some()
    }

    fn convert_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        let mut error = upstream_error(status, headers, body);
        // Older Ollama answers 500 "…: no such file or directory" for a model whose blobs are missing; LiteLLM
        // treats it as the caller's mistake (spec §7), and a 500 would wrongly cool the deployment down.
        if let Error::Upstream { status, message, .. } = &mut error {
            if status.is_server_error() && message.contains("no such file or directory") {
                *status = StatusCode::BAD_REQUEST;
            }
        }
        error
    }
}

/// The engine a call goes to; the router never hands a provider an auto-router deployment.
fn engine_target<'a>(call: &Call<'a>) -> Result<&'a EngineTarget, Error> {
    call.deployment
        .engine()
        .ok_or_else(|| Error::Internal(format!("deployment '{}' has no engine to call", call.deployment.id)))
}

/// Serialises an engine request body.
fn to_body(body: &impl serde::Serialize) -> Result<Bytes, Error> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| Error::Internal(format!("serialising the Ollama request: {e}")))
}

/// Serialises a client response body.
fn to_response(body: &impl serde::Serialize) -> Result<Bytes, Error> {
    serde_json::to_vec(body).map(Bytes::from).map_err(|e| Error::Internal(format!("serialising the response: {e}")))
}
