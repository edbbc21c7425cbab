//! A `GenerateContentResponse` as an OpenAI chat completion, as LiteLLM's `transform_response` maps it
//! (<https://ai.google.dev/api/generate-content#generatecontentresponse>): each candidate a choice, its text parts
//! joined into `content` and its thought parts (`thought: true`, <https://ai.google.dev/gemini-api/docs/thinking>)
//! into `reasoning_content`, `functionCall` parts into `tool_calls`, `finishReason` into `finish_reason`, and
//! `usageMetadata` into `usage` with the thinking tokens counted as completion tokens.

use serde_json::{json, Value};

use super::request::THOUGHT_SEPARATOR;
use crate::error::Error;
use crate::observe::Tokens;

/// OpenAI's `finish_reason` for Gemini's `finishReason` (<https://ai.google.dev/api/generate-content#FinishReason>);
/// `tool_calls` when the candidate calls a function.
pub fn finish_reason(reason: &str, calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => "content_filter",
        _ if calls => "tool_calls",
        _ => "stop",
    }
}

/// OpenAI's `usage` for Gemini's `usageMetadata`: completion tokens are the candidates' and the thoughts'
/// (both are billed as output), the thoughts also as `reasoning_tokens`, cached prompt tokens as `cached_tokens`.
pub fn usage(meta: &Value) -> Value {
    let n = |k: &str| meta.get(k).and_then(Value::as_u64).unwrap_or(0);
    let prompt = n("promptTokenCount");
    let thoughts = n("thoughtsTokenCount");
    let completion = n("candidatesTokenCount") + thoughts;
    let total = meta.get("totalTokenCount").and_then(Value::as_u64).unwrap_or(prompt + completion);
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total,
        "prompt_tokens_details": {"cached_tokens": n("cachedContentTokenCount")},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    })
}

/// The tokens of an OpenAI `usage` made by [`usage`].
pub fn tokens(usage: &Value) -> Tokens {
    let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
    Tokens { input: n("prompt_tokens"), output: n("completion_tokens") }
}

/// A tool call id: Gemini's own when the part has one, else a fresh `call_…`; a thought signature rides along
/// (see [`THOUGHT_SEPARATOR`]).
pub fn call_id(part: &Value) -> String {
    let call = part.get("functionCall").unwrap_or(&Value::Null);
    let id = match call.get("id").and_then(Value::as_str).filter(|id| !id.is_empty()) {
        Some(id) => id.to_owned(),
        None => format!("call_{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..)),
    };
    match part.get("thoughtSignature").and_then(Value::as_str) {
        Some(signature) => format!("{id}{THOUGHT_SEPARATOR}{signature}"),
        None => id,
    }
}

/// A `functionCall` part as an OpenAI tool call at `index`.
pub fn tool_call(part: &Value, index: usize) -> Value {
    let call = part.get("functionCall").unwrap_or(&Value::Null);
    let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
    json!({
        "index": index,
        "id": call_id(part),
        "type": "function",
        "function": {"name": call.get("name").cloned().unwrap_or(Value::Null), "arguments": args.to_string()},
    })
}

/// The OpenAI body and the tokens it reports; `model` is the one asked for (named when Gemini does not).
pub fn to_openai(body: &[u8], model: &str, created: u64) -> Result<(Value, Tokens), Error> {
    let answer: Value = serde_json::from_slice(body)
        .map_err(|e| Error::BadUpstreamResponse(format!("the Gemini answer is not JSON: {e}")))?;
    let candidates = answer.get("candidates").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut choices = Vec::with_capacity(candidates.len().max(1));
    for (at, candidate) in candidates.iter().enumerate() {
        choices.push(choice(candidate, at));
    }
    if choices.is_empty() {
        // A blocked prompt (`promptFeedback.blockReason`) has no candidates: LiteLLM answers an empty message that
        // finished for `content_filter`.
        let blocked = answer.get("promptFeedback").and_then(|f| f.get("blockReason")).is_some();
        if !blocked {
            return Err(Error::BadUpstreamResponse("the Gemini answer has no candidates".into()));
        }
        choices.push(json!({
            "index": 0,
            "message": {"role": "assistant", "content": null},
            "finish_reason": "content_filter",
        }));
    }
    let usage = usage(answer.get("usageMetadata").unwrap_or(&Value::Null));
    let total = tokens(&usage);
    let id = answer
        .get("responseId")
        .and_then(Value::as_str)
        .map_or_else(|| crate::protocol::openai::new_id("chatcmpl"), str::to_owned);
    let out = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": answer.get("modelVersion").and_then(Value::as_str).unwrap_or(model),
        "choices": choices,
        "usage": usage,
    });
    Ok((out, total))
}

/// One candidate as a choice.
fn choice(candidate: &Value, at: usize) -> Value {
    let parts = candidate.get("content").and_then(|c| c.get("parts")).and_then(Value::as_array);
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for part in parts.into_iter().flatten() {
        if part.get("functionCall").is_some() {
            tool_calls.push(tool_call(part, tool_calls.len()));
        } else if let Some(t) = part.get("text").and_then(Value::as_str) {
            if part.get("thought").and_then(Value::as_bool) == Some(true) {
                reasoning.push_str(t);
            } else {
                text.push_str(t);
            }
        }
    }
    let content = if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { Value::String(text) };
    let mut message = json!({"role": "assistant", "content": content});
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    let calls = !tool_calls.is_empty();
    if calls {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let reason = candidate.get("finishReason").and_then(Value::as_str).unwrap_or("STOP");
    let index = candidate.get("index").and_then(Value::as_u64).unwrap_or(at as u64);
    json!({"index": index, "message": message, "finish_reason": finish_reason(reason, calls)})
}
