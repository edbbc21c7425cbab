//! A Responses request → one OpenAI chat request: input items to messages, formats, options. Tools, which
//! Responses names and shapes differently from chat, are converted in [`tools`].

#[cfg(test)]
mod tests;
mod tools;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use self::tools::{tool_choice, tools};
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
