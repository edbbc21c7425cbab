//! State shared by all connections of one server, and the per-request context.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;
use serde_json::Value;
use tokio::sync::Notify;

use crate::config::MockConfig;
use crate::faults::{Fault, Proto};
use crate::record::{MockStats, RecordedRequest, Track, TrackGuard, TrackedBody};

/// Largest request body accepted; far above any real chat request, but a
/// bound keeps a runaway client from exhausting memory.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Locks `m`, recovering from poisoning: every critical section here leaves
/// the data consistent, so a panic elsewhere must not wedge the mock.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Everything one server instance shares between connections.
#[derive(Debug)]
pub(crate) struct Shared {
    config: Mutex<MockConfig>,
    /// The config the server started with, restored by `POST /mock/reset`.
    initial: MockConfig,
    requests: Mutex<VecDeque<RecordedRequest>>,
    pub(crate) stats: Arc<Mutex<MockStats>>,
    /// The simulated loaded models, when [`MockConfig::residency`] is on.
    pub(crate) residency: Mutex<crate::residency::State>,
    /// `POST /mock/sleep` on a mock started asleep: suspend again (see [`crate::wol`]).
    pub(crate) sleep_now: tokio::sync::Notify,
    /// Whether this mock was started asleep, and so can be put back to sleep.
    pub(crate) can_sleep: std::sync::atomic::AtomicBool,
    /// What each slot's KV cache holds (see [`crate::kv`]).
    pub(crate) kv: Arc<Mutex<crate::kv::Slots>>,
}

/// Handle to the shared state, used as the axum router state.
pub(crate) type App = Arc<Shared>;

impl Shared {
    pub(crate) fn new(config: MockConfig) -> Self {
        Self {
            initial: config.clone(),
            config: Mutex::new(config),
            requests: Mutex::new(VecDeque::new()),
            stats: Arc::new(Mutex::new(MockStats::default())),
            residency: Mutex::new(crate::residency::State::default()),
            sleep_now: tokio::sync::Notify::new(),
            can_sleep: std::sync::atomic::AtomicBool::new(false),
            kv: Arc::default(),
        }
    }

    /// A snapshot of the current knobs.
    pub(crate) fn config(&self) -> MockConfig {
        lock(&self.config).clone()
    }

    /// Changes the knobs in place.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut MockConfig) -> R) -> R {
        f(&mut lock(&self.config))
    }

    /// Restores the start-up knobs and forgets recorded requests and counters
    /// (requests still in flight stay counted as such).
    /// Suspending: every model leaves memory (a box that sleeps after idling has long unloaded them).
    pub(crate) fn unload_all(&self) {
        lock(&self.config).loaded.clear();
        lock(&self.residency).reset();
        lock(&self.kv).clear();
    }

    pub(crate) fn reset(&self) {
        *lock(&self.config) = self.initial.clone();
        lock(&self.residency).reset();
        lock(&self.kv).clear();
        self.clear_requests();
        let mut stats = lock(&self.stats);
        *stats = MockStats { in_flight: stats.in_flight, ..MockStats::default() };
    }

    /// Snapshots the knobs for a request to `path` and decides its fault,
    /// using up one of `fault_times` when a fault applies.
    fn take_fault(&self, path: &str) -> (MockConfig, Fault, bool) {
        let mut cfg = lock(&self.config);
        let faultable = cfg.is_faultable(path);
        // Refuse means "host down", so it hits every engine path, not only
        // the inference ones.
        let applies = !cfg.fault.is_none() && (faultable || cfg.fault == Fault::Refuse);
        let fault = if applies && consume_fault(&mut cfg) {
            // The snapshot must still show the fault even if this request
            // used up its last count.
            cfg.fault.clone()
        } else {
            Fault::None
        };
        let snapshot = cfg.clone();
        if cfg.fault_times == Some(0) {
            cfg.fault = Fault::None;
            cfg.fault_times = None;
        }
        (snapshot, fault, faultable)
    }

    /// Whether new connections are currently being refused.
    pub(crate) fn refusing(&self) -> bool {
        lock(&self.config).fault == Fault::Refuse
    }

    /// Uses up one refusal; false if the fault changed meanwhile.
    pub(crate) fn consume_refusal(&self) -> bool {
        let mut cfg = lock(&self.config);
        if cfg.fault != Fault::Refuse || !consume_fault(&mut cfg) {
            return false;
        }
        if cfg.fault_times == Some(0) {
            cfg.fault = Fault::None;
            cfg.fault_times = None;
        }
        true
    }

    /// Stores `req`, dropping the oldest beyond the configured limit.
    fn record(&self, req: RecordedRequest, limit: usize) {
        let mut requests = lock(&self.requests);
        requests.push_back(req);
        while requests.len() > limit {
            requests.pop_front();
        }
    }

    /// Recorded requests, oldest first.
    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.requests).iter().cloned().collect()
    }

    /// Forgets recorded requests.
    pub(crate) fn clear_requests(&self) {
        lock(&self.requests).clear();
    }

    /// A snapshot of the traffic counters.
    pub(crate) fn stats(&self) -> MockStats {
        lock(&self.stats).clone()
    }

    /// Notes that `model` was just used, as Ollama's `/api/ps` would show.
    pub(crate) fn mark_loaded(&self, model: &str) {
        let mut cfg = lock(&self.config);
        if cfg.residency.is_some() {
            return; // the residency simulation keeps `loaded`
        }
        cfg.loaded.retain(|m| m != model);
        cfg.loaded.push(model.to_owned());
    }

    /// Notes that `model` was unloaded (`keep_alive: 0`).
    pub(crate) fn mark_unloaded(&self, model: &str) {
        let mut cfg = lock(&self.config);
        if cfg.residency.is_none() {
            cfg.loaded.retain(|m| m != model);
        }
    }
}

/// Uses up one application of the current fault. Returns false (and clears
/// the fault) when `fault_times` was already exhausted.
fn consume_fault(cfg: &mut MockConfig) -> bool {
    match cfg.fault_times {
        None => true,
        Some(0) => {
            cfg.fault = Fault::None;
            cfg.fault_times = None;
            false
        }
        Some(n) => {
            cfg.fault_times = Some(n - 1);
            true
        }
    }
}

/// Lets a handler close its own TCP connection without answering.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnControl {
    kill: Arc<Notify>,
}

impl ConnControl {
    /// Asks the connection task to drop the connection now.
    pub(crate) fn kill(&self) {
        // notify_one stores a permit, so the kill is not lost if the
        // connection task is not waiting at this instant.
        self.kill.notify_one();
    }

    /// Resolves once [`ConnControl::kill`] was called.
    pub(crate) async fn killed(&self) {
        self.kill.notified().await;
    }
}

/// Per-request context handed to the engine handlers.
#[derive(Clone)]
pub(crate) struct Ctx {
    /// Shared server state.
    pub(crate) app: App,
    /// Knobs as they were when the request arrived.
    pub(crate) cfg: MockConfig,
    /// The fault this request gets (already counted against `fault_times`).
    pub(crate) fault: Fault,
    /// Whether latency and pacing apply to this path.
    pub(crate) faultable: bool,
    /// Control over the request's connection.
    pub(crate) conn: Option<ConnControl>,
    /// Progress marker for the stats.
    pub(crate) track: Arc<Track>,
    /// When the request arrived.
    pub(crate) started: Instant,
    /// How long the request waited for its model to load (residency simulation), for `load_duration`.
    pub(crate) load: std::time::Duration,
    /// How long reading the part of the prompt its slot did not hold takes (see [`crate::kv`]).
    pub(crate) prefill: std::time::Duration,
    /// The slot the request occupies, busy while any clone of the context lives (its stream included).
    pub(crate) slot: Option<Arc<crate::kv::Lease>>,
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Ctx>().cloned().ok_or_else(|| {
            (StatusCode::INTERNAL_SERVER_ERROR, "request context missing (engine middleware not installed)")
                .into_response()
        })
    }
}

/// Middleware for every engine endpoint: records the request, counts it,
/// decides its fault and tracks its response until it is done.
pub(crate) async fn engine_middleware(State(app): State<App>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let (mut parts, body) = req.into_parts();
    // The body is buffered whole so it can be recorded and then handed on.
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(err) => return (StatusCode::PAYLOAD_TOO_LARGE, format!("cannot read request body: {err}")).into_response(),
    };
    let path = parts.uri.path().to_owned();
    // Parsed once here for both the recording and the stream check.
    let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let stream = wants_stream(&path, &json);
    let residency = crate::residency::Want::parse(&path, &json);
    let guard = TrackGuard::begin(&app.stats, &path);
    let (cfg, fault, faultable) = app.take_fault(&path);
    if cfg.record_limit > 0 {
        app.record(recorded(&parts, &bytes, json), cfg.record_limit);
    }
    let mut ctx = Ctx {
        app: Arc::clone(&app),
        cfg,
        fault,
        faultable,
        conn: parts.extensions.get::<ConnControl>().cloned(),
        track: guard.track(),
        started,
        load: std::time::Duration::ZERO,
        prefill: std::time::Duration::ZERO,
        slot: None,
    };
    // Faults are applied here rather than in each handler so that every
    // endpoint listed in `fault_paths` honours them the same way.
    let early = ctx.gate(Proto::for_path(&path), stream).await;
    let mut lease = None;
    let resp = match early {
        Some(resp) => resp,
        None => {
            lease = crate::residency::admit(&app, &ctx.cfg, residency).await;
            ctx.load = lease.as_ref().map_or(std::time::Duration::ZERO, |l| l.waited);
            parts.extensions.insert(ctx);
            next.run(Request::from_parts(parts, Body::from(bytes))).await
        }
    };
    crate::residency::hold(resp.map(|body| Body::new(TrackedBody::new(body, guard))), lease)
}

/// Whether the request asks for a streamed answer: the body's `stream` flag,
/// defaulting as the engines do (Ollama chat/generate stream unless told
/// otherwise, everything else does not).
fn wants_stream(path: &str, body: &Value) -> bool {
    let default = matches!(path, "/api/chat" | "/api/generate");
    // Gemini streams by method (`…:streamGenerateContent`), not by a body field.
    if path.starts_with("/v1beta/") {
        return path.ends_with(":streamGenerateContent");
    }
    body.get("stream").and_then(Value::as_bool).unwrap_or(default)
}

fn recorded(parts: &Parts, bytes: &bytes::Bytes, body: Value) -> RecordedRequest {
    RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body,
        raw_body: bytes.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_times_counts_down_then_reverts() {
        let mut cfg = MockConfig::new("h", &[]);
        cfg.fault = Fault::status(500);
        cfg.fault_times = Some(2);
        let shared = Shared::new(cfg);
        assert_eq!(shared.take_fault("/api/chat").1, Fault::status(500));
        // Non-inference paths neither get nor use up the fault.
        assert_eq!(shared.take_fault("/api/tags").1, Fault::None);
        assert_eq!(shared.take_fault("/v1/chat/completions").1, Fault::status(500));
        assert_eq!(shared.take_fault("/api/chat").1, Fault::None);
        assert_eq!(shared.config().fault, Fault::None);
        assert_eq!(shared.config().fault_times, None);
    }

    #[test]
    fn refusal_counts_down() {
        let mut cfg = MockConfig::new("h", &[]);
        cfg.fault = Fault::Refuse;
        cfg.fault_times = Some(1);
        let shared = Shared::new(cfg);
        assert!(shared.refusing());
        assert!(shared.consume_refusal());
        assert!(!shared.refusing());
        assert!(!shared.consume_refusal());
    }
}
