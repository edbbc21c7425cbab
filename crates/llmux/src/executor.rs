//! Walks a routing plan: sends the request to one deployment after another until one answers, then hands the
//! answer (whole or as a stream) back in OpenAI form. Failover happens only before the first byte reaches the
//! client; a stream that breaks later ends with an SSE error event, never silently.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::config::{Config, Deployment};
use crate::error::Error;
use crate::protocol::openai::{Operation, RequestHead};
use crate::providers::{Call, Provider, StreamConverter};
use crate::router;
use crate::state::State;
use crate::upstream::HttpClient;

/// Default whole-request timeout, as LiteLLM's effective default for chat completions.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest engine response body llmux buffers for a non-streamed answer.
const MAX_UPSTREAM_BODY: usize = 256 * 1024 * 1024;

/// The request executor: config, routing state and the engine client.
pub struct Executor {
    /// The config snapshot.
    pub config: Arc<Config>,
    /// Routing state learned from traffic and health checks.
    pub state: Arc<State>,
    client: HttpClient,
}

/// How a request was routed, for the response headers.
#[derive(Default)]
struct Trace {
    steps: Vec<String>,
    retries: u32,
    fallbacks: u32,
}

impl Executor {
    /// An executor over `config`.
    pub fn new(config: Arc<Config>, client: HttpClient) -> Self {
        let state = Arc::new(State::new(config.deployments.len()));
        Executor { config, state, client }
    }

    /// Starts the background health checks when the config asks for them.
    pub fn spawn_health_checks(&self) {
        let general = &self.config.general;
        if general.background_health_checks {
            let interval = Duration::from_secs(general.health_check_interval.max(1));
            let task = crate::health::run(self.config.clone(), self.state.clone(), self.client.clone(), interval);
            tokio::spawn(task);
        }
    }

    /// Serves one API request: routes it, calls engines until one answers, and returns the client response.
    pub async fn execute(&self, op: Operation, body: &[u8], head: &RequestHead<'_>) -> Response {
        let mut trace = Trace::default();
        let result = self.with_fallbacks(op, body, head, &mut trace).await;
        let (mut response, deployment) = match result {
            Ok((response, d)) => (response, Some(d)),
            Err(err) => {
                if err.status().is_server_error() || err.status() == StatusCode::TOO_MANY_REQUESTS {
                    tracing::warn!(model = %head.model, route = %trace.steps.join("; "), "request failed: {err}");
                }
                (axum::response::IntoResponse::into_response(err), None)
            }
        };
        let headers = response.headers_mut();
        if let Some(d) = deployment {
            let d = &self.config.deployments[d];
            let host = d.engine().map(|e| e.host()).unwrap_or("");
            put(headers, "x-llmux-deployment", &format!("model_list[{}] {} @ {host}", d.index, d.model));
            put(headers, "x-litellm-model-id", &d.id);
            put(headers, "x-litellm-model-group", &d.model_name);
        }
        put(headers, "x-llmux-route", &trace.steps.join("; "));
        put(headers, "x-litellm-attempted-retries", &trace.retries.to_string());
        put(headers, "x-litellm-max-retries", &self.config.router.num_retries.to_string());
        put(headers, "x-litellm-attempted-fallbacks", &trace.fallbacks.to_string());
        response
    }

    /// Tries the requested model, then its fallbacks (keyed by the name the client sent, as LiteLLM), then
    /// `default_fallbacks`. The client gets the primary group's error when everything fails.
    async fn with_fallbacks(
        &self,
        op: Operation,
        body: &[u8],
        head: &RequestHead<'_>,
        trace: &mut Trace,
    ) -> Result<(Response, usize), Error> {
        let requested = head.model.as_ref();
        let primary_err = match self.try_group(op, requested, body, head, trace).await {
            Ok(ok) => return Ok(ok),
            Err(e) => e,
        };
        if !falls_back(&primary_err) {
            return Err(primary_err);
        }
        let router = &self.config.router;
        let primary_group = self.config.resolve(requested).map(|r| r.group.to_owned());
        let entry = |key: &str| router.fallbacks.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        let chain = entry(requested)
            .or_else(|| primary_group.as_deref().and_then(entry))
            .or_else(|| entry("*"))
            .unwrap_or(&router.default_fallbacks);
        let mut tried: Vec<String> = primary_group.into_iter().collect();
        for target in chain {
            if trace.fallbacks >= router.max_fallbacks {
                break;
            }
            let Some(group) = self.config.resolve(target).map(|r| r.group.to_owned()) else { continue };
            if tried.contains(&group) {
                continue;
            }
            tried.push(group);
            trace.fallbacks += 1;
            trace.steps.push(format!("fallback {target}"));
            if let Ok(ok) = self.try_group(op, target, body, head, trace).await {
                return Ok(ok);
            }
        }
        Err(primary_err)
    }

    /// Tries the deployments of one group in plan order. A failed connection moves on at once; a retryable
    /// engine error moves on while `num_retries` allows; any other error is final.
    async fn try_group(
        &self,
        op: Operation,
        requested: &str,
        body: &[u8],
        head: &RequestHead<'_>,
        trace: &mut Trace,
    ) -> Result<(Response, usize), Error> {
        let snapshot = self.state.snapshot(Instant::now());
        let plan = router::plan(&self.config, op, requested, &snapshot, &mut fastrand::Rng::new())?;
        let mut retries_left = self.config.router.num_retries;
        let mut last_err = None;
        for (n, &index) in plan.attempts.iter().enumerate() {
            let d = &self.config.deployments[index];
            let tier = d.order.map_or("unordered".to_owned(), |o| format!("order {o}"));
            let host = d.engine().map(|e| e.host()).unwrap_or("");
            let step = format!("{requested} -> {} -> {tier} -> model_list[{index}] @ {host}", plan.group);
            match self.attempt(op, d, body, head).await {
                Ok(response) => {
                    self.state.mark_reachable(index);
                    trace.steps.push(step);
                    return Ok((response, index));
                }
                Err(err) => {
                    trace.steps.push(format!("{step} failed: {}", short(&err)));
                    let more = n + 1 < plan.attempts.len();
                    if err.is_connection_failure() {
                        self.state.mark_unreachable(index, Instant::now());
                    } else if retryable(&err) && retries_left > 0 && more {
                        retries_left -= 1;
                        trace.retries += 1;
                    } else {
                        return Err(err);
                    }
                    last_err = Some(err);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| Error::Internal(format!("model group {} has no deployments", plan.group))))
    }

    /// One call to one deployment.
    async fn attempt(
        &self,
        op: Operation,
        deployment: &Deployment,
        body: &[u8],
        head: &RequestHead<'_>,
    ) -> Result<Response, Error> {
        let engine = deployment
            .engine()
            .ok_or_else(|| Error::Internal(format!("deployment {} has no engine", deployment.id)))?;
        let provider: &dyn Provider = engine.adapter().provider();
        let call = Call { op, deployment, body, head };
        let upstream = provider.build_request(&call)?;
        let mut request = Request::post(&upstream.url)
            .body(Full::new(upstream.body))
            .map_err(|e| Error::Internal(format!("building the engine request: {e}")))?;
        request.headers_mut().extend(upstream.headers);

        let router = &self.config.router;
        let total = deployment.timeout.or(router.timeout).unwrap_or(DEFAULT_TIMEOUT);
        let stream_timeout = deployment.stream_timeout.or(router.stream_timeout).unwrap_or(total);
        let first_byte = if head.stream { stream_timeout } else { total };
        let started = Instant::now();
        let response = match tokio::time::timeout(first_byte, self.client.request(request)).await {
            Err(_) => {
                return Err(Error::Timeout(format!("engine at {} did not answer within {first_byte:?}", engine.host())))
            }
            Ok(Err(e)) => return Err(Error::Connect(connect_message(engine.host(), &e))),
            Ok(Ok(r)) => r,
        };
        let (parts, incoming) = response.into_parts();
        if !parts.status.is_success() {
            let remaining = total.saturating_sub(started.elapsed());
            let bytes = collect(incoming, remaining, engine.host()).await?;
            return Err(provider.convert_error(parts.status, &parts.headers, &bytes));
        }
        if head.stream {
            let converter = provider.stream_converter(&call);
            let content_type = match &converter {
                Some(_) => HeaderValue::from_static("text/event-stream"),
                None => {
                    parts.headers.get(CONTENT_TYPE).cloned().unwrap_or(HeaderValue::from_static("text/event-stream"))
                }
            };
            let stream = sse_stream(incoming, converter, stream_timeout, engine.host().to_owned());
            let mut response = Response::new(Body::from_stream(stream));
            response.headers_mut().insert(CONTENT_TYPE, content_type);
            response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            return Ok(response);
        }
        let remaining = total.saturating_sub(started.elapsed());
        let bytes = collect(incoming, remaining, engine.host()).await?;
        let converted = provider.convert_response(&call, bytes)?;
        let mut response = Response::new(Body::from(converted));
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(response)
    }
}

fn put(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if value.is_empty() {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// Whether a failure is worth another deployment (LiteLLM retries 408, 409, 429 and 5xx).
fn retryable(err: &Error) -> bool {
    match err {
        Error::Timeout(_) | Error::Connect(_) | Error::BadUpstreamResponse(_) => true,
        Error::Upstream { status, .. } => matches!(status.as_u16(), 408 | 409 | 429) || status.is_server_error(),
        _ => false,
    }
}

/// Whether a group's failure may be rescued by fallback groups: not for the client's own mistakes.
fn falls_back(err: &Error) -> bool {
    retryable(err) || matches!(err, Error::Upstream { status, .. } if matches!(status.as_u16(), 401 | 403 | 404))
}

fn short(err: &Error) -> String {
    let text = err.to_string();
    let mut s: String = text.chars().take(120).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    format!("{} {}", err.status().as_u16(), s.replace(['\r', '\n'], " "))
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

/// Reads a whole engine body within `timeout` and the size limit.
async fn collect(body: Incoming, timeout: Duration, host: &str) -> Result<Bytes, Error> {
    let limited = http_body_util::Limited::new(body, MAX_UPSTREAM_BODY);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(Error::Timeout(format!("engine at {host} did not finish its answer in time"))),
        Ok(Err(e)) => Err(Error::Connect(format!("reading the answer of engine at {host} failed: {e}"))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

struct StreamState {
    body: Incoming,
    converter: Option<Box<dyn StreamConverter>>,
    idle: Duration,
    host: String,
    out: BytesMut,
    done: bool,
}

/// The client's stream: each engine chunk is forwarded (or converted) as soon as it arrives. A failure after
/// the first byte ends the stream with an SSE error event and `[DONE]`.
fn sse_stream(
    body: Incoming,
    converter: Option<Box<dyn StreamConverter>>,
    idle: Duration,
    host: String,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let state = StreamState { body, converter, idle, host, out: BytesMut::new(), done: false };
    futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            let frame: Result<(), Error> = match tokio::time::timeout(s.idle, s.body.frame()).await {
                Err(_) => Err(Error::Timeout(format!("engine at {} sent nothing for {:?}", s.host, s.idle))),
                Ok(None) => {
                    s.done = true;
                    let conv = s.converter.as_mut()?;
                    match conv.finish(&mut s.out) {
                        Ok(()) => return (!s.out.is_empty()).then(|| (Ok(s.out.split().freeze()), s)),
                        Err(e) => Err(e),
                    }
                }
                Ok(Some(Err(e))) => Err(Error::Connect(format!("engine at {} broke off the stream: {e}", s.host))),
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Err(_) => continue,
                    Ok(data) => match s.converter.as_mut() {
                        None => return Some((Ok(data), s)),
                        Some(conv) => match conv.feed(&data, &mut s.out) {
                            Ok(()) if s.out.is_empty() => continue,
                            Ok(()) => return Some((Ok(s.out.split().freeze()), s)),
                            Err(e) => Err(e),
                        },
                    },
                },
            };
            if let Err(err) = frame {
                tracing::warn!("stream from {} failed after it started: {err}", s.host);
                s.done = true;
                let mut bytes = s.out.split();
                bytes.extend_from_slice(&err.sse_event());
                return Some((Ok(bytes.freeze()), s));
            }
        }
    })
}
