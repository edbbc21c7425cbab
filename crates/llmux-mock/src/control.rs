//! The `/mock/*` control endpoints, for driving the mock from outside the
//! process (Python tests, shell scripts). They are never faulted, recorded
//! or counted, so a test can always reach them.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};

use crate::state::App;

/// `GET /mock/config`: the current knobs.
pub(crate) async fn get_config(State(app): State<App>) -> Response {
    Json(app.config()).into_response()
}

/// `POST /mock/config`: merges a JSON object of knobs over the current ones
/// (see [`MockConfig::merge_json`](crate::MockConfig::merge_json)) and
/// returns the result.
pub(crate) async fn post_config(State(app): State<App>, body: Bytes) -> Response {
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(patch) => patch,
        Err(err) => return bad_request(&format!("invalid JSON: {err}")),
    };
    match app.update(|cfg| cfg.merge_json(&patch).map(|()| cfg.clone())) {
        Ok(cfg) => Json(cfg).into_response(),
        Err(err) => bad_request(&err.to_string()),
    }
}

/// `GET /mock/requests`: recorded requests, oldest first.
pub(crate) async fn get_requests(State(app): State<App>) -> Response {
    Json(app.requests()).into_response()
}

/// `DELETE /mock/requests`: forgets recorded requests.
pub(crate) async fn delete_requests(State(app): State<App>) -> StatusCode {
    app.clear_requests();
    StatusCode::NO_CONTENT
}

/// `GET /mock/stats`: traffic counters.
pub(crate) async fn get_stats(State(app): State<App>) -> Response {
    Json(app.stats()).into_response()
}

/// `POST /mock/reset`: start-up knobs back, recordings and counters cleared.
pub(crate) async fn reset(State(app): State<App>) -> StatusCode {
    app.reset();
    StatusCode::NO_CONTENT
}

/// `POST /mock/sleep`: a mock started asleep suspends again (it closes its connections, forgets its loaded
/// models and refuses connections until the next magic packet and boot), as a box whose idle timer ran out.
pub(crate) async fn sleep(State(app): State<App>) -> Response {
    if !app.can_sleep.load(std::sync::atomic::Ordering::Relaxed) {
        return bad_request("this mock was not started asleep (--asleep-until-wol): it cannot sleep");
    }
    app.sleep_now.notify_one();
    StatusCode::ACCEPTED.into_response()
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}
