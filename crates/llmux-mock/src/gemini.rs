//! Google's Gemini API as AI Studio serves it (`POST /v1beta/models/{model}:{method}`), in the shapes of its
//! public reference: `generateContent` and `streamGenerateContent` (<https://ai.google.dev/api/generate-content>;
//! with `?alt=sse` each event a whole `GenerateContentResponse` as a `data:` line, no closing event), thinking
//! (<https://ai.google.dev/gemini-api/docs/thinking>: `thought: true` parts when `thinkingConfig.includeThoughts`),
//! function calling (<https://ai.google.dev/gemini-api/docs/function-calling>), `embedContent` and
//! `batchEmbedContents` (<https://ai.google.dev/api/embeddings>), and errors as `google.rpc.Status`
//! (`{"error": {"code", "message", "status"}}`, a 429 with a `RetryInfo` detail). The fixtures in
//! `tests/engines/fixtures/gemini/` are those pages' examples; `tests/engines/test_cloud_shapes.py` checks the mock
//! against them.
//!
//! Like the real API it refuses a request without `x-goog-api-key`, and a prompt longer than the model's context
//! (`context_length`) with "The input token count (…) exceeds the maximum number of tokens allowed (…)".

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

use crate::engine::{self, GenInput, Plan};
use crate::state::Ctx;
use crate::stream::{self, Frame, Framing};
use crate::util::random_id;

/// The `google.rpc.Code` name Gemini gives a status.
fn status_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

/// An error in Gemini's shape; a 429 says how long to wait in a `RetryInfo` detail (`retry_after` seconds, or
/// the API's usual suggestion), as the real API does instead of a `Retry-After` header.
pub(crate) fn error_with_retry(status: StatusCode, message: &str, retry_after: Option<u64>) -> Response {
    let mut error = json!({"code": status.as_u16(), "message": message, "status": status_name(status)});
    if status == StatusCode::TOO_MANY_REQUESTS {
        error["details"] = json!([
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            }]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{}s", retry_after.unwrap_or(12))},
        ]);
    }
    (status, Json(json!({"error": error}))).into_response()
}

/// An error in Gemini's shape.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    error_with_retry(status, message, None)
}

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

/// The text of a content's parts (function responses included, as their `content` or JSON).
fn text_of(content: Option<&Value>) -> String {
    let parts = content.and_then(|c| c.get("parts")).and_then(Value::as_array);
    parts
        .into_iter()
        .flatten()
        .map(|p| match p.get("functionResponse") {
            Some(r) => function_result(r),
            None => p.get("text").and_then(Value::as_str).unwrap_or("").to_owned(),
        })
        .collect()
}

/// What a function response says: its `response.content` when that is text, else the response as JSON.
fn function_result(response: &Value) -> String {
    let body = response.get("response").unwrap_or(&Value::Null);
    match body.get("content") {
        Some(Value::String(s)) => s.clone(),
        _ => body.to_string(),
    }
}

/// The last turn's function response, when it answers a function call.
fn tool_result(contents: &[Value]) -> Option<String> {
    let parts = contents.last()?.get("parts")?.as_array()?;
    parts.iter().find_map(|p| p.get("functionResponse")).map(function_result)
}

/// How many image parts the request carries (the reply template's `{input}` says so, for tests).
fn images(contents: &[Value]) -> usize {
    contents
        .iter()
        .filter_map(|c| c.get("parts").and_then(Value::as_array))
        .flatten()
        .filter(|p| p.get("inlineData").is_some() || p.get("fileData").is_some())
        .count()
}

/// Whether the request declares a function.
fn has_functions(tools: Option<&Value>) -> bool {
    tools
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|t| t.get("functionDeclarations").and_then(Value::as_array).is_some_and(|d| !d.is_empty()))
}

/// `POST /v1beta/models/{model}:{method}`.
pub(crate) async fn models(ctx: Ctx, Path(target): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    if headers.get("x-goog-api-key").is_none() {
        return error(
            StatusCode::FORBIDDEN,
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        );
    }
    let Some((model, method)) = target.split_once(':') else {
        return error(StatusCode::NOT_FOUND, &format!("models/{target} is not a method"));
    };
    let req: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(map)) => map,
        _ => return bad_request("Invalid JSON payload received."),
    };
    if !ctx.cfg.serves(model) {
        return error(
            StatusCode::NOT_FOUND,
            &format!("models/{model} is not found for API version v1beta, or is not supported for {method}."),
        );
    }
    match method {
        "generateContent" => generate(ctx, model, &req, false).await,
        "streamGenerateContent" => generate(ctx, model, &req, true).await,
        "embedContent" => embed_one(&ctx, &req),
        "batchEmbedContents" => embed_batch(&ctx, &req),
        other => error(StatusCode::NOT_FOUND, &format!("Method {other} is not found.")),
    }
}

async fn generate(ctx: Ctx, model: &str, req: &Map<String, Value>, streamed: bool) -> Response {
    let Some(contents) = req.get("contents").and_then(Value::as_array).filter(|c| !c.is_empty()) else {
        return bad_request("* GenerateContentRequest.contents: contents is not specified");
    };
    let config = req.get("generationConfig").unwrap_or(&Value::Null);
    let system_chars = text_of(req.get("systemInstruction")).chars().count();
    let prompt_chars: usize = system_chars + contents.iter().map(|c| text_of(Some(c)).chars().count()).sum::<usize>();
    let prompt_tokens = engine::estimate_tokens(prompt_chars);
    if prompt_tokens > ctx.cfg.context_length {
        let limit = ctx.cfg.context_length;
        return bad_request(&format!(
            "The input token count ({prompt_tokens}) exceeds the maximum number of tokens allowed ({limit})."
        ));
    }
    ctx.app.mark_loaded(model);
    let user = contents.iter().rev().find(|c| c.get("role").and_then(Value::as_str) != Some("model"));
    let mut input = text_of(user);
    let pictures = images(contents);
    if pictures > 0 {
        input.push_str(&format!(" [{pictures} image(s)]"));
    }
    let gen = GenInput {
        model: model.to_owned(),
        input,
        prompt_chars,
        max_tokens: config.get("maxOutputTokens").and_then(Value::as_u64),
        stop: engine::stop_list(config.get("stopSequences")),
        has_tools: has_functions(req.get("tools")),
        tool_result: tool_result(contents),
    };
    let mut plan = engine::plan(&ctx.cfg, &gen);
    let thoughts = config.get("thinkingConfig").and_then(|t| t.get("includeThoughts")).and_then(Value::as_bool);
    if thoughts != Some(true) {
        plan.thinking.clear();
    }
    let id = random_id("");
    if streamed {
        return stream::respond(&ctx, Framing::Sse, frames(&id, model, &plan));
    }
    ctx.simulate_generation(plan.steps()).await;
    let mut parts = Vec::new();
    if let Some(thinking) = plan.thinking_text() {
        parts.push(json!({"text": thinking, "thought": true}));
    }
    if !plan.content.is_empty() || plan.tool_call.is_none() {
        parts.push(json!({"text": plan.text()}));
    }
    if let Some(call) = function_call(&id, &plan) {
        parts.push(call);
    }
    Json(answer(&id, model, parts, Some(&plan))).into_response()
}

/// A `GenerateContentResponse` carrying `parts`; the last one of an answer (`last`) has the finish reason and
/// the whole usage, the others the prompt's only.
fn answer(id: &str, model: &str, parts: Vec<Value>, last: Option<&Plan>) -> Value {
    let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
    let usage = match last {
        Some(plan) => {
            candidate["finishReason"] = json!(finish_reason(plan));
            usage(plan)
        }
        None => json!({}),
    };
    json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": id})
}

/// The scripted function call as a part; with thinking on it carries a thought signature, as the real API's do.
fn function_call(id: &str, plan: &Plan) -> Option<Value> {
    let call = plan.tool_call.as_ref()?;
    let mut part = json!({"functionCall": {"name": call.name, "args": call.arguments}});
    if !plan.thinking.is_empty() {
        part["thoughtSignature"] = json!(format!("sig_{id}"));
    }
    Some(part)
}

/// Gemini has no finish reason of its own for a function call: it stops.
fn finish_reason(plan: &Plan) -> &'static str {
    match plan.finish {
        engine::Finish::Length => "MAX_TOKENS",
        engine::Finish::Stop | engine::Finish::ToolCalls => "STOP",
    }
}

fn usage(plan: &Plan) -> Value {
    let thoughts = plan.thinking.len() as u64;
    let candidates = plan.completion_tokens() - thoughts;
    let mut usage = json!({
        "promptTokenCount": plan.prompt_tokens,
        "candidatesTokenCount": candidates,
        "totalTokenCount": plan.prompt_tokens + candidates + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": plan.prompt_tokens}],
    });
    if thoughts > 0 {
        usage["thoughtsTokenCount"] = json!(thoughts);
    }
    usage
}

/// The event stream of one answer: a `data:` event per thought token, text token and function call, the last
/// with the finish reason and usage; no `[DONE]`.
fn frames(id: &str, model: &str, plan: &Plan) -> Vec<Frame> {
    let mut pieces: Vec<Value> = plan.thinking.iter().map(|t| json!({"text": t, "thought": true})).collect();
    pieces.extend(plan.content.iter().map(|t| json!({"text": t})));
    pieces.extend(function_call(id, plan));
    if pieces.is_empty() {
        pieces.push(json!({"text": ""}));
    }
    let count = pieces.len();
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let mut event = answer(id, model, vec![part], (i + 1 == count).then_some(plan));
            if i + 1 < count {
                event["usageMetadata"] =
                    json!({"promptTokenCount": plan.prompt_tokens, "totalTokenCount": plan.prompt_tokens});
            }
            Framing::Sse.frame(&event, true)
        })
        .collect()
}

/// The text of an embed request's content.
fn embed_text(request: &Value) -> String {
    text_of(request.get("content"))
}

fn embedding(ctx: &Ctx, request: &Value) -> Value {
    let dims = request
        .get("outputDimensionality")
        .and_then(Value::as_u64)
        .and_then(|d| usize::try_from(d).ok())
        .unwrap_or(ctx.cfg.embedding_dims);
    json!({"values": engine::embed(&embed_text(request), dims)})
}

/// `…:embedContent`: one content.
fn embed_one(ctx: &Ctx, req: &Map<String, Value>) -> Response {
    if req.get("content").is_none() {
        return bad_request("* EmbedContentRequest.content: content is not specified");
    }
    Json(json!({"embedding": embedding(ctx, &Value::Object(req.clone()))})).into_response()
}

/// `…:batchEmbedContents`: a list of embed requests.
fn embed_batch(ctx: &Ctx, req: &Map<String, Value>) -> Response {
    let Some(requests) = req.get("requests").and_then(Value::as_array).filter(|r| !r.is_empty()) else {
        return bad_request("* BatchEmbedContentsRequest.requests: requests is not specified");
    };
    let embeddings: Vec<Value> = requests.iter().map(|r| embedding(ctx, r)).collect();
    Json(json!({"embeddings": embeddings})).into_response()
}
