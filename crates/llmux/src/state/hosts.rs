//! Per-host state: health (probes, refused connections, the re-probe loop of an unreachable host), what each
//! host holds loaded (residency, probed or inferred from routing) and waking a sleeping host.

use std::collections::HashMap;
use std::sync::MutexGuard;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::clock::{smooth, Millis};
use super::deployments::DeploymentIx;
use super::State;
pub use crate::providers::profile::same_model;
use crate::providers::profile::{EngineProfile, KeptPrompts};

index_type! {
    /// A host's index in `Config::hosts` (and in the state's host table).
    HostIx
}

/// What [`State`] calls with a host's index when the host is found unreachable and nobody re-probes it yet;
/// returns whether a re-probe loop was started.
pub struct UnreachableHook(pub Box<dyn Fn(HostIx) -> bool + Send + Sync>);

impl std::fmt::Debug for UnreachableHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnreachableHook")
    }
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
    /// When this replica (or the replica it learned it from) last changed status or residency: the newer of
    /// two views wins.
    #[serde(skip)]
    pub updated: Millis,
    /// Up, degraded, down or unknown.
    pub status: HostStatus,
    /// Why, in a few words.
    pub reason: String,
    /// When the status last changed.
    pub since: Millis,
    /// Routing skips the host until this time (0 = not down).
    #[serde(skip)]
    pub down_until: Millis,
    /// When the last probe finished.
    pub last_probe: Option<Millis>,
    /// When live traffic last asked for an extra probe (after a model load).
    #[serde(skip)]
    pub reprobe_at: Option<Millis>,
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
    /// When the first magic packet of the last wake-up went out.
    #[serde(skip)]
    pub wake_sent: Option<Millis>,
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
    pub engine: Option<&'static EngineProfile>,
    /// llama.cpp's slots at the last probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<SlotUse>,
    /// Context length and capabilities of its models, where the engine says.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub models: HashMap<String, ModelFacts>,
    /// Models a probe found gone from memory since the one before (evicted or expired), counted.
    #[serde(skip)]
    pub unloads: u64,
    /// Bytes of models the engine holds at once, learned from what its probes showed where its owner declared
    /// no `memory_budget`: at least what was loaded together, less than what made it evict a model.
    #[serde(skip)]
    pub learned_budget: Option<u64>,
}

/// Unix seconds of an RFC 3339 time (Ollama's `expires_at`).
pub fn unix_seconds(rfc3339: &str) -> Option<f64> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos() as f64 / 1e9)
}

impl HostState {
    /// Learns from a probe's `resident` models (at `unix_now` seconds) how much the engine holds at once: a
    /// model that left before its keep-alive ran out while another arrived was evicted, so the two sets did
    /// not fit together (the budget is less); what is loaded together fits (it is at least that). Only where
    /// the engine reported every size; nothing is learned until an eviction is seen.
    fn learn_budget(&mut self, resident: &[Resident], unix_now: f64) {
        let before: Vec<&Resident> = self.resident.iter().filter(|r| r.probed).collect();
        let stays = |r: &Resident| resident.iter().any(|n| same_model(&n.model, &r.model));
        let evicted = before
            .iter()
            .filter(|r| !stays(r))
            .any(|r| r.expires_at.as_deref().and_then(unix_seconds).is_none_or(|at| at > unix_now + 1.0));
        let arrived = resident.iter().filter(|n| !before.iter().any(|r| same_model(&r.model, &n.model)));
        // What is loaded together fits: a budget learned lower than that was wrong (a model unloaded by hand).
        let together: Option<u64> = resident.iter().map(|r| r.size).sum();
        if let (Some(fits), Some(b)) = (together, self.learned_budget) {
            self.learned_budget = Some(b.max(fits));
        }
        let sizes: Option<u64> = before.iter().copied().chain(arrived.clone()).map(|r| r.size).sum();
        if let Some(did_not_fit) = sizes.filter(|_| evicted && arrived.count() > 0) {
            let most = did_not_fit.saturating_sub(1);
            self.learned_budget = Some(self.learned_budget.map_or(most, |b| b.min(most)));
        }
    }

    /// Records `model` as loaded because llmux routed it here (not seen by a probe); false when it already was.
    fn add_resident(&mut self, model: &str) -> bool {
        if model.is_empty() || self.resident.iter().any(|r| same_model(&r.model, model)) {
            return false;
        }
        let routed = Resident { model: model.to_owned(), probed: false, ..Resident::default() };
        self.resident.push(routed);
        true
    }

    /// Whether it does not answer, as a sleeping host does: its connections fail (an HTTP error means it is
    /// awake).
    pub(super) fn unreachable(&self) -> bool {
        self.status == HostStatus::Down && !self.http_error
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
    pub engine: Option<&'static EngineProfile>,
    /// llama.cpp's slots.
    pub slots: Option<SlotUse>,
    /// Context length and capabilities of listed models, where the engine says.
    pub models: HashMap<String, ModelFacts>,
}

impl State {
    pub(super) fn host(&self, host: HostIx) -> Option<MutexGuard<'_, HostState>> {
        self.hosts.get(host.0).map(|h| h.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The host of `deployment`, locked.
    fn host_of(&self, deployment: DeploymentIx) -> Option<(HostIx, MutexGuard<'_, HostState>)> {
        let index = self.slots.get(deployment.0).and_then(|s| s.host)?;
        Some((index, self.host(index)?))
    }

    /// A copy of every host's state, for `/health/hosts`.
    pub fn hosts(&self) -> Vec<HostState> {
        self.hosts.iter().map(|h| h.lock().unwrap_or_else(|e| e.into_inner()).clone()).collect()
    }

    /// What the last probes of `host` learned about its models (so a probe asks only about new ones).
    pub fn model_facts(&self, host: HostIx) -> HashMap<String, ModelFacts> {
        self.host(host).map(|h| h.models.clone()).unwrap_or_default()
    }

    /// A connection to `host` failed on a live request: every deployment on it is skipped until `until`, or
    /// until a probe or a request finds it answering again (a re-probe loop looks, see
    /// [`State::on_unreachable`]).
    pub fn host_unreachable(&self, host: HostIx, reason: &str, now: Millis, until: Millis) {
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
        for host in (0..self.hosts.len()).map(HostIx) {
            if self.unreachable_now(host, now) {
                self.recheck(host);
            }
        }
    }

    /// Starts re-probing `host` unless a loop already does.
    fn recheck(&self, host: HostIx) {
        let Some(hook) = self.unreachable_hook.get() else { return };
        let claimed = self.host(host).is_some_and(|mut h| !std::mem::replace(&mut h.rechecked, true));
        if claimed && !(hook.0)(host) {
            self.recheck_ended(host);
        }
    }

    /// The re-probe loop of `host` stopped.
    pub fn recheck_ended(&self, host: HostIx) {
        if let Some(mut h) = self.host(host) {
            h.rechecked = false;
        }
    }

    /// Whether `host` is out of routing at `now` because it could not be reached (not for an HTTP error).
    pub fn unreachable_now(&self, host: HostIx, now: Millis) -> bool {
        self.host(host).is_some_and(|h| h.unreachable() && h.down_until > now)
    }

    /// Whether `host` does not answer now, as a sleeping host does: its connections fail (an HTTP error means
    /// it is awake).
    pub fn asleep(&self, host: HostIx) -> bool {
        self.host(host).is_some_and(|h| h.unreachable())
    }

    /// Starts a wake-up of `host` at `now` unless one is under way: whether this call started it (and so sends
    /// the packets); requests that arrive meanwhile join the one under way.
    pub fn claim_wake(&self, host: HostIx, now: Millis) -> bool {
        let Some(mut h) = self.host(host) else { return false };
        if h.waking {
            return false;
        }
        h.waking = true;
        h.wake_sent = Some(now);
        true
    }

    /// Whether a wake-up of `host` is under way, and since when its first packet went out.
    pub fn waking(&self, host: HostIx) -> Option<Millis> {
        self.host(host).filter(|h| h.waking).and_then(|h| h.wake_sent)
    }

    /// The wake-up of `host` ended: it answered `took` after its first packet (learned, like load times), or
    /// not at all (`None`). Wakes the requests waiting for it.
    pub fn wake_ended(&self, host: HostIx, took: Option<Duration>) {
        if let Some(mut h) = self.host(host) {
            h.waking = false;
            if let Some(took) = took {
                h.boot_seconds = Some(smooth(h.boot_seconds, took));
            }
        }
        self.wake_ended.notify_waiters();
    }

    /// Seconds `host` took to come up after its packet, smoothed over its wake-ups.
    pub fn learned_boot(&self, host: HostIx) -> Option<f64> {
        self.host(host).and_then(|h| h.boot_seconds)
    }

    /// Resolves when a wake-up ends. Create it (and `enable` it) before checking [`State::waking`], so an end
    /// in between is not missed.
    pub fn wake_signal(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake_ended.notified()
    }

    /// A request for the engine's `model` is being sent to `deployment`: the engine loads the model (if it has
    /// not already), so the next request for it should go to the same host rather than load it on another one.
    /// Returns whether this added the model, so a failed attempt can take it back ([`State::load_failed`]).
    pub fn model_routed(&self, deployment: DeploymentIx, model: &str, now: Millis) -> bool {
        let Some((index, mut h)) = self.host_of(deployment) else { return false };
        if !h.add_resident(model) {
            return false;
        }
        h.updated = now;
        drop(h);
        self.host_changed(index);
        true
    }

    /// The slots of deployment `deployment`'s engine when it is a llama.cpp server a probe counted them on (it
    /// then takes `id_slot`).
    pub fn llama_slots(&self, deployment: DeploymentIx) -> Option<usize> {
        let (_, h) = self.host_of(deployment)?;
        h.slots.map(|s| s.total).filter(|&n| n > 0)
    }

    /// What the engine of `deployment` keeps of earlier prompts beyond its slots, as its profile says, once a
    /// probe recognised the engine.
    pub fn kept_prompts(&self, deployment: DeploymentIx) -> KeptPrompts {
        self.host_of(deployment).and_then(|(_, h)| h.engine).map_or(KeptPrompts::default(), |e| e.keeps_prompts)
    }

    /// Whether a probe has looked at `host` (and so, on engines that tell, at what it has loaded).
    pub fn probed(&self, host: Option<HostIx>) -> bool {
        host.and_then(|h| self.host(h)).is_some_and(|h| h.last_probe.is_some())
    }

    /// Whether an extra probe of `host` may start now: none started in the last `gap_ms` (it is then recorded).
    pub fn claim_reprobe(&self, host: HostIx, now: Millis, gap_ms: u64) -> bool {
        let Some(mut h) = self.host(host) else { return false };
        if h.reprobe_at.is_some_and(|t| now.since(t) < gap_ms) {
            return false;
        }
        h.reprobe_at = Some(now);
        true
    }

    /// The attempt that [`State::model_routed`] marked failed: the model is not known to be loaded there.
    pub fn load_failed(&self, deployment: DeploymentIx, model: &str, now: Millis) {
        let Some((index, mut h)) = self.host_of(deployment) else { return };
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
    pub fn host_answered(&self, deployment: DeploymentIx, model: &str, now: Millis) {
        let Some((index, mut h)) = self.host_of(deployment) else { return };
        let mut changed = false;
        // A probe's HTTP error stays reported until the next probe: the host answering requests is no news.
        let probe_error = h.status == HostStatus::Down && h.http_error;
        if matches!(h.status, HostStatus::Down | HostStatus::Unknown | HostStatus::Loading) && !probe_error {
            h.status = HostStatus::Up;
            h.reason = "answered a request".to_owned();
            h.since = now;
            changed = true;
        }
        h.down_until = Millis::default();
        changed |= h.add_resident(model);
        if changed {
            h.updated = now;
            drop(h);
            self.host_changed(index);
        }
    }

    /// Records a probe of `host` (whose deployments are `deployments`, as `Config::hosts` lists them). A failed
    /// probe keeps the host out of routing for `stale_after` (until the next probe is due; the caller decides
    /// how long for each kind of failure); a probe that could not reach the host starts re-probing it; a
    /// successful one lifts a connection cooldown of its deployments.
    pub fn probe_result(
        &self,
        host: HostIx,
        deployments: &[usize],
        outcome: ProbeOutcome,
        now: Millis,
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
            let hold = now.after(stale_after);
            h.down_until = match status {
                // A live request may already have taken the host out for longer.
                HostStatus::Down if outcome.unreachable => h.down_until.max(hold),
                HostStatus::Down | HostStatus::Loading => hold,
                _ => Millis::default(),
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
                    h.learn_budget(&resident, self.to_unix(now) as f64 / 1000.0);
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
            self.lift_unreachable_cooldowns(deployments, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::{state, ALL};
    use crate::state::CooldownCause;

    const H0: HostIx = HostIx(0);
    const D: [DeploymentIx; 3] = [DeploymentIx(0), DeploymentIx(1), DeploymentIx(2)];

    #[test]
    fn engine_expiry_times_read_as_unix_seconds() {
        assert_eq!(unix_seconds("1970-01-01T00:01:00Z"), Some(60.0));
        assert_eq!(unix_seconds("1970-01-01T01:01:00.5+01:00"), Some(60.5));
        assert_eq!(unix_seconds("soon"), None);
    }

    #[test]
    fn a_load_that_evicted_a_model_before_its_keep_alive_ran_out_teaches_the_hosts_budget() {
        let model = |name: &str, size: u64, expires: &str| Resident {
            model: name.into(),
            size: Some(size),
            expires_at: Some(expires.into()),
            probed: true,
            ..Resident::default()
        };
        let later = "2999-01-01T00:00:00Z";
        let mut h = HostState { resident: vec![model("a", 6_000, later)], ..HostState::default() };
        h.learn_budget(&[model("a", 6_000, later), model("b", 3_000, later)], 1_000.0);
        assert_eq!(h.learned_budget, None, "loaded together, nothing evicted: nothing known yet");
        h.resident = vec![model("a", 6_000, later), model("b", 3_000, later)];
        h.learn_budget(&[model("b", 3_000, later), model("c", 5_000, later)], 1_000.0);
        assert_eq!(h.learned_budget, Some(13_999), "a, b and c did not fit together");
        h.resident = vec![model("b", 3_000, later), model("c", 5_000, later)];
        h.learn_budget(&[model("c", 5_000, later), model("d", 4_000, later)], 1_000.0);
        assert_eq!(h.learned_budget, Some(11_999), "b, c and d did not fit either");
        // b left when its keep-alive ran out: that says nothing about room.
        let mut expired = HostState {
            resident: vec![model("b", 3_000, "1970-01-01T00:10:00Z"), model("c", 5_000, later)],
            ..HostState::default()
        };
        expired.learn_budget(&[model("c", 5_000, later), model("d", 4_000, later)], 1_000.0);
        assert_eq!(expired.learned_budget, None);
        // More loaded together than the budget learned: it was too low (a model unloaded by hand).
        h.resident = vec![model("c", 5_000, later), model("d", 4_000, later)];
        h.learn_budget(&[model("c", 5_000, later), model("d", 4_000, later), model("e", 7_000, later)], 1_000.0);
        assert_eq!(h.learned_budget, Some(16_000));
    }

    #[test]
    fn a_model_counts_as_loading_where_it_was_routed_until_the_attempt_fails() {
        let state = state();
        let warm = |now| state.snapshot(&ALL, Millis(now), None)[1].warm;
        assert!(state.model_routed(D[1], "m", Millis(0)));
        assert!(warm(0), "the next request follows it to h2");
        assert!(!state.model_routed(D[1], "m", Millis(0)), "already there");
        state.load_failed(D[1], "m", Millis(5));
        assert!(!warm(5));
        // A model a probe saw stays, whatever one attempt did.
        state.probe_result(
            HostIx(1),
            &[1],
            ProbeOutcome {
                resident: Some(vec![Resident { model: "m".into(), probed: true, ..Resident::default() }]),
                ..ProbeOutcome::default()
            },
            Millis(10),
            Duration::from_secs(60),
        );
        state.load_failed(D[1], "m", Millis(20));
        assert!(warm(20));
    }

    #[test]
    fn a_refused_connection_takes_the_whole_host_out_until_it_answers() {
        let state = state();
        let unhealthy = |d: usize, now| state.snapshot(&ALL, Millis(now), None)[d].unhealthy;
        state.host_unreachable(H0, "connection refused", Millis(0), Millis(30_000));
        assert!(unhealthy(0, 10) && unhealthy(2, 10), "both deployments on h1");
        assert!(!unhealthy(1, 10));
        assert!(!unhealthy(0, 30_000), "the passive window ends");
        state.host_unreachable(H0, "connection refused", Millis(0), Millis(30_000));
        state.host_answered(D[2], "n", Millis(20));
        assert!(!unhealthy(0, 30));
        assert_eq!(state.hosts()[0].status, HostStatus::Up);
    }

    #[test]
    fn probes_set_status_residency_and_lift_connection_cooldowns() {
        let state = state();
        state.cool_down(D[0], Duration::from_secs(60), CooldownCause::Unreachable, Millis(0));
        state.cool_down(D[2], Duration::from_secs(60), CooldownCause::Status(429), Millis(0));
        let down = ProbeOutcome { failure: Some("refused".into()), ..ProbeOutcome::default() };
        state.probe_result(H0, &[0, 2], down, Millis(0), Duration::from_secs(1800));
        assert!(state.snapshot(&ALL, Millis(1_000_000), None)[0].unhealthy, "down until the next probe is due");
        let resident = Resident { model: "m:latest".into(), size: Some(5), probed: true, ..Resident::default() };
        let up = ProbeOutcome {
            available: vec!["m:latest".into()],
            resident: Some(vec![resident]),
            missing: vec!["n".into()],
            ..ProbeOutcome::default()
        };
        state.probe_result(H0, &[0, 2], up, Millis(5), Duration::from_secs(1800));
        let view = state.snapshot(&ALL, Millis(10), None);
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
        let warm = |d: usize| state.snapshot(&ALL, Millis(0), None)[d].warm;
        assert!(!warm(1));
        state.host_answered(D[1], "m", Millis(0));
        assert!(warm(1));
        assert!(!warm(0), "another host");
    }
}
