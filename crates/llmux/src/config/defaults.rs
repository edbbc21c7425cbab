//! Every default a config key takes when the file does not set it, in one place, each with where it comes from:
//! LiteLLM's own default where llmux reads a LiteLLM key, llmux's reasoning where the key is llmux's.
//! (The complexity router's defaults are LiteLLM's tables in `router::complexity::defaults`; wake-on-LAN's are in
//! `sections::wake`.)

use std::time::Duration;

// ---- router_settings ----------------------------------------------------------------------------------------

/// `routing_strategy`: LiteLLM's default.
pub const ROUTING_STRATEGY: &str = "simple-shuffle";
/// `num_retries`: LiteLLM's `DEFAULT_MAX_RETRIES` (litellm/constants.py).
pub const NUM_RETRIES: u64 = 2;
/// `max_fallbacks`: LiteLLM's `ROUTER_MAX_FALLBACKS` (litellm/constants.py).
pub const MAX_FALLBACKS: u64 = 5;
/// `cooldown_time`: LiteLLM's `DEFAULT_COOLDOWN_TIME_SECONDS` (litellm/constants.py).
pub const COOLDOWN_TIME: Duration = Duration::from_secs(5);
/// `retry_after`: LiteLLM's default, no least back-off between retries.
pub const RETRY_AFTER: Duration = Duration::ZERO;
/// `max_attempts` (llmux's): LiteLLM's default chain of three tries on each of two tiers and one fallback group
/// fits, a storm across many fallbacks does not.
pub const MAX_ATTEMPTS: u32 = 10;
/// `queue_timeout` (llmux's): how long a request waits for a free `max_parallel_requests` slot.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);
/// `stream_keepalive` (llmux's): shorter than the idle timeouts of common reverse proxies (nginx's 60 s).
pub const STREAM_KEEPALIVE: Duration = Duration::from_secs(5);
/// `residency_routing` (llmux's): on, so a loaded model is preferred over one that must be loaded first.
pub const RESIDENCY_ROUTING: bool = true;
/// `routing_strategy_args.ttl` for latency-based routing: LiteLLM's lowest-latency `RoutingArgs`, 1 h.
pub const LATENCY_TTL: Duration = Duration::from_secs(3600);
/// `routing_strategy_args.lowest_latency_buffer`: LiteLLM's `RoutingArgs`, only the fastest deployment.
pub const LATENCY_BUFFER: f64 = 0.0;
/// `routing_strategy_args.max_latency_list_size`: LiteLLM's `RoutingArgs`.
pub const LATENCY_SAMPLES: usize = 10;
/// `redis_port`: Redis's own port, as LiteLLM's Redis client defaults it.
pub const REDIS_PORT: u16 = 6379;
/// `redis_db`: Redis's first database.
pub const REDIS_DB: i64 = 0;

// ---- general_settings ---------------------------------------------------------------------------------------

/// `max_request_size_mb` (LiteLLM has no limit by default): room for image payloads.
pub const MAX_REQUEST_SIZE_MB: f64 = 32.0;
/// `health_check_interval` seconds: LiteLLM proxy's default.
pub const HEALTH_CHECK_INTERVAL: u64 = 300;
/// `health_check_staleness_threshold` is this many intervals when unset, so a result lasts until the next probe
/// even when probes are slow.
pub const STALENESS_INTERVALS: u64 = 2;
/// `proxy_batch_write_at`: LiteLLM's default, how often spend is written.
pub const SPEND_BATCH_EVERY: Duration = Duration::from_secs(10);

// ---- model_list ---------------------------------------------------------------------------------------------

/// A host's probe timeout when no deployment on it sets `model_info.health_check_timeout`.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// The `keep_alive` a pinned model gets when its deployment sets none: Ollama's "for ever" (without it Ollama
/// unloads a model after 5 idle minutes).
pub const PINNED_KEEP_ALIVE: i64 = -1;

// ---- llmux_settings -----------------------------------------------------------------------------------------

/// `ollama_api.require_key`: Ollama's routes need the master key like every other route.
pub const OLLAMA_REQUIRES_KEY: bool = true;
/// `warmup`: off, learning a daily pattern is opt-in.
pub const WARMUP: bool = false;
/// `images.max_mb`: the largest image fetched for an engine that only takes inline images.
pub const IMAGE_MAX_BYTES: usize = 20 * 1024 * 1024;
/// `images.timeout`: for one image, redirects included.
pub const IMAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// `server.header_read_timeout`: hyper's and Apache's; a slowloris client is closed then.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// `server.idle_timeout`: longer than the idle timeouts of the pools that reuse connections (nginx's upstream
/// 60 s, Go's and Traefik's 90 s), so llmux never closes a connection such a pool is about to reuse.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// `server.max_header_kb`: the largest request head (HTTP/1.1) or header list (HTTP/2).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// The least `server.max_header_kb` is raised to: hyper needs room for at least one 8 KiB read.
pub const MIN_HEADER_BYTES: usize = 8 * 1024;
/// `server.http2_max_concurrent_streams`: requests one HTTP/2 connection may have open at once.
pub const HTTP2_MAX_STREAMS: u32 = 256;
/// `general_settings.max_response_size_mb` (LiteLLM's name): the largest engine answer llmux reads whole.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// `server.max_buffered_mb`: engine answers held in memory at once, across all requests.
pub const MAX_BUFFERED_BYTES: usize = 256 * 1024 * 1024;
