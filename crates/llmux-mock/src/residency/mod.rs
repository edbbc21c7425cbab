//! Model residency, simulated the way Ollama manages it: which models are loaded, how much memory they take,
//! how long loading one takes, which one is evicted to make room, and when an idle one expires.
//!
//! Off unless [`MockConfig::residency`] is set; then it is the truth behind `/api/ps`, the sizes in
//! `/api/tags`, the `loaded` knob (kept in step with it) and Ollama's `load_duration`.
//!
//! - A chat, generate or embedding request (Ollama or OpenAI-compatible route) for a model that is not loaded
//!   waits the model's load time before its answer starts (headers, first token, or the whole non-streamed
//!   answer). Loads on one host happen one at a time, as in Ollama's scheduler; a request for a model that is
//!   still loading waits for that load instead of starting another.
//! - To make room, idle loaded models are evicted least recently used first until the new one fits the memory
//!   budget and the model count; when only busy models stand in the way, the load waits until they finish
//!   (Ollama never unloads a model in use). A model larger than the whole budget is loaded once everything else
//!   is gone (Ollama would spill it to the CPU).
//! - When a model's last request finishes it stays loaded for the request's `keep_alive` (Ollama's forms: a
//!   duration string such as `"5m"`, a number of seconds, `0` = unload now, negative = forever), else for the
//!   configured default.
//! - An `/api/generate` without a prompt (or an `/api/chat` without messages) only loads the model — Ollama's
//!   documented preload — and with `keep_alive: 0` unloads it instead.
//! - A load whose requests all went away before it finished (their clients hung up) is aborted, as Ollama
//!   does: the model is not loaded, and the next request for it loads it again.
//! - Probes (`/api/tags`, `/api/ps`, `/api/show`, `/v1/models`, `/health`, ...) never load anything.
//!
//! Loads, evictions (and which of them pushed out a model that was serving when the load was asked for) and
//! unloads are counted in [`MockStats`](crate::MockStats).
//!
//! The knobs and the values they are written in (sizes, `keep_alive`) are in [`config`]; this module holds the
//! simulation itself.

mod config;

use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{canonical_model, MockConfig};
use crate::state::{lock, App};

pub use config::{parse_size, KeepAlive, ResidencyConfig};
pub(crate) use config::{pseudo_size, reported_size};

/// The inference routes that need the model loaded.
const INFERENCE_PATHS: &[&str] = &[
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/embeddings",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
];

/// A loaded (or loading) model, as `/api/ps` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResidentModel {
    /// The model's name (as the served list spells it).
    pub name: String,
    /// Bytes it takes.
    pub size: u64,
    /// When it expires if left idle; `None` = never (`keep_alive` negative).
    pub expires_at: Option<SystemTime>,
    /// Whether it is still loading.
    pub loading: bool,
    /// Requests using it now.
    pub in_use: u32,
}

/// One model in memory.
#[derive(Debug)]
struct Entry {
    /// The canonical name (`:latest` explicit), for matching.
    key: String,
    /// The name reported.
    name: String,
    size: u64,
    /// When its load finishes (in the past once loaded).
    ready_at: Instant,
    /// When it expires if idle; `None` = never.
    expires_at: Option<Instant>,
    /// How long it stays once idle: the last request's `keep_alive`.
    session: KeepAlive,
    /// Requests using it now (the one loading it included).
    refs: u32,
    /// When its last request finished (meaningful while `refs` is 0): a load asked for before then waited for it.
    idle_since: Instant,
}

/// The residency state of one server.
#[derive(Debug)]
pub(crate) struct State {
    /// Least recently used first.
    entries: Vec<Entry>,
    /// When the load in progress (and any queued behind it) is done.
    loader_free_at: Option<Instant>,
    /// `loaded` as last written, to notice a change made through the config.
    mirror: Option<Vec<String>>,
    /// Bumped whenever a model becomes idle or leaves, for loads waiting on busy models.
    freed: watch::Sender<u64>,
}

impl Default for State {
    fn default() -> Self {
        Self { entries: Vec::new(), loader_free_at: None, mirror: None, freed: watch::Sender::new(0) }
    }
}

impl State {
    /// Forgets every model (the server's knobs were reset); loads waiting for room try again.
    pub(crate) fn reset(&mut self) {
        self.entries.clear();
        self.loader_free_at = None;
        self.mirror = None;
        self.freed.send_modify(|g| *g += 1);
    }

    fn find(&self, key: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.key == key)
    }

    fn used(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    /// Brings the state up to date: takes over changes made to `loaded` through the config (added models count
    /// as loaded now, removed idle ones leave), drops expired idle models, and writes the result back to
    /// `loaded`.
    fn sync(&mut self, cfg: &mut MockConfig, rc: &ResidencyConfig, app: &App, now: Instant) {
        if self.mirror.as_ref() != Some(&cfg.loaded) {
            let wanted: Vec<String> = cfg.loaded.iter().map(|m| canonical_model(m)).collect();
            self.entries.retain(|e| e.refs > 0 || wanted.contains(&e.key));
            for (name, key) in cfg.loaded.iter().zip(wanted) {
                if self.find(&key).is_none() {
                    self.entries.push(Entry {
                        key,
                        name: name.clone(),
                        size: rc.size_of(name),
                        ready_at: now,
                        expires_at: rc.keep_alive.expiry(now),
                        session: rc.keep_alive,
                        refs: 0,
                        idle_since: now,
                    });
                }
            }
        }
        let before = self.entries.len();
        self.entries.retain(|e| e.refs > 0 || e.expires_at.is_none_or(|at| at > now));
        let expired = before - self.entries.len();
        if expired > 0 {
            lock(&app.stats).unloads += expired as u64;
            self.freed.send_modify(|g| *g += 1);
        }
        self.write_back(cfg);
    }

    fn write_back(&mut self, cfg: &mut MockConfig) {
        cfg.loaded = self.entries.iter().map(|e| e.name.clone()).collect();
        self.mirror = Some(cfg.loaded.clone());
    }

    fn snapshot(&self, now: Instant) -> Vec<ResidentModel> {
        let wall = SystemTime::now();
        let mut out: Vec<ResidentModel> = self
            .entries
            .iter()
            .map(|e| ResidentModel {
                name: e.name.clone(),
                size: e.size,
                expires_at: e.expires_at.map(|at| wall + at.saturating_duration_since(now)),
                loading: e.ready_at > now,
                in_use: e.refs,
            })
            .collect();
        // Ollama lists the latest expiry first.
        out.sort_by(|a, b| match (a.expires_at, b.expires_at) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => y.cmp(&x),
        });
        out
    }
}

/// The models loaded now (loading ones included), latest expiry first; `None` when residency is off.
pub(crate) fn resident(app: &App) -> Option<Vec<ResidentModel>> {
    app.update(|cfg| {
        let rc = cfg.residency.clone()?;
        let mut st = lock(&app.residency);
        let now = Instant::now();
        st.sync(cfg, &rc, app, now);
        Some(st.snapshot(now))
    })
}

/// What an inference request asks of residency, read from its body before it is handled.
#[derive(Debug)]
pub(crate) struct Want {
    model: String,
    keep_alive: Option<KeepAlive>,
    /// A generate without a prompt (or a chat without messages): load or unload only.
    preload: bool,
}

impl Want {
    /// The residency part of a request to `path`; `None` for everything but inference with a model.
    pub(crate) fn parse(path: &str, body: &Value) -> Option<Self> {
        if !INFERENCE_PATHS.contains(&path) {
            return None;
        }
        let model = body.get("model")?.as_str().filter(|m| !m.is_empty())?.to_owned();
        let preload = match path {
            "/api/generate" => body.get("prompt").and_then(Value::as_str).unwrap_or_default().is_empty(),
            "/api/chat" => body.get("messages").and_then(Value::as_array).is_none_or(Vec::is_empty),
            _ => false,
        };
        Some(Self { model, keep_alive: body.get("keep_alive").and_then(KeepAlive::parse), preload })
    }
}

/// A request's hold on a loaded model: it cannot be evicted while held. Dropping the lease (when the answer
/// is finished, or the client went away) starts the model's keep-alive.
#[derive(Debug)]
pub(crate) struct Lease {
    app: App,
    key: String,
    keep_alive: Option<KeepAlive>,
    /// How long the request waited for the model (its load, a load queued before it, or room being freed).
    pub(crate) waited: Duration,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let app = self.app.clone();
        app.update(|cfg| {
            let Some(rc) = cfg.residency.clone() else { return };
            let mut st = lock(&app.residency);
            let now = Instant::now();
            if let Some(i) = st.find(&self.key) {
                let e = &mut st.entries[i];
                e.refs = e.refs.saturating_sub(1);
                if let Some(ka) = self.keep_alive {
                    e.session = ka;
                }
                if e.refs == 0 && now < e.ready_at {
                    // Every request waiting for this load went away: Ollama aborts a load its requests left.
                    st.entries.remove(i);
                    lock(&app.stats).aborted_loads += 1;
                    st.freed.send_modify(|g| *g += 1);
                } else if e.refs == 0 {
                    e.idle_since = now;
                    if e.session.is_zero() {
                        st.entries.remove(i);
                        lock(&app.stats).unloads += 1;
                    } else {
                        e.expires_at = e.session.expiry(now);
                    }
                    st.freed.send_modify(|g| *g += 1);
                }
            }
            st.sync(cfg, &rc, &app, now);
        });
    }
}

/// What one attempt to take a model gave.
enum Step {
    /// Residency is off (or was turned off meanwhile): nothing to do.
    Off,
    /// Held; the model is ready at this instant.
    Held(Lease, Instant),
    /// Only busy models stand in the way: wait until one is freed.
    Wait(watch::Receiver<u64>),
}

/// Makes sure the model `want` names is loaded before the request is answered: loads it (waiting its load
/// time, evicting idle models to make room) if needed, or unloads it for a preload with `keep_alive: 0`.
/// Returns the lease to hold until the answer is finished; `None` when residency is off, the model is not
/// served, or the request was an unload.
pub(crate) async fn admit(app: &App, cfg: &MockConfig, want: Option<Want>) -> Option<Lease> {
    let want = want?;
    if cfg.residency.is_none() || !cfg.serves(&want.model) {
        return None;
    }
    let started = Instant::now();
    let key = canonical_model(&want.model);
    if want.preload && want.keep_alive.is_some_and(KeepAlive::is_zero) {
        unload(app, &key);
        return None;
    }
    // The name to report: the served list's spelling, else the request's.
    let name = cfg.models.iter().find(|m| canonical_model(m) == key).cloned().unwrap_or_else(|| want.model.clone());
    loop {
        match try_take(app, &key, &name, want.keep_alive, started) {
            Step::Off => return None,
            Step::Held(mut lease, ready_at) => {
                tokio::time::sleep_until(ready_at).await;
                lease.waited = started.elapsed();
                return Some(lease);
            }
            Step::Wait(mut freed) => {
                // A sender dropped means the server is gone; the request is moot then.
                if freed.changed().await.is_err() {
                    return None;
                }
            }
        }
    }
}

/// One attempt to take `key` for a request that arrived at `asked`: already there (loaded or loading), loaded
/// now after evicting idle models, or blocked by busy ones.
fn try_take(app: &App, key: &str, name: &str, keep_alive: Option<KeepAlive>, asked: Instant) -> Step {
    app.update(|cfg| {
        let Some(rc) = cfg.residency.clone() else { return Step::Off };
        let mut st = lock(&app.residency);
        let now = Instant::now();
        st.sync(cfg, &rc, app, now);
        let session = keep_alive.unwrap_or(rc.keep_alive);
        // Made only once held: dropping a lease releases the model (and takes the locks held here).
        let lease = || Lease { app: app.clone(), key: key.to_owned(), keep_alive, waited: Duration::ZERO };
        if let Some(i) = st.find(key) {
            let mut e = st.entries.remove(i);
            e.refs += 1;
            e.session = session;
            e.expires_at = session.expiry(now);
            let ready_at = e.ready_at;
            st.entries.push(e);
            st.write_back(cfg);
            return Step::Held(lease(), ready_at);
        }
        let size = rc.size_of(name);
        let budget = rc.memory_budget.unwrap_or(u64::MAX);
        let max_models = rc.max_loaded_models.unwrap_or(usize::MAX).max(1);
        let fits = |used: u64, count: usize| used.saturating_add(size) <= budget && count < max_models;
        // Idle models to evict, least recently used first, until the new one fits.
        let mut used = st.used();
        let mut count = st.entries.len();
        let mut victims = Vec::new();
        for (i, e) in st.entries.iter().enumerate() {
            if fits(used, count) {
                break;
            }
            if e.refs == 0 {
                victims.push(i);
                used -= e.size;
                count -= 1;
            }
        }
        if !fits(used, count) && st.entries.iter().any(|e| e.refs > 0) {
            // Only models in use stand in the way: Ollama waits for them to finish.
            return Step::Wait(st.freed.subscribe());
        }
        // Either it fits now, or it is larger than the budget with nothing else loaded.
        let busy_victims = victims.iter().filter(|&&i| st.entries[i].idle_since > asked).count() as u64;
        for &i in victims.iter().rev() {
            st.entries.remove(i);
        }
        let start = st.loader_free_at.filter(|t| *t > now).unwrap_or(now);
        let ready_at = start + rc.load_time(name);
        st.loader_free_at = Some(ready_at);
        st.entries.push(Entry {
            key: key.to_owned(),
            name: name.to_owned(),
            size,
            ready_at,
            expires_at: session.expiry(ready_at),
            session,
            refs: 1,
            idle_since: ready_at,
        });
        {
            let mut stats = lock(&app.stats);
            stats.loads += 1;
            stats.evictions += victims.len() as u64;
            stats.evicted_busy += busy_victims;
            *stats.model_loads.entry(name.to_owned()).or_default() += 1;
        }
        st.write_back(cfg);
        Step::Held(lease(), ready_at)
    })
}

/// Unloads `key` (a preload with `keep_alive: 0`): at once when idle, else once its requests finish.
fn unload(app: &App, key: &str) {
    app.update(|cfg| {
        let Some(rc) = cfg.residency.clone() else { return };
        let mut st = lock(&app.residency);
        let now = Instant::now();
        if let Some(i) = st.find(key) {
            if st.entries[i].refs == 0 {
                st.entries.remove(i);
                lock(&app.stats).unloads += 1;
                st.freed.send_modify(|g| *g += 1);
            } else {
                st.entries[i].session = KeepAlive::For(Duration::ZERO);
            }
        }
        st.sync(cfg, &rc, app, now);
    });
}

/// Keeps `lease` (if any) alive until `resp`'s body is finished or dropped.
pub(crate) fn hold(resp: axum::response::Response, lease: Option<Lease>) -> axum::response::Response {
    match lease {
        None => resp,
        Some(lease) => resp.map(|body| axum::body::Body::new(Held { inner: body, _lease: lease })),
    }
}

/// A body that holds a [`Lease`] until it is dropped.
struct Held {
    inner: axum::body::Body,
    _lease: Lease,
}

impl http_body::Body for Held {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn want_only_for_inference() {
        assert!(Want::parse("/api/ps", &json!({"model": "m"})).is_none());
        assert!(Want::parse("/api/tags", &json!({})).is_none());
        assert!(Want::parse("/api/chat", &json!({"messages": []})).is_none());
        let w = Want::parse("/api/generate", &json!({"model": "m", "keep_alive": 0})).unwrap();
        assert!(w.preload && w.keep_alive.unwrap().is_zero());
        let w = Want::parse("/api/generate", &json!({"model": "m", "prompt": "hi"})).unwrap();
        assert!(!w.preload && w.keep_alive.is_none());
        assert!(Want::parse("/api/chat", &json!({"model": "m"})).unwrap().preload);
        assert!(!Want::parse("/v1/chat/completions", &json!({"model": "m", "messages": []})).unwrap().preload);
    }
}
