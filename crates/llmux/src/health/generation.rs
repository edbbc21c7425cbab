//! Opt-in generation probes (LiteLLM's `health_check_model`): a real, tiny request to one deployment, for users
//! who want to know that a model answers, not only that its engine is up. Off unless a deployment sets the key,
//! because on a home lab a generation loads the model and may evict a warm one.

use std::time::Duration;

use http_body_util::BodyExt;
use serde_json::{json, Value};

use crate::config::{Config, Deployment, GenerationProbe};
use crate::protocol::openai::{Operation, RequestHead};
use crate::providers::Call;
use crate::state::{DeploymentIx, HostStatus, State};
use crate::upstream::HttpClient;

/// Probe timeout when the deployment sets no `health_check_timeout` (LiteLLM's default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends the generation probe of every deployment that opted in (and was not opted out of background checks),
/// concurrently, skipping those whose host is known to be down, and records each result.
pub(super) async fn probe_deployments(config: &Config, state: &State, client: &HttpClient) {
    let hosts = state.hosts();
    let probes = config
        .deployments
        .iter()
        .filter(|d| !d.disable_background_health_check)
        .filter_map(|d| Some((d, d.health_check.as_ref()?)))
        .filter(|(d, _)| d.host.and_then(|h| hosts.get(h)).is_none_or(|h| h.status != HostStatus::Down))
        .map(|(d, probe)| async move {
            let transient_ok = config.general.health_check_ignore_transient_errors;
            (d, generate(d, probe, client, transient_ok).await)
        });
    // Reported for as long as a result stays fresh; out of routing only with enable_health_check_routing.
    let stale_after = config.general.health_check_staleness;
    let gates = config.general.health_check_routing;
    for (d, result) in futures_util::future::join_all(probes).await {
        if let Err(why) = &result {
            tracing::warn!("generation probe of {} ({}) failed: {why}", d.id, d.model_name);
        }
        state.generation_probe(DeploymentIx(d.index), result.err(), state.now(), stale_after, gates);
    }
}

/// The probe request LiteLLM sends for the deployment's mode, with `health_check_params` merged in.
fn probe_body(d: &Deployment, probe: &GenerationProbe) -> (Operation, Vec<u8>) {
    let max_tokens = probe.max_tokens.unwrap_or(1);
    let (op, mut body) = match d.mode.as_deref() {
        Some("embedding") => (Operation::Embeddings, json!({"input": ["test from llmux"]})),
        Some("completion") => (Operation::Completion, json!({"prompt": "test from llmux", "max_tokens": max_tokens})),
        _ => (
            Operation::Chat,
            json!({"messages": [{"role": "user", "content": "What's 1 + 1?"}], "max_tokens": max_tokens}),
        ),
    };
    if let Value::Object(map) = &mut body {
        map.insert("model".into(), Value::String(probe.model.clone()));
        map.extend(probe.params.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    (op, serde_json::to_vec(&body).unwrap_or_default())
}

/// Sends one probe through the deployment's adapter (so an Ollama deployment is asked in Ollama's protocol)
/// and reads the whole answer.
async fn generate(
    d: &Deployment,
    probe: &GenerationProbe,
    client: &HttpClient,
    transient_ok: bool,
) -> Result<(), String> {
    let engine = d.engine().ok_or("not an engine deployment")?;
    let (op, body) = probe_body(d, probe);
    let head = RequestHead::parse(&body, op).map_err(|e| e.to_string())?;
    let call = Call { op, deployment: d, model: &probe.model, body: &body, head: &head, native: None };
    let provider = engine.adapter().provider();
    let upstream = provider.build_request(&call).map_err(|e| e.to_string())?;
    let request = upstream.into_http();
    let timeout = d.health_check_timeout.unwrap_or(DEFAULT_TIMEOUT);
    let exchange = async {
        let response = client.request(request).await.map_err(|e| {
            use std::error::Error as _;
            crate::redact::redact(&e.source().map(|s| s.to_string()).unwrap_or_else(|| e.to_string()))
        })?;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok::<_, String>((parts, bytes))
    };
    let (parts, bytes) = match tokio::time::timeout(timeout, exchange).await {
        Err(_) => return Err(format!("no answer within {timeout:?}")),
        Ok(result) => result?,
    };
    if matches!(parts.status.as_u16(), 408 | 429) && transient_ok {
        return Ok(());
    }
    if !parts.status.is_success() {
        return Err(provider.convert_error(parts.status, &parts.headers, &bytes).to_string());
    }
    provider.convert_response(&call, bytes).map(|_| ()).map_err(|e| e.to_string())
}
