//! Routing state shared by every request: what live traffic and health probes taught the router, read by
//! [`crate::router`] as a plain snapshot. In memory; with Redis configured, [`crate::shared`] copies what other
//! replicas learned into it (the `peer`/`remote` fields) and sends this replica's changes out through an
//! [`Outbox`], never on the request's own path.
//!
//! Time is passed in as milliseconds since [`State::epoch`], so tests drive it without sleeping. Minutes for
//! usage counters are UTC minutes, so replicas count in the same buckets.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::{Config, ErrorClass, HostLimits};
use crate::router::speed::{Speeds, Timings};
use crate::router::DeploymentView;
use crate::shared::Outbox;

/// Per-deployment and per-host state, indexed like `Config::deployments` and `Config::hosts`.
#[derive(Debug)]
pub struct State {
    epoch: Instant,
    /// Unix time of `epoch`, in ms: converts state times to and from what replicas share.
    epoch_unix: u64,
    slots: Vec<Slot>,
    hosts: Vec<Mutex<HostState>>,
    /// Host origins, indexed like `hosts`.
    origins: Vec<Arc<str>>,
    /// What the owner declared about each host's memory, indexed like `hosts`.
    limits: Vec<HostLimits>,
    /// Per host, whether it can be woken (`wake`): then not answering means asleep, not down.
    wakes: Vec<bool>,
    /// Host index by origin, for what other replicas report.
    by_origin: HashMap<Arc<str>, usize>,
    /// Woken when a slot-limited deployment finishes a request.
    freed: tokio::sync::Notify,
    /// Where changes go for other replicas, when Redis is configured.
    outbox: OnceLock<Arc<Outbox>>,
    /// Starts the re-probing of a host found unreachable (installed by the executor, which has the client).
    unreachable_hook: OnceLock<UnreachableHook>,
    /// Woken when a wake-up of a sleeping host ends (it answered, or its patience ran out).
    wake_ended: tokio::sync::Notify,
}

/// What [`State`] calls with a host's index when the host is found unreachable and nobody re-probes it yet;
/// returns whether a re-probe loop was started.
pub struct UnreachableHook(pub Box<dyn Fn(usize) -> bool + Send + Sync>);

impl std::fmt::Debug for UnreachableHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnreachableHook")
    }
}

#[derive(Debug, Default)]
struct Slot {
    /// The deployment's id, the key replicas share it under.
    id: Arc<str>,
    in_flight: AtomicU32,
    /// Requests other replicas have in flight on it.
    peer_in_flight: AtomicU32,
    /// The deployment has a `max_parallel_requests`, so waiters care when it frees up.
    limited: bool,
    /// Its host, and the model name the engine knows it by (for residency).
    host: Option<usize>,
    upstream_model: String,
    inner: Mutex<Inner>,
}

/// How a host is doing, as `/health/hosts` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    /// Not probed and not used yet.
    #[default]
    Unknown,
    /// Answering.
    Up,
    /// Answering, but something is wrong (e.g. a configured model is not on it).
    Degraded,
    /// Answering, but not ready: loading a model (llama.cpp's 503 "Loading model").
    Loading,
    /// Not answering.
    Down,
}

/// A llama.cpp server's slots: requests it can run at once, and how many it runs now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SlotUse {
    /// Slots (`-np`).
    pub total: usize,
    /// Slots processing a request.
    pub busy: usize,
}

/// A moving average in seconds that still follows a host getting faster or slower.
fn smooth(old: Option<f64>, sample: Duration) -> f64 {
    let sample = sample.as_secs_f64();
    old.map_or(sample, |old| 0.7 * old + 0.3 * sample)
}

/// The shortest `load_duration` that counts as a model load (a warm Ollama model reports a few milliseconds).
pub const MIN_LOAD: Duration = Duration::from_millis(250);

/// A model loaded on a host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// The context it was loaded with (Ollama's `/api/ps`, LM Studio's loaded instance), in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u64>,
    /// Seen by a probe (true) or inferred from a request llmux routed there (false).
    pub probed: bool,
}

/// What an engine says about one of its models, beyond its name: read once per model (Ollama's `/api/show`,
/// LM Studio's list, llama.cpp's `meta`), shown by `/model/info` and used by pre-call context checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModelFacts {
    /// The longest context the model takes, in tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u64>,
    /// What it can do, in Ollama's words (`completion`, `tools`, `vision`, `thinking`, `embedding`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
}

/// What llmux knows about one engine host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostState {
    /// When this replica (or the replica it learned it from) last changed status or residency (ms on the state
    /// clock): the newer of two views wins.
    #[serde(skip)]
    pub updated: u64,
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
    /// When live traffic last asked for an extra probe (after a model load).
    #[serde(skip)]
    pub reprobe_at: Option<u64>,
    /// The last probe got an HTTP answer, but an error status: the host is reachable (only reported, and out of
    /// routing only with `enable_health_check_routing`), so a request it answers does not hide the report.
    #[serde(skip)]
    pub http_error: bool,
    /// A re-probe loop is bringing this unreachable host back (see [`State::on_unreachable`]).
    #[serde(skip)]
    pub rechecked: bool,
    /// A wake-up (wake-on-LAN) of this host is under way.
    #[serde(skip)]
    pub waking: bool,
    /// When the first magic packet of the last wake-up went out (ms on the state clock).
    #[serde(skip)]
    pub wake_sent: Option<u64>,
    /// Smoothed seconds the host took to answer after its first magic packet.
    #[serde(skip)]
    pub boot_seconds: Option<f64>,
    /// How long the last probe took.
    pub probe_latency_ms: Option<u64>,
    /// Models the engine lists (`/api/tags`, `/v1/models`).
    pub available: Vec<String>,
    /// Their sizes in bytes, where the engine says (`/api/tags`).
    #[serde(skip)]
    pub sizes: HashMap<String, u64>,
    /// Models loaded now.
    pub resident: Vec<Resident>,
    /// The engine, when a probe recognised it (`ollama`, `llama.cpp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<&'static str>,
    /// llama.cpp's slots at the last probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<SlotUse>,
    /// Context length and capabilities of its models, where the engine says.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub models: HashMap<String, ModelFacts>,
    /// Models a probe found gone from memory since the one before (evicted or expired), counted.
    #[serde(skip)]
    pub unloads: u64,
}

impl HostState {
    /// Records `model` as loaded because llmux routed it here (not seen by a probe); false when it already was.
    fn add_resident(&mut self, model: &str) -> bool {
        if model.is_empty() || self.resident.iter().any(|r| same_model(&r.model, model)) {
            return false;
        }
        let routed = Resident { model: model.to_owned(), probed: false, ..Resident::default() };
        self.resident.push(routed);
        true
    }
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
    /// Their sizes in bytes, where the engine says.
    pub sizes: HashMap<String, u64>,
    /// Models loaded (Ollama's `/api/ps`); `None` when the engine cannot say.
    pub resident: Option<Vec<Resident>>,
    /// Configured models the engine does not list.
    pub missing: Vec<String>,
    /// The failure proves the host unreachable (refused, reset, DNS, no answer in time), as opposed to an HTTP
    /// answer with an error status.
    pub unreachable: bool,
    /// The engine answered "not ready yet" (503 while it loads a model).
    pub loading: bool,
    /// The engine, when recognised.
    pub engine: Option<&'static str>,
    /// llama.cpp's slots.
    pub slots: Option<SlotUse>,
    /// Context length and capabilities of listed models, where the engine says.
    pub models: HashMap<String, ModelFacts>,
}

#[derive(Debug, Default, Clone)]
struct Inner {
    cooldown_until: u64,
    cooldown_status: u16,
    /// A cooldown another replica set (0 = none).
    remote_cooldown_until: u64,
    /// Other replicas' counts for the UTC minute `peer.minute`.
    peer: PeerUsage,
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
    /// Smoothed time to the first byte of a stream when the model was already loaded, and when it was not.
    warm_first_byte: Option<f64>,
    cold_first_byte: Option<f64>,
    /// Smoothed seconds a request holds the deployment, start to last byte (streams included).
    service: Option<f64>,
    /// Smoothed seconds the engine said it spent loading the model, when it had to (Ollama's `load_duration`).
    engine_load: Option<f64>,
    /// Prefill and decode rates learned from the timings the engine reports.
    speeds: Speeds,
    /// The opt-in generation probe (`health_check_model`) failed: why, and until when that keeps the deployment
    /// out of routing (ms on the state clock).
    probe_failure: Option<(String, u64)>,
    /// ... and whether that keeps it out of routing (`enable_health_check_routing`) or is only reported.
    probe_failure_gates: bool,
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

/// A host's state as replicas share it: times are unix ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedHost {
    /// Up, degraded, down or unknown.
    pub status: HostStatus,
    /// Why.
    pub reason: String,
    /// When the status changed.
    pub since: u64,
    /// Routing skips the host until then (0 = not down).
    pub down_until: u64,
    /// Models loaded.
    pub resident: Vec<Resident>,
    /// When the replica that wrote it last changed it.
    pub updated: u64,
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
        if let Some(slot) = self.state.slots.get(self.index) {
            slot.in_flight.fetch_sub(1, Ordering::Relaxed);
            if slot.limited {
                self.state.freed.notify_waiters();
            }
        }
    }
}

impl State {
    /// Fresh state for `config`'s deployments and hosts.
    pub fn new(config: &Config) -> Self {
        let slots: Vec<Slot> = config
            .deployments
            .iter()
            .map(|d| Slot {
                id: Arc::from(d.id.as_str()),
                // Requests also wait for a model on a host with declared limits to go idle (it is never evicted
                // while serving): its end wakes them too.
                limited: d.max_parallel_requests.is_some()
                    || d.host
                        .and_then(|h| config.hosts.get(h))
                        .is_some_and(|h| h.limits.memory_budget.is_some() || h.limits.max_loaded_models.is_some()),
                host: d.host,
                upstream_model: d.engine().map(|e| e.upstream_model.clone()).unwrap_or_default(),
                ..Slot::default()
            })
            .collect();
        let origins: Vec<Arc<str>> = config.hosts.iter().map(|h| Arc::from(h.origin.as_str())).collect();
        let epoch = Instant::now();
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        State {
            epoch,
            epoch_unix: u64::try_from(unix.as_millis()).unwrap_or(0),
            by_origin: origins.iter().enumerate().map(|(i, o)| (o.clone(), i)).collect(),
            slots,
            hosts: config.hosts.iter().map(|_| Mutex::new(HostState::default())).collect(),
            origins,
            limits: config.hosts.iter().map(|h| h.limits.clone()).collect(),
            wakes: config.hosts.iter().map(|h| h.wake.is_some()).collect(),
            freed: tokio::sync::Notify::new(),
            outbox: OnceLock::new(),
            unreachable_hook: OnceLock::new(),
            wake_ended: tokio::sync::Notify::new(),
        }
    }

    /// Sends this state's changes to other replicas through `outbox` from now on.
    pub fn attach(&self, outbox: Arc<Outbox>) {
        let _ = self.outbox.set(outbox);
    }

    fn outbox(&self) -> Option<&Outbox> {
        self.outbox.get().map(Arc::as_ref)
    }

    /// `ms` on the state clock as unix ms.
    pub fn to_unix(&self, ms: u64) -> u64 {
        self.epoch_unix.saturating_add(ms)
    }

    /// Unix ms on the state clock (times before the epoch become 0).
    pub fn from_unix(&self, unix: u64) -> u64 {
        unix.saturating_sub(self.epoch_unix)
    }

    /// The UTC minute `ms` (state clock) falls in.
    pub fn minute_of(&self, ms: u64) -> u64 {
        self.to_unix(ms) / 60_000
    }

    /// State for `config` after a reload from `old_config`: what `old` learned carries over for hosts at the
    /// same origin (health, residency) and deployments with the same id (cooldowns, counters, latencies), on
    /// the same clock. In-flight counts start at zero: requests still running finish on the old state.
    pub fn successor(old: &State, old_config: &Config, config: &Config) -> Self {
        let mut state = State::new(config);
        state.epoch = old.epoch;
        state.epoch_unix = old.epoch_unix;
        if let Some(outbox) = old.outbox.get() {
            state.attach(outbox.clone());
        }
        for (slot, d) in state.slots.iter_mut().zip(&config.deployments) {
            if let Some(inner) = old_config.ids.get(&d.id).and_then(|&i| old.inner(i)) {
                *slot.inner.get_mut().unwrap_or_else(|e| e.into_inner()) = inner.clone();
            }
        }
        for (host, h) in state.hosts.iter_mut().zip(&config.hosts) {
            let before = old_config.hosts.iter().position(|o| o.origin == h.origin).and_then(|i| old.host(i));
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

    fn host(&self, host: usize) -> Option<MutexGuard<'_, HostState>> {
        self.hosts.get(host).map(|h| h.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A copy of every host's state, for `/health/hosts`.
    pub fn hosts(&self) -> Vec<HostState> {
        (0..self.hosts.len()).filter_map(|i| self.host(i).map(|h| h.clone())).collect()
    }

    /// What the last probes of `host` learned about its models (so a probe asks only about new ones).
    pub fn model_facts(&self, host: usize) -> HashMap<String, ModelFacts> {
        self.host(host).map(|h| h.models.clone()).unwrap_or_default()
    }

    /// A connection to `host` failed on a live request: every deployment on it is skipped until `until`, or
    /// until a probe or a request finds it answering again (a re-probe loop looks, see
    /// [`State::on_unreachable`]).
    pub fn host_unreachable(&self, host: usize, reason: &str, now: u64, until: u64) {
        if let Some(mut h) = self.host(host) {
            if h.status != HostStatus::Down {
                h.status = HostStatus::Down;
                h.since = now;
            }
            h.reason = reason.to_owned();
            h.down_until = h.down_until.max(until);
            h.http_error = false;
            h.updated = now;
        }
        self.host_changed(host);
        self.recheck(host);
    }

    /// Installs what starts the re-probing of a host found unreachable, and starts it for hosts already out
    /// (a reload's new state).
    pub fn on_unreachable(&self, hook: UnreachableHook) {
        let _ = self.unreachable_hook.set(hook);
        let now = self.now();
        for host in 0..self.hosts.len() {
            if self.unreachable_now(host, now) {
                self.recheck(host);
            }
        }
    }

    /// Starts re-probing `host` unless a loop already does.
    fn recheck(&self, host: usize) {
        let Some(hook) = self.unreachable_hook.get() else { return };
        let claimed = self.host(host).is_some_and(|mut h| !std::mem::replace(&mut h.rechecked, true));
        if claimed && !(hook.0)(host) {
            self.recheck_ended(host);
        }
    }

    /// The re-probe loop of `host` stopped.
    pub fn recheck_ended(&self, host: usize) {
        if let Some(mut h) = self.host(host) {
            h.rechecked = false;
        }
    }

    /// Whether `host` is out of routing at `now` because it could not be reached (not for an HTTP error).
    pub fn unreachable_now(&self, host: usize, now: u64) -> bool {
        self.host(host).is_some_and(|h| h.status == HostStatus::Down && h.down_until > now && !h.http_error)
    }

    /// Whether `host` does not answer now, as a sleeping host does: its connections fail (an HTTP error means
    /// it is awake).
    pub fn asleep(&self, host: usize) -> bool {
        self.host(host).is_some_and(|h| h.status == HostStatus::Down && !h.http_error)
    }

    /// Starts a wake-up of `host` at `now` unless one is under way: whether this call started it (and so sends
    /// the packets); requests that arrive meanwhile join the one under way.
    pub fn claim_wake(&self, host: usize, now: u64) -> bool {
        let Some(mut h) = self.host(host) else { return false };
        if h.waking {
            return false;
        }
        h.waking = true;
        h.wake_sent = Some(now);
        true
    }

    /// Whether a wake-up of `host` is under way, and since when its first packet went out.
    pub fn waking(&self, host: usize) -> Option<u64> {
        self.host(host).filter(|h| h.waking).and_then(|h| h.wake_sent)
    }

    /// The wake-up of `host` ended: it answered `took` after its first packet (learned, like load times), or
    /// not at all (`None`). Wakes the requests waiting for it.
    pub fn wake_ended(&self, host: usize, took: Option<Duration>) {
        if let Some(mut h) = self.host(host) {
            h.waking = false;
            if let Some(took) = took {
                h.boot_seconds = Some(smooth(h.boot_seconds, took));
            }
        }
        self.wake_ended.notify_waiters();
    }

    /// Seconds `host` took to come up after its packet, smoothed over its wake-ups.
    pub fn learned_boot(&self, host: usize) -> Option<f64> {
        self.host(host).and_then(|h| h.boot_seconds)
    }

    /// Resolves when a wake-up ends. Create it (and `enable` it) before checking [`State::waking`], so an end
    /// in between is not missed.
    pub fn wake_signal(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake_ended.notified()
    }

    fn host_changed(&self, host: usize) {
        if let (Some(outbox), Some(origin)) = (self.outbox(), self.origins.get(host)) {
            outbox.host(origin);
        }
    }

    /// A request for the engine's `model` is being sent to `deployment`: the engine loads the model (if it has
    /// not already), so the next request for it should go to the same host rather than load it on another one.
    /// Returns whether this added the model, so a failed attempt can take it back ([`State::load_failed`]).
    pub fn model_routed(&self, deployment: usize, model: &str, now: u64) -> bool {
        let Some(index) = self.slots.get(deployment).and_then(|s| s.host) else { return false };
        let Some(mut h) = self.host(index) else { return false };
        if !h.add_resident(model) {
            return false;
        }
        h.updated = now;
        drop(h);
        self.host_changed(index);
        true
    }

    /// Whether an extra probe of `host` may start now: none started in the last `gap_ms` (it is then recorded).
    pub fn claim_reprobe(&self, host: usize, now: u64, gap_ms: u64) -> bool {
        let Some(mut h) = self.host(host) else { return false };
        if h.reprobe_at.is_some_and(|t| now.saturating_sub(t) < gap_ms) {
            return false;
        }
        h.reprobe_at = Some(now);
        true
    }

    /// The attempt that [`State::model_routed`] marked failed: the model is not known to be loaded there.
    pub fn load_failed(&self, deployment: usize, model: &str, now: u64) {
        let Some(index) = self.slots.get(deployment).and_then(|s| s.host) else { return };
        let Some(mut h) = self.host(index) else { return };
        let before = h.resident.len();
        h.resident.retain(|r| r.probed || !same_model(&r.model, model));
        if h.resident.len() != before {
            h.updated = now;
            drop(h);
            self.host_changed(index);
        }
    }

    /// A request on `deployment` for the engine's `model` succeeded: its host is up, and the model is loaded
    /// there now.
    pub fn host_answered(&self, deployment: usize, model: &str, now: u64) {
        let Some(slot) = self.slots.get(deployment) else { return };
        let Some(index) = slot.host else { return };
        let Some(mut h) = self.host(index) else { return };
        let mut changed = false;
        // A probe's HTTP error stays reported until the next probe: the host answering requests is no news.
        let probe_error = h.status == HostStatus::Down && h.http_error;
        if matches!(h.status, HostStatus::Down | HostStatus::Unknown | HostStatus::Loading) && !probe_error {
            h.status = HostStatus::Up;
            h.reason = "answered a request".to_owned();
            h.since = now;
            changed = true;
        }
        h.down_until = 0;
        changed |= h.add_resident(model);
        if changed {
            h.updated = now;
            drop(h);
            self.host_changed(index);
        }
    }

    /// Records a probe of `host`. A failed probe keeps the host out of routing for `stale_after` (until the
    /// next probe is due; the caller decides how long for each kind of failure); a probe that could not reach
    /// the host starts re-probing it; a successful one lifts a connection cooldown of its deployments.
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
                (None, _) if outcome.loading => (HostStatus::Loading, "the engine is loading a model".to_owned()),
                (None, true) => (HostStatus::Up, "probe answered".to_owned()),
                (None, false) => (HostStatus::Degraded, format!("not on this host: {}", outcome.missing.join(", "))),
            };
            if h.status != status {
                h.since = now;
            }
            h.status = status;
            h.reason = reason;
            let hold = now.saturating_add(u64::try_from(stale_after.as_millis()).unwrap_or(u64::MAX));
            h.down_until = match status {
                // A live request may already have taken the host out for longer.
                HostStatus::Down if outcome.unreachable => h.down_until.max(hold),
                HostStatus::Down | HostStatus::Loading => hold,
                _ => 0,
            };
            h.http_error = outcome.failure.is_some() && !outcome.unreachable;
            h.last_probe = Some(now);
            h.probe_latency_ms = Some(u64::try_from(outcome.latency.as_millis()).unwrap_or(u64::MAX));
            if outcome.failure.is_none() && !outcome.loading {
                h.available = outcome.available;
                h.sizes = outcome.sizes;
                h.engine = outcome.engine.or(h.engine);
                h.slots = outcome.slots;
                h.models = outcome.models;
                if let Some(resident) = outcome.resident {
                    let gone =
                        h.resident.iter().filter(|old| !resident.iter().any(|r| same_model(&r.model, &old.model)));
                    h.unloads += gone.count() as u64;
                    h.resident = resident;
                }
            }
            h.updated = now;
        }
        self.host_changed(host);
        if outcome.failure.is_some() && outcome.unreachable {
            self.recheck(host);
        }
        if outcome.failure.is_none() && !outcome.loading {
            for &i in deployments {
                if let Some(mut inner) = self.inner(i) {
                    if inner.cooldown_status == 0 && inner.cooldown_until.max(inner.remote_cooldown_until) > now {
                        inner.cooldown_until = 0;
                        inner.remote_cooldown_until = 0;
                        if let (Some(outbox), Some(slot)) = (self.outbox(), self.slots.get(i)) {
                            outbox.lift(&slot.id);
                        }
                    }
                }
            }
        }
    }

    /// The result of deployment `index`'s generation probe: a failure is reported for `stale_after` (or until a
    /// probe or a request succeeds) and, when `gates`, keeps the deployment out of routing meanwhile; `None`
    /// clears it.
    pub fn generation_probe(
        &self,
        index: usize,
        failure: Option<String>,
        now: u64,
        stale_after: Duration,
        gates: bool,
    ) {
        if let Some(mut inner) = self.inner(index) {
            let until = now.saturating_add(u64::try_from(stale_after.as_millis()).unwrap_or(u64::MAX));
            inner.probe_failure = failure.map(|why| (why, until));
            inner.probe_failure_gates = gates;
        }
    }

    /// Why deployment `index`'s generation probe failed, while that still counts.
    pub fn generation_failure(&self, index: usize, now: u64) -> Option<String> {
        let inner = self.inner(index)?;
        inner.probe_failure.as_ref().filter(|(_, until)| *until > now).map(|(why, _)| why.clone())
    }

    /// Resolves when a slot-limited deployment finishes a request. Create it before checking for a free slot
    /// (and `enable` it), so a slot freed in between is not missed.
    pub fn slot_freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }

    /// Whether `model` is serving requests on `host` now (through any deployment, here or on a replica).
    fn serving(&self, host: Option<usize>, model: &str) -> bool {
        host.is_some()
            && self.slots.iter().any(|s| {
                s.host == host
                    && same_model(&s.upstream_model, model)
                    && s.in_flight.load(Ordering::Relaxed) + s.peer_in_flight.load(Ordering::Relaxed) > 0
            })
    }

    /// Wakes the requests waiting for a slot to look again (one left the queue ahead of them).
    pub fn queue_moved(&self) {
        self.freed.notify_waiters();
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
        let minute = self.minute_of(now);
        let ttl = latency_ttl.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        members
            .iter()
            .filter_map(|&i| self.slots.get(i))
            .map(|slot| {
                let inner = slot.inner.lock().unwrap_or_else(|e| e.into_inner());
                let (sum, fresh) = inner
                    .latencies
                    .iter()
                    .filter(|(_, at)| ttl.is_none_or(|ttl| now.saturating_sub(*at) <= ttl))
                    .fold((0.0, 0usize), |(sum, n), (v, _)| (sum + v, n + 1));
                let same_minute = inner.minute == minute;
                let peer = if inner.peer.minute == minute { inner.peer } else { PeerUsage::default() };
                let cooldown_until = inner.cooldown_until.max(inner.remote_cooldown_until);
                let host = slot.host.and_then(|i| self.host(i));
                let unhealthy = host.as_ref().is_some_and(|h| h.down_until > now);
                let probe_failed =
                    inner.probe_failure_gates && inner.probe_failure.as_ref().is_some_and(|(_, until)| *until > now);
                let warm = host
                    .as_ref()
                    .is_some_and(|h| h.resident.iter().any(|r| same_model(&r.model, &slot.upstream_model)));
                let limits = slot.host.and_then(|i| self.limits.get(i));
                let (evicts, evicts_pinned, evicts_busy) = match (&host, limits) {
                    (Some(h), Some(limits)) if !warm => {
                        let evicts = would_evict(h, limits, &slot.upstream_model);
                        let serving = |model: &str| self.serving(slot.host, model);
                        (
                            evicts,
                            evicts && would_evict_pinned(h, limits, &slot.upstream_model),
                            evicts && would_evict_busy(h, limits, &slot.upstream_model, &serving),
                        )
                    }
                    _ => (false, false, false),
                };
                let context_window = host.as_ref().and_then(|h| {
                    h.models
                        .iter()
                        .find(|(m, _)| same_model(m, &slot.upstream_model))
                        .and_then(|(_, f)| f.context_length)
                });
                // The engine's own figure when it gives one; else what llmux measured.
                let load_cost = inner.engine_load.or_else(|| {
                    inner.cold_first_byte.map(|cold| (cold - inner.warm_first_byte.unwrap_or(0.0)).max(0.0))
                });
                DeploymentView {
                    load_cost,
                    service: inner.service,
                    context_window,
                    cooldown_until: if cooldown_until > now { cooldown_until } else { 0 },
                    unhealthy,
                    asleep: unhealthy
                        && slot.host.is_some_and(|i| self.wakes.get(i).copied().unwrap_or(false))
                        && host.as_ref().is_some_and(|h| h.status == HostStatus::Down && !h.http_error),
                    probe_failed,
                    warm,
                    evicts,
                    evicts_pinned,
                    evicts_busy,
                    // A probe saw the engine loading (llama.cpp's 503); loads llmux set off are added by the executor.
                    host_loading: host.as_ref().is_some_and(|h| h.status == HostStatus::Loading),
                    in_flight: slot.in_flight.load(Ordering::Relaxed) + slot.peer_in_flight.load(Ordering::Relaxed),
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

    fn roll_minute(&self, inner: &mut Inner, now: u64) {
        let minute = self.minute_of(now);
        if inner.minute != minute {
            *inner = Inner {
                cooldown_until: inner.cooldown_until,
                cooldown_status: inner.cooldown_status,
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
    pub fn start(self: &std::sync::Arc<Self>, index: usize, tokens: u64, now: u64) -> Option<OwnedInFlight> {
        let slot = self.slots.get(index)?;
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
        if let Some(mut inner) = self.inner(index) {
            self.roll_minute(&mut inner, now);
            inner.requests += 1;
            inner.tokens += tokens;
        }
        let minute = self.minute_of(now);
        if let Some(outbox) = self.outbox() {
            let usage = PeerUsage { minute, requests: 1, tokens, ..PeerUsage::default() };
            outbox.usage(&slot.id, usage);
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
    pub fn correct_tokens(&self, index: usize, minute: u64, counted: u64, total: u64, now: u64) {
        let Some(slot) = self.slots.get(index) else { return };
        let current = self.minute_of(now);
        let delta = if current == minute { token_delta(counted, total) } else { token_delta(0, total) };
        if delta == 0 {
            return;
        }
        if let Some(mut inner) = self.inner(index) {
            self.roll_minute(&mut inner, now);
            inner.tokens = inner.tokens.saturating_add_signed(delta);
        }
        if let Some(outbox) = self.outbox() {
            outbox.tokens(&slot.id, current, delta);
        }
    }

    /// Deployment `index` answered successfully after `latency`: its host is up, whatever a probe said.
    pub fn record_success(&self, index: usize, latency: Duration, max_samples: usize, now: u64) {
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
    pub fn record_first_byte(&self, index: usize, first_byte: Duration, cold: bool) {
        if let Some(mut inner) = self.inner(index) {
            let slot = if cold { &mut inner.cold_first_byte } else { &mut inner.warm_first_byte };
            *slot = Some(smooth(*slot, first_byte));
        }
    }

    /// The engine said it spent `load` loading deployment `index`'s model for an answer. Loads shorter than
    /// [`MIN_LOAD`] are a warm model's bookkeeping, not a load, and teach nothing.
    pub fn record_load(&self, index: usize, load: Duration) {
        if load < MIN_LOAD {
            return;
        }
        if let Some(mut inner) = self.inner(index) {
            inner.engine_load = Some(smooth(inner.engine_load, load));
        }
    }

    /// The engine behind deployment `index` reported `timings` for an answer: its prefill and decode rates.
    pub fn record_timings(&self, index: usize, timings: &Timings) {
        if let Some(mut inner) = self.inner(index) {
            inner.speeds.learn(timings);
        }
    }

    /// The slots of deployment `index`'s engine when it is a llama.cpp server a probe counted them on (it then
    /// takes `id_slot`).
    pub fn llama_slots(&self, index: usize) -> Option<usize> {
        let host = self.slots.get(index)?.host?;
        self.host(host)?.slots.map(|s| s.total).filter(|&n| n > 0)
    }

    /// Whether a probe has looked at `host` (and so, on engines that tell, at what it has loaded).
    pub fn probed(&self, host: Option<usize>) -> bool {
        host.and_then(|h| self.host(h)).is_some_and(|h| h.last_probe.is_some())
    }

    /// The rates learned for deployment `index`.
    pub fn speeds(&self, index: usize) -> Speeds {
        self.inner(index).map(|inner| inner.speeds).unwrap_or_default()
    }

    /// Deployment `index` failed: counts the failure and returns this minute's counts.
    pub fn record_failure(&self, index: usize, now: u64) -> MinuteCounts {
        self.count_outcome(index, now, true);
        let Some(mut inner) = self.inner(index) else { return MinuteCounts::default() };
        self.roll_minute(&mut inner, now);
        inner.fails += 1;
        let peer = if inner.peer.minute == inner.minute { inner.peer } else { PeerUsage::default() };
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        MinuteCounts {
            fails: inner.fails.saturating_add(clamp(peer.fails)),
            successes: inner.successes.saturating_add(clamp(peer.successes)),
        }
    }

    fn count_outcome(&self, index: usize, now: u64, failed: bool) {
        if let (Some(outbox), Some(slot)) = (self.outbox(), self.slots.get(index)) {
            let usage = PeerUsage {
                minute: self.minute_of(now),
                fails: u64::from(failed),
                successes: u64::from(!failed),
                ..PeerUsage::default()
            };
            outbox.usage(&slot.id, usage);
        }
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
        if let (Some(outbox), Some(slot)) = (self.outbox(), self.slots.get(index)) {
            outbox.cooldown(&slot.id, self.to_unix(now).saturating_add(millis(duration)), status);
        }
    }

    /// Cooldowns this replica set that are still running, as (id, until unix ms, status): re-sent to Redis
    /// when it comes back after an outage.
    pub fn active_cooldowns(&self, now: u64) -> Vec<(Arc<str>, u64, u16)> {
        self.slots
            .iter()
            .filter_map(|slot| {
                let inner = slot.inner.lock().unwrap_or_else(|e| e.into_inner());
                (inner.cooldown_until > now)
                    .then(|| (slot.id.clone(), self.to_unix(inner.cooldown_until), inner.cooldown_status))
            })
            .collect()
    }

    /// Every deployment's id with this replica's in-flight count.
    pub fn in_flight_by_id(&self) -> impl Iterator<Item = (&Arc<str>, u32)> {
        self.slots.iter().map(|s| (&s.id, s.in_flight.load(Ordering::Relaxed)))
    }

    /// Every host origin.
    pub fn origins(&self) -> &[Arc<str>] {
        &self.origins
    }

    /// Host `origin` as replicas share it.
    pub fn shared_host(&self, origin: &str) -> Option<SharedHost> {
        let h = self.by_origin.get(origin).and_then(|&i| self.host(i))?;
        Some(SharedHost {
            status: h.status,
            reason: h.reason.clone(),
            since: self.to_unix(h.since),
            down_until: if h.down_until == 0 { 0 } else { self.to_unix(h.down_until) },
            resident: h.resident.clone(),
            updated: self.to_unix(h.updated),
        })
    }

    /// Takes in what other replicas shared: their cooldowns (by deployment id, until unix ms; a deployment
    /// missing here has none), host views newer than this replica's, their usage this minute and their
    /// in-flight counts. Ids and origins this config does not have are ignored.
    pub fn apply_remote(&self, remote: &Remote) {
        for slot in &self.slots {
            let mut inner = slot.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.remote_cooldown_until = remote.cooldowns.get(&*slot.id).map_or(0, |&u| self.from_unix(u));
            inner.peer = remote.usage.get(&*slot.id).copied().unwrap_or_default();
            slot.peer_in_flight.store(remote.in_flight.get(&*slot.id).copied().unwrap_or(0), Ordering::Relaxed);
        }
        for (origin, shared) in &remote.hosts {
            let Some(mut h) = self.by_origin.get(origin.as_str()).and_then(|&i| self.host(i)) else { continue };
            let updated = self.from_unix(shared.updated);
            if shared.updated == 0 || updated <= h.updated {
                continue;
            }
            h.status = shared.status;
            h.reason = shared.reason.clone();
            h.since = self.from_unix(shared.since);
            h.down_until = if shared.down_until == 0 { 0 } else { self.from_unix(shared.down_until) };
            h.resident = shared.resident.clone();
            h.updated = updated;
        }
    }

    /// Forgets what other replicas reported that cannot expire by itself (usage, in-flight counts), when the
    /// shared store is unreachable. Their cooldowns and host views stay until they run out.
    pub fn forget_peers(&self) {
        for slot in &self.slots {
            slot.peer_in_flight.store(0, Ordering::Relaxed);
            slot.inner.lock().unwrap_or_else(|e| e.into_inner()).peer = PeerUsage::default();
        }
    }
}

/// What other replicas shared, keyed by deployment id and host origin.
#[derive(Debug, Default, Clone)]
pub struct Remote {
    /// Running cooldowns: until (unix ms).
    pub cooldowns: HashMap<String, u64>,
    /// Host views.
    pub hosts: HashMap<String, SharedHost>,
    /// Other replicas' usage in the current minute.
    pub usage: HashMap<String, PeerUsage>,
    /// Other replicas' in-flight requests.
    pub in_flight: HashMap<String, u32>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether loading `model` on host `h` must evict a loaded model: the host is at `max_loaded_models`, or the
/// model does not fit in what `memory_budget` leaves. A model of unknown size only counts against
/// `max_loaded_models`; without declared limits nothing is known to be evicted.
fn would_evict(h: &HostState, limits: &HostLimits, model: &str) -> bool {
    if limits.memory_budget.is_none() && limits.max_loaded_models.is_none() {
        return false;
    }
    let size_of = |name: &str| h.sizes.iter().find(|(m, _)| same_model(m, name)).map(|(_, s)| *s);
    let full = limits.max_loaded_models.is_some_and(|max| h.resident.len() >= max as usize);
    let loaded: u64 = h.resident.iter().filter_map(|r| r.size.or_else(|| size_of(&r.model))).sum();
    let over = matches!((limits.memory_budget, size_of(model)), (Some(budget), Some(size)) if loaded + size > budget);
    full || over
}

/// Whether loading `model` on host `h` must evict a model that is serving requests (`serving`): it does not fit
/// even with every idle model gone.
fn would_evict_busy(h: &HostState, limits: &HostLimits, model: &str, serving: &dyn Fn(&str) -> bool) -> bool {
    let size_of = |name: &str| h.sizes.iter().find(|(m, _)| same_model(m, name)).map(|(_, s)| *s);
    let kept: Vec<_> = h.resident.iter().filter(|r| !same_model(&r.model, model) && serving(&r.model)).collect();
    if kept.is_empty() {
        return false;
    }
    let full = limits.max_loaded_models.is_some_and(|max| kept.len() >= max as usize);
    let loaded: u64 = kept.iter().filter_map(|r| r.size.or_else(|| size_of(&r.model))).sum();
    let over = matches!((limits.memory_budget, size_of(model)), (Some(budget), Some(size)) if loaded + size > budget);
    full || over
}

/// Whether loading `model` on host `h` must evict something while a pinned model is loaded (so the pinned one
/// may be the victim).
fn would_evict_pinned(h: &HostState, limits: &HostLimits, model: &str) -> bool {
    let pinned = |name: &str| limits.pinned.iter().any(|p| same_model(p, name));
    if limits.pinned.is_empty() || pinned(model) || !h.resident.iter().any(|r| pinned(&r.model)) {
        return false;
    }
    would_evict(h, limits, model)
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
        let mut state = State::new(&crate::config::load_str(yaml, &|_| None).unwrap().0);
        // Minutes are UTC minutes: start the tests' clock on a minute boundary.
        state.epoch_unix = 0;
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
        old.cool_down(0, Duration::from_secs(30), 500, 1_000);
        old.host_unreachable(0, "connection refused", 1_000, 31_000);
        old.host_answered(1, "m", 1_000);
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
    fn what_other_replicas_share_adds_to_the_routers_view() {
        let state = state();
        let id = |i: usize| state.slots[i].id.to_string();
        let _mine = state.start(0, 10, 1_000);
        let mut remote = Remote::default();
        remote.in_flight.insert(id(0), 3);
        remote.usage.insert(id(0), PeerUsage { minute: 0, requests: 5, tokens: 50, fails: 4, successes: 1 });
        remote.cooldowns.insert(id(1), 30_000);
        remote.hosts.insert(
            "http://h2:1".into(),
            SharedHost {
                status: HostStatus::Down,
                reason: "connection refused".into(),
                since: 900,
                down_until: 40_000,
                resident: Vec::new(),
                updated: 900,
            },
        );
        state.apply_remote(&remote);
        let view = state.snapshot(&ALL, 1_000, None);
        assert_eq!((view[0].in_flight, view[0].requests_this_minute, view[0].tokens_this_minute), (4, 6, 60));
        assert_eq!(view[1].cooldown_until, 30_000, "another replica's cooldown");
        assert!(view[1].unhealthy, "another replica found h2 down");
        assert_eq!(state.record_failure(0, 1_000), MinuteCounts { fails: 5, successes: 1 });
        // A newer local view of the host wins over an older shared one.
        state.host_answered(1, "m", 2_000);
        state.apply_remote(&remote);
        assert!(!state.snapshot(&ALL, 2_000, None)[1].unhealthy);
        // Next minute the peers' counts no longer apply; without Redis they are forgotten.
        assert_eq!(state.snapshot(&ALL, 60_000, None)[0].requests_this_minute, 0);
        state.forget_peers();
        assert_eq!(state.snapshot(&ALL, 1_000, None)[0].in_flight, 1);
    }

    #[test]
    fn a_cold_model_that_does_not_fit_next_to_a_pinned_one_would_evict_it() {
        let limits =
            HostLimits { memory_budget: Some(10_000), max_loaded_models: Some(3), pinned: vec!["keep:latest".into()] };
        let loaded = |models: &[(&str, u64)]| HostState {
            resident: models
                .iter()
                .map(|(m, size)| Resident {
                    model: (*m).into(),
                    size: Some(*size),
                    probed: true,
                    ..Resident::default()
                })
                .collect(),
            sizes: [("big".to_owned(), 6_000), ("small".to_owned(), 1_000)].into_iter().collect(),
            ..HostState::default()
        };
        let h = loaded(&[("keep", 5_000)]);
        assert!(would_evict_pinned(&h, &limits, "big"), "5,000 + 6,000 > 10,000");
        assert!(!would_evict_pinned(&h, &limits, "small"));
        assert!(!would_evict_pinned(&h, &limits, "unknown-size"), "unknown size: only the count can tell");
        assert!(!would_evict_pinned(&h, &limits, "keep"), "the pinned model itself");
        assert!(!would_evict_pinned(&loaded(&[("other", 5_000)]), &limits, "big"), "nothing pinned is loaded");
        let full = loaded(&[("keep", 1), ("a", 1), ("b", 1)]);
        assert!(would_evict_pinned(&full, &limits, "small"), "at max_loaded_models");
    }

    #[test]
    fn a_load_evicts_a_busy_model_only_when_it_does_not_fit_with_every_idle_one_gone() {
        let limits = HostLimits { memory_budget: Some(10_000), max_loaded_models: Some(2), pinned: Vec::new() };
        let resident =
            |m: &str, size| Resident { model: m.into(), size: Some(size), probed: true, ..Resident::default() };
        let h = HostState {
            resident: vec![resident("a", 6_000), resident("c", 3_000)],
            sizes: [("b".to_owned(), 6_000), ("d".to_owned(), 1_000)].into_iter().collect(),
            ..HostState::default()
        };
        let serving_a = |m: &str| m == "a";
        assert!(would_evict_busy(&h, &limits, "b", &serving_a), "6,000 serving + 6,000 > 10,000");
        assert!(!would_evict_busy(&h, &limits, "d", &serving_a), "c is idle: it goes, a stays");
        assert!(!would_evict_busy(&h, &limits, "b", &|_| false), "nothing serving: any may go");
        let both = |m: &str| m == "a" || m == "c";
        assert!(would_evict_busy(&h, &limits, "d", &both), "two serving at max_loaded_models 2");
    }

    #[test]
    fn a_model_counts_as_loading_where_it_was_routed_until_the_attempt_fails() {
        let state = state();
        assert!(state.model_routed(1, "m", 0));
        assert!(state.snapshot(&ALL, 0, None)[1].warm, "the next request follows it to h2");
        assert!(!state.model_routed(1, "m", 0), "already there");
        state.load_failed(1, "m", 5);
        assert!(!state.snapshot(&ALL, 5, None)[1].warm);
        // A model a probe saw stays, whatever one attempt did.
        state.probe_result(
            1,
            &[1],
            ProbeOutcome {
                resident: Some(vec![Resident { model: "m".into(), probed: true, ..Resident::default() }]),
                ..ProbeOutcome::default()
            },
            10,
            Duration::from_secs(60),
        );
        state.load_failed(1, "m", 20);
        assert!(state.snapshot(&ALL, 20, None)[1].warm);
    }

    #[test]
    fn the_cost_of_loading_a_model_is_learned_from_cold_and_warm_first_bytes() {
        let state = state();
        assert_eq!(state.snapshot(&ALL, 0, None)[0].load_cost, None);
        state.record_first_byte(0, Duration::from_millis(8_200), true);
        assert!((state.snapshot(&ALL, 0, None)[0].load_cost.unwrap() - 8.2).abs() < 1e-9);
        state.record_first_byte(0, Duration::from_millis(200), false);
        assert!((state.snapshot(&ALL, 0, None)[0].load_cost.unwrap() - 8.0).abs() < 1e-9, "minus the warm time");
        state.record_first_byte(0, Duration::from_millis(4_200), true);
        let smoothed = state.snapshot(&ALL, 0, None)[0].load_cost.unwrap();
        assert!(smoothed > 4.0 && smoothed < 8.0, "{smoothed}");
        // The engine's own figure, when it gives one, beats the measured difference; a warm model's few
        // milliseconds of bookkeeping are not a load.
        state.record_load(0, Duration::from_millis(30));
        assert!((state.snapshot(&ALL, 0, None)[0].load_cost.unwrap() - smoothed).abs() < 1e-9);
        state.record_load(0, Duration::from_millis(9_500));
        assert!((state.snapshot(&ALL, 0, None)[0].load_cost.unwrap() - 9.5).abs() < 1e-9);
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
        state.host_answered(2, "n", 20);
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
        let resident = Resident { model: "m:latest".into(), size: Some(5), probed: true, ..Resident::default() };
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
        state.host_answered(1, "m", 0);
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
    fn the_minutes_tokens_are_corrected_to_what_the_engine_reported() {
        let state = state();
        let mut a = state.start(0, 100, 0).unwrap();
        let mut b = state.start(0, 50, 10).unwrap();
        let tokens = |now| state.snapshot(&ALL, now, None)[0].tokens_this_minute;
        // The engine says the first answer used 400 tokens: 400 + the second's estimate.
        a.used(400);
        assert_eq!(tokens(20), 450);
        a.used(400);
        assert_eq!(tokens(20), 450, "told again, nothing changes");
        // Fewer than estimated: the difference comes off.
        b.used(20);
        assert_eq!(tokens(20), 420);
        // Never below zero, even when told of more estimate than the minute holds.
        state.correct_tokens(1, 0, 500, 20, 30);
        assert_eq!(state.snapshot(&ALL, 30, None)[1].tokens_this_minute, 0);
        // An answer that ends in the next minute counts whole there; the old minute keeps its estimate.
        state.correct_tokens(0, 0, 100, 300, 61_000);
        assert_eq!(tokens(61_000), 300);
        assert_eq!(token_delta(u64::MAX, 0), -i64::MAX);
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
