//! Holding a request while the sleeping host it needs wakes up ([`crate::router::plan::Action::Wake`]): starts
//! the wake-up (or joins the one under way, so concurrent requests send no second round of packets) and waits
//! for its end; a held stream says what it waits for in its keep-alive comments.

use std::time::{Duration, Instant};

use super::{stream, Executor};
use crate::router::wake;
use crate::state::HostIx;

/// Extra time a request waits beyond the host's patience before it stops waiting on its own (the wake-up task
/// ends the wait sooner; this only bounds it if that task is gone, as after a reload).
const GRACE: Duration = Duration::from_secs(5);

impl Executor {
    /// Whether `host` can be woken and sleeps now (or is being woken).
    pub fn asleep(&self, host: usize) -> bool {
        let wakes = self.config.hosts.get(host).is_some_and(|h| h.wake.is_some());
        wakes && (self.state.asleep(HostIx(host)) || self.state.waking(HostIx(host)).is_some())
    }

    /// Wakes `host`, or joins the wake-up under way, and holds the request until it ends: whether the host
    /// answers now.
    pub async fn wake(&self, host: usize) -> bool {
        let Some(spec) = self.config.hosts.get(host) else { return false };
        let Some(w) = &spec.wake else { return false };
        let ix = HostIx(host);
        let now = self.state.now();
        if self.state.claim_wake(ix, now) {
            tracing::info!("waking {} (wake-on-LAN to {})", spec.origin, w.address);
            let (config, state, client) =
                (self.config.clone(), std::sync::Arc::downgrade(&self.state), self.client.clone());
            tokio::spawn(crate::health::wake::wake(config, state, client, host));
        }
        let sent = self.state.waking(ix).unwrap_or(now);
        let since = Instant::now() - Duration::from_millis(self.state.now().since(sent));
        stream::waiting_for(Some((format!("waking {}", spec.origin), since)));
        let deadline = since + wake::patience(w.boot, self.state.learned_boot(ix)) + GRACE;
        loop {
            let signal = self.state.wake_signal();
            tokio::pin!(signal);
            signal.as_mut().enable();
            if self.state.waking(ix).is_none() {
                break;
            }
            if tokio::time::timeout_at(deadline.into(), signal).await.is_err() {
                break;
            }
        }
        stream::waiting_for(None);
        !self.state.asleep(ix)
    }
}
