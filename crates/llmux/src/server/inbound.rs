//! Serves the client protocols llmux translates at its edge (Anthropic Messages, OpenAI Responses, Ollama's
//! `/api/*`): key, body, [`Translator::request`], the same [`Executor`] as chat completions (routing, retries,
//! order, fallbacks, keep-alives), then the answer back through the translator — whole, or event by event.
//!
//! Every error, before or during a stream, reaches the client in its protocol's own shape.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Request};
use http_body_util::BodyExt;

use super::auth::Who;
use super::{admit, auth, gateway};
use crate::error::Error;
use crate::executor::Executor;
use crate::keys::Keys;
use crate::observe::{ClientProtocol, Trace};
use crate::protocol::openai::RequestHead;
use crate::protocol::translate::{relayed_error_body, ChunkEncoder, Event, SseEvents, Translator};
use crate::providers::{Native, NativeAnswer};

/// One request in a translated protocol: the key first, then the body, then what a virtual key allows.
pub async fn serve<B>(
    executor: Arc<Executor>,
    keys: Option<Arc<Keys>>,
    mut translator: Box<dyn Translator>,
    mut request: Request<B>,
    trace: Trace,
) -> Response
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    let dialect = translator.dialect();
    let path = request.uri().path().to_owned();
    let who = match auth::identify(&executor.config, keys.as_deref(), request.headers(), dialect) {
        Ok(who) => who,
        Err(e) => return e.response_in(dialect),
    };
    if let Who::Virtual(key) = &who {
        request.extensions_mut().insert(key.caller());
    }
    gateway::caller(&trace, &request);
    let body = match gateway::read_body(&executor, request.into_body()).await {
        Ok(b) => b,
        Err(e) => return e.response_in(dialect),
    };
    let original = body;
    if let Some(preparation) = translator.prepare(&original) {
        preparation.await;
    }
    let canonical = match translator.request(&original, &executor.config) {
        Ok(c) => c,
        Err(e) => return e.response_in(dialect),
    };
    let op = canonical.op;
    trace.update(|d| d.record.operation = ClientProtocol::operation(op));
    let mut native_route = canonical.native;
    let mut body = Bytes::from(canonical.body);
    let mut head = match RequestHead::parse(&body, op) {
        Ok(h) => h,
        Err(e) => return e.response_in(dialect),
    };
    // Named in the record before the key is checked, so a refusal says which model was refused.
    trace.update(|d| d.record.requested = head.model.to_string());
    let admitted = match admit::admit(keys.as_ref(), &who, &executor.config, &head.model).await {
        Ok(a) => a,
        Err(e) => return e.response_in(dialect),
    };
    if let Some(model) = &admitted.model {
        // The key's alias renamed the model: the translated body carries the new name (and no native pass-through,
        // whose body still names the old one).
        let span = head.model_span.clone();
        drop(head);
        native_route = None;
        body = crate::keys::with_model(&body, span, model);
        head = match RequestHead::parse(&body, op) {
            Ok(h) => h,
            Err(e) => return e.response_in(dialect),
        };
    }
    // LiteLLM's unknown-model text names the route the client called, not the OpenAI one behind it.
    if let Err(Error::UnknownModel { model, .. }) = crate::router::resolve(&executor.config, op, &head.model) {
        return Error::UnknownModel { route: path, model }.response_in(dialect);
    }
    let stream = head.stream;
    let keepalive = executor.config.router.stream_keepalive;
    // The OpenAI answer read back for translation is bounded as the executor bounds engine answers.
    let limit = executor.config.limits.max_answer_bytes;
    let response = if stream && !keepalive.is_zero() && translator.keepalive() && native_route.is_none() {
        drop(head);
        crate::executor::execute_with_keepalive(executor, op, body, keepalive, trace).await
    } else {
        let native = native_route.as_ref().map(|n| Native { endpoint: n.endpoint, body: &original, model: &n.model });
        executor.execute_native(op, &body, &head, native, &trace).await
    };
    // An engine of the client's own family answered in the client's protocol: nothing to translate.
    if response.extensions().get::<NativeAnswer>().is_some() {
        return admit::hold(response, admitted.slot);
    }
    let response = if stream {
        stream_back(response, translator, limit).await
    } else {
        whole_back(response, translator, limit).await
    };
    admit::hold(response, admitted.slot)
}

/// A whole answer, translated; an error keeps llmux's route headers.
async fn whole_back(response: Response, mut translator: Box<dyn Translator>, limit: usize) -> Response {
    let dialect = translator.dialect();
    let (parts, body) = response.into_parts();
    let bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let err = if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                Error::BadUpstreamResponse(format!(
                    "engine answer larger than {limit} bytes (general_settings.max_response_size_mb)"
                ))
            } else {
                Error::Connect(format!("reading the answer failed: {e}"))
            };
            return with_headers(err.response_in(dialect), &parts.headers);
        }
    };
    if !parts.status.is_success() {
        return with_headers(relayed_error_body(parts.status, &bytes).response_in(dialect), &parts.headers);
    }
    match translator.response(&bytes) {
        Ok(out) => {
            let mut response = Response::from_parts(parts, Body::from(out));
            response.headers_mut().remove(CONTENT_LENGTH);
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(e) => with_headers(e.response_in(dialect), &parts.headers),
    }
}

/// A streamed answer, translated event by event as the OpenAI events arrive.
async fn stream_back(response: Response, mut translator: Box<dyn Translator>, limit: usize) -> Response {
    if !response.status().is_success() {
        // Failed before anything was sent: an ordinary error response, not a stream.
        return whole_back(response, translator, limit).await;
    }
    let content_type = translator.stream_content_type();
    let encoder = translator.stream();
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    let state = Translating { body: body.into_data_stream(), sse: SseEvents::default(), encoder, ended: false };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if s.ended {
                return None;
            }
            let mut out = BytesMut::new();
            match s.body.next().await {
                Some(Ok(bytes)) => {
                    for event in s.sse.feed(&bytes) {
                        if s.ended {
                            break;
                        }
                        s.apply(event, &mut out);
                    }
                }
                Some(Err(e)) => {
                    s.ended = true;
                    s.encoder.fail(&Error::Connect(format!("the answer broke off: {e}")), &mut out);
                }
                None => {
                    // The executor's streams end with `[DONE]`; an engine passed through may just close.
                    s.ended = true;
                    if let Err(e) = s.encoder.finish(&mut out) {
                        s.encoder.fail(&e, &mut out);
                    }
                }
            }
            if !out.is_empty() {
                return Some((Ok::<Bytes, std::io::Error>(out.freeze()), s));
            }
        }
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

struct Translating {
    body: axum::body::BodyDataStream,
    sse: SseEvents,
    encoder: Box<dyn ChunkEncoder>,
    ended: bool,
}

impl Translating {
    fn apply(&mut self, event: Event, out: &mut BytesMut) {
        match event {
            Event::Chunk(chunk) => {
                if let Err(e) = self.encoder.chunk(chunk, out) {
                    self.ended = true;
                    self.encoder.fail(&e, out);
                }
            }
            Event::KeepAlive => self.encoder.keepalive(out),
            Event::Error(e) => {
                self.ended = true;
                self.encoder.fail(&e, out);
            }
            Event::Done => {
                self.ended = true;
                if let Err(e) = self.encoder.finish(out) {
                    self.encoder.fail(&e, out);
                }
            }
        }
    }
}

/// An error response carrying the route headers the executor set (`x-llmux-route`, `x-litellm-*`,
/// `retry-after`).
fn with_headers(mut response: Response, from: &HeaderMap) -> Response {
    for (name, value) in from {
        let keep = name.as_str().starts_with("x-llmux-")
            || name.as_str().starts_with("x-litellm-")
            || name == http::header::RETRY_AFTER;
        if keep {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
}
