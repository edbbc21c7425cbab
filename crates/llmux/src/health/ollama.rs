//! Ollama hosts: `/api/tags` (installed, with sizes), `/api/ps` (loaded, with expiry and context), and
//! `/api/show` once per model for its context length and capabilities (metadata only: it loads nothing).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::Probe;
use crate::config::{Config, Host};
use crate::providers::{join_url, profile};
use crate::state::{same_model, ModelFacts, ProbeOutcome, Resident};
use crate::upstream::HttpClient;

/// Most `/api/show` calls one probe makes; the rest wait for the next probe.
const MAX_SHOWS_PER_PROBE: usize = 16;

#[derive(Deserialize, Default)]
struct Tags {
    #[serde(default)]
    models: Vec<TagModel>,
}

#[derive(Deserialize)]
struct TagModel {
    #[serde(default)]
    name: String,
    #[serde(default)]
    model: String,
    size: Option<u64>,
    size_vram: Option<u64>,
    expires_at: Option<String>,
    /// The context the model was loaded with (`/api/ps`, Ollama 0.6 and later).
    context_length: Option<u64>,
}

impl TagModel {
    fn name(&self) -> &str {
        if self.name.is_empty() {
            &self.model
        } else {
            &self.name
        }
    }
}

/// `/api/show`'s answer, the parts llmux reads.
#[derive(Deserialize, Default)]
struct Show {
    #[serde(default)]
    model_info: Map<String, Value>,
    #[serde(default)]
    capabilities: Vec<String>,
}

impl Show {
    /// `<architecture>.context_length` from the model's metadata.
    fn context_length(&self) -> Option<u64> {
        let arch = self.model_info.get("general.architecture").and_then(Value::as_str);
        let exact = arch.and_then(|a| self.model_info.get(&format!("{a}.context_length")));
        exact
            .or_else(|| self.model_info.iter().find(|(k, _)| k.ends_with(".context_length")).map(|(_, v)| v))
            .and_then(Value::as_u64)
    }
}

/// Probes an Ollama host at `base`; `known` is what earlier probes learned about its models.
pub(super) async fn probe(
    probe: &Probe<'_>,
    config: &Config,
    host: &Host,
    base: &str,
    mut known: HashMap<String, ModelFacts>,
) -> Result<ProbeOutcome, String> {
    let tags: Tags = probe.get(&join_url(base, "/api/tags")).await?;
    // Unknown (not "nothing loaded") when `/api/ps` fails or answers a transient error.
    let ps = probe.get_answer::<Tags>(&join_url(base, "/api/ps")).await;
    let resident = ps.ok().flatten().map(|ps| {
        ps.models
            .iter()
            .map(|m| Resident {
                model: m.name().to_owned(),
                size: m.size,
                size_vram: m.size_vram,
                expires_at: m.expires_at.clone(),
                context_length: m.context_length,
                probed: true,
            })
            .collect()
    });
    let available: Vec<String> = tags.models.iter().map(|m| m.name().to_owned()).collect();
    let sizes = tags.models.iter().filter_map(|m| Some((m.name().to_owned(), m.size?))).collect();

    // Facts are read once per model name; a model removed from the host is forgotten. An empty list (or a
    // transient 429/408 taken as one) says nothing about removals.
    if !available.is_empty() {
        known.retain(|model, _| available.contains(model));
    }
    let wildcard = host
        .deployments
        .iter()
        .any(|&i| config.deployments[i].engine().is_some_and(|e| e.upstream_model.contains('*')));
    let wanted = |model: &str| {
        wildcard
            || host
                .deployments
                .iter()
                .any(|&i| config.deployments[i].engine().is_some_and(|e| same_model(&e.upstream_model, model)))
    };
    let new: Vec<&String> =
        available.iter().filter(|m| !known.contains_key(*m) && wanted(m)).take(MAX_SHOWS_PER_PROBE).collect();
    let shows = new.iter().map(|model| async move {
        let show = probe.post_answer::<Show>(&join_url(base, "/api/show"), &json!({ "model": model })).await;
        (model.to_string(), show)
    });
    for (model, show) in futures_util::future::join_all(shows).await {
        // A failed or transient `/api/show` says nothing about the host's health: it is asked again next time.
        if let Ok(Some(show)) = show {
            known.insert(model, ModelFacts { context_length: show.context_length(), capabilities: show.capabilities });
        }
    }
    Ok(ProbeOutcome {
        available,
        sizes,
        resident,
        engine: Some(&profile::OLLAMA),
        models: known,
        ..ProbeOutcome::default()
    })
}

/// Loads every pinned model on its Ollama host now, to stay (`/api/generate` with no prompt and
/// `keep_alive: -1`, as Ollama documents), so the first request does not pay the load.
pub async fn preload_pinned(config: &Config, client: &HttpClient) {
    for host in &config.hosts {
        for model in &host.limits.pinned {
            preload(host, model, Some(json!(-1)), client).await;
        }
    }
}

/// Loads `model` on Ollama host `host` without generating (an empty `/api/generate`), with `keep_alive` when
/// given; nothing to do on other engines. `false` when the host could not be reached (it may sleep).
pub async fn preload(
    host: &crate::config::Host,
    model: &str,
    keep_alive: Option<serde_json::Value>,
    client: &HttpClient,
) -> bool {
    let Some(base) = host.probe_base.as_ref().filter(|_| host.profile.preloads) else { return true };
    let mut body = json!({"model": model});
    if let Some(keep) = keep_alive {
        body["keep_alive"] = keep;
    }
    let mut request = Request::post(join_url(base, "/api/generate"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())));
    if let (Ok(request), Some(value)) = (request.as_mut(), host.authorization()) {
        request.headers_mut().insert(http::header::AUTHORIZATION, value);
    }
    let Ok(request) = request else { return true };
    // A cold load can take minutes; this runs in the background and nothing waits on it.
    let outcome = tokio::time::timeout(Duration::from_secs(600), client.request(request)).await;
    match outcome {
        Ok(Ok(response)) if response.status().is_success() => {
            let _ = response.into_body().collect().await;
            tracing::info!("preloaded model {model} on {}", host.origin);
            true
        }
        Ok(Ok(response)) => {
            tracing::warn!("preloading model {model} on {}: HTTP {}", host.origin, response.status());
            true
        }
        Ok(Err(e)) => {
            tracing::warn!("preloading model {model} on {}: {e}", host.origin);
            false
        }
        Err(_) => {
            tracing::warn!("preloading model {model} on {}: no answer in 10 minutes", host.origin);
            false
        }
    }
}
