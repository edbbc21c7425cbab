//! The HTTP server: OpenAI-compatible routes, LiteLLM's model and health routes, auth, body limits.
//!
//! Handlers only decode the client's protocol and hand over to the [`Executor`]; every error is an
//! [`Error`] rendered in one place.

mod auth;
mod health;
mod models;
mod utils;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use http_body_util::BodyExt;
use serde_json::json;

use crate::config::Config;
use crate::error::Error;
use crate::executor::Executor;
use crate::protocol::openai::{Operation, RequestHead};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The executor (config, state, engine client).
    pub executor: Arc<Executor>,
}

impl AppState {
    /// The config snapshot.
    pub fn config(&self) -> &Config {
        &self.executor.config
    }
}

/// The full route table.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/embeddings", post(embeddings))
        .route("/v1/models", get(models::list))
        .route("/models", get(models::list))
        .route("/model/info", get(models::info))
        .route("/v1/model/info", get(models::info))
        .route("/health", get(health::health))
        .route("/health/hosts", get(health::hosts))
        .route("/utils/complexity", post(utils::complexity))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_key));
    Router::new()
        .merge(api)
        .route("/health/liveliness", get(liveliness))
        .route("/health/liveness", get(liveliness))
        .route("/health/readiness", get(readiness))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Serves `app` on `addr` until SIGINT/SIGTERM, then lets in-flight requests finish.
pub async fn serve(state: AppState, addr: SocketAddr) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!("llmux listening on http://{}", listener.local_addr()?);
    // TCP_NODELAY: a streamed token must leave at once, not wait for Nagle's algorithm to batch it.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// Reads the body within the configured limit.
async fn read_body(state: &AppState, request: Request) -> Result<bytes::Bytes, Error> {
    let limit = state.config().general.max_request_body_bytes;
    let limited = http_body_util::Limited::new(request.into_body(), limit);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Error::BodyTooLarge { limit }),
        Err(e) => Err(Error::invalid(format!("could not read the request body: {e}"), None)),
    }
}

async fn handle(state: AppState, op: Operation, request: Request) -> Response {
    let body = match read_body(&state, request).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let head = match RequestHead::parse(&body, op) {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    let keepalive = state.config().router.stream_keepalive;
    if head.stream && !keepalive.is_zero() {
        drop(head);
        return crate::executor::execute_with_keepalive(state.executor.clone(), op, body, keepalive).await;
    }
    state.executor.execute(op, &body, &head).await
}

async fn chat(State(state): State<AppState>, request: Request) -> Response {
    handle(state, Operation::Chat, request).await
}

async fn completions(State(state): State<AppState>, request: Request) -> Response {
    handle(state, Operation::Completion, request).await
}

async fn embeddings(State(state): State<AppState>, request: Request) -> Response {
    handle(state, Operation::Embeddings, request).await
}

async fn liveliness() -> Json<&'static str> {
    Json("I'm alive!")
}

async fn readiness(State(state): State<AppState>) -> Response {
    let config = state.config();
    Json(json!({
        "status": "healthy",
        "db": "Not connected",
        "cache": null,
        "litellm_version": null,
        "llmux_version": env!("CARGO_PKG_VERSION"),
        "deployments": config.deployments.len(),
    }))
    .into_response()
}

async fn not_found(request: Request<Body>) -> Response {
    Error::NotFound(format!("{} {} is not an llmux route", request.method(), request.uri().path())).into_response()
}

async fn method_not_allowed(request: Request<Body>) -> Response {
    Error::MethodNotAllowed(format!("method {} is not allowed on {}", request.method(), request.uri().path()))
        .into_response()
}
