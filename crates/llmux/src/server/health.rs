//! `GET /health` (LiteLLM's shape) and `GET /health/hosts` (llmux's per-host view).

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::AppState;
use crate::error::Error;
use crate::state::{same_model, DeploymentIx, HostStatus, Millis};

/// `?model=` / `?model_id=` filters of `GET /health`.
#[derive(Debug, Deserialize)]
pub struct HealthQuery {
    model: Option<String>,
    model_id: Option<String>,
}

/// Healthy and unhealthy deployments. With background checks on, the last probes answer; otherwise every host
/// is probed now (cheap listings, never a generation). A `model` with no healthy deployment answers 503.
pub async fn health(State(app): State<AppState>, Query(query): Query<HealthQuery>) -> Response {
    let exec = app.executor();
    let config = &exec.config;
    if !config.general.background_health_checks {
        crate::health::probe_all(config, &exec.state, exec.client()).await;
    }
    let members: Vec<usize> = match (&query.model, &query.model_id) {
        (Some(name), _) => match config.resolve(name) {
            Some(r) => r.deployments.to_vec(),
            None => {
                return Error::UnknownModel { route: "/health".into(), model: name.clone() }.into_response();
            }
        },
        (None, Some(id)) => match config.ids.get(id) {
            Some(&i) => vec![i],
            None => return Error::UnknownModel { route: "/health".into(), model: id.clone() }.into_response(),
        },
        (None, None) => (0..config.deployments.len()).collect(),
    };
    let hosts = exec.state.hosts();
    let (mut healthy, mut unhealthy) = (Vec::new(), Vec::new());
    for i in members {
        let d = &config.deployments[i];
        let Some(engine) = d.engine() else { continue };
        let mut entry = Map::new();
        entry.insert("model".into(), Value::String(d.model.clone()));
        entry.insert("model_name".into(), Value::String(d.model_name.clone()));
        entry.insert("model_id".into(), Value::String(d.id.clone()));
        entry.insert("api_base".into(), Value::String(crate::redact::url(&engine.api_base)));
        entry.insert("custom_llm_provider".into(), Value::String(engine.engine.prefix.into()));
        entry.insert("mode".into(), Value::String(d.mode.clone().unwrap_or_else(|| "chat".into())));
        let host = d.host.and_then(|h| hosts.get(h));
        let problem = match host {
            None => Some("never probed".to_owned()),
            Some(h) if matches!(h.status, HostStatus::Down | HostStatus::Loading) => Some(h.reason.clone()),
            Some(h)
                if !engine.upstream_model.contains('*')
                    && !h.available.is_empty()
                    && !h.available.iter().any(|a| same_model(a, &engine.upstream_model)) =>
            {
                Some(format!("model {:?} is not on {}", engine.upstream_model, engine.host()))
            }
            Some(_) => exec.state.generation_failure(DeploymentIx(i), exec.state.now()),
        };
        match problem {
            None => healthy.push(Value::Object(entry)),
            Some(error) => {
                entry.insert("error".into(), Value::String(error));
                unhealthy.push(Value::Object(entry));
            }
        }
    }
    let status = if query.model.is_some() && healthy.is_empty() {
        http::StatusCode::SERVICE_UNAVAILABLE
    } else {
        http::StatusCode::OK
    };
    let body = json!({
        "healthy_endpoints": healthy,
        "unhealthy_endpoints": unhealthy,
        "healthy_count": healthy.len(),
        "unhealthy_count": unhealthy.len(),
    });
    (status, Json(body)).into_response()
}

/// Every engine host: status with reason and age, last probe, installed and loaded models, deployments.
pub async fn hosts(State(app): State<AppState>) -> Json<Value> {
    Json(json!({"hosts": host_list(&app.executor())}))
}

/// How long `POST /llmux/health/round` waits for the background loop's round.
const ROUND_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// `POST /llmux/health/round` (master key): runs a probe round now, through the background loop when there is one
/// (its next round comes early), and answers once it has finished, with the hosts as `GET /health/hosts` lists
/// them. Tests use it instead of sleeping through a `health_check_interval`.
pub async fn round(State(app): State<AppState>) -> Response {
    let exec = app.executor();
    if exec.config.general.background_health_checks {
        if tokio::time::timeout(ROUND_WAIT, exec.health_rounds().run_now()).await.is_err() {
            let why = format!("no health round finished within {ROUND_WAIT:?}");
            return Error::Internal(why).into_response();
        }
    } else {
        crate::health::probe_all(&exec.config, &exec.state, exec.client()).await;
    }
    Json(json!({"hosts": host_list(&exec)})).into_response()
}

/// The prompt of the typical turn `GET /health/hosts` gives each deployment's expected time for (with
/// [`crate::router::speed::TYPICAL_OUTPUT_TOKENS`] of answer).
const TYPICAL_PROMPT_TOKENS: u64 = 1_000;

/// What `GET /health/hosts` lists for each host (also the dashboard's and `llmux status`'s host view).
pub fn host_list(exec: &crate::executor::Executor) -> Vec<Value> {
    let config = &exec.config;
    let now = exec.state.now();
    let ago = |t: Millis| (now.since(t) as f64 / 1000.0 * 10.0).round() / 10.0;
    config
        .hosts
        .iter()
        .zip(exec.state.hosts())
        .map(|(spec, h)| {
            let engine = h.engine.unwrap_or(spec.profile).name;
            let learned = exec.state.snapshot(&spec.deployments, now, None);
            let deployments: Vec<Value> = spec
                .deployments
                .iter()
                .zip(learned)
                .map(|(&i, view)| {
                    let d = &config.deployments[i];
                    let round = |x: f64| (x * 10.0).round() / 10.0;
                    // What speed-aware placement would expect of a typical turn sent there now.
                    let typical = crate::router::Ask { prompt_tokens: TYPICAL_PROMPT_TOKENS, ..Default::default() };
                    json!({
                        "deployment": format!("model_list[{i}]"),
                        "model_name": d.model_name,
                        "model": d.model,
                        "load_seconds": view.load_cost.map(|s| (s * 100.0).round() / 100.0),
                        "prefill_tokens_per_second": view.prefill_rate.map(round),
                        "decode_tokens_per_second": view.decode_rate.map(round),
                        "expected_seconds": crate::router::speed::expected_seconds(&view, &typical).map(|s| (s * 100.0).round() / 100.0),
                    })
                })
                .collect();
            // A host that can be woken and does not answer sleeps (or is being woken), rather than being down.
            let status = match (&spec.wake, h.status) {
                (Some(_), HostStatus::Down) if h.waking => json!("waking"),
                (Some(_), HostStatus::Down) if !h.http_error => json!("asleep"),
                (_, status) => json!(status),
            };
            let wake = spec.wake.as_ref().map(|w| {
                json!({
                    "mac": w.mac_text(),
                    "address": w.address.to_string(),
                    "boot_seconds": w.boot.as_secs_f64(),
                    "wake_for": w.wake_for,
                    "packet_seconds_ago": h.wake_sent.map(ago),
                    "learned_boot_seconds": h.boot_seconds.map(|s| (s * 10.0).round() / 10.0),
                })
            });
            json!({
                "host": spec.origin,
                "engine": engine,
                "status": status,
                "wake": wake,
                "reason": h.reason,
                "since_seconds_ago": (h.status != HostStatus::Unknown).then(|| ago(h.since)),
                "last_probe_seconds_ago": h.last_probe.map(ago),
                "probe_latency_ms": h.probe_latency_ms,
                "probes": if spec.probe_disabled { "disabled" } else if config.general.background_health_checks { "background" } else { "on request (GET /health)" },
                "available_models": h.available,
                "resident_models": h.resident,
                "learned_memory_budget": h.learned_budget,
                "slots": h.slots,
                "models": h.models,
                "placement": crate::health::placement(config, spec, &h.sizes),
                "deployments": deployments,
            })
        })
        .collect()
}
