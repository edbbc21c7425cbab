//! Warm-up ahead of demand (`llmux_settings.warmup: true`): learns each group's daily pattern from the requests
//! that finish (an observe [`Sink`] feeding [`Profile`]), and a few minutes before an hour that past days show
//! demand in, wakes the sleeping host of the group's preferred deployment and preloads its model there, so the
//! household's first request of the morning does not wait for a boot and a load. The profile is kept as
//! `warmup.json` in the data directory (`--data-dir`, else the config file's directory).
//!
//! On a simulated clock (`--simulated-clock`, for benchmarks and tests) time stands still until
//! [`Warmup::advance`] moves it: every minute passed over is looked at as the timer would, and the warm-ups
//! due are carried out before it returns, so a replayed week takes seconds and behaves as the real one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::executor::Executor;
use crate::lifecycle::Live;
use crate::observe::{Finished, Sink};
use crate::router::warmup::Profile;

/// The profile's file in the data directory.
pub const FILE: &str = "warmup.json";
/// How often the schedule is looked at.
const EVERY: Duration = Duration::from_secs(60);
const MINUTE_MS: u64 = 60_000;
/// The longest step of a simulated clock (a month of minutes to look at).
const LONGEST_STEP_MS: u64 = 31 * 24 * 60 * MINUTE_MS;
/// How long a preloaded model stays loaded (Ollama's `keep_alive`, seconds): past the slot it was loaded for.
const KEEP_LOADED_SECS: i64 = 20 * 60;

/// The learned profile, where it is kept, and what feeds it.
pub struct Warmup {
    profile: Mutex<Profile>,
    path: Option<PathBuf>,
    /// On a simulated clock: the time it shows (unix ms); `None` on the system clock.
    simulated: Option<Mutex<u64>>,
    /// One [`Warmup::advance`] at a time.
    advancing: tokio::sync::Mutex<()>,
}

/// The profile kept in `dir`, if any (an unreadable file counts as none: it is relearned).
pub fn read(dir: &Path) -> Option<Profile> {
    let text = std::fs::read_to_string(dir.join(FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

fn now_unix_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(0)
}

impl Warmup {
    /// Starts learning and warming up for `live`, keeping the profile in `dir`; on the system clock, or on a
    /// simulated one that starts at `simulated_clock` (unix ms).
    pub fn start(live: &Arc<Live>, dir: Option<&Path>, simulated_clock: Option<u64>) {
        let warmup = Arc::new(Warmup {
            profile: Mutex::new(dir.and_then(read).unwrap_or_default()),
            path: dir.map(|d| d.join(FILE)),
            simulated: simulated_clock.map(Mutex::new),
            advancing: tokio::sync::Mutex::new(()),
        });
        live.hub().register(warmup.clone());
        live.set_warmup(warmup.clone());
        if warmup.simulated.is_none() {
            tokio::spawn(warmup.run(Arc::downgrade(live)));
        }
    }

    fn profile(&self) -> std::sync::MutexGuard<'_, Profile> {
        self.profile.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_simulated(&self, clock: &Mutex<u64>, now: u64) {
        *clock.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }

    /// Moves a simulated clock forward to `to` (unix ms), looking at every minute on the way as the timer
    /// would and carrying out the warm-ups due before returning; what was warmed up, when (unix ms).
    pub async fn advance(&self, live: &Arc<Live>, to: u64) -> Result<Vec<(u64, String)>, String> {
        let Some(clock) = &self.simulated else {
            return Err("warm-up runs on the system clock (llmux was not started with --simulated-clock)".into());
        };
        let _one = self.advancing.lock().await;
        let from = *clock.lock().unwrap_or_else(|e| e.into_inner());
        if to < from || to - from > LONGEST_STEP_MS {
            return Err(format!("the clock moves forward by at most 31 days at a time (it shows {from}, asked {to})"));
        }
        let mut warmed = Vec::new();
        let mut at = (from / MINUTE_MS + 1) * MINUTE_MS;
        while at <= to {
            self.set_simulated(clock, at);
            let due = self.profile().due(at);
            for group in due {
                tracing::info!("warm-up: {group} is usually asked for in the coming hour; waking and preloading");
                warm(live.executor(), group.clone()).await;
                warmed.push((at, group));
            }
            at += MINUTE_MS;
        }
        self.set_simulated(clock, to);
        self.save();
        Ok(warmed)
    }

    /// Every minute until `live` is gone: warms up the groups due, and keeps the profile.
    async fn run(self: Arc<Self>, live: Weak<Live>) {
        loop {
            tokio::time::sleep(EVERY).await;
            let Some(live) = live.upgrade() else { return };
            let due = self.profile().due(now_unix_ms());
            for group in due {
                tracing::info!("warm-up: {group} is usually asked for in the coming hour; waking and preloading");
                tokio::spawn(warm(live.executor(), group));
            }
            self.save();
        }
    }

    fn save(&self) {
        let Some(path) = &self.path else { return };
        let Ok(text) = serde_json::to_string(&*self.profile()) else { return };
        let temporary = path.with_extension("json.tmp");
        if let Err(e) = std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, path)) {
            tracing::warn!("warm-up: cannot keep the profile in {}: {e}", path.display());
        }
    }
}

impl Sink for Warmup {
    fn finished(&self, record: &Arc<Finished>) {
        if let Some(group) = &record.group {
            // A simulated clock stands still while the request runs.
            let at = match &self.simulated {
                Some(clock) => *clock.lock().unwrap_or_else(|e| e.into_inner()),
                None => record.started_unix_ms,
            };
            self.profile().request(group, at);
        }
    }
}

/// Wakes the host of `group`'s preferred deployment (lowest `order`, a host that can be woken first) if it
/// sleeps, then preloads the deployment's model there.
async fn warm(exec: Arc<Executor>, group: String) {
    let config = exec.config.clone();
    let Some(members) = config.groups.get(&group) else { return };
    let mut members: Vec<usize> = members.clone();
    let wakes = |i: usize| config.deployments[i].host.is_some_and(|h| config.hosts[h].wake.is_some());
    members.sort_by_key(|&i| (!wakes(i), config.deployments[i].order.unwrap_or(u32::MAX)));
    let Some(d) = members.first().map(|&i| &config.deployments[i]) else { return };
    let (Some(host), Some(engine)) = (d.host, d.engine()) else { return };
    if exec.asleep(host) && !exec.wake(host).await {
        return;
    }
    if engine.upstream_model.contains('*') {
        return;
    }
    let (spec, model) = (&config.hosts[host], &engine.upstream_model);
    // A box can go to sleep between two probes: one that does not answer is woken, then loaded.
    let keep = || Some(serde_json::json!(KEEP_LOADED_SECS));
    if !crate::health::preload(spec, model, keep(), exec.client()).await && spec.wake.is_some() && exec.wake(host).await
    {
        crate::health::preload(spec, model, keep(), exec.client()).await;
    }
}
