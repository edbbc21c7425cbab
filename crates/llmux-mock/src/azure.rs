//! Azure OpenAI's data-plane routes (<https://learn.microsoft.com/en-us/azure/ai-foundry/openai/reference>):
//! `POST /openai/deployments/{deployment}/chat/completions` and `/embeddings`, each requiring an `api-version`
//! query and a key (`api-key`) or an Entra token (`Authorization: Bearer`). The deployment in the path names the
//! model; the bodies and answers are OpenAI's (the mock's llama.cpp-shaped ones). Errors are Azure's
//! `{"error": {"code", "message"}}` with the messages the service sends for a missing key or version.

use axum::extract::{Path, RawQuery};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use crate::state::Ctx;

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": {"code": status.as_u16().to_string(), "message": message}}))).into_response()
}

/// The request checked as Azure checks it (the refusal's status and message), with the body's model set to the
/// deployment.
fn admit(
    headers: &HeaderMap,
    query: Option<&str>,
    deployment: &str,
    body: &Bytes,
) -> Result<Bytes, (StatusCode, &'static str)> {
    let keyed = headers.contains_key("api-key")
        || headers.get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("Bearer "));
    if !keyed {
        return Err((
            StatusCode::UNAUTHORIZED,
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
        ));
    }
    if !query.unwrap_or("").split('&').any(|p| p.starts_with("api-version=") && p.len() > "api-version=".len()) {
        return Err((StatusCode::NOT_FOUND, "Resource not found"));
    }
    let mut json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if let Some(map) = json.as_object_mut() {
        map.insert("model".into(), Value::String(deployment.to_owned()));
    }
    Ok(Bytes::from(json.to_string()))
}

/// `POST /openai/deployments/{deployment}/chat/completions`.
pub(crate) async fn chat(
    ctx: Ctx,
    Path(deployment): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match admit(&headers, query.as_deref(), &deployment, &body) {
        Ok(body) => crate::openai::chat_completions(ctx, body).await.into_response(),
        Err((status, message)) => error(status, message),
    }
}

/// `POST /openai/deployments/{deployment}/embeddings`.
pub(crate) async fn embeddings(
    ctx: Ctx,
    Path(deployment): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match admit(&headers, query.as_deref(), &deployment, &body) {
        Ok(body) => crate::openai::embeddings(ctx, body).await.into_response(),
        Err((status, message)) => error(status, message),
    }
}
