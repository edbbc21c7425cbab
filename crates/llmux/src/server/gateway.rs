//! The service every connection runs: the completion and embedding routes, which carry nearly all traffic,
//! are matched and served here; everything else goes to the axum [`Router`].
//!
//! Matching the hot routes before axum saves its per-request router dispatch, body boxing and middleware
//! future (7% of llmux's own instructions per proxied request, counted with callgrind); the routes and their
//! errors are the same: 405 for another method, 401 without the key, 413, 400.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use http::{Method, Request};
use tower::ServiceExt;

use super::auth::Who;
use super::observed::{observed, request_id, with_id};
use super::{admit, auth, AppState};
use crate::body::ReadError;
use crate::error::{Dialect, Error};
use crate::executor::Executor;
use crate::keys::Keys;
use crate::observe::{Caller, ClientProtocol, Trace};
use crate::protocol::ollama;
use crate::protocol::openai::{Operation, RequestHead};
use crate::protocol::translate::Translator;

/// The connection service: the API routes served directly, the rest by `router`. Cheap to clone (one per
/// connection).
#[derive(Clone)]
pub struct Gateway {
    state: AppState,
    router: Router,
}

impl Gateway {
    /// A gateway over `state`, falling back to `router` (see [`super::app`]).
    pub fn new(state: AppState, router: Router) -> Self {
        Gateway { state, router }
    }
}

/// The operation an API path asks for (OpenAI's paths, with or without `/v1`).
fn operation(path: &str) -> Option<Operation> {
    let route = path.strip_prefix("/v1").unwrap_or(path);
    Operation::ALL.into_iter().find(|op| op.route() == route)
}

/// A generation route of a protocol llmux translates at its edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Translated {
    /// Anthropic's `/v1/messages`.
    Messages,
    /// OpenAI's `/v1/responses` (or `/responses`).
    Responses,
    /// One of Ollama's generation routes.
    Ollama(ollama::Route),
}

impl Translated {
    fn of(path: &str) -> Option<Translated> {
        Some(match path {
            "/v1/messages" => Translated::Messages,
            "/v1/responses" | "/responses" => Translated::Responses,
            "/api/chat" => Translated::Ollama(ollama::Route::Chat),
            "/api/generate" => Translated::Ollama(ollama::Route::Generate),
            "/api/embed" => Translated::Ollama(ollama::Route::Embed),
            "/api/embeddings" => Translated::Ollama(ollama::Route::Embeddings),
            _ => return None,
        })
    }

    fn protocol(self) -> ClientProtocol {
        match self {
            Translated::Messages => ClientProtocol::Anthropic,
            Translated::Responses => ClientProtocol::Responses,
            Translated::Ollama(_) => ClientProtocol::Ollama,
        }
    }

    fn translator(self, state: &AppState) -> Box<dyn Translator> {
        match self {
            Translated::Messages => Box::new(crate::protocol::anthropic::Messages::new()),
            Translated::Responses => Box::new(crate::protocol::responses::Responses::new(state.responses.clone())),
            Translated::Ollama(route) => Box::new(ollama::Ollama::new(route)),
        }
    }
}

impl<B> hyper::service::Service<Request<B>> for Gateway
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: Request<B>) -> Self::Future {
        let id = request_id(request.headers());
        let path = request.uri().path();
        let hub = || self.state.live.hub().clone();
        if let Some(op) = operation(path) {
            let executor = self.state.executor();
            let keys = self.state.live.keys().cloned();
            let trace = Trace::start(hub(), id.clone(), ClientProtocol::OpenAi, ClientProtocol::operation(op));
            return Box::pin(async move {
                let response = api(executor, keys, op, request, trace.clone()).await;
                Ok(observed(response, &id, trace))
            });
        }
        match Translated::of(path) {
            Some(route) => {
                let translator = route.translator(&self.state);
                let executor = self.state.executor();
                let keys = self.state.live.keys().cloned();
                let trace = Trace::start(hub(), id.clone(), route.protocol(), "chat");
                Box::pin(async move {
                    let response = if request.method() != Method::POST {
                        let message = format!("method {} is not allowed on {}", request.method(), request.uri().path());
                        Error::MethodNotAllowed(message).response_in(translator.dialect())
                    } else {
                        super::inbound::serve(executor, keys, translator, request, trace.clone()).await
                    };
                    Ok(observed(response, &id, trace))
                })
            }
            None => {
                let router = self.router.clone();
                Box::pin(async move { Ok(with_id(router.oneshot(request.map(Body::new)).await?, &id)) })
            }
        }
    }
}

/// One API call: the method first (as LiteLLM's router: a wrong method is a 405 with or without a key), then
/// the key, then the body, then what a virtual key allows.
async fn api<B>(
    executor: Arc<Executor>,
    keys: Option<Arc<Keys>>,
    op: Operation,
    mut request: Request<B>,
    trace: Trace,
) -> Response
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    if request.method() != Method::POST {
        let message = format!("method {} is not allowed on {}", request.method(), request.uri().path());
        return Error::MethodNotAllowed(message).into_response();
    }
    let who = match auth::identify(&executor.config, keys.as_deref(), request.headers(), Dialect::OpenAi) {
        Ok(who) => who,
        Err(e) => return e.into_response(),
    };
    if let Who::Virtual(key) = &who {
        request.extensions_mut().insert(key.caller());
    }
    caller(&trace, &request);
    let mut body = match read_body(&executor, request.into_body()).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let mut head = match RequestHead::parse(&body, op) {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    // Named in the record before the key is checked, so a refusal says which model was refused.
    trace.update(|d| d.record.requested = head.model.to_string());
    let admitted = match admit::admit(keys.as_ref(), &who, &executor.config, &head.model).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    if let Some(model) = &admitted.model {
        let span = head.model_span.clone();
        drop(head);
        body = crate::keys::with_model(&body, span, model);
        head = match RequestHead::parse(&body, op) {
            Ok(h) => h,
            Err(e) => return e.into_response(),
        };
    }
    let keepalive = executor.config.router.stream_keepalive;
    let response = if head.stream && !keepalive.is_zero() {
        drop(head);
        crate::executor::execute_with_keepalive(executor, op, body, keepalive, trace).await
    } else {
        executor.execute(op, &body, &head, &trace).await
    };
    admit::hold(response, admitted.slot)
}

/// Tells the record who sent `request`: the [`Caller`] authentication left in its extensions, if any.
pub fn caller<B>(trace: &Trace, request: &Request<B>) {
    if let Some(caller) = request.extensions().get::<Caller>() {
        trace.update(|d| d.record.caller = caller.clone());
    }
}

/// Reads a request body whole, within `general_settings.max_request_body_bytes`.
pub async fn read_body<B>(executor: &Executor, body: B) -> Result<Bytes, Error>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    let limit = executor.config.general.max_request_body_bytes;
    match crate::body::read_whole(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(ReadError::TooLarge) => Err(Error::BodyTooLarge { limit }),
        Err(ReadError::Body(e)) => Err(Error::invalid(format!("could not read the request body: {}", e.into()), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_with_and_without_v1() {
        assert_eq!(operation("/v1/chat/completions"), Some(Operation::Chat));
        assert_eq!(operation("/chat/completions"), Some(Operation::Chat));
        assert_eq!(operation("/v1/completions"), Some(Operation::Completion));
        assert_eq!(operation("/embeddings"), Some(Operation::Embeddings));
        assert_eq!(operation("/v1/models"), None);
        assert_eq!(operation("/v1/v1/chat/completions"), None);
        assert_eq!(operation("/v1/chat/completions/"), None);
    }
}
