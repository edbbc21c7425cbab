//! Turns the resolved JSON tree into a [`Config`], collecting every problem with its YAML path.
//!
//! Each section lists the keys llmux acts on; keys LiteLLM knows but llmux does not act on yet are reported as
//! warnings (never silently ignored), and keys LiteLLM reads from another section are honoured where they are
//! and pointed out.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{
    Alias, Config, Deployment, Diagnostics, EngineTarget, ErrorClass, GeneralSettings, GenerationProbe, Host,
    HostLimits, ImageFetch, Pattern, RedisSettings, RouterSettings, Secret, ServerLimits, Strategy, Target,
};
use crate::providers;

const TOP_LEVEL: &[&str] = &[
    "model_list",
    "litellm_settings",
    "router_settings",
    "general_settings",
    "environment_variables",
    "llmux_settings",
];

/// `litellm_params` keys llmux reads itself; everything not here and not in [`PARAMS_NOT_FORWARDED`] is an engine
/// option forwarded with each request.
const PARAMS_ACTED_ON: &[&str] = &[
    "model",
    "api_base",
    "base_url",
    "api_key",
    "order",
    "weight",
    "rpm",
    "tpm",
    "timeout",
    "stream_timeout",
    "keep_alive",
    "custom_llm_provider",
    "extra_headers",
    "api_version",
    "azure_ad_token",
];

/// `litellm_params` keys the router acts on: never forwarded to an engine.
const PARAMS_ROUTER: &[&str] = &[
    "num_retries",
    "cooldown_time",
    "max_parallel_requests",
    "input_cost_per_token",
    "output_cost_per_token",
    "health_check_model",
    "health_check_max_tokens",
    "health_check_params",
];

/// `litellm_params` keys that LiteLLM's router interprets (so they must not reach an engine) but llmux does not act
/// on yet.
const PARAMS_NOT_FORWARDED: &[&str] = &[
    "max_retries",
    "input_cost_per_second",
    "output_cost_per_second",
    "tags",
    "region_name",
    "mock_response",
    "use_in_pass_through",
    "merge_reasoning_content_in_choices",
    "organization",
    "auto_router_config_path",
    "auto_router_config",
    "auto_router_default_model",
    "auto_router_embedding_model",
    "health_check_timeout",
];

/// `model_info` keys that change behaviour in LiteLLM but not yet in llmux.
const MODEL_INFO_NOT_ACTED_ON: &[&str] = &["blocked"];

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

const LITELLM_ACTED_ON: &[&str] = &[
    "default_fallbacks",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "num_retries",
    "request_timeout",
    "allowed_fails",
];

const GENERAL_ACTED_ON: &[&str] = &[
    "master_key",
    "allow_auth_change_on_reload",
    "max_request_size_mb",
    "max_response_size_mb",
    "background_health_checks",
    "health_check_interval",
    "enable_health_check_routing",
    "health_check_ignore_transient_errors",
    "health_check_staleness_threshold",
    "database_url",
    "disable_spend_logs",
    "maximum_spend_logs_retention_period",
    "proxy_batch_write_at",
    "require_auth_for_metrics_endpoint",
];

pub(super) fn validate(
    tree: &Map<String, Value>,
    diags: &mut Diagnostics,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Config> {
    for key in tree.keys() {
        if !TOP_LEVEL.contains(&key.as_str()) {
            diags.warn(key, "section not supported by llmux yet; ignored");
        }
    }
    let empty = Map::new();
    let litellm = section(tree, "litellm_settings", diags).unwrap_or(&empty);
    let router_map = section(tree, "router_settings", diags).unwrap_or(&empty);
    let general_map = section(tree, "general_settings", diags).unwrap_or(&empty);

    let mut deployments = model_list(tree.get("model_list"), diags, env);
    if let Some(n) = get_uint(router_map, "default_max_parallel_requests", "router_settings", diags) {
        for d in deployments.iter_mut().filter(|d| d.max_parallel_requests.is_none()) {
            d.max_parallel_requests = Some(clamp_u32(n.max(1)));
        }
    }
    let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
    let mut group_order = Vec::new();
    for d in &deployments {
        let members = groups.entry(d.model_name.clone()).or_default();
        if members.is_empty() {
            group_order.push(d.model_name.clone());
        }
        members.push(d.index);
    }
    let ids: std::collections::HashSet<String> = deployments.iter().map(|d| d.id.clone()).collect();
    let known = |name: &str| groups.contains_key(name) || ids.contains(name);

    let (aliases, alias_order) = aliases(router_map.get("model_group_alias"), &known, diags);
    let is_name = |name: &str| known(name) || aliases.contains_key(name);
    complexity_routers(&mut deployments, &is_name, diags);
    let mut router = router_settings(router_map, litellm, &is_name, diags);
    router.redis = redis_settings(router_map, diags, env);
    let general = general_settings(general_map, litellm, router_map, diags, env);
    litellm_warnings(litellm, diags);
    let telemetry = super::telemetry::telemetry(litellm, general_map, tree.get("llmux_settings"), diags);

    let mut hosts = hosts(&mut deployments);
    host_limits(tree.get("llmux_settings"), &mut hosts, &deployments, &is_name, diags);
    let GroupSettings { keep_alive: group_keep_alive, priority: priorities } =
        group_settings(tree.get("llmux_settings"), &|g| groups.contains_key(g), &|a| aliases.contains_key(a), diags);
    let images = image_fetch(tree.get("llmux_settings"), diags);
    let ollama_requires_key = ollama_requires_key(tree.get("llmux_settings"), diags);
    let limits = server_limits(tree.get("llmux_settings"), general_map, diags);
    let warmup = match tree.get("llmux_settings") {
        Some(Value::Object(s)) => get_bool(s, "warmup", "llmux_settings", diags).unwrap_or(false),
        _ => false,
    };
    // A pinned model stays loaded: Ollama would unload it after its default 5 minutes idle.
    for host in &hosts {
        for &i in &host.deployments {
            let d = &mut deployments[i];
            if let Target::Engine(engine) = &mut d.target {
                let pinned = host.limits.pinned.iter().any(|p| crate::state::same_model(p, &engine.upstream_model));
                if pinned && engine.keep_alive.is_none() {
                    engine.keep_alive = Some(Value::from(-1));
                }
                if engine.keep_alive.is_none() {
                    engine.keep_alive = group_keep_alive.get(&d.model_name).cloned();
                }
            }
        }
    }
    let mut patterns: Vec<Pattern> = group_order.iter().filter_map(|g| Pattern::new(g)).collect();
    // LiteLLM's order: the longest pattern first, then the one with more regex metacharacters.
    let metachars = |p: &Pattern| p.group.chars().filter(|c| "*.?+^$[](){}|\\".contains(*c)).count();
    patterns.sort_by_key(|p| std::cmp::Reverse((p.group.len(), metachars(p))));
    for d in &deployments {
        let stars = d.engine().map_or(0, |e| e.upstream_model.matches('*').count());
        if stars > 0 && !d.model_name.contains('*') {
            diags.error(
                format!("model_list[{}].litellm_params.model", d.index),
                "a `*` in the model needs a wildcard model_name (e.g. model_name: ollama/*) to fill it in",
            );
        }
    }
    let ids = deployments.iter().map(|d| (d.id.clone(), d.index)).collect();
    let mut models = HashMap::new();
    for d in &deployments {
        models.entry(d.model.clone()).or_insert(d.index);
    }
    Some(Config {
        deployments,
        groups,
        group_order,
        aliases,
        alias_order,
        ids,
        models,
        hosts,
        patterns,
        router,
        general,
        images,
        ollama_requires_key,
        limits,
        telemetry,
        warmup,
        priorities,
    })
}

fn section<'a>(tree: &'a Map<String, Value>, key: &str, diags: &mut Diagnostics) -> Option<&'a Map<String, Value>> {
    match tree.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(_) => {
            diags.error(key, "must be a mapping");
            None
        }
    }
}

/// How a YAML value's type is named in messages ("a list", "a mapping", …).
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

pub(super) fn get_str(map: &Map<String, Value>, key: &str, path: &str, diags: &mut Diagnostics) -> Option<String> {
    match map.get(key)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        other => {
            diags.error(format!("{path}.{key}"), format!("must be a string, found {}", type_name(other)));
            None
        }
    }
}

/// A non-negative number; numeric strings are accepted as LiteLLM (Python) code often gets them from env vars.
pub(super) fn get_num(map: &Map<String, Value>, key: &str, path: &str, diags: &mut Diagnostics) -> Option<f64> {
    let value = map.get(key)?;
    let parsed = match value {
        Value::Null => return None,
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match parsed {
        Some(v) if v.is_finite() && v >= 0.0 => Some(v),
        _ => {
            diags.error(format!("{path}.{key}"), format!("must be a non-negative number, found {value}"));
            None
        }
    }
}

fn get_uint(map: &Map<String, Value>, key: &str, path: &str, diags: &mut Diagnostics) -> Option<u64> {
    let value = map.get(key)?;
    let parsed = match value {
        Value::Null => return None,
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    if parsed.is_none() {
        diags.error(format!("{path}.{key}"), format!("must be a non-negative integer, found {value}"));
    }
    parsed
}

pub(super) fn get_bool(map: &Map<String, Value>, key: &str, path: &str, diags: &mut Diagnostics) -> Option<bool> {
    match map.get(key)? {
        Value::Null => None,
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        other => {
            diags.error(format!("{path}.{key}"), format!("must be true or false, found {other}"));
            None
        }
    }
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// A `retry_policy` / `allowed_fails_policy` mapping: `<Class>Error<suffix>: count`.
fn policy(value: &Value, path: &str, suffix: &str, diags: &mut Diagnostics) -> Option<HashMap<ErrorClass, u32>> {
    let map = match value {
        Value::Null => return None,
        Value::Object(m) => m,
        other => {
            diags.error(
                path,
                format!("must be a mapping like {{RateLimitError{suffix}: 3}}, found {}", type_name(other)),
            );
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

fn seconds(v: f64) -> Duration {
    Duration::from_secs_f64(v.min(1e9))
}

fn model_list(value: Option<&Value>, diags: &mut Diagnostics, env: &dyn Fn(&str) -> Option<String>) -> Vec<Deployment> {
    let items = match value {
        None | Some(Value::Null) => {
            diags.warn("model_list", "no models configured: every request will fail with 400");
            return Vec::new();
        }
        Some(Value::Array(items)) => items,
        Some(other) => {
            diags.error("model_list", format!("must be a list of deployments, found {}", type_name(other)));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("model_list[{i}]");
        let Some(entry) = item.as_object() else {
            diags.error(
                &path,
                format!("must be a mapping with model_name and litellm_params, found {}", type_name(item)),
            );
            continue;
        };
        if let Some(d) = deployment(entry, i, &path, diags, env) {
            if let Some(first) = ids.insert(d.id.clone(), i) {
                diags.error(
                    format!("{path}.model_info.id"),
                    format!("duplicate deployment id {:?} (also model_list[{first}])", d.id),
                );
            }
            out.push(d);
        }
    }
    for (index, d) in out.iter_mut().enumerate() {
        d.index = index;
    }
    out
}

fn deployment(
    entry: &Map<String, Value>,
    position: usize,
    path: &str,
    diags: &mut Diagnostics,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Deployment> {
    for key in entry.keys() {
        if !["model_name", "litellm_params", "model_info", "rpm", "tpm"].contains(&key.as_str()) {
            diags.warn(format!("{path}.{key}"), "unknown deployment key; ignored");
        }
    }
    let model_name = match entry.get("model_name") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            diags
                .error(format!("{path}.model_name"), format!("must be a non-empty string, found {}", type_name(other)));
            None
        }
        None => {
            diags.error(format!("{path}.model_name"), "missing: every deployment needs the name clients call it by");
            None
        }
    };
    let params_path = format!("{path}.litellm_params");
    let params = match entry.get("litellm_params") {
        Some(Value::Object(p)) => p,
        Some(other) => {
            diags.error(&params_path, format!("must be a mapping, found {}", type_name(other)));
            return None;
        }
        None => {
            diags.error(&params_path, "missing: every deployment needs litellm_params with at least `model`");
            return None;
        }
    };
    let empty = Map::new();
    let info_path = format!("{path}.model_info");
    let info = match entry.get("model_info") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(other) => {
            diags.error(&info_path, format!("must be a mapping, found {}", type_name(other)));
            &empty
        }
    };
    for key in info.keys() {
        if MODEL_INFO_NOT_ACTED_ON.contains(&key.as_str()) {
            diags.warn(format!("{info_path}.{key}"), "not acted on by llmux yet; ignored");
        }
    }
    let is_complexity = matches!(params.get("model"), Some(Value::String(m)) if m == "auto_router/complexity_router");
    let is_semantic =
        matches!(params.get("model"), Some(Value::String(m)) if m.starts_with("auto_router/") && !is_complexity);
    for key in params.keys() {
        if is_semantic && key.starts_with("auto_router_") && key != "auto_router_max_tokens" {
            continue;
        }
        if key.starts_with("complexity_router_") && !is_complexity {
            diags.warn(
                format!("{params_path}.{key}"),
                "only read on auto_router/complexity_router deployments; ignored",
            );
        }
        if PARAMS_NOT_FORWARDED.contains(&key.as_str()) {
            diags.warn(format!("{params_path}.{key}"), "not acted on by llmux yet; ignored");
        }
    }

    let model = match params.get("model") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(other) => {
            diags.error(
                format!("{params_path}.model"),
                format!("must be a string like ollama_chat/llama3, found {}", type_name(other)),
            );
            return None;
        }
        None => {
            diags.error(
                format!("{params_path}.model"),
                "missing: set it to <provider>/<model>, e.g. ollama_chat/qwen3:8b",
            );
            return None;
        }
    };

    // Top-level rpm/tpm win over litellm_params, which win over model_info (LiteLLM's lookup order).
    let limit = |key: &str, diags: &mut Diagnostics| {
        get_num(entry, key, path, diags)
            .or_else(|| get_num(params, key, &params_path, diags))
            .or_else(|| get_num(info, key, &info_path, diags))
    };
    let rpm = limit("rpm", diags);
    let tpm = limit("tpm", diags);
    let order =
        match get_uint(params, "order", &params_path, diags).or_else(|| get_uint(info, "order", &info_path, diags)) {
            Some(0) => {
                diags.error(format!("{params_path}.order"), "must be 1 or more (1 = preferred)");
                None
            }
            Some(o) => Some(u32::try_from(o).unwrap_or(u32::MAX)),
            None => None,
        };
    let weight = get_num(params, "weight", &params_path, diags);
    let timeout = get_num(params, "timeout", &params_path, diags).map(seconds);
    let stream_timeout = get_num(params, "stream_timeout", &params_path, diags).map(seconds);
    let mode = get_str(info, "mode", &info_path, diags);
    let num_retries = get_uint(params, "num_retries", &params_path, diags).map(clamp_u32);
    let cooldown_time = get_num(info, "cooldown_time", &info_path, diags)
        .or_else(|| get_num(params, "cooldown_time", &params_path, diags))
        .map(seconds);
    let allowed_fails = get_uint(info, "allowed_fails", &info_path, diags).map(clamp_u32);
    let allowed_fails_policy = info
        .get("allowed_fails_policy")
        .and_then(|v| policy(v, &format!("{info_path}.allowed_fails_policy"), "AllowedFails", diags));
    let max_parallel_requests = match get_uint(params, "max_parallel_requests", &params_path, diags) {
        Some(0) => {
            diags.error(format!("{params_path}.max_parallel_requests"), "must be 1 or more");
            None
        }
        n => n.map(clamp_u32),
    };
    let cost = |key: &str, diags: &mut Diagnostics| {
        get_num(params, key, &params_path, diags).or_else(|| get_num(info, key, &info_path, diags))
    };
    let cost_per_token = match (cost("input_cost_per_token", diags), cost("output_cost_per_token", diags)) {
        (None, None) => None,
        (i, o) => Some((i.unwrap_or(0.0), o.unwrap_or(0.0))),
    };
    let max_input_tokens = get_uint(info, "max_input_tokens", &info_path, diags)
        .or_else(|| get_uint(info, "max_tokens", &info_path, diags));
    let health_check_timeout = get_num(info, "health_check_timeout", &info_path, diags).map(seconds);
    let access_groups = match info.get("access_groups") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| match v {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                other => {
                    diags.error(
                        format!("{info_path}.access_groups"),
                        format!("must list names (strings), found {}", type_name(other)),
                    );
                    None
                }
            })
            .collect(),
        Some(other) => {
            diags.error(
                format!("{info_path}.access_groups"),
                format!("must be a list of names, found {}", type_name(other)),
            );
            Vec::new()
        }
    };
    let disable_background_health_check =
        get_bool(info, "disable_background_health_check", &info_path, diags).unwrap_or(false);
    let health_check = generation_probe(info, params, &info_path, &params_path, diags);
    let id = match get_str(info, "id", &info_path, diags) {
        Some(id) => id,
        None => deployment_id(model_name.as_deref().unwrap_or(""), params),
    };

    let target = target(&model, params, &params_path, diags, env)?;
    // LiteLLM prices cloud models from its own cost map when the config gives no costs; llmux from a bundled
    // excerpt of it, so spend and cost-based routing see the same numbers.
    let cost_per_token = cost_per_token.or_else(|| match &target {
        Target::Engine(e) => crate::providers::prices::lookup(e.engine.prefix, &e.upstream_model)
            .map(|p| (p.input_cost_per_token, p.output_cost_per_token)),
        Target::AutoRouter { .. } => None,
    });
    let public_params = public_params(params);
    Some(Deployment {
        id,
        index: position,
        model_name: model_name?,
        model,
        target,
        order,
        weight,
        rpm,
        tpm,
        timeout,
        stream_timeout,
        num_retries,
        cooldown_time,
        allowed_fails,
        allowed_fails_policy,
        max_parallel_requests,
        cost_per_token,
        max_input_tokens,
        host: None,
        health_check_timeout,
        access_groups,
        disable_background_health_check,
        health_check,
        mode,
        model_info: info.clone(),
        public_params,
    })
}

fn target(
    model: &str,
    params: &Map<String, Value>,
    path: &str,
    diags: &mut Diagnostics,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Target> {
    let explicit = get_str(params, "custom_llm_provider", path, diags);
    let (prefix, upstream_model) = match (&explicit, model.split_once('/')) {
        (Some(p), _) => (p.as_str(), model.strip_prefix(&format!("{p}/")).unwrap_or(model)),
        (None, Some((p, rest))) => (p, rest),
        (None, None) => {
            diags.error(
                format!("{path}.model"),
                format!("{model:?} has no provider prefix; write it as <provider>/<model>, e.g. openai/{model} or ollama_chat/{model}"),
            );
            return None;
        }
    };
    if prefix == "auto_router" {
        // Strategy routers are parsed once every model name is known (their targets are validated).
        return Some(Target::AutoRouter { kind: upstream_model.to_owned(), complexity: None, semantic: None });
    }
    let Some(engine) = providers::engine(prefix) else {
        let known: Vec<&str> = providers::ENGINES.iter().map(|e| e.prefix).collect();
        diags.error(
            format!("{path}.model"),
            format!("unknown provider prefix {prefix:?} in {model:?}; llmux supports {}", known.join(", ")),
        );
        return None;
    };
    if upstream_model.is_empty() {
        diags.error(format!("{path}.model"), "the model name after the provider prefix is empty");
        return None;
    }
    let api_base = get_str(params, "api_base", path, diags)
        .or_else(|| get_str(params, "base_url", path, diags))
        .or_else(|| engine.api_base_env.iter().find_map(|var| env(var)))
        .or_else(|| engine.default_api_base.map(str::to_owned));
    let Some(api_base) = api_base else {
        let var = engine.api_base_env.first().copied().unwrap_or("the provider's base URL variable");
        diags.error(
            format!("{path}.api_base"),
            format!("missing: {prefix}/ has no default endpoint; set api_base or {var}"),
        );
        return None;
    };
    if !(api_base.starts_with("http://") || api_base.starts_with("https://")) || api_base.parse::<http::Uri>().is_err()
    {
        let shown = crate::redact::url(&api_base);
        diags.error(format!("{path}.api_base"), format!("{shown:?} is not an http:// or https:// URL"));
        return None;
    }
    let api_key = get_str(params, "api_key", path, diags)
        .or_else(|| engine.api_key_env.iter().find_map(|var| env(var).filter(|k| !k.is_empty())))
        .or_else(|| engine.default_api_key.map(str::to_owned))
        .filter(|k| !k.is_empty());
    // A key with a newline (a stray `\n` from a secret file) would fail every request; say so now, where.
    if api_key.as_ref().is_some_and(|k| http::HeaderValue::from_str(&format!("Bearer {k}")).is_err()) {
        diags.error(format!("{path}.api_key"), BAD_HEADER_BYTE);
        return None;
    }
    let api_key = api_key.map(Secret::new);
    let (api_base, basic_auth) = super::split_credentials(&api_base);
    let basic_auth = basic_auth.map(Secret::new);
    let mut extra_headers = extra_headers(params.get("extra_headers"), &format!("{path}.extra_headers"), diags);
    let api_base = if engine.adapter == providers::Adapter::Azure {
        let version = get_str(params, "api_version", path, diags)
            .or_else(|| env("AZURE_API_VERSION"))
            .unwrap_or_else(|| providers::azure::DEFAULT_API_VERSION.to_owned());
        // Without a key, a Microsoft Entra ID token (LiteLLM's `azure_ad_token` / `AZURE_AD_TOKEN`) is the bearer.
        let token = get_str(params, "azure_ad_token", path, diags).or_else(|| env("AZURE_AD_TOKEN"));
        if let (None, Some(token)) = (&api_key, token) {
            match http::HeaderValue::from_str(&format!("Bearer {token}")) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    extra_headers.push((http::header::AUTHORIZATION, value));
                }
                Err(_) => diags.error(format!("{path}.azure_ad_token"), BAD_HEADER_BYTE),
            }
        }
        providers::azure::deployment_base(&api_base, upstream_model, &version)
    } else {
        api_base
    };
    let keep_alive = params.get("keep_alive").cloned();
    let extra_params = params
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            !PARAMS_ACTED_ON.contains(&k) && !PARAMS_ROUTER.contains(&k) && !PARAMS_NOT_FORWARDED.contains(&k)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Some(Target::Engine(EngineTarget {
        engine,
        upstream_model: upstream_model.to_owned(),
        api_base: api_base.trim_end_matches('/').to_owned(),
        api_key,
        basic_auth,
        extra_headers,
        keep_alive,
        extra_params,
        wire: Default::default(),
    }))
}

/// Why a configured key or header value cannot be sent.
const BAD_HEADER_BYTE: &str =
    "contains a character an HTTP header cannot carry (a newline or other control character?)";

/// `litellm_params.extra_headers`: a mapping of header name to value, each checked to be sendable.
fn extra_headers(
    value: Option<&Value>,
    path: &str,
    diags: &mut Diagnostics,
) -> Vec<(http::HeaderName, http::HeaderValue)> {
    let map = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Object(map)) => map,
        Some(other) => {
            diags.error(path, format!("must be a mapping of header name to value, found {}", type_name(other)));
            return Vec::new();
        }
    };
    let mut headers = Vec::with_capacity(map.len());
    for (name, value) in map {
        let at = format!("{path}.{name}");
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            other => {
                diags.error(&at, format!("must be a string, found {}", type_name(other)));
                continue;
            }
        };
        let Ok(header) = http::HeaderName::from_bytes(name.as_bytes()) else {
            diags.error(&at, "is not a valid HTTP header name");
            continue;
        };
        let Ok(mut value) = http::HeaderValue::from_str(&text) else {
            diags.error(&at, BAD_HEADER_BYTE);
            continue;
        };
        value.set_sensitive(true);
        headers.push((header, value));
    }
    headers
}

/// Parses `complexity_router_config` of every `auto_router/complexity_router` deployment, now that every model
/// name its tiers may point at is known.
fn complexity_routers(deployments: &mut [Deployment], is_name: &dyn Fn(&str) -> bool, diags: &mut Diagnostics) {
    for d in deployments.iter_mut() {
        let Target::AutoRouter { kind, complexity, semantic } = &mut d.target else { continue };
        let at = format!("model_list[{}].litellm_params", d.index);
        if kind != "complexity_router" {
            let read = |path: &str| std::fs::read_to_string(path).map_err(|e| e.to_string());
            let parsed = crate::router::semantic::SemanticRouter::from_params(
                &d.public_params,
                is_name,
                &read,
                &mut |path, message| diags.error(format!("{at}.{path}"), message),
            );
            if let Some(router) = &parsed {
                if router.embedding_model == d.model_name {
                    diags.error(format!("{at}.auto_router_embedding_model"), "must not be the router itself");
                }
            }
            *semantic = parsed.map(std::sync::Arc::new);
            continue;
        }
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let parsed = crate::router::complexity::ComplexityRouter::from_params(
            &d.public_params,
            is_name,
            &mut |path, message| errors.push((path, message)),
            &mut |path, message| warnings.push((path, message)),
        );
        for (path, message) in errors {
            diags.error(format!("{at}.{path}"), message);
        }
        for (path, message) in warnings {
            diags.warn(format!("{at}.{path}"), message);
        }
        *complexity = parsed.map(std::sync::Arc::new);
    }
}

/// Groups engine deployments by host (scheme + authority) and sets each deployment's `host`.
fn hosts(deployments: &mut [Deployment]) -> Vec<Host> {
    let mut hosts: Vec<Host> = Vec::new();
    for d in deployments.iter_mut() {
        let Some(engine) = d.engine() else { continue };
        let origin = engine.origin();
        let at = match hosts.iter().position(|h| h.origin == origin) {
            Some(at) => at,
            None => {
                hosts.push(Host {
                    origin,
                    profile: &providers::profile::OPENAI_COMPATIBLE,
                    probe_base: None,
                    api_key: engine.api_key.clone(),
                    basic_auth: engine.basic_auth.clone(),
                    probe_timeout: Duration::from_secs(10),
                    probe_disabled: true,
                    deployments: Vec::new(),
                    limits: HostLimits::default(),
                    wake: None,
                });
                hosts.len() - 1
            }
        };
        let host = &mut hosts[at];
        // A provider's public endpoint is not probed (a probe costs requests against the account's rate limit
        // and tells nothing about residency), nor is an API that has no model list llmux reads.
        let unprobed = engine.engine.cloud && engine.engine.default_api_base == Some(engine.api_base.as_str());
        if let Some(profile) = engine.engine.profile.filter(|_| !unprobed) {
            let current = host.probe_base.is_some().then_some(host.profile);
            // The first base of the API that tells the most (Ollama's over OpenAI's); the engine probed the most
            // thoroughly (Ollama, then LM Studio, then plain `/models`).
            if current.is_none_or(|c| profile.api > c.api) {
                host.probe_base = Some(engine.api_base.clone());
            }
            if current.is_none_or(|c| profile.probe > c.probe) {
                host.profile = profile;
            }
        }
        if let Some(t) = d.health_check_timeout {
            host.probe_timeout = if host.deployments.is_empty() { t } else { host.probe_timeout.max(t) };
        }
        host.probe_disabled &= d.disable_background_health_check || host.probe_base.is_none();
        host.deployments.push(d.index);
        d.host = Some(at);
    }
    hosts
}

/// LiteLLM's opt-in generation probe: `health_check_model` (in `model_info`, or `litellm_params`), with
/// `health_check_max_tokens` and `health_check_params` beside it.
fn generation_probe(
    info: &Map<String, Value>,
    params: &Map<String, Value>,
    info_path: &str,
    params_path: &str,
    diags: &mut Diagnostics,
) -> Option<GenerationProbe> {
    let (map, path) = if info.contains_key("health_check_model") { (info, info_path) } else { (params, params_path) };
    let model = get_str(map, "health_check_model", path, diags)?;
    let model = match model.split_once('/') {
        Some((prefix, rest)) if providers::engine(prefix).is_some() => rest.to_owned(),
        _ => model,
    };
    if model.is_empty() || model.contains('*') {
        diags.error(format!("{path}.health_check_model"), "must name one model the engine serves");
        return None;
    }
    let max_tokens = get_uint(map, "health_check_max_tokens", path, diags);
    let params = match map.get("health_check_params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            diags
                .error(format!("{path}.health_check_params"), format!("must be a mapping, found {}", type_name(other)));
            Map::new()
        }
    };
    Some(GenerationProbe { model, max_tokens, params })
}

/// `llmux_settings.hosts`: per engine host (keyed by its `api_base` or `scheme://host:port`), `memory_budget`,
/// `max_loaded_models`, `pinned` models and how to `wake` it.
fn host_limits(
    settings: Option<&Value>,
    hosts: &mut [Host],
    deployments: &[Deployment],
    known: &dyn Fn(&str) -> bool,
    diags: &mut Diagnostics,
) {
    const S: &str = "llmux_settings";
    let settings = match settings {
        None | Some(Value::Null) => return,
        Some(Value::Object(m)) => m,
        Some(other) => return diags.error(S, format!("must be a mapping, found {}", type_name(other))),
    };
    for key in settings
        .keys()
        .filter(|k| !["hosts", "groups", "images", "ollama_api", "server", "metrics", "warmup"].contains(&k.as_str()))
    {
        diags.warn(format!("{S}.{key}"), "unknown llmux setting; ignored");
    }
    let entries = match settings.get("hosts") {
        None | Some(Value::Null) => return,
        Some(Value::Object(m)) => m,
        Some(other) => {
            return diags.error(
                format!("{S}.hosts"),
                format!("must be a mapping of api_base: settings, found {}", type_name(other)),
            )
        }
    };
    for (url, value) in entries {
        let at = format!("{S}.hosts.{url}");
        let origin = super::origin_of(url);
        let Some(host) = hosts.iter_mut().find(|h| h.origin == origin) else {
            diags.warn(&at, format!("no deployment has its api_base on {origin}; ignored"));
            continue;
        };
        let Value::Object(entry) = value else {
            diags.error(&at, format!("must be a mapping, found {}", type_name(value)));
            continue;
        };
        for key in
            entry.keys().filter(|k| !["memory_budget", "max_loaded_models", "pinned", "wake"].contains(&k.as_str()))
        {
            diags.warn(format!("{at}.{key}"), "unknown host setting; ignored");
        }
        if let Some(wake) = entry.get("wake") {
            host.wake = super::wake::host_wake(wake, &format!("{at}.wake"), known, diags);
        }
        host.limits.memory_budget = match entry.get("memory_budget") {
            None | Some(Value::Null) => None,
            Some(v) => bytes_of(v).or_else(|| {
                diags.error(format!("{at}.memory_budget"), format!("must be a size like 84GB or 44GiB, found {v}"));
                None
            }),
        };
        host.limits.max_loaded_models = get_uint(entry, "max_loaded_models", &at, diags).map(clamp_u32);
        let served: Vec<&str> = host
            .deployments
            .iter()
            .filter_map(|&i| deployments[i].engine())
            .map(|e| e.upstream_model.as_str())
            .collect();
        host.limits.pinned = match entry.get("pinned") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item.as_str() {
                    Some(name) => {
                        if !served.iter().any(|m| crate::state::same_model(m, name)) {
                            diags.warn(
                                format!("{at}.pinned[{i}]"),
                                format!(
                                    "no deployment on this host serves {name:?} (engine model names: {})",
                                    served.join(", ")
                                ),
                            );
                        }
                        Some(name.to_owned())
                    }
                    None => {
                        diags.error(format!("{at}.pinned[{i}]"), "must be an engine model name");
                        None
                    }
                })
                .collect(),
            Some(other) => {
                diags.error(
                    format!("{at}.pinned"),
                    format!("must be a list of model names, found {}", type_name(other)),
                );
                Vec::new()
            }
        };
    }
}

/// `llmux_settings.groups.<name>`: per model group, `keep_alive` (how long its Ollama deployments keep their
/// model loaded after a request: Ollama's `30m`, `-1` for ever, `0` to unload at once, unless a deployment sets
/// its own or pins it); per group or alias, `priority` (the default place of its requests in the queue for a
/// free slot, lower first, as LiteLLM's request `priority`).
struct GroupSettings {
    keep_alive: HashMap<String, Value>,
    priority: HashMap<String, i64>,
}

fn group_settings(
    settings: Option<&Value>,
    is_group: &dyn Fn(&str) -> bool,
    is_alias: &dyn Fn(&str) -> bool,
    diags: &mut Diagnostics,
) -> GroupSettings {
    const S: &str = "llmux_settings.groups";
    let mut out = GroupSettings { keep_alive: HashMap::new(), priority: HashMap::new() };
    let Some(groups) = settings.and_then(|s| s.get("groups")).filter(|g| !g.is_null()) else { return out };
    let Value::Object(groups) = groups else {
        diags.error(S, format!("must be a mapping of model_name: settings, found {}", type_name(groups)));
        return out;
    };
    for (group, value) in groups {
        let at = format!("{S}.{group}");
        if !is_group(group) && !is_alias(group) {
            diags.warn(&at, "no model_list entry has this model_name and no alias has this name; ignored");
            continue;
        }
        let Value::Object(entry) = value else {
            diags.error(&at, format!("must be a mapping, found {}", type_name(value)));
            continue;
        };
        for key in entry.keys().filter(|k| !["keep_alive", "priority"].contains(&k.as_str())) {
            diags.warn(format!("{at}.{key}"), "unknown group setting; ignored");
        }
        match entry.get("keep_alive") {
            None | Some(Value::Null) => {}
            Some(_) if !is_group(group) => {
                diags.warn(format!("{at}.keep_alive"), "keep_alive is set per model_name, not per alias; ignored");
            }
            Some(v) if is_keep_alive(v) => {
                out.keep_alive.insert(group.clone(), v.clone());
            }
            Some(v) => diags.error(
                format!("{at}.keep_alive"),
                format!("must be a duration like 30m, 1h, -1 (for ever) or 0 (unload at once), found {v}"),
            ),
        }
        match entry.get("priority") {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_i64() {
                Some(p) => {
                    out.priority.insert(group.clone(), p);
                }
                None => {
                    diags.error(format!("{at}.priority"), format!("must be a whole number (lower first), found {v}"))
                }
            },
        }
    }
    out
}

/// `llmux_settings.images`: `allow_private_networks`, `max_mb`, `timeout` (see [`ImageFetch`]).
fn image_fetch(settings: Option<&Value>, diags: &mut Diagnostics) -> ImageFetch {
    const S: &str = "llmux_settings.images";
    let mut out = ImageFetch::default();
    let Some(images) = settings.and_then(|s| s.get("images")).filter(|v| !v.is_null()) else { return out };
    let Value::Object(images) = images else {
        diags.error(S, format!("must be a mapping, found {}", type_name(images)));
        return out;
    };
    for key in images.keys().filter(|k| !["allow_private_networks", "max_mb", "timeout"].contains(&k.as_str())) {
        diags.warn(format!("{S}.{key}"), "unknown image setting; ignored");
    }
    if let Some(allow) = get_bool(images, "allow_private_networks", S, diags) {
        out.allow_private = allow;
    }
    if let Some(mb) = get_num(images, "max_mb", S, diags) {
        out.max_bytes = (mb * 1024.0 * 1024.0) as usize;
    }
    if let Some(secs) = get_num(images, "timeout", S, diags).filter(|s| *s > 0.0) {
        out.timeout = seconds(secs);
    }
    out
}

/// `llmux_settings.server` (see [`ServerLimits`]) and `general_settings.max_response_size_mb`.
fn server_limits(settings: Option<&Value>, general: &Map<String, Value>, diags: &mut Diagnostics) -> ServerLimits {
    const S: &str = "llmux_settings.server";
    const KEYS: &[&str] = &[
        "header_read_timeout",
        "idle_timeout",
        "max_connections",
        "max_header_kb",
        "http2_max_concurrent_streams",
        "max_buffered_mb",
    ];
    let mut out = ServerLimits::default();
    let mb = |n: f64| (n * 1024.0 * 1024.0) as usize;
    if let Some(n) = get_num(general, "max_response_size_mb", "general_settings", diags) {
        if n > 0.0 {
            out.max_answer_bytes = mb(n);
        } else {
            diags.error("general_settings.max_response_size_mb", "must be a positive number of MB");
        }
    }
    let Some(server) = settings.and_then(|s| s.get("server")).filter(|v| !v.is_null()) else { return out };
    let Value::Object(server) = server else {
        diags.error(S, format!("must be a mapping, found {}", type_name(server)));
        return out;
    };
    for key in server.keys().filter(|k| !KEYS.contains(&k.as_str())) {
        diags.warn(format!("{S}.{key}"), "unknown server setting; ignored");
    }
    // Every one of these must be positive: zero would close every connection or refuse every answer.
    let positive = |key: &str, diags: &mut Diagnostics| {
        let n = get_num(server, key, S, diags)?;
        if n > 0.0 && n.is_finite() {
            Some(n)
        } else {
            diags.error(format!("{S}.{key}"), "must be a positive number");
            None
        }
    };
    if let Some(secs) = positive("header_read_timeout", diags) {
        out.header_read_timeout = seconds(secs);
    }
    if let Some(secs) = positive("idle_timeout", diags) {
        out.idle_timeout = seconds(secs);
    }
    if let Some(n) = positive("max_connections", diags) {
        out.max_connections = Some(n as usize);
    }
    if let Some(kb) = positive("max_header_kb", diags) {
        // hyper needs room for at least one 8 KiB read.
        out.max_header_bytes = ((kb * 1024.0) as usize).max(8 * 1024);
    }
    if let Some(n) = positive("http2_max_concurrent_streams", diags) {
        out.http2_max_streams = n.min(f64::from(u32::MAX)) as u32;
    }
    if let Some(n) = positive("max_buffered_mb", diags) {
        out.max_buffered_bytes = mb(n);
    }
    out
}

/// `llmux_settings.ollama_api.require_key` (default true).
fn ollama_requires_key(settings: Option<&Value>, diags: &mut Diagnostics) -> bool {
    const S: &str = "llmux_settings.ollama_api";
    let Some(api) = settings.and_then(|s| s.get("ollama_api")).filter(|v| !v.is_null()) else { return true };
    let Value::Object(api) = api else {
        diags.error(S, format!("must be a mapping, found {}", type_name(api)));
        return true;
    };
    for key in api.keys().filter(|k| *k != "require_key") {
        diags.warn(format!("{S}.{key}"), "unknown Ollama API setting; ignored");
    }
    let required = get_bool(api, "require_key", S, diags).unwrap_or(true);
    if !required {
        diags.warn(
            format!("{S}.require_key"),
            "false: Ollama's routes (/api/*) answer without the master key, as Ollama itself does; keep llmux on a trusted network",
        );
    }
    required
}

/// Whether Ollama takes `value` as a `keep_alive`: seconds as a number, or a Go duration (`1h30m`, `-1m`, `300`).
fn is_keep_alive(value: &Value) -> bool {
    match value {
        Value::Number(_) => true,
        Value::String(s) => {
            let s = s.strip_prefix('-').unwrap_or(s);
            if s.parse::<f64>().is_ok() {
                return true;
            }
            let mut rest = s;
            while !rest.is_empty() {
                let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
                if digits == 0 {
                    return false;
                }
                rest = &rest[digits..];
                let unit = ["ns", "us", "µs", "ms", "s", "m", "h"].iter().find(|u| rest.starts_with(**u));
                match unit {
                    Some(u) => rest = &rest[u.len()..],
                    None => return false,
                }
            }
            !s.is_empty()
        }
        _ => false,
    }
}

/// A size in bytes: a number, or a number with a unit (`84GB`, `44 GiB`, `512MB`); GB is 10^9, GiB 2^30.
fn bytes_of(value: &Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let text = value.as_str()?.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * scale;
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

/// `litellm_params` as `/model/info` shows them: no credentials, no `extra_headers` (they carry keys as often as
/// not), and URLs without their credentials and query values.
fn public_params(params: &Map<String, Value>) -> Map<String, Value> {
    params
        .iter()
        .filter(|(k, _)| !is_secret_key(k) && k.as_str() != "extra_headers")
        .map(|(k, v)| match (k.as_str(), v) {
            ("api_base" | "base_url", Value::String(url)) => (k.clone(), Value::String(crate::redact::url(url))),
            _ => (k.clone(), v.clone()),
        })
        .collect()
}

/// Parameter names whose values are credentials and never leave llmux (`/model/info`, logs).
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["key", "secret", "token", "password", "credential"].iter().any(|w| k.contains(w))
}

/// LiteLLM's id for a deployment without `model_info.id`: sha256 over the model name and each
/// `litellm_params` key and value in file order.
fn deployment_id(model_name: &str, params: &Map<String, Value>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(model_name.as_bytes());
    for (k, v) in params {
        hasher.update(k.as_bytes());
        match v {
            Value::String(s) => hasher.update(s.as_bytes()),
            Value::Bool(true) => hasher.update(b"True"),
            Value::Bool(false) => hasher.update(b"False"),
            Value::Null => hasher.update(b"None"),
            other => hasher.update(other.to_string().as_bytes()),
        }
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn aliases(
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
            diags.error(
                "router_settings.model_group_alias",
                format!("must be a mapping of alias: group, found {}", type_name(other)),
            );
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
                diags.error(&path, format!("must be a group name, found {}", type_name(other)));
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

fn router_settings(
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
    let num_retries =
        get_uint(router, "num_retries", R, diags).or_else(|| get_uint(litellm, "num_retries", L, diags)).unwrap_or(2);
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
    let max_fallbacks = get_uint(router, "max_fallbacks", R, diags).unwrap_or(5);
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
        Some(other) => diags.error(
            format!("{R}.model_group_retry_policy"),
            format!("must be a mapping of group: retry_policy, found {}", type_name(other)),
        ),
    }
    let max_attempts = match get_uint(router, "max_attempts", R, diags) {
        Some(0) => {
            diags.error(format!("{R}.max_attempts"), "must be 1 or more");
            1
        }
        Some(n) => clamp_u32(n),
        None => 10,
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
        cooldown_time: get_num(router, "cooldown_time", R, diags).map_or(Duration::from_secs(5), seconds),
        disable_cooldowns: get_bool(router, "disable_cooldowns", R, diags).unwrap_or(false),
        retry_after: get_num(router, "retry_after", R, diags).map_or(Duration::ZERO, seconds),
        fallbacks: fb,
        context_window_fallbacks,
        content_policy_fallbacks,
        default_fallbacks,
        max_fallbacks: clamp_u32(max_fallbacks),
        enable_pre_call_checks: get_bool(router, "enable_pre_call_checks", R, diags).unwrap_or(false),
        max_attempts,
        queue_timeout: get_num(router, "queue_timeout", R, diags).map_or(Duration::from_secs(30), seconds),
        stream_keepalive: get_num(router, "stream_keepalive", R, diags).map_or(Duration::from_secs(5), seconds),
        residency_routing: get_bool(router, "residency_routing", R, diags).unwrap_or(true),
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
fn redis_settings(
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
        None => 0,
        Some(v) => v.trim().parse::<i64>().unwrap_or_else(|_| {
            diags.error(format!("{R}.redis_db"), format!("must be a database number, found {v:?}"));
            0
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
        None => 6379,
        Some(p) => p.trim().parse::<u16>().unwrap_or_else(|_| {
            diags.error(format!("{R}.redis_port"), format!("must be a port number, found {p:?}"));
            6379
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

fn strategy(router: &Map<String, Value>, diags: &mut Diagnostics) -> Strategy {
    const R: &str = "router_settings";
    let name = get_str(router, "routing_strategy", R, diags).unwrap_or_else(|| "simple-shuffle".to_owned());
    let empty = Map::new();
    let args_path = format!("{R}.routing_strategy_args");
    let args = match router.get("routing_strategy_args") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(other) => {
            diags.error(&args_path, format!("must be a mapping, found {}", type_name(other)));
            &empty
        }
    };
    match name.as_str() {
        "simple-shuffle" => Strategy::SimpleShuffle,
        "least-busy" => Strategy::LeastBusy,
        "latency-based-routing" => Strategy::LatencyBased {
            ttl: get_num(args, "ttl", &args_path, diags).map_or(Duration::from_secs(3600), seconds),
            buffer: get_num(args, "lowest_latency_buffer", &args_path, diags).unwrap_or(0.0),
            max_samples: get_uint(args, "max_latency_list_size", &args_path, diags)
                .map_or(10, |n| usize::try_from(n.max(1)).unwrap_or(10)),
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

fn general_settings(
    general: &Map<String, Value>,
    litellm: &Map<String, Value>,
    router: &Map<String, Value>,
    diags: &mut Diagnostics,
    env: &dyn Fn(&str) -> Option<String>,
) -> GeneralSettings {
    const G: &str = "general_settings";
    for key in general.keys() {
        if !GENERAL_ACTED_ON.contains(&key.as_str()) {
            diags.warn(format!("{G}.{key}"), "not acted on by llmux yet; ignored");
        }
    }
    let master_key = get_str(general, "master_key", G, diags).filter(|k| !k.is_empty()).map(Secret::new);
    let max_mb = get_num(general, "max_request_size_mb", G, diags).unwrap_or(32.0);
    // LiteLLM reads these only from general_settings; the seed config (and many users) put them in
    // litellm_settings, where LiteLLM silently ignores them. llmux honours them there and says so.
    let misplaced = |key: &str, diags: &mut Diagnostics| {
        diags.warn(
            format!("litellm_settings.{key}"),
            format!("misplaced: LiteLLM reads this only from general_settings (and ignores it here); llmux honours it — move it to general_settings.{}", key.trim_start_matches("enable_")),
        );
    };
    let background_health_checks = match get_bool(general, "background_health_checks", G, diags) {
        Some(v) => Some(v),
        None if litellm.contains_key("enable_background_health_checks") => {
            misplaced("enable_background_health_checks", diags);
            get_bool(litellm, "enable_background_health_checks", "litellm_settings", diags)
        }
        None if litellm.contains_key("background_health_checks") => {
            misplaced("background_health_checks", diags);
            get_bool(litellm, "background_health_checks", "litellm_settings", diags)
        }
        None => None,
    }
    .unwrap_or(false);
    let interval = match get_uint(general, "health_check_interval", G, diags) {
        Some(v) => Some(v),
        None if litellm.contains_key("health_check_interval") => {
            misplaced("health_check_interval", diags);
            get_uint(litellm, "health_check_interval", "litellm_settings", diags)
        }
        None => get_uint(router, "health_check_interval", "router_settings", diags),
    }
    .unwrap_or(300);
    let flag = |key: &str, diags: &mut Diagnostics| {
        get_bool(general, key, G, diags).or_else(|| get_bool(router, key, "router_settings", diags))
    };
    // LiteLLM's default: a probe's HTTP error is only reported. A host a probe cannot reach is out either way.
    let health_check_routing = flag("enable_health_check_routing", diags).unwrap_or(false);
    let health_check_ignore_transient_errors = flag("health_check_ignore_transient_errors", diags).unwrap_or(false);
    let staleness = get_num(general, "health_check_staleness_threshold", G, diags)
        .or_else(|| get_num(router, "health_check_staleness_threshold", "router_settings", diags))
        .map_or(Duration::from_secs(interval.saturating_mul(2).max(1)), seconds);
    let database_url =
        get_str(general, "database_url", G, diags).or_else(|| env("DATABASE_URL")).filter(|u| !u.trim().is_empty());
    if let Some(url) = &database_url {
        if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            diags.error(
                format!("{G}.database_url"),
                "must be a postgresql:// URL (without it llmux keeps keys in SQLite under --data-dir)",
            );
        }
    }
    let retention = match general.get("maximum_spend_logs_retention_period") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64().filter(|v| *v > 0.0).map(seconds),
        Some(Value::String(s)) => {
            let parsed = crate::keys::limits::parse_duration(s);
            if parsed.is_none() {
                diags.error(
                    format!("{G}.maximum_spend_logs_retention_period"),
                    format!("must be a duration like \"30d\", \"12h\" or seconds, found {s:?}"),
                );
            }
            parsed
        }
        Some(other) => {
            diags.error(
                format!("{G}.maximum_spend_logs_retention_period"),
                format!("must be a duration like \"30d\", found {}", type_name(other)),
            );
            None
        }
    };
    let spend_batch_every = get_num(general, "proxy_batch_write_at", G, diags)
        .filter(|v| *v > 0.0)
        .map_or(Duration::from_secs(10), seconds);
    GeneralSettings {
        database_url: database_url.map(Secret::new),
        disable_spend_logs: get_bool(general, "disable_spend_logs", G, diags).unwrap_or(false),
        spend_logs_retention: retention,
        spend_batch_every,
        allow_auth_change_on_reload: get_bool(general, "allow_auth_change_on_reload", G, diags).unwrap_or(false),
        check_provider_endpoint: get_bool(litellm, "check_provider_endpoint", "litellm_settings", diags)
            .unwrap_or(false),
        health_check_routing,
        health_check_ignore_transient_errors,
        health_check_staleness: staleness,
        master_key,
        max_request_body_bytes: (max_mb * 1024.0 * 1024.0) as usize,
        background_health_checks,
        health_check_interval: interval,
    }
}

fn litellm_warnings(litellm: &Map<String, Value>, diags: &mut Diagnostics) {
    for key in litellm.keys() {
        let k = key.as_str();
        if LITELLM_ACTED_ON.contains(&k)
            || [
                "enable_background_health_checks",
                "background_health_checks",
                "health_check_interval",
                "check_provider_endpoint",
                "require_auth_for_metrics_endpoint",
            ]
            .contains(&k)
            || super::telemetry::CALLBACK_KEYS.contains(&k)
        {
            continue;
        }
        diags.warn(format!("litellm_settings.{key}"), "not acted on by llmux yet; ignored");
    }
}
