//! The knobs that shape how the mock engine answers.
//!
//! One [`MockConfig`] value holds every knob. It is set at start-up (CLI flags,
//! `--config-json`, or the library's [`MockServer::start`](crate::MockServer::start))
//! and can be changed while the server runs, either in-process through
//! [`MockHandle::set_config`](crate::MockHandle::set_config) or over HTTP with
//! `POST /mock/config`. Every request takes a snapshot of the knobs when it
//! arrives, so a change never alters a response that is already under way.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::faults::Fault;
use crate::residency::ResidencyConfig;

/// The reply template used when none is configured.
///
/// `{name}` is replaced by the host name, `{model}` by the requested model and
/// `{input}` by the last user message (or the prompt) and `{tool_result}` by a
/// tool result that ends the conversation, so tests can tell which
/// host and model answered and what it was asked.
pub const DEFAULT_REPLY: &str = "Hello from {name} ({model}).";

/// Paths (prefixes) that faults, latency and pacing apply to when
/// [`MockConfig::fault_paths`] is empty: the inference endpoints only, so that
/// model listing and the `/mock/*` control endpoints keep working while a
/// fault is active.
pub const DEFAULT_FAULT_PATHS: &[&str] =
    &["/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/v1/", "/v1beta/", "/openai/deployments/"];

/// Every knob of one mock engine.
///
/// Deserialisation fills absent fields from [`MockConfig::default`] and
/// rejects unknown fields, so a typo in `POST /mock/config` is reported
/// instead of silently ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MockConfig {
    /// Host name; appears in the default reply so a test can tell which host answered.
    pub name: String,
    /// Models served (listed by `/api/tags` and `/v1/models`). Requests for
    /// other models get a 404 in the engine's error shape. Empty = serve any model.
    pub models: Vec<String>,
    /// Models reported as running by `/api/ps`. Inference requests append
    /// their model here (most recently used last).
    pub loaded: Vec<String>,
    /// Reply template; see [`DEFAULT_REPLY`] for the placeholders.
    pub reply: String,
    /// When set, replies are this many deterministic filler tokens instead of `reply`.
    pub reply_tokens: Option<u32>,
    /// Reasoning text returned before the content (Ollama `thinking`,
    /// OpenAI `reasoning_content`). Same placeholders as `reply`.
    pub thinking: Option<String>,
    /// When set and the request carries `tools`, the reply is this tool call.
    pub tool_call: Option<ToolCallSpec>,
    /// Context length reported by `/api/show` (`llama.context_length`), and as the per-slot context (`n_ctx`)
    /// by llama.cpp's `/slots`, `/props` and `/v1/models`.
    pub context_length: u64,
    /// Parallel slots reported by llama.cpp's `/slots` and `/props` (`total_slots`); requests in flight show
    /// as busy slots, and each slot keeps a KV cache of its last prompt. The mock never queues.
    pub slots: u32,
    /// `owned_by` of the models `/v1/models` lists: `llamacpp` makes the mock pass for llama.cpp's server with
    /// routers that look (llmux then probes its `/slots`).
    pub owned_by: String,
    /// Length of the embedding vectors returned when the request does not ask
    /// for a specific `dimensions`.
    pub embedding_dims: usize,
    /// Delay before response headers, in milliseconds.
    pub latency_ms: u64,
    /// Extra delay before the first streamed chunk, in milliseconds.
    pub ttft_ms: u64,
    /// Generation speed; spacing between streamed chunks is `1/tokens_per_sec`.
    /// 0 = as fast as possible.
    pub tokens_per_sec: f64,
    /// Prompt reading speed: the prompt tokens a slot's KV cache does not hold take `n / prefill_tokens_per_sec`
    /// before the first token (see the KV-cache model in `kv.rs`). 0 = read whole and instantly, no cache model.
    pub prefill_tokens_per_sec: f64,
    /// Prompts kept in host memory beyond the slots, as llama.cpp's `--cache-ram` keeps them: a slot about to
    /// give up what it holds saves it there and takes back the kept prompt the new one continues (see `kv.rs`).
    /// 0 = none (only what the slots hold is cached).
    pub kept_prompts: u32,
    /// The fault to inject; see [`Fault`].
    pub fault: Fault,
    /// Apply `fault` to the next N matching requests only, then revert to
    /// [`Fault::None`]. `None` = apply to every request until changed.
    pub fault_times: Option<u32>,
    /// Path prefixes that `fault`, `latency_ms` and pacing apply to. Empty =
    /// [`DEFAULT_FAULT_PATHS`]. `/mock/*` is never faulted; [`Fault::Refuse`]
    /// ignores this list because a refused connection has no path yet.
    pub fault_paths: Vec<String>,
    /// How many requests to keep for [`MockHandle::requests`](crate::MockHandle::requests)
    /// (oldest dropped first), so long benchmarks do not grow memory without bound.
    /// 0 = record nothing.
    pub record_limit: usize,
    /// Model residency simulation (memory budget, model sizes and load times, LRU eviction, keep-alive);
    /// `None` (the default) = off: every model answers at once and `/api/ps` lists `loaded`. See
    /// [`ResidencyConfig`].
    pub residency: Option<ResidencyConfig>,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            name: "mock".to_owned(),
            models: Vec::new(),
            loaded: Vec::new(),
            reply: DEFAULT_REPLY.to_owned(),
            reply_tokens: None,
            thinking: None,
            tool_call: None,
            context_length: 8192,
            slots: 4,
            owned_by: "library".to_owned(),
            embedding_dims: 8,
            latency_ms: 0,
            ttft_ms: 0,
            tokens_per_sec: 0.0,
            prefill_tokens_per_sec: 0.0,
            kept_prompts: 0,
            fault: Fault::None,
            fault_times: None,
            fault_paths: Vec::new(),
            record_limit: 1_000,
            residency: None,
        }
    }
}

impl MockConfig {
    /// A config with default knobs for host `name` serving `models`.
    pub fn new(name: &str, models: &[&str]) -> Self {
        Self { name: name.to_owned(), models: models.iter().map(|m| (*m).to_owned()).collect(), ..Self::default() }
    }

    /// Whether this host serves `model`.
    ///
    /// Ollama treats `x` and `x:latest` as the same model, so the comparison
    /// does too; an empty model list serves everything.
    pub fn serves(&self, model: &str) -> bool {
        if self.models.is_empty() {
            return true;
        }
        let wanted = canonical_model(model);
        self.models.iter().any(|m| canonical_model(m) == wanted)
    }

    /// Whether `fault`, latency and pacing apply to requests for `path`.
    pub fn is_faultable(&self, path: &str) -> bool {
        if path.starts_with("/mock/") {
            return false;
        }
        if self.fault_paths.is_empty() {
            DEFAULT_FAULT_PATHS.iter().any(|p| path.starts_with(p))
        } else {
            self.fault_paths.iter().any(|p| path.starts_with(p.as_str()))
        }
    }

    /// Parses a JSON object of knobs and merges it over `self`; see
    /// [`MockConfig::merge_json`].
    pub fn merge_json_str(&mut self, json: &str) -> anyhow::Result<()> {
        let patch: Value = serde_json::from_str(json)?;
        self.merge_json(&patch)
    }

    /// Merges a JSON object of knobs over `self` (this is what
    /// `POST /mock/config` does).
    ///
    /// Top-level keys replace the current value; `null` resets a key to its
    /// default. Setting `fault` without `fault_times` clears `fault_times`, so
    /// a new fault is never cut short by a count left over from an older one.
    /// On error `self` is left unchanged.
    pub fn merge_json(&mut self, patch: &Value) -> anyhow::Result<()> {
        let Some(patch) = patch.as_object() else {
            anyhow::bail!("config patch must be a JSON object");
        };
        let mut current = serde_json::to_value(&*self)?;
        let defaults = serde_json::to_value(MockConfig::default())?;
        let Some(fields) = current.as_object_mut() else {
            anyhow::bail!("config did not serialise to an object");
        };
        if patch.contains_key("fault") && !patch.contains_key("fault_times") {
            fields.insert("fault_times".to_owned(), Value::Null);
        }
        for (key, value) in patch {
            let value = if value.is_null() { defaults.get(key).cloned().unwrap_or(Value::Null) } else { value.clone() };
            fields.insert(key.clone(), value);
        }
        *self = serde_json::from_value(current)?;
        Ok(())
    }
}

/// `name` with Ollama's implicit `:latest` tag made explicit.
pub(crate) fn canonical_model(name: &str) -> String {
    // The tag follows the last ':' after any namespace ('/'), so a registry
    // host with a port ("host:5000/m") is not mistaken for a tag.
    let base = name.rsplit('/').next().unwrap_or(name);
    if base.contains(':') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

/// The tool call the mock makes when a request offers tools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallSpec {
    /// Function name.
    pub name: String,
    /// Arguments as a JSON object (sent as an object to Ollama clients and as
    /// a JSON string to OpenAI clients, as each protocol expects).
    #[serde(default = "empty_object")]
    pub arguments: Value,
}

impl ToolCallSpec {
    /// A tool call of `name` with `arguments`.
    pub fn new(name: &str, arguments: Value) -> Self {
        Self { name: name.to_owned(), arguments }
    }
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn model_names_match_with_implicit_latest() {
        let cfg = MockConfig::new("h", &["llama3", "qwen:7b"]);
        assert!(cfg.serves("llama3:latest"));
        assert!(cfg.serves("llama3"));
        assert!(cfg.serves("qwen:7b"));
        assert!(!cfg.serves("qwen"));
        assert!(MockConfig::new("h", &[]).serves("anything"));
    }

    #[test]
    fn merge_replaces_keys_and_null_resets() {
        let mut cfg = MockConfig::new("h", &["m"]);
        cfg.latency_ms = 5;
        cfg.fault_times = Some(3);
        cfg.merge_json(&json!({"fault": {"status": 503}, "latency_ms": null, "ttft_ms": 7})).unwrap();
        assert_eq!(cfg.latency_ms, 0);
        assert_eq!(cfg.ttft_ms, 7);
        assert_eq!(cfg.fault_times, None);
        assert!(matches!(cfg.fault, Fault::Status { status: 503, .. }));
        assert_eq!(cfg.name, "h");
    }

    #[test]
    fn merge_rejects_unknown_keys_and_keeps_state() {
        let mut cfg = MockConfig::new("h", &["m"]);
        let before = cfg.clone();
        assert!(cfg.merge_json(&json!({"latncy_ms": 3})).is_err());
        assert!(cfg.merge_json(&json!([1])).is_err());
        assert_eq!(cfg, before);
    }

    #[test]
    fn faultable_paths() {
        let mut cfg = MockConfig::default();
        assert!(cfg.is_faultable("/api/chat"));
        assert!(cfg.is_faultable("/v1/models"));
        assert!(!cfg.is_faultable("/api/tags"));
        assert!(!cfg.is_faultable("/mock/config"));
        cfg.fault_paths = vec!["/api/tags".into()];
        assert!(cfg.is_faultable("/api/tags"));
        assert!(!cfg.is_faultable("/api/chat"));
    }
}
