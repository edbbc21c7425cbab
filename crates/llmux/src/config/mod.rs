//! The configuration: LiteLLM's proxy `config.yaml`, read unchanged, validated once into an immutable
//! [`Config`] snapshot.
//!
//! [`load`] reads the file (with `include`s and `os.environ/` references), [`validate`] checks every key
//! and collects every problem with its YAML path, and [`Diagnostics`] carries warnings (keys llmux does not
//! act on yet, misplaced keys) and errors to the caller.

mod diag;
mod load;
mod table;
mod telemetry;
mod validate;
mod wake;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};

pub use diag::{Diagnostic, Diagnostics, Severity};
pub use load::{load, load_str, load_tracked, process_env};
pub use table::routing_table;
pub use telemetry::Telemetry;
pub(crate) use validate::type_name;
pub use wake::{parse_mac, Wake};

use crate::providers::profile::EngineProfile;
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
    /// Deployment index by `model_info.id`.
    pub ids: HashMap<String, usize>,
    /// First deployment index by `litellm_params.model` (LiteLLM accepts it as a model name).
    pub models: HashMap<String, usize>,
    /// Engine hosts, each deployment's `host` indexes this.
    pub hosts: Vec<Host>,
    /// Wildcard `model_name`s (`ollama/*`, `*`), most specific first.
    pub patterns: Vec<Pattern>,
    /// Router behaviour.
    pub router: RouterSettings,
    /// Proxy behaviour.
    pub general: GeneralSettings,
    /// `llmux_settings.images`: fetching remote images for engines that only take inline ones.
    pub images: ImageFetch,
    /// `llmux_settings.ollama_api.require_key` (default true): whether Ollama's routes (`/api/*`) need the
    /// master key. Home Assistant's and Frigate's Ollama clients cannot send one; set it to false for them.
    pub ollama_requires_key: bool,
    /// `llmux_settings.server` and `general_settings.max_response_size_mb`: what one client connection or one
    /// engine answer may cost llmux.
    pub limits: ServerLimits,
    /// `/metrics` and who may read it.
    pub telemetry: Telemetry,
    /// `llmux_settings.warmup`: learn each group's daily pattern and wake and preload ahead of it (read at
    /// start-up).
    pub warmup: bool,
    /// `llmux_settings.groups.<name>.priority`, by group or alias name: the default `priority` of a request for
    /// it in the queue for a free slot (lower first).
    pub priorities: HashMap<String, i64>,
}

/// What a client connection or an engine answer may cost llmux (`llmux_settings.server`, see the README's
/// "Security" section). The defaults are meant to go unnoticed in a home lab and to stop a hostile client or a
/// broken engine from exhausting file descriptors or memory.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerLimits {
    /// `header_read_timeout` seconds (default 30, hyper's and Apache's): from the first byte of a request head to
    /// its end; a slowloris client sending one byte every few seconds is closed then.
    pub header_read_timeout: Duration,
    /// `idle_timeout` seconds (default 120): how long a kept-alive connection may sit between requests. Longer
    /// than the idle timeouts of the pools that reuse connections (nginx's upstream 60 s, Go's and Traefik's
    /// 90 s), so llmux never closes a connection such a pool is about to reuse.
    pub idle_timeout: Duration,
    /// `max_connections`: open client connections; at the cap the oldest idle one is closed for a new one.
    /// `None`: derived from the file-descriptor limit at start-up (see `server::limits`).
    pub max_connections: Option<usize>,
    /// `max_header_kb` (default 64 KiB): the largest request head (HTTP/1.1) or header list (HTTP/2).
    pub max_header_bytes: usize,
    /// `http2_max_concurrent_streams` (default 256): requests one HTTP/2 connection may have open at once.
    pub http2_max_streams: u32,
    /// `general_settings.max_response_size_mb` (LiteLLM's name; default 16 MiB): the largest engine answer
    /// llmux reads whole (answers it converts, error bodies aside, which are cut at a few KiB).
    pub max_answer_bytes: usize,
    /// `max_buffered_mb` (default 256 MiB): engine answers held in memory at once, across all requests; a
    /// request that would go over it gets a 503.
    pub max_buffered_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections: None,
            max_header_bytes: 64 * 1024,
            http2_max_streams: 256,
            max_answer_bytes: 16 * 1024 * 1024,
            max_buffered_bytes: 256 * 1024 * 1024,
        }
    }
}

/// `llmux_settings.images`: how llmux fetches an `http(s)` image URL for an engine that only takes inline
/// images (Ollama's `images` is base64; LiteLLM downloads such URLs too).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFetch {
    /// `allow_private_networks`: fetch from loopback, private, link-local and unique-local addresses too
    /// (off by default: a client could otherwise make llmux read the home network for it).
    pub allow_private: bool,
    /// `max_mb`: the largest image fetched (default 20 MB).
    pub max_bytes: usize,
    /// `timeout` seconds for one image, redirects included (default 10).
    pub timeout: Duration,
}

impl Default for ImageFetch {
    fn default() -> Self {
        ImageFetch { allow_private: false, max_bytes: 20 * 1024 * 1024, timeout: Duration::from_secs(10) }
    }
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
    pub routing_strategy: Strategy,
    /// `num_retries` (default 2, as LiteLLM's code).
    pub num_retries: u32,
    /// `retry_policy`: retries per error class, overriding `num_retries`.
    pub retry_policy: HashMap<ErrorClass, u32>,
    /// `model_group_retry_policy`: per group, overriding `retry_policy`.
    pub model_group_retry_policy: HashMap<String, HashMap<ErrorClass, u32>>,
    /// `allowed_fails` when set explicitly (switches to LiteLLM's counter logic).
    pub allowed_fails: Option<u32>,
    /// `allowed_fails_policy`: allowed failures per error class.
    pub allowed_fails_policy: Option<HashMap<ErrorClass, u32>>,
    /// `cooldown_time` (default 5 s).
    pub cooldown_time: Duration,
    /// `disable_cooldowns`.
    pub disable_cooldowns: bool,
    /// `retry_after`: the least back-off between retries.
    pub retry_after: Duration,
    /// `fallbacks`: requested name → ordered targets.
    pub fallbacks: Vec<(String, Vec<String>)>,
    /// `context_window_fallbacks`.
    pub context_window_fallbacks: Vec<(String, Vec<String>)>,
    /// `content_policy_fallbacks`.
    pub content_policy_fallbacks: Vec<(String, Vec<String>)>,
    /// `default_fallbacks`.
    pub default_fallbacks: Vec<String>,
    /// `max_fallbacks` (default 5).
    pub max_fallbacks: u32,
    /// `enable_pre_call_checks`: drop deployments whose context window the prompt does not fit.
    pub enable_pre_call_checks: bool,
    /// llmux's attempt budget: the most engine calls one client request may cause, across retries, order
    /// escalation and fallbacks (`router_settings.max_attempts`, default 10: LiteLLM's default chain of three tries
    /// on each of two tiers and one fallback group fits, a storm across many fallbacks does not).
    pub max_attempts: u32,
    /// How long a request waits for a free slot when every candidate is at `max_parallel_requests`
    /// (`router_settings.queue_timeout`, llmux's, default 30 s).
    pub queue_timeout: Duration,
    /// While a stream waits for its first byte longer than this, llmux answers 200 and sends SSE comments at
    /// this interval so reverse proxies keep the connection (`router_settings.stream_keepalive`, llmux's,
    /// default 5 s; 0 turns it off).
    pub stream_keepalive: Duration,
    /// Router-wide `timeout`.
    pub timeout: Option<Duration>,
    /// Router-wide `stream_timeout`.
    pub stream_timeout: Option<Duration>,
    /// Prefer, among the surviving candidates, hosts where the model is loaded now (`residency_routing`,
    /// llmux's; default on). Off, routing is residency-blind as LiteLLM's.
    pub residency_routing: bool,
    /// Redis for state shared between replicas (`redis_host`/`redis_port`/`redis_password` or `redis_url`,
    /// else the `REDIS_*` environment variables); `None` keeps state in memory.
    pub redis: Option<RedisSettings>,
}

/// Where replicas share routing state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis_url` (`redis://[user:password@]host:port[/db]`), which wins over the separate keys.
    pub url: Option<Secret>,
    /// `redis_host`.
    pub host: String,
    /// `redis_port` (default 6379).
    pub port: u16,
    /// `redis_password`.
    pub password: Option<Secret>,
    /// `redis_username` (Redis 6 ACL user).
    pub username: Option<String>,
    /// `redis_db` (default 0).
    pub db: i64,
}

impl RedisSettings {
    /// Where it points, without credentials, for logs.
    pub fn display(&self) -> String {
        match &self.url {
            Some(url) => {
                let url = url.expose();
                let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
                let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                format!("{scheme}://{rest}")
            }
            None => format!("redis://{}:{}/{}", self.host, self.port, self.db),
        }
    }
}

/// `routing_strategy` and its arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// Weighted random (`weight`, else `rpm`, else `tpm`), the default.
    SimpleShuffle,
    /// Fewest requests in flight.
    LeastBusy,
    /// Lowest recent latency, with `routing_strategy_args`.
    LatencyBased {
        /// Samples older than this are forgotten (`ttl`, default 1 h).
        ttl: Duration,
        /// Pick among deployments within `(1 + buffer) ×` the lowest (`lowest_latency_buffer`).
        buffer: f64,
        /// Samples kept per deployment (`max_latency_list_size`, default 10).
        max_samples: usize,
    },
    /// Lowest tokens used this minute, skipping deployments over `rpm`/`tpm` (`usage-based-routing-v2`).
    UsageBased,
    /// Cheapest `input_cost_per_token + output_cost_per_token`.
    CostBased,
}

impl Strategy {
    /// LiteLLM's name for the strategy.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::SimpleShuffle => "simple-shuffle",
            Strategy::LeastBusy => "least-busy",
            Strategy::LatencyBased { .. } => "latency-based-routing",
            Strategy::UsageBased => "usage-based-routing-v2",
            Strategy::CostBased => "cost-based-routing",
        }
    }
}

/// The error classes LiteLLM's `retry_policy` and `allowed_fails_policy` are keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// 400.
    BadRequest,
    /// 401 / 403.
    Authentication,
    /// 408 / time-outs.
    Timeout,
    /// 429.
    RateLimit,
    /// A content-policy refusal (400).
    ContentPolicyViolation,
    /// 500 and connection failures.
    InternalServer,
    /// 503.
    ServiceUnavailable,
    /// 502.
    BadGateway,
    /// 404.
    NotFound,
}

impl ErrorClass {
    /// Parses LiteLLM's policy key prefix (`RateLimitError…` → `RateLimit`).
    pub fn from_policy_key(key: &str) -> Option<ErrorClass> {
        let name = key.strip_suffix("Retries").or_else(|| key.strip_suffix("AllowedFails")).unwrap_or(key);
        Some(match name {
            "BadRequestError" => ErrorClass::BadRequest,
            "AuthenticationError" => ErrorClass::Authentication,
            "TimeoutError" | "Timeout" => ErrorClass::Timeout,
            "RateLimitError" => ErrorClass::RateLimit,
            "ContentPolicyViolationError" => ErrorClass::ContentPolicyViolation,
            "InternalServerError" => ErrorClass::InternalServer,
            "ServiceUnavailableError" => ErrorClass::ServiceUnavailable,
            "BadGatewayError" => ErrorClass::BadGateway,
            "NotFoundError" => ErrorClass::NotFound,
            _ => return None,
        })
    }
}

/// `general_settings` and server options.
#[derive(Debug, Clone)]
pub struct GeneralSettings {
    /// `master_key`: when set, every API call needs it.
    pub master_key: Option<Secret>,
    /// `allow_auth_change_on_reload` (llmux's, default false): a reload to this config may drop or change the
    /// master key. Without it such a reload is refused (see [`crate::lifecycle::reload_refusal`]), so a file that
    /// lost its `general_settings` in a bad edit does not open the service to everyone.
    pub allow_auth_change_on_reload: bool,
    /// Largest accepted request body (`max_request_size_mb`, default 32 MiB for image payloads).
    pub max_request_body_bytes: usize,
    /// `background_health_checks` (also read, with a warning, from `litellm_settings`).
    pub background_health_checks: bool,
    /// `health_check_interval` seconds.
    pub health_check_interval: u64,
    /// `enable_health_check_routing`: a probe answered with an HTTP error (or a failed `health_check_model`
    /// generation) takes the deployment out of routing; off by default, as LiteLLM's, when such results are only
    /// reported. A probe that cannot reach the host at all takes it out whatever this says.
    pub health_check_routing: bool,
    /// `health_check_ignore_transient_errors`: a probe answered 429 or 408 counts as healthy.
    pub health_check_ignore_transient_errors: bool,
    /// `health_check_staleness_threshold`: a probe result older than this no longer gates routing (default twice
    /// the interval, so a result lasts until the next probe even when probes are slow).
    pub health_check_staleness: Duration,
    /// `litellm_settings.check_provider_endpoint`: `/v1/models` expands wildcard groups from each engine's own
    /// model list instead of listing the pattern.
    pub check_provider_endpoint: bool,
    /// `database_url` (or `DATABASE_URL`): virtual keys and spend in this PostgreSQL instead of the embedded
    /// SQLite file under `--data-dir`.
    pub database_url: Option<Secret>,
    /// `disable_spend_logs`: no spend-log row per request (key spend is still counted).
    pub disable_spend_logs: bool,
    /// `maximum_spend_logs_retention_period` (`"30d"`, `"12h"`, seconds): older spend-log rows are deleted.
    pub spend_logs_retention: Option<Duration>,
    /// `proxy_batch_write_at` seconds (default 10, LiteLLM's): how often spend is written.
    pub spend_batch_every: Duration,
}

/// A wildcard `model_name`, matched as LiteLLM does: each `*` captures any text, anchored at the start only.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The `model_name`, e.g. `ollama/*`.
    pub group: String,
    regex: regex::Regex,
}

impl Pattern {
    /// The pattern of `model_name`, when it has a `*`.
    pub fn new(model_name: &str) -> Option<Pattern> {
        if !model_name.contains('*') {
            return None;
        }
        let source = format!("^{}", regex::escape(model_name).replace(r"\*", "(.*)"));
        let regex = regex::Regex::new(&source).ok()?;
        Some(Pattern { group: model_name.to_owned(), regex })
    }

    /// The texts the `*`s stand for in `name`, when it matches.
    pub fn captures<'n>(&self, name: &'n str) -> Option<Vec<&'n str>> {
        let caps = self.regex.captures(name)?;
        Some(caps.iter().skip(1).map(|m| m.map_or("", |m| m.as_str())).collect())
    }

    /// `template` (e.g. the deployment's `ollama/*`) with each `*` replaced by what it captured in `name`; the
    /// name itself when the counts differ, as LiteLLM.
    pub fn expand(&self, template: &str, name: &str) -> Option<String> {
        let caps = self.captures(name)?;
        if template.matches('*').count() != caps.len() {
            return Some(name.to_owned());
        }
        let mut out = String::with_capacity(template.len() + name.len());
        let mut caps = caps.into_iter();
        for (i, part) in template.split('*').enumerate() {
            if i > 0 {
                out.push_str(caps.next().unwrap_or(""));
            }
            out.push_str(part);
        }
        Some(out)
    }
}

/// One engine host (scheme + authority of the deployments' `api_base`): probed once for all its deployments,
/// and marked down for all of them when a connection to it fails.
#[derive(Debug, Clone)]
pub struct Host {
    /// `scheme://host:port`.
    pub origin: String,
    /// The engine its deployments name (the one probed the most thoroughly, when they name several): how it is
    /// probed, whether it tells what is loaded, whether it preloads.
    pub profile: &'static EngineProfile,
    /// The `api_base` probes use (an Ollama deployment's, else the first probed OpenAI-compatible one's); `None`
    /// when no deployment on the host has a model list llmux reads.
    pub probe_base: Option<String>,
    /// The key sent with probes (the first deployment's).
    pub api_key: Option<Secret>,
    /// The first deployment's `user:password` from its `api_base`, sent with probes as basic auth.
    pub basic_auth: Option<Secret>,
    /// Probe timeout (`model_info.health_check_timeout`, the largest on the host; default 10 s).
    pub probe_timeout: Duration,
    /// Every deployment was opted out with `disable_background_health_check`.
    pub probe_disabled: bool,
    /// The deployments on this host.
    pub deployments: Vec<usize>,
    /// What the owner declared about the host's memory (`llmux_settings.hosts`).
    pub limits: HostLimits,
    /// How to wake it when it sleeps (`llmux_settings.hosts.<api_base>.wake`).
    pub wake: Option<Wake>,
}

impl Host {
    /// The `Authorization` value probes send (marked sensitive): basic auth from the `api_base`, else the key as
    /// a bearer token, as requests to the engine do.
    pub fn authorization(&self) -> Option<http::HeaderValue> {
        let text = match (&self.basic_auth, &self.api_key) {
            (Some(user), _) => {
                use base64::Engine as _;
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user.expose()))
            }
            (None, Some(key)) => format!("Bearer {}", key.expose()),
            (None, None) => return None,
        };
        let mut value = http::HeaderValue::from_str(&text).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// `llmux_settings.hosts.<api_base>`: how many models the host holds at once, and which must stay loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostLimits {
    /// Bytes of memory for models (`memory_budget: 84GB`).
    pub memory_budget: Option<u64>,
    /// Models loaded at once (Ollama's `OLLAMA_MAX_LOADED_MODELS`).
    pub max_loaded_models: Option<u32>,
    /// Engine model names that must not be evicted (`pinned: [qwen3:8b]`); preloaded at start-up on Ollama.
    pub pinned: Vec<String>,
}

/// Splits `user:password@` off a URL: the URL without it, and the credentials percent-decoded (`None` when the
/// URL has none). llmux sends them as basic auth, as LiteLLM's HTTP client does, and never prints them.
pub fn split_credentials(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else { return (url.to_owned(), None) };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else { return (url.to_owned(), None) };
    let decoded = percent_encoding::percent_decode_str(userinfo).decode_utf8_lossy().into_owned();
    (format!("{scheme}://{host}{tail}"), Some(decoded))
}

/// `scheme://host:port` of a URL, lower-cased, as [`EngineTarget::origin`] writes it.
/// Credentials and the query are not part of it.
pub fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    format!("{}://{}", scheme.to_ascii_lowercase(), authority.to_ascii_lowercase())
}

impl Config {
    /// Resolves a requested name to its group's deployment indices: an alias (one hop), a group name, a
    /// deployment id, or a deployment's `litellm_params.model`, in LiteLLM's order. Hash lookups only: the cost
    /// does not grow with the number of deployments.
    pub fn resolve(&self, requested: &str) -> Option<Resolved<'_>> {
        let by_name = |name: &str| {
            if let Some((group, members)) = self.groups.get_key_value(name) {
                return Some(Resolved { group, deployments: members });
            }
            let d = &self.deployments[*self.ids.get(name)?];
            Some(Resolved { group: &d.model_name, deployments: std::slice::from_ref(&d.index) })
        };
        let by_pattern = |name: &str| {
            let pattern = self.patterns.iter().find(|p| p.regex.is_match(name))?;
            let (group, members) = self.groups.get_key_value(&pattern.group)?;
            Some(Resolved { group, deployments: members })
        };
        if let Some(alias) = self.aliases.get(requested) {
            if let Some(found) = by_name(&alias.target).or_else(|| by_pattern(&alias.target)) {
                return Some(found);
            }
        }
        by_name(requested)
            .or_else(|| {
                let d = &self.deployments[*self.models.get(requested)?];
                Some(Resolved { group: &d.model_name, deployments: std::slice::from_ref(&d.index) })
            })
            .or_else(|| by_pattern(requested))
    }

    /// The model name engine `d` is asked for when a client requested `requested`: the configured one, or for a
    /// wildcard deployment (`model_name: ollama/*`, `model: ollama/*`) the configured one with each `*` filled in
    /// from the requested name (`ollama/qwen3:8b` → `qwen3:8b`). `None` when `d` is a wildcard deployment and
    /// `requested` does not match its pattern (it was asked for by id).
    pub fn engine_model<'c>(&'c self, d: &'c Deployment, requested: &str) -> Option<std::borrow::Cow<'c, str>> {
        let engine = d.engine()?;
        if !engine.upstream_model.contains('*') {
            return Some(std::borrow::Cow::Borrowed(&engine.upstream_model));
        }
        let name = self.aliases.get(requested).map_or(requested, |a| a.target.as_str());
        let pattern = self.patterns.iter().find(|p| p.group == d.model_name)?;
        // `ollama/` against `ollama/*` fills in nothing: no engine has a model without a name.
        pattern.expand(&engine.upstream_model, name).filter(|m| !m.trim().is_empty()).map(std::borrow::Cow::Owned)
    }
}

/// A requested name resolved to a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved<'a> {
    /// The group's `model_name`.
    pub group: &'a str,
    /// Deployment indices eligible for this request.
    pub deployments: &'a [usize],
}

#[cfg(test)]
mod tests {
    use super::{origin_of, split_credentials, Pattern};

    #[test]
    fn credentials_come_out_of_urls_and_never_into_hosts() {
        assert_eq!(
            split_credentials("http://me:p%40ss@gpu:11434/v1?x=1"),
            ("http://gpu:11434/v1?x=1".to_owned(), Some("me:p@ss".to_owned()))
        );
        assert_eq!(split_credentials("http://gpu:11434/a@b"), ("http://gpu:11434/a@b".to_owned(), None));
        assert_eq!(origin_of("http://me:pw@GPU:1?api-key=k"), "http://gpu:1");
    }

    #[test]
    fn patterns_match_from_the_start_and_fill_stars_in_order() {
        let p = Pattern::new("local/*/v*").unwrap();
        assert_eq!(p.captures("local/qwen/v2"), Some(vec!["qwen", "2"]));
        assert_eq!(p.captures("x/local/qwen/v2"), None, "anchored at the start");
        assert_eq!(p.expand("ollama_chat/*:*", "local/qwen/v2").as_deref(), Some("ollama_chat/qwen:2"));
        assert_eq!(p.expand("*", "local/qwen/v2").as_deref(), Some("local/qwen/v2"), "counts differ: the name");
        assert_eq!(Pattern::new("*").unwrap().expand("*", "anything/at:all").as_deref(), Some("anything/at:all"));
        assert!(Pattern::new("plain").is_none());
        let dots = Pattern::new("a.b/*").unwrap();
        assert!(dots.captures("axb/c").is_none(), "regex metacharacters are literal");
    }
}
