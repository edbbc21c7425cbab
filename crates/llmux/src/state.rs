//! Routing state shared by every request: what live traffic and health probes taught the router, read by
//! [`crate::router`] as a plain snapshot. In memory; the same interface is meant to gain a Redis backing for
//! replicas.
//!
//! Time is passed in as milliseconds since [`State::epoch`], so tests drive it without sleeping.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::ErrorClass;
use crate::router::DeploymentView;

/// Per-deployment state, indexed like `Config::deployments`.
#[derive(Debug)]
pub struct State {
    epoch: Instant,
    slots: Vec<Slot>,
    /// Woken when a slot-limited deployment finishes a request.
    freed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Slot {
    in_flight: AtomicU32,
    /// The deployment has a `max_parallel_requests`, so waiters care when it frees up.
    limited: bool,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    cooldown_until: u64,
    cooldown_status: u16,
    host_down: bool,
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
    /// Fresh state for deployments whose `max_parallel_requests` presence is given by `limited`.
    pub fn new(limited: impl IntoIterator<Item = bool>) -> Self {
        State {
            epoch: Instant::now(),
            slots: limited.into_iter().map(|limited| Slot { limited, ..Slot::default() }).collect(),
            freed: tokio::sync::Notify::new(),
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
                DeploymentView {
                    cooldown_until: if inner.cooldown_until > now { inner.cooldown_until } else { 0 },
                    unhealthy: inner.host_down,
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
                host_down: inner.host_down,
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
            inner.host_down = false;
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

    /// The background health check found the host of `deployments` down, or up again (which also ends a
    /// cooldown caused by a failed connection: the host is back).
    pub fn set_host_down(&self, deployments: &[usize], down: bool) {
        for &i in deployments {
            if let Some(mut inner) = self.inner(i) {
                inner.host_down = down;
                if !down && inner.cooldown_status == 0 {
                    inner.cooldown_until = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const ALL: [usize; 3] = [0, 1, 2];

    #[test]
    fn cooldowns_expire_at_their_time() {
        let state = State::new([false; 2]);
        state.cool_down(1, Duration::from_secs(20), 429, 1_000);
        assert_eq!(state.snapshot(&ALL, 1_000, None)[1].cooldown_until, 21_000);
        assert_eq!(state.snapshot(&ALL, 20_999, None)[1].cooldown_until, 21_000);
        assert_eq!(state.snapshot(&ALL, 21_000, None)[1].cooldown_until, 0);
        assert_eq!(state.snapshot(&ALL, 1_000, None)[0].cooldown_until, 0);
    }

    #[test]
    fn a_successful_probe_ends_a_connection_cooldown_but_not_a_429_one() {
        let state = State::new([false; 2]);
        state.cool_down(0, Duration::from_secs(60), 0, 0);
        state.cool_down(1, Duration::from_secs(60), 429, 0);
        state.set_host_down(&[0, 1], true);
        assert!(state.snapshot(&ALL, 0, None)[0].unhealthy);
        state.set_host_down(&[0, 1], false);
        let view = state.snapshot(&ALL, 0, None);
        assert_eq!(view[0].cooldown_until, 0);
        assert_eq!(view[1].cooldown_until, 60_000);
        assert!(!view[0].unhealthy);
    }

    #[test]
    fn minute_counters_reset_each_minute() {
        let state = State::new([false; 1]);
        assert_eq!(state.record_failure(0, 1_000), MinuteCounts { fails: 1, successes: 0 });
        state.record_success(0, Duration::from_millis(5), 10, 2_000);
        assert_eq!(state.record_failure(0, 3_000), MinuteCounts { fails: 2, successes: 1 });
        assert_eq!(state.record_failure(0, 61_000), MinuteCounts { fails: 1, successes: 0 });
    }

    #[test]
    fn allowed_fails_counters_expire() {
        let state = State::new([false; 1]);
        let ttl = Duration::from_secs(5);
        assert_eq!(state.count_allowed_fail(0, None, ttl, 0), 1);
        assert_eq!(state.count_allowed_fail(0, None, ttl, 1_000), 2);
        assert_eq!(state.count_allowed_fail(0, Some(ErrorClass::RateLimit), ttl, 1_000), 1);
        assert_eq!(state.count_allowed_fail(0, None, ttl, 5_000), 1);
    }

    #[test]
    fn in_flight_and_usage_are_counted_until_the_guard_drops() {
        let state = Arc::new(State::new([false; 1]));
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
        let state = State::new([false; 1]);
        for (i, ms) in [100u64, 200, 300].into_iter().enumerate() {
            state.record_success(0, Duration::from_millis(ms), 2, i as u64 * 1_000);
        }
        let view = state.snapshot(&ALL, 2_000, None)[0];
        assert!((view.latency.unwrap() - 0.25).abs() < 1e-9);
        let stale = state.snapshot(&ALL, 10_000, Some(Duration::from_secs(5)))[0];
        assert_eq!(stale.latency, None);
    }
}
