//! The conversion of an Anthropic Messages request to the canonical OpenAI chat request: system prompt, content
//! blocks, tool results, thinking and tools mapped onto OpenAI's fields. Kept apart from the wire types in
//! [`super::request`], which `count_tokens` reads without converting.

use serde_json::{Map, Value};

use super::request::{Block, DocumentSource, ImageSource, MessagesRequest, StringOr, Thinking, Tool, ToolChoice};
use crate::error::Error;
use crate::protocol::openai::{
    ChatMessage, ChatRequest, ContentPart, FunctionCall, ImageUrl, MessageContent, Stop, StreamOptions, ToolCall,
};

/// Request fields that only mean something on Anthropic's platform (prompt caching, containers, MCP connectors,
/// service tiers, …): an engine behind llmux has nothing to do with them, and an OpenAI-compatible engine may
/// reject a field it does not know, so they stay here. Every other unknown field travels on (LiteLLM's router
/// controls such as `num_retries`, Ollama's `keep_alive` or `options` sent through the SDK's `extra_body`).
const PLATFORM_ONLY: &[&str] = &[
    "cache_control",
    "container",
    "context_management",
    "mcp_servers",
    "service_tier",
    "inference_geo",
    "speed",
    "diagnostics",
    "betas",
    "user_profile_id",
    "workspace_id",
    "anthropic_version",
];

/// Anthropic's thinking budget as an OpenAI reasoning effort: low below 4,096 budget tokens, medium below
/// 16,384, high above (the split the Ollama provider uses for the same field on chat completions).
fn effort_of_budget(budget: Option<u64>) -> &'static str {
    match budget {
        Some(b) if b < 4096 => "low",
        Some(b) if b < 16384 => "medium",
        Some(_) => "high",
        None => "medium",
    }
}

/// `output_config.effort` as an OpenAI reasoning effort (OpenAI's scale ends at `high`).
fn effort_of_level(level: &str) -> Option<&'static str> {
    match level {
        "low" => Some("low"),
        "medium" => Some("medium"),
        "high" | "xhigh" | "max" => Some("high"),
        _ => None,
    }
}

impl MessagesRequest {
    /// The canonical OpenAI chat request. `max_tokens` is checked here, not in [`parse`](super::request::parse), because
    /// `count_tokens` does not need it.
    pub(super) fn into_openai(self) -> Result<ChatRequest, Error> {
        let max_tokens =
            self.max_tokens.ok_or_else(|| Error::invalid("max_tokens: Field required", Some("max_tokens")))?;
        let model = self.model.unwrap_or_default();
        let mut messages = Vec::new();
        if let Some(system) = self.system {
            let text = system_text(system, "system")?;
            messages.push(plain_message("system", MessageContent::Text(text)));
        }
        for (i, message) in self.messages.unwrap_or_default().into_iter().enumerate() {
            match message.role.as_str() {
                "user" => user_messages(message.content, i, &mut messages)?,
                "assistant" => messages.push(assistant_message(message.content, i)?),
                other => {
                    return Err(Error::invalid(
                        format!("messages.{i}.role: Input should be 'user' or 'assistant', not '{other}'"),
                        Some(&format!("messages[{i}].role")),
                    ))
                }
            }
        }

        let mut extra = self.extra;
        for key in PLATFORM_ONLY {
            extra.remove(*key);
        }
        if let Some(top_k) = self.top_k {
            extra.insert("top_k".to_owned(), Value::from(top_k));
        }
        if let Some(user) = self.metadata.and_then(|m| m.user_id) {
            extra.insert("user".to_owned(), Value::String(user));
        }

        let tools = tools_of(self.tools.unwrap_or_default())?;
        let mut tool_choice = None;
        if let Some(choice) = self.tool_choice {
            let (choice, no_parallel) = match choice {
                ToolChoice::Auto { disable_parallel_tool_use } => (Value::from("auto"), disable_parallel_tool_use),
                ToolChoice::Any { disable_parallel_tool_use } => (Value::from("required"), disable_parallel_tool_use),
                ToolChoice::Tool { name, disable_parallel_tool_use } => {
                    (serde_json::json!({"type": "function", "function": {"name": name}}), disable_parallel_tool_use)
                }
                ToolChoice::None {} => (Value::from("none"), None),
            };
            // OpenAI-compatible engines reject a tool_choice without tools (all of them may have been server
            // tools, dropped above).
            if !tools.is_empty() {
                tool_choice = Some(choice);
                if no_parallel == Some(true) {
                    extra.insert("parallel_tool_calls".to_owned(), Value::Bool(false));
                }
            }
        }

        let effort_level = self.output_config.as_ref().and_then(|o| o.effort.as_deref()).and_then(effort_of_level);
        let reasoning_effort = match self.thinking {
            Some(Thinking::Enabled { budget_tokens }) => Some(effort_of_budget(budget_tokens)),
            Some(Thinking::Disabled {}) => Some("none"),
            Some(Thinking::Adaptive {} | Thinking::BetweenTools {}) => Some(effort_level.unwrap_or("medium")),
            Some(Thinking::Other) | None => effort_level,
        };
        let response_format = match self.output_config.and_then(|o| o.format) {
            None | Some(Value::Null) => None,
            Some(format) => Some(response_format_of(format)?),
        };

        let stream = self.stream.unwrap_or(false);
        Ok(ChatRequest {
            model,
            messages,
            stream: stream.then_some(true),
            stream_options: stream.then(|| StreamOptions { include_usage: true, extra: Map::new() }),
            max_tokens: Some(max_tokens),
            max_completion_tokens: None,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: None,
            stop: self.stop_sequences.filter(|s| !s.is_empty()).map(Stop::Many),
            frequency_penalty: None,
            presence_penalty: None,
            response_format,
            reasoning_effort: reasoning_effort.map(str::to_owned),
            tools: (!tools.is_empty()).then_some(tools),
            tool_choice,
            extra,
        })
    }
}

fn plain_message(role: &str, content: MessageContent) -> ChatMessage {
    ChatMessage {
        role: role.to_owned(),
        content: Some(content),
        tool_calls: None,
        tool_call_id: None,
        reasoning_content: None,
        extra: Map::new(),
    }
}

fn text_part(text: String) -> ContentPart {
    ContentPart { kind: "text".to_owned(), text: Some(text), image_url: None, extra: Map::new() }
}

/// Parts as OpenAI content: one text part becomes a plain string (what every engine accepts).
fn content_of(mut parts: Vec<ContentPart>) -> MessageContent {
    if parts.len() == 1 && parts[0].kind == "text" {
        if let Some(text) = parts[0].text.take() {
            return MessageContent::Text(text);
        }
    }
    MessageContent::Parts(parts)
}

/// The `system` prompt as one string (engines' chat templates take one system text).
fn system_text(system: StringOr<Block>, param: &str) -> Result<String, Error> {
    match system {
        StringOr::Text(text) => Ok(text),
        StringOr::Blocks(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (j, block) in blocks.into_iter().enumerate() {
                match block {
                    Block::Text { text } => texts.push(text),
                    other => {
                        return Err(Error::invalid(
                            format!("{param}.{j}: system blocks must be text, not '{}'", other.kind()),
                            Some(&format!("{param}[{j}].type")),
                        ))
                    }
                }
            }
            Ok(texts.join("\n"))
        }
    }
}

/// An image block as an OpenAI `image_url` part: base64 as a data URL, a URL as is.
fn image_part(source: ImageSource, param: &str) -> Result<ContentPart, Error> {
    let url = match source {
        ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        ImageSource::Url { url } => url,
        ImageSource::File {} => {
            return Err(Error::invalid(
                "Images from Anthropic's Files API (source type 'file') cannot reach an engine behind llmux; send \
                 the image as base64 or a URL",
                Some(&format!("{param}.source")),
            ))
        }
    };
    Ok(ContentPart {
        kind: "image_url".to_owned(),
        text: None,
        image_url: Some(ImageUrl::Object { url, extra: Map::new() }),
        extra: Map::new(),
    })
}

/// The parts of a user-side block (message content, tool result content, nested document content).
fn user_parts(block: Block, param: &str, parts: &mut Vec<ContentPart>) -> Result<(), Error> {
    match block {
        Block::Text { text } => parts.push(text_part(text)),
        Block::Image { source } => parts.push(image_part(source, param)?),
        Block::Document { source, title, context } => {
            let mut head: Vec<String> = title.into_iter().chain(context).collect();
            match source {
                DocumentSource::Text { data } => {
                    head.push(data);
                    parts.push(text_part(head.join("\n")));
                }
                DocumentSource::Content { content } => {
                    if !head.is_empty() {
                        parts.push(text_part(head.join("\n")));
                    }
                    match content {
                        StringOr::Text(text) => parts.push(text_part(text)),
                        StringOr::Blocks(blocks) => {
                            for (k, inner) in blocks.into_iter().enumerate() {
                                user_parts(inner, &format!("{param}.source.content[{k}]"), parts)?;
                            }
                        }
                    }
                }
                DocumentSource::Base64 {} | DocumentSource::Url {} | DocumentSource::File {} => {
                    return Err(Error::invalid(
                        "PDF and file documents cannot reach an engine behind llmux; send the document's text \
                         (source type 'text' or 'content')",
                        Some(&format!("{param}.source")),
                    ))
                }
            }
        }
        Block::SearchResult { source, title, content } => {
            let mut text = format!("{title}\n{source}");
            for inner in content {
                if let Block::Text { text: t } = inner {
                    text.push('\n');
                    text.push_str(&t);
                }
            }
            parts.push(text_part(text));
        }
        other => {
            return Err(Error::invalid(
                format!("{param}: a '{}' block cannot appear here", other.kind()),
                Some(&format!("{param}.type")),
            ))
        }
    }
    Ok(())
}

/// A user message: its tool results first, as `tool` messages in order, then the rest of its content (images a
/// tool returned lead it, since OpenAI's tool messages carry text only).
fn user_messages(content: StringOr<Block>, i: usize, out: &mut Vec<ChatMessage>) -> Result<(), Error> {
    let blocks = match content {
        StringOr::Text(text) => {
            out.push(plain_message("user", MessageContent::Text(text)));
            return Ok(());
        }
        StringOr::Blocks(blocks) => blocks,
    };
    let mut tool_images = Vec::new();
    let mut parts = Vec::new();
    for (j, block) in blocks.into_iter().enumerate() {
        let param = format!("messages[{i}].content[{j}]");
        match block {
            Block::ToolResult { tool_use_id, content, is_error } => {
                let mut texts = Vec::new();
                match content {
                    None => {}
                    Some(StringOr::Text(text)) => texts.push(text),
                    Some(StringOr::Blocks(inner)) => {
                        let mut inner_parts = Vec::new();
                        for (k, b) in inner.into_iter().enumerate() {
                            user_parts(b, &format!("{param}.content[{k}]"), &mut inner_parts)?;
                        }
                        for part in inner_parts {
                            match part.text {
                                Some(text) => texts.push(text),
                                None => tool_images.push(part),
                            }
                        }
                    }
                }
                let mut text = texts.join("\n");
                // OpenAI's tool messages have no error flag: the model learns of the failure from the text.
                if is_error {
                    text = if text.is_empty() { "Error".to_owned() } else { format!("Error: {text}") };
                }
                out.push(ChatMessage {
                    role: "tool".to_owned(),
                    content: Some(MessageContent::Text(text)),
                    tool_calls: None,
                    tool_call_id: Some(tool_use_id),
                    reasoning_content: None,
                    extra: Map::new(),
                });
            }
            other => user_parts(other, &param, &mut parts)?,
        }
    }
    tool_images.extend(parts);
    if !tool_images.is_empty() {
        out.push(plain_message("user", content_of(tool_images)));
    }
    Ok(())
}

/// An assistant message: text, reasoning (`thinking`; signatures and redacted thinking stay behind, only
/// Anthropic can read them) and tool calls.
fn assistant_message(content: StringOr<Block>, i: usize) -> Result<ChatMessage, Error> {
    let blocks = match content {
        StringOr::Text(text) => return Ok(plain_message("assistant", MessageContent::Text(text))),
        StringOr::Blocks(blocks) => blocks,
    };
    let mut texts = Vec::new();
    let mut thinking = Vec::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.into_iter().enumerate() {
        match block {
            Block::Text { text } => texts.push(text),
            Block::Thinking { thinking: t } => thinking.push(t),
            Block::RedactedThinking {} => {}
            Block::ToolUse { id, name, input } => {
                let arguments = match input {
                    Value::Null => "{}".to_owned(),
                    other => other.to_string(),
                };
                calls.push(ToolCall {
                    id: Some(id),
                    kind: Some("function".to_owned()),
                    function: FunctionCall { name, arguments },
                    index: None,
                });
            }
            other => {
                return Err(Error::invalid(
                    format!("messages.{i}.content.{j}: an assistant message cannot hold a '{}' block", other.kind()),
                    Some(&format!("messages[{i}].content[{j}].type")),
                ))
            }
        }
    }
    let text = texts.join("");
    Ok(ChatMessage {
        role: "assistant".to_owned(),
        // OpenAI's assistant turn with tool calls and no text has `content: null`.
        content: if text.is_empty() && !calls.is_empty() { None } else { Some(MessageContent::Text(text)) },
        tool_calls: (!calls.is_empty()).then_some(calls),
        tool_call_id: None,
        reasoning_content: (!thinking.is_empty()).then(|| thinking.join("\n")),
        extra: Map::new(),
    })
}

/// Custom tools as OpenAI function tools. Anthropic's server tools (web search, code execution, its bash and
/// text editor schemas, …) are dropped: no engine behind llmux runs or knows them, and failing would break
/// clients such as Claude Code that offer them by default.
fn tools_of(tools: Vec<Tool>) -> Result<Vec<Value>, Error> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.into_iter().enumerate() {
        if !tool.is_custom() {
            tracing::debug!(
                kind = tool.kind.as_deref().unwrap_or(""),
                "an Anthropic server tool is not offered to the engine"
            );
            continue;
        }
        let name = tool.name.filter(|n| !n.is_empty()).ok_or_else(|| {
            Error::invalid(format!("tools.{i}.name: Field required"), Some(&format!("tools[{i}].name")))
        })?;
        let schema = tool.input_schema.ok_or_else(|| {
            Error::invalid(format!("tools.{i}.input_schema: Field required"), Some(&format!("tools[{i}].input_schema")))
        })?;
        let mut function = Map::new();
        function.insert("name".to_owned(), Value::String(name));
        if let Some(description) = tool.description {
            function.insert("description".to_owned(), Value::String(description));
        }
        function.insert("parameters".to_owned(), schema);
        if let Some(strict) = tool.strict {
            function.insert("strict".to_owned(), Value::Bool(strict));
        }
        out.push(serde_json::json!({"type": "function", "function": function}));
    }
    Ok(out)
}

/// `output_config.format` as OpenAI's `response_format`.
fn response_format_of(format: Value) -> Result<Value, Error> {
    match (format.get("type").and_then(Value::as_str), format.get("schema")) {
        (Some("json_schema"), Some(schema)) if schema.is_object() => Ok(serde_json::json!({
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": true},
        })),
        _ => Err(Error::invalid(
            "output_config.format: expected {\"type\": \"json_schema\", \"schema\": {…}}",
            Some("output_config.format"),
        )),
    }
}
