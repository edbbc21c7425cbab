//! OpenAI response shapes: chat completions and their stream chunks, legacy text completions, embeddings, and
//! token usage, as engines answer and llmux answers clients.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ToolCall;

/// Token usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
    /// Sum of both.
    pub total_tokens: u64,
}

impl Usage {
    /// Usage from prompt and completion counts.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage { prompt_tokens, completion_tokens, total_tokens: prompt_tokens.saturating_add(completion_tokens) }
    }
}

/// A non-streamed chat completion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// `chatcmpl-…`.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// The answers.
    pub choices: Vec<ChatChoice>,
    /// Token usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One answer of a chat completion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatChoice {
    /// Position.
    pub index: u32,
    /// The assistant message.
    pub message: ResponseMessage,
    /// `stop`, `length`, `tool_calls`, …
    pub finish_reason: Option<String>,
}

/// An assistant message in a response, or the delta of a stream chunk.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResponseMessage {
    /// `assistant` (omitted in later stream deltas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The text; serialised as `null` when absent, as OpenAI does for tool-call-only answers.
    #[serde(default)]
    pub content: Option<String>,
    /// Reasoning text (`thinking`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

/// One chunk of a streamed chat completion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    /// Same id for every chunk of one completion.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// Deltas (empty in the usage chunk).
    pub choices: Vec<ChunkChoice>,
    /// Usage, only in the final chunk when `include_usage` was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One delta of a stream chunk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// Position.
    pub index: u32,
    /// What is new in this chunk.
    pub delta: ResponseMessage,
    /// Set on the last content chunk.
    pub finish_reason: Option<String>,
}

/// A non-streamed legacy text completion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextCompletion {
    /// `cmpl-…`.
    pub id: String,
    /// Always `text_completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// The completions.
    pub choices: Vec<TextChoice>,
    /// Token usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One legacy completion choice (also the shape of a streamed one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextChoice {
    /// The text.
    pub text: String,
    /// Position.
    pub index: u32,
    /// Log probabilities (always null here).
    pub logprobs: Option<Value>,
    /// `stop`, `length`, or null mid-stream.
    pub finish_reason: Option<String>,
}

/// An embeddings response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingsResponse {
    /// Always `list`.
    pub object: String,
    /// One entry per input.
    pub data: Vec<Embedding>,
    /// The model that answered.
    pub model: String,
    /// Token usage (`completion_tokens` is 0).
    pub usage: EmbeddingUsage,
}

/// Usage of an embeddings call.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct EmbeddingUsage {
    /// Input tokens.
    pub prompt_tokens: u64,
    /// Same as `prompt_tokens`.
    pub total_tokens: u64,
}

/// One embedding.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Embedding {
    /// Always `embedding`.
    pub object: String,
    /// Position of the input.
    pub index: u32,
    /// The vector, or its base64 encoding when `encoding_format` was `base64`.
    pub embedding: Value,
}
