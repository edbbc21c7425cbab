//! Request recording and traffic statistics.
//!
//! Every request to an engine endpoint (anything but `/mock/*`) is recorded
//! as it arrives, and tracked until its response body is finished or dropped,
//! so tests can check both what llmux sent and whether it hung up early.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::state::lock;

/// One request as the mock received it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Path without the query string, e.g. `/api/chat`.
    pub path: String,
    /// Query string without the leading `?`, if any.
    pub query: Option<String>,
    /// Headers in arrival order; names are lower-case, values decoded lossily.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON, or `Null` when it is empty or not JSON.
    pub body: Value,
    /// The body exactly as received (serialised as lossy UTF-8 text).
    #[serde(serialize_with = "lossy_text")]
    pub raw_body: Bytes,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The `model` field of a JSON body, if there is one.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }
}

fn lossy_text<S: Serializer>(bytes: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(bytes))
}

/// Traffic counters, as served by `GET /mock/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockStats {
    /// Requests received per path (engine endpoints only, not `/mock/*`).
    pub requests: BTreeMap<String, u64>,
    /// Sum of `requests`.
    pub total: u64,
    /// Requests whose response has not finished yet (hung requests included).
    pub in_flight: u64,
    /// Requests whose response finished normally.
    pub completed: u64,
    /// Requests the client abandoned before the response finished
    /// (disconnected mid-stream, gave up on a hang, ...).
    pub cancelled: u64,
    /// Requests that got an injected fault.
    pub faulted: u64,
    /// TCP connections accepted.
    pub connections: u64,
    /// TCP connections closed on accept by [`Fault::Refuse`](crate::Fault::Refuse).
    pub refused: u64,
    /// Models loaded by the residency simulation ([`MockConfig::residency`](crate::MockConfig::residency)).
    #[serde(default)]
    pub loads: u64,
    /// Idle models evicted to make room for a load.
    #[serde(default)]
    pub evictions: u64,
    /// Of `evictions`, those of a model that was still serving requests when the load that evicted it was asked
    /// for: the load waited for it to finish (Ollama never unloads a model in use) and then pushed it out.
    #[serde(default)]
    pub evicted_busy: u64,
    /// Models unloaded because their keep-alive ran out, or asked with `keep_alive: 0`.
    #[serde(default)]
    pub unloads: u64,
    /// `loads` per model.
    #[serde(default)]
    pub model_loads: BTreeMap<String, u64>,
    /// Wake-on-LAN magic packets received by a mock started asleep ([`MockServer::start_asleep`](crate::MockServer::start_asleep)).
    #[serde(default)]
    pub wake_packets: u64,
    /// Times a mock started asleep came up after a packet (booted and began answering).
    #[serde(default)]
    pub boots: u64,
    /// Loads aborted because every request waiting for them went away (see the residency simulation).
    #[serde(default)]
    pub aborted_loads: u64,
    /// Prompt tokens read by chat requests (those the slots' KV caches did not hold).
    #[serde(default)]
    pub prompt_evaluated: u64,
    /// Prompt tokens chat requests found in a slot's KV cache.
    #[serde(default)]
    pub prompt_cached: u64,
}

/// Progress of one request, shared between the handler and its response body.
#[derive(Debug)]
pub(crate) struct Track {
    state: AtomicU8,
}

const RUNNING: u8 = 0;
const COMPLETED: u8 = 1;
const FAULTED: u8 = 2;

impl Track {
    /// Marks the request as ended by an injected fault, so its early end is
    /// not counted as a client cancellation. The first mark wins.
    pub(crate) fn mark_faulted(&self) {
        self.finish(FAULTED);
    }

    fn mark_completed(&self) {
        self.finish(COMPLETED);
    }

    fn finish(&self, to: u8) {
        let _ = self.state.compare_exchange(RUNNING, to, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// Keeps a request counted as in flight until dropped; then files it as
/// completed, faulted or cancelled.
pub(crate) struct TrackGuard {
    track: Arc<Track>,
    stats: Arc<Mutex<MockStats>>,
}

impl TrackGuard {
    /// Counts a new request to `path` and starts tracking it.
    pub(crate) fn begin(stats: &Arc<Mutex<MockStats>>, path: &str) -> Self {
        {
            let mut s = lock(stats);
            *s.requests.entry(path.to_owned()).or_default() += 1;
            s.total += 1;
            s.in_flight += 1;
        }
        Self { track: Arc::new(Track { state: AtomicU8::new(RUNNING) }), stats: Arc::clone(stats) }
    }

    /// The shared progress marker.
    pub(crate) fn track(&self) -> Arc<Track> {
        Arc::clone(&self.track)
    }
}

impl Drop for TrackGuard {
    fn drop(&mut self) {
        let mut s = lock(&self.stats);
        s.in_flight = s.in_flight.saturating_sub(1);
        match self.track.state.load(Ordering::Acquire) {
            COMPLETED => s.completed += 1,
            FAULTED => s.faulted += 1,
            _ => s.cancelled += 1,
        }
    }
}

/// A response body that tells its [`TrackGuard`] how it ended.
///
/// hyper drops the body when the client goes away, so a body dropped before
/// its end is a cancellation; a body error is a deliberate mid-stream fault
/// (the mock's own streams only fail on purpose).
pub(crate) struct TrackedBody {
    inner: Body,
    guard: TrackGuard,
}

impl TrackedBody {
    pub(crate) fn new(inner: Body, guard: TrackGuard) -> Self {
        Self { inner, guard }
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.guard.track.mark_completed(),
            Poll::Ready(Some(Err(_))) => self.guard.track.mark_faulted(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.guard.track.mark_completed(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // hyper stops polling a body that reports its end, so this is the
        // only place an empty or fully-sent fixed body is seen to complete.
        let end = self.inner.is_end_stream();
        if end {
            self.guard.track.mark_completed();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        // Passed through so fixed bodies keep their Content-Length.
        self.inner.size_hint()
    }
}
