//! `POST /llmux/clock`: moves warm-up's simulated clock (`--simulated-clock`), so a benchmark or a test replays
//! days of demand in seconds. Answers 404 on the system clock, where time is not llmux's to move.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::AppState;
use crate::error::Error;

/// Body `{"unix_ms": N}`: the clock moves forward to N, the warm-ups due on the way are carried out, and the
/// answer lists them (`warmed`: `{"unix_ms", "group"}`).
pub async fn advance(State(state): State<AppState>, body: Bytes) -> Response {
    let Some(warmup) = state.live.warmup() else {
        return Error::NotFound("POST /llmux/clock: warm-up is off (llmux_settings.warmup)".into()).into_response();
    };
    let to = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v.get("unix_ms")?.as_u64());
    let Some(to) = to else {
        return Error::invalid("POST /llmux/clock wants {\"unix_ms\": <time>}", Some("unix_ms")).into_response();
    };
    match warmup.advance(&state.live, to).await {
        Ok(warmed) => Json(json!({
            "unix_ms": to,
            "warmed": warmed.iter().map(|(at, group)| json!({"unix_ms": at, "group": group})).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => Error::NotFound(format!("POST /llmux/clock: {e}")).into_response(),
    }
}
