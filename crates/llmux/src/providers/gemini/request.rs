//! An OpenAI chat request as a Gemini `generateContent` request, field by field as LiteLLM's
//! `litellm/llms/vertex_ai/gemini/transformation.py` and `vertex_and_google_ai_studio_gemini.py` map it (API
//! reference: <https://ai.google.dev/api/generate-content>; tools:
//! <https://ai.google.dev/gemini-api/docs/function-calling>; thinking:
//! <https://ai.google.dev/gemini-api/docs/thinking>).
//!
//! System and developer messages become `systemInstruction`; user turns `user` contents with `text`,
//! `inlineData` (a data URL) and `fileData` (any other URL) parts; assistant turns `model` contents with `text`
//! and `functionCall` parts; `tool` messages `functionResponse` parts named after the call they answer.
//! Consecutive turns of one role are merged, as the API wants them alternating. Sampling parameters go into
//! `generationConfig`, `reasoning_effort` into its `thinkingConfig`.

use serde_json::{json, Map, Value};

use crate::error::Error;

/// What joins a tool call's id and the `thoughtSignature` of the `functionCall` part it came from: the API wants
/// the signature back with the call on the next turn, and an OpenAI client only keeps the id (LiteLLM's scheme).
pub const THOUGHT_SEPARATOR: &str = "__thought__";

/// Top-level fields of Gemini's own request that a client may send as they are (through the OpenAI SDK's
/// `extra_body`): kept, as LiteLLM passes them on. Any other unknown field is dropped, since the API refuses a
/// request with a field it does not know.
const NATIVE: &[&str] = &["safetySettings", "cachedContent", "labels"];

/// LiteLLM's snake_case names for some of [`NATIVE`] (in `litellm_params` or the request).
const SNAKE: &[(&str, &str)] = &[("safety_settings", "safetySettings"), ("cached_content", "cachedContent")];

/// OpenAI sampling parameters and their `generationConfig` names.
const GENERATION: &[(&str, &str)] = &[
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("top_k", "topK"),
    ("n", "candidateCount"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
    ("logprobs", "responseLogprobs"),
    ("top_logprobs", "logprobs"),
];

/// The thinking budget for OpenAI's `reasoning_effort`: LiteLLM's `DEFAULT_REASONING_EFFORT_*_THINKING_BUDGET`
/// (`minimal` the smallest budget the model accepts: 512 on 2.5 Flash-Lite, 128 elsewhere); `none`/`disable`
/// turn thinking off.
fn thinking_config(effort: &str, model: &str) -> Option<Value> {
    let budget = match effort {
        "none" | "disable" => return Some(json!({"thinkingBudget": 0, "includeThoughts": false})),
        "minimal" if model.contains("flash-lite") => 512,
        "minimal" => 128,
        "low" => 1024,
        "medium" => 2048,
        "high" => 4096,
        _ => return None,
    };
    Some(json!({"thinkingBudget": budget, "includeThoughts": true}))
}

/// Translates `openai` (a chat request) for `model`; `extra` are the deployment's other `litellm_params`, used
/// where the request sets nothing.
pub fn to_gemini(
    openai: &Map<String, Value>,
    model: &str,
    extra: &Map<String, Value>,
) -> Result<Map<String, Value>, Error> {
    // The deployment's parameters count as if the client had sent them, so they are translated too (an unknown
    // top-level `temperature` would be refused by the API).
    let mut request = openai.clone();
    for (k, v) in extra {
        request.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::invalid("'messages' is required and must be a list", Some("messages")))?;
    let (system, contents) = convert_messages(messages)?;
    let mut out = Map::new();
    out.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system}));
    }
    if let Some(tools) = request.get("tools").and_then(Value::as_array) {
        let tools = convert_tools(tools);
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    if let Some(config) = request.get("tool_choice").and_then(convert_tool_choice) {
        out.insert("toolConfig".into(), json!({"functionCallingConfig": config}));
    }
    let config = generation_config(&request, model);
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    for (snake, camel) in SNAKE {
        if let Some(v) = request.get(*snake) {
            out.entry(*camel).or_insert_with(|| v.clone());
        }
    }
    for key in NATIVE {
        if let Some(v) = request.get(*key) {
            out.insert((*key).into(), v.clone());
        }
    }
    Ok(out)
}

/// `generationConfig`: the sampling parameters, the output cap, stop sequences, the response format, thinking;
/// a `generationConfig` the client sent itself is merged over it.
fn generation_config(request: &Map<String, Value>, model: &str) -> Map<String, Value> {
    let mut config = Map::new();
    for (openai, gemini) in GENERATION {
        if let Some(v) = request.get(*openai).filter(|v| !v.is_null()) {
            config.insert((*gemini).into(), v.clone());
        }
    }
    if let Some(n) =
        ["max_completion_tokens", "max_tokens"].iter().find_map(|k| request.get(*k).and_then(Value::as_u64))
    {
        config.insert("maxOutputTokens".into(), json!(n));
    }
    match request.get("stop") {
        Some(Value::String(s)) => {
            config.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(list)) if !list.is_empty() => {
            config.insert("stopSequences".into(), Value::Array(list.clone()));
        }
        _ => {}
    }
    if let Some(format) = request.get("response_format") {
        match format.get("type").and_then(Value::as_str) {
            Some("json_object") => {
                config.insert("responseMimeType".into(), json!("application/json"));
            }
            Some("json_schema") => {
                config.insert("responseMimeType".into(), json!("application/json"));
                // `responseJsonSchema` takes JSON Schema as OpenAI clients write it (`responseSchema` only an
                // OpenAPI subset that would need rewriting).
                if let Some(schema) = format.get("json_schema").and_then(|s| s.get("schema")) {
                    config.insert("responseJsonSchema".into(), schema.clone());
                }
            }
            Some("text") => {
                config.insert("responseMimeType".into(), json!("text/plain"));
            }
            _ => {}
        }
    }
    let thinking = request
        .get("reasoning_effort")
        .and_then(Value::as_str)
        .and_then(|e| thinking_config(e, model))
        .or_else(|| anthropic_thinking(request.get("thinking")?));
    if let Some(thinking) = thinking {
        config.insert("thinkingConfig".into(), thinking);
    }
    if let Some(Value::Object(own)) = request.get("generationConfig") {
        for (k, v) in own {
            config.insert(k.clone(), v.clone());
        }
    }
    config
}

/// Anthropic's `thinking` parameter (which LiteLLM accepts for every provider) as a thinking budget.
fn anthropic_thinking(thinking: &Value) -> Option<Value> {
    match thinking.get("type").and_then(Value::as_str)? {
        "enabled" => {
            let budget = thinking.get("budget_tokens").and_then(Value::as_u64)?;
            Some(json!({"thinkingBudget": budget, "includeThoughts": true}))
        }
        "disabled" => Some(json!({"thinkingBudget": 0, "includeThoughts": false})),
        _ => None,
    }
}

/// The system parts and the alternating `user`/`model` contents.
fn convert_messages(messages: &[Value]) -> Result<(Vec<Value>, Vec<Value>), Error> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let content = message.get("content");
        let (role, parts) = match message.get("role").and_then(Value::as_str).unwrap_or("") {
            "system" | "developer" => {
                system.extend(user_parts(content, i)?.into_iter().filter(|p| p.get("text").is_some()));
                continue;
            }
            "user" => ("user", user_parts(content, i)?),
            "assistant" => ("model", assistant_parts(message, i)?),
            "tool" | "function" => ("user", vec![function_response(message, &messages[..i])]),
            other => {
                return Err(Error::invalid(
                    format!("messages[{i}].role {other:?} cannot be sent to a Gemini model"),
                    Some("messages"),
                ))
            }
        };
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    let contents = turns.into_iter().map(|(role, parts)| json!({"role": role, "parts": parts})).collect();
    Ok((system, contents))
}

/// A user or system message's content as parts.
fn user_parts(content: Option<&Value>, i: usize) -> Result<Vec<Value>, Error> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![json!({"text": s})]),
        Some(Value::Array(items)) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                match item.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        parts.push(json!({"text": item.get("text").and_then(Value::as_str).unwrap_or("")}));
                    }
                    Some("image_url") => parts.push(image_part(item, i)?),
                    // Already a Gemini part (LiteLLM passes these on too).
                    None if item.get("inlineData").is_some() || item.get("fileData").is_some() => {
                        parts.push(item.clone());
                    }
                    _ => {}
                }
            }
            Ok(parts)
        }
        Some(other) => Ok(vec![json!({"text": other.to_string()})]),
    }
}

/// An `image_url` part: a data URL inline, any other URL as a file the API fetches itself.
fn image_part(item: &Value, i: usize) -> Result<Value, Error> {
    let image = item.get("image_url");
    let url = image
        .and_then(|u| u.get("url").or(Some(u)))
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid(format!("messages[{i}]: an image_url part without a url"), Some("messages")))?;
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| Error::invalid(format!("messages[{i}]: a data URL without data"), Some("messages")))?;
        let mime = meta.strip_suffix(";base64").unwrap_or(meta);
        return Ok(json!({"inlineData": {"mimeType": mime, "data": data}}));
    }
    let mut file = json!({"fileUri": url});
    // OpenAI's `format` (LiteLLM's extension) names the type of a URL whose extension does not.
    if let Some(mime) = image.and_then(|u| u.get("format")).and_then(Value::as_str) {
        file["mimeType"] = json!(mime);
    }
    Ok(json!({"fileData": file}))
}

/// An assistant message's parts: its text, then its tool calls as `functionCall` parts (with the thought
/// signature its id carries, see [`THOUGHT_SEPARATOR`]).
fn assistant_parts(message: &Value, i: usize) -> Result<Vec<Value>, Error> {
    let mut parts = user_parts(message.get("content"), i)?;
    for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let function = call.get("function");
        let name = function.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or("");
        let args = match function.and_then(|f| f.get("arguments")) {
            Some(Value::String(s)) if s.trim().is_empty() => json!({}),
            Some(Value::String(s)) => serde_json::from_str::<Value>(s).map_err(|e| {
                Error::invalid(format!("messages[{i}].tool_calls: arguments are not JSON: {e}"), Some("messages"))
            })?,
            Some(v @ Value::Object(_)) => v.clone(),
            _ => json!({}),
        };
        let mut part = json!({"functionCall": {"name": name, "args": args}});
        if let Some((_, signature)) =
            call.get("id").and_then(Value::as_str).and_then(|id| id.split_once(THOUGHT_SEPARATOR))
        {
            part["thoughtSignature"] = json!(signature);
        }
        parts.push(part);
    }
    Ok(parts)
}

/// A tool message as a `functionResponse` part, named after the call it answers (found by id among the
/// messages before it); a JSON object result is sent as the response, any other result as `{"content": …}`.
fn function_response(message: &Value, before: &[Value]) -> Value {
    let id = message.get("tool_call_id").and_then(Value::as_str);
    let called = id.and_then(|id| {
        before.iter().rev().find_map(|m| {
            let calls = m.get("tool_calls")?.as_array()?;
            let call = calls.iter().find(|c| c.get("id").and_then(Value::as_str) == Some(id))?;
            call.get("function")?.get("name")?.as_str()
        })
    });
    let name = called.or_else(|| message.get("name").and_then(Value::as_str)).unwrap_or("");
    let text = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => {
            items.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("")
        }
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(object @ Value::Object(_)) => object,
        _ => json!({"content": text}),
    };
    json!({"functionResponse": {"name": name, "response": response}})
}

/// OpenAI function tools as one `functionDeclarations` tool; other tools (Gemini's own, such as
/// `{"googleSearch": {}}`) are passed as they are.
fn convert_tools(tools: &[Value]) -> Vec<Value> {
    let mut declarations = Vec::new();
    let mut out = Vec::new();
    for tool in tools {
        match (tool.get("type").and_then(Value::as_str), tool.get("function")) {
            (Some("function"), Some(f)) => {
                let Some(name) = f.get("name") else { continue };
                let mut declaration = json!({"name": name});
                if let Some(d) = f.get("description") {
                    declaration["description"] = d.clone();
                }
                if let Some(p) = f.get("parameters").filter(|p| !is_empty_schema(p)) {
                    declaration["parameters"] = openapi_schema(p);
                }
                declarations.push(declaration);
            }
            _ => out.push(tool.clone()),
        }
    }
    if !declarations.is_empty() {
        out.insert(0, json!({"functionDeclarations": declarations}));
    }
    out
}

/// An object schema without properties: the API refuses one as `parameters`, so it is left out.
fn is_empty_schema(schema: &Value) -> bool {
    schema.get("properties").and_then(Value::as_object).is_none_or(Map::is_empty)
        && schema.get("type").and_then(Value::as_str).is_none_or(|t| t == "object")
}

/// A JSON Schema without the keywords `parameters` (an OpenAPI subset) refuses: `$schema`,
/// `additionalProperties` and `strict`, at every level (property names are kept whatever they are).
fn openapi_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "$schema" | "additionalProperties" | "strict"))
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("properties" | "$defs" | "definitions", Value::Object(named)) => {
                            Value::Object(named.iter().map(|(n, s)| (n.clone(), openapi_schema(s))).collect())
                        }
                        _ => openapi_schema(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(openapi_schema).collect()),
        other => other.clone(),
    }
}

/// OpenAI's `tool_choice` as a `functionCallingConfig`.
fn convert_tool_choice(choice: &Value) -> Option<Value> {
    match choice {
        Value::String(s) => match s.as_str() {
            "auto" => Some(json!({"mode": "AUTO"})),
            "required" => Some(json!({"mode": "ANY"})),
            "none" => Some(json!({"mode": "NONE"})),
            _ => None,
        },
        Value::Object(o) => {
            let name = o.get("function").and_then(|f| f.get("name")).and_then(Value::as_str)?;
            Some(json!({"mode": "ANY", "allowedFunctionNames": [name]}))
        }
        _ => None,
    }
}
