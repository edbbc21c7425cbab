//! One call to one deployment: the transport, its timeouts (whole request, first byte, a cold load's
//! patience), reading answers within the size and buffered-memory budgets, and engine error bodies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::stream::{sse_stream, Framing};
use super::Executor;
use crate::config::{Config, EngineTarget};
use crate::error::Error;
use crate::observe::{Tokens, Trace};
use crate::providers::openai::UsageTail;
use crate::providers::{Call, NativeAnswer, Provider};
use crate::state::OwnedInFlight;

/// Default whole-request timeout, as LiteLLM's effective default for chat completions.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// How much of an engine's error body llmux reads: enough for any real error message; the rest is not read
/// (a broken engine once sent a 100 MB one, which went whole to the client and into one log line).
const MAX_ERROR_BODY: usize = 8 * 1024;
/// How long llmux waits for that much of an error body (an engine that dribbles it is not waited for).
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(10);

impl Executor {
    /// One call to one deployment. `guard` keeps it counted in flight until the answer is complete (for a
    /// stream: until its body ends or the client goes away); `load_time` is how long the engine may take to
    /// answer at all because it must load the model first; `load`, a load llmux set off for it, is waited for
    /// (within the same first-byte time) before the request is sent. The answer's body tells `trace` its tokens.
    pub(super) async fn attempt(
        &self,
        call: Call<'_>,
        guard: Option<OwnedInFlight>,
        load_time: Option<Duration>,
        load: Option<tokio::sync::watch::Receiver<bool>>,
        trace: &Trace,
    ) -> Result<Response, Error> {
        let Call { deployment, head, .. } = call;
        let engine = deployment
            .engine()
            .ok_or_else(|| Error::Internal(format!("deployment {} has no engine", deployment.id)))?;
        let provider: &dyn Provider = engine.adapter().provider();
        let native = provider.native(&call);
        let upstream = provider.build_request(&call)?;
        let request = upstream.into_http();

        let router = &self.config.router;
        let asked = |secs: Option<f64>| secs.and_then(|s| Duration::try_from_secs_f64(s).ok());
        let total = asked(head.controls.timeout).or(deployment.timeout).or(router.timeout).unwrap_or(DEFAULT_TIMEOUT);
        let stream_timeout = asked(head.controls.stream_timeout)
            .or(deployment.stream_timeout)
            .or(router.stream_timeout)
            .unwrap_or(total);
        let first_byte = if head.stream { stream_timeout } else { total };
        // Never give up on a cold host before it had the time a load took it before.
        let first_byte = first_byte.max(load_time.unwrap_or_default());
        let started = Instant::now();
        let send = async {
            if let Some(mut load) = load {
                let what = format!("loading {} on {}", call.model, engine.host());
                super::stream::waiting_for(Some((what, std::time::Instant::now())));
                let _ = load.wait_for(|over| *over).await;
                super::stream::waiting_for(None);
            }
            crate::upstream::send(&self.client, request).await
        };
        let response = match tokio::time::timeout(first_byte, send).await {
            Err(_) => {
                return Err(Error::Timeout(format!("engine at {} did not answer within {first_byte:?}", engine.host())))
            }
            Ok(Err(e)) => return Err(Error::Connect(connect_message(engine.host(), &e))),
            Ok(Ok(r)) => r,
        };
        let (parts, incoming) = response.into_parts();
        if !parts.status.is_success() {
            let remaining = total.saturating_sub(started.elapsed()).min(ERROR_BODY_TIMEOUT);
            let (bytes, cut) = error_excerpt(incoming, remaining).await;
            let mut err = provider.convert_error(parts.status, &parts.headers, &bytes);
            if cut {
                if let Error::Upstream { message, .. } = &mut err {
                    message.push_str(&format!(" [llmux: the engine's error body was cut at {MAX_ERROR_BODY} bytes]"));
                }
            }
            return Err(err);
        }
        if head.stream {
            let converter = provider.stream_converter(&call);
            let content_type = match &converter {
                Some(_) if native => HeaderValue::from_static("application/x-ndjson"),
                Some(_) => HeaderValue::from_static("text/event-stream"),
                None => {
                    parts.headers.get(CONTENT_TYPE).cloned().unwrap_or(HeaderValue::from_static("text/event-stream"))
                }
            };
            // The first chunk is awaited here, within the first-byte time: the client then gets the head and
            // that chunk in one write, and an engine that fails before it can still be failed over.
            let mut incoming = incoming;
            let deadline = tokio::time::Instant::from_std(started) + first_byte;
            let first = match tokio::time::timeout_at(deadline, incoming.frame()).await {
                Err(_) => {
                    let host = engine.host();
                    return Err(Error::Timeout(format!("engine at {host} sent no first chunk within {first_byte:?}")));
                }
                Ok(Some(Err(e))) => {
                    let host = engine.host();
                    return Err(Error::BadUpstreamResponse(format!(
                        "engine at {host} ended its stream before it began: {e}"
                    )));
                }
                Ok(Some(Ok(frame))) => Some(frame),
                Ok(None) => None,
            };
            let framing = match (native, engine.adapter()) {
                (true, crate::providers::Adapter::Anthropic) => Framing::AnthropicSse,
                (true, _) => Framing::Ndjson,
                (false, _) => Framing::Sse,
            };
            let served = Served { guard, trace: trace.clone() };
            let stream =
                sse_stream(incoming, first, converter, stream_timeout, engine.host().to_owned(), served, framing);
            let mut response = answer(Body::from_stream(stream), content_type);
            crate::providers::ratelimit::pass_on(&parts.headers, response.headers_mut());
            response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            if native {
                response.extensions_mut().insert(NativeAnswer);
            }
            return Ok(response);
        }
        let deadline = tokio::time::Instant::from_std(started) + total;
        if !native && provider.answer_unchanged(&call) {
            // Nothing to look inside: the answer goes through as it arrives, never held whole. Its first bytes
            // are awaited here, so an engine that fails before them can still be failed over.
            let content_type = parts.headers.get(CONTENT_TYPE).cloned();
            let served = Served { guard, trace: trace.clone() };
            let body = PassBody::start(incoming, deadline, served, engine.host()).await?;
            let content_type = content_type.unwrap_or(HeaderValue::from_static("application/json"));
            let mut response = answer(Body::new(body), content_type);
            crate::providers::ratelimit::pass_on(&parts.headers, response.headers_mut());
            return Ok(response);
        }
        let limit = self.config.limits.max_answer_bytes;
        let (bytes, permit) = collect(incoming, deadline, engine, limit, &self.buffered).await?;
        let converted = provider.convert_response(&call, bytes)?;
        drop(permit);
        let facts = Facts { load: converted.load_duration, usage: converted.usage, timings: converted.timings };
        Served { guard, trace: trace.clone() }.delivered(facts, 0);
        // The converted answer stays counted until it has been sent.
        let held = self.hold(converted.body.len())?;
        let body = Held { body: http_body_util::Full::new(converted.body), _permit: held };
        let mut response = answer(Body::new(body), HeaderValue::from_static("application/json"));
        crate::providers::ratelimit::pass_on(&parts.headers, response.headers_mut());
        if native {
            response.extensions_mut().insert(NativeAnswer);
        }
        Ok(response)
    }
}

/// What an answer owes once it was delivered whole: the deployment's in-flight count (with what it learned of
/// service time, load time and usage) and the request's record (its tokens).
pub(super) struct Served {
    pub(super) guard: Option<OwnedInFlight>,
    pub(super) trace: Trace,
}

impl Served {
    /// The answer was delivered whole: `facts` as the engine reported them, `chunks` events (what the tokens
    /// are estimated from when it reported none). Releases the in-flight count.
    pub(super) fn delivered(&mut self, facts: Facts, chunks: u64) {
        if let Some(mut guard) = self.guard.take() {
            guard.served();
            if let Some(load) = facts.load {
                guard.loaded(load);
            }
            if let Some(usage) = facts.usage {
                guard.used(usage.total());
            }
            if let Some(timings) = &facts.timings {
                guard.timed(timings);
            }
        }
        self.trace.answer_ended(facts.usage, chunks);
    }
}

/// What an engine reported about one answer, each when it says.
#[derive(Debug, Default)]
pub(super) struct Facts {
    /// How long loading the model took.
    pub(super) load: Option<Duration>,
    /// The tokens it used.
    pub(super) usage: Option<Tokens>,
    /// How long reading the prompt and writing the answer took.
    pub(super) timings: Option<crate::router::speed::Timings>,
}

/// An engine's answer for the client, its header map made big enough for what [`Executor::execute`] adds
/// (growing it is a rehash).
pub(super) fn answer(body: Body, content_type: HeaderValue) -> Response {
    let mut headers = HeaderMap::with_capacity(12);
    headers.insert(CONTENT_TYPE, content_type);
    let mut response = Response::new(body);
    *response.headers_mut() = headers;
    response
}

fn connect_message(host: &str, err: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error as _;
    let mut cause = String::new();
    let mut source = err.source();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    let what = if err.is_connect() { "could not connect to" } else { "lost the connection to" };
    let text =
        if cause.is_empty() { format!("{what} engine at {host}") } else { format!("{what} engine at {host}: {cause}") };
    crate::redact::redact(&text)
}

impl Executor {
    /// `bytes` of the buffered-answer budget, or the 503 that says it is spent.
    fn hold(&self, bytes: usize) -> Result<tokio::sync::OwnedSemaphorePermit, Error> {
        let n = u32::try_from(bytes).unwrap_or(u32::MAX);
        self.buffered.clone().try_acquire_many_owned(n).map_err(|_| over_budget(&self.config))
    }
}

/// The 503 for a request whose answer would take llmux over its budget of buffered answers.
fn over_budget(config: &Config) -> Error {
    Error::Overloaded(format!(
        "llmux is holding as many engine answers as it may ({} MiB, llmux_settings.server.max_buffered_mb); try again shortly",
        config.limits.max_buffered_bytes / (1024 * 1024)
    ))
}

/// The error for an answer over `limit` bytes: the engine's fault, but not a lost connection (which would take
/// the host out of rotation).
fn too_large(engine: &EngineTarget, limit: usize) -> Error {
    Error::BadUpstreamResponse(format!(
        "engine answer larger than {limit} bytes (engine at {}; general_settings.max_response_size_mb)",
        engine.host()
    ))
}

/// Reads a whole engine answer by `deadline`, within `limit` bytes and the shared `budget` of buffered bytes
/// (held by the returned permit until the caller drops it). Stops reading as soon as either is exceeded.
async fn collect(
    mut body: Incoming,
    deadline: tokio::time::Instant,
    engine: &EngineTarget,
    limit: usize,
    budget: &Arc<tokio::sync::Semaphore>,
) -> Result<(Bytes, tokio::sync::OwnedSemaphorePermit), Error> {
    use http_body::Body as _;
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large(engine, limit));
    }
    let over = |engine: &EngineTarget| {
        Error::Overloaded(format!(
            "llmux is holding as many engine answers as it may (llmux_settings.server.max_buffered_mb); the answer of engine at {} was not read",
            engine.host()
        ))
    };
    let mut permit = budget.clone().try_acquire_many_owned(0).map_err(|_| over(engine))?;
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut total = 0usize;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err(Error::Timeout(format!("engine at {} did not finish its answer in time", engine.host())))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(Error::Connect(format!("reading the answer of engine at {} failed: {e}", engine.host())))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        total += data.len();
        if total > limit {
            return Err(too_large(engine, limit));
        }
        let more = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let Ok(extra) = budget.clone().try_acquire_many_owned(more) else { return Err(over(engine)) };
        permit.merge(extra);
        match (&mut joined, first.take()) {
            (Some(joined), _) => joined.extend_from_slice(&data),
            (None, None) => first = Some(data),
            (None, Some(head)) => {
                let mut buf = BytesMut::with_capacity(head.len() + data.len());
                buf.extend_from_slice(&head);
                buf.extend_from_slice(&data);
                joined = Some(buf);
            }
        }
    }
    let bytes = match joined {
        Some(joined) => joined.freeze(),
        None => first.unwrap_or_default(),
    };
    Ok((bytes, permit))
}

/// The first [`MAX_ERROR_BODY`] bytes of an engine's error body, read within `timeout` (what came by then, on a
/// timeout or a broken body), and whether there was more. The rest is never read: the connection is dropped.
async fn error_excerpt(mut body: Incoming, timeout: Duration) -> (Bytes, bool) {
    use http_body::Body as _;
    let mut out = BytesMut::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut cut = false;
    while out.len() < MAX_ERROR_BODY {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else { continue };
                let room = MAX_ERROR_BODY - out.len();
                cut |= data.len() > room;
                out.extend_from_slice(&data[..data.len().min(room)]);
            }
            Ok(None) => return (out.freeze(), cut),
            // What came is the message; a body that broke off or dribbles is not waited for.
            Ok(Some(Err(_))) | Err(_) => return (out.freeze(), !body.is_end_stream()),
        }
    }
    // Full: there is more unless the body says it ended.
    cut |= !body.is_end_stream();
    (out.freeze(), cut)
}

/// A whole answer that keeps its share of the buffered-answer budget until it has been sent.
struct Held {
    body: http_body_util::Full<Bytes>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A non-streamed answer passed through as the engine sends it: within the request's deadline, the
/// deployment counted in flight until its last byte (then told it was served). A failure after the first byte
/// can only end the client's response early, as with a stream.
struct PassBody {
    incoming: Incoming,
    first: Option<http_body::Frame<Bytes>>,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    served: Served,
    /// The answer's last bytes, where the engine's `usage` is.
    tail: UsageTail,
    host: String,
    done: bool,
}

impl PassBody {
    /// Waits for the first frame (before the deadline) and returns the body that serves it and the rest.
    async fn start(
        mut incoming: Incoming,
        deadline: tokio::time::Instant,
        served: Served,
        host: &str,
    ) -> Result<PassBody, Error> {
        let first = match tokio::time::timeout_at(deadline, incoming.frame()).await {
            Err(_) => return Err(Error::Timeout(format!("engine at {host} did not finish its answer in time"))),
            Ok(Some(Err(e))) => {
                return Err(Error::Connect(format!("reading the answer of engine at {host} failed: {e}")))
            }
            Ok(Some(Ok(frame))) => Some(frame),
            Ok(None) => None,
        };
        let mut body = PassBody {
            incoming,
            first,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            served,
            tail: UsageTail::default(),
            host: host.to_owned(),
            done: false,
        };
        if let Some(data) = body.first.as_ref().and_then(|f| f.data_ref()) {
            body.tail.feed(data);
        }
        if body.first.is_none() {
            body.finished();
        }
        Ok(body)
    }

    fn finished(&mut self) {
        self.done = true;
        let facts = Facts { load: None, usage: self.tail.tokens(), timings: self.tail.timings() };
        self.served.delivered(facts, 0);
    }
}

impl http_body::Body for PassBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::future::Future as _;
        use std::task::Poll;
        let this = &mut *self;
        if let Some(frame) = this.first.take() {
            if this.incoming.is_end_stream() {
                this.finished();
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.done = true;
            tracing::warn!("engine at {} did not finish its answer in time; the answer is cut", this.host);
            this.served.trace.broke_off("504 the engine did not finish its answer in time");
            return Poll::Ready(Some(Err(std::io::Error::other("engine answer timed out"))));
        }
        match std::pin::Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.finished();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.tail.feed(data);
                }
                if this.incoming.is_end_stream() {
                    this.finished();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                tracing::warn!("engine at {} broke off its answer after it began: {e}", this.host);
                this.served.trace.broke_off("502 the engine broke off its answer after it began");
                Poll::Ready(Some(Err(std::io::Error::other(e))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.first.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let first = self.first.as_ref().and_then(|f| f.data_ref()).map_or(0, |d| d.len() as u64);
        let rest = self.incoming.size_hint();
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(rest.lower() + first);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + first);
        }
        hint
    }
}
