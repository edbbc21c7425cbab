//! LM Studio hosts: its own REST API lists every downloaded model with whether it is loaded, its size and its
//! context (`/api/v1/models`, LM Studio 0.4 and later; `/api/v0/models`, 0.3.6 and later). LM Studio loads
//! models just in time and evicts the previous one, so what is loaded matters to routing as much as on Ollama.

use serde::Deserialize;

use super::Probe;
use crate::config::Host;
use crate::providers::profile;
use crate::state::{ModelFacts, ProbeOutcome, Resident};

/// `/api/v1/models`.
#[derive(Deserialize, Default)]
struct V1List {
    #[serde(default)]
    models: Vec<V1Model>,
}

#[derive(Deserialize)]
struct V1Model {
    key: String,
    #[serde(default, rename = "type")]
    kind: String,
    size_bytes: Option<u64>,
    #[serde(default)]
    loaded_instances: Vec<V1Instance>,
    max_context_length: Option<u64>,
    #[serde(default)]
    capabilities: V1Capabilities,
}

#[derive(Deserialize)]
struct V1Instance {
    #[serde(default)]
    config: V1InstanceConfig,
}

#[derive(Deserialize, Default)]
struct V1InstanceConfig {
    context_length: Option<u64>,
}

#[derive(Deserialize, Default)]
struct V1Capabilities {
    #[serde(default)]
    vision: bool,
    #[serde(default)]
    trained_for_tool_use: bool,
}

/// `/api/v0/models`.
#[derive(Deserialize, Default)]
struct V0List {
    #[serde(default)]
    data: Vec<V0Model>,
}

#[derive(Deserialize)]
struct V0Model {
    id: String,
    /// `llm`, `vlm` or `embeddings`.
    #[serde(default, rename = "type")]
    kind: String,
    /// `loaded` or `not-loaded`.
    #[serde(default)]
    state: String,
    max_context_length: Option<u64>,
    loaded_context_length: Option<u64>,
}

/// Probes an LM Studio host; `None` when it has neither API (an older LM Studio, or not LM Studio at all): the
/// caller then reads the OpenAI-compatible list.
pub(super) async fn probe(probe: &Probe<'_>, host: &Host) -> Option<Result<ProbeOutcome, String>> {
    let not_there = |e: &String| e.starts_with("status 404");
    match probe.get::<V1List>(&format!("{}/api/v1/models", host.origin)).await {
        Ok(list) => return Some(Ok(from_v1(list))),
        Err(e) if !not_there(&e) => return Some(Err(e)),
        Err(_) => {}
    }
    match probe.get::<V0List>(&format!("{}/api/v0/models", host.origin)).await {
        Ok(list) => Some(Ok(from_v0(list))),
        Err(e) if !not_there(&e) => Some(Err(e)),
        Err(_) => None,
    }
}

fn from_v1(list: V1List) -> ProbeOutcome {
    let mut out = outcome();
    for m in list.models {
        let mut capabilities = vec![if m.kind == "embedding" { "embedding" } else { "completion" }.to_owned()];
        if m.capabilities.vision {
            capabilities.push("vision".into());
        }
        if m.capabilities.trained_for_tool_use {
            capabilities.push("tools".into());
        }
        if let Some(instance) = m.loaded_instances.first() {
            let context_length = instance.config.context_length;
            let loaded = Resident {
                model: m.key.clone(),
                size: m.size_bytes,
                context_length,
                probed: true,
                ..Resident::default()
            };
            out.resident.get_or_insert_with(Vec::new).push(loaded);
        }
        if let Some(size) = m.size_bytes {
            out.sizes.insert(m.key.clone(), size);
        }
        out.models.insert(m.key.clone(), ModelFacts { context_length: m.max_context_length, capabilities });
        out.available.push(m.key);
    }
    out
}

fn from_v0(list: V0List) -> ProbeOutcome {
    let mut out = outcome();
    for m in list.data {
        let capabilities: &[&str] = match m.kind.as_str() {
            "embeddings" => &["embedding"],
            "vlm" => &["completion", "vision"],
            _ => &["completion"],
        };
        if m.state == "loaded" {
            let context_length = m.loaded_context_length;
            let loaded = Resident { model: m.id.clone(), context_length, probed: true, ..Resident::default() };
            out.resident.get_or_insert_with(Vec::new).push(loaded);
        }
        let capabilities = capabilities.iter().map(|c| (*c).to_owned()).collect();
        out.models.insert(m.id.clone(), ModelFacts { context_length: m.max_context_length, capabilities });
        out.available.push(m.id);
    }
    out
}

/// An LM Studio probe that found nothing loaded yet (an empty resident list, not an unknown one).
fn outcome() -> ProbeOutcome {
    ProbeOutcome { resident: Some(Vec::new()), engine: Some(&profile::LM_STUDIO), ..ProbeOutcome::default() }
}
