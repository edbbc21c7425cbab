//! `general_settings.master_key`: the one key every API call must carry when it is set.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::error::Error;

/// Rejects a request without the master key (as `Authorization: Bearer` or `x-api-key`) with LiteLLM's 401.
/// The comparison is constant-time, and neither key ever reaches a log or an error body.
pub async fn require_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let executor = state.executor();
    let Some(master) = executor.config.general.master_key.as_ref() else {
        return next.run(request).await;
    };
    let headers = request.headers();
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim())
        .map(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).unwrap_or(v).trim());
    let sent = bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim));
    match sent {
        None | Some("") => Error::Unauthorized("Authentication Error, No api key passed in.".into()).into_response(),
        Some(key) if bool::from(key.as_bytes().ct_eq(master.expose().as_bytes())) => next.run(request).await,
        Some(_) => Error::Unauthorized(
            "Authentication Error, Invalid proxy server token passed. Received API key does not match the master key."
                .into(),
        )
        .into_response(),
    }
}
