//! The OpenAI-compatible API (`/v1/*`), as Ollama and vLLM serve it.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Map, Value};

use crate::engine::{self, GenInput, Plan};
use crate::state::Ctx;
use crate::stream::{self, Frame, Framing};
use crate::util::{random_id, unix_secs};

/// `created` reported for every model: a fixed date, so listings are stable.
const MODEL_CREATED: u64 = 1_735_689_600;

/// Fingerprint reported in completions, naming the mock.
const SYSTEM_FINGERPRINT: &str = "fp_llmux_mock";

/// An error in OpenAI's shape:
/// `{"error": {"message", "type", "param", "code"}}`.
pub(crate) fn error(status: StatusCode, message: &str, code: Option<&str>) -> Response {
    let kind = match status.as_u16() {
        400 | 404 | 409 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        500..=599 => "server_error",
        _ => "api_error",
    };
    (
        status,
        Json(json!({
            "error": { "message": message, "type": kind, "param": null, "code": code }
        })),
    )
        .into_response()
}

/// A request error, answered in OpenAI's shape.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    code: Option<&'static str>,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: message.into(), code: None }
    }

    fn model_not_found(model: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: format!("The model `{model}` does not exist or you do not have access to it."),
            code: Some("model_not_found"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status, &self.message, self.code)
    }
}

/// What the handlers return: a response, or an error in OpenAI's shape.
type ApiResult = Result<Response, ApiError>;

/// The request body as a JSON object.
fn parse(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("request body must be a JSON object")),
        Err(err) => Err(ApiError::bad_request(format!("invalid JSON body: {err}"))),
    }
}

/// The requested model, checked against the served list.
fn served_model(ctx: &Ctx, req: &Map<String, Value>) -> Result<String, ApiError> {
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::bad_request("you must provide a model parameter"))?;
    if ctx.cfg.serves(model) {
        Ok(model.to_owned())
    } else {
        Err(ApiError::model_not_found(model))
    }
}

/// Streaming flags: (`stream`, `stream_options.include_usage`).
fn stream_flags(req: &Map<String, Value>) -> (bool, bool) {
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let usage =
        req.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
    (stream, usage)
}

/// The token cap: `max_completion_tokens` (current) or `max_tokens` (legacy).
fn max_tokens(req: &Map<String, Value>) -> Option<u64> {
    ["max_completion_tokens", "max_tokens"].iter().find_map(|k| req.get(*k).and_then(Value::as_u64))
}

fn usage(plan: &Plan) -> Value {
    let completion = plan.completion_tokens();
    json!({
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": plan.prompt_tokens + completion,
    })
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat_completions(ctx: Ctx, body: Bytes) -> ApiResult {
    let req = parse(&body)?;
    let model = served_model(&ctx, &req)?;
    ctx.app.mark_loaded(&model);
    let messages = req.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
    let input = GenInput {
        input: messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .map(|m| engine::content_text(m.get("content")))
            .unwrap_or_default(),
        prompt_chars: messages.iter().map(|m| engine::content_text(m.get("content")).chars().count()).sum(),
        max_tokens: max_tokens(&req),
        stop: engine::stop_list(req.get("stop")),
        has_tools: engine::has_tools(req.get("tools")),
        model,
    };
    let plan = engine::plan(&ctx.cfg, &input);
    let (stream, include_usage) = stream_flags(&req);
    let head = Head { id: random_id("chatcmpl-"), created: unix_secs(), model: input.model };
    if stream {
        Ok(stream::respond(&ctx, Framing::Sse, chat_frames(&head, &plan, include_usage)))
    } else {
        ctx.simulate_generation(plan.steps()).await;
        let mut message = json!({ "role": "assistant", "content": plan.text() });
        if let Some(thinking) = plan.thinking_text() {
            message["reasoning_content"] = json!(thinking);
        }
        if let Some(call) = &plan.tool_call {
            message["content"] = Value::Null;
            message["tool_calls"] = json!([{
                "id": random_id("call_"),
                "type": "function",
                "function": { "name": call.name, "arguments": engine::tool_args_string(call) },
            }]);
        }
        Ok(Json(json!({
            "id": head.id,
            "object": "chat.completion",
            "created": head.created,
            "model": head.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": null,
                "finish_reason": plan.finish.openai(),
            }],
            "usage": usage(&plan),
        }))
        .into_response())
    }
}

/// Fields every chunk of one completion repeats.
struct Head {
    id: String,
    created: u64,
    model: String,
}

/// The SSE chunks of a streamed chat completion.
fn chat_frames(head: &Head, plan: &Plan, include_usage: bool) -> Vec<Frame> {
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut v = json!({
            "id": head.id,
            "object": "chat.completion.chunk",
            "created": head.created,
            "model": head.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
        });
        if include_usage {
            // With include_usage every chunk carries `usage`, null until the last.
            v["usage"] = usage.unwrap_or(Value::Null);
        }
        v
    };
    let delta = |delta: Value, finish: Option<&str>| {
        chunk(json!([{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }]), None)
    };
    let mut deltas: Vec<(Value, bool)> = Vec::new();
    for t in &plan.thinking {
        deltas.push((json!({ "reasoning_content": t }), true));
    }
    for t in &plan.content {
        deltas.push((json!({ "content": t }), true));
    }
    if let Some(call) = &plan.tool_call {
        // Like OpenAI: the first tool chunk names the function with empty
        // arguments, then the argument string arrives in pieces.
        deltas.push((
            json!({ "tool_calls": [{
                "index": 0,
                "id": random_id("call_"),
                "type": "function",
                "function": { "name": call.name, "arguments": "" },
            }]}),
            false,
        ));
        for piece in engine::split_args(&engine::tool_args_string(call)) {
            deltas.push((json!({ "tool_calls": [{ "index": 0, "function": { "arguments": piece } }] }), true));
        }
    }
    if deltas.is_empty() {
        deltas.push((json!({ "content": "" }), false));
    }
    // The role rides on the first delta, so the first chunk is already
    // content and time-to-first-token means what it says.
    if let Some(obj) = deltas[0].0.as_object_mut() {
        obj.insert("role".to_owned(), json!("assistant"));
    }
    let mut frames: Vec<Frame> =
        deltas.into_iter().map(|(d, paced)| Framing::Sse.frame(&delta(d, None), paced)).collect();
    frames.push(Framing::Sse.frame(&delta(json!({}), Some(plan.finish.openai())), false));
    if include_usage {
        frames.push(Framing::Sse.frame(&chunk(json!([]), Some(usage(plan))), false));
    }
    frames.push(Framing::done());
    frames
}

/// `POST /v1/completions` (legacy text completions).
pub(crate) async fn completions(ctx: Ctx, body: Bytes) -> ApiResult {
    let req = parse(&body)?;
    let model = served_model(&ctx, &req)?;
    ctx.app.mark_loaded(&model);
    let prompts: Vec<String> = match req.get("prompt") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned)).collect()
        }
        _ => Vec::new(),
    };
    let input = GenInput {
        input: prompts.first().cloned().unwrap_or_default(),
        prompt_chars: prompts.iter().map(|p| p.chars().count()).sum(),
        max_tokens: max_tokens(&req),
        stop: engine::stop_list(req.get("stop")),
        has_tools: false,
        model,
    };
    let mut plan = engine::plan(&ctx.cfg, &input);
    // Text completions have no place for reasoning.
    plan.thinking.clear();
    let (stream, include_usage) = stream_flags(&req);
    let head = Head { id: random_id("cmpl-"), created: unix_secs(), model: input.model };
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut v = json!({
            "id": head.id,
            "object": "text_completion",
            "created": head.created,
            "model": head.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
        });
        if let Some(u) = usage {
            v["usage"] = u;
        }
        v
    };
    if stream {
        let text = |t: &str, finish: Option<&str>| {
            chunk(
                json!([{ "text": t, "index": 0, "logprobs": null, "finish_reason": finish }]),
                include_usage.then_some(Value::Null),
            )
        };
        let mut frames: Vec<Frame> = plan.content.iter().map(|t| Framing::Sse.frame(&text(t, None), true)).collect();
        frames.push(Framing::Sse.frame(&text("", Some(plan.finish.openai())), false));
        if include_usage {
            frames.push(Framing::Sse.frame(&chunk(json!([]), Some(usage(&plan))), false));
        }
        frames.push(Framing::done());
        Ok(stream::respond(&ctx, Framing::Sse, frames))
    } else {
        ctx.simulate_generation(plan.steps()).await;
        Ok(Json(chunk(
            json!([{
                "text": plan.text(),
                "index": 0,
                "logprobs": null,
                "finish_reason": plan.finish.openai(),
            }]),
            Some(usage(&plan)),
        ))
        .into_response())
    }
}

/// `POST /v1/embeddings`.
pub(crate) async fn embeddings(ctx: Ctx, body: Bytes) -> ApiResult {
    let req = parse(&body)?;
    let model = served_model(&ctx, &req)?;
    // `input` may be a string, an array of strings, one token array or an
    // array of token arrays; token arrays are embedded by their JSON text.
    let inputs: Vec<String> = match req.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_number) => {
            vec![Value::Array(items.clone()).to_string()]
        }
        Some(Value::Array(items)) => {
            items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned)).collect()
        }
        _ => return Err(ApiError::bad_request("'input' is a required property")),
    };
    ctx.app.mark_loaded(&model);
    ctx.simulate_generation(0).await;
    let dims = req
        .get("dimensions")
        .and_then(Value::as_u64)
        .and_then(|d| usize::try_from(d).ok())
        .unwrap_or(ctx.cfg.embedding_dims);
    let base64 = req.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = engine::embed(text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    let prompt_tokens: u64 = inputs.iter().map(|t| engine::estimate_tokens(t.chars().count())).sum();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens },
    }))
    .into_response())
}

fn model_object(id: &str) -> Value {
    json!({ "id": id, "object": "model", "created": MODEL_CREATED, "owned_by": "library" })
}

/// `GET /v1/models`: the served models (or, when any model is served, the
/// ones used so far).
pub(crate) async fn models(ctx: Ctx) -> Response {
    let names = if ctx.cfg.models.is_empty() { &ctx.cfg.loaded } else { &ctx.cfg.models };
    let data: Vec<Value> = names.iter().map(|m| model_object(m)).collect();
    Json(json!({ "object": "list", "data": data })).into_response()
}

/// `GET /v1/models/{model}`.
pub(crate) async fn model(ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    if ctx.cfg.serves(&id) {
        Ok(Json(model_object(&id)).into_response())
    } else {
        Err(ApiError::model_not_found(&id))
    }
}
