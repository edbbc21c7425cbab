//! Health: one cheap probe per engine host per interval, never a generation (a probe must not load a model and
//! evict a warm one). Ollama hosts answer `/api/tags` (what is installed) and `/api/ps` (what is loaded);
//! OpenAI-compatible engines answer `/models`. Results feed routing through [`State`], together with what live
//! traffic shows (a refused connection takes the host out at once; an answer brings it back).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;

use crate::config::{Config, Host};
use crate::providers::join_url;
use crate::state::{same_model, ProbeOutcome, Resident, State};
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
}

/// One probe of one host: the engine's model list (and, for Ollama, its loaded models).
pub async fn probe(config: &Config, host: &Host, client: &HttpClient) -> ProbeOutcome {
    let started = Instant::now();
    let key = host.api_key.as_ref().map(|k| k.expose());
    let transient_ok = config.general.health_check_ignore_transient_errors;
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
                    Ok((tags.models.iter().map(|m| m.name().to_owned()).collect::<Vec<_>>(), resident))
                }
            }
        }
        (None, Some(base)) => {
            get::<ModelList>(client, &join_url(base, "/models"), key, host.probe_timeout, transient_ok)
                .await
                .map(|list| (list.data.into_iter().map(|m| m.id).collect(), None))
        }
        (None, None) => Err("no engine endpoint".to_owned()),
    };
    let latency = started.elapsed();
    match fetched {
        Err(failure) => ProbeOutcome { failure: Some(failure), latency, ..ProbeOutcome::default() },
        Ok((available, resident)) => {
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
            ProbeOutcome { failure: None, latency, available, resident, missing }
        }
    }
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
