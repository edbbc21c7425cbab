//! `GET` and `DELETE /v1/responses/{id}`: the stored responses of OpenAI's Responses API.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::error::Error;

/// `GET /v1/responses/{id}`.
pub async fn get(State(_state): State<AppState>, Path(id): Path<String>) -> Response {
    Error::NotFound(format!("Response with id '{id}' not found.")).into_response()
}

/// `DELETE /v1/responses/{id}`.
pub async fn delete(State(_state): State<AppState>, Path(id): Path<String>) -> Response {
    Error::NotFound(format!("Response with id '{id}' not found.")).into_response()
}
