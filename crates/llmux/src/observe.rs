//! What happened to each request, told once when it ends. The access log, the metrics, the dashboard's live
//! list and spend accounting all read the same [`Finished`] record, so they can never disagree about a request.
//!
//! The executor fills the record; [`Hub::finish`] hands it to every [`Sink`] and keeps the last few hundred in
//! the [`Journal`]. The hub outlives config reloads (it belongs to [`crate::lifecycle::Live`]), so the
//! dashboard's list and the spend buffer survive a reload.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A request's id: the client's `x-request-id` when it sent a usable one, otherwise one llmux made.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct RequestId(pub String);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl RequestId {
    /// The longest client `x-request-id` kept; a longer one is replaced.
    pub const MAX_LEN: usize = 128;

    /// The client's id when it is usable (1 to [`Self::MAX_LEN`] visible ASCII characters: it goes into a
    /// header and a log line as is), otherwise a new one.
    pub fn from_client(sent: Option<&[u8]>) -> RequestId {
        match sent {
            Some(id) if !id.is_empty() && id.len() <= Self::MAX_LEN && id.iter().all(u8::is_ascii_graphic) => {
                RequestId(String::from_utf8_lossy(id).into_owned())
            }
            _ => RequestId::new(),
        }
    }

    /// A new random id, shaped as a UUID (version 4).
    pub fn new() -> RequestId {
        let (a, b) = (fastrand::u64(..), fastrand::u64(..));
        let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
        RequestId(format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            b >> 48,
            b & 0xffff_ffff_ffff
        ))
    }
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId::new()
    }
}

/// Tokens an answer used, as the engine reported them (or as llmux estimated them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Prompt tokens.
    pub input: u64,
    /// Generated tokens.
    pub output: u64,
}

impl Tokens {
    /// Both together: what `tpm` counts.
    pub fn total(self) -> u64 {
        self.input.saturating_add(self.output)
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

/// A deployment as metrics and the dashboard name it: made once per config, so a record shares it (a clone is
/// a count increment).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct DeploymentFacts {
    /// `model_info.id` (LiteLLM's `model_id`).
    pub id: Arc<str>,
    /// `litellm_params.model` (LiteLLM's `model` / `litellm_model_name`).
    pub model: Arc<str>,
    /// `model_name`: the group.
    pub group: Arc<str>,
    /// `api_base`, credentials and query values removed.
    pub api_base: Arc<str>,
    /// The engine host, as `/health/hosts` names it (its origin, `http://gpu:11434`).
    pub host: Arc<str>,
    /// The model as the engine knows it (`qwen3:8b`), as the host's resident models are named.
    pub engine_model: Arc<str>,
    /// The engine family, as LiteLLM's `api_provider` (`ollama_chat`, `openai`, …).
    pub provider: &'static str,
}

impl DeploymentFacts {
    /// The facts of `d`, a deployment of `config`.
    pub fn of(config: &crate::config::Config, d: &crate::config::Deployment) -> DeploymentFacts {
        let host = d.host.and_then(|h| config.hosts.get(h)).map_or("", |h| h.origin.as_str());
        let (api_base, engine_model, provider) = match d.engine() {
            Some(e) => (crate::redact::url(&e.api_base), e.upstream_model.as_str(), e.engine.prefix),
            None => (String::new(), "", "router"),
        };
        DeploymentFacts {
            id: Arc::from(d.id.as_str()),
            model: Arc::from(d.model.as_str()),
            group: Arc::from(d.model_name.as_str()),
            api_base: Arc::from(api_base),
            host: Arc::from(host),
            engine_model: Arc::from(engine_model),
            provider,
        }
    }
}

/// One call to one deployment that did not produce the answer (or did: the last attempt of a success).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Attempt {
    /// `model_list` index of the deployment.
    pub deployment: usize,
    /// The deployment as the route header names it: `model_list[i] @ host`.
    pub label: String,
    /// What the deployment is (id, model, api_base, provider).
    pub facts: Arc<DeploymentFacts>,
    /// The group it was tried for.
    pub group: String,
    /// `None`: it answered. Otherwise why it failed, in words (no secret, no prompt).
    pub error: Option<String>,
    /// The HTTP status the engine answered with, when it answered.
    pub status: Option<u16>,
    /// When it began, in milliseconds after the request arrived.
    pub started_ms: u64,
    pub duration_ms: u64,
    /// Why routing chose this deployment, in one word: `strategy` (the routing strategy among equals), `warm`
    /// (its host has the model loaded, others not), `fits` (it loads without evicting), `spill` (the warm host
    /// was busier than a load here), `fastest` (expected to finish first by its learned speeds), `cached` (it most
    /// likely holds the prompt's prefix in its cache), `escalation` (a lower `order` tier), `fallback` (a fallback group's first
    /// try), `retry` (another try in the same group).
    pub reason: &'static str,
    /// The attempt loaded its model (it was not known to be resident on the host).
    pub cold: bool,
    /// The failure put the deployment into cooldown.
    pub cooled_down: bool,
}

impl ClientProtocol {
    /// The operation's name in the record.
    pub fn operation(op: crate::protocol::openai::Operation) -> &'static str {
        use crate::protocol::openai::Operation;
        match op {
            Operation::Chat => "chat",
            Operation::Completion => "completion",
            Operation::Embeddings => "embedding",
        }
    }
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
    /// The complexity router's tier (`SIMPLE`, `MEDIUM`, `COMPLEX`, `REASONING`), when one classified it.
    pub complexity_tier: Option<&'static str>,
    /// Why the request failed (status 400 or more), or why its answer broke off after it began (an engine
    /// that stopped mid-stream, a client that went away): the error in one line, no secret, no prompt.
    pub error: Option<String>,
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

/// A request's record while it is served: made when it arrives, filled in by the executor (route, attempts) and
/// by the answer's body (tokens), and handed to the hub once, when the answer ends or the client goes away.
/// Cheap to clone; the default records nothing (llmux's own internal calls, such as a semantic router's
/// embeddings).
#[derive(Clone, Default)]
pub struct Trace(Option<Arc<Tracing>>);

struct Tracing {
    hub: Arc<Hub>,
    started: Instant,
    draft: Mutex<Option<Draft>>,
}

/// What a request's record holds before it ends.
#[derive(Debug)]
pub struct Draft {
    /// The record, its end still open (duration, tokens, cost and status are set when it finishes).
    pub record: Finished,
    /// The status the executor's outcome had (a stream answered early with keep-alives shows 200 at the edge
    /// whatever it became).
    pub outcome: Option<u16>,
    /// When the answer's first byte was ready.
    pub first_byte: Option<Instant>,
    /// The engine's usage report, once the answer ended.
    pub usage: Option<Tokens>,
    /// The estimate used when the engine reports none: the prompt (from the request's size) and the chunks
    /// of a stream.
    pub estimate: Tokens,
    /// Per-token prices (input, output) of the deployment that answered.
    pub price: Option<(f64, f64)>,
}

impl Trace {
    /// The record of a request that arrived now, told to `hub` when it ends.
    pub fn start(hub: Arc<Hub>, id: RequestId, protocol: ClientProtocol, operation: &'static str) -> Trace {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let record = Finished {
            id,
            started_unix_ms: u64::try_from(unix.as_millis()).unwrap_or(0),
            protocol,
            operation,
            caller: Caller::default(),
            requested: String::new(),
            group: None,
            deployment: None,
            host: None,
            route: String::new(),
            attempts: Vec::new(),
            status: 0,
            stream: false,
            ttfb_ms: None,
            duration_ms: 0,
            queue_wait_ms: 0,
            tokens_in: 0,
            tokens_out: 0,
            tokens_estimated: false,
            cost_usd: 0.0,
            fallbacks: 0,
            retries: 0,
            complexity_tier: None,
            error: None,
        };
        let draft =
            Draft { record, outcome: None, first_byte: None, usage: None, estimate: Tokens::default(), price: None };
        Trace(Some(Arc::new(Tracing { hub, started: Instant::now(), draft: Mutex::new(Some(draft)) })))
    }

    /// Whether this trace records anything.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Milliseconds from the request's arrival to `at` (0 when the trace is off).
    pub fn offset_ms(&self, at: Instant) -> u64 {
        self.0.as_ref().map_or(0, |t| u64::try_from(at.saturating_duration_since(t.started).as_millis()).unwrap_or(0))
    }

    /// Changes the record before it ends (no-op once it ended, or when the trace is off).
    pub fn update(&self, change: impl FnOnce(&mut Draft)) {
        if let Some(tracing) = &self.0 {
            if let Some(draft) = tracing.draft.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                change(draft);
            }
        }
    }

    /// The answer's body ended as the engine sent it: its usage report (if any) and, for an estimate, how many
    /// chunks it had.
    pub fn answer_ended(&self, usage: Option<Tokens>, chunks: u64) {
        self.update(|d| {
            d.usage = usage.or(d.usage);
            d.estimate.output = chunks;
        });
    }

    /// The answer broke off after it began (the first reason is kept).
    pub fn broke_off(&self, why: &str) {
        self.update(|d| {
            d.record.error.get_or_insert_with(|| why.to_owned());
        });
    }

    /// The request ended: the client got `status` and the whole answer (`completed`), or went away before its
    /// end. Tells the hub; later calls do nothing.
    pub fn finish(&self, status: u16, completed: bool) {
        let Some(tracing) = &self.0 else { return };
        let Some(draft) = tracing.draft.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        tracing.hub.finish(draft.end(tracing.started, Instant::now(), status, completed));
    }
}

impl Draft {
    /// The finished record: the status the client saw (the executor's outcome when the edge said 200 before
    /// the outcome was known), times from `started` to `now`, tokens reported or estimated, and their cost.
    pub fn end(self, started: Instant, now: Instant, status: u16, completed: bool) -> Finished {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let mut record = self.record;
        record.status = match self.outcome {
            Some(outcome) if status == 200 => outcome,
            _ => status,
        };
        record.ttfb_ms = self.first_byte.map(|t| ms(t.saturating_duration_since(started)));
        record.duration_ms = ms(now.saturating_duration_since(started));
        let answered = record.status < 400 && record.deployment.is_some();
        let tokens = match self.usage {
            Some(usage) => usage,
            None if answered => {
                record.tokens_estimated = true;
                self.estimate
            }
            None => Tokens::default(),
        };
        (record.tokens_in, record.tokens_out) = (tokens.input, tokens.output);
        if let Some((input, output)) = self.price {
            record.cost_usd = input * tokens.input as f64 + output * tokens.output as f64;
        }
        if !completed && record.error.is_none() {
            record.error = Some("the client went away before the answer ended".to_owned());
        }
        record
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
            complexity_tier: None,
            error: None,
        }
    }

    fn draft(deployment: Option<usize>, outcome: Option<u16>, usage: Option<Tokens>) -> Draft {
        let mut record = record(0);
        record.deployment = deployment;
        record.ttfb_ms = None;
        let estimate = Tokens { input: 100, output: 7 };
        Draft { record, outcome, first_byte: None, usage, estimate, price: Some((0.001, 0.002)) }
    }

    #[test]
    fn a_record_ends_with_the_status_the_client_saw_its_tokens_and_their_cost() {
        let t0 = Instant::now();
        let later = t0 + std::time::Duration::from_millis(250);
        let usage = Some(Tokens { input: 10, output: 20 });
        let r = draft(Some(1), Some(200), usage).end(t0, later, 200, true);
        assert_eq!((r.status, r.duration_ms, r.tokens_in, r.tokens_out, r.tokens_estimated), (200, 250, 10, 20, false));
        assert!((r.cost_usd - 0.05).abs() < 1e-12, "{}", r.cost_usd);
        assert_eq!(r.error, None);

        // A stream answered early with keep-alives: the edge said 200, the outcome was a 503.
        let r = draft(None, Some(503), None).end(t0, later, 200, true);
        assert_eq!((r.status, r.tokens_in, r.tokens_out, r.cost_usd), (503, 0, 0, 0.0), "no tokens without an answer");
        // A translated answer that failed at the edge keeps the edge's status.
        assert_eq!(draft(Some(1), Some(200), usage).end(t0, later, 502, true).status, 502);

        // No usage reported: the estimate, said to be one.
        let r = draft(Some(1), Some(200), None).end(t0, later, 200, false);
        assert_eq!((r.tokens_in, r.tokens_out, r.tokens_estimated), (100, 7, true));
        assert_eq!(r.error.as_deref(), Some("the client went away before the answer ended"));
    }

    #[test]
    fn a_trace_is_told_to_the_hub_once_and_an_off_trace_never() {
        let hub = Arc::new(Hub::new(4));
        let trace = Trace::start(hub.clone(), RequestId("a".into()), ClientProtocol::Ollama, "chat");
        trace.update(|d| d.record.requested.push_str("coding"));
        trace.answer_ended(Some(Tokens { input: 1, output: 2 }), 9);
        trace.broke_off("502 first");
        trace.broke_off("502 second");
        trace.finish(200, true);
        trace.finish(200, false);
        Trace::default().finish(200, true);
        let kept = hub.journal().recent();
        assert_eq!(kept.len(), 1);
        assert_eq!((kept[0].requested.as_str(), kept[0].tokens_out), ("coding", 2));
        assert_eq!(kept[0].error.as_deref(), Some("502 first"));
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
