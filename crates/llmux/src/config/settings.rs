//! The settings sections, validated: `router_settings` (with the `litellm_settings` keys LiteLLM feeds into the
//! router), `general_settings`, and the parts of `llmux_settings` that are plain values.

use std::collections::HashMap;
use std::time::Duration;

use super::{defaults, Secret};

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
            header_read_timeout: defaults::HEADER_READ_TIMEOUT,
            idle_timeout: defaults::IDLE_TIMEOUT,
            max_connections: None,
            max_header_bytes: defaults::MAX_HEADER_BYTES,
            http2_max_streams: defaults::HTTP2_MAX_STREAMS,
            max_answer_bytes: defaults::MAX_ANSWER_BYTES,
            max_buffered_bytes: defaults::MAX_BUFFERED_BYTES,
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
        ImageFetch { allow_private: false, max_bytes: defaults::IMAGE_MAX_BYTES, timeout: defaults::IMAGE_TIMEOUT }
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
