//! Streams to the client: an engine's SSE/NDJSON forwarded or converted chunk by chunk (a failure after the
//! first byte ends it with an error event), and SSE keep-alive comments while a request waits for its engine.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::attempt::{Facts, Served};
use super::labels::{X_LLMUX_DEPLOYMENT, X_LLMUX_ROUTE};
use super::Executor;
use crate::error::Error;
use crate::observe::Trace;
use crate::protocol::openai::{Operation, RequestHead};
use crate::providers::openai::UsageTail;
use crate::providers::StreamConverter;

/// The SSE comment sent while a stream waits for its first byte (clients ignore comment lines).
const KEEPALIVE_COMMENT: &[u8] = b": keep-alive\n\n";

/// What a held request waits for (e.g. `waking http://p40:11434`), and since when.
type Waiting = Arc<std::sync::Mutex<Option<(String, std::time::Instant)>>>;

tokio::task_local! {
    /// Set around a stream's request by [`execute_with_keepalive`]: what its keep-alive comments say.
    static WAITING: Waiting;
}

/// Says what the request being served waits for (`None`: nothing in particular), for its keep-alive comments.
/// Outside a held stream it does nothing.
pub(super) fn waiting_for(what: Option<(String, std::time::Instant)>) {
    let _ = WAITING.try_with(|w| *w.lock().unwrap_or_else(|e| e.into_inner()) = what);
}

/// The keep-alive comment: what the request waits for and for how long, when it says.
fn keepalive(waiting: &Waiting) -> Bytes {
    match &*waiting.lock().unwrap_or_else(|e| e.into_inner()) {
        Some((what, since)) => Bytes::from(format!(": {what}, {} s\n\n", since.elapsed().as_secs())),
        None => Bytes::from_static(KEEPALIVE_COMMENT),
    }
}

/// Serves a streamed request, answering 200 early with SSE keep-alive comments when no engine has started to
/// answer within `interval` (a cold model load can take a minute; reverse proxies cut idle connections sooner).
/// Failover still happens behind the comments; if every attempt fails, the stream ends with an SSE error event.
pub async fn execute_with_keepalive(
    exec: Arc<Executor>,
    op: Operation,
    body: Bytes,
    interval: Duration,
    trace: Trace,
) -> Response {
    let waiting = Waiting::default();
    let mut run = Box::pin(WAITING.scope(waiting.clone(), async move {
        match RequestHead::parse(&body, op) {
            Ok(head) => exec.execute(op, &body, &head, &trace).await,
            Err(e) => axum::response::IntoResponse::into_response(e),
        }
    }));
    tokio::select! {
        response = &mut run => return response,
        _ = tokio::time::sleep(interval) => {}
    }
    enum Phase<F> {
        Waiting(std::pin::Pin<Box<F>>),
        Streaming(axum::body::BodyDataStream),
        Done,
    }
    let first = keepalive(&waiting);
    let stream = futures_util::stream::unfold(Phase::Waiting(run), move |phase| {
        let waiting = waiting.clone();
        async move {
            match phase {
                Phase::Waiting(mut run) => {
                    tokio::select! {
                        response = &mut run => {
                            let (parts, body) = response.into_parts();
                            if parts.status.is_success() {
                                // The headers went out with the first keep-alive: which deployment answered is said in
                                // a comment before the first chunk (clients ignore it; curl and logs show it).
                                let named = named_deployment(&parts.headers);
                                let mut data = body.into_data_stream();
                                match data.next().await {
                                    Some(Ok(chunk)) => {
                                        let mut first = BytesMut::with_capacity(named.len() + chunk.len());
                                        first.extend_from_slice(&named);
                                        first.extend_from_slice(&chunk);
                                        Some((Ok::<Bytes, std::io::Error>(first.freeze()), Phase::Streaming(data)))
                                    }
                                    Some(Err(e)) => Some((Err(std::io::Error::other(e)), Phase::Done)),
                                    None => None,
                                }
                            } else {
                                // The JSON error body becomes the stream's terminal error event.
                                let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                                let json = if bytes.is_empty() { Bytes::from_static(b"{}") } else { bytes };
                                let mut event = BytesMut::with_capacity(json.len() + 32);
                                event.extend_from_slice(b"data: ");
                                event.extend_from_slice(&json);
                                event.extend_from_slice(b"\n\n");
                                event.extend_from_slice(crate::providers::SSE_DONE);
                                Some((Ok(event.freeze()), Phase::Done))
                            }
                        }
                        _ = tokio::time::sleep(interval) => Some((Ok(keepalive(&waiting)), Phase::Waiting(run))),
                    }
                }
                Phase::Streaming(mut data) => match data.next().await {
                    Some(Ok(chunk)) => Some((Ok(chunk), Phase::Streaming(data))),
                    Some(Err(e)) => Some((Err(std::io::Error::other(e)), Phase::Done)),
                    None => None,
                },
                Phase::Done => None,
            }
        }
    });
    let body = futures_util::stream::once(async { Ok(first) }).chain(stream);
    let mut response = Response::new(Body::from_stream(body));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The SSE comment naming the deployment that answered a stream whose headers were already sent (empty when
/// none is known), also logged since no response header can carry it.
fn named_deployment(headers: &HeaderMap) -> Bytes {
    let Some(deployment) = headers.get(X_LLMUX_DEPLOYMENT).and_then(|v| v.to_str().ok()) else {
        return Bytes::new();
    };
    let route = headers.get(X_LLMUX_ROUTE).and_then(|v| v.to_str().ok()).unwrap_or("");
    tracing::info!(deployment, route, "stream answered after keep-alive comments");
    Bytes::from(format!(": x-llmux-deployment: {deployment}\n\n"))
}

/// How a stream's events are framed, and so how a failure after its start is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// OpenAI's SSE: `data: {"error": …}` then `[DONE]`.
    Sse,
    /// An engine's own NDJSON passed through (Ollama's): a last `{"error": "…"}` line, as Ollama ends a failed one.
    Ndjson,
    /// Anthropic's own event stream passed through: an `event: error`, as Anthropic ends a failed one.
    AnthropicSse,
}

/// The event that ends a failed Anthropic stream.
fn anthropic_error(err: &Error) -> Bytes {
    let json = serde_json::to_string(&err.body_in(crate::error::Dialect::Anthropic)).unwrap_or_default();
    Bytes::from(format!("event: error\ndata: {json}\n\n"))
}

/// The line that ends a failed NDJSON stream.
fn ndjson_error(err: &Error) -> Bytes {
    let mut line = serde_json::to_vec(&err.body_in(crate::error::Dialect::Ollama)).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

struct StreamState {
    body: Incoming,
    /// A frame read before the stream was handed over, served first.
    first: Option<http_body::Frame<Bytes>>,
    /// Keeps the deployment counted in flight while the stream lasts; told (with the request's record) when it
    /// was served whole.
    served: Served,
    /// Data chunks received: the estimate of the tokens generated, when the engine reports none.
    chunks: u64,
    converter: Option<Box<dyn StreamConverter>>,
    /// A stream passed through unconverted: its last bytes, where the engine's usage event is.
    tail: UsageTail,
    idle: Duration,
    host: String,
    out: BytesMut,
    done: bool,
    framing: Framing,
}

/// The client's stream: each engine chunk is forwarded (or converted) as soon as it arrives. A failure after
/// the first byte ends the stream with an SSE error event and `[DONE]`.
pub(super) fn sse_stream(
    body: Incoming,
    first: Option<http_body::Frame<Bytes>>,
    converter: Option<Box<dyn StreamConverter>>,
    idle: Duration,
    host: String,
    served: Served,
    framing: Framing,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let tail = UsageTail::default();
    let out = BytesMut::new();
    let state = StreamState { body, first, served, chunks: 0, converter, tail, idle, host, out, done: false, framing };
    futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            let next = match s.first.take() {
                Some(frame) => Ok(Some(Ok(frame))),
                None => tokio::time::timeout(s.idle, s.body.frame()).await,
            };
            let frame: Result<(), Error> = match next {
                Err(_) => Err(Error::Timeout(format!("engine at {} sent nothing for {:?}", s.host, s.idle))),
                Ok(None) => {
                    s.done = true;
                    // Finished first: a last line without its newline is only read then.
                    let finished = s.converter.as_mut().map(|conv| conv.finish(&mut s.out));
                    let facts = match &s.converter {
                        Some(conv) => {
                            Facts { load: conv.load_duration(), usage: conv.usage(), timings: conv.timings() }
                        }
                        None => Facts { load: None, usage: s.tail.tokens(), timings: s.tail.timings() },
                    };
                    s.served.delivered(facts, s.chunks);
                    match finished? {
                        Ok(()) => return (!s.out.is_empty()).then(|| (Ok(s.out.split().freeze()), s)),
                        Err(e) => Err(e),
                    }
                }
                Ok(Some(Err(e))) => Err(Error::Connect(format!("engine at {} broke off the stream: {e}", s.host))),
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Err(_) => continue,
                    Ok(data) => match s.converter.as_mut() {
                        None => {
                            s.chunks += 1;
                            s.tail.feed(&data);
                            return Some((Ok(data), s));
                        }
                        Some(conv) => match conv.feed(&data, &mut s.out) {
                            Ok(()) if s.out.is_empty() => continue,
                            Ok(()) => {
                                s.chunks += 1;
                                return Some((Ok(s.out.split().freeze()), s));
                            }
                            Err(e) => Err(e),
                        },
                    },
                },
            };
            if let Err(err) = frame {
                tracing::warn!("stream from {} failed after it started: {err}", s.host);
                s.served.trace.broke_off(&format!("{} {err}", err.status().as_u16()));
                s.done = true;
                let mut bytes = s.out.split();
                match s.framing {
                    Framing::Sse => bytes.extend_from_slice(&err.sse_event()),
                    Framing::Ndjson => bytes.extend_from_slice(&ndjson_error(&err)),
                    Framing::AnthropicSse => bytes.extend_from_slice(&anthropic_error(&err)),
                }
                return Some((Ok(bytes.freeze()), s));
            }
        }
    })
}
