//! What happened to each request, told once when it ends. The access log, the metrics, the dashboard's live
//! list and spend accounting all read the same [`Finished`] record, so they can never disagree about a request.
//!
//! The executor fills the record; [`Hub::finish`] hands it to every [`Sink`] and keeps the last few hundred in
//! the [`Journal`]. The hub outlives config reloads (it belongs to [`crate::lifecycle::Live`]), so the
//! dashboard's list and the spend buffer survive a reload.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// A request's id: the client's `x-request-id` when it sent a usable one, otherwise one llmux made.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct RequestId(pub String);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The protocol the client spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientProtocol {
    /// `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`.
    OpenAi,
    /// `/v1/responses`.
    Responses,
    /// `/v1/messages`.
    Anthropic,
    /// `/api/*`.
    Ollama,
}

impl ClientProtocol {
    /// The label value (bounded: one of four).
    pub fn as_str(self) -> &'static str {
        match self {
            ClientProtocol::OpenAi => "openai",
            ClientProtocol::Responses => "responses",
            ClientProtocol::Anthropic => "anthropic",
            ClientProtocol::Ollama => "ollama",
        }
    }
}

/// Who sent the request, as far as it may be shown: never the key itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Caller {
    /// The virtual key's id (its hash as stored, or a prefix of it), when a virtual key was used.
    pub key_id: Option<String>,
    /// The key's `key_alias`, when it has one.
    pub key_alias: Option<String>,
    /// `user_id` / `team_id` of the key, when set.
    pub user_id: Option<String>,
    pub team_id: Option<String>,
}

/// One call to one deployment that did not produce the answer (or did: the last attempt of a success).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Attempt {
    /// `model_list` index of the deployment.
    pub deployment: usize,
    /// The deployment as the route header names it: `model_list[i] @ host`.
    pub label: String,
    /// The group it was tried for.
    pub group: String,
    /// `None`: it answered. Otherwise why it failed, in words (no secret, no prompt).
    pub error: Option<String>,
    /// The HTTP status the engine answered with, when it answered.
    pub status: Option<u16>,
    pub duration_ms: u64,
}

/// What happened to one request, start to end.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Finished {
    pub id: RequestId,
    /// When the request arrived, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    pub protocol: ClientProtocol,
    /// `chat`, `completion`, `embedding`, ...: the operation behind the protocol.
    pub operation: &'static str,
    pub caller: Caller,
    /// The model name the client sent.
    pub requested: String,
    /// The model group that answered (or the last one tried).
    pub group: Option<String>,
    /// `model_list` index of the deployment that answered.
    pub deployment: Option<usize>,
    /// The host (`api_base`, credentials removed) of that deployment.
    pub host: Option<String>,
    /// The route explanation, as in `x-llmux-route`.
    pub route: String,
    /// Every attempt in order, the answering one last.
    pub attempts: Vec<Attempt>,
    /// The status the client got (for a stream: the status its head carried).
    pub status: u16,
    pub stream: bool,
    /// Time to the first byte of the answer's body (for a stream: the first chunk).
    pub ttfb_ms: Option<u64>,
    /// Arrival to the end of the answer (for a stream: its last byte).
    pub duration_ms: u64,
    /// Time spent waiting in llmux's queue for a slot.
    pub queue_wait_ms: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// The token counts are llmux's estimate: the engine reported none.
    pub tokens_estimated: bool,
    /// Cost in USD from `model_info`'s per-token prices (0 for local models).
    pub cost_usd: f64,
    /// The fallbacks and retries counted as `x-litellm-attempted-*` count them.
    pub fallbacks: u32,
    pub retries: u32,
}

/// Something that wants every finished request: it must return at once (hand work to a task of its own).
pub trait Sink: Send + Sync {
    fn finished(&self, record: &Arc<Finished>);
}

/// The last requests, for the dashboard: a bounded ring and a live feed.
pub struct Journal {
    ring: Mutex<VecDeque<Arc<Finished>>>,
    capacity: usize,
    feed: tokio::sync::broadcast::Sender<Arc<Finished>>,
}

impl Journal {
    /// A journal keeping the last `capacity` requests.
    pub fn new(capacity: usize) -> Self {
        let (feed, _) = tokio::sync::broadcast::channel(capacity.max(1));
        Journal { ring: Mutex::new(VecDeque::with_capacity(capacity)), capacity, feed }
    }

    fn push(&self, record: &Arc<Finished>) {
        if let Ok(mut ring) = self.ring.lock() {
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            ring.push_back(record.clone());
        }
        // No subscriber is not an error: nobody has the page open.
        let _ = self.feed.send(record.clone());
    }

    /// The kept requests, oldest first.
    pub fn recent(&self) -> Vec<Arc<Finished>> {
        self.ring.lock().map(|r| r.iter().cloned().collect()).unwrap_or_default()
    }

    /// Requests as they finish from now on. A subscriber that falls behind misses some (it is told so by
    /// `RecvError::Lagged`) rather than slowing requests down.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Finished>> {
        self.feed.subscribe()
    }
}

/// Where finished requests go: the journal and every registered sink.
pub struct Hub {
    journal: Journal,
    sinks: arc_swap::ArcSwap<Vec<Arc<dyn Sink>>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(500)
    }
}

impl Hub {
    /// A hub whose journal keeps the last `journal_capacity` requests.
    pub fn new(journal_capacity: usize) -> Self {
        Hub { journal: Journal::new(journal_capacity), sinks: Default::default() }
    }

    /// Adds a sink (at start-up; also safe later).
    pub fn register(&self, sink: Arc<dyn Sink>) {
        self.sinks.rcu(|sinks| {
            let mut more = Vec::clone(sinks);
            more.push(sink.clone());
            more
        });
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Tells everyone that a request ended.
    pub fn finish(&self, record: Finished) {
        let record = Arc::new(record);
        for sink in self.sinks.load().iter() {
            sink.finished(&record);
        }
        self.journal.push(&record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u64) -> Finished {
        Finished {
            id: RequestId(format!("req-{n}")),
            started_unix_ms: n,
            protocol: ClientProtocol::OpenAi,
            operation: "chat",
            caller: Caller::default(),
            requested: "coding".into(),
            group: Some("coding".into()),
            deployment: Some(0),
            host: Some("http://127.0.0.1:11434".into()),
            route: String::new(),
            attempts: Vec::new(),
            status: 200,
            stream: false,
            ttfb_ms: Some(1),
            duration_ms: 2,
            queue_wait_ms: 0,
            tokens_in: 3,
            tokens_out: 4,
            tokens_estimated: false,
            cost_usd: 0.0,
            fallbacks: 0,
            retries: 0,
        }
    }

    struct Count(std::sync::atomic::AtomicUsize);
    impl Sink for Count {
        fn finished(&self, _: &Arc<Finished>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn the_journal_keeps_the_last_requests_and_every_sink_sees_each_once() {
        let hub = Hub::new(4);
        let count = Arc::new(Count(Default::default()));
        hub.register(count.clone());
        let mut live = hub.journal().subscribe();
        for n in 0..6 {
            hub.finish(record(n));
        }
        let kept: Vec<u64> = hub.journal().recent().iter().map(|r| r.started_unix_ms).collect();
        assert_eq!(kept, vec![2, 3, 4, 5]);
        assert_eq!(count.0.load(std::sync::atomic::Ordering::Relaxed), 6);
        // The live feed lagged (capacity 4): it says so, then delivers what it still holds.
        assert!(matches!(live.try_recv(), Err(tokio::sync::broadcast::error::TryRecvError::Lagged(2))));
        assert_eq!(live.try_recv().map(|r| r.started_unix_ms).ok(), Some(2));
    }
}
