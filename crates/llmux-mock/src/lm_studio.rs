//! LM Studio's own model lists, which tell what is loaded: `GET /api/v1/models` (LM Studio 0.4) and
//! `GET /api/v0/models` (0.3.6). With the residency simulation on, loaded means what the simulation holds;
//! otherwise the `loaded` list. An older LM Studio answers 404 on `/api/v1/`: fault that path to act as one.

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::state::Ctx;

/// The served models, each with whether it is loaded now.
fn listing(ctx: &Ctx) -> Vec<(String, bool)> {
    let names = if ctx.cfg.models.is_empty() { &ctx.cfg.loaded } else { &ctx.cfg.models };
    let resident = crate::residency::resident(&ctx.app);
    names
        .iter()
        .map(|name| {
            let loaded = match &resident {
                Some(resident) => resident.iter().any(|m| &m.name == name && !m.loading),
                None => ctx.cfg.loaded.contains(name),
            };
            (name.clone(), loaded)
        })
        .collect()
}

/// Embedding models are told apart by name (`nomic-embed-text`, `text-embedding-…`).
fn is_embedding(name: &str) -> bool {
    name.contains("embed")
}

/// `GET /api/v1/models`.
pub(crate) async fn models_v1(ctx: Ctx) -> Response {
    let models: Vec<Value> = listing(&ctx)
        .into_iter()
        .map(|(name, loaded)| {
            let instances: Vec<Value> = if loaded {
                vec![json!({"id": name, "config": {"context_length": ctx.cfg.context_length}})]
            } else {
                Vec::new()
            };
            let mut model = json!({
                "type": if is_embedding(&name) { "embedding" } else { "llm" },
                "publisher": "llmux-mock",
                "key": name,
                "display_name": name,
                "quantization": {"name": "Q4_K_M", "bits_per_weight": 4},
                "size_bytes": crate::residency::reported_size(&ctx.cfg, &name),
                "params_string": "8B",
                "loaded_instances": instances,
                "max_context_length": ctx.cfg.context_length,
                "format": "gguf",
            });
            if !is_embedding(&name) {
                model["architecture"] = json!("llama");
                model["capabilities"] = json!({"vision": false, "trained_for_tool_use": true});
                model["description"] = Value::Null;
            }
            model
        })
        .collect();
    Json(json!({ "models": models })).into_response()
}

/// `GET /api/v0/models`.
pub(crate) async fn models_v0(ctx: Ctx) -> Response {
    let data: Vec<Value> = listing(&ctx)
        .into_iter()
        .map(|(name, loaded)| {
            let mut model = json!({
                "id": name,
                "object": "model",
                "type": if is_embedding(&name) { "embeddings" } else { "llm" },
                "publisher": "llmux-mock",
                "arch": "llama",
                "compatibility_type": "gguf",
                "quantization": "Q4_K_M",
                "state": if loaded { "loaded" } else { "not-loaded" },
                "max_context_length": ctx.cfg.context_length,
            });
            if loaded {
                model["loaded_context_length"] = json!(ctx.cfg.context_length);
            }
            model
        })
        .collect();
    Json(json!({ "object": "list", "data": data })).into_response()
}
