//! Anthropic's Messages API (`POST /v1/messages`), in the shapes of its public reference: the request
//! (<https://docs.anthropic.com/en/api/messages>), the answer and its event stream
//! (<https://docs.anthropic.com/en/docs/build-with-claude/streaming>: `message_start`, `content_block_start`,
//! `ping`, `content_block_delta`s, `content_block_stop`, `message_delta`, `message_stop`, each as
//! `event: <type>` + `data:`), and errors (<https://docs.anthropic.com/en/api/errors>:
//! `{"type":"error","error":{"type","message"}}`). The fixtures in `tests/engines/fixtures/anthropic/` are those
//! pages' examples; `tests/engines/test_mock_shapes.py` checks the mock against them.
//!
//! Like the real API it refuses a request without `x-api-key`, `anthropic-version` or `max_tokens`, and a prompt
//! longer than the model's context (`context_length`) with "prompt is too long".

use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

use crate::engine::{self, GenInput, Plan};
use crate::state::Ctx;
use crate::stream::{self, Frame, Framing};
use crate::util::random_id;

/// An error in Anthropic's shape, its `type` from the status as the reference lists them.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    let kind = match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    let body = json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": random_id("req_")});
    (status, Json(body)).into_response()
}

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

/// The text of a message's content: a string, or its `text` blocks joined (tool results included).
fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .map(|b| match b.get("type").and_then(Value::as_str) {
                Some("tool_result") => text_of(b.get("content")),
                _ => b.get("text").and_then(Value::as_str).unwrap_or("").to_owned(),
            })
            .collect(),
        _ => String::new(),
    }
}

/// The last user turn's tool result, when it answers a tool call.
fn tool_result(messages: &[Value]) -> Option<String> {
    let last = messages.last()?;
    let blocks = last.get("content")?.as_array()?;
    let result = blocks.iter().find(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))?;
    Some(text_of(result.get("content")))
}

/// How many image blocks the request carries (the reply template's `{input}` says so, for tests).
fn images(messages: &[Value]) -> usize {
    messages
        .iter()
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .flatten()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("image"))
        .count()
}

/// `POST /v1/messages`.
pub(crate) async fn messages(ctx: Ctx, headers: HeaderMap, body: Bytes) -> Response {
    if headers.get("x-api-key").is_none() {
        return error(StatusCode::UNAUTHORIZED, "x-api-key header is required");
    }
    if headers.get("anthropic-version").is_none() {
        return bad_request("anthropic-version: header is required");
    }
    let req: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(map)) => map,
        _ => return bad_request("The request body is not valid JSON."),
    };
    let Some(model) = req.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()) else {
        return bad_request("model: Field required");
    };
    if !ctx.cfg.serves(model) {
        return error(StatusCode::NOT_FOUND, &format!("model: {model}"));
    }
    let Some(max_tokens) = req.get("max_tokens").and_then(Value::as_u64) else {
        return bad_request("max_tokens: Field required");
    };
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return bad_request("messages: Field required");
    };
    let budget = req.get("thinking").filter(|t| t.get("type").and_then(Value::as_str) == Some("enabled"));
    if let Some(b) = budget.and_then(|t| t.get("budget_tokens")).and_then(Value::as_u64) {
        if b >= max_tokens {
            return bad_request("`max_tokens` must be greater than `thinking.budget_tokens`");
        }
    }
    let system_chars = text_of(req.get("system")).chars().count();
    let prompt_chars: usize =
        system_chars + messages.iter().map(|m| text_of(m.get("content")).chars().count()).sum::<usize>();
    let prompt_tokens = engine::estimate_tokens(prompt_chars);
    if prompt_tokens > ctx.cfg.context_length {
        let limit = ctx.cfg.context_length;
        return bad_request(&format!("prompt is too long: {prompt_tokens} tokens > {limit} maximum"));
    }
    ctx.app.mark_loaded(model);
    let user = messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user"));
    let mut input = text_of(user.and_then(|m| m.get("content")));
    let pictures = images(messages);
    if pictures > 0 {
        input.push_str(&format!(" [{pictures} image(s)]"));
    }
    let gen = GenInput {
        model: model.to_owned(),
        input,
        prompt_chars,
        max_tokens: Some(max_tokens),
        stop: engine::stop_list(req.get("stop_sequences")),
        has_tools: engine::has_tools(req.get("tools")),
        tool_result: tool_result(messages),
    };
    let mut plan = engine::plan(&ctx.cfg, &gen);
    if budget.is_none() {
        plan.thinking.clear();
    }
    let id = random_id("msg_");
    if req.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        return with_rate_limits(stream::respond(&ctx, Framing::NamedSse, frames(&id, model, &plan)));
    }
    ctx.simulate_generation(plan.steps()).await;
    with_rate_limits(
        Json(json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks(&id, &plan),
            "stop_reason": stop_reason(&plan),
            "stop_sequence": null,
            "usage": usage(&plan, plan.completion_tokens()),
        }))
        .into_response(),
    )
}

/// The rate-limit headers Anthropic sends with every answer (<https://docs.anthropic.com/en/api/rate-limits>),
/// fixed values: a request limit of 50 a minute with 49 left.
fn with_rate_limits(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("anthropic-ratelimit-requests-limit", "50"),
        ("anthropic-ratelimit-requests-remaining", "49"),
        ("anthropic-ratelimit-requests-reset", "2026-12-03T00:00:30Z"),
        ("anthropic-ratelimit-tokens-limit", "30000"),
        ("anthropic-ratelimit-tokens-remaining", "29000"),
    ] {
        headers.insert(name, http::HeaderValue::from_static(value));
    }
    response
}

fn stop_reason(plan: &Plan) -> &'static str {
    match plan.finish {
        engine::Finish::Stop => "end_turn",
        engine::Finish::Length => "max_tokens",
        engine::Finish::ToolCalls => "tool_use",
    }
}

fn usage(plan: &Plan, output: u64) -> Value {
    json!({
        "input_tokens": plan.prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output,
    })
}

/// A thinking block's signature: opaque to clients, sent back with the next turn.
fn signature(id: &str) -> String {
    format!("sig_{id}")
}

/// The answer's content blocks: thinking, then text, then the tool call.
fn blocks(id: &str, plan: &Plan) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(thinking) = plan.thinking_text() {
        out.push(json!({"type": "thinking", "thinking": thinking, "signature": signature(id)}));
    }
    if !plan.content.is_empty() || plan.tool_call.is_none() {
        out.push(json!({"type": "text", "text": plan.text()}));
    }
    if let Some(call) = &plan.tool_call {
        out.push(json!({"type": "tool_use", "id": random_id("toolu_"), "name": call.name, "input": call.arguments}));
    }
    out
}

/// The event stream of one answer, in the order of the streaming reference.
fn frames(id: &str, model: &str, plan: &Plan) -> Vec<Frame> {
    let f = |v: Value, paced: bool| Framing::NamedSse.frame(&v, paced);
    let mut frames = vec![f(
        json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": usage(plan, 1),
        }}),
        false,
    )];
    let mut index = 0;
    let mut block = |frames: &mut Vec<Frame>, start: Value, deltas: Vec<Value>| {
        frames.push(f(json!({"type": "content_block_start", "index": index, "content_block": start}), false));
        if index == 0 {
            // Where the reference's examples have it: after the first block starts.
            frames.push(f(json!({"type": "ping"}), false));
        }
        for d in deltas {
            frames.push(f(json!({"type": "content_block_delta", "index": index, "delta": d}), true));
        }
        frames.push(f(json!({"type": "content_block_stop", "index": index}), false));
        index += 1;
    };
    if !plan.thinking.is_empty() {
        let mut deltas: Vec<Value> =
            plan.thinking.iter().map(|t| json!({"type": "thinking_delta", "thinking": t})).collect();
        deltas.push(json!({"type": "signature_delta", "signature": signature(id)}));
        block(&mut frames, json!({"type": "thinking", "thinking": ""}), deltas);
    }
    if !plan.content.is_empty() || plan.tool_call.is_none() {
        let deltas = plan.content.iter().map(|t| json!({"type": "text_delta", "text": t})).collect();
        block(&mut frames, json!({"type": "text", "text": ""}), deltas);
    }
    if let Some(call) = &plan.tool_call {
        let deltas = engine::split_args(&engine::tool_args_string(call))
            .into_iter()
            .map(|piece| json!({"type": "input_json_delta", "partial_json": piece}))
            .collect();
        let start = json!({"type": "tool_use", "id": random_id("toolu_"), "name": call.name, "input": {}});
        block(&mut frames, start, deltas);
    }
    frames.push(f(
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(plan), "stop_sequence": null},
               "usage": {"output_tokens": plan.completion_tokens()}}),
        false,
    ));
    frames.push(f(json!({"type": "message_stop"}), false));
    frames
}
