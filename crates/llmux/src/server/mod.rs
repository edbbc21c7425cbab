//! The HTTP server: OpenAI-compatible routes, LiteLLM's model and health routes, auth, body limits.
//!
//! Handlers only decode the client's protocol and hand over to the [`Executor`]; every error is an
//! [`Error`] rendered in one place.

mod admit;
pub mod auth;
mod clock;
mod gateway;
mod health;
mod inbound;
mod limits;
mod listen;
mod models;
mod observed;
mod ollama;
mod responses;
pub mod tls;
mod ui;
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
use serde_json::json;

use crate::error::Error;
use crate::executor::Executor;
use crate::lifecycle::{Live, WatchRound};
pub use gateway::Gateway;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The current config and its lifecycle.
    pub live: Arc<Live>,
    /// Responses kept for `previous_response_id` and `GET /v1/responses/{id}` (they outlive reloads).
    pub responses: Arc<crate::protocol::responses::Store>,
}

impl AppState {
    /// The executor of the current config: a request keeps this one until it finishes, even across a reload.
    pub fn executor(&self) -> Arc<Executor> {
        self.live.executor()
    }
}

/// The route table for everything but the completion and embedding routes, which [`Gateway`] serves first.
pub fn app(state: AppState) -> Router {
    let client = Router::new()
        .route("/v1/models", get(models::list))
        .route("/models", get(models::list))
        .route("/model/info", get(models::info))
        .route("/v1/model/info", get(models::info))
        .route("/utils/complexity", post(utils::complexity))
        .route("/v1/responses/{id}", get(responses::get).delete(responses::delete))
        .route("/responses/{id}", get(responses::get).delete(responses::delete))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_client_key));
    // Admin routes: the master key only, never a virtual key.
    let admin = Router::new()
        .route("/health", get(health::health))
        .route("/health/hosts", get(health::hosts))
        .route("/config/reload", post(reload))
        .route("/llmux/clock", post(clock::advance))
        .route("/llmux/health/round", post(health::round))
        .route("/llmux/config/check", post(check_config))
        .merge(crate::keys::api::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_key));
    let anthropic = Router::new()
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_key_anthropic));
    let ollama = ollama::routes().route_layer(middleware::from_fn_with_state(state.clone(), auth::require_key_ollama));
    Router::new()
        .merge(client)
        .merge(admin)
        .merge(ollama)
        .merge(anthropic)
        .route("/", get(ollama_root))
        .route("/health/liveliness", get(liveliness))
        .route("/health/liveness", get(liveliness))
        .route("/health/readiness", get(readiness))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone())
        .merge(ui::routes(state))
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
    // How many shutdown signals have come: the first drains, a second (during the grace or the drain) stops
    // waiting. Counted by one task listening from the start, so no signal is missed between the two phases.
    let signals = count_shutdown_signals();
    let mut first = signals.clone();
    let mut second = signals.clone();
    let mut hurried = signals;
    let shutdown = async move {
        let _ = first.wait_for(|n| *n >= 1).await;
        draining.start_draining();
        tracing::info!(
            "shutting down: readiness is 503 now; serving {}s more before the listener closes",
            drain.grace.as_secs_f64()
        );
        tokio::select! {
            () = tokio::time::sleep(drain.grace) => {}
            _ = second.wait_for(|n| *n >= 2) => {}
        }
    };
    let interrupt = async move {
        let _ = hurried.wait_for(|n| *n >= 2).await;
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
    let responses = Arc::new(crate::protocol::responses::Store::new());
    if let Some(redis) = live.redis() {
        let prefix = std::env::var("LLMUX_REDIS_PREFIX").unwrap_or_else(|_| "llmux".to_owned());
        crate::shared_responses::Replica::attach(&responses, redis, prefix);
    }
    let state = AppState { live: live.clone(), responses };
    let gateway = Gateway::new(state.clone(), app(state));
    listen::serve(live, gateway, listener, shutdown, interrupt, drain_timeout, workers).await
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

/// Counts SIGINT and SIGTERM (Ctrl-C elsewhere) from now on; the listeners are installed before this returns.
fn count_shutdown_signals() -> tokio::sync::watch::Receiver<u8> {
    let (count, counted) = tokio::sync::watch::channel(0u8);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        Some(()) = term.recv() => {}
                        Some(()) = int.recv() => {}
                        else => break,
                    }
                    count.send_modify(|n| *n = n.saturating_add(1));
                }
                std::future::pending::<()>().await;
            });
            return counted;
        }
        tracing::warn!("cannot listen for SIGTERM: only Ctrl-C stops llmux gracefully");
    }
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            count.send_modify(|n| *n = n.saturating_add(1));
        }
        // Nothing more can come: keep the count open so the server does not take this for a signal.
        std::future::pending::<()>().await;
    });
    counted
}

/// `GET /`: what Ollama answers there; Ollama's own CLI and some clients check it before anything else.
async fn ollama_root() -> &'static str {
    "Ollama is running"
}

async fn liveliness() -> Json<&'static str> {
    Json("I'm alive!")
}

/// 503 from the moment a shutdown begins, so load balancers stop sending; liveness stays 200 meanwhile.
/// Without the master key (when one is set) it says only its status: the version and the deployment count help
/// an attacker more than a load balancer.
async fn readiness(State(state): State<AppState>, headers: http::HeaderMap) -> Response {
    if state.live.is_draining() {
        return (http::StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "shutting_down"}))).into_response();
    }
    let executor = state.executor();
    let config = &executor.config;
    if auth::check(config, &headers).is_err() {
        return Json(json!({"status": "healthy"})).into_response();
    }
    let mut body = json!({
        "status": "healthy",
        "db": "Not connected",
        "cache": null,
        "litellm_version": null,
        "llmux_version": env!("CARGO_PKG_VERSION"),
        "deployments": config.deployments.len(),
    });
    if let (Some(_), Some(out)) = (state.live.redis(), body.as_object_mut()) {
        // Routing state shared through Redis; the reads count up while this replica takes in the others'.
        out.insert("cache".into(), json!("redis"));
        out.insert("shared_state_reads".into(), json!(executor.state.remote_reads()));
    }
    if let (true, Some(out)) = (state.live.keys_awaited(), body.as_object_mut()) {
        out.insert("db".into(), json!("unreachable"));
        out.insert("db_kind".into(), json!("postgresql"));
    }
    if let (Some(keys), Some(out)) = (state.live.keys(), body.as_object_mut()) {
        // The key store's state; readiness stays 200 while it is away (known keys keep working from memory).
        if let Some(details) = keys.readiness().as_object() {
            out.extend(details.clone());
        }
    }
    Json(body).into_response()
}

/// `GET /metrics`: Prometheus text, when the config asks for metrics (otherwise a 404, as LiteLLM without its
/// Prometheus callback); behind the master key with `require_auth_for_metrics_endpoint`.
async fn metrics(State(state): State<AppState>, headers: http::HeaderMap) -> Response {
    let executor = state.executor();
    let telemetry = executor.config.telemetry;
    if !telemetry.metrics {
        let hint =
            "GET /metrics is off: add prometheus to litellm_settings.callbacks, or set llmux_settings.metrics: true";
        return Error::NotFound(hint.into()).into_response();
    }
    if telemetry.metrics_require_auth {
        if let Err(e) = auth::check(&executor.config, &headers) {
            return e.into_response();
        }
    }
    match state.live.metrics().render(&executor) {
        Ok(text) => ([(http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => Error::Internal(format!("rendering the metrics failed: {e}")).into_response(),
    }
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

/// `POST /llmux/config/check` (master key): runs the config file watcher's round now and answers what it found:
/// `unchanged`, `unsettled` (still being written), `reloaded` (with the warnings) or a 400 with the errors when
/// the changed file was refused. 404 when no watcher runs (`--watch 0`).
async fn check_config(State(state): State<AppState>) -> Response {
    match state.live.check_files().await {
        None => Error::NotFound("POST /llmux/config/check: the config file is not watched (--watch 0)".into())
            .into_response(),
        Some(WatchRound::Unchanged) => Json(json!({"status": "unchanged"})).into_response(),
        Some(WatchRound::Unsettled) => Json(json!({"status": "unsettled"})).into_response(),
        Some(WatchRound::Reloaded(Ok(report))) => Json(json!({
            "status": "reloaded",
            "deployments": report.deployments,
            "warnings": report.warnings,
        }))
        .into_response(),
        Some(WatchRound::Reloaded(Err(errors))) => Error::ConfigRejected(errors).into_response(),
    }
}

/// `POST /v1/messages/count_tokens` (Anthropic): counted here, no engine called.
async fn count_tokens(body: axum::body::Bytes) -> Response {
    match crate::protocol::anthropic::count_tokens(&body) {
        Ok(out) => ([(http::header::CONTENT_TYPE, "application/json")], out).into_response(),
        Err(e) => e.response_in(crate::error::Dialect::Anthropic),
    }
}

async fn not_found(request: Request<Body>) -> Response {
    Error::NotFound(format!("{} {} is not an llmux route", request.method(), request.uri().path())).into_response()
}

async fn method_not_allowed(request: Request<Body>) -> Response {
    Error::MethodNotAllowed(format!("method {} is not allowed on {}", request.method(), request.uri().path()))
        .into_response()
}
