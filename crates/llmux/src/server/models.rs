//! `GET /v1/models` and `GET /model/info` in LiteLLM's shapes.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};

use super::AppState;
use crate::config::{Config, Target};

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

/// Every model group, then every alias that is not hidden, in file order.
pub async fn list(State(state): State<AppState>) -> Json<Value> {
    let executor = state.executor();
    let config = &executor.config;
    let mut data = Vec::new();
    for group in &config.group_order {
        data.push(json!({"id": group, "object": "model", "created": CREATED, "owned_by": owned_by(config, group)}));
    }
    for name in &config.alias_order {
        let Some(alias) = config.aliases.get(name) else { continue };
        if alias.hidden || config.groups.contains_key(name) {
            continue;
        }
        let group = config.resolve(name).map(|r| r.group).unwrap_or(&alias.target);
        data.push(json!({"id": name, "object": "model", "created": CREATED, "owned_by": owned_by(config, group)}));
    }
    Json(json!({"object": "list", "data": data}))
}

/// One entry per deployment with its `litellm_params` (keys removed) and `model_info` (id and mode filled in).
pub async fn info(State(state): State<AppState>) -> Json<Value> {
    let executor = state.executor();
    let config = &executor.config;
    let data: Vec<Value> = config
        .deployments
        .iter()
        .map(|d| {
            let mut info: Map<String, Value> = d.model_info.clone();
            info.insert("id".into(), Value::String(d.id.clone()));
            info.entry("mode").or_insert_with(|| Value::String("chat".into()));
            info.entry("db_model").or_insert(Value::Bool(false));
            if let Some(e) = d.engine() {
                info.insert("litellm_provider".into(), Value::String(e.engine.prefix.into()));
            }
            json!({"model_name": d.model_name, "litellm_params": d.public_params, "model_info": info})
        })
        .collect();
    Json(json!({"data": data}))
}
