//! Health: one cheap probe per engine host per interval, never a generation (a probe must not load a model and
//! evict a warm one). Ollama hosts answer `/api/tags` (what is installed) and `/api/ps` (what is loaded);
//! OpenAI-compatible engines answer `/models`. Results feed routing through [`State`], together with what live
//! traffic shows (a refused connection takes the host out at once; an answer brings it back).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;

use crate::config::{Config, Host};
use crate::providers::join_url;
use crate::state::{same_model, ProbeOutcome, Resident, SlotUse, State};
use crate::upstream::HttpClient;

/// Largest probe answer read.
const MAX_PROBE_BODY: usize = 8 * 1024 * 1024;

/// Probes every host now and then every `interval`, until the process ends.
pub async fn run(config: Arc<Config>, state: Arc<State>, client: HttpClient, interval: Duration) {
    let probed = config.hosts.iter().filter(|h| !h.probe_disabled).count();
    tracing::info!("background health checks: {probed} hosts every {interval:?}");
    loop {
        probe_all(&config, &state, &client).await;
        tokio::time::sleep(interval).await;
    }
}

/// Probes every host once, concurrently, and records the results.
pub async fn probe_all(config: &Config, state: &State, client: &HttpClient) {
    probe_hosts(config, state, client, 0..config.hosts.len()).await;
}

/// Probes the hosts with these indices once, concurrently, and records the results.
pub async fn probe_hosts(config: &Config, state: &State, client: &HttpClient, hosts: impl Iterator<Item = usize>) {
    // With health-check routing off, probe results are only reported, never gate routing.
    let stale_after =
        if config.general.health_check_routing { config.general.health_check_staleness } else { Duration::ZERO };
    let checks = hosts
        .filter_map(|i| config.hosts.get(i).map(|h| (i, h)))
        .filter(|(_, h)| !h.probe_disabled)
        .map(|(i, host)| async move { (i, probe(config, host, client).await) });
    for (i, outcome) in futures_util::future::join_all(checks).await {
        let host = &config.hosts[i];
        if let Some(why) = &outcome.failure {
            tracing::warn!("health check of {} failed: {why}", host.origin);
        }
        state.probe_result(i, &host.deployments, outcome, state.now(), stale_after);
    }
}

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

#[derive(Deserialize, Default)]
struct ModelList {
    #[serde(default)]
    data: Vec<ModelEntry>,
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

#[derive(Deserialize, Default)]
struct LlamaMeta {
    n_ctx: Option<u64>,
    size: Option<u64>,
}

/// One of llama.cpp's `/slots`.
#[derive(Deserialize, Default)]
struct LlamaSlot {
    #[serde(default)]
    is_processing: bool,
}

/// One probe of one host: the engine's model list (and, for Ollama, its loaded models).
pub async fn probe(config: &Config, host: &Host, client: &HttpClient) -> ProbeOutcome {
    let started = Instant::now();
    let key = host.api_key.as_ref().map(|k| k.expose());
    let transient_ok = config.general.health_check_ignore_transient_errors;
    let mut llama_cpp = None;
    let mut context = None;
    let fetched = match (&host.ollama_base, &host.openai_base) {
        (Some(base), _) => {
            let tags = get::<Tags>(client, &join_url(base, "/api/tags"), key, host.probe_timeout, transient_ok).await;
            match tags {
                Err(e) => Err(e),
                Ok(tags) => {
                    let ps =
                        get::<Tags>(client, &join_url(base, "/api/ps"), key, host.probe_timeout, transient_ok).await;
                    let resident = ps.ok().map(|ps| {
                        ps.models
                            .iter()
                            .map(|m| Resident {
                                model: m.name().to_owned(),
                                size: m.size,
                                size_vram: m.size_vram,
                                expires_at: m.expires_at.clone(),
                                probed: true,
                            })
                            .collect()
                    });
                    let sizes = tags.models.iter().filter_map(|m| Some((m.name().to_owned(), m.size?))).collect();
                    Ok((tags.models.iter().map(|m| m.name().to_owned()).collect::<Vec<_>>(), resident, sizes))
                }
            }
        }
        (None, Some(base)) => {
            match get::<ModelList>(client, &join_url(base, "/models"), key, host.probe_timeout, transient_ok).await {
                // llama.cpp (and vLLM) answer 503 while the model loads: the host is there, just not ready.
                Err(e) if e.starts_with("status 503") => {
                    return ProbeOutcome { loading: true, latency: started.elapsed(), ..ProbeOutcome::default() };
                }
                Err(e) => Err(e),
                Ok(mut list) if list.data.iter().any(|m| m.owned_by == "llamacpp") => {
                    llama_cpp = Some(llama_slots(client, host, key).await);
                    context = list.data.iter().find_map(|m| m.meta.as_ref().and_then(|meta| meta.n_ctx));
                    // One llama-server serves one model, whatever a request names it (without --alias it lists
                    // the GGUF path): every deployment on the host is served by it, and it is loaded.
                    if let [only] = list.data.as_slice() {
                        let size = only.meta.as_ref().and_then(|meta| meta.size);
                        for &i in &host.deployments {
                            let Some(engine) = config.deployments[i].engine() else { continue };
                            let model = &engine.upstream_model;
                            if !model.contains('*') && !list.data.iter().any(|m| same_model(&m.id, model)) {
                                let meta = Some(LlamaMeta { n_ctx: context, size });
                                list.data.push(ModelEntry { id: model.clone(), owned_by: "llamacpp".into(), meta });
                            }
                        }
                    }
                    let resident = list
                        .data
                        .iter()
                        .map(|m| Resident {
                            model: m.id.clone(),
                            size: m.meta.as_ref().and_then(|meta| meta.size),
                            size_vram: None,
                            expires_at: None,
                            probed: true,
                        })
                        .collect();
                    let sizes = list
                        .data
                        .iter()
                        .filter_map(|m| Some((m.id.clone(), m.meta.as_ref().and_then(|meta| meta.size)?)))
                        .collect();
                    Ok((list.data.into_iter().map(|m| m.id).collect(), Some(resident), sizes))
                }
                Ok(list) => Ok((list.data.into_iter().map(|m| m.id).collect(), None, HashMap::new())),
            }
        }
        (None, None) => Err("no engine endpoint".to_owned()),
    };
    let latency = started.elapsed();
    match fetched {
        Err(failure) => ProbeOutcome { failure: Some(failure), latency, ..ProbeOutcome::default() },
        Ok((available, resident, sizes)) => {
            let mut missing: Vec<String> = Vec::new();
            if !available.is_empty() {
                for &i in &host.deployments {
                    let Some(engine) = config.deployments[i].engine() else { continue };
                    let model = &engine.upstream_model;
                    // A wildcard deployment serves whatever the engine lists.
                    if model.contains('*') {
                        continue;
                    }
                    if !available.iter().any(|a| same_model(a, model)) && !missing.contains(model) {
                        missing.push(model.clone());
                    }
                }
            }
            let slots = llama_cpp.flatten();
            let engine =
                if host.ollama_base.is_some() { Some("ollama") } else { llama_cpp.is_some().then_some("llama.cpp") };
            ProbeOutcome {
                failure: None,
                latency,
                available,
                sizes,
                resident,
                missing,
                loading: false,
                engine,
                slots,
                context,
            }
        }
    }
}

/// llama.cpp's slots (`/slots` at the server's root): how many requests it can run at once and how many it
/// runs now. `None` when the server has the endpoint off (`--no-slots`).
async fn llama_slots(client: &HttpClient, host: &Host, key: Option<&str>) -> Option<SlotUse> {
    let url = join_url(&host.origin, "/slots");
    let slots = get::<Vec<LlamaSlot>>(client, &url, key, host.probe_timeout, false).await.ok()?;
    let busy = slots.iter().filter(|s| s.is_processing).count();
    Some(SlotUse { total: slots.len(), busy })
}

/// GETs and decodes a probe URL; 5xx, time-outs and connection failures are failures (429/408 too, unless
/// transient errors are ignored, in which case the host counts as up with nothing learned).
async fn get<T: for<'de> Deserialize<'de> + Default>(
    client: &HttpClient,
    url: &str,
    key: Option<&str>,
    timeout: Duration,
    transient_ok: bool,
) -> Result<T, String> {
    let mut request = Request::get(url);
    if let Some(key) = key {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let request = request.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
    let response = match tokio::time::timeout(timeout, client.request(request)).await {
        Err(_) => return Err(format!("no answer within {timeout:?}")),
        Ok(Err(e)) => {
            use std::error::Error as _;
            let cause = e.source().map(|s| s.to_string()).unwrap_or_else(|| e.to_string());
            return Err(crate::redact::redact(&cause));
        }
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    if matches!(status.as_u16(), 408 | 429) && transient_ok {
        return Ok(T::default());
    }
    if !status.is_success() {
        return Err(format!("status {status}"));
    }
    let body = http_body_util::Limited::new(response.into_body(), MAX_PROBE_BODY);
    let bytes = match tokio::time::timeout(timeout, body.collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        _ => return Err("the answer did not arrive".to_owned()),
    };
    serde_json::from_slice(&bytes).map_err(|e| format!("unreadable answer: {e}"))
}

/// Whether the models assigned to a host can all stay loaded at once, as far as its declared limits and the
/// sizes the engine reports tell. An LRU eviction costs a reload of 30 s or more, so this is checked up front.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Placement {
    /// `memory_budget` in bytes.
    pub memory_budget: Option<u64>,
    /// `max_loaded_models`.
    pub max_loaded_models: Option<u32>,
    /// Models that must stay loaded.
    pub pinned: Vec<String>,
    /// Each engine model the host's deployments use, with its size when the engine reports one.
    pub assigned: Vec<AssignedModel>,
    /// Their sizes added up (the known ones).
    pub assigned_bytes: u64,
    /// `Some(false)` when they cannot all be loaded together; `None` when a size is unknown and the count fits.
    pub fits: Option<bool>,
    /// Why not, in a sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// One model assigned to a host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AssignedModel {
    /// The engine's model name.
    pub model: String,
    /// Bytes, from `/api/tags`.
    pub size: Option<u64>,
}

/// The placement of `host`'s models under its limits, from what its last probe listed; `None` without limits.
pub fn placement(config: &Config, host: &Host, sizes: &HashMap<String, u64>) -> Option<Placement> {
    let limits = &host.limits;
    if limits.memory_budget.is_none() && limits.max_loaded_models.is_none() && limits.pinned.is_empty() {
        return None;
    }
    let mut assigned: Vec<AssignedModel> = Vec::new();
    for &i in &host.deployments {
        let Some(engine) = config.deployments[i].engine() else { continue };
        let model = &engine.upstream_model;
        if model.contains('*') || assigned.iter().any(|a| same_model(&a.model, model)) {
            continue;
        }
        let size = sizes.iter().find(|(m, _)| same_model(m, model)).map(|(_, s)| *s);
        assigned.push(AssignedModel { model: model.clone(), size });
    }
    let assigned_bytes = assigned.iter().filter_map(|a| a.size).sum();
    let unknown = assigned.iter().filter(|a| a.size.is_none()).count();
    let gb = |b: u64| b as f64 / 1e9;
    let mut problem = None;
    if let Some(max) = limits.max_loaded_models.filter(|&max| assigned.len() > max as usize) {
        problem = Some(format!("{} models are assigned but only {max} can be loaded at once", assigned.len()));
    }
    if let Some(budget) = limits.memory_budget.filter(|&b| assigned_bytes > b) {
        problem = Some(format!(
            "the assigned models need {:.1} GB together, more than the {:.1} GB budget: they cannot all stay loaded",
            gb(assigned_bytes),
            gb(budget)
        ));
    }
    let fits = if problem.is_some() {
        Some(false)
    } else if unknown > 0 && limits.memory_budget.is_some() {
        None
    } else {
        Some(true)
    };
    Some(Placement {
        memory_budget: limits.memory_budget,
        max_loaded_models: limits.max_loaded_models,
        pinned: limits.pinned.clone(),
        assigned,
        assigned_bytes,
        fits,
        problem,
    })
}

/// Loads every pinned model on its Ollama host now, to stay (`/api/generate` with no prompt and
/// `keep_alive: -1`, as Ollama documents), so the first request does not pay the load.
pub async fn preload_pinned(config: &Config, client: &HttpClient) {
    for host in &config.hosts {
        let Some(base) = &host.ollama_base else { continue };
        for model in &host.limits.pinned {
            let body = serde_json::json!({"model": model, "keep_alive": -1}).to_string();
            let mut request = Request::post(join_url(base, "/api/generate"))
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)));
            if let (Ok(request), Some(key)) = (request.as_mut(), &host.api_key) {
                if let Ok(value) = http::HeaderValue::from_str(&format!("Bearer {}", key.expose())) {
                    request.headers_mut().insert(http::header::AUTHORIZATION, value);
                }
            }
            let Ok(request) = request else { continue };
            // A cold load can take minutes; this runs in the background and nothing waits on it.
            let outcome = tokio::time::timeout(Duration::from_secs(600), client.request(request)).await;
            match outcome {
                Ok(Ok(response)) if response.status().is_success() => {
                    let _ = response.into_body().collect().await;
                    tracing::info!("preloaded pinned model {model} on {}", host.origin);
                }
                Ok(Ok(response)) => {
                    tracing::warn!("preloading pinned model {model} on {}: HTTP {}", host.origin, response.status())
                }
                Ok(Err(e)) => tracing::warn!("preloading pinned model {model} on {}: {e}", host.origin),
                Err(_) => tracing::warn!("preloading pinned model {model} on {}: no answer in 10 minutes", host.origin),
            }
        }
    }
}
