//! `GET /v1/models` and `GET /model/info` in LiteLLM's shapes.

use axum::extract::State;
use axum::{Extension, Json};
use serde_json::{json, Map, Value};

use super::AppState;
use crate::config::{Config, Deployment, Target};
use crate::state::{same_model, HostState, ModelFacts};

/// LiteLLM's fixed `created` timestamp for listed models.
const CREATED: u64 = 1677610602;

fn owned_by(config: &Config, group: &str) -> &'static str {
    let first = config.groups.get(group).and_then(|m| m.first()).map(|&i| &config.deployments[i].target);
    match first {
        Some(Target::Engine(e)) => e.engine.prefix,
        Some(Target::AutoRouter { .. }) => "llmux",
        None => "llmux",
    }
}

/// How long an engine's model list answers `/v1/models` before it is asked again (LiteLLM's cache time).
const DISCOVERY_TTL_MS: u64 = 300_000;

/// Every model group, then every alias that is not hidden, in file order. A wildcard group (`ollama/*`, `*`) is
/// listed as its pattern, or, with `litellm_settings.check_provider_endpoint`, expanded into one entry per model
/// its engines list (each one a name that routes back to the group).
///
/// A virtual key sees only the names it may call (its `models`, as LiteLLM lists them for a key).
pub async fn list(State(state): State<AppState>, who: Option<Extension<super::auth::Who>>) -> Json<Value> {
    let executor = state.executor();
    let config = &executor.config;
    let discover = config.general.check_provider_endpoint && !config.patterns.is_empty();
    if discover {
        refresh_model_lists(&executor).await;
    }
    let hosts = executor.state.hosts();
    let mut data = Vec::new();
    let mut listed = std::collections::HashSet::new();
    for group in &config.group_order {
        let owner = owned_by(config, group);
        let names: Vec<String> =
            if discover && group.contains('*') { wildcard_names(config, &hosts, group) } else { vec![group.clone()] };
        for name in names {
            if listed.insert(name.clone()) {
                data.push(json!({"id": name, "object": "model", "created": CREATED, "owned_by": owner}));
            }
        }
    }
    for name in &config.alias_order {
        let Some(alias) = config.aliases.get(name) else { continue };
        if alias.hidden || config.groups.contains_key(name) || !listed.insert(name.clone()) {
            continue;
        }
        let group = config.resolve(name).map(|r| r.group).unwrap_or(&alias.target);
        data.push(json!({"id": name, "object": "model", "created": CREATED, "owned_by": owned_by(config, group)}));
    }
    if let Some(Extension(super::auth::Who::Virtual(key))) = who {
        let allowed = &key.settings.models;
        data.retain(|entry| {
            let name = entry["id"].as_str().unwrap_or_default();
            crate::keys::limits::model_allowed(allowed, name, name, config)
        });
    }
    Json(json!({"object": "list", "data": data}))
}

/// `pattern` with its one `*` replaced by the engine's `model` (a pattern with several `*`s cannot be filled in
/// from one name, so it is not expanded).
/// The names a wildcard group stands for: its pattern filled in with each model its engines listed, sorted.
pub(super) fn wildcard_names(config: &Config, hosts: &[HostState], group: &str) -> Vec<String> {
    let mut found: Vec<String> = config
        .groups
        .get(group)
        .into_iter()
        .flatten()
        .filter_map(|&i| config.deployments[i].host)
        .filter_map(|h| hosts.get(h))
        .flat_map(|h| h.available.iter())
        .filter_map(|model| expand_listing(group, model))
        .collect();
    found.sort();
    found
}

fn expand_listing(pattern: &str, model: &str) -> Option<String> {
    (pattern.matches('*').count() == 1).then(|| pattern.replacen('*', model, 1))
}

/// Probes the hosts of wildcard deployments whose model list is missing or older than [`DISCOVERY_TTL_MS`].
async fn refresh_model_lists(executor: &crate::executor::Executor) {
    let config = &executor.config;
    let now = executor.state.now();
    let hosts = executor.state.hosts();
    let mut stale: Vec<usize> = config
        .patterns
        .iter()
        .flat_map(|p| config.groups.get(&p.group).into_iter().flatten())
        .filter_map(|&i| config.deployments[i].host)
        .filter(|&h| hosts.get(h).and_then(|s| s.last_probe).is_none_or(|t| now.since(t) > DISCOVERY_TTL_MS))
        .collect();
    stale.sort_unstable();
    stale.dedup();
    if !stale.is_empty() {
        crate::health::probe_hosts(config, &executor.state, executor.client(), stale.into_iter()).await;
    }
}

/// One entry per deployment with its `litellm_params` (keys removed) and `model_info` (id and mode filled in).
/// What the engine reports about the model fills in what the config leaves out: `max_input_tokens` from its
/// context length, `supports_vision` / `supports_function_calling` / `supports_reasoning` from its
/// capabilities. With `check_provider_endpoint`, a wildcard deployment is listed once per model its engine has.
/// Then each alias that is not hidden, as LiteLLM lists them: its target group's deployments again under the
/// alias's name (model pickers such as Cline's offer what this lists).
pub async fn info(State(state): State<AppState>) -> Json<Value> {
    let executor = state.executor();
    let config = &executor.config;
    let discover = config.general.check_provider_endpoint && !config.patterns.is_empty();
    if discover {
        refresh_model_lists(&executor).await;
    }
    let hosts = executor.state.hosts();
    let mut data = Vec::new();
    for d in &config.deployments {
        let host = d.host.and_then(|h| hosts.get(h));
        let engine = d.engine();
        let wildcard = engine.is_some_and(|e| e.upstream_model.contains('*')) && d.model_name.contains('*');
        if discover && wildcard {
            for listed in host.into_iter().flat_map(|h| h.available.iter()) {
                let Some(name) = expand_listing(&d.model_name, listed) else { continue };
                let Some(model) = config.engine_model(d, &name) else { continue };
                let mut params = d.public_params.clone();
                if let Some(e) = engine {
                    params.insert("model".into(), Value::String(format!("{}/{model}", e.engine.prefix)));
                }
                data.push(entry(d, &name, params, host.and_then(|h| facts(h, &model))));
            }
            continue;
        }
        let facts = engine.and_then(|e| host.and_then(|h| facts(h, &e.upstream_model)));
        data.push(entry(d, &d.model_name, d.public_params.clone(), facts));
    }
    for name in &config.alias_order {
        let Some(alias) = config.aliases.get(name) else { continue };
        if alias.hidden || config.groups.contains_key(name) {
            continue;
        }
        let Some(resolved) = config.resolve(name) else { continue };
        for &i in resolved.deployments {
            let d = &config.deployments[i];
            let host = d.host.and_then(|h| hosts.get(h));
            let facts = d.engine().and_then(|e| host.and_then(|h| facts(h, &e.upstream_model)));
            data.push(entry(d, name, d.public_params.clone(), facts));
        }
    }
    Json(json!({"data": data}))
}

/// What the engine host said about `model`.
fn facts<'h>(host: &'h HostState, model: &str) -> Option<&'h ModelFacts> {
    host.models.iter().find(|(m, _)| same_model(m, model)).map(|(_, f)| f)
}

/// One `/model/info` entry.
fn entry(d: &Deployment, name: &str, params: Map<String, Value>, facts: Option<&ModelFacts>) -> Value {
    let mut info: Map<String, Value> = d.model_info.clone();
    info.insert("id".into(), Value::String(d.id.clone()));
    if let Some(facts) = facts {
        if let Some(context) = facts.context_length {
            info.entry("max_input_tokens").or_insert(json!(context));
        }
        let has = |c: &str| facts.capabilities.iter().any(|x| x == c);
        if !facts.capabilities.is_empty() {
            info.entry("supports_vision").or_insert(json!(has("vision")));
            info.entry("supports_function_calling").or_insert(json!(has("tools")));
            info.entry("supports_reasoning").or_insert(json!(has("thinking")));
            if has("embedding") && !has("completion") {
                info.entry("mode").or_insert_with(|| json!("embedding"));
            }
        }
    }
    info.entry("mode").or_insert_with(|| Value::String("chat".into()));
    info.entry("db_model").or_insert(Value::Bool(false));
    if let Some(e) = d.engine() {
        info.insert("litellm_provider".into(), Value::String(e.engine.prefix.into()));
    }
    json!({"model_name": name, "litellm_params": params, "model_info": info})
}
