//! An OpenAI chat request as an Anthropic Messages request, field by field as LiteLLM's
//! `litellm/llms/anthropic/chat/transformation.py` maps it (API reference:
//! <https://docs.anthropic.com/en/api/messages>).
//!
//! System and developer messages become `system` text blocks; user parts become `text` and `image` blocks (a
//! data URL as a `base64` source, any other URL as a `url` source); an assistant's `tool_calls` become `tool_use`
//! blocks and its `thinking_blocks` go back first; `tool` messages become `tool_result` blocks in the next user
//! turn; consecutive turns of one role are merged (the API wants them alternating). `cache_control` on a message
//! or part is kept, so prompt caching works through llmux.

use serde_json::{json, Map, Value};

use crate::error::Error;

/// `max_tokens` when neither the request nor `model_info.max_output_tokens` sets one: LiteLLM's
/// `DEFAULT_ANTHROPIC_CHAT_MAX_TOKENS` (the Messages API requires the field).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Thinking budgets for OpenAI's `reasoning_effort`, LiteLLM's `DEFAULT_REASONING_EFFORT_*_THINKING_BUDGET`.
fn thinking_budget(effort: &str) -> Option<u64> {
    match effort {
        "minimal" => Some(128),
        "low" => Some(1024),
        "medium" => Some(2048),
        "high" => Some(4096),
        _ => None,
    }
}

/// OpenAI parameters with the same name and meaning in the Messages API.
const SAME: &[&str] = &["temperature", "top_p", "top_k", "stream", "thinking", "metadata", "service_tier"];

/// Translates `openai` (a chat request) for `model`; `max_output` is the deployment's
/// `model_info.max_output_tokens`, `extra` its other `litellm_params` (added where the request sets nothing).
pub fn to_anthropic(
    openai: &Map<String, Value>,
    model: &str,
    max_output: Option<u64>,
    extra: &Map<String, Value>,
) -> Result<Map<String, Value>, Error> {
    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.to_owned()));
    let messages = openai
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::invalid("'messages' is required and must be a list", Some("messages")))?;
    let (system, turns) = convert_messages(messages)?;
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert("messages".into(), Value::Array(turns));
    for key in SAME {
        if let Some(v) = openai.get(*key).filter(|v| !v.is_null()) {
            out.insert((*key).into(), v.clone());
        }
    }
    if let Some(user) = openai.get("user").and_then(Value::as_str) {
        out.entry("metadata")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|m| m.insert("user_id".into(), json!(user)));
    }
    match openai.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(list)) if !list.is_empty() => {
            out.insert("stop_sequences".into(), Value::Array(list.clone()));
        }
        _ => {}
    }
    if let Some(tools) = openai.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools.iter().filter_map(convert_tool).collect();
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    if let Some(choice) = openai.get("tool_choice").and_then(convert_tool_choice) {
        out.insert("tool_choice".into(), choice);
    }
    if openai.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
        let choice = out.entry("tool_choice").or_insert_with(|| json!({"type": "auto"}));
        if let Some(choice) = choice.as_object_mut() {
            choice.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }
    if !out.contains_key("thinking") {
        if let Some(budget) = openai.get("reasoning_effort").and_then(Value::as_str).and_then(thinking_budget) {
            out.insert("thinking".into(), json!({"type": "enabled", "budget_tokens": budget}));
        }
    }
    for (k, v) in extra {
        out.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let asked = ["max_completion_tokens", "max_tokens"].iter().find_map(|k| openai.get(*k).and_then(Value::as_u64));
    let budget = out.get("thinking").and_then(|t| t.get("budget_tokens")).and_then(Value::as_u64);
    let max_tokens = match (asked, out.get("max_tokens").and_then(Value::as_u64)) {
        (Some(n), _) | (None, Some(n)) => n,
        // The API refuses a thinking budget at or over max_tokens: leave room for the answer after it.
        (None, None) => max_output.unwrap_or(DEFAULT_MAX_TOKENS).max(budget.map_or(0, |b| b + DEFAULT_MAX_TOKENS)),
    };
    out.insert("max_tokens".into(), json!(max_tokens));
    Ok(out)
}

/// The system blocks and the alternating user/assistant turns.
fn convert_messages(messages: &[Value]) -> Result<(Vec<Value>, Vec<Value>), Error> {
    let mut system = Vec::new();
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        let content = message.get("content");
        let cache = message.get("cache_control");
        let (role, blocks) = match role {
            "system" | "developer" => {
                let mut blocks = content_blocks(content, i)?;
                blocks.retain(|b| b.get("type").and_then(Value::as_str) == Some("text"));
                with_cache_control(&mut blocks, cache);
                system.extend(blocks);
                continue;
            }
            "user" => {
                let mut blocks = content_blocks(content, i)?;
                with_cache_control(&mut blocks, cache);
                ("user", blocks)
            }
            "assistant" => ("assistant", assistant_blocks(message, i)?),
            "tool" | "function" => {
                let id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .or_else(|| message.get("name").and_then(Value::as_str))
                    .unwrap_or("");
                let text = match content {
                    Some(Value::String(s)) => Value::String(s.clone()),
                    Some(Value::Array(parts)) => Value::Array(content_blocks(Some(&Value::Array(parts.clone())), i)?),
                    Some(Value::Null) | None => Value::String(String::new()),
                    Some(other) => Value::String(other.to_string()),
                };
                let mut block = json!({"type": "tool_result", "tool_use_id": id, "content": text});
                if let Some(c) = cache {
                    block["cache_control"] = c.clone();
                }
                ("user", vec![block])
            }
            other => {
                return Err(Error::invalid(
                    format!("messages[{i}].role {other:?} cannot be sent to an Anthropic model"),
                    Some("messages"),
                ))
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if last == role => existing.extend(blocks),
            _ => turns.push((role.to_owned(), blocks)),
        }
    }
    let turns = turns.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
    Ok((system, turns))
}

fn with_cache_control(blocks: &mut [Value], cache: Option<&Value>) {
    if let (Some(cache), Some(last)) = (cache, blocks.last_mut()) {
        last["cache_control"] = cache.clone();
    }
}

/// A user or system message's content as blocks.
fn content_blocks(content: Option<&Value>, i: usize) -> Result<Vec<Value>, Error> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![json!({"type": "text", "text": s})]),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for part in parts {
                let mut block = match part.get("type").and_then(Value::as_str) {
                    Some("text") => json!({"type": "text", "text": part.get("text").cloned().unwrap_or(json!(""))}),
                    Some("image_url") => image_block(part, i)?,
                    // Already an Anthropic block (LiteLLM accepts these too).
                    Some("image" | "document" | "tool_result" | "tool_use") => part.clone(),
                    _ => continue,
                };
                if let Some(c) = part.get("cache_control") {
                    block["cache_control"] = c.clone();
                }
                blocks.push(block);
            }
            Ok(blocks)
        }
        Some(other) => Ok(vec![json!({"type": "text", "text": other.to_string()})]),
    }
}

/// An `image_url` part as an `image` block.
fn image_block(part: &Value, i: usize) -> Result<Value, Error> {
    let url =
        part.get("image_url").and_then(|u| u.get("url").or(Some(u))).and_then(Value::as_str).ok_or_else(|| {
            Error::invalid(format!("messages[{i}]: an image_url part without a url"), Some("messages"))
        })?;
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| Error::invalid(format!("messages[{i}]: a data URL without data"), Some("messages")))?;
        let media_type = meta.strip_suffix(";base64").unwrap_or(meta);
        return Ok(json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}));
    }
    Ok(json!({"type": "image", "source": {"type": "url", "url": url}}))
}

/// An assistant message's blocks: its thinking blocks (signed, as the API requires them back with tool use),
/// text, and tool calls.
fn assistant_blocks(message: &Value, i: usize) -> Result<Vec<Value>, Error> {
    let mut blocks: Vec<Value> = message
        .get("thinking_blocks")
        .and_then(Value::as_array)
        .map(|b| b.iter().filter(|b| b.get("type").is_some()).cloned().collect())
        .unwrap_or_default();
    blocks.extend(content_blocks(message.get("content"), i)?);
    for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let function = call.get("function");
        let name = function.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or("");
        let input = match function.and_then(|f| f.get("arguments")) {
            Some(Value::String(s)) if s.trim().is_empty() => json!({}),
            Some(Value::String(s)) => serde_json::from_str::<Value>(s).map_err(|e| {
                Error::invalid(format!("messages[{i}].tool_calls: arguments are not JSON: {e}"), Some("messages"))
            })?,
            Some(v @ Value::Object(_)) => v.clone(),
            _ => json!({}),
        };
        let id = call.get("id").and_then(Value::as_str).unwrap_or("");
        blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }
    Ok(blocks)
}

/// An OpenAI function tool as an Anthropic tool; other tool kinds are passed as they are.
fn convert_tool(tool: &Value) -> Option<Value> {
    if tool.get("type").and_then(Value::as_str) != Some("function") {
        return Some(tool.clone());
    }
    let f = tool.get("function")?;
    let mut out = json!({
        "name": f.get("name")?,
        "input_schema": f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    });
    if let Some(d) = f.get("description") {
        out["description"] = d.clone();
    }
    if let Some(c) = tool.get("cache_control") {
        out["cache_control"] = c.clone();
    }
    Some(out)
}

fn convert_tool_choice(choice: &Value) -> Option<Value> {
    match choice {
        Value::String(s) => match s.as_str() {
            "auto" => Some(json!({"type": "auto"})),
            "required" => Some(json!({"type": "any"})),
            "none" => Some(json!({"type": "none"})),
            _ => None,
        },
        Value::Object(o) => {
            let name = o.get("function").and_then(|f| f.get("name")).and_then(Value::as_str)?;
            Some(json!({"type": "tool", "name": name}))
        }
        _ => None,
    }
}
