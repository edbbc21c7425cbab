//! What replicas share: this state's changes go out through a [`ChangeSink`] (the Redis outbox of
//! [`crate::shared`], when configured), and what the others shared comes back in as a [`Remote`] (kept apart
//! from this replica's own counts, so it can be forgotten when the shared store goes away). Times crossing
//! replicas are unix ms; the state clock is this process's own.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::clock::Millis;
use super::deployments::{CooldownCause, PeerUsage};
use super::hosts::{HostState, HostStatus, Resident};
use super::DeploymentIx;
use super::State;
use crate::router::affinity::{Link, Prefix};

/// Where this replica's changes go for the others. Called on the request path, so an implementation only
/// records (one short lock) and sends later.
pub trait ChangeSink: Send + Sync + std::fmt::Debug {
    /// Adds `delta` to deployment `id`'s usage in `delta.minute`.
    fn usage(&self, id: &Arc<str>, delta: PeerUsage);
    /// Adds `delta` (negative when the engine reported fewer tokens than estimated) to deployment `id`'s tokens
    /// in the UTC minute `minute`.
    fn tokens(&self, id: &Arc<str>, minute: u64, delta: i64);
    /// Deployment `id` cools down until `until` (unix ms), for `cause`.
    fn cooldown(&self, id: &Arc<str>, until: u64, cause: CooldownCause);
    /// A probe found deployment `id`'s host answering: its connection cooldown ends everywhere.
    fn lift(&self, id: &Arc<str>);
    /// Host `origin`'s view changed (read back with [`State::shared_host`]).
    fn host(&self, origin: &Arc<str>);
    /// A prompt with these message-boundary `links` was sent to `slot` of deployment `id` at `at` (unix ms).
    fn prefix(&self, id: &Arc<str>, slot: usize, links: &[Link], at: u64);
}

/// A prompt another replica sent to one cache slot of a deployment (see [`crate::router::affinity`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedPrefix {
    /// The deployment's id.
    pub id: String,
    /// The slot.
    pub slot: usize,
    /// When it was sent (unix ms).
    pub at: u64,
    /// Its message boundaries.
    pub links: Vec<Link>,
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
    /// Prompts other replicas sent to cache slots (empty when none changed since the last read).
    pub prefixes: Vec<SharedPrefix>,
}

impl State {
    /// Sends this state's changes to other replicas through `sink` from now on.
    pub fn attach(&self, sink: Arc<dyn ChangeSink>) {
        let _ = self.sink.set(sink);
    }

    pub(super) fn sink(&self) -> Option<&dyn ChangeSink> {
        self.sink.get().map(Arc::as_ref)
    }

    pub(super) fn host_changed(&self, host: super::HostIx) {
        if let (Some(sink), Some(origin)) = (self.sink(), self.origins.get(host.0)) {
            sink.host(origin);
        }
    }

    /// Cooldowns this replica set that are still running, as (id, until unix ms, cause): re-sent to Redis when
    /// it comes back after an outage.
    pub fn active_cooldowns(&self, now: Millis) -> Vec<(Arc<str>, u64, CooldownCause)> {
        self.slots
            .iter()
            .filter_map(|slot| {
                let inner = slot.lock();
                let cause = inner.cooldown_cause.filter(|_| inner.cooldown_until > now)?;
                Some((slot.id.clone(), self.to_unix(inner.cooldown_until), cause))
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
            down_until: if h.down_until == Millis::default() { 0 } else { self.to_unix(h.down_until) },
            resident: h.resident.clone(),
            updated: self.to_unix(h.updated),
        })
    }

    /// Takes in what other replicas shared: their cooldowns (by deployment id, until unix ms; a deployment
    /// missing here has none), host views newer than this replica's, their usage this minute and their
    /// in-flight counts. Ids and origins this config does not have are ignored.
    pub fn apply_remote(&self, remote: &Remote) {
        self.remote_reads.fetch_add(1, Ordering::Relaxed);
        for slot in &self.slots {
            let mut inner = slot.lock();
            inner.remote_cooldown_until =
                remote.cooldowns.get(&*slot.id).map_or(Millis::default(), |&u| self.from_unix(u));
            inner.peer = remote.usage.get(&*slot.id).copied().unwrap_or_default();
            slot.peer_in_flight.store(remote.in_flight.get(&*slot.id).copied().unwrap_or(0), Ordering::Relaxed);
        }
        for (origin, shared) in &remote.hosts {
            let Some(mut h) = self.by_origin.get(origin.as_str()).and_then(|&i| self.host(i)) else { continue };
            apply_shared(&mut h, shared, |unix| self.from_unix(unix));
        }
        if !remote.prefixes.is_empty() {
            let mut cache = self.prefix_cache();
            for shared in &remote.prefixes {
                let Some(i) = self.slots.iter().position(|s| *s.id == *shared.id) else { continue };
                let (Some(slot), keeps) = (self.slots.get(i), self.kept_prompts(DeploymentIx(i))) else { continue };
                let prefix = Prefix::from_links(shared.links.clone());
                cache.learn(&slot.id, shared.slot, &prefix, self.from_unix(shared.at).0, keeps);
            }
        }
    }

    /// How many reads of what other replicas shared this replica has taken in: a replica that stops reading
    /// (Redis unreachable) stops counting.
    pub fn remote_reads(&self) -> u64 {
        self.remote_reads.load(Ordering::Relaxed)
    }

    /// Tells other replicas that `prefix` was sent to `slot` of deployment `id` at `at`.
    pub fn share_prefix(&self, id: &Arc<str>, slot: usize, prefix: &Prefix, at: Millis) {
        if let Some(sink) = self.sink() {
            sink.prefix(id, slot, prefix.links(), self.to_unix(at));
        }
    }

    /// Forgets what other replicas reported that cannot expire by itself (usage, in-flight counts), when the
    /// shared store is unreachable. Their cooldowns and host views stay until they run out.
    pub fn forget_peers(&self) {
        for slot in &self.slots {
            slot.peer_in_flight.store(0, Ordering::Relaxed);
            slot.lock().peer = PeerUsage::default();
        }
    }
}

/// Takes another replica's view of a host when it is newer than this one's (`local` converts its unix times).
fn apply_shared(h: &mut HostState, shared: &SharedHost, local: impl Fn(u64) -> Millis) {
    let updated = local(shared.updated);
    if shared.updated == 0 || updated <= h.updated {
        return;
    }
    h.status = shared.status;
    h.reason = shared.reason.clone();
    h.since = local(shared.since);
    h.down_until = if shared.down_until == 0 { Millis::default() } else { local(shared.down_until) };
    h.resident = shared.resident.clone();
    h.updated = updated;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::{state, ALL};
    use crate::state::{DeploymentIx, MinuteCounts};

    #[test]
    fn what_other_replicas_share_adds_to_the_routers_view() {
        let state = state();
        let id = |i: usize| state.slots[i].id.to_string();
        let _mine = state.start(DeploymentIx(0), 10, Millis(1_000));
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
        let view = state.snapshot(&ALL, Millis(1_000), None);
        assert_eq!((view[0].in_flight, view[0].requests_this_minute, view[0].tokens_this_minute), (4, 6, 60));
        assert_eq!(view[1].cooldown_until, 30_000, "another replica's cooldown");
        assert!(view[1].unhealthy, "another replica found h2 down");
        assert_eq!(state.record_failure(DeploymentIx(0), Millis(1_000)), MinuteCounts { fails: 5, successes: 1 });
        // A newer local view of the host wins over an older shared one.
        state.host_answered(DeploymentIx(1), "m", Millis(2_000));
        state.apply_remote(&remote);
        assert!(!state.snapshot(&ALL, Millis(2_000), None)[1].unhealthy);
        // Next minute the peers' counts no longer apply; without Redis they are forgotten.
        assert_eq!(state.snapshot(&ALL, Millis(60_000), None)[0].requests_this_minute, 0);
        state.forget_peers();
        assert_eq!(state.snapshot(&ALL, Millis(1_000), None)[0].in_flight, 1);
    }
}
