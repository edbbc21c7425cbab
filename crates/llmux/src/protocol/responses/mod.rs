//! OpenAI's Responses API (`POST /v1/responses`, `GET`/`DELETE /v1/responses/{id}`) on top of chat completions,
//! with the bounded store behind `previous_response_id`.
//!
//! A request becomes one OpenAI chat request ([`input`]); the answer becomes a Response object, whole or as
//! the Responses event stream ([`output`]). Stored responses ([`store`]) keep the conversation as chat
//! messages, so `previous_response_id` prepends them to the next request.
//!
//! Tools: flat `function` tools become chat functions; `namespace` tools (Codex sends them) become chat
//! functions named `<namespace>__<name>` and their calls come back as `function_call` items with `namespace`;
//! `custom` (freeform) tools become functions taking `{"input": string}` and their calls come back as
//! `custom_tool_call` items, so Codex's `apply_patch` keeps working. Hosted tools an engine cannot run
//! (`web_search`, `file_search`, `computer_use_preview`, `code_interpreter`, `image_generation`, `mcp`,
//! `local_shell`, …) are dropped: Codex offers `web_search` on every request and would fail otherwise, and a
//! model that never sees a tool never calls it.

mod input;
mod output;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::Config;
use crate::error::{Dialect, Error};
use crate::protocol::openai::{parse_body, ChatMessage, Operation, RouterControls, StreamOptions};
use crate::protocol::translate::{Canonical, ChunkEncoder, Completion, Preparation, Translator};

pub use store::{Store, Stored};

/// A `POST /v1/responses` body. Fields llmux does not use are ignored (listed in `extra`, never sent on).
#[derive(Debug, Deserialize)]
pub struct CreateRequest {
    /// Model, alias or group name; the answer carries it back as sent.
    pub model: String,
    /// A string (one user message) or a list of input items.
    #[serde(default)]
    pub input: Option<Input>,
    /// A leading system message (not carried over by `previous_response_id`).
    #[serde(default)]
    pub instructions: Option<String>,
    /// A stored response whose conversation comes first.
    #[serde(default)]
    pub previous_response_id: Option<String>,
    /// Tool definitions (Responses shape).
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    /// `auto`, `none`, `required`, or `{type, name}`.
    #[serde(default)]
    pub tool_choice: Option<Value>,
    /// Whether the model may call several tools at once.
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// Becomes `max_tokens`.
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// `{effort, summary}`: `effort` becomes `reasoning_effort`.
    #[serde(default)]
    pub reasoning: Option<Value>,
    /// `{format, verbosity}`: `format` becomes `response_format`, `verbosity` goes on as is.
    #[serde(default)]
    pub text: Option<TextConfig>,
    /// End-user id, passed on.
    #[serde(default)]
    pub user: Option<String>,
    /// Kept in the response (not sent to the engine).
    #[serde(default)]
    pub metadata: Option<Value>,
    /// Whether to keep the response (default true).
    #[serde(default)]
    pub store: Option<bool>,
    /// Stream the answer as Responses events.
    #[serde(default)]
    pub stream: Option<bool>,
    // LiteLLM's per-request router controls (`RouterControls::FIELDS`) travel on; every other field is ignored.
    // Named one by one: `#[serde(flatten)]` would buffer the whole request (input items included) once more.
    #[serde(default)]
    num_retries: Option<Value>,
    #[serde(default)]
    disable_fallbacks: Option<Value>,
    #[serde(default)]
    fallbacks: Option<Value>,
    #[serde(default)]
    timeout: Option<Value>,
    #[serde(default)]
    stream_timeout: Option<Value>,
}

/// `input`: a string or items.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    /// One user message.
    Text(String),
    /// Input items (messages, function calls and outputs, reasoning, references).
    Items(Vec<Value>),
}

/// `text`: the output format.
#[derive(Debug, Default, Deserialize)]
pub struct TextConfig {
    /// `{type: text}`, `{type: json_object}` or `{type: json_schema, name, schema, strict, description}`.
    #[serde(default)]
    pub format: Option<Value>,
    /// `low`, `medium`, `high`.
    #[serde(default)]
    pub verbosity: Option<String>,
    /// Other fields, ignored.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// How the request's tools were renamed for the engine, to name the calls back.
#[derive(Debug, Default, Clone)]
pub(crate) struct ToolNames {
    /// Chat name → (namespace, name) for tools of a `namespace`.
    namespaced: HashMap<String, (String, String)>,
    /// Names of `custom` (freeform) tools.
    custom: HashSet<String>,
}

impl ToolNames {
    /// The chat function name of a call to `name` in `namespace`.
    fn chat_name(namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if !ns.is_empty() => format!("{ns}__{name}"),
            _ => name.to_owned(),
        }
    }
}

/// The request's fields a Response object repeats (what the SDK's models expect), typed: built once per request
/// and serialised into every snapshot of the response.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct Echo {
    id: String,
    object: &'static str,
    created_at: u64,
    model: String,
    instructions: Option<String>,
    tools: Vec<Value>,
    tool_choice: Value,
    parallel_tool_calls: bool,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_output_tokens: Option<u64>,
    previous_response_id: Option<String>,
    store: bool,
    metadata: Value,
    text: EchoText,
    reasoning: Value,
    user: Option<String>,
    truncation: &'static str,
    background: bool,
}

/// `text` as a Response object repeats it.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct EchoText {
    format: Value,
    verbosity: Option<String>,
}

/// What one request decided, for its answer.
#[derive(Debug, Default, Clone)]
pub(crate) struct Turn {
    /// `resp_…`.
    id: String,
    /// The Response object without `status`, `output`, `usage`, `error`, `incomplete_details`.
    base: Echo,
    /// The conversation sent (without instructions), for the store.
    conversation: Vec<ChatMessage>,
    /// Input items with an `id`, for `item_reference` later.
    input_items: Vec<Value>,
    /// `store` (default true).
    store: bool,
    /// Tool renames.
    tools: ToolNames,
}

/// `POST /v1/responses`, for one request.
pub struct Responses {
    store: Arc<Store>,
    turn: Turn,
}

impl Responses {
    /// A translator for one request, reading and writing `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Responses { store, turn: Turn::default() }
    }
}

impl Translator for Responses {
    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }

    fn prepare<'a>(&'a self, body: &'a [u8]) -> Option<Preparation<'a>> {
        #[derive(serde::Deserialize)]
        struct Previous {
            previous_response_id: Option<String>,
        }
        // Only a store shared with other replicas can hold what this one lacks: no parse otherwise.
        if !self.store.is_shared() {
            return None;
        }
        let id = serde_json::from_slice::<Previous>(body).ok()?.previous_response_id?;
        if self.store.get(&id).is_some() {
            return None;
        }
        Some(Box::pin(async move {
            let _ = self.store.get_or_fetch(&id).await;
        }))
    }

    fn request(&mut self, body: &[u8], _config: &Config) -> Result<Canonical, Error> {
        let req: CreateRequest = parse_body(body)?;
        let (chat, turn) = input::to_chat(req, &self.store)?;
        self.turn = turn;
        let body = serde_json::to_vec(&chat).map_err(|e| Error::Internal(format!("serialising a request: {e}")))?;
        Ok(Canonical { op: Operation::Chat, body, native: None })
    }

    fn response(&mut self, openai: &[u8]) -> Result<Bytes, Error> {
        let completion = Completion::parse(openai)?;
        output::whole(&mut self.turn, completion, &self.store)
    }

    fn stream(&mut self) -> Box<dyn ChunkEncoder> {
        Box::new(output::Encoder::new(std::mem::take(&mut self.turn), self.store.clone()))
    }
}

/// The router controls the request carried, as chat request fields.
fn router_controls(req: &CreateRequest) -> Map<String, Value> {
    let values = [&req.num_retries, &req.disable_fallbacks, &req.fallbacks, &req.timeout, &req.stream_timeout];
    RouterControls::FIELDS
        .iter()
        .zip(values)
        .filter_map(|(name, value)| value.as_ref().map(|v| ((*name).to_owned(), v.clone())))
        .collect()
}

fn stream_options() -> StreamOptions {
    StreamOptions { include_usage: true, extra: Map::new() }
}
