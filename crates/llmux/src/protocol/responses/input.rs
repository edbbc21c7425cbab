//! A Responses request → one OpenAI chat request: input items to messages, tools, formats, options.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{router_controls, stream_options, CreateRequest, Echo, EchoText, Input, Store, ToolNames, Turn};
use crate::error::Error;
use crate::protocol::openai::{
    new_id, unix_now, ChatMessage, ChatRequest, ContentPart, FunctionCall, ImageUrl, MessageContent, ToolCall,
};

/// The chat request for `req`, and what its answer needs to know.
pub(crate) fn to_chat(req: CreateRequest, store: &Store) -> Result<(ChatRequest, Turn), Error> {
    if req.model.is_empty() {
        return Err(Error::invalid("'model' must not be empty", Some("model")));
    }
    let (tools, names) = tools(req.tools.as_deref().unwrap_or_default())?;

    let mut conversation = Vec::new();
    if let Some(previous) = &req.previous_response_id {
        let stored = store.get(previous).ok_or_else(|| {
            Error::invalid_with_code(
                format!("Previous response with id '{previous}' not found."),
                Some("previous_response_id"),
                "previous_response_not_found",
            )
        })?;
        conversation.extend(stored.conversation.iter().cloned());
    }
    let mut builder = Builder { messages: conversation, reasoning: None, store };
    let mut input_items = Vec::new();
    let mut extra = router_controls(&req);
    match req.input {
        Some(Input::Text(text)) => builder.messages.push(message("user", Some(MessageContent::Text(text)))),
        Some(Input::Items(items)) => {
            for (i, item) in items.iter().enumerate() {
                builder.item(item, &format!("input[{i}]"))?;
                if item.get("id").and_then(Value::as_str).is_some() {
                    input_items.push(item.clone());
                }
            }
        }
        None => {}
    }
    let conversation = builder.messages;
    if conversation.is_empty() {
        return Err(Error::invalid("Missing required parameter: 'input'", Some("input")));
    }

    let mut messages = Vec::with_capacity(conversation.len() + 1);
    if let Some(instructions) = req.instructions.as_deref().filter(|s| !s.is_empty()) {
        messages.push(message("system", Some(MessageContent::Text(instructions.to_owned()))));
    }
    messages.extend(conversation.iter().cloned());

    let has_tools = !tools.is_empty();
    if has_tools {
        if let Some(parallel) = req.parallel_tool_calls {
            extra.insert("parallel_tool_calls".into(), Value::Bool(parallel));
        }
    }
    if let Some(user) = &req.user {
        extra.insert("user".into(), Value::String(user.clone()));
    }
    let text = req.text.unwrap_or_default();
    if let Some(verbosity) = &text.verbosity {
        extra.insert("verbosity".into(), Value::String(verbosity.clone()));
    }
    let response_format = text.format.as_ref().map(response_format).transpose()?;
    let reasoning_effort = match req.reasoning.as_ref().and_then(|r| r.get("effort")) {
        None | Some(Value::Null) => None,
        Some(Value::String(effort)) => Some(effort.clone()),
        Some(_) => return Err(Error::invalid("'reasoning.effort' must be a string", Some("reasoning.effort"))),
    };
    let tool_choice = match (&req.tool_choice, has_tools) {
        (Some(choice), true) => tool_choice(choice)?,
        _ => None,
    };
    let stream = req.stream.unwrap_or(false);
    let chat = ChatRequest {
        model: req.model.clone(),
        messages,
        stream: stream.then_some(true),
        stream_options: stream.then(stream_options),
        max_tokens: req.max_output_tokens,
        max_completion_tokens: None,
        temperature: req.temperature,
        top_p: req.top_p,
        seed: None,
        stop: None,
        frequency_penalty: None,
        presence_penalty: None,
        response_format,
        reasoning_effort,
        tools: has_tools.then_some(tools),
        tool_choice,
        extra,
    };

    let id = new_id("resp").replace('-', "_");
    let created_at = unix_now();
    let store_it = req.store.unwrap_or(true);
    let base = Echo {
        id: id.clone(),
        object: "response",
        created_at,
        model: req.model,
        instructions: req.instructions,
        tools: req.tools.unwrap_or_default(),
        tool_choice: req.tool_choice.unwrap_or_else(|| json!("auto")),
        parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
        temperature: req.temperature,
        top_p: req.top_p,
        max_output_tokens: req.max_output_tokens,
        previous_response_id: req.previous_response_id,
        store: store_it,
        metadata: req.metadata.unwrap_or_else(|| json!({})),
        text: EchoText { format: text.format.unwrap_or_else(|| json!({"type": "text"})), verbosity: text.verbosity },
        reasoning: req.reasoning.unwrap_or_else(|| json!({"effort": null, "summary": null})),
        user: req.user,
        truncation: "disabled",
        background: false,
    };
    let turn = Turn { id, base, conversation, input_items, store: store_it, tools: names };
    Ok((chat, turn))
}

fn message(role: &str, content: Option<MessageContent>) -> ChatMessage {
    ChatMessage {
        role: role.to_owned(),
        content,
        tool_calls: None,
        tool_call_id: None,
        reasoning_content: None,
        extra: Map::new(),
    }
}

/// Builds the chat conversation item by item.
struct Builder<'a> {
    messages: Vec<ChatMessage>,
    /// Reasoning waiting for the next assistant message.
    reasoning: Option<String>,
    store: &'a Store,
}

/// One content part of an input message.
#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    image_url: Option<String>,
    #[serde(default)]
    file_id: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

/// A message item (`type: message`, or an item with `role` and no type).
#[derive(Debug, Deserialize)]
struct MessageItem {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Value>),
}

/// `function_call` (and `custom_tool_call`, whose `input` stands for the arguments).
#[derive(Debug, Deserialize)]
struct CallItem {
    call_id: String,
    name: String,
    #[serde(default)]
    arguments: Option<String>,
    #[serde(default)]
    input: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

/// `function_call_output` / `custom_tool_call_output`.
#[derive(Debug, Deserialize)]
struct OutputItem {
    call_id: String,
    output: Content,
}

/// `reasoning`.
#[derive(Debug, Deserialize)]
struct ReasoningItem {
    #[serde(default)]
    summary: Vec<Part>,
    #[serde(default)]
    content: Option<Vec<Part>>,
}

fn typed<T: for<'de> Deserialize<'de>>(item: &Value, at: &str) -> Result<T, Error> {
    T::deserialize(item).map_err(|e| Error::invalid(format!("Invalid value for '{at}': {e}"), Some(at)))
}

impl Builder<'_> {
    fn item(&mut self, item: &Value, at: &str) -> Result<(), Error> {
        let kind = match item.get("type").and_then(Value::as_str) {
            Some(kind) => kind,
            None if item.get("role").is_some() => "message",
            None => return Err(Error::invalid(format!("'{at}' needs a 'type'"), Some(&format!("{at}.type")))),
        };
        match kind {
            "message" => self.message(typed(item, at)?, at),
            "function_call" | "custom_tool_call" => {
                let call: CallItem = typed(item, at)?;
                let arguments = match kind {
                    "custom_tool_call" => json!({"input": call.input.unwrap_or_default()}).to_string(),
                    _ => call.arguments.unwrap_or_else(|| "{}".to_owned()),
                };
                let name = ToolNames::chat_name(call.namespace.as_deref(), &call.name);
                self.call(ToolCall {
                    id: Some(call.call_id),
                    kind: Some("function".into()),
                    function: FunctionCall { name, arguments },
                    index: None,
                });
                Ok(())
            }
            "function_call_output" | "custom_tool_call_output" => {
                let out: OutputItem = typed(item, at)?;
                let content = self.content(out.output, &format!("{at}.output"), false)?;
                let mut m = message("tool", Some(content));
                m.tool_call_id = Some(out.call_id);
                self.messages.push(m);
                Ok(())
            }
            "reasoning" => {
                let r: ReasoningItem = typed(item, at)?;
                let from = match r.content {
                    Some(content) if !content.is_empty() => content,
                    _ => r.summary,
                };
                let text: Vec<String> = from.into_iter().filter_map(|p| p.text).collect();
                if !text.is_empty() {
                    self.reasoning = Some(text.join("\n"));
                }
                Ok(())
            }
            "item_reference" => {
                let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
                let found = self.store.item(id).ok_or_else(|| {
                    Error::invalid(format!("Item with id '{id}' not found."), Some(&format!("{at}.id")))
                })?;
                if found.get("type").and_then(Value::as_str) == Some("item_reference") {
                    return Err(Error::invalid("An item reference cannot name another reference", Some(at)));
                }
                self.item(&found, at)
            }
            other => {
                // Items of hosted tools (web search, file search, computer use, MCP, …) have no chat form; llmux
                // never offers those tools, so they only come from a conversation held elsewhere.
                tracing::debug!("responses: input item of type '{other}' at {at} has no chat form; left out");
                Ok(())
            }
        }
    }

    fn message(&mut self, m: MessageItem, at: &str) -> Result<(), Error> {
        let role = match m.role.as_str() {
            "developer" | "system" => "system",
            role @ ("user" | "assistant") => role,
            other => {
                return Err(Error::invalid(
                    format!("Invalid role '{other}': expected user, assistant, system or developer"),
                    Some(&format!("{at}.role")),
                ))
            }
        };
        let assistant = role == "assistant";
        let content = match m.content {
            Some(c) => Some(self.content(c, &format!("{at}.content"), assistant)?),
            None => None,
        };
        let mut out = message(role, content);
        if assistant {
            out.reasoning_content = self.reasoning.take();
        }
        self.messages.push(out);
        Ok(())
    }

    /// A tool call joins the assistant message just before it (consecutive calls become one message).
    fn call(&mut self, call: ToolCall) {
        let reasoning = self.reasoning.take();
        if let Some(last) = self.messages.last_mut().filter(|m| m.role == "assistant") {
            last.tool_calls.get_or_insert_with(Vec::new).push(call);
            if last.reasoning_content.is_none() {
                last.reasoning_content = reasoning;
            }
            return;
        }
        let mut m = message("assistant", None);
        m.tool_calls = Some(vec![call]);
        m.reasoning_content = reasoning;
        self.messages.push(m);
    }

    /// Message or tool-output content: a string, or parts (text and images). Assistant text is joined into
    /// one string, as every chat template expects.
    fn content(&self, content: Content, at: &str, flatten: bool) -> Result<MessageContent, Error> {
        let parts = match content {
            Content::Text(text) => return Ok(MessageContent::Text(text)),
            Content::Parts(parts) => parts,
        };
        let mut out = Vec::with_capacity(parts.len());
        for (j, part) in parts.iter().enumerate() {
            let at = format!("{at}[{j}]");
            let part: Part = typed(part, &at)?;
            match part.kind.as_str() {
                "input_text" | "output_text" | "text" | "summary_text" | "reasoning_text" => {
                    out.push(text_part(part.text.unwrap_or_default()))
                }
                "refusal" => out.push(text_part(part.refusal.or(part.text).unwrap_or_default())),
                "input_image" => {
                    if let Some(url) = part.image_url {
                        let mut extra = Map::new();
                        if let Some(detail) = part.detail {
                            extra.insert("detail".into(), Value::String(detail));
                        }
                        out.push(ContentPart {
                            kind: "image_url".into(),
                            text: None,
                            image_url: Some(ImageUrl::Object { url, extra }),
                            extra: Map::new(),
                        });
                    } else if part.file_id.is_some() {
                        return Err(Error::invalid(
                            "Images by 'file_id' are not supported: send the image as 'image_url' (a data URL or an http(s) URL)",
                            Some(&format!("{at}.file_id")),
                        ));
                    } else {
                        return Err(Error::invalid("An 'input_image' part needs an 'image_url'", Some(&at)));
                    }
                }
                other => {
                    return Err(Error::invalid(
                        format!("Content parts of type '{other}' are not supported"),
                        Some(&format!("{at}.type")),
                    ))
                }
            }
        }
        let all_text = out.iter().all(|p| p.kind == "text");
        if all_text && (flatten || out.len() == 1) {
            let texts: Vec<String> = out.into_iter().filter_map(|p| p.text).collect();
            return Ok(MessageContent::Text(texts.join(if flatten { "" } else { "\n" })));
        }
        Ok(MessageContent::Parts(out))
    }
}

fn text_part(text: String) -> ContentPart {
    ContentPart { kind: "text".into(), text: Some(text), image_url: None, extra: Map::new() }
}

/// Responses tools → chat tools, and how they were renamed.
fn tools(tools: &[Value]) -> Result<(Vec<Value>, ToolNames), Error> {
    let mut out = Vec::new();
    let mut names = ToolNames::default();
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => out.push(function(tool, None, &at)?),
            Some("namespace") => {
                let ns = tool.get("name").and_then(Value::as_str).unwrap_or_default();
                let inner = tool.get("tools").and_then(Value::as_array).into_iter().flatten();
                for (j, t) in inner.enumerate() {
                    let at = format!("{at}.tools[{j}]");
                    match t.get("type").and_then(Value::as_str) {
                        Some("function") => {
                            let f = function(t, Some(ns), &at)?;
                            let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
                            names.namespaced.insert(ToolNames::chat_name(Some(ns), name), (ns.into(), name.into()));
                            out.push(f);
                        }
                        Some("custom") => {
                            out.push(custom(t, &at)?);
                            names.custom.insert(t.get("name").and_then(Value::as_str).unwrap_or_default().into());
                        }
                        _ => {}
                    }
                }
            }
            Some("custom") => {
                out.push(custom(tool, &at)?);
                names.custom.insert(tool.get("name").and_then(Value::as_str).unwrap_or_default().into());
            }
            Some(_) => {} // hosted tools: see the module docs
            None => return Err(Error::invalid(format!("'{at}' needs a 'type'"), Some(&format!("{at}.type")))),
        }
    }
    Ok((out, names))
}

fn tool_name<'a>(tool: &'a Value, at: &str) -> Result<&'a str, Error> {
    tool.get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Error::invalid(format!("Missing required parameter: '{at}.name'"), Some(&format!("{at}.name"))))
}

/// A flat `function` tool as a nested chat tool.
fn function(tool: &Value, namespace: Option<&str>, at: &str) -> Result<Value, Error> {
    let name = ToolNames::chat_name(namespace, tool_name(tool, at)?);
    let mut f = Map::new();
    f.insert("name".into(), json!(name));
    if let Some(d) = tool.get("description").filter(|d| !d.is_null()) {
        f.insert("description".into(), d.clone());
    }
    let parameters = tool.get("parameters").filter(|p| !p.is_null()).cloned();
    f.insert("parameters".into(), parameters.unwrap_or_else(|| json!({"type": "object", "properties": {}})));
    if let Some(strict) = tool.get("strict").filter(|s| !s.is_null()) {
        f.insert("strict".into(), strict.clone());
    }
    Ok(json!({"type": "function", "function": f}))
}

/// A `custom` (freeform) tool as a function taking `{input: string}`; its grammar, if any, goes into the
/// description, as chat has no grammar-constrained tools.
fn custom(tool: &Value, at: &str) -> Result<Value, Error> {
    let name = tool_name(tool, at)?;
    let mut description = tool.get("description").and_then(Value::as_str).unwrap_or_default().to_owned();
    if let Some(format) = tool.get("format").filter(|f| f.get("type").and_then(Value::as_str) == Some("grammar")) {
        let syntax = format.get("syntax").and_then(Value::as_str).unwrap_or("grammar");
        let definition = format.get("definition").and_then(Value::as_str).unwrap_or_default();
        description.push_str(&format!("\n\nThe input must follow this {syntax} grammar:\n{definition}"));
    }
    Ok(json!({"type": "function", "function": {
        "name": name,
        "description": description,
        "parameters": {
            "type": "object",
            "properties": {"input": {"type": "string", "description": "The tool's free-form input."}},
            "required": ["input"],
        },
    }}))
}

/// `tool_choice` in chat's shape; `None` for a hosted tool llmux dropped.
fn tool_choice(choice: &Value) -> Result<Option<Value>, Error> {
    Ok(match choice {
        Value::String(s) => match s.as_str() {
            "auto" | "none" | "required" => Some(choice.clone()),
            other => {
                return Err(Error::invalid(
                    format!("Invalid tool_choice '{other}': expected auto, none or required"),
                    Some("tool_choice"),
                ))
            }
        },
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function" | "custom") => {
                let name = o.get("name").and_then(Value::as_str).ok_or_else(|| {
                    Error::invalid("Missing required parameter: 'tool_choice.name'", Some("tool_choice.name"))
                })?;
                let name = ToolNames::chat_name(o.get("namespace").and_then(Value::as_str), name);
                Some(json!({"type": "function", "function": {"name": name}}))
            }
            Some("allowed_tools") => match o.get("mode").and_then(Value::as_str) {
                Some("required") => Some(json!("required")),
                _ => Some(json!("auto")),
            },
            _ => None,
        },
        Value::Null => None,
        _ => return Err(Error::invalid("'tool_choice' must be a string or an object", Some("tool_choice"))),
    })
}

/// `text.format` → chat's `response_format`.
fn response_format(format: &Value) -> Result<Value, Error> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(json!({"type": "text"})),
        Some("json_object") => Ok(json!({"type": "json_object"})),
        Some("json_schema") => {
            let mut schema = Map::new();
            let name = format.get("name").cloned().unwrap_or_else(|| json!("response"));
            schema.insert("name".into(), name);
            for key in ["schema", "strict", "description"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    schema.insert(key.into(), v.clone());
                }
            }
            if !schema.contains_key("schema") {
                return Err(Error::invalid(
                    "Missing required parameter: 'text.format.schema'",
                    Some("text.format.schema"),
                ));
            }
            Ok(json!({"type": "json_schema", "json_schema": schema}))
        }
        _ => Err(Error::invalid(
            "Invalid 'text.format.type': expected text, json_object or json_schema",
            Some("text.format.type"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::openai::parse_body;
    use crate::protocol::responses::Stored;

    fn chat(body: Value) -> Result<(ChatRequest, Turn), Error> {
        chat_with(body, &Store::new())
    }

    fn chat_with(body: Value, store: &Store) -> Result<(ChatRequest, Turn), Error> {
        let req: CreateRequest = parse_body(body.to_string().as_bytes())?;
        to_chat(req, store)
    }

    fn roles(c: &ChatRequest) -> Vec<&str> {
        c.messages.iter().map(|m| m.role.as_str()).collect()
    }

    #[test]
    fn a_string_input_with_instructions_and_options() {
        let (c, turn) = chat(json!({
            "model": "m", "input": "hi", "instructions": "be brief", "max_output_tokens": 7, "temperature": 0.2,
            "top_p": 0.9, "user": "u1", "stream": true, "reasoning": {"effort": "low"}, "metadata": {"k": "v"},
            "store": false, "unknown_field": 1, "num_retries": 2,
        }))
        .unwrap();
        assert_eq!(roles(&c), ["system", "user"]);
        assert_eq!(c.max_tokens, Some(7));
        assert_eq!(c.reasoning_effort.as_deref(), Some("low"));
        assert!(c.stream_options.as_ref().is_some_and(|o| o.include_usage));
        assert_eq!(c.extra.get("user"), Some(&json!("u1")));
        assert_eq!(c.extra.get("num_retries"), Some(&json!(2)));
        assert!(!c.extra.contains_key("unknown_field") && !c.extra.contains_key("metadata"));
        assert_eq!(turn.base.metadata, json!({"k": "v"}));
        assert!(!turn.store);
        assert!(turn.id.starts_with("resp_"));
        assert_eq!(turn.conversation.len(), 1, "instructions are not part of the stored conversation");
    }

    #[test]
    fn items_map_to_chat_messages() {
        let (c, _) = chat(json!({"model": "m", "input": [
            {"role": "developer", "content": "dev rules"},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "look"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
            ]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "hmm"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "I will"}, {"type": "output_text", "text": " call"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{\"a\":1}"},
            {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}", "namespace": "ns"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
            {"type": "web_search_call", "id": "ws_1", "status": "completed"},
        ]}))
        .unwrap();
        assert_eq!(roles(&c), ["system", "user", "assistant", "tool", "tool"]);
        let user = &c.messages[1];
        let Some(MessageContent::Parts(parts)) = &user.content else { panic!("{user:?}") };
        assert_eq!(parts[1].image_url.as_ref().map(|u| u.url()), Some("data:image/png;base64,AAAA"));
        let assistant = &c.messages[2];
        assert_eq!(assistant.content.as_ref().map(|c| c.text().into_owned()).as_deref(), Some("I will call"));
        assert_eq!(assistant.reasoning_content.as_deref(), Some("hmm"));
        let calls = assistant.tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 2, "consecutive calls merge into one assistant message");
        assert_eq!(calls[1].function.name, "ns__g");
        assert_eq!(c.messages[3].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(c.messages[4].content.as_ref().map(|c| c.text().into_owned()).as_deref(), Some("two"));
    }

    #[test]
    fn bad_items_are_400s_naming_the_field() {
        let err = chat(
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}),
        )
        .unwrap_err();
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
        assert!(matches!(&err, Error::InvalidRequest { param: Some(p), .. } if p == "input[0].content[0].file_id"));
        let err = chat(json!({"model": "m", "input": [{"role": "critic", "content": "x"}]})).unwrap_err();
        assert!(matches!(&err, Error::InvalidRequest { param: Some(p), .. } if p == "input[0].role"));
        let err = chat(json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_x"}]})).unwrap_err();
        assert!(matches!(&err, Error::InvalidRequest { param: Some(p), .. } if p == "input[0].id"));
        let err = chat(json!({"model": "m", "input": "x", "text": {"format": {"type": "xml"}}})).unwrap_err();
        assert!(matches!(&err, Error::InvalidRequest { param: Some(p), .. } if p == "text.format.type"));
    }

    #[test]
    fn tools_flat_namespaced_custom_and_hosted() {
        let (c, turn) = chat(json!({"model": "m", "input": "x", "tool_choice": {"type": "function", "name": "f"},
            "parallel_tool_calls": false, "tools": [
            {"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}, "strict": true},
            {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "g"}]},
            {"type": "custom", "name": "apply_patch", "description": "patch", "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
            {"type": "web_search"}, {"type": "local_shell"},
        ]}))
        .unwrap();
        let tools = c.tools.unwrap();
        let names: Vec<&str> = tools.iter().filter_map(|t| t["function"]["name"].as_str()).collect();
        assert_eq!(names, ["f", "ns__g", "apply_patch"]);
        assert_eq!(tools[0]["function"]["strict"], json!(true));
        assert_eq!(tools[2]["function"]["parameters"]["required"], json!(["input"]));
        assert!(tools[2]["function"]["description"].as_str().unwrap().contains("start: x"));
        assert_eq!(c.tool_choice, Some(json!({"type": "function", "function": {"name": "f"}})));
        assert_eq!(c.extra.get("parallel_tool_calls"), Some(&json!(false)));
        assert!(turn.tools.custom.contains("apply_patch"));
        assert_eq!(turn.tools.namespaced.get("ns__g"), Some(&("ns".to_owned(), "g".to_owned())));
        // Only hosted tools: no tools and no tool_choice reach the engine.
        let (c, _) =
            chat(json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}], "tool_choice": "auto"}))
                .unwrap();
        assert!(c.tools.is_none() && c.tool_choice.is_none());
    }

    #[test]
    fn text_format_becomes_response_format() {
        let (c, _) = chat(json!({"model": "m", "input": "x", "text": {"format": {
            "type": "json_schema", "name": "person", "schema": {"type": "object"}, "strict": true}}}))
        .unwrap();
        assert_eq!(
            c.response_format,
            Some(
                json!({"type": "json_schema", "json_schema": {"name": "person", "schema": {"type": "object"}, "strict": true}})
            )
        );
    }

    #[test]
    fn previous_response_id_prepends_the_stored_conversation() {
        let store = Store::new();
        let (_, first) = chat_with(json!({"model": "m", "input": "first", "instructions": "sys"}), &store).unwrap();
        let mut conversation = first.conversation.clone();
        let mut answer = message("assistant", Some(MessageContent::Text("answer one".into())));
        answer.tool_calls = None;
        conversation.push(answer);
        store.put(
            first.id.clone(),
            Stored::new(crate::protocol::responses::store::raw_json(&json!({"output": []})), conversation, vec![]),
        );
        let (c, turn) = chat_with(
            json!({"model": "m", "input": "second", "previous_response_id": first.id, "instructions": "new"}),
            &store,
        )
        .unwrap();
        let texts: Vec<String> =
            c.messages.iter().map(|m| m.content.as_ref().map(|c| c.text().into_owned()).unwrap_or_default()).collect();
        assert_eq!(texts, ["new", "first", "answer one", "second"], "old instructions are not carried over");
        assert_eq!(turn.conversation.len(), 3);
        let err =
            chat_with(json!({"model": "m", "input": "x", "previous_response_id": "resp_nope"}), &store).unwrap_err();
        assert_eq!(err.to_string(), "Previous response with id 'resp_nope' not found.");
        assert!(matches!(&err, Error::InvalidRequest { param: Some(p), .. } if p == "previous_response_id"));
    }

    #[test]
    fn item_references_resolve_from_the_store() {
        let store = Store::new();
        store.put(
            "resp_a".into(),
            Stored::new(
                crate::protocol::responses::store::raw_json(
                    &json!({"output": [{"type": "function_call", "id": "fc_1", "call_id": "c9", "name": "f", "arguments": "{}"}]}),
                ),
                vec![],
                vec![],
            ),
        );
        let (c, _) = chat_with(
            json!({"model": "m", "input": [{"role": "user", "content": "x"}, {"type": "item_reference", "id": "fc_1"},
                {"type": "function_call_output", "call_id": "c9", "output": "ok"}]}),
            &store,
        )
        .unwrap();
        assert_eq!(roles(&c), ["user", "assistant", "tool"]);
        assert_eq!(c.messages[1].tool_calls.as_ref().unwrap()[0].id.as_deref(), Some("c9"));
    }
}
