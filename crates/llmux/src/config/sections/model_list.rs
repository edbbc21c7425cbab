//! `model_list`: each entry's `model_name`, `model_info` and the routing half of its `litellm_params` (`order`,
//! `weight`, limits, retries, cooldowns, costs, health-check options) into a [`Deployment`]; the engine half is
//! [`super::engine`]'s.

use std::collections::HashMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::engine::{target, PARAMS_NOT_FORWARDED};
use super::router_settings::policy;
use crate::config::reader::{
    as_mapping, clamp_u32, get_bool, get_num, get_str, get_uint, mapping, must_be, seconds, type_name,
};
use crate::config::{Deployment, Diagnostics, GenerationProbe, Target};
use crate::providers;

/// `model_info` keys that change behaviour in LiteLLM but not yet in llmux.
const MODEL_INFO_NOT_ACTED_ON: &[&str] = &["blocked"];

/// Every deployment, in file order; an entry with an error is left out (the load fails anyway).
pub(crate) fn model_list(
    value: Option<&Value>,
    diags: &mut Diagnostics,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<Deployment> {
    let items = match value {
        None | Some(Value::Null) => {
            diags.warn("model_list", "no models configured: every request will fail with 400");
            return Vec::new();
        }
        Some(Value::Array(items)) => items,
        Some(other) => {
            diags.error("model_list", must_be("a list of deployments", other));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("model_list[{i}]");
        let Some(entry) = item.as_object() else {
            diags.error(&path, must_be("a mapping with model_name and litellm_params", item));
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

/// One `model_list` entry at `path`; `None` after an error that leaves nothing to route to.
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
            diags.error(format!("{path}.model_name"), must_be("a non-empty string", other));
            None
        }
        None => {
            diags.error(format!("{path}.model_name"), "missing: every deployment needs the name clients call it by");
            None
        }
    };
    let params_path = format!("{path}.litellm_params");
    let params = match entry.get("litellm_params") {
        Some(value) => as_mapping(value, &params_path, diags)?,
        None => {
            diags.error(&params_path, "missing: every deployment needs litellm_params with at least `model`");
            return None;
        }
    };
    let empty = Map::new();
    let info_path = format!("{path}.model_info");
    let info = mapping(entry, "model_info", path, diags).unwrap_or(&empty);
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
            diags.error(format!("{params_path}.model"), must_be("a string like ollama_chat/llama3", other));
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
            Some(o) => Some(clamp_u32(o)),
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
            diags.error(format!("{info_path}.access_groups"), must_be("a list of names", other));
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
    let params = mapping(map, "health_check_params", path, diags).cloned().unwrap_or_default();
    Some(GenerationProbe { model, max_tokens, params })
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
