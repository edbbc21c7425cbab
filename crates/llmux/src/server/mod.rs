//! The HTTP server: OpenAI-compatible routes, LiteLLM's model and health routes, auth, body limits.
//!
//! Handlers only decode the client's protocol and hand over to the [`Executor`]; every error is an
//! [`Error`] rendered in one place.

mod auth;
mod health;
mod listen;
mod models;
pub mod tls;
mod utils;
pub mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use http_body_util::BodyExt;
use serde_json::json;

use crate::error::Error;
use crate::executor::Executor;
use crate::lifecycle::Live;
use crate::protocol::openai::{Operation, RequestHead};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The current config and its lifecycle.
    pub live: Arc<Live>,
}

impl AppState {
    /// The executor of the current config: a request keeps this one until it finishes, even across a reload.
    pub fn executor(&self) -> Arc<Executor> {
        self.live.executor()
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
        .route("/config/reload", post(reload))
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

/// How a shutdown drains.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    /// Between the signal and closing the listener: readiness answers 503 and requests are still served, so
    /// a load balancer notices before connections are refused.
    pub grace: Duration,
    /// How long requests in flight (streams included) may run after the listener closes.
    pub timeout: Duration,
}

/// Serves `live` on `addr` with `workers` connection workers (see [`workers`]) until SIGINT/SIGTERM, then
/// drains (see [`Drain`]). SIGHUP reloads the config.
pub async fn serve(live: Arc<Live>, addr: SocketAddr, drain: Drain, workers: usize) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let scheme = if live.tls().is_some() { "https" } else { "http" };
    tracing::info!("llmux listening on {scheme}://{}", listener.local_addr()?);
    spawn_reload_on_hangup(&live);
    let draining = live.clone();
    // A second signal, during the grace or the drain, stops waiting.
    let hurry = Arc::new(tokio::sync::Notify::new());
    let hurried = hurry.clone();
    let shutdown = async move {
        shutdown_signal().await;
        draining.start_draining();
        tracing::info!(
            "shutting down: readiness is 503 now; serving {}s more before the listener closes",
            drain.grace.as_secs_f64()
        );
        tokio::select! {
            () = tokio::time::sleep(drain.grace) => {}
            () = shutdown_signal() => hurried.notify_one(),
        }
    };
    let interrupt = async move {
        tokio::select! {
            () = hurry.notified() => {}
            () = shutdown_signal() => {}
        }
    };
    serve_on(live, listener, shutdown, interrupt, drain.timeout, workers).await
}

/// Serves on an already bound listener until `shutdown` resolves, then drains for up to `drain_timeout`
/// (`interrupt` cuts the drain short). For embedding and tests; [`serve`] adds the signals.
pub async fn serve_on(
    live: Arc<Live>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
    interrupt: impl Future<Output = ()>,
    drain_timeout: Duration,
    workers: usize,
) -> anyhow::Result<()> {
    let router = app(AppState { live: live.clone() });
    listen::serve(live, router, listener, shutdown, interrupt, drain_timeout, workers).await
}

fn spawn_reload_on_hangup(live: &Arc<Live>) {
    #[cfg(unix)]
    {
        let live = Arc::downgrade(live);
        tokio::spawn(async move {
            let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
                tracing::warn!("cannot listen for SIGHUP; reload with POST /config/reload instead");
                return;
            };
            while hup.recv().await.is_some() {
                let Some(live) = live.upgrade() else { return };
                let _ = live.reload("SIGHUP").await;
            }
        });
    }
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
}

/// Reads the body within the configured limit.
async fn read_body(state: &AppState, request: Request) -> Result<bytes::Bytes, Error> {
    let limit = state.executor().config.general.max_request_body_bytes;
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
    let executor = state.executor();
    let keepalive = executor.config.router.stream_keepalive;
    if head.stream && !keepalive.is_zero() {
        drop(head);
        return crate::executor::execute_with_keepalive(executor, op, body, keepalive).await;
    }
    executor.execute(op, &body, &head).await
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

/// 503 from the moment a shutdown begins, so load balancers stop sending; liveness stays 200 meanwhile.
async fn readiness(State(state): State<AppState>) -> Response {
    if state.live.is_draining() {
        return (http::StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "shutting_down"}))).into_response();
    }
    let executor = state.executor();
    let config = &executor.config;
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

/// `POST /config/reload`: re-reads and validates the config file; the running config stays on any error.
async fn reload(State(state): State<AppState>) -> Response {
    match state.live.reload("POST /config/reload").await {
        Ok(report) => Json(json!({
            "status": "reloaded",
            "deployments": report.deployments,
            "warnings": report.warnings,
        }))
        .into_response(),
        Err(errors) => Error::ConfigRejected(errors).into_response(),
    }
}

async fn not_found(request: Request<Body>) -> Response {
    Error::NotFound(format!("{} {} is not an llmux route", request.method(), request.uri().path())).into_response()
}

async fn method_not_allowed(request: Request<Body>) -> Response {
    Error::MethodNotAllowed(format!("method {} is not allowed on {}", request.method(), request.uri().path()))
        .into_response()
}
