//! `general_settings.master_key`: the one key every API call must carry when it is set.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::config::Config;
use crate::error::{Dialect, Error};

/// Middleware form of [`check`], for the routes axum serves.
pub async fn require_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match check(&state.executor().config, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// [`check`] for Anthropic's routes, as middleware (its clients read Anthropic's error shape).
pub async fn require_key_anthropic(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match check_in(&state.executor().config, request.headers(), Dialect::Anthropic) {
        Ok(()) => next.run(request).await,
        Err(e) => e.response_in(Dialect::Anthropic),
    }
}

/// [`check_in`] for Ollama's model routes, as middleware.
pub async fn require_key_ollama(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match check_in(&state.executor().config, request.headers(), Dialect::Ollama) {
        Ok(()) => next.run(request).await,
        Err(e) => e.response_in(Dialect::Ollama),
    }
}

/// [`check`] for a route in `dialect`: Ollama's routes need no key when `llmux_settings.ollama_api.require_key`
/// is false (its own clients have no key to send).
pub fn check_in(config: &Config, headers: &HeaderMap, dialect: Dialect) -> Result<(), Error> {
    if dialect == Dialect::Ollama && !config.ollama_requires_key {
        return Ok(());
    }
    check(config, headers)
}

/// Rejects a request without the master key (as `Authorization: Bearer`, `x-api-key` — Anthropic's clients — or
/// `x-litellm-api-key` — LiteLLM's own header, which Cline sends) with LiteLLM's 401.
/// The comparison is constant-time, and neither key ever reaches a log or an error body.
pub fn check(config: &Config, headers: &HeaderMap) -> Result<(), Error> {
    let Some(master) = config.general.master_key.as_ref() else {
        return Ok(());
    };
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim())
        .map(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).unwrap_or(v).trim());
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let sent = header("x-litellm-api-key").or(bearer.filter(|v| !v.is_empty())).or_else(|| header("x-api-key"));
    match sent {
        None | Some("") => Err(Error::Unauthorized("Authentication Error, No api key passed in.".into())),
        Some(key) if same_key(key, master.expose()) => Ok(()),
        Some(_) => Err(Error::Unauthorized(
            "Authentication Error, Invalid proxy server token passed. Received API key does not match the master key."
                .into(),
        )),
    }
}

/// Whether `sent` is `master`, in time that depends on neither: both are hashed first, so neither a differing
/// length (which `ct_eq` on the bytes answers at once) nor the first differing byte shows in the timing.
fn same_key(sent: &str, master: &str) -> bool {
    let sent = Sha256::digest(sent.as_bytes());
    let master = Sha256::digest(master.as_bytes());
    bool::from(sent.as_slice().ct_eq(master.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::same_key;

    #[test]
    fn keys_compare_by_digest() {
        assert!(same_key("sk-master", "sk-master"));
        assert!(!same_key("sk-maste", "sk-master"));
        assert!(!same_key("sk-masterr", "sk-master"));
        assert!(!same_key("", "sk-master"));
    }
}
