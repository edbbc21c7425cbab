//! `GET` and `DELETE /v1/responses/{id}`: the stored responses of OpenAI's Responses API.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde_json::json;

use super::AppState;

/// OpenAI's answer for an id it does not have (`invalid_request_error`, 404).
fn not_found(id: &str) -> Response {
    let body = json!({"error": {
        "message": format!("Response with id '{id}' not found."),
        "type": "invalid_request_error",
        "param": null,
        "code": null,
    }});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// `GET /v1/responses/{id}`: the Response object as it was answered.
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.responses.get_or_fetch(&id).await {
        Some(stored) => {
            ([(http::header::CONTENT_TYPE, "application/json")], stored.response.get().to_owned()).into_response()
        }
        None => not_found(&id),
    }
}

/// `DELETE /v1/responses/{id}`.
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    // One another replica stored is deleted too: look it up first.
    let known = state.responses.get_or_fetch(&id).await.is_some();
    if state.responses.delete(&id) || known {
        Json(json!({"id": id, "object": "response", "deleted": true})).into_response()
    } else {
        not_found(&id)
    }
}
