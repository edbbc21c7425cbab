//! The OpenAI-compatible API (`/v1/*`), shaped like llama.cpp's `llama-server` answers it, plus the
//! llama.cpp endpoints a router reads (`/health`, `/slots`, `/props`).
//!
//! The shapes are checked against answers recorded from a real `llama-server` (`tests/engines/fixtures`, compared
//! by `tests/engines/test_mock_shapes.py`): a streamed chat starts with a role-only chunk
//! (`{"role":"assistant","content":null}`, written together with the first token), chunks carry no `usage` until
//! the usage chunk, the last chunk carries llama.cpp's `timings`, `usage` has `prompt_tokens_details`, and
//! errors are `{"error": {"code": <status>, "message", "type"}}`.

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

/// An error in llama.cpp's shape (OpenAI's, with the HTTP status as `code`):
/// `{"error": {"code": 404, "message", "type"}}`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    let kind = match status.as_u16() {
        400 | 409 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        501 => "not_supported_error",
        503 => "unavailable_error",
        500..=599 => "server_error",
        _ => "api_error",
    };
    (status, Json(json!({ "error": { "code": status.as_u16(), "message": message, "type": kind } }))).into_response()
}

/// A request error, answered in OpenAI's shape.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: message.into() }
    }

    fn model_not_found(model: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: format!("The model `{model}` does not exist or you do not have access to it."),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status, &self.message)
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
        "completion_tokens": completion,
        "prompt_tokens": plan.prompt_tokens,
        "total_tokens": plan.prompt_tokens + completion,
        "prompt_tokens_details": { "cached_tokens": plan.cached_tokens },
    })
}

/// llama.cpp's `timings` (sent with the last chunk, and in non-streamed answers): prompt and generation token
/// counts and times; the times are the pacing the mock applies.
fn timings(ctx: &Ctx, plan: &Plan) -> Value {
    let t = ctx.timing();
    let prompt_ms = t.latency.as_secs_f64() * 1e3 + t.ttft.as_secs_f64() * 1e3;
    let predicted_n = plan.completion_tokens();
    let predicted_ms = t.generation(plan.steps()).as_secs_f64() * 1e3;
    let per = |ms: f64, n: u64| if n == 0 { 0.0 } else { ms / n as f64 };
    let rate = |ms: f64, n: u64| if ms > 0.0 { n as f64 * 1e3 / ms } else { 0.0 };
    let prompt_n = plan.evaluated_tokens();
    json!({
        "cache_n": plan.cached_tokens,
        "prompt_n": prompt_n,
        "prompt_ms": prompt_ms,
        "prompt_per_token_ms": per(prompt_ms, prompt_n),
        "prompt_per_second": rate(prompt_ms, prompt_n),
        "predicted_n": predicted_n,
        "predicted_ms": predicted_ms,
        "predicted_per_token_ms": per(predicted_ms, predicted_n),
        "predicted_per_second": rate(predicted_ms, predicted_n),
    })
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat_completions(mut ctx: Ctx, body: Bytes) -> ApiResult {
    let req = parse(&body)?;
    let model = served_model(&ctx, &req)?;
    // llama.cpp accepts an empty list, not a missing one.
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| ApiError::bad_request("'messages' is required"))?;
    ctx.app.mark_loaded(&model);
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
        tool_result: engine::tool_result(&messages),
        model,
    };
    let mut plan = engine::plan(&ctx.cfg, &input);
    let id_slot = req.get("id_slot").and_then(Value::as_u64);
    ctx.take_slot(&input.model, req.get("tools"), &messages, id_slot, &mut plan);
    let (stream, include_usage) = stream_flags(&req);
    let head = Head { id: random_id("chatcmpl-"), created: unix_secs(), model: input.model };
    if stream {
        Ok(stream::respond(&ctx, Framing::Sse, chat_frames(&head, &plan, include_usage, &timings(&ctx, &plan))))
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
                "finish_reason": plan.finish.openai(),
            }],
            "usage": usage(&plan),
            "timings": timings(&ctx, &plan),
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

/// The SSE chunks of a streamed chat completion, as llama.cpp sends them: a role-only chunk written together
/// with the first delta (so the first token still arrives after exactly the time-to-first-token), one chunk per
/// delta, the finish chunk with an empty delta, with `include_usage` a usage chunk with no choices, and
/// `[DONE]`. No chunk carries `usage` but the usage chunk; the last chunk before `[DONE]` carries `timings`.
fn chat_frames(head: &Head, plan: &Plan, include_usage: bool, timings: &Value) -> Vec<Frame> {
    let chunk = |choices: Value| {
        json!({
            "choices": choices,
            "created": head.created,
            "id": head.id,
            "model": head.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "object": "chat.completion.chunk",
        })
    };
    let delta =
        |delta: Value, finish: Option<&str>| chunk(json!([{ "finish_reason": finish, "index": 0, "delta": delta }]));
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
    let role = Framing::Sse.frame(&delta(json!({ "role": "assistant", "content": null }), None), false);
    let mut frames: Vec<Frame> = Vec::with_capacity(deltas.len() + 4);
    for (i, (d, paced)) in deltas.into_iter().enumerate() {
        let frame = Framing::Sse.frame(&delta(d, None), paced);
        if i == 0 {
            frames.push(Frame { bytes: [role.bytes.clone(), frame.bytes].concat().into(), paced });
        } else {
            frames.push(frame);
        }
    }
    if frames.is_empty() {
        frames.push(role);
    }
    let mut last = vec![delta(json!({}), Some(plan.finish.openai()))];
    if include_usage {
        let mut usage_chunk = chunk(json!([]));
        usage_chunk["usage"] = usage(plan);
        last.push(usage_chunk);
    }
    if let Some(tail) = last.last_mut() {
        tail["timings"] = timings.clone();
    }
    frames.extend(last.iter().map(|v| Framing::Sse.frame(v, false)));
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
        tool_result: None,
        model,
    };
    let mut plan = engine::plan(&ctx.cfg, &input);
    // Text completions have no place for reasoning.
    plan.thinking.clear();
    let (stream, include_usage) = stream_flags(&req);
    let head = Head { id: random_id("cmpl-"), created: unix_secs(), model: input.model };
    let timings = timings(&ctx, &plan);
    let chunk = |text: &str, finish: Option<&str>| {
        json!({
            "choices": [{ "text": text, "index": 0, "logprobs": null, "finish_reason": finish }],
            "created": head.created,
            "model": head.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "object": "text_completion",
            "id": head.id,
        })
    };
    if stream {
        // llama.cpp does not send a separate usage chunk here: with include_usage, `usage` rides on the
        // finish chunk (and `timings` always does).
        let mut frames: Vec<Frame> = plan.content.iter().map(|t| Framing::Sse.frame(&chunk(t, None), true)).collect();
        let mut finish = chunk("", Some(plan.finish.openai()));
        if include_usage {
            finish["usage"] = usage(&plan);
        }
        finish["timings"] = timings;
        frames.push(Framing::Sse.frame(&finish, false));
        frames.push(Framing::done());
        Ok(stream::respond(&ctx, Framing::Sse, frames))
    } else {
        ctx.simulate_generation(plan.steps()).await;
        let mut answer = chunk(&plan.text(), Some(plan.finish.openai()));
        answer["usage"] = usage(&plan);
        answer["timings"] = timings;
        Ok(Json(answer).into_response())
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
            if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
                // llama.cpp repeats the format in each entry.
                json!({ "embedding": encoded, "index": index, "object": "embedding", "encoding_format": "base64" })
            } else {
                json!({ "embedding": vector, "index": index, "object": "embedding" })
            }
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

fn model_object(ctx: &Ctx, id: &str) -> Value {
    json!({
        "id": id,
        "object": "model",
        "created": MODEL_CREATED,
        "owned_by": ctx.cfg.owned_by,
        // llama.cpp's model facts (a subset): what a router reads to learn the context window.
        "meta": {
            "n_ctx": ctx.cfg.context_length,
            "n_ctx_train": ctx.cfg.context_length,
            "n_embd": ctx.cfg.embedding_dims,
        },
    })
}

/// `GET /v1/models`: the served models (or, when any model is served, the
/// ones used so far).
pub(crate) async fn models(ctx: Ctx) -> Response {
    let names = if ctx.cfg.models.is_empty() { &ctx.cfg.loaded } else { &ctx.cfg.models };
    let data: Vec<Value> = names.iter().map(|m| model_object(&ctx, m)).collect();
    Json(json!({ "object": "list", "data": data })).into_response()
}

/// `GET /v1/models/{model}`.
pub(crate) async fn model(ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    if ctx.cfg.serves(&id) {
        Ok(Json(model_object(&ctx, &id)).into_response())
    } else {
        Err(ApiError::model_not_found(&id))
    }
}

/// The model a single-model llama.cpp server reports: the first served one.
fn own_model(ctx: &Ctx) -> String {
    ctx.cfg.models.first().or(ctx.cfg.loaded.last()).cloned().unwrap_or_else(|| "mock".to_owned())
}

/// `GET /health` (llama.cpp): `{"status": "ok"}` once the model is loaded. A loading server answers 503; make the
/// mock do that with a fault on this path (`fault_paths: ["/health"]`).
pub(crate) async fn health() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// Busy slots: inference requests in flight (this `/slots` or `/props` request itself excluded), at most all.
fn busy_slots(ctx: &Ctx) -> u64 {
    let in_flight = crate::state::lock(&ctx.app.stats).in_flight.saturating_sub(1);
    in_flight.min(u64::from(ctx.cfg.slots))
}

/// `GET /slots` (llama.cpp): one entry per slot with its context size and whether it is processing (the keys
/// llama.cpp shows for every slot; it adds the last task's parameters for slots that have run one).
pub(crate) async fn slots(ctx: Ctx) -> Response {
    let busy = busy_slots(&ctx);
    let slots: Vec<Value> = (0..ctx.cfg.slots)
        .map(|id| {
            json!({
                "id": id,
                "n_ctx": ctx.cfg.context_length,
                "speculative": false,
                "is_processing": u64::from(id) < busy,
            })
        })
        .collect();
    Json(Value::Array(slots)).into_response()
}

/// `GET /props` (llama.cpp): the server's settings a router reads: per-slot context, slot count, model.
pub(crate) async fn props(ctx: Ctx) -> Response {
    let model = own_model(&ctx);
    Json(json!({
        "default_generation_settings": { "n_ctx": ctx.cfg.context_length },
        "total_slots": ctx.cfg.slots,
        "model_alias": model,
        "model_path": format!("/models/{model}.gguf"),
        "modalities": { "vision": false, "video": false, "audio": false },
        "endpoint_slots": true,
        "endpoint_props": false,
        "endpoint_metrics": false,
        "build_info": SYSTEM_FINGERPRINT,
        "is_sleeping": false,
    }))
    .into_response()
}
