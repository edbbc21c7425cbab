//! Routing state shared by every request: what live traffic and health probes taught the router, read by
//! [`crate::router`] as a plain snapshot. In memory; the same interface is meant to gain a Redis backing for
//! replicas.
//!
//! Time is passed in as milliseconds since [`State::epoch`], so tests drive it without sleeping.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Config, ErrorClass};
use crate::router::DeploymentView;

/// Per-deployment and per-host state, indexed like `Config::deployments` and `Config::hosts`.
#[derive(Debug)]
pub struct State {
    epoch: Instant,
    slots: Vec<Slot>,
    hosts: Vec<Mutex<HostState>>,
    /// Woken when a slot-limited deployment finishes a request.
    freed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Slot {
    in_flight: AtomicU32,
    /// The deployment has a `max_parallel_requests`, so waiters care when it frees up.
    limited: bool,
    /// Its host, and the model name the engine knows it by (for residency).
    host: Option<usize>,
    upstream_model: String,
    inner: Mutex<Inner>,
}

/// How a host is doing, as `/health/hosts` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    /// Not probed and not used yet.
    #[default]
    Unknown,
    /// Answering.
    Up,
    /// Answering, but something is wrong (e.g. a configured model is not on it).
    Degraded,
    /// Not answering.
    Down,
}

/// A model loaded on a host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resident {
    /// The engine's model name.
    pub model: String,
    /// Bytes in memory, when the engine says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Bytes in GPU memory, when the engine says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_vram: Option<u64>,
    /// When the engine will unload it, as the engine wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Seen by a probe (true) or inferred from a request llmux routed there (false).
    pub probed: bool,
}

/// What llmux knows about one engine host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostState {
    /// Up, degraded, down or unknown.
    pub status: HostStatus,
    /// Why, in a few words.
    pub reason: String,
    /// When the status last changed (ms on the state clock).
    pub since: u64,
    /// Routing skips the host until this time (0 = not down).
    #[serde(skip)]
    pub down_until: u64,
    /// When the last probe finished.
    pub last_probe: Option<u64>,
    /// How long the last probe took.
    pub probe_latency_ms: Option<u64>,
    /// Models the engine lists (`/api/tags`, `/v1/models`).
    pub available: Vec<String>,
    /// Models loaded now.
    pub resident: Vec<Resident>,
}

/// What one probe of a host found.
#[derive(Debug, Clone, Default)]
pub struct ProbeOutcome {
    /// `None` when the host answered; else why it counts as down.
    pub failure: Option<String>,
    /// How long the probe took.
    pub latency: Duration,
    /// Models listed.
    pub available: Vec<String>,
    /// Models loaded (Ollama's `/api/ps`); `None` when the engine cannot say.
    pub resident: Option<Vec<Resident>>,
    /// Configured models the engine does not list.
    pub missing: Vec<String>,
}

#[derive(Debug, Default, Clone)]
struct Inner {
    cooldown_until: u64,
    cooldown_status: u16,
    /// The minute the counters below belong to.
    minute: u64,
    fails: u32,
    successes: u32,
    requests: u64,
    tokens: u64,
    /// `allowed_fails` counters per error class (`None` = any), each with its expiry.
    allowed_fails: HashMap<Option<ErrorClass>, (u32, u64)>,
    /// Recent latencies (seconds) with the time they were taken.
    latencies: VecDeque<(f64, u64)>,
}

/// Counts of the current minute, read when deciding on a cooldown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinuteCounts {
    /// Failed attempts this minute, including the one being recorded.
    pub fails: u32,
    /// Successful attempts this minute.
    pub successes: u32,
}

/// An owned in-flight guard, for response bodies that outlive the request handler.
#[derive(Debug)]
pub struct OwnedInFlight {
    state: std::sync::Arc<State>,
    index: usize,
}

impl Drop for OwnedInFlight {
    fn drop(&mut self) {
        if let Some(slot) = self.state.slots.get(self.index) {
            slot.in_flight.fetch_sub(1, Ordering::Relaxed);
            if slot.limited {
                self.state.freed.notify_waiters();
            }
        }
    }
}

fn minute_of(ms: u64) -> u64 {
    ms / 60_000
}

impl State {
    /// Fresh state for `config`'s deployments and hosts.
    pub fn new(config: &Config) -> Self {
        let slots = config
            .deployments
            .iter()
            .map(|d| Slot {
                limited: d.max_parallel_requests.is_some(),
                host: d.host,
                upstream_model: d.engine().map(|e| e.upstream_model.clone()).unwrap_or_default(),
                ..Slot::default()
            })
            .collect();
        State {
            epoch: Instant::now(),
            slots,
            hosts: config.hosts.iter().map(|_| Mutex::new(HostState::default())).collect(),
            freed: tokio::sync::Notify::new(),
        }
    }

    /// State for `config` after a reload from `old_config`: what `old` learned carries over for hosts at the
    /// same origin (health, residency) and deployments with the same id (cooldowns, counters, latencies), on
    /// the same clock. In-flight counts start at zero: requests still running finish on the old state.
    pub fn successor(old: &State, old_config: &Config, config: &Config) -> Self {
        let mut state = State::new(config);
        state.epoch = old.epoch;
        for (slot, d) in state.slots.iter_mut().zip(&config.deployments) {
            if let Some(inner) = old_config.ids.get(&d.id).and_then(|&i| old.inner(i)) {
                *slot.inner.get_mut().unwrap_or_else(|e| e.into_inner()) = inner.clone();
            }
        }
        for (host, h) in state.hosts.iter_mut().zip(&config.hosts) {
            let before = old_config.hosts.iter().position(|o| o.origin == h.origin).and_then(|i| old.host(i));
            if let Some(before) = before {
                *host.get_mut().unwrap_or_else(|e| e.into_inner()) = before.clone();
            }
        }
        state
    }

    fn host(&self, host: usize) -> Option<MutexGuard<'_, HostState>> {
        self.hosts.get(host).map(|h| h.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A copy of every host's state, for `/health/hosts`.
    pub fn hosts(&self) -> Vec<HostState> {
        (0..self.hosts.len()).filter_map(|i| self.host(i).map(|h| h.clone())).collect()
    }

    /// A connection to `host` failed on a live request: every deployment on it is skipped until `until`, or
    /// until a probe or a request finds it answering again.
    pub fn host_unreachable(&self, host: usize, reason: &str, now: u64, until: u64) {
        if let Some(mut h) = self.host(host) {
            if h.status != HostStatus::Down {
                h.status = HostStatus::Down;
                h.since = now;
            }
            h.reason = reason.to_owned();
            h.down_until = h.down_until.max(until);
        }
    }

    /// A request on `deployment` succeeded: its host is up, and the model is loaded there now.
    pub fn host_answered(&self, deployment: usize, now: u64) {
        let Some(slot) = self.slots.get(deployment) else { return };
        let Some(mut h) = slot.host.and_then(|i| self.host(i)) else { return };
        if matches!(h.status, HostStatus::Down | HostStatus::Unknown) {
            h.status = HostStatus::Up;
            h.reason = "answered a request".to_owned();
            h.since = now;
        }
        h.down_until = 0;
        if !slot.upstream_model.is_empty() && !h.resident.iter().any(|r| same_model(&r.model, &slot.upstream_model)) {
            h.resident.push(Resident {
                model: slot.upstream_model.clone(),
                size: None,
                size_vram: None,
                expires_at: None,
                probed: false,
            });
        }
    }

    /// Records a probe of `host`. A failed probe keeps the host out of routing for `stale_after` (until the
    /// next probe is due); a successful one lifts a connection cooldown of its deployments.
    pub fn probe_result(
        &self,
        host: usize,
        deployments: &[usize],
        outcome: ProbeOutcome,
        now: u64,
        stale_after: Duration,
    ) {
        if let Some(mut h) = self.host(host) {
            let (status, reason) = match (&outcome.failure, outcome.missing.is_empty()) {
                (Some(why), _) => (HostStatus::Down, why.clone()),
                (None, true) => (HostStatus::Up, "probe answered".to_owned()),
                (None, false) => (HostStatus::Degraded, format!("not on this host: {}", outcome.missing.join(", "))),
            };
            if h.status != status {
                h.since = now;
            }
            h.status = status;
            h.reason = reason;
            h.down_until = if status == HostStatus::Down {
                now.saturating_add(u64::try_from(stale_after.as_millis()).unwrap_or(u64::MAX))
            } else {
                0
            };
            h.last_probe = Some(now);
            h.probe_latency_ms = Some(u64::try_from(outcome.latency.as_millis()).unwrap_or(u64::MAX));
            if outcome.failure.is_none() {
                h.available = outcome.available;
                if let Some(resident) = outcome.resident {
                    h.resident = resident;
                }
            }
        }
        if outcome.failure.is_none() {
            for &i in deployments {
                if let Some(mut inner) = self.inner(i) {
                    if inner.cooldown_status == 0 {
                        inner.cooldown_until = 0;
                    }
                }
            }
        }
    }

    /// Resolves when a slot-limited deployment finishes a request. Create it before checking for a free slot
    /// (and `enable` it), so a slot freed in between is not missed.
    pub fn slot_freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }

    /// Milliseconds since this state was created: the clock every method takes.
    pub fn now(&self) -> u64 {
        self.millis(Instant::now())
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn inner(&self, index: usize) -> Option<MutexGuard<'_, Inner>> {
        // A poisoned lock only means another request panicked mid-update; the counters are still usable.
        self.slots.get(index).map(|s| s.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// What the router sees of `members` at `now`, in the same order.
    pub fn snapshot(&self, members: &[usize], now: u64, latency_ttl: Option<Duration>) -> Vec<DeploymentView> {
        let minute = minute_of(now);
        let ttl = latency_ttl.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        members
            .iter()
            .filter_map(|&i| self.slots.get(i))
            .map(|slot| {
                let inner = slot.inner.lock().unwrap_or_else(|e| e.into_inner());
                let fresh: Vec<f64> = inner
                    .latencies
                    .iter()
                    .filter(|(_, at)| ttl.is_none_or(|ttl| now.saturating_sub(*at) <= ttl))
                    .map(|(v, _)| *v)
                    .collect();
                let same_minute = inner.minute == minute;
                let host = slot.host.and_then(|i| self.host(i));
                let unhealthy = host.as_ref().is_some_and(|h| h.down_until > now);
                let warm = host
                    .as_ref()
                    .is_some_and(|h| h.resident.iter().any(|r| same_model(&r.model, &slot.upstream_model)));
                DeploymentView {
                    cooldown_until: if inner.cooldown_until > now { inner.cooldown_until } else { 0 },
                    unhealthy,
                    warm,
                    in_flight: slot.in_flight.load(Ordering::Relaxed),
                    latency: (!fresh.is_empty()).then(|| fresh.iter().sum::<f64>() / fresh.len() as f64),
                    requests_this_minute: if same_minute { inner.requests } else { 0 },
                    tokens_this_minute: if same_minute { inner.tokens } else { 0 },
                }
            })
            .collect()
    }

    fn roll_minute(inner: &mut Inner, now: u64) {
        let minute = minute_of(now);
        if inner.minute != minute {
            *inner = Inner {
                cooldown_until: inner.cooldown_until,
                cooldown_status: inner.cooldown_status,
                minute,
                allowed_fails: std::mem::take(&mut inner.allowed_fails),
                latencies: std::mem::take(&mut inner.latencies),
                ..Inner::default()
            };
        }
    }

    /// An attempt on deployment `index` starts: counted in flight until the guard drops, and in this minute's
    /// usage (`tokens` is the prompt estimate).
    pub fn start(self: &std::sync::Arc<Self>, index: usize, tokens: u64, now: u64) -> Option<OwnedInFlight> {
        let slot = self.slots.get(index)?;
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
        if let Some(mut inner) = self.inner(index) {
            Self::roll_minute(&mut inner, now);
            inner.requests += 1;
            inner.tokens += tokens;
        }
        Some(OwnedInFlight { state: self.clone(), index })
    }

    /// Deployment `index` answered successfully after `latency`: its host is up, whatever a probe said.
    pub fn record_success(&self, index: usize, latency: Duration, max_samples: usize, now: u64) {
        if let Some(mut inner) = self.inner(index) {
            Self::roll_minute(&mut inner, now);
            inner.successes += 1;
            inner.latencies.push_back((latency.as_secs_f64(), now));
            while inner.latencies.len() > max_samples.max(1) {
                inner.latencies.pop_front();
            }
        }
    }

    /// Deployment `index` failed: counts the failure and returns this minute's counts.
    pub fn record_failure(&self, index: usize, now: u64) -> MinuteCounts {
        let Some(mut inner) = self.inner(index) else { return MinuteCounts::default() };
        Self::roll_minute(&mut inner, now);
        inner.fails += 1;
        MinuteCounts { fails: inner.fails, successes: inner.successes }
    }

    /// Adds one to the `allowed_fails` counter of `class` (expiring after `ttl`) and returns the new count.
    pub fn count_allowed_fail(&self, index: usize, class: Option<ErrorClass>, ttl: Duration, now: u64) -> u32 {
        let Some(mut inner) = self.inner(index) else { return 0 };
        let expiry = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let entry = inner.allowed_fails.entry(class).or_insert((0, expiry));
        if entry.1 <= now {
            *entry = (0, expiry);
        }
        entry.0 += 1;
        entry.0
    }

    /// Puts deployment `index` in cooldown for `duration` from `now`.
    pub fn cool_down(&self, index: usize, duration: Duration, status: u16, now: u64) {
        if let Some(mut inner) = self.inner(index) {
            let until = now.saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
            if until > inner.cooldown_until {
                inner.cooldown_until = until;
                inner.cooldown_status = status;
            }
        }
    }
}

/// Ollama names `qwen3:8b` and `qwen3:8b` are one model, and so are `llama3` and `llama3:latest`.
pub fn same_model(a: &str, b: &str) -> bool {
    a == b || a.strip_suffix(":latest").unwrap_or(a) == b.strip_suffix(":latest").unwrap_or(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const ALL: [usize; 3] = [0, 1, 2];

    fn state() -> Arc<State> {
        let yaml = r#"
model_list:
  - model_name: a
    litellm_params: {model: ollama_chat/m, api_base: "http://h1:1"}
  - model_name: a
    litellm_params: {model: ollama_chat/m, api_base: "http://h2:1"}
  - model_name: b
    litellm_params: {model: openai/n, api_base: "http://h1:1/v1"}
"#;
        Arc::new(State::new(&crate::config::load_str(yaml, &|_| None).unwrap().0))
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
        old.cool_down(0, Duration::from_secs(30), 500, 1_000);
        old.host_unreachable(0, "connection refused", 1_000, 31_000);
        old.host_answered(1, 1_000);
        let new = State::successor(&old, &before, &after);
        let view = new.snapshot(&[0, 1], 2_000, None);
        assert_eq!(view[1].cooldown_until, 31_000, "a's cooldown carried over");
        assert!(view[1].unhealthy, "h1 is still down");
        assert_eq!(view[0].cooldown_until, 0);
        assert!(!view[0].unhealthy && !view[0].warm, "h3 is new");
        let hosts = new.hosts();
        assert_eq!(hosts[0].status, HostStatus::Unknown);
        assert_eq!(hosts[1].reason, "connection refused");
    }

    #[test]
    fn cooldowns_expire_at_their_time() {
        let state = state();
        state.cool_down(1, Duration::from_secs(20), 429, 1_000);
        assert_eq!(state.snapshot(&ALL, 1_000, None)[1].cooldown_until, 21_000);
        assert_eq!(state.snapshot(&ALL, 20_999, None)[1].cooldown_until, 21_000);
        assert_eq!(state.snapshot(&ALL, 21_000, None)[1].cooldown_until, 0);
        assert_eq!(state.snapshot(&ALL, 1_000, None)[0].cooldown_until, 0);
    }

    #[test]
    fn a_refused_connection_takes_the_whole_host_out_until_it_answers() {
        let state = state();
        state.host_unreachable(0, "connection refused", 0, 30_000);
        let view = state.snapshot(&ALL, 10, None);
        assert!(view[0].unhealthy && view[2].unhealthy, "both deployments on h1");
        assert!(!view[1].unhealthy);
        assert!(!state.snapshot(&ALL, 30_000, None)[0].unhealthy, "the passive window ends");
        state.host_unreachable(0, "connection refused", 0, 30_000);
        state.host_answered(2, 20);
        assert!(!state.snapshot(&ALL, 30, None)[0].unhealthy);
        assert_eq!(state.hosts()[0].status, HostStatus::Up);
    }

    #[test]
    fn probes_set_status_residency_and_lift_connection_cooldowns() {
        let state = state();
        state.cool_down(0, Duration::from_secs(60), 0, 0);
        state.cool_down(2, Duration::from_secs(60), 429, 0);
        let down = ProbeOutcome { failure: Some("refused".into()), ..ProbeOutcome::default() };
        state.probe_result(0, &[0, 2], down, 0, Duration::from_secs(1800));
        assert!(state.snapshot(&ALL, 1_000_000, None)[0].unhealthy, "down until the next probe is due");
        let resident =
            Resident { model: "m:latest".into(), size: Some(5), size_vram: None, expires_at: None, probed: true };
        let up = ProbeOutcome {
            available: vec!["m:latest".into()],
            resident: Some(vec![resident]),
            missing: vec!["n".into()],
            ..ProbeOutcome::default()
        };
        state.probe_result(0, &[0, 2], up, 5, Duration::from_secs(1800));
        let view = state.snapshot(&ALL, 10, None);
        assert!(!view[0].unhealthy && view[0].warm, "m:latest is m");
        assert_eq!(view[0].cooldown_until, 0, "the host is back: its connection cooldown ends");
        assert_eq!(view[2].cooldown_until, 60_000, "a 429 cooldown stays");
        let hosts = state.hosts();
        assert_eq!(hosts[0].status, HostStatus::Degraded);
        assert!(hosts[0].reason.contains('n'));
    }

    #[test]
    fn routing_a_model_to_a_host_makes_it_resident_there() {
        let state = state();
        assert!(!state.snapshot(&ALL, 0, None)[1].warm);
        state.host_answered(1, 0);
        assert!(state.snapshot(&ALL, 0, None)[1].warm);
        assert!(!state.snapshot(&ALL, 0, None)[0].warm, "another host");
    }

    #[test]
    fn minute_counters_reset_each_minute() {
        let state = state();
        assert_eq!(state.record_failure(0, 1_000), MinuteCounts { fails: 1, successes: 0 });
        state.record_success(0, Duration::from_millis(5), 10, 2_000);
        assert_eq!(state.record_failure(0, 3_000), MinuteCounts { fails: 2, successes: 1 });
        assert_eq!(state.record_failure(0, 61_000), MinuteCounts { fails: 1, successes: 0 });
    }

    #[test]
    fn allowed_fails_counters_expire() {
        let state = state();
        let ttl = Duration::from_secs(5);
        assert_eq!(state.count_allowed_fail(0, None, ttl, 0), 1);
        assert_eq!(state.count_allowed_fail(0, None, ttl, 1_000), 2);
        assert_eq!(state.count_allowed_fail(0, Some(ErrorClass::RateLimit), ttl, 1_000), 1);
        assert_eq!(state.count_allowed_fail(0, None, ttl, 5_000), 1);
    }

    #[test]
    fn in_flight_and_usage_are_counted_until_the_guard_drops() {
        let state = state();
        let a = state.start(0, 100, 0);
        let b = state.start(0, 50, 10);
        let view = state.snapshot(&ALL, 10, None)[0];
        assert_eq!((view.in_flight, view.requests_this_minute, view.tokens_this_minute), (2, 2, 150));
        drop(a);
        drop(b);
        assert_eq!(state.snapshot(&ALL, 10, None)[0].in_flight, 0);
        assert_eq!(state.snapshot(&ALL, 60_000, None)[0].requests_this_minute, 0);
    }

    #[test]
    fn latency_is_the_mean_of_the_freshest_samples() {
        let state = state();
        for (i, ms) in [100u64, 200, 300].into_iter().enumerate() {
            state.record_success(0, Duration::from_millis(ms), 2, i as u64 * 1_000);
        }
        let view = state.snapshot(&ALL, 2_000, None)[0];
        assert!((view.latency.unwrap() - 0.25).abs() < 1e-9);
        let stale = state.snapshot(&ALL, 10_000, Some(Duration::from_secs(5)))[0];
        assert_eq!(stale.latency, None);
    }
}
