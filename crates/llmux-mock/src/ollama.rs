//! Ollama's native API (`/api/*`), following the shapes of Ollama's
//! `docs/api.md`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Map, Value};

use crate::config::MockConfig;
use crate::engine::{self, GenInput, Plan};
use crate::state::Ctx;
use crate::stream::{self, Frame, Framing};
use crate::util::{fake_digest, rfc3339, rfc3339_now};

/// The version `/api/version` reports.
pub const OLLAMA_VERSION: &str = "0.12.0";

/// An error in Ollama's shape: `{"error": "message"}`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// A request error, answered in Ollama's shape.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status, &self.message)
    }
}

/// What the handlers return: a response, or an error in Ollama's shape.
type ApiResult = Result<Response, ApiError>;

/// Ollama's 404 for an inference request naming an unknown model.
fn model_not_found(model: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("model \"{model}\" not found, try pulling it first"))
}

/// The request body as a JSON object.
fn parse(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(StatusCode::BAD_REQUEST, "request body must be a JSON object")),
        Err(err) => Err(ApiError::new(StatusCode::BAD_REQUEST, err.to_string())),
    }
}

/// The requested model, checked against the served list.
fn served_model(ctx: &Ctx, req: &Map<String, Value>) -> Result<String, ApiError> {
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "model is required"))?;
    if ctx.cfg.serves(model) {
        Ok(model.to_owned())
    } else {
        Err(model_not_found(model))
    }
}

/// `GET /`: Ollama's liveness answer.
pub(crate) async fn root() -> &'static str {
    "Ollama is running"
}

/// `GET /api/version`.
pub(crate) async fn version() -> Response {
    Json(json!({ "version": OLLAMA_VERSION })).into_response()
}

/// `GET /api/tags`: the served models (or, when any model is served, the
/// ones used so far).
pub(crate) async fn tags(ctx: Ctx) -> Response {
    let names = if ctx.cfg.models.is_empty() { &ctx.cfg.loaded } else { &ctx.cfg.models };
    let models: Vec<Value> = names
        .iter()
        .map(|name| {
            json!({
                "name": name,
                "model": name,
                "modified_at": rfc3339(UNIX_EPOCH + Duration::from_secs(1_735_689_600)),
                "size": crate::residency::reported_size(&ctx.cfg, name),
                "digest": fake_digest(name),
                "details": details(),
            })
        })
        .collect();
    Json(json!({ "models": models })).into_response()
}

/// `GET /api/ps`: the models marked loaded.
pub(crate) async fn ps(ctx: Ctx) -> Response {
    if let Some(resident) = crate::residency::resident(&ctx.app) {
        // The residency simulation's truth: what is loaded (or loading), its size and expiry.
        let forever = SystemTime::now() + Duration::from_nanos(i64::MAX as u64);
        let models: Vec<Value> = resident
            .iter()
            .map(|m| {
                json!({
                    "name": m.name,
                    "model": m.name,
                    "size": m.size,
                    "digest": fake_digest(&m.name),
                    "details": details(),
                    "expires_at": rfc3339(m.expires_at.unwrap_or(forever)),
                    "size_vram": m.size,
                    "context_length": ctx.cfg.context_length,
                })
            })
            .collect();
        return Json(json!({ "models": models })).into_response();
    }
    let expires = rfc3339(SystemTime::now() + Duration::from_secs(300));
    let models: Vec<Value> = ctx
        .cfg
        .loaded
        .iter()
        .map(|name| {
            json!({
                "name": name,
                "model": name,
                "size": model_size(name),
                "digest": fake_digest(name),
                "details": details(),
                "expires_at": expires,
                "size_vram": model_size(name),
                "context_length": ctx.cfg.context_length,
            })
        })
        .collect();
    Json(json!({ "models": models })).into_response()
}

/// `POST /api/show`: model details, including the context length.
pub(crate) async fn show(ctx: Ctx, body: Bytes) -> ApiResult {
    let req = parse(&body)?;
    // Older clients send `name` instead of `model`.
    let Some(model) =
        ["model", "name"].iter().find_map(|k| req.get(*k).and_then(Value::as_str)).filter(|m| !m.is_empty())
    else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "model is required"));
    };
    if !ctx.cfg.serves(model) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("model '{model}' not found")));
    }
    let mut capabilities = vec!["completion", "tools"];
    if ctx.cfg.thinking.is_some() {
        capabilities.push("thinking");
    }
    Ok(Json(json!({
        "license": "",
        "modelfile": format!("# Modelfile generated by llmux-mock {}\nFROM {model}\n", ctx.cfg.name),
        "parameters": format!("num_ctx                        {}", ctx.cfg.context_length),
        "template": "{{ .Prompt }}",
        "details": details(),
        "model_info": {
            "general.architecture": "llama",
            "general.file_type": 15,
            "general.parameter_count": 8_030_261_248u64,
            "general.quantization_version": 2,
            "llama.attention.head_count": 32,
            "llama.attention.head_count_kv": 8,
            "llama.block_count": 32,
            "llama.context_length": ctx.cfg.context_length,
            "llama.embedding_length": 4096,
            "llama.vocab_size": 128_256,
        },
        "capabilities": capabilities,
        "modified_at": rfc3339(UNIX_EPOCH + Duration::from_secs(1_735_689_600)),
    }))
    .into_response())
}

/// `POST /api/chat`.
pub(crate) async fn chat(mut ctx: Ctx, body: Bytes) -> ApiResult {
    let req = parse(&body)?;
    let model = served_model(&ctx, &req)?;
    let messages = req.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
    if messages.is_empty() {
        // An empty chat only loads (or with keep_alive 0 unloads) the model.
        let reason = load_or_unload(&ctx, &req, &model);
        return Ok(Json(json!({
            "model": model,
            "created_at": rfc3339_now(),
            "message": { "role": "assistant", "content": "" },
            "done_reason": reason,
            "done": true,
        }))
        .into_response());
    }
    ctx.app.mark_loaded(&model);
    let input = GenInput {
        input: messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .map(|m| engine::content_text(m.get("content")))
            .unwrap_or_default(),
        prompt_chars: messages.iter().map(|m| engine::content_text(m.get("content")).chars().count()).sum(),
        has_tools: engine::has_tools(req.get("tools")),
        tool_result: engine::tool_result(&messages),
        model,
        ..options(&req)
    };
    let mut plan = plan(&ctx.cfg, &req, &input);
    ctx.take_slot(&input.model, req.get("tools"), &messages, None, &mut plan);
    if wants_stream(&req) {
        Ok(stream::respond(&ctx, Framing::Ndjson, chat_frames(&ctx, &input.model, &plan)))
    } else {
        ctx.simulate_generation(plan.steps()).await;
        let mut message = json!({ "role": "assistant", "content": plan.text() });
        if let Some(thinking) = plan.thinking_text() {
            message["thinking"] = json!(thinking);
        }
        if let Some(call) = &plan.tool_call {
            message["tool_calls"] = tool_calls(call);
        }
        let mut out = json!({
            "model": input.model,
            "created_at": rfc3339_now(),
            "message": message,
            "done_reason": plan.finish.ollama(),
            "done": true,
        });
        add_stats(&mut out, &plan, &ctx);
        Ok(Json(out).into_response())
    }
}

/// The NDJSON chunks of a streamed chat answer.
fn chat_frames(ctx: &Ctx, model: &str, plan: &Plan) -> Vec<Frame> {
    let chunk = |message: Value| {
        Framing::Ndjson.frame(
            &json!({
                "model": model,
                "created_at": rfc3339_now(),
                "message": message,
                "done": false,
            }),
            true,
        )
    };
    let mut frames: Vec<Frame> = plan
        .thinking
        .iter()
        .map(|t| chunk(json!({ "role": "assistant", "content": "", "thinking": t })))
        .chain(plan.content.iter().map(|t| chunk(json!({ "role": "assistant", "content": t }))))
        .collect();
    if let Some(call) = &plan.tool_call {
        // Ollama delivers a tool call whole, in one chunk.
        frames.push(chunk(json!({
            "role": "assistant",
            "content": "",
            "tool_calls": tool_calls(call),
        })));
    }
    let mut last = json!({
        "model": model,
        "created_at": rfc3339_now(),
        "message": { "role": "assistant", "content": "" },
        "done_reason": plan.finish.ollama(),
        "done": true,
    });
    add_stats(&mut last, plan, ctx);
    frames.push(Framing::Ndjson.frame(&last, false));
    frames
}

/// `POST /api/generate`.
pub(crate) async fn generate(ctx: Ctx, body: Bytes) -> ApiResult {
    let req = parse(&body)?;
    let model = served_model(&ctx, &req)?;
    let prompt = req.get("prompt").and_then(Value::as_str).unwrap_or_default().to_owned();
    if prompt.is_empty() {
        // An empty prompt only loads (or with keep_alive 0 unloads) the model.
        let reason = load_or_unload(&ctx, &req, &model);
        return Ok(Json(json!({
            "model": model,
            "created_at": rfc3339_now(),
            "response": "",
            "done": true,
            "done_reason": reason,
        }))
        .into_response());
    }
    ctx.app.mark_loaded(&model);
    let system = req.get("system").and_then(Value::as_str).unwrap_or_default();
    let input = GenInput {
        prompt_chars: prompt.chars().count() + system.chars().count(),
        input: prompt,
        model,
        ..options(&req)
    };
    let plan = plan(&ctx.cfg, &req, &input);
    if wants_stream(&req) {
        Ok(stream::respond(&ctx, Framing::Ndjson, generate_frames(&ctx, &input.model, &plan)))
    } else {
        ctx.simulate_generation(plan.steps()).await;
        let mut out = json!({
            "model": input.model,
            "created_at": rfc3339_now(),
            "response": plan.text(),
            "done": true,
            "done_reason": plan.finish.ollama(),
        });
        if let Some(thinking) = plan.thinking_text() {
            out["thinking"] = json!(thinking);
        }
        add_stats(&mut out, &plan, &ctx);
        Ok(Json(out).into_response())
    }
}

/// The NDJSON chunks of a streamed generate answer.
fn generate_frames(ctx: &Ctx, model: &str, plan: &Plan) -> Vec<Frame> {
    let chunk = |response: &str, thinking: Option<&str>| {
        let mut v = json!({
            "model": model,
            "created_at": rfc3339_now(),
            "response": response,
            "done": false,
        });
        if let Some(t) = thinking {
            v["thinking"] = json!(t);
        }
        Framing::Ndjson.frame(&v, true)
    };
    let mut frames: Vec<Frame> =
        plan.thinking.iter().map(|t| chunk("", Some(t))).chain(plan.content.iter().map(|t| chunk(t, None))).collect();
    let mut last = json!({
        "model": model,
        "created_at": rfc3339_now(),
        "response": "",
        "done": true,
        "done_reason": plan.finish.ollama(),
    });
    add_stats(&mut last, plan, ctx);
    frames.push(Framing::Ndjson.frame(&last, false));
    frames
}

/// `POST /api/embed`.
pub(crate) async fn embed(ctx: Ctx, body: Bytes) -> ApiResult {
    let req = parse(&body)?;
    let model = served_model(&ctx, &req)?;
    let inputs: Vec<String> = match req.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned)).collect()
        }
        _ => Vec::new(),
    };
    ctx.app.mark_loaded(&model);
    ctx.simulate_generation(0).await;
    let dims = dimensions(&ctx.cfg, &req);
    let embeddings: Vec<Vec<f32>> = inputs.iter().map(|t| engine::embed(t, dims)).collect();
    let timing = ctx.timing();
    let prompt_tokens: u64 = inputs.iter().map(|t| engine::estimate_tokens(t.chars().count())).sum();
    Ok(Json(json!({
        "model": model,
        "embeddings": embeddings,
        "total_duration": nanos(timing.latency.saturating_add(timing.ttft).saturating_add(ctx.load)).max(1),
        "load_duration": nanos(timing.latency.saturating_add(ctx.load)),
        "prompt_eval_count": prompt_tokens,
    }))
    .into_response())
}

/// `POST /api/embeddings`: the legacy single-prompt embedding endpoint.
pub(crate) async fn embeddings(ctx: Ctx, body: Bytes) -> ApiResult {
    let req = parse(&body)?;
    let model = served_model(&ctx, &req)?;
    ctx.app.mark_loaded(&model);
    ctx.simulate_generation(0).await;
    let prompt = req.get("prompt").and_then(Value::as_str).unwrap_or_default();
    let embedding = engine::embed(prompt, dimensions(&ctx.cfg, &req));
    Ok(Json(json!({ "embedding": embedding })).into_response())
}

/// The embedding size: the request's `dimensions` or the configured default.
fn dimensions(cfg: &MockConfig, req: &Map<String, Value>) -> usize {
    req.get("dimensions").and_then(Value::as_u64).and_then(|d| usize::try_from(d).ok()).unwrap_or(cfg.embedding_dims)
}

/// Ollama streams unless told `"stream": false`.
fn wants_stream(req: &Map<String, Value>) -> bool {
    req.get("stream").and_then(Value::as_bool).unwrap_or(true)
}

/// Generation options from `options` (`num_predict`, `stop`).
fn options(req: &Map<String, Value>) -> GenInput {
    let opts = req.get("options");
    GenInput {
        // Ollama treats negative num_predict as "no limit".
        max_tokens: opts.and_then(|o| o.get("num_predict")).and_then(Value::as_i64).and_then(|n| u64::try_from(n).ok()),
        stop: engine::stop_list(opts.and_then(|o| o.get("stop"))),
        ..GenInput::default()
    }
}

/// Plans the answer, honouring `"think": false` as Ollama does.
fn plan(cfg: &MockConfig, req: &Map<String, Value>, input: &GenInput) -> Plan {
    let mut plan = engine::plan(cfg, input);
    if req.get("think") == Some(&Value::Bool(false)) {
        plan.thinking.clear();
    }
    plan
}

/// Handles a load/unload request; returns the `done_reason`.
fn load_or_unload(ctx: &Ctx, req: &Map<String, Value>, model: &str) -> &'static str {
    if keep_alive_is_zero(req.get("keep_alive")) {
        ctx.app.mark_unloaded(model);
        "unload"
    } else {
        ctx.app.mark_loaded(model);
        "load"
    }
}

/// Whether `keep_alive` is zero (`0`, `"0"`, `"0s"`, `"0m"`, ...).
fn keep_alive_is_zero(keep_alive: Option<&Value>) -> bool {
    match keep_alive {
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::String(s)) => {
            s.trim_end_matches(|c: char| c.is_ascii_alphabetic()).parse::<f64>().is_ok_and(|v| v == 0.0)
        }
        _ => false,
    }
}

/// Ollama's `tool_calls` array: arguments as a JSON object.
fn tool_calls(call: &crate::config::ToolCallSpec) -> Value {
    json!([{ "function": { "name": call.name, "arguments": call.arguments } }])
}

/// Adds the final-chunk statistics. Durations are the simulated ones (the
/// configured delays), with a floor of 1µs per token so clients computing
/// tokens per second never divide by zero; the total is at least the time
/// actually spent so far.
fn add_stats(out: &mut Value, plan: &Plan, ctx: &Ctx) {
    let timing = ctx.timing();
    let eval_count = plan.completion_tokens();
    let load = nanos(timing.latency.saturating_add(ctx.load));
    let prompt_eval = nanos(timing.ttft).max(plan.evaluated_tokens().saturating_mul(1_000));
    let eval = nanos(timing.generation(plan.steps())).max(eval_count.max(1).saturating_mul(1_000));
    let total = load.saturating_add(prompt_eval).saturating_add(eval).max(nanos(ctx.started.elapsed()));
    out["total_duration"] = json!(total);
    out["load_duration"] = json!(load);
    out["prompt_eval_count"] = json!(plan.evaluated_tokens());
    out["prompt_eval_duration"] = json!(prompt_eval);
    out["eval_count"] = json!(eval_count);
    out["eval_duration"] = json!(eval);
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Model details as `/api/tags`, `/api/ps` and `/api/show` report them.
fn details() -> Value {
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "8.0B",
        "quantization_level": "Q4_K_M",
    })
}

/// A plausible, stable model size in bytes (1–8 GB).
fn model_size(name: &str) -> u64 {
    crate::residency::pseudo_size(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_zero_forms() {
        for zero in [json!(0), json!("0"), json!("0s"), json!("0m"), json!(0.0)] {
            assert!(keep_alive_is_zero(Some(&zero)), "{zero}");
        }
        for other in [json!(5), json!("5m"), json!(-1), json!("forever")] {
            assert!(!keep_alive_is_zero(Some(&other)), "{other}");
        }
        assert!(!keep_alive_is_zero(None));
    }
}
