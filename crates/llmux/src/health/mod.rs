//! Health: one cheap probe per engine host per interval, never a generation (a probe must not load a model and
//! evict a warm one). Each engine family is asked what it has and what it holds loaded, in its own words:
//! Ollama (`/api/tags`, `/api/ps`, `/api/show` once per model), LM Studio (its model list with load state),
//! llama.cpp (`/v1/models` with `meta`, `/slots`) and any other OpenAI-compatible engine (`/models`). Results
//! feed routing through [`State`], together with what live traffic shows (a refused connection takes the host out
//! at once; an answer brings it back). A deployment may opt into a real generation probe
//! ([`generation`], LiteLLM's `health_check_model`).

mod generation;
mod lm_studio;
mod ollama;
mod openai;
mod placement;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;

use crate::config::{Config, Host};
use crate::state::{same_model, ProbeOutcome, State};
use crate::upstream::HttpClient;

pub use ollama::preload_pinned;
pub use placement::{placement, AssignedModel, Placement};

/// Largest probe answer read.
const MAX_PROBE_BODY: usize = 8 * 1024 * 1024;

/// Probes every host now and then every `interval`, until the process ends.
pub async fn run(config: Arc<Config>, state: Arc<State>, client: HttpClient, interval: Duration) {
    let probed = config.hosts.iter().filter(|h| !h.probe_disabled).count();
    let generations = config.deployments.iter().filter(|d| d.health_check.is_some()).count();
    tracing::info!("background health checks: {probed} hosts and {generations} generation probes every {interval:?}");
    loop {
        probe_all(&config, &state, &client).await;
        tokio::time::sleep(interval).await;
    }
}

/// Probes every host once, concurrently, and records the results; then sends the generation probes of the
/// deployments that opted in, on hosts that answered.
pub async fn probe_all(config: &Config, state: &State, client: &HttpClient) {
    probe_hosts(config, state, client, 0..config.hosts.len()).await;
    generation::probe_deployments(config, state, client).await;
}

/// How long a failed probe keeps what it found: with health-check routing off, results are only reported and
/// never gate routing.
fn stale_after(config: &Config) -> Duration {
    if config.general.health_check_routing {
        config.general.health_check_staleness
    } else {
        Duration::ZERO
    }
}

/// Probes the hosts with these indices once, concurrently, and records the results.
pub async fn probe_hosts(config: &Config, state: &State, client: &HttpClient, hosts: impl Iterator<Item = usize>) {
    let stale_after = stale_after(config);
    let checks = hosts
        .filter_map(|i| config.hosts.get(i).map(|h| (i, h)))
        .filter(|(_, h)| !h.probe_disabled)
        .map(|(i, host)| async move { (i, probe(config, host, client, state, i).await) });
    for (i, outcome) in futures_util::future::join_all(checks).await {
        let host = &config.hosts[i];
        if let Some(why) = &outcome.failure {
            tracing::warn!("health check of {} failed: {why}", host.origin);
        }
        state.probe_result(i, &host.deployments, outcome, state.now(), stale_after);
    }
}

/// One probe of one host (index `at` in `config.hosts`): the engine's model list, what it holds loaded, and
/// facts about models not seen before.
pub async fn probe(config: &Config, host: &Host, client: &HttpClient, state: &State, at: usize) -> ProbeOutcome {
    let started = Instant::now();
    let probe = Probe {
        client,
        key: host.api_key.as_ref().map(|k| k.expose()),
        timeout: host.probe_timeout,
        transient_ok: config.general.health_check_ignore_transient_errors,
    };
    let found = match (&host.ollama_base, &host.openai_base) {
        (Some(base), _) => ollama::probe(&probe, config, host, base, state.model_facts(at)).await,
        (None, Some(base)) if host.lm_studio => match lm_studio::probe(&probe, host).await {
            Some(found) => found,
            None => openai::probe(&probe, config, host, base).await,
        },
        (None, Some(base)) => openai::probe(&probe, config, host, base).await,
        (None, None) => Err("no engine endpoint".to_owned()),
    };
    let latency = started.elapsed();
    match found {
        Err(failure) => ProbeOutcome { failure: Some(failure), latency, ..ProbeOutcome::default() },
        Ok(found) if found.loading => ProbeOutcome { latency, ..found },
        Ok(found) => {
            let missing = missing(config, host, &found.available);
            ProbeOutcome { latency, missing, ..found }
        }
    }
}

/// Configured models the engine does not list (none when it lists nothing: it cannot say). A wildcard
/// deployment serves whatever the engine lists.
fn missing(config: &Config, host: &Host, available: &[String]) -> Vec<String> {
    let mut missing: Vec<String> = Vec::new();
    if available.is_empty() {
        return missing;
    }
    for &i in &host.deployments {
        let Some(engine) = config.deployments[i].engine() else { continue };
        let model = &engine.upstream_model;
        if !model.contains('*') && !available.iter().any(|a| same_model(a, model)) && !missing.contains(model) {
            missing.push(model.clone());
        }
    }
    missing
}

/// How one probe talks to its host.
#[derive(Clone, Copy)]
struct Probe<'a> {
    client: &'a HttpClient,
    /// The host's key, sent as a bearer token.
    key: Option<&'a str>,
    timeout: Duration,
    /// `health_check_ignore_transient_errors`: 429 and 408 count as "up, nothing learned".
    transient_ok: bool,
}

impl Probe<'_> {
    /// GETs and decodes a probe URL; 5xx, time-outs and connection failures are failures (429/408 too, unless
    /// transient errors are ignored, in which case the host counts as up with nothing learned).
    async fn get<T: for<'de> Deserialize<'de> + Default>(&self, url: &str) -> Result<T, String> {
        self.get_answer(url).await.map(Option::unwrap_or_default)
    }

    /// As [`Probe::get`], with `None` for an ignored transient error, where an empty answer would mislead.
    async fn get_answer<T: for<'de> Deserialize<'de>>(&self, url: &str) -> Result<Option<T>, String> {
        self.send(Request::get(url), Bytes::new()).await
    }

    /// POSTs a JSON body and decodes the answer; `None` for an ignored transient error (see [`Probe::get`]).
    async fn post_answer<T: for<'de> Deserialize<'de>>(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<Option<T>, String> {
        let request = Request::post(url).header(http::header::CONTENT_TYPE, "application/json");
        self.send(request, Bytes::from(body.to_string())).await
    }

    async fn send<T: for<'de> Deserialize<'de>>(
        &self,
        mut request: http::request::Builder,
        body: Bytes,
    ) -> Result<Option<T>, String> {
        if let Some(key) = self.key {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        let timeout = self.timeout;
        let response = match tokio::time::timeout(timeout, self.client.request(request)).await {
            Err(_) => return Err(format!("no answer within {timeout:?}")),
            Ok(Err(e)) => {
                use std::error::Error as _;
                let cause = e.source().map(|s| s.to_string()).unwrap_or_else(|| e.to_string());
                return Err(crate::redact::redact(&cause));
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if matches!(status.as_u16(), 408 | 429) && self.transient_ok {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(format!("status {status}"));
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_PROBE_BODY);
        let bytes = match tokio::time::timeout(timeout, body.collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            _ => return Err("the answer did not arrive".to_owned()),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("unreadable answer: {e}"))
    }
}
