//! OpenAI-compatible hosts: `/models`. llama.cpp's server (it lists `owned_by: llamacpp`) says more: the one model
//! it holds loaded, its size and context (`meta`), its capabilities, and how busy its slots are (`/slots`).

use std::collections::HashMap;

use serde::Deserialize;

use super::Probe;
use crate::config::{Config, Host};
use crate::providers::{join_url, profile};
use crate::state::{same_model, ModelFacts, ProbeOutcome, Resident, SlotUse};

#[derive(Deserialize, Default)]
struct ModelList {
    #[serde(default)]
    data: Vec<ModelEntry>,
    /// llama.cpp also answers in Ollama's shape, with capabilities.
    #[serde(default)]
    models: Vec<OllamaStyleEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
    /// `llamacpp` on llama.cpp's server, which serves one loaded model.
    #[serde(default)]
    owned_by: String,
    /// llama.cpp's model facts.
    #[serde(default)]
    meta: Option<LlamaMeta>,
}

#[derive(Deserialize, Clone, Copy, Default)]
struct LlamaMeta {
    n_ctx: Option<u64>,
    size: Option<u64>,
}

#[derive(Deserialize)]
struct OllamaStyleEntry {
    #[serde(default)]
    name: String,
    #[serde(default)]
    capabilities: Vec<String>,
}

/// One of llama.cpp's `/slots`.
#[derive(Deserialize, Default)]
struct LlamaSlot {
    #[serde(default)]
    is_processing: bool,
}

/// Probes an OpenAI-compatible host at `base`.
pub(super) async fn probe(probe: &Probe<'_>, config: &Config, host: &Host, base: &str) -> Result<ProbeOutcome, String> {
    let mut list = match probe.get::<ModelList>(&join_url(base, "/models")).await {
        // llama.cpp (and vLLM) answer 503 while the model loads: the host is there, just not ready.
        Err(e) if e.starts_with("status 503") => return Ok(ProbeOutcome { loading: true, ..ProbeOutcome::default() }),
        Err(e) => return Err(e),
        Ok(list) => list,
    };
    if !list.data.iter().any(|m| m.owned_by == "llamacpp") {
        let available = list.data.into_iter().map(|m| m.id).collect();
        return Ok(ProbeOutcome { available, ..ProbeOutcome::default() });
    }
    let slots = llama_slots(probe, host).await;
    // One llama-server serves one model, whatever a request names it (without --alias it lists the GGUF path):
    // every deployment on the host is served by it, and it is loaded.
    if let [only] = list.data.as_slice() {
        let meta = only.meta;
        let capabilities = list.models.first().map(|m| m.capabilities.clone()).unwrap_or_default();
        for &i in &host.deployments {
            let Some(engine) = config.deployments[i].engine() else { continue };
            let model = &engine.upstream_model;
            if !model.contains('*') && !list.data.iter().any(|m| same_model(&m.id, model)) {
                list.data.push(ModelEntry { id: model.clone(), owned_by: "llamacpp".into(), meta });
                list.models.push(OllamaStyleEntry { name: model.clone(), capabilities: capabilities.clone() });
            }
        }
    }
    let capabilities = |id: &str| list.models.iter().find(|m| m.name == id).map(|m| m.capabilities.clone());
    let mut models = HashMap::new();
    let mut resident = Vec::new();
    let mut sizes = HashMap::new();
    for m in &list.data {
        let meta = m.meta.unwrap_or_default();
        let facts = ModelFacts { context_length: meta.n_ctx, capabilities: capabilities(&m.id).unwrap_or_default() };
        models.insert(m.id.clone(), facts);
        if let Some(size) = meta.size {
            sizes.insert(m.id.clone(), size);
        }
        let loaded = Resident {
            model: m.id.clone(),
            size: meta.size,
            context_length: meta.n_ctx,
            probed: true,
            ..Resident::default()
        };
        resident.push(loaded);
    }
    Ok(ProbeOutcome {
        available: list.data.into_iter().map(|m| m.id).collect(),
        sizes,
        resident: Some(resident),
        engine: Some(&profile::LLAMA_CPP),
        slots,
        models,
        ..ProbeOutcome::default()
    })
}

/// llama.cpp's slots (`/slots` at the server's root): how many requests it can run at once and how many it
/// runs now. `None` when the server has the endpoint off (`--no-slots`).
async fn llama_slots(probe: &Probe<'_>, host: &Host) -> Option<SlotUse> {
    let plain = Probe { transient_ok: false, ..probe.clone() };
    let slots = plain.get::<Vec<LlamaSlot>>(&join_url(&host.origin, "/slots")).await.ok()?;
    let busy = slots.iter().filter(|s| s.is_processing).count();
    Some(SlotUse { total: slots.len(), busy })
}
