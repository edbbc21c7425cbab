//! An Anthropic Messages request as typed off the wire: the body's fields and blocks, [`parse`] with its 400s
//! naming the bad field, and the token estimate `count_tokens` answers. The conversion to OpenAI chat is in
//! [`super::convert`], so the shape of the request reads apart from what llmux makes of it.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::error::Error;

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
    pub(super) fn kind(&self) -> &'static str {
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
    pub(super) fn is_custom(&self) -> bool {
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

impl MessagesRequest {
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
