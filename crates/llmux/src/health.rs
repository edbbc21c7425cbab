//! Background health checks: one cheap probe per engine host per interval, never a generation (a probe must
//! not load a model and evict a warm one). A host whose probe fails is tried only after every healthy one
//! until a probe or a live request succeeds again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::config::{Config, EngineTarget};
use crate::providers::{join_url, Adapter};
use crate::state::State;
use crate::upstream::HttpClient;

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// One host to probe and the deployments it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The URL fetched: Ollama's model list (`/api/tags`) or OpenAI's (`/models`).
    pub url: String,
    /// The key to send, if the deployments have one.
    pub api_key: Option<String>,
    /// Indices of the deployments on this host.
    pub deployments: Vec<usize>,
}

/// The probes for `config`: deployments sharing an engine endpoint share one probe.
pub fn probes(config: &Config) -> Vec<Probe> {
    let mut by_url: BTreeMap<String, Probe> = BTreeMap::new();
    for d in &config.deployments {
        let Some(engine) = d.engine() else { continue };
        let url = probe_url(engine);
        let probe = by_url.entry(url.clone()).or_insert_with(|| Probe {
            url,
            api_key: engine.api_key.as_ref().map(|k| k.expose().to_owned()),
            deployments: Vec::new(),
        });
        probe.deployments.push(d.index);
    }
    by_url.into_values().collect()
}

fn probe_url(engine: &EngineTarget) -> String {
    match engine.adapter() {
        Adapter::Ollama { .. } => join_url(&engine.api_base, "/api/tags"),
        Adapter::OpenAiCompatible => join_url(&engine.api_base, "/models"),
    }
}

/// Probes every host now and then every `interval`, until the process ends.
pub async fn run(config: Arc<Config>, state: Arc<State>, client: HttpClient, interval: Duration) {
    let probes = probes(&config);
    tracing::info!("background health checks: {} hosts every {interval:?}", probes.len());
    loop {
        let checks = probes.iter().map(|p| check(&client, p));
        let results = futures_util::future::join_all(checks).await;
        for (probe, result) in probes.iter().zip(results) {
            match result {
                Ok(()) => state.set_host_down(&probe.deployments, false),
                Err(why) => {
                    tracing::warn!("health check {} failed: {why}", probe.url);
                    state.set_host_down(&probe.deployments, true);
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

async fn check(client: &HttpClient, probe: &Probe) -> Result<(), String> {
    let mut request = Request::get(&probe.url);
    if let Some(key) = &probe.api_key {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let request = request.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
    match tokio::time::timeout(PROBE_TIMEOUT, client.request(request)).await {
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        Ok(Err(e)) => Err(crate::redact::redact(&e.to_string())),
        Ok(Ok(r)) if r.status().is_server_error() => Err(format!("status {}", r.status())),
        Ok(Ok(_)) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_probe_per_host_with_the_engines_cheap_listing_route() {
        let yaml = r#"
model_list:
  - model_name: a
    litellm_params: {model: ollama_chat/a, api_base: "http://h1:11434"}
  - model_name: b
    litellm_params: {model: ollama/b, api_base: "http://h1:11434/"}
  - model_name: c
    litellm_params: {model: hosted_vllm/c, api_base: "http://h2:8000/v1", api_key: k}
"#;
        let (config, _) = crate::config::load_str(yaml, &|_| None).unwrap();
        let probes = probes(&config);
        assert_eq!(probes.len(), 2);
        assert_eq!(probes[0].url, "http://h1:11434/api/tags");
        assert_eq!(probes[0].deployments, vec![0, 1]);
        assert_eq!(probes[1].url, "http://h2:8000/v1/models");
        assert_eq!(probes[1].api_key.as_deref(), Some("k"));
    }
}
