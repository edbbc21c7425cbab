//! `router_settings` (and the `litellm_settings` keys LiteLLM feeds into the router): strategy, retries,
//! cooldowns, fallbacks, aliases, the attempt budget, and Redis for state shared between replicas.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::config::reader::{clamp_u32, get_bool, get_num, get_str, get_uint, mapping, must_be, seconds};
use crate::config::{defaults, Alias, Diagnostics, ErrorClass, RedisSettings, RouterSettings, Secret, Strategy};

/// The `router_settings` keys llmux acts on; the rest are reported as not acted on (or as misplaced).
const ROUTER_ACTED_ON: &[&str] = &[
    "routing_strategy",
    "routing_strategy_args",
    "model_group_alias",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "default_fallbacks",
    "num_retries",
    "retry_policy",
    "model_group_retry_policy",
    "allowed_fails",
    "allowed_fails_policy",
    "cooldown_time",
    "disable_cooldowns",
    "retry_after",
    "max_fallbacks",
    "enable_pre_call_checks",
    "max_attempts",
    "default_max_parallel_requests",
    "queue_timeout",
    "stream_keepalive",
    "residency_routing",
    "enable_health_check_routing",
    "health_check_ignore_transient_errors",
    "health_check_staleness_threshold",
    "timeout",
    "stream_timeout",
    "redis_host",
    "redis_port",
    "redis_password",
    "redis_url",
    "redis_username",
    "redis_db",
];

/// A `retry_policy` / `allowed_fails_policy` mapping: `<Class>Error<suffix>: count`.
pub(super) fn policy(
    value: &Value,
    path: &str,
    suffix: &str,
    diags: &mut Diagnostics,
) -> Option<HashMap<ErrorClass, u32>> {
    let map = match value {
        Value::Null => return None,
        Value::Object(m) => m,
        other => {
            diags.error(path, must_be(&format!("a mapping like {{RateLimitError{suffix}: 3}}"), other));
            return None;
        }
    };
    let mut out = HashMap::new();
    for (key, _) in map {
        let at = format!("{path}.{key}");
        if key == "DefaultRetries" && suffix == "Retries" {
            continue;
        }
        let class = key.strip_suffix(suffix).and_then(ErrorClass::from_policy_key);
        match (class, get_uint(map, key, path, diags)) {
            (Some(class), Some(n)) => {
                out.insert(class, clamp_u32(n));
            }
            (None, _) => diags.error(&at, format!("unknown error class; expected e.g. RateLimitError{suffix}, TimeoutError{suffix}, InternalServerError{suffix}")),
            (Some(_), None) => {}
        }
    }
    Some(out)
}

/// `model_group_alias`: alias → group (or `{model, hidden}`), in file order; every target must exist.
pub(crate) fn aliases(
    value: Option<&Value>,
    known: &dyn Fn(&str) -> bool,
    diags: &mut Diagnostics,
) -> (HashMap<String, Alias>, Vec<String>) {
    let mut out = HashMap::new();
    let mut order = Vec::new();
    let map = match value {
        None | Some(Value::Null) => return (out, order),
        Some(Value::Object(m)) => m,
        Some(other) => {
            diags.error("router_settings.model_group_alias", must_be("a mapping of alias: group", other));
            return (out, order);
        }
    };
    for (alias, target) in map {
        let path = format!("router_settings.model_group_alias.{alias}");
        let (target, hidden) = match target {
            Value::String(s) => (s.clone(), false),
            Value::Object(m) => match m.get("model") {
                Some(Value::String(s)) => {
                    let hidden = get_bool(m, "hidden", &path, diags).unwrap_or(false);
                    (s.clone(), hidden)
                }
                _ => {
                    diags.error(&path, "must be a group name or {model: <group>, hidden: <bool>}");
                    continue;
                }
            },
            other => {
                diags.error(&path, must_be("a group name", other));
                continue;
            }
        };
        if !known(&target) {
            diags.error(&path, format!("alias points to {target:?}, which is not a model_name in model_list"));
            continue;
        }
        order.push(alias.clone());
        out.insert(alias.clone(), Alias { target, hidden });
    }
    (out, order)
}

/// A list of model names, each a group or alias.
fn name_list(value: &Value, path: &str, is_name: &dyn Fn(&str) -> bool, diags: &mut Diagnostics) -> Vec<String> {
    let Some(items) = value.as_array() else {
        let hint = if value.is_string() { format!(" (write [{value}])") } else { String::new() };
        diags.error(path, format!("must be a list of model names{hint}"));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.as_str() {
            Some(name) if is_name(name) => out.push(name.to_owned()),
            Some(name) => diags.error(format!("{path}[{i}]"), format!("{name:?} is not a model_name or alias")),
            None => diags.error(format!("{path}[{i}]"), "must be a model name (string)"),
        }
    }
    out
}

/// A fallback list: `[{group: [fallback, …]}, …]`.
fn fallbacks(
    value: &Value,
    path: &str,
    is_name: &dyn Fn(&str) -> bool,
    diags: &mut Diagnostics,
) -> Vec<(String, Vec<String>)> {
    let Some(items) = value.as_array() else {
        diags.error(path, "must be a list like [{\"group\": [\"fallback\"]}]");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        match item.as_object() {
            Some(map) if map.len() == 1 => {
                for (key, targets) in map {
                    if key != "*" && !is_name(key) {
                        diags
                            .warn(format!("{at}.{key}"), "no model_name or alias has this name; the entry never fires");
                    }
                    out.push((key.clone(), name_list(targets, &format!("{at}.{key}"), is_name, diags)));
                }
            }
            _ => diags.error(&at, "each entry must be a mapping with exactly one key: {\"group\": [\"fallback\", …]}"),
        }
    }
    out
}

/// `router_settings`, with the keys LiteLLM also takes from `litellm_settings` (the router's win).
pub(crate) fn router_settings(
    router: &Map<String, Value>,
    litellm: &Map<String, Value>,
    is_name: &dyn Fn(&str) -> bool,
    diags: &mut Diagnostics,
) -> RouterSettings {
    const R: &str = "router_settings";
    const L: &str = "litellm_settings";
    for key in router.keys() {
        match key.as_str() {
            k if ROUTER_ACTED_ON.contains(&k) => {}
            "health_check_interval" | "health_check_concurrency" => diags.warn(
                format!("{R}.{key}"),
                "belongs in general_settings (LiteLLM refuses to start with it here); llmux honours it",
            ),
            _ => diags.warn(format!("{R}.{key}"), "not acted on by llmux yet; ignored"),
        }
    }
    let routing_strategy = strategy(router, diags);
    let num_retries = get_uint(router, "num_retries", R, diags)
        .or_else(|| get_uint(litellm, "num_retries", L, diags))
        .unwrap_or(defaults::NUM_RETRIES);
    let lists = |key: &str, diags: &mut Diagnostics| {
        let mut out = Vec::new();
        if let Some(v) = litellm.get(key).filter(|v| !v.is_null()) {
            out = fallbacks(v, &format!("{L}.{key}"), is_name, diags);
        }
        if let Some(v) = router.get(key).filter(|v| !v.is_null()) {
            out = fallbacks(v, &format!("{R}.{key}"), is_name, diags);
        }
        out
    };
    let fb = lists("fallbacks", diags);
    let context_window_fallbacks = lists("context_window_fallbacks", diags);
    let content_policy_fallbacks = lists("content_policy_fallbacks", diags);
    let default_fallbacks = match (router.get("default_fallbacks"), litellm.get("default_fallbacks")) {
        (Some(v), _) if !v.is_null() => name_list(v, &format!("{R}.default_fallbacks"), is_name, diags),
        (_, Some(v)) if !v.is_null() => name_list(v, &format!("{L}.default_fallbacks"), is_name, diags),
        _ => Vec::new(),
    };
    let max_fallbacks = get_uint(router, "max_fallbacks", R, diags).unwrap_or(defaults::MAX_FALLBACKS);
    let retry_policy = router
        .get("retry_policy")
        .and_then(|v| policy(v, &format!("{R}.retry_policy"), "Retries", diags))
        .unwrap_or_default();
    let mut model_group_retry_policy = HashMap::new();
    match router.get("model_group_retry_policy") {
        None | Some(Value::Null) => {}
        Some(Value::Object(groups)) => {
            for (group, v) in groups {
                let at = format!("{R}.model_group_retry_policy.{group}");
                if !is_name(group) {
                    diags.warn(&at, "no model_name or alias has this name; the policy never applies");
                }
                if let Some(p) = policy(v, &at, "Retries", diags) {
                    model_group_retry_policy.insert(group.clone(), p);
                }
            }
        }
        Some(other) => {
            diags.error(format!("{R}.model_group_retry_policy"), must_be("a mapping of group: retry_policy", other))
        }
    }
    let max_attempts = match get_uint(router, "max_attempts", R, diags) {
        Some(0) => {
            diags.error(format!("{R}.max_attempts"), "must be 1 or more");
            1
        }
        Some(n) => clamp_u32(n),
        None => defaults::MAX_ATTEMPTS,
    };
    RouterSettings {
        routing_strategy,
        num_retries: clamp_u32(num_retries),
        retry_policy,
        model_group_retry_policy,
        allowed_fails: get_uint(router, "allowed_fails", R, diags)
            .or_else(|| get_uint(litellm, "allowed_fails", L, diags))
            .map(clamp_u32),
        allowed_fails_policy: router
            .get("allowed_fails_policy")
            .and_then(|v| policy(v, &format!("{R}.allowed_fails_policy"), "AllowedFails", diags)),
        cooldown_time: get_num(router, "cooldown_time", R, diags).map_or(defaults::COOLDOWN_TIME, seconds),
        disable_cooldowns: get_bool(router, "disable_cooldowns", R, diags).unwrap_or(false),
        retry_after: get_num(router, "retry_after", R, diags).map_or(defaults::RETRY_AFTER, seconds),
        fallbacks: fb,
        context_window_fallbacks,
        content_policy_fallbacks,
        default_fallbacks,
        max_fallbacks: clamp_u32(max_fallbacks),
        enable_pre_call_checks: get_bool(router, "enable_pre_call_checks", R, diags).unwrap_or(false),
        max_attempts,
        queue_timeout: get_num(router, "queue_timeout", R, diags).map_or(defaults::QUEUE_TIMEOUT, seconds),
        stream_keepalive: get_num(router, "stream_keepalive", R, diags).map_or(defaults::STREAM_KEEPALIVE, seconds),
        residency_routing: get_bool(router, "residency_routing", R, diags).unwrap_or(defaults::RESIDENCY_ROUTING),
        timeout: get_num(router, "timeout", R, diags)
            .or_else(|| get_num(litellm, "request_timeout", L, diags))
            .map(seconds),
        stream_timeout: get_num(router, "stream_timeout", R, diags).map(seconds),
        redis: None,
    }
}

/// LiteLLM's rule: router state goes to Redis when `redis_url`, or `redis_host` and `redis_port`, are set. Each key
/// falls back to its `REDIS_*` environment variable, as LiteLLM's Redis client does; the port defaults to 6379
/// when only the host comes from the environment.
pub(crate) fn redis_settings(
    router: &Map<String, Value>,
    diags: &mut Diagnostics,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<RedisSettings> {
    const R: &str = "router_settings";
    let setting = |key: &str, var: &str, diags: &mut Diagnostics| {
        get_str(router, key, R, diags).or_else(|| env(var)).filter(|v| !v.trim().is_empty())
    };
    let url = setting("redis_url", "REDIS_URL", diags);
    let host = setting("redis_host", "REDIS_HOST", diags);
    let port = setting("redis_port", "REDIS_PORT", diags);
    let password = setting("redis_password", "REDIS_PASSWORD", diags);
    let username = setting("redis_username", "REDIS_USERNAME", diags);
    let db = match setting("redis_db", "REDIS_DB", diags) {
        None => defaults::REDIS_DB,
        Some(v) => v.trim().parse::<i64>().unwrap_or_else(|_| {
            diags.error(format!("{R}.redis_db"), format!("must be a database number, found {v:?}"));
            defaults::REDIS_DB
        }),
    };
    if let Some(url) = &url {
        if url.starts_with("rediss://") {
            diags.error(format!("{R}.redis_url"), "rediss:// (Redis over TLS) is not supported by llmux yet");
            return None;
        }
        if !url.starts_with("redis://") && !url.starts_with("unix://") {
            diags.error(format!("{R}.redis_url"), "must start with redis:// or unix://");
            return None;
        }
    }
    let port = match port {
        None => defaults::REDIS_PORT,
        Some(p) => p.trim().parse::<u16>().unwrap_or_else(|_| {
            diags.error(format!("{R}.redis_port"), format!("must be a port number, found {p:?}"));
            defaults::REDIS_PORT
        }),
    };
    if url.is_none() && host.is_none() {
        if router.contains_key("redis_port") || router.contains_key("redis_password") {
            diags.warn(format!("{R}.redis_host"), "not set: without it (or redis_url) state stays in memory");
        }
        return None;
    }
    Some(RedisSettings {
        url: url.map(Secret::new),
        host: host.unwrap_or_default(),
        port,
        password: password.map(Secret::new),
        username,
        db,
    })
}

/// `routing_strategy` with its `routing_strategy_args`.
fn strategy(router: &Map<String, Value>, diags: &mut Diagnostics) -> Strategy {
    const R: &str = "router_settings";
    let name = get_str(router, "routing_strategy", R, diags).unwrap_or_else(|| defaults::ROUTING_STRATEGY.to_owned());
    let empty = Map::new();
    let args_path = format!("{R}.routing_strategy_args");
    let args = mapping(router, "routing_strategy_args", R, diags).unwrap_or(&empty);
    match name.as_str() {
        "simple-shuffle" => Strategy::SimpleShuffle,
        "least-busy" => Strategy::LeastBusy,
        "latency-based-routing" => Strategy::LatencyBased {
            ttl: get_num(args, "ttl", &args_path, diags).map_or(defaults::LATENCY_TTL, seconds),
            buffer: get_num(args, "lowest_latency_buffer", &args_path, diags).unwrap_or(defaults::LATENCY_BUFFER),
            max_samples: get_uint(args, "max_latency_list_size", &args_path, diags)
                .map_or(defaults::LATENCY_SAMPLES, |n| usize::try_from(n.max(1)).unwrap_or(defaults::LATENCY_SAMPLES)),
        },
        "usage-based-routing-v2" | "usage-based-routing" => Strategy::UsageBased,
        "cost-based-routing" => Strategy::CostBased,
        other => {
            diags.error(
                format!("{R}.routing_strategy"),
                format!("unknown strategy {other:?}; use simple-shuffle, least-busy, latency-based-routing, usage-based-routing-v2 or cost-based-routing"),
            );
            Strategy::SimpleShuffle
        }
    }
}
