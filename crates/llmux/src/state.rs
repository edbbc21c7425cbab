//! Routing state shared by every request: what the executor learned from live traffic, read by the router as
//! a cheap snapshot. In memory for now; the same interface will be backed by Redis for replicas.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::router::DeploymentView;

/// How long a deployment that refused a connection is tried only after every other one.
pub const UNREACHABLE_FOR: Duration = Duration::from_secs(10);

/// Per-deployment state, indexed like `Config::deployments`.
#[derive(Debug)]
pub struct State {
    epoch: Instant,
    /// Milliseconds since `epoch` until which each deployment counts as unreachable (0 = reachable).
    unreachable_until: Vec<AtomicU64>,
    /// Set by the background health check while a deployment's host fails its probe.
    host_down: Vec<AtomicBool>,
}

impl State {
    /// Fresh state for `deployments` deployments.
    pub fn new(deployments: usize) -> Self {
        State {
            epoch: Instant::now(),
            unreachable_until: (0..deployments).map(|_| AtomicU64::new(0)).collect(),
            host_down: (0..deployments).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// A connection to deployment `index` failed at `now`.
    pub fn mark_unreachable(&self, index: usize, now: Instant) {
        if let Some(slot) = self.unreachable_until.get(index) {
            slot.store(self.millis(now + UNREACHABLE_FOR).max(1), Ordering::Relaxed);
        }
    }

    /// Deployment `index` answered: whatever a probe or an earlier failure said, its host is up.
    pub fn mark_reachable(&self, index: usize) {
        if let Some(slot) = self.unreachable_until.get(index) {
            if slot.load(Ordering::Relaxed) != 0 {
                slot.store(0, Ordering::Relaxed);
            }
        }
        if let Some(flag) = self.host_down.get(index) {
            if flag.load(Ordering::Relaxed) {
                flag.store(false, Ordering::Relaxed);
            }
        }
    }

    /// The background health check found the host of `deployments` down (or up again).
    pub fn set_host_down(&self, deployments: &[usize], down: bool) {
        for &i in deployments {
            if let Some(flag) = self.host_down.get(i) {
                flag.store(down, Ordering::Relaxed);
            }
        }
    }

    /// What the router sees at `now`.
    pub fn snapshot(&self, now: Instant) -> Vec<DeploymentView> {
        let now = self.millis(now);
        self.unreachable_until
            .iter()
            .zip(&self.host_down)
            .map(|(slot, down)| DeploymentView {
                unreachable: slot.load(Ordering::Relaxed) > now || down.load(Ordering::Relaxed),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_expires_and_success_clears_it() {
        let state = State::new(2);
        let t0 = Instant::now();
        state.mark_unreachable(1, t0);
        assert!(state.snapshot(t0)[1].unreachable);
        assert!(!state.snapshot(t0)[0].unreachable);
        assert!(!state.snapshot(t0 + UNREACHABLE_FOR + Duration::from_millis(5))[1].unreachable);
        state.mark_unreachable(0, t0);
        state.mark_reachable(0);
        assert!(!state.snapshot(t0)[0].unreachable);
    }

    #[test]
    fn a_failed_probe_holds_until_a_probe_or_a_request_succeeds() {
        let state = State::new(3);
        let far = Instant::now() + Duration::from_secs(3600);
        state.set_host_down(&[0, 2], true);
        assert_eq!(state.snapshot(far).iter().map(|v| v.unreachable).collect::<Vec<_>>(), [true, false, true]);
        state.mark_reachable(2);
        state.set_host_down(&[0], false);
        assert!(state.snapshot(far).iter().all(|v| !v.unreachable));
    }
}
