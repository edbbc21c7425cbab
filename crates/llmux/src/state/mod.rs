//! Routing state shared by every request: what live traffic and health probes taught the router, read by
//! [`crate::router`] as a plain snapshot ([`State::snapshot`]). One concern per file:
//! [`deployments`] (in-flight and usage counters, latencies, load costs, cooldowns), [`hosts`] (health,
//! residency, waking), [`replica`] (what replicas share: changes out through a [`ChangeSink`], their view in
//! as a [`Remote`]) and [`clock`]. The eviction rules the snapshot applies live in [`crate::router::residency`].
//!
//! Time is passed in as [`Millis`] since the state's epoch, so tests drive it without sleeping. Minutes for
//! usage counters are UTC minutes, so replicas count in the same buckets.

/// An index newtype, so deployment and host indices cannot be swapped. It compares with a bare index, as the
/// config still lists them.
macro_rules! index_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub usize);

        impl PartialEq<usize> for $name {
            fn eq(&self, other: &usize) -> bool {
                self.0 == *other
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

pub mod clock;
pub mod deployments;
pub mod hosts;
pub mod replica;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub use clock::Millis;
pub use deployments::{CooldownCause, DeploymentIx, MinuteCounts, OwnedInFlight, PeerUsage, MIN_LOAD};
pub use hosts::{
    same_model, unix_seconds, HostIx, HostState, HostStatus, ModelFacts, ProbeOutcome, Resident, SlotUse,
    UnreachableHook,
};
pub use replica::{ChangeSink, Remote, SharedHost, SharedPrefix};

use clock::{millis, Clock};
use deployments::Slot;

use crate::config::{Config, HostLimits};
use crate::router::affinity::PrefixCache;
use crate::router::residency;
use crate::router::DeploymentView;

/// Per-deployment and per-host state, indexed like `Config::deployments` and `Config::hosts`.
#[derive(Debug)]
pub struct State {
    clock: Clock,
    slots: Vec<Slot>,
    hosts: Vec<Mutex<HostState>>,
    /// Host origins, indexed like `hosts`.
    origins: Vec<Arc<str>>,
    /// What the owner declared about each host's memory, indexed like `hosts`.
    limits: Vec<HostLimits>,
    /// Per host, whether it can be woken (`wake`): then not answering means asleep, not down.
    wakes: Vec<bool>,
    /// Host index by origin, for what other replicas report.
    by_origin: HashMap<Arc<str>, HostIx>,
    /// Woken when a slot-limited deployment finishes a request.
    freed: tokio::sync::Notify,
    /// Where changes go for other replicas, when Redis is configured.
    sink: OnceLock<Arc<dyn ChangeSink>>,
    /// Starts the re-probing of a host found unreachable (installed by the executor, which has the client).
    unreachable_hook: OnceLock<UnreachableHook>,
    /// Woken when a wake-up of a sleeping host ends (it answered, or its patience ran out).
    wake_ended: tokio::sync::Notify,
    /// Which deployment and slot most likely holds which prompt prefix (kept across reloads, shared with other
    /// replicas).
    prefixes: Arc<Mutex<PrefixCache>>,
    /// Reads of what other replicas shared this replica has taken in (kept across reloads).
    remote_reads: Arc<std::sync::atomic::AtomicU64>,
}

impl State {
    /// Fresh state for `config`'s deployments and hosts.
    pub fn new(config: &Config) -> Self {
        let slots: Vec<Slot> = config
            .deployments
            .iter()
            .map(|d| Slot {
                id: Arc::from(d.id.as_str()),
                // Requests also wait for a model on a host with limits, declared or learned from what its engine
                // reports, to go idle (it is never evicted while serving): its end wakes them too.
                limited: d.max_parallel_requests.is_some()
                    || d.host.and_then(|h| config.hosts.get(h)).is_some_and(|h| {
                        h.limits.memory_budget.is_some()
                            || h.limits.max_loaded_models.is_some()
                            || h.profile.reports_residency
                    }),
                host: d.host.map(HostIx),
                upstream_model: d.engine().map(|e| e.upstream_model.clone()).unwrap_or_default(),
                ..Slot::default()
            })
            .collect();
        let origins: Vec<Arc<str>> = config.hosts.iter().map(|h| Arc::from(h.origin.as_str())).collect();
        State {
            clock: Clock::start(),
            by_origin: origins.iter().enumerate().map(|(i, o)| (o.clone(), HostIx(i))).collect(),
            slots,
            hosts: config.hosts.iter().map(|_| Mutex::new(HostState::default())).collect(),
            origins,
            limits: config.hosts.iter().map(|h| h.limits.clone()).collect(),
            wakes: config.hosts.iter().map(|h| h.wake.is_some()).collect(),
            freed: tokio::sync::Notify::new(),
            sink: OnceLock::new(),
            unreachable_hook: OnceLock::new(),
            wake_ended: tokio::sync::Notify::new(),
            prefixes: Arc::default(),
            remote_reads: Arc::default(),
        }
    }

    /// State for `config` after a reload from `old_config`: what `old` learned carries over for hosts at the
    /// same origin (health, residency) and deployments with the same id (cooldowns, counters, latencies), on
    /// the same clock. In-flight counts start at zero: requests still running finish on the old state.
    pub fn successor(old: &State, old_config: &Config, config: &Config) -> Self {
        let mut state = State::new(config);
        state.clock = old.clock;
        if let Some(sink) = old.sink.get() {
            state.attach(sink.clone());
        }
        old.prefix_cache().retain(|id| config.ids.contains_key(id));
        state.prefixes = old.prefixes.clone();
        state.remote_reads = old.remote_reads.clone();
        for (slot, d) in state.slots.iter_mut().zip(&config.deployments) {
            if let Some(inner) = old_config.ids.get(&d.id).and_then(|&i| old.inner(DeploymentIx(i))) {
                *slot.inner.get_mut().unwrap_or_else(|e| e.into_inner()) = inner.clone();
            }
        }
        for (host, h) in state.hosts.iter_mut().zip(&config.hosts) {
            let before = old_config.hosts.iter().position(|o| o.origin == h.origin).and_then(|i| old.host(HostIx(i)));
            if let Some(before) = before {
                let mut copy = before.clone();
                // The old state's re-probe loop ends with it; the new executor starts its own.
                copy.rechecked = false;
                copy.waking = false;
                *host.get_mut().unwrap_or_else(|e| e.into_inner()) = copy;
            }
        }
        state
    }

    /// The prompt-prefix index ([`crate::router::affinity`]).
    pub fn prefix_cache(&self) -> std::sync::MutexGuard<'_, PrefixCache> {
        self.prefixes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The index itself, for what must release its slot later.
    pub fn prefix_index(&self) -> &Arc<Mutex<PrefixCache>> {
        &self.prefixes
    }

    /// The time now on the state clock: what every method takes.
    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// `at` on the state clock as unix ms.
    pub fn to_unix(&self, at: Millis) -> u64 {
        self.clock.unix(at)
    }

    /// Unix ms on the state clock (times before the epoch become 0).
    pub fn from_unix(&self, unix: u64) -> Millis {
        self.clock.local(unix)
    }

    /// The UTC minute `at` falls in.
    pub fn minute_of(&self, at: Millis) -> u64 {
        self.clock.minute_of(at)
    }

    /// What the router sees of `members` (indices into `Config::deployments`, as a group lists them) at `now`,
    /// in the same order.
    pub fn snapshot(&self, members: &[usize], now: Millis, latency_ttl: Option<Duration>) -> Vec<DeploymentView> {
        let minute = self.minute_of(now);
        let ttl = latency_ttl.map(millis);
        members
            .iter()
            .filter_map(|&i| self.slots.get(i))
            .map(|slot| {
                let inner = slot.lock();
                let (sum, fresh) = inner
                    .latencies
                    .iter()
                    .filter(|(_, at)| ttl.is_none_or(|ttl| now.since(*at) <= ttl))
                    .fold((0.0, 0usize), |(sum, n), (v, _)| (sum + v, n + 1));
                let same_minute = inner.minute == minute;
                let peer = inner.peer_now(minute);
                let cooldown_until = inner.cooldown_until();
                let host = slot.host.and_then(|i| self.host(i));
                let unhealthy = host.as_ref().is_some_and(|h| h.down_until > now);
                let warm = host
                    .as_ref()
                    .is_some_and(|h| h.resident.iter().any(|r| same_model(&r.model, &slot.upstream_model)));
                let limits = slot.host.and_then(|i| self.limits.get(i.0));
                let eviction = match (&host, limits) {
                    (Some(h), Some(limits)) if !warm => {
                        let serving = |model: &str| self.serving(slot.host, model);
                        residency::eviction(h, limits, &slot.upstream_model, &serving)
                    }
                    _ => residency::Eviction::default(),
                };
                let context_window = host.as_ref().and_then(|h| {
                    h.models
                        .iter()
                        .find(|(m, _)| same_model(m, &slot.upstream_model))
                        .and_then(|(_, f)| f.context_length)
                });
                DeploymentView {
                    load_cost: inner.load_cost(),
                    service: inner.service,
                    context_window,
                    cooldown_until: if cooldown_until > now { cooldown_until.0 } else { 0 },
                    unhealthy,
                    asleep: unhealthy
                        && slot.host.is_some_and(|i| self.wakes.get(i.0).copied().unwrap_or(false))
                        && host.as_ref().is_some_and(|h| h.unreachable()),
                    probe_failed: inner.probe_failed(now),
                    warm,
                    evicts: eviction.evicts,
                    evicts_pinned: eviction.pinned,
                    evicts_busy: eviction.busy,
                    // A probe saw the engine loading (llama.cpp's 503); loads llmux set off are added by the executor.
                    host_loading: host.as_ref().is_some_and(|h| h.status == HostStatus::Loading),
                    in_flight: slot.in_flight(),
                    latency: (fresh > 0).then(|| sum / fresh as f64),
                    requests_this_minute: if same_minute { inner.requests } else { 0 } + peer.requests,
                    tokens_this_minute: if same_minute { inner.tokens } else { 0 } + peer.tokens,
                    cached: 0,
                    cache_room: false,
                    prefill_rate: inner.speeds.prefill,
                    decode_rate: inner.speeds.decode,
                }
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every deployment of [`state`]'s config.
    pub(crate) const ALL: [usize; 3] = [0, 1, 2];

    /// Deployments 0 and 2 on host h1, deployment 1 on h2; the clock starts on a UTC minute.
    pub(crate) fn state() -> Arc<State> {
        let yaml = r#"
model_list:
  - model_name: a
    litellm_params: {model: ollama_chat/m, api_base: "http://h1:1"}
  - model_name: a
    litellm_params: {model: ollama_chat/m, api_base: "http://h2:1"}
  - model_name: b
    litellm_params: {model: openai/n, api_base: "http://h1:1/v1"}
"#;
        let mut state = State::new(&crate::config::load_str(yaml, &|_| None).unwrap().0);
        // Minutes are UTC minutes: start the tests' clock on a minute boundary.
        state.clock.epoch_unix = 0;
        Arc::new(state)
    }

    #[test]
    fn a_reload_keeps_what_was_learned_about_unchanged_hosts_and_deployments() {
        let load = |yaml: &str| crate::config::load_str(yaml, &|_| None).unwrap().0;
        let before = load(
            "model_list:\n  - model_name: a\n    litellm_params: {model: ollama_chat/m, api_base: \"http://h1:1\"}\n  - model_name: b\n    litellm_params: {model: ollama_chat/m, api_base: \"http://h2:1\"}\n",
        );
        // Entry b moved to the front and a new host appeared; a's params did not change, so neither did its id.
        let after = load(
            "model_list:\n  - model_name: c\n    litellm_params: {model: ollama_chat/m, api_base: \"http://h3:1\"}\n  - model_name: a\n    litellm_params: {model: ollama_chat/m, api_base: \"http://h1:1\"}\n",
        );
        let old = State::new(&before);
        old.cool_down(DeploymentIx(0), Duration::from_secs(30), CooldownCause::Status(500), Millis(1_000));
        old.host_unreachable(HostIx(0), "connection refused", Millis(1_000), Millis(31_000));
        old.host_answered(DeploymentIx(1), "m", Millis(1_000));
        let new = State::successor(&old, &before, &after);
        let view = new.snapshot(&[0, 1], Millis(2_000), None);
        assert_eq!(view[1].cooldown_until, 31_000, "a's cooldown carried over");
        assert!(view[1].unhealthy, "h1 is still down");
        assert_eq!(view[0].cooldown_until, 0);
        assert!(!view[0].unhealthy && !view[0].warm, "h3 is new");
        let hosts = new.hosts();
        assert_eq!(hosts[0].status, HostStatus::Unknown);
        assert_eq!(hosts[1].reason, "connection refused");
    }
}
