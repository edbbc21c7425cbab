//! The gauges read from the routing state when `/metrics` is scraped: deployment health (LiteLLM's
//! `litellm_deployment_state`), requests in flight and queued, and llmux's view of each engine host — status,
//! probe latency, slots, the models resident with their bytes and expiry, what loading each costs.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::executor::Executor;
use crate::router::DeploymentView;
use crate::state::HostStatus;

type Text = Arc<str>;
type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentLabels {
    litellm_model_name: Text,
    model_id: Text,
    api_base: Text,
    api_provider: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupDeploymentLabels {
    model_group: Text,
    litellm_model_name: Text,
    model_id: Text,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    model_group: Text,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabels {
    host: Text,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostStatusLabels {
    host: Text,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostModelLabels {
    host: Text,
    model: Text,
}

/// LiteLLM's deployment state: 0 healthy, 1 partial outage, 2 complete outage.
pub(super) fn deployment_state(view: &DeploymentView, host: Option<HostStatus>, now: u64) -> i64 {
    if view.unhealthy || view.cooldown_until > now || host == Some(HostStatus::Down) {
        2
    } else if view.probe_failed || matches!(host, Some(HostStatus::Degraded | HostStatus::Loading)) {
        1
    } else {
        0
    }
}

fn status_name(status: HostStatus) -> &'static str {
    match status {
        HostStatus::Unknown => "unknown",
        HostStatus::Up => "up",
        HostStatus::Degraded => "degraded",
        HostStatus::Loading => "loading",
        HostStatus::Down => "down",
    }
}

const STATUSES: [HostStatus; 5] =
    [HostStatus::Unknown, HostStatus::Up, HostStatus::Degraded, HostStatus::Loading, HostStatus::Down];

/// Registers the current fleet gauges of `exec` in `registry` (a registry made for one scrape).
pub(super) fn register(registry: &mut Registry, exec: &Executor) {
    let config = &exec.config;
    let state = &exec.state;
    let now = state.now();
    let hosts = state.hosts();
    let all: Vec<usize> = (0..config.deployments.len()).collect();
    let views = state.snapshot(&all, now, None);

    let states = Family::<DeploymentLabels, Gauge>::default();
    let in_flight = Family::<GroupDeploymentLabels, Gauge>::default();
    let cooldown = Family::<GroupDeploymentLabels, FloatGauge>::default();
    let learned_load = Family::<HostModelLabels, FloatGauge>::default();
    for (d, view) in config.deployments.iter().zip(&views) {
        let Some(engine) = d.engine() else { continue };
        let host = d.host.and_then(|h| hosts.get(h)).map(|h| h.status);
        let (model, id): (Text, Text) = (Text::from(d.model.as_str()), Text::from(d.id.as_str()));
        let labels = DeploymentLabels {
            litellm_model_name: model.clone(),
            model_id: id.clone(),
            api_base: Text::from(crate::redact::url(&engine.api_base)),
            api_provider: engine.engine.prefix,
        };
        states.get_or_create(&labels).set(deployment_state(view, host, now.0));
        let grouped = GroupDeploymentLabels {
            model_group: Text::from(d.model_name.as_str()),
            litellm_model_name: model,
            model_id: id,
        };
        in_flight.get_or_create(&grouped).set(i64::from(view.in_flight));
        cooldown.get_or_create(&grouped).set(view.cooldown_until.saturating_sub(now.0) as f64 / 1000.0);
        if let (Some(load), Some(h)) = (view.load_cost, d.host.and_then(|h| config.hosts.get(h))) {
            let labels = HostModelLabels {
                host: Text::from(h.origin.as_str()),
                model: Text::from(engine.upstream_model.as_str()),
            };
            learned_load.get_or_create(&labels).set(load);
        }
    }
    let queued = Family::<GroupLabels, Gauge>::default();
    for group in &config.group_order {
        let n = exec.queued(group);
        queued.get_or_create(&GroupLabels { model_group: Text::from(group.as_str()) }).set(i64::from(n));
    }

    let status = Family::<HostStatusLabels, Gauge>::default();
    let status_age = Family::<HostLabels, FloatGauge>::default();
    let probe_latency = Family::<HostLabels, FloatGauge>::default();
    let slots_total = Family::<HostLabels, Gauge>::default();
    let slots_busy = Family::<HostLabels, Gauge>::default();
    let unloads = Family::<HostLabels, Counter>::default();
    let budget = Family::<HostLabels, Gauge>::default();
    let resident = Family::<HostModelLabels, Gauge>::default();
    let resident_bytes = Family::<HostModelLabels, Gauge>::default();
    let resident_vram = Family::<HostModelLabels, Gauge>::default();
    let expires = Family::<HostModelLabels, FloatGauge>::default();
    for (spec, h) in config.hosts.iter().zip(&hosts) {
        let host = Text::from(spec.origin.as_str());
        let labels = HostLabels { host: host.clone() };
        for s in STATUSES {
            let value = i64::from(h.status == s);
            status.get_or_create(&HostStatusLabels { host: host.clone(), status: status_name(s) }).set(value);
        }
        if h.status != HostStatus::Unknown {
            status_age.get_or_create(&labels).set(now.since(h.since) as f64 / 1000.0);
        }
        if let Some(ms) = h.probe_latency_ms {
            probe_latency.get_or_create(&labels).set(ms as f64 / 1000.0);
        }
        if let Some(slots) = h.slots {
            slots_total.get_or_create(&labels).set(i64::try_from(slots.total).unwrap_or(i64::MAX));
            slots_busy.get_or_create(&labels).set(i64::try_from(slots.busy).unwrap_or(i64::MAX));
        }
        unloads.get_or_create(&labels).inc_by(h.unloads);
        if let Some(bytes) = spec.limits.memory_budget {
            budget.get_or_create(&labels).set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        for r in &h.resident {
            let labels = HostModelLabels { host: host.clone(), model: Text::from(r.model.as_str()) };
            resident.get_or_create(&labels).set(1);
            if let Some(bytes) = r.size {
                resident_bytes.get_or_create(&labels).set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            if let Some(bytes) = r.size_vram {
                resident_vram.get_or_create(&labels).set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            if let Some(at) = r.expires_at.as_deref().and_then(crate::state::unix_seconds) {
                expires.get_or_create(&labels).set(at);
            }
        }
    }

    let reads = Counter::<u64>::default();
    reads.inc_by(state.remote_reads());

    let r = registry;
    r.register(
        "llmux_replica_reads",
        "Reads of the routing state other replicas share through Redis that this replica has taken in",
        reads,
    );
    r.register(
        "litellm_deployment_state",
        "LLM Deployment Analytics - The state of the deployment: 0 = healthy, 1 = partial outage, 2 = complete outage",
        states,
    );
    r.register("llmux_deployment_in_flight", "Requests in flight on each deployment", in_flight);
    r.register("llmux_deployment_cooldown_seconds", "Seconds left in each deployment's cooldown (0: none)", cooldown);
    r.register("llmux_group_queued", "Requests queued for a free slot, by model group", queued);
    r.register("llmux_host_status", "Each engine host's status (1 for the current one)", status);
    r.register("llmux_host_status_age_seconds", "Seconds since each host's status last changed", status_age);
    r.register("llmux_host_probe_latency_seconds", "How long each host's last health probe took", probe_latency);
    r.register("llmux_host_slots", "llama.cpp slots on each host", slots_total);
    r.register("llmux_host_slots_busy", "llama.cpp slots processing a request", slots_busy);
    r.register("llmux_host_memory_budget_bytes", "llmux_settings.hosts memory budget of each host", budget);
    r.register(
        "llmux_model_unloads",
        "Models the probes found gone from a host's memory (evicted or expired)",
        unloads,
    );
    r.register("llmux_model_resident", "Models loaded on each host now (1)", resident);
    r.register(
        "llmux_model_resident_bytes",
        "Memory each loaded model takes, as the engine reports it",
        resident_bytes,
    );
    r.register(
        "llmux_model_resident_vram_bytes",
        "GPU memory each loaded model takes, as the engine reports it",
        resident_vram,
    );
    r.register(
        "llmux_model_expires_timestamp_seconds",
        "When the engine will unload each loaded model (Unix seconds)",
        expires,
    );
    r.register(
        "llmux_model_learned_load_seconds",
        "What llmux learned loading each model on each host costs (cold first byte less warm)",
        learned_load,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_is_out_when_cooling_down_or_its_host_is_down_and_partial_when_degraded() {
        let healthy = DeploymentView::default();
        assert_eq!(deployment_state(&healthy, Some(HostStatus::Up), 10), 0);
        assert_eq!(deployment_state(&healthy, None, 10), 0);
        assert_eq!(deployment_state(&DeploymentView { cooldown_until: 11, ..healthy }, None, 10), 2);
        assert_eq!(deployment_state(&DeploymentView { cooldown_until: 10, ..healthy }, None, 10), 0, "over");
        assert_eq!(deployment_state(&healthy, Some(HostStatus::Down), 10), 2);
        assert_eq!(deployment_state(&DeploymentView { unhealthy: true, ..healthy }, None, 10), 2);
        assert_eq!(deployment_state(&healthy, Some(HostStatus::Degraded), 10), 1);
        assert_eq!(deployment_state(&DeploymentView { probe_failed: true, ..healthy }, None, 10), 1);
    }
}
