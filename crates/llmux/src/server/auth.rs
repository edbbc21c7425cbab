//! `general_settings.master_key`, the one key every API call must carry when it is set, and the virtual keys
//! ([`crate::keys`]) accepted wherever the master key is except on admin routes.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::config::Config;
use crate::error::{Dialect, Error};
use crate::keys::{Key, Keys};

/// Who sent a request.
#[derive(Clone)]
pub enum Who {
    /// No master key is set and no known virtual key was sent: anyone may call.
    Open,
    Master,
    /// A known virtual key; whether it is usable now (not blocked, expired nor over budget) is checked once the
    /// request is attributed to it ([`Keys::check_usable`]), so refused requests count against the key too.
    Virtual(Arc<Key>),
}

/// Who sent `headers`, for a client route in `dialect`: the master key, a known virtual key, or nobody where no
/// key is needed.
pub fn identify(config: &Config, keys: Option<&Keys>, headers: &HeaderMap, dialect: Dialect) -> Result<Who, Error> {
    let sent = sent_key(headers);
    let known = |sent: &str| keys.and_then(|k| k.find(sent)).map(Who::Virtual);
    let open = dialect == Dialect::Ollama && !config.ollama_requires_key;
    match (config.general.master_key.as_ref(), sent) {
        (Some(master), Some(key)) if same_key(key, master.expose()) => Ok(Who::Master),
        (_, Some(key)) => match known(key) {
            Some(who) => Ok(who),
            None if open || config.general.master_key.is_none() => Ok(Who::Open),
            None => Err(invalid_key()),
        },
        (None, None) => Ok(Who::Open),
        (Some(_), None) if open => Ok(Who::Open),
        (Some(_), None) => Err(no_key()),
    }
}

/// Middleware for client routes other than generation (model lists, stored responses): the master key or a
/// virtual key.
pub async fn require_client_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    client_key(state, request, next, Dialect::OpenAi).await
}

async fn client_key(state: AppState, mut request: Request, next: Next, dialect: Dialect) -> Response {
    let keys = state.live.keys().map(|k| k.as_ref());
    let usable = |who: Who| match (&who, keys) {
        (Who::Virtual(key), Some(keys)) => keys.check_usable(key).map(|()| who),
        _ => Ok(who),
    };
    match identify(&state.executor().config, keys, request.headers(), dialect).and_then(usable) {
        Ok(who) => {
            if let Who::Virtual(key) = &who {
                request.extensions_mut().insert(key.caller());
            }
            request.extensions_mut().insert(who);
            next.run(request).await
        }
        Err(e) => e.response_in(dialect),
    }
}

/// Middleware form of [`check`], for the routes axum serves.
pub async fn require_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match check(&state.executor().config, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// [`require_client_key`] for Anthropic's routes (its clients read Anthropic's error shape).
pub async fn require_key_anthropic(State(state): State<AppState>, request: Request, next: Next) -> Response {
    client_key(state, request, next, Dialect::Anthropic).await
}

/// [`require_client_key`] for Ollama's model routes: no key needed when `llmux_settings.ollama_api.require_key`
/// is false (its own clients have no key to send).
pub async fn require_key_ollama(State(state): State<AppState>, request: Request, next: Next) -> Response {
    client_key(state, request, next, Dialect::Ollama).await
}

fn no_key() -> Error {
    Error::Unauthorized("Authentication Error, No api key passed in.".into())
}

fn invalid_key() -> Error {
    Error::Unauthorized(
        "Authentication Error, Invalid proxy server token passed. Received API key does not match the master key."
            .into(),
    )
}

/// The key a request carries: `x-litellm-api-key` (LiteLLM's own header, which Cline sends), `Authorization:
/// Bearer`, or `x-api-key` (Anthropic's clients).
fn sent_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim())
        .map(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).unwrap_or(v).trim());
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    header("x-litellm-api-key").or(bearer.filter(|v| !v.is_empty())).or_else(|| header("x-api-key"))
}

/// Rejects a request without the master key with LiteLLM's 401: admin routes, where virtual keys are not
/// accepted. The comparison is constant-time, and neither key ever reaches a log or an error body.
pub fn check(config: &Config, headers: &HeaderMap) -> Result<(), Error> {
    let Some(master) = config.general.master_key.as_ref() else {
        return Ok(());
    };
    match sent_key(headers) {
        None => Err(no_key()),
        Some(key) if same_key(key, master.expose()) => Ok(()),
        Some(_) => Err(invalid_key()),
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
