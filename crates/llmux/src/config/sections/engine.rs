//! `model_list[i].litellm_params`, the engine half: which engine a deployment calls (the provider prefix of
//! `model`), where (`api_base`), with which key and headers, and the engine options forwarded with each request.

use serde_json::{Map, Value};

use crate::config::reader::{get_str, must_be};
use crate::config::{Diagnostics, EngineTarget, Secret, Target};
use crate::providers;

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
pub(super) const PARAMS_NOT_FORWARDED: &[&str] = &[
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

/// The engine (or strategy router) `model` names, with its endpoint, credentials, headers and forwarded options;
/// `None` after an error.
pub(super) fn target(
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
    let (api_base, basic_auth) = crate::config::split_credentials(&api_base);
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
            diags.error(path, must_be("a mapping of header name to value", other));
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
                diags.error(&at, must_be("a string", other));
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
