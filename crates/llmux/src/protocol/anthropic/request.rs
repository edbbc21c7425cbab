//! An Anthropic Messages request, typed, and its conversion to the canonical OpenAI chat request.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

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

/// `POST /v1/messages` (and `/v1/messages/count_tokens`) body.
#[derive(Debug, Deserialize)]
pub(super) struct MessagesRequest {
    /// The model name, kept for routing and answered back.
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation.
    #[serde(default)]
    pub messages: Option<Vec<InMessage>>,
    /// Required by Anthropic on `/v1/messages`.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// The system prompt: text or text blocks.
    #[serde(default)]
    pub system: Option<StringOr<Block>>,
    /// Custom stop sequences.
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    /// Stream the answer as Anthropic's SSE events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Top-k sampling (not an OpenAI field: travels as an extra one, which the Ollama provider reads as an option).
    #[serde(default)]
    pub top_k: Option<u64>,
    /// `user_id` becomes OpenAI's `user`.
    #[serde(default)]
    pub metadata: Option<Metadata>,
    /// Tool definitions: custom tools and Anthropic's server tools.
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    /// How the model must use the tools.
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    /// Extended thinking.
    #[serde(default)]
    pub thinking: Option<Thinking>,
    /// `effort` and structured output `format`.
    #[serde(default)]
    pub output_config: Option<OutputConfig>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A string or a list of typed blocks (message content, `system`, a tool result's content).
#[derive(Debug)]
pub(super) enum StringOr<T> {
    /// Shorthand for one text block.
    Text(String),
    /// Typed blocks.
    Blocks(Vec<T>),
}

// Written by hand rather than `#[serde(untagged)]`: an untagged enum hides which block was wrong, and a 400
// should name it (`messages[2].content[1]`).
impl<'de, T: Deserialize<'de>> Deserialize<'de> for StringOr<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = StringOr<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an array of content blocks")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(StringOr::Text(s.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(StringOr::Text(s))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut blocks = Vec::new();
                while let Some(block) = seq.next_element()? {
                    blocks.push(block);
                }
                Ok(StringOr::Blocks(blocks))
            }
        }
        deserializer.deserialize_any(Visit(std::marker::PhantomData))
    }
}

/// One message of the conversation.
#[derive(Debug, Deserialize)]
pub(super) struct InMessage {
    /// `user` or `assistant`.
    pub role: String,
    /// Text or blocks.
    pub content: StringOr<Block>,
}

/// A content block (input side). Fields not named here (`cache_control`, `citations`, …) are ignored: they steer
/// Anthropic's platform, not the model.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Block {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image.
    Image {
        /// Where its bytes are.
        source: ImageSource,
    },
    /// A document (plain text and nested content carry; PDFs and files do not).
    Document {
        /// Where its content is.
        source: DocumentSource,
        /// Its title.
        #[serde(default)]
        title: Option<String>,
        /// Context about it.
        #[serde(default)]
        context: Option<String>,
    },
    /// A search result given to the model as input.
    SearchResult {
        /// Where it came from.
        #[serde(default)]
        source: String,
        /// Its title.
        #[serde(default)]
        title: String,
        /// Its text blocks.
        #[serde(default)]
        content: Vec<Block>,
    },
    /// A tool call the assistant made.
    ToolUse {
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
        /// Arguments.
        #[serde(default)]
        input: Value,
    },
    /// The result of a tool call, from the user.
    ToolResult {
        /// The call it answers.
        tool_use_id: String,
        /// Text or blocks.
        #[serde(default)]
        content: Option<StringOr<Block>>,
        /// The tool failed.
        #[serde(default)]
        is_error: bool,
    },
    /// The assistant's reasoning.
    Thinking {
        /// Reasoning text.
        thinking: String,
    },
    /// Encrypted reasoning only Anthropic can read.
    RedactedThinking {},
}

impl Block {
    fn kind(&self) -> &'static str {
        match self {
            Block::Text { .. } => "text",
            Block::Image { .. } => "image",
            Block::Document { .. } => "document",
            Block::SearchResult { .. } => "search_result",
            Block::ToolUse { .. } => "tool_use",
            Block::ToolResult { .. } => "tool_result",
            Block::Thinking { .. } => "thinking",
            Block::RedactedThinking { .. } => "redacted_thinking",
        }
    }
}

/// An image's source.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ImageSource {
    /// Inline bytes.
    Base64 {
        /// `image/png`, …
        media_type: String,
        /// Base64 bytes.
        data: String,
    },
    /// A URL the engine side fetches.
    Url {
        /// The URL.
        url: String,
    },
    /// A file uploaded to Anthropic's Files API (llmux cannot read it).
    File {},
}

/// A document's source.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum DocumentSource {
    /// Plain text.
    Text {
        /// The text.
        data: String,
    },
    /// Content blocks.
    Content {
        /// Text or blocks.
        content: StringOr<Block>,
    },
    /// A base64 PDF.
    Base64 {},
    /// A PDF URL.
    Url {},
    /// A file uploaded to Anthropic's Files API.
    File {},
}

/// `metadata`.
#[derive(Debug, Deserialize)]
pub(super) struct Metadata {
    /// An opaque user id.
    #[serde(default)]
    pub user_id: Option<String>,
}

/// A tool definition: a custom tool (no `type`, or `custom`), or one of Anthropic's server tools
/// (`web_search_20250305`, `bash_20250124`, …).
#[derive(Debug, Deserialize)]
pub(super) struct Tool {
    /// Absent or `custom` for a custom tool.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Tool name.
    #[serde(default)]
    pub name: Option<String>,
    /// What it does.
    #[serde(default)]
    pub description: Option<String>,
    /// JSON schema of its input.
    #[serde(default)]
    pub input_schema: Option<Value>,
    /// Schema adherence, which OpenAI's function tools have too.
    #[serde(default)]
    pub strict: Option<bool>,
}

impl Tool {
    /// A tool the engine is asked to call (the client runs it), not one Anthropic's servers run or define.
    fn is_custom(&self) -> bool {
        matches!(self.kind.as_deref(), None | Some("custom"))
    }
}

/// `tool_choice`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ToolChoice {
    /// The model decides.
    Auto {
        /// At most one tool call.
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    /// Some tool must be called.
    Any {
        /// At most one tool call.
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    /// This tool must be called.
    Tool {
        /// The tool.
        name: String,
        /// At most one tool call.
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    /// No tool may be called.
    None {},
}

/// `thinking`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Thinking {
    /// Thinking with a token budget.
    Enabled {
        /// The budget.
        #[serde(default)]
        budget_tokens: Option<u64>,
    },
    /// No thinking.
    Disabled {},
    /// The model decides how much to think.
    Adaptive {},
    /// Thinking between tool calls.
    BetweenTools {},
    /// A kind newer than llmux: the engine's default stays.
    #[serde(other)]
    Other,
}

/// `output_config`.
#[derive(Debug, Deserialize)]
pub(super) struct OutputConfig {
    /// `low`, `medium`, `high`, `xhigh`, `max`.
    #[serde(default)]
    pub effort: Option<String>,
    /// Structured output: `{type: "json_schema", schema}`.
    #[serde(default)]
    pub format: Option<Value>,
}

/// Reads a request body; a bad one is a 400 naming the field.
pub(super) fn parse(body: &[u8]) -> Result<MessagesRequest, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid("Request body is empty: expected a JSON object", None));
    }
    let req: MessagesRequest = crate::protocol::openai::parse_body(body)?;
    match req.model.as_deref() {
        None => return Err(Error::invalid("model: Field required", Some("model"))),
        Some("") => return Err(Error::invalid("model: must not be empty", Some("model"))),
        Some(_) => {}
    }
    match req.messages.as_deref() {
        None => Err(Error::invalid("messages: Field required", Some("messages"))),
        Some([]) => Err(Error::invalid("messages: at least one message is required", Some("messages"))),
        Some(_) => Ok(req),
    }
}

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
    /// The canonical OpenAI chat request. `max_tokens` is checked here, not in [`parse`], because
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

    /// A token estimate of the request's text (system, messages, tools), characters / 4 as llmux estimates
    /// elsewhere. Images are not counted.
    pub(super) fn estimate_tokens(&self) -> u64 {
        let mut chars = 0usize;
        if let Some(system) = &self.system {
            chars += content_chars(system);
        }
        for message in self.messages.iter().flatten() {
            chars += content_chars(&message.content);
        }
        for tool in self.tools.iter().flatten() {
            chars += tool.name.as_deref().map_or(0, |s| s.chars().count());
            chars += tool.description.as_deref().map_or(0, |s| s.chars().count());
            chars += tool.input_schema.as_ref().map_or(0, |s| s.to_string().chars().count());
        }
        (chars as u64).div_ceil(4)
    }
}

fn content_chars(content: &StringOr<Block>) -> usize {
    match content {
        StringOr::Text(s) => s.chars().count(),
        StringOr::Blocks(blocks) => blocks.iter().map(block_chars).sum(),
    }
}

fn block_chars(block: &Block) -> usize {
    match block {
        Block::Text { text } => text.chars().count(),
        Block::Thinking { thinking } => thinking.chars().count(),
        Block::ToolUse { name, input, .. } => name.chars().count() + input.to_string().chars().count(),
        Block::ToolResult { content, .. } => content.as_ref().map_or(0, content_chars),
        Block::Document { source: DocumentSource::Text { data }, title, .. } => {
            data.chars().count() + title.as_deref().map_or(0, |t| t.chars().count())
        }
        Block::Document { source: DocumentSource::Content { content }, .. } => content_chars(content),
        Block::SearchResult { title, content, .. } => {
            title.chars().count() + content.iter().map(block_chars).sum::<usize>()
        }
        Block::Image { .. } | Block::Document { .. } | Block::RedactedThinking {} => 0,
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
