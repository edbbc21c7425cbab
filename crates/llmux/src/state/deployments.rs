//! Per-deployment state: requests in flight, the minute's usage (rpm/tpm, failure counts), latencies, the
//! learned cost of loading a model, cooldowns and the generation probe's verdict.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::clock::{millis, smooth, Millis};
use super::hosts::{same_model, HostIx};
use super::State;
use crate::config::ErrorClass;
use crate::router::speed::{Speeds, Timings};

index_type! {
    /// A deployment's index in `Config::deployments` (and in the state's per-deployment table).
    DeploymentIx
}

/// Why a deployment cools down: a probe that finds the host answering again lifts a cooldown for an unreachable
/// host, never one for an error the engine returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CooldownCause {
    /// The engine could not be reached (refused, reset, DNS, connect timeout).
    Unreachable,
    /// The engine answered with this HTTP status.
    Status(u16),
}

impl CooldownCause {
    /// The cause as replicas share it: 0 for an unreachable host, else the status.
    pub fn tag(self) -> u16 {
        match self {
            CooldownCause::Unreachable => 0,
            CooldownCause::Status(status) => status,
        }
    }
}

/// The shortest `load_duration` that counts as a model load (a warm Ollama model reports a few milliseconds).
pub const MIN_LOAD: Duration = Duration::from_millis(250);

#[derive(Debug, Default)]
pub(super) struct Slot {
    /// The deployment's id, the key replicas share it under.
    pub(super) id: Arc<str>,
    pub(super) in_flight: AtomicU32,
    /// Requests other replicas have in flight on it.
    pub(super) peer_in_flight: AtomicU32,
    /// The deployment has a `max_parallel_requests`, so waiters care when it frees up.
    pub(super) limited: bool,
    /// Its host, and the model name the engine knows it by (for residency).
    pub(super) host: Option<HostIx>,
    pub(super) upstream_model: String,
    pub(super) inner: std::sync::Mutex<Inner>,
}

impl Slot {
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means another request panicked mid-update; the counters are still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests in flight on it here and on other replicas.
    pub(super) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed) + self.peer_in_flight.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default, Clone)]
pub(super) struct Inner {
    pub(super) cooldown_until: Millis,
    /// Why this replica last cooled it down (`None`: never).
    pub(super) cooldown_cause: Option<CooldownCause>,
    /// A cooldown another replica set (0 = none).
    pub(super) remote_cooldown_until: Millis,
    /// Other replicas' counts for the UTC minute `peer.minute`.
    pub(super) peer: PeerUsage,
    /// The minute the counters below belong to.
    pub(super) minute: u64,
    fails: u32,
    successes: u32,
    pub(super) requests: u64,
    pub(super) tokens: u64,
    /// `allowed_fails` counters per error class (`None` = any), each with its expiry.
    allowed_fails: HashMap<Option<ErrorClass>, (u32, Millis)>,
    /// Recent latencies (seconds) with the time they were taken.
    pub(super) latencies: VecDeque<(f64, Millis)>,
    /// Smoothed time to the first byte of a stream when the model was already loaded, and when it was not.
    warm_first_byte: Option<f64>,
    cold_first_byte: Option<f64>,
    /// Smoothed seconds a request holds the deployment, start to last byte (streams included).
    pub(super) service: Option<f64>,
    /// Smoothed seconds the engine said it spent loading the model, when it had to (Ollama's `load_duration`).
    engine_load: Option<f64>,
    /// Prefill and decode rates learned from the timings the engine reports.
    pub(super) speeds: Speeds,
    /// The opt-in generation probe (`health_check_model`) failed: why, and until when that keeps the deployment
    /// out of routing.
    probe_failure: Option<(String, Millis)>,
    /// ... and whether that keeps it out of routing (`enable_health_check_routing`) or is only reported.
    probe_failure_gates: bool,
}

impl Inner {
    /// The later of this replica's and the others' cooldowns.
    pub(super) fn cooldown_until(&self) -> Millis {
        self.cooldown_until.max(self.remote_cooldown_until)
    }

    /// Whether the generation probe's failure keeps the deployment out of routing at `now`.
    pub(super) fn probe_failed(&self, now: Millis) -> bool {
        self.probe_failure_gates && self.probe_failure.as_ref().is_some_and(|(_, until)| *until > now)
    }

    /// Seconds a stream waits for the model to be loaded: the engine's own figure when it gives one, else what
    /// llmux measured (cold first byte minus warm first byte).
    pub(super) fn load_cost(&self) -> Option<f64> {
        self.engine_load
            .or_else(|| self.cold_first_byte.map(|cold| (cold - self.warm_first_byte.unwrap_or(0.0)).max(0.0)))
    }

    /// Other replicas' usage, when it is of the current minute.
    pub(super) fn peer_now(&self, minute: u64) -> PeerUsage {
        if self.peer.minute == minute {
            self.peer
        } else {
            PeerUsage::default()
        }
    }
}

/// The change that turns `counted` tokens into `total` (saturating at `i64`'s range).
fn token_delta(counted: u64, total: u64) -> i64 {
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    clamp(total).saturating_sub(clamp(counted))
}

/// Other replicas' usage of one deployment in one UTC minute.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerUsage {
    /// The UTC minute (unix ms / 60,000).
    pub minute: u64,
    /// Requests started.
    pub requests: u64,
    /// Tokens: prompt estimates when attempts start, corrected to what the engine reported when it did.
    pub tokens: u64,
    /// Failed attempts.
    pub fails: u64,
    /// Successful attempts.
    pub successes: u64,
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
    state: Arc<State>,
    index: DeploymentIx,
    started: Instant,
    /// The tokens this attempt put in the usage of minute `minute` (the prompt estimate, until the engine says).
    counted: u64,
    minute: u64,
    /// Held until the attempt ends (a prompt-cache slot's lease).
    attached: Option<Attached>,
}

/// Something an attempt holds until it ends.
pub struct Attached {
    _held: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Attached")
    }
}

impl OwnedInFlight {
    /// The answer was delivered whole (a stream to its end): how long it took is a sample of how long a request
    /// holds this deployment, which is what a request queued behind it waits for.
    pub fn served(&self) {
        if let Some(mut inner) = self.state.inner(self.index) {
            inner.service = Some(smooth(inner.service, self.started.elapsed()));
        }
    }

    /// Holds `held` until the attempt ends (its answer's last byte, or its failure).
    pub fn attach(&mut self, held: Box<dyn Send + Sync>) {
        self.attached = Some(Attached { _held: held });
    }

    /// The engine said loading the model for this answer took `load` (see [`State::record_load`]).
    pub fn loaded(&self, load: Duration) {
        self.state.record_load(self.index, load);
    }

    /// The engine reported how long reading the prompt and writing the answer took (see
    /// [`State::record_timings`]).
    pub fn timed(&self, timings: &Timings) {
        self.state.record_timings(self.index, timings);
    }

    /// The engine reported `total` tokens (prompt and completion) for this answer: the minute's usage counts
    /// that instead of the prompt estimate counted at the start, as LiteLLM counts the usage an engine reports
    /// (`tpm` limits and `usage-based-routing-v2` read it). See [`State::correct_tokens`].
    pub fn used(&mut self, total: u64) {
        let now = self.state.now();
        self.state.correct_tokens(self.index, self.minute, self.counted, total, now);
        self.counted = total;
        self.minute = self.state.minute_of(now);
    }
}

impl Drop for OwnedInFlight {
    fn drop(&mut self) {
        if let Some(slot) = self.state.slots.get(self.index.0) {
            slot.in_flight.fetch_sub(1, Ordering::Relaxed);
            if slot.limited {
                self.state.freed.notify_waiters();
            }
        }
    }
}

impl State {
    pub(super) fn inner(&self, index: DeploymentIx) -> Option<MutexGuard<'_, Inner>> {
        self.slots.get(index.0).map(Slot::lock)
    }

    /// Resolves when a slot-limited deployment finishes a request. Create it before checking for a free slot
    /// (and `enable` it), so a slot freed in between is not missed.
    pub fn slot_freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }

    /// Wakes the requests waiting for a slot to look again (one left the queue ahead of them).
    pub fn queue_moved(&self) {
        self.freed.notify_waiters();
    }

    /// Whether `model` is serving requests on `host` now (through any deployment, here or on a replica).
    pub(super) fn serving(&self, host: Option<HostIx>, model: &str) -> bool {
        host.is_some()
            && self.slots.iter().any(|s| s.host == host && same_model(&s.upstream_model, model) && s.in_flight() > 0)
    }

    fn roll_minute(&self, inner: &mut Inner, now: Millis) {
        let minute = self.minute_of(now);
        if inner.minute != minute {
            *inner = Inner {
                cooldown_until: inner.cooldown_until,
                cooldown_cause: inner.cooldown_cause,
                remote_cooldown_until: inner.remote_cooldown_until,
                peer: inner.peer,
                minute,
                allowed_fails: std::mem::take(&mut inner.allowed_fails),
                latencies: std::mem::take(&mut inner.latencies),
                // What was learned about loading and probing outlives the minute's counters.
                warm_first_byte: inner.warm_first_byte,
                cold_first_byte: inner.cold_first_byte,
                engine_load: inner.engine_load,
                speeds: inner.speeds,
                service: inner.service,
                probe_failure: inner.probe_failure.take(),
                probe_failure_gates: inner.probe_failure_gates,
                ..Inner::default()
            };
        }
    }

    /// An attempt on deployment `index` starts: counted in flight until the guard drops, and in this minute's
    /// usage (`tokens` is the prompt estimate).
    pub fn start(self: &Arc<Self>, index: DeploymentIx, tokens: u64, now: Millis) -> Option<OwnedInFlight> {
        let slot = self.slots.get(index.0)?;
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
        if let Some(mut inner) = self.inner(index) {
            self.roll_minute(&mut inner, now);
            inner.requests += 1;
            inner.tokens += tokens;
        }
        let minute = self.minute_of(now);
        if let Some(sink) = self.sink() {
            sink.usage(&slot.id, PeerUsage { minute, requests: 1, tokens, ..PeerUsage::default() });
        }
        Some(OwnedInFlight {
            state: self.clone(),
            index,
            started: Instant::now(),
            counted: tokens,
            minute,
            attached: None,
        })
    }

    /// Deployment `index`'s answer used `total` tokens, where `counted` were put in the usage of minute
    /// `minute` for it. Within that minute only the difference is applied (the count never going below zero);
    /// once the minute is over, the whole `total` counts in the current one (the minute the answer ended in, as
    /// LiteLLM counts it), the old minute keeping the estimate. Other replicas get the same change.
    pub fn correct_tokens(&self, index: DeploymentIx, minute: u64, counted: u64, total: u64, now: Millis) {
        let Some(slot) = self.slots.get(index.0) else { return };
        let current = self.minute_of(now);
        let delta = if current == minute { token_delta(counted, total) } else { token_delta(0, total) };
        if delta == 0 {
            return;
        }
        if let Some(mut inner) = self.inner(index) {
            self.roll_minute(&mut inner, now);
            inner.tokens = inner.tokens.saturating_add_signed(delta);
        }
        if let Some(sink) = self.sink() {
            sink.tokens(&slot.id, current, delta);
        }
    }

    /// Deployment `index` answered successfully after `latency`: its host is up, whatever a probe said.
    pub fn record_success(&self, index: DeploymentIx, latency: Duration, max_samples: usize, now: Millis) {
        self.count_outcome(index, now, false);
        if let Some(mut inner) = self.inner(index) {
            self.roll_minute(&mut inner, now);
            inner.successes += 1;
            inner.probe_failure = None;
            inner.latencies.push_back((latency.as_secs_f64(), now));
            while inner.latencies.len() > max_samples.max(1) {
                inner.latencies.pop_front();
            }
        }
    }

    /// A stream on deployment `index` sent its first byte after `first_byte`; `cold` when the model was not
    /// known to be loaded on its host. The difference between the two is the learned cost of loading it there.
    pub fn record_first_byte(&self, index: DeploymentIx, first_byte: Duration, cold: bool) {
        if let Some(mut inner) = self.inner(index) {
            let slot = if cold { &mut inner.cold_first_byte } else { &mut inner.warm_first_byte };
            *slot = Some(smooth(*slot, first_byte));
        }
    }

    /// The engine said it spent `load` loading deployment `index`'s model for an answer. Loads shorter than
    /// [`MIN_LOAD`] are a warm model's bookkeeping, not a load, and teach nothing.
    pub fn record_load(&self, index: DeploymentIx, load: Duration) {
        if load < MIN_LOAD {
            return;
        }
        if let Some(mut inner) = self.inner(index) {
            inner.engine_load = Some(smooth(inner.engine_load, load));
        }
    }

    /// The engine behind deployment `index` reported `timings` for an answer: its prefill and decode rates.
    pub fn record_timings(&self, index: DeploymentIx, timings: &Timings) {
        if let Some(mut inner) = self.inner(index) {
            inner.speeds.learn(timings);
        }
    }

    /// The rates learned for deployment `index`.
    pub fn speeds(&self, index: DeploymentIx) -> Speeds {
        self.inner(index).map(|inner| inner.speeds).unwrap_or_default()
    }

    /// Deployment `index` failed: counts the failure and returns this minute's counts.
    pub fn record_failure(&self, index: DeploymentIx, now: Millis) -> MinuteCounts {
        self.count_outcome(index, now, true);
        let Some(mut inner) = self.inner(index) else { return MinuteCounts::default() };
        self.roll_minute(&mut inner, now);
        inner.fails += 1;
        let peer = inner.peer_now(inner.minute);
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        MinuteCounts {
            fails: inner.fails.saturating_add(clamp(peer.fails)),
            successes: inner.successes.saturating_add(clamp(peer.successes)),
        }
    }

    fn count_outcome(&self, index: DeploymentIx, now: Millis, failed: bool) {
        if let (Some(sink), Some(slot)) = (self.sink(), self.slots.get(index.0)) {
            let usage = PeerUsage {
                minute: self.minute_of(now),
                fails: u64::from(failed),
                successes: u64::from(!failed),
                ..PeerUsage::default()
            };
            sink.usage(&slot.id, usage);
        }
    }

    /// Adds one to the `allowed_fails` counter of `class` (expiring after `ttl`) and returns the new count.
    pub fn count_allowed_fail(
        &self,
        index: DeploymentIx,
        class: Option<ErrorClass>,
        ttl: Duration,
        now: Millis,
    ) -> u32 {
        let Some(mut inner) = self.inner(index) else { return 0 };
        let expiry = now.after(ttl);
        let entry = inner.allowed_fails.entry(class).or_insert((0, expiry));
        if entry.1 <= now {
            *entry = (0, expiry);
        }
        entry.0 += 1;
        entry.0
    }

    /// Puts deployment `index` in cooldown for `duration` from `now`, for `cause`.
    pub fn cool_down(&self, index: DeploymentIx, duration: Duration, cause: CooldownCause, now: Millis) {
        if let Some(mut inner) = self.inner(index) {
            let until = now.after(duration);
            if until > inner.cooldown_until {
                inner.cooldown_until = until;
                inner.cooldown_cause = Some(cause);
            }
        }
        if let (Some(sink), Some(slot)) = (self.sink(), self.slots.get(index.0)) {
            sink.cooldown(&slot.id, self.to_unix(now).saturating_add(millis(duration)), cause);
        }
    }

    /// The host of `deployments` answered a probe: their cooldowns for an unreachable host end (here and, through
    /// the sink, on other replicas). Another replica's cooldown is lifted too unless this replica last cooled
    /// the deployment down for an error status.
    pub(super) fn lift_unreachable_cooldowns(&self, deployments: &[usize], now: Millis) {
        for &i in deployments {
            let index = DeploymentIx(i);
            let Some(mut inner) = self.inner(index) else { continue };
            let liftable = !matches!(inner.cooldown_cause, Some(CooldownCause::Status(_)));
            if liftable && inner.cooldown_until() > now {
                inner.cooldown_until = Millis::default();
                inner.remote_cooldown_until = Millis::default();
                if let (Some(sink), Some(slot)) = (self.sink(), self.slots.get(i)) {
                    sink.lift(&slot.id);
                }
            }
        }
    }

    /// The result of deployment `index`'s generation probe: a failure is reported for `stale_after` (or until a
    /// probe or a request succeeds) and, when `gates`, keeps the deployment out of routing meanwhile; `None`
    /// clears it.
    pub fn generation_probe(
        &self,
        index: DeploymentIx,
        failure: Option<String>,
        now: Millis,
        stale_after: Duration,
        gates: bool,
    ) {
        if let Some(mut inner) = self.inner(index) {
            let until = now.after(stale_after);
            inner.probe_failure = failure.map(|why| (why, until));
            inner.probe_failure_gates = gates;
        }
    }

    /// Why deployment `index`'s generation probe failed, while that still counts.
    pub fn generation_failure(&self, index: DeploymentIx, now: Millis) -> Option<String> {
        let inner = self.inner(index)?;
        inner.probe_failure.as_ref().filter(|(_, until)| *until > now).map(|(why, _)| why.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::{state, ALL};

    const D0: DeploymentIx = DeploymentIx(0);
    const D1: DeploymentIx = DeploymentIx(1);

    #[test]
    fn the_cost_of_loading_a_model_is_learned_from_cold_and_warm_first_bytes() {
        let state = state();
        let cost = || state.snapshot(&ALL, Millis(0), None)[0].load_cost;
        assert_eq!(cost(), None);
        state.record_first_byte(D0, Duration::from_millis(8_200), true);
        assert!((cost().unwrap() - 8.2).abs() < 1e-9);
        state.record_first_byte(D0, Duration::from_millis(200), false);
        assert!((cost().unwrap() - 8.0).abs() < 1e-9, "minus the warm time");
        state.record_first_byte(D0, Duration::from_millis(4_200), true);
        let smoothed = cost().unwrap();
        assert!(smoothed > 4.0 && smoothed < 8.0, "{smoothed}");
        // The engine's own figure, when it gives one, beats the measured difference; a warm model's few
        // milliseconds of bookkeeping are not a load.
        state.record_load(D0, Duration::from_millis(30));
        assert!((cost().unwrap() - smoothed).abs() < 1e-9);
        state.record_load(D0, Duration::from_millis(9_500));
        assert!((cost().unwrap() - 9.5).abs() < 1e-9);
    }

    #[test]
    fn cooldowns_expire_at_their_time() {
        let state = state();
        let until = |d: usize, now| state.snapshot(&ALL, Millis(now), None)[d].cooldown_until;
        state.cool_down(D1, Duration::from_secs(20), CooldownCause::Status(429), Millis(1_000));
        assert_eq!(until(1, 1_000), 21_000);
        assert_eq!(until(1, 20_999), 21_000);
        assert_eq!(until(1, 21_000), 0);
        assert_eq!(until(0, 1_000), 0);
    }

    #[test]
    fn minute_counters_reset_each_minute() {
        let state = state();
        assert_eq!(state.record_failure(D0, Millis(1_000)), MinuteCounts { fails: 1, successes: 0 });
        state.record_success(D0, Duration::from_millis(5), 10, Millis(2_000));
        assert_eq!(state.record_failure(D0, Millis(3_000)), MinuteCounts { fails: 2, successes: 1 });
        assert_eq!(state.record_failure(D0, Millis(61_000)), MinuteCounts { fails: 1, successes: 0 });
    }

    #[test]
    fn allowed_fails_counters_expire() {
        let state = state();
        let ttl = Duration::from_secs(5);
        assert_eq!(state.count_allowed_fail(D0, None, ttl, Millis(0)), 1);
        assert_eq!(state.count_allowed_fail(D0, None, ttl, Millis(1_000)), 2);
        assert_eq!(state.count_allowed_fail(D0, Some(ErrorClass::RateLimit), ttl, Millis(1_000)), 1);
        assert_eq!(state.count_allowed_fail(D0, None, ttl, Millis(5_000)), 1);
    }

    #[test]
    fn in_flight_and_usage_are_counted_until_the_guard_drops() {
        let state = state();
        let a = state.start(D0, 100, Millis(0));
        let b = state.start(D0, 50, Millis(10));
        let view = state.snapshot(&ALL, Millis(10), None)[0];
        assert_eq!((view.in_flight, view.requests_this_minute, view.tokens_this_minute), (2, 2, 150));
        drop(a);
        drop(b);
        assert_eq!(state.snapshot(&ALL, Millis(10), None)[0].in_flight, 0);
        assert_eq!(state.snapshot(&ALL, Millis(60_000), None)[0].requests_this_minute, 0);
    }

    #[test]
    fn the_minutes_tokens_are_corrected_to_what_the_engine_reported() {
        let state = state();
        let mut a = state.start(D0, 100, Millis(0)).unwrap();
        let mut b = state.start(D0, 50, Millis(10)).unwrap();
        let tokens = |now| state.snapshot(&ALL, Millis(now), None)[0].tokens_this_minute;
        // The engine says the first answer used 400 tokens: 400 + the second's estimate.
        a.used(400);
        assert_eq!(tokens(20), 450);
        a.used(400);
        assert_eq!(tokens(20), 450, "told again, nothing changes");
        // Fewer than estimated: the difference comes off.
        b.used(20);
        assert_eq!(tokens(20), 420);
        // Never below zero, even when told of more estimate than the minute holds.
        state.correct_tokens(D1, 0, 500, 20, Millis(30));
        assert_eq!(state.snapshot(&ALL, Millis(30), None)[1].tokens_this_minute, 0);
        // An answer that ends in the next minute counts whole there; the old minute keeps its estimate.
        state.correct_tokens(D0, 0, 100, 300, Millis(61_000));
        assert_eq!(tokens(61_000), 300);
        assert_eq!(token_delta(u64::MAX, 0), -i64::MAX);
    }

    #[test]
    fn latency_is_the_mean_of_the_freshest_samples() {
        let state = state();
        for (i, ms) in [100u64, 200, 300].into_iter().enumerate() {
            state.record_success(D0, Duration::from_millis(ms), 2, Millis(i as u64 * 1_000));
        }
        let view = state.snapshot(&ALL, Millis(2_000), None)[0];
        assert!((view.latency.unwrap() - 0.25).abs() < 1e-9);
        let stale = state.snapshot(&ALL, Millis(10_000), Some(Duration::from_secs(5)))[0];
        assert_eq!(stale.latency, None);
    }
}
