//! The configuration: LiteLLM's proxy `config.yaml`, read unchanged, validated once into an immutable
//! [`Config`] snapshot.
//!
//! [`load`] reads the file (with `include`s and `os.environ/` references), [`validate`] checks every key
//! and collects every problem with its YAML path, and [`Diagnostics`] carries warnings (keys llmux does not
//! act on yet, misplaced keys) and errors to the caller.

mod diag;
mod load;
mod table;
mod validate;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};

pub use diag::{Diagnostic, Diagnostics, Severity};
pub use load::{load, load_str};
pub use table::routing_table;

use crate::providers::{Adapter, EngineSpec};

/// A secret value (an API key). Its `Debug` never prints the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Every `model_list` entry, in file order; the index is the deployment's handle in routing state.
    pub deployments: Vec<Deployment>,
    /// Model groups by `model_name`, each listing its deployments' indices in file order.
    pub groups: HashMap<String, Vec<usize>>,
    /// Group names in file order (for `/v1/models`).
    pub group_order: Vec<String>,
    /// `router_settings.model_group_alias`.
    pub aliases: HashMap<String, Alias>,
    /// Alias names in file order.
    pub alias_order: Vec<String>,
    /// Router behaviour.
    pub router: RouterSettings,
    /// Proxy behaviour.
    pub general: GeneralSettings,
}

/// One `model_list` entry.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// `model_info.id`, or LiteLLM's sha256 of the entry when absent.
    pub id: String,
    /// Position in `model_list` (for messages).
    pub index: usize,
    /// The group it belongs to (`model_name`).
    pub model_name: String,
    /// `litellm_params.model` as written, e.g. `ollama_chat/qwen3:8b`.
    pub model: String,
    /// What serves it.
    pub target: Target,
    /// `order`: lower is preferred; `None` only serves when no ordered deployment survives.
    pub order: Option<u32>,
    /// simple-shuffle `weight`.
    pub weight: Option<f64>,
    /// Requests per minute (limit, and a weight for simple-shuffle).
    pub rpm: Option<f64>,
    /// Tokens per minute (limit, and a weight for simple-shuffle).
    pub tpm: Option<f64>,
    /// Whole-request timeout for non-streamed calls.
    pub timeout: Option<Duration>,
    /// Timeout for streamed calls: time to the first byte and between chunks.
    pub stream_timeout: Option<Duration>,
    /// `model_info.mode` (`chat`, `completion`, `embedding`, …).
    pub mode: Option<String>,
    /// `model_info` as written (secrets never live there).
    pub model_info: Map<String, Value>,
    /// `litellm_params` as written with secrets removed, for `/model/info`.
    pub public_params: Map<String, Value>,
}

/// What a deployment calls.
#[derive(Debug, Clone)]
pub enum Target {
    /// An inference engine.
    Engine(EngineTarget),
    /// A strategy router (`auto_router/...`): never called itself, it picks another model name.
    AutoRouter {
        /// The router kind after `auto_router/`, e.g. `complexity_router`.
        kind: String,
    },
}

/// An engine endpoint and the parameters sent with every request to it.
#[derive(Debug, Clone)]
pub struct EngineTarget {
    /// The engine family.
    pub engine: &'static EngineSpec,
    /// The model name the engine knows (after the prefix).
    pub upstream_model: String,
    /// Base URL, without trailing slash.
    pub api_base: String,
    /// Key sent as `Authorization: Bearer`.
    pub api_key: Option<Secret>,
    /// Ollama `keep_alive`.
    pub keep_alive: Option<Value>,
    /// Other `litellm_params` (engine options such as `num_ctx`, `top_k`), forwarded to the engine.
    pub extra_params: Map<String, Value>,
}

impl EngineTarget {
    /// The adapter that speaks to this engine.
    pub fn adapter(&self) -> Adapter {
        self.engine.adapter
    }
    /// `host:port` of the base URL, for route explanations and the routing table.
    pub fn host(&self) -> &str {
        let rest = self.api_base.split_once("://").map(|(_, r)| r).unwrap_or(&self.api_base);
        rest.split('/').next().unwrap_or(rest)
    }
}

impl Deployment {
    /// The engine, for deployments that call one.
    pub fn engine(&self) -> Option<&EngineTarget> {
        match &self.target {
            Target::Engine(e) => Some(e),
            Target::AutoRouter { .. } => None,
        }
    }
}

/// A `model_group_alias` entry.
#[derive(Debug, Clone)]
pub struct Alias {
    /// The group (or deployment id) it points at.
    pub target: String,
    /// Hidden aliases work but are not listed in `/v1/models`.
    pub hidden: bool,
}

/// `router_settings` (and the `litellm_settings` keys LiteLLM feeds into the router).
#[derive(Debug, Clone)]
pub struct RouterSettings {
    /// `routing_strategy`.
    pub routing_strategy: String,
    /// `num_retries` (default 2, as LiteLLM's code).
    pub num_retries: u32,
    /// `fallbacks`: requested name → ordered targets.
    pub fallbacks: Vec<(String, Vec<String>)>,
    /// `default_fallbacks`.
    pub default_fallbacks: Vec<String>,
    /// `max_fallbacks` (default 5).
    pub max_fallbacks: u32,
    /// Router-wide `timeout`.
    pub timeout: Option<Duration>,
    /// Router-wide `stream_timeout`.
    pub stream_timeout: Option<Duration>,
}

/// `general_settings` and server options.
#[derive(Debug, Clone)]
pub struct GeneralSettings {
    /// `master_key`: when set, every API call needs it.
    pub master_key: Option<Secret>,
    /// Largest accepted request body (`max_request_size_mb`, default 32 MiB for image payloads).
    pub max_request_body_bytes: usize,
    /// `background_health_checks` (also read, with a warning, from `litellm_settings`).
    pub background_health_checks: bool,
    /// `health_check_interval` seconds.
    pub health_check_interval: u64,
}

impl Config {
    /// Resolves a requested name to its group's deployment indices: a deployment id, an alias (one hop), or a
    /// group name, in LiteLLM's order.
    pub fn resolve(&self, requested: &str) -> Option<Resolved<'_>> {
        if let Some(alias) = self.aliases.get(requested) {
            if let Some(members) = self.groups.get(&alias.target) {
                return Some(Resolved { group: &alias.target, deployments: members.clone() });
            }
            if let Some(d) = self.deployments.iter().find(|d| d.id == alias.target) {
                return Some(Resolved { group: &d.model_name, deployments: vec![d.index] });
            }
        }
        if let Some((name, members)) = self.groups.get_key_value(requested) {
            return Some(Resolved { group: name, deployments: members.clone() });
        }
        if let Some(d) = self.deployments.iter().find(|d| d.id == requested) {
            return Some(Resolved { group: &d.model_name, deployments: vec![d.index] });
        }
        self.deployments
            .iter()
            .find(|d| d.model == requested)
            .map(|d| Resolved { group: &d.model_name, deployments: vec![d.index] })
    }
}

/// A requested name resolved to a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved<'a> {
    /// The group's `model_name`.
    pub group: &'a str,
    /// Deployment indices eligible for this request.
    pub deployments: Vec<usize>,
}
