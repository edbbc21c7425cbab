//! A Messages API answer as an OpenAI chat completion, as LiteLLM's `transform_response` maps it: text blocks
//! joined into `content`, thinking blocks into `reasoning_content` (and kept whole in `thinking_blocks`, signed,
//! for the next turn), `tool_use` blocks into `tool_calls`, `stop_reason` into `finish_reason`, and usage with
//! the cached prompt tokens counted in `prompt_tokens`
//! (<https://docs.anthropic.com/en/api/messages#response-message>).

use serde_json::{json, Value};

use crate::error::Error;
use crate::observe::Tokens;

/// OpenAI's `finish_reason` for Anthropic's `stop_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// OpenAI's `usage` for Anthropic's: the prompt counts cached reads and writes, as LiteLLM reports it.
pub fn usage(usage: &Value) -> Value {
    let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (input, output) = (n("input_tokens"), n("output_tokens"));
    let (read, written) = (n("cache_read_input_tokens"), n("cache_creation_input_tokens"));
    let prompt = input + read + written;
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": read},
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": written,
    })
}

/// The tokens of an OpenAI `usage` made by [`usage`].
pub fn tokens(usage: &Value) -> Tokens {
    let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
    Tokens { input: n("prompt_tokens"), output: n("completion_tokens") }
}

/// The OpenAI body and the tokens it reports.
pub fn to_openai(body: &[u8], created: u64) -> Result<(Value, Tokens), Error> {
    let answer: Value = serde_json::from_slice(body)
        .map_err(|e| Error::BadUpstreamResponse(format!("the Anthropic answer is not JSON: {e}")))?;
    let blocks = answer
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::BadUpstreamResponse("the Anthropic answer has no content list".into()))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") => {
                reasoning.push_str(block.get("thinking").and_then(Value::as_str).unwrap_or(""));
                thinking_blocks.push(block.clone());
            }
            Some("redacted_thinking") => thinking_blocks.push(block.clone()),
            Some("tool_use") => {
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                tool_calls.push(json!({
                    "index": tool_calls.len(),
                    "id": block.get("id").cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": {"name": block.get("name").cloned().unwrap_or(Value::Null), "arguments": input.to_string()},
                }));
            }
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    if !thinking_blocks.is_empty() {
        message["thinking_blocks"] = Value::Array(thinking_blocks);
    }
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let stop = answer.get("stop_reason").and_then(Value::as_str).unwrap_or("end_turn");
    let usage = usage(answer.get("usage").unwrap_or(&Value::Null));
    let total = tokens(&usage);
    let out = json!({
        "id": answer.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": created,
        "model": answer.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(stop)}],
        "usage": usage,
    });
    Ok((out, total))
}
