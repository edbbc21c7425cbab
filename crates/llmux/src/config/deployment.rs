//! What one `model_list` entry becomes: the deployment the router picks among, and the engine or strategy router
//! it calls.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{origin_of, ErrorClass, Secret};
use crate::providers::{Adapter, EngineSpec};

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
    /// Router retries for requests on this deployment (`litellm_params.num_retries`).
    pub num_retries: Option<u32>,
    /// Cooldown after a failure (`model_info.cooldown_time`, else `litellm_params.cooldown_time`).
    pub cooldown_time: Option<Duration>,
    /// `model_info.allowed_fails`.
    pub allowed_fails: Option<u32>,
    /// `model_info.allowed_fails_policy`.
    pub allowed_fails_policy: Option<HashMap<ErrorClass, u32>>,
    /// Most requests in flight at once (`max_parallel_requests`).
    pub max_parallel_requests: Option<u32>,
    /// Cost per input and output token, for cost-based routing.
    pub cost_per_token: Option<(f64, f64)>,
    /// Context window (`model_info.max_input_tokens`, else `max_tokens`), for pre-call checks.
    pub max_input_tokens: Option<u64>,
    /// Index into `Config::hosts` (strategy routers, which call no engine, have none).
    pub host: Option<usize>,
    /// `model_info.health_check_timeout`.
    pub health_check_timeout: Option<Duration>,
    /// `model_info.access_groups`: names a virtual key's `models` may list to allow this deployment's group.
    pub access_groups: Vec<String>,
    /// `model_info.disable_background_health_check`.
    pub disable_background_health_check: bool,
    /// `health_check_model`: probe this deployment with a real generation (off unless set: it loads the model).
    pub health_check: Option<GenerationProbe>,
    /// `model_info.mode` (`chat`, `completion`, `embedding`, …).
    pub mode: Option<String>,
    /// `model_info` as written (secrets never live there).
    pub model_info: Map<String, Value>,
    /// `litellm_params` as written with secrets removed, for `/model/info`.
    pub public_params: Map<String, Value>,
}

/// A real generation sent to a deployment each health-check interval (LiteLLM's `health_check_model`).
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationProbe {
    /// The engine model asked (the provider prefix of `health_check_model` removed).
    pub model: String,
    /// `health_check_max_tokens`; llmux asks for 1 token when unset.
    pub max_tokens: Option<u64>,
    /// `health_check_params`, merged into the probe's body.
    pub params: Map<String, Value>,
}

/// What a deployment calls.
// One per deployment in a config built once: the engine variant's size costs nothing, a box would cost a hop on
// every request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Target {
    /// An inference engine.
    Engine(EngineTarget),
    /// A strategy router (`auto_router/...`): never called itself, it picks another model name.
    AutoRouter {
        /// The router kind after `auto_router/`, e.g. `complexity_router`.
        kind: String,
        /// The parsed complexity router, for `auto_router/complexity_router`.
        complexity: Option<std::sync::Arc<crate::router::complexity::ComplexityRouter>>,
        /// The parsed semantic router, for any other `auto_router/<name>`.
        semantic: Option<std::sync::Arc<crate::router::semantic::SemanticRouter>>,
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
    /// `user:password` taken out of `api_base` (`http://user:password@host`), sent as `Authorization: Basic`
    /// instead of the bearer key, as LiteLLM's HTTP client (httpx) does; never shown.
    pub basic_auth: Option<Secret>,
    /// `litellm_params.extra_headers`: sent as HTTP headers with every request to the engine (as LiteLLM
    /// does), values marked sensitive; never shown in `/model/info`.
    pub extra_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Ollama `keep_alive`.
    pub keep_alive: Option<Value>,
    /// Other `litellm_params` (engine options such as `num_ctx`, `top_k`), forwarded to the engine.
    pub extra_params: Map<String, Value>,
    /// Its request URIs and headers, built on first use (see [`crate::providers::Wire`]).
    pub wire: crate::providers::Wire,
}

impl EngineTarget {
    /// The adapter that speaks to this engine.
    pub fn adapter(&self) -> Adapter {
        self.engine.adapter
    }
    /// `host:port` of the base URL, for route explanations, response headers and the routing table: never
    /// credentials or a query.
    pub fn host(&self) -> &str {
        let rest = self.api_base.split_once("://").map(|(_, r)| r).unwrap_or(&self.api_base);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        authority.rsplit_once('@').map_or(authority, |(_, host)| host)
    }

    /// `scheme://host:port` of the base URL: the identity of the engine host.
    pub fn origin(&self) -> String {
        origin_of(&self.api_base)
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
