//! OpenAI API types: the request head read on every request ([`head`]), full typed requests for translating
//! engines ([`request`]), and the response and stream chunk shapes ([`response`]); here the operations and the
//! helpers every protocol shares (reading a typed body with a 400 naming the field, ids, the clock).
//!
//! Every struct keeps the fields it does not name in `extra` (`#[serde(flatten)]`), so nothing a client sends
//! is lost on the way to an engine.

mod head;
mod request;
mod response;

use serde::Deserialize;

use crate::error::Error;

pub use head::{RequestHead, RouterControls};
pub use request::{
    ChatMessage, ChatRequest, CompletionRequest, ContentPart, EmbeddingInput, EmbeddingsRequest, FunctionCall,
    ImageUrl, MessageContent, Stop, StreamOptions, ToolCall,
};
pub use response::{
    ChatChoice, ChatCompletion, ChatCompletionChunk, ChunkChoice, Embedding, EmbeddingUsage, EmbeddingsResponse,
    ResponseMessage, TextChoice, TextCompletion, Usage,
};

/// The API operation a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/completions` (legacy text completion).
    Completion,
    /// `POST /v1/embeddings`.
    Embeddings,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 3] = [Operation::Chat, Operation::Completion, Operation::Embeddings];

    /// The route (without `/v1`), as OpenAI serves it and LiteLLM names it in error messages.
    pub fn route(self) -> &'static str {
        match self {
            Operation::Chat => "/chat/completions",
            Operation::Completion => "/completions",
            Operation::Embeddings => "/embeddings",
        }
    }
}

/// Turns a serde error into a 400 that names the offending field.
pub fn body_error(err: serde_path_to_error::Error<serde_json::Error>) -> Error {
    let path = err.path().to_string();
    let inner = err.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return Error::invalid(format!("Invalid JSON body: {inner}"), None);
    }
    if path.is_empty() || path == "." {
        Error::invalid(format!("Invalid request body: {inner}"), None)
    } else {
        Error::invalid(format!("Invalid value for '{path}': {inner}"), Some(&path))
    }
}

/// Parses a full typed request, mapping errors to a 400 that names the field.
pub fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(body_error)
}

/// A fresh id like `chatcmpl-…`, unique enough for client-side bookkeeping.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// Current Unix time in seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
