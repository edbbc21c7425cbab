//! A fault-injecting mock inference engine for testing llmux.
//!
//! The mock speaks Ollama's native API (`/api/chat`, `/api/generate`,
//! `/api/embed`, `/api/tags`, `/api/ps`, `/api/show`, ...) and the
//! OpenAI-compatible API (`/v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`, `/v1/models`, shaped like llama.cpp's server, with its `/health`, `/slots` and
//! `/props`), Anthropic's Messages API (`/v1/messages`, its event stream and
//! errors), Google's Gemini API (`/v1beta/models/{model}:generateContent` and
//! its siblings) and Azure OpenAI's deployment routes, with deterministic answers, real
//! token-by-token streaming, and injectable faults (error statuses, hangs,
//! dropped or refused connections, malformed bodies). It records every
//! request so tests can check what llmux sent upstream.
//!
//! With [`MockConfig::residency`] set it also simulates model residency as
//! Ollama manages it: a memory budget, model sizes and load times, LRU
//! eviction, keep-alive, preload/unload, and an `/api/ps` that tells the
//! truth (see [`ResidencyConfig`]); loads and evictions are counted in
//! [`MockStats`].
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use llmux_mock::{Fault, MockConfig, MockServer};
//!
//! let mock = MockServer::start(
//!     MockConfig::new("clementine", &["llama3"]),
//!     "127.0.0.1:0".parse()?,
//! )
//! .await?;
//! // ... point llmux at mock.base_url() ...
//! mock.set_config(|c| {
//!     c.fault = Fault::status(503);
//!     c.fault_times = Some(1);
//! });
//! let seen = mock.requests();
//! mock.stop().await;
//! # let _ = seen;
//! # Ok(())
//! # }
//! ```
//!
//! The same knobs are reachable over HTTP for out-of-process use:
//! `GET`/`POST /mock/config`, `GET`/`DELETE /mock/requests`,
//! `GET /mock/stats` and `POST /mock/reset`.

#![warn(missing_docs)]

mod anthropic;
mod azure;
mod config;
mod control;
mod engine;
mod faults;
mod gemini;
mod kv;
mod lm_studio;
mod ollama;
mod openai;
mod record;
mod residency;
mod state;
mod stream;
mod util;
mod wol;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::{StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt as _;

pub use config::{MockConfig, ToolCallSpec, DEFAULT_FAULT_PATHS, DEFAULT_REPLY};
pub use faults::Fault;
pub use ollama::OLLAMA_VERSION;
pub use record::{MockStats, RecordedRequest};
pub use residency::{parse_size, KeepAlive, ResidencyConfig, ResidentModel};

use state::{lock, App, ConnControl, Shared};

/// How long a connection accepted while refusing may take to show its
/// request line, so `/mock/*` control requests can still get through.
const REFUSE_PEEK: Duration = Duration::from_millis(20);

/// Starts mock engines.
#[derive(Debug, Clone, Copy, Default)]
pub struct MockServer;

impl MockServer {
    /// Binds `addr` (port 0 = an ephemeral port) and serves until the
    /// returned handle is stopped or dropped.
    ///
    /// The socket is bound with `SO_REUSEADDR`, so a server can be started
    /// again on the address of one just stopped.
    pub async fn start(config: MockConfig, addr: SocketAddr) -> anyhow::Result<MockHandle> {
        let socket =
            if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.context("creating socket")?;
        socket.set_reuseaddr(true).context("setting SO_REUSEADDR")?;
        socket.bind(addr).with_context(|| format!("binding {addr}"))?;
        let listener = socket.listen(1024).with_context(|| format!("listening on {addr}"))?;
        let addr = listener.local_addr().context("reading bound address")?;

        let shared = Arc::new(Shared::new(config));
        let router = router(Arc::clone(&shared));
        let (stop_tx, stop_rx) = oneshot::channel();
        let app = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            let mut stop_rx = stop_rx;
            accept_loop(listener, router, app, &mut stop_rx, None).await;
        });
        Ok(MockHandle { addr, shared, stop_tx, task })
    }

    /// A host that sleeps until woken: binds `addr` but refuses every connection (the port does not listen)
    /// until a wake-on-LAN magic packet arrives on the UDP address `wake_on`, then starts answering `boot`
    /// later, as a suspended machine does. Packets are counted in [`MockStats::wake_packets`].
    pub async fn start_asleep(
        config: MockConfig,
        addr: SocketAddr,
        wake_on: SocketAddr,
        boot: Duration,
    ) -> anyhow::Result<MockHandle> {
        let socket =
            if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.context("creating socket")?;
        socket.set_reuseaddr(true).context("setting SO_REUSEADDR")?;
        socket.bind(addr).with_context(|| format!("binding {addr}"))?;
        let addr = socket.local_addr().context("reading bound address")?;
        let udp = tokio::net::UdpSocket::bind(wake_on).await.with_context(|| format!("binding {wake_on} (UDP)"))?;
        let shared = Arc::new(Shared::new(config));
        let router = router(Arc::clone(&shared));
        let (stop_tx, stop_rx) = oneshot::channel();
        shared.can_sleep.store(true, std::sync::atomic::Ordering::Relaxed);
        let task = tokio::spawn(wol::sleep_then_serve(addr, socket, udp, boot, router, Arc::clone(&shared), stop_rx));
        Ok(MockHandle { addr, shared, stop_tx, task })
    }
}

/// A running mock engine. Dropping the handle stops the server, like
/// [`MockHandle::stop`] but without waiting for it.
#[derive(Debug)]
pub struct MockHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop_tx: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl MockHandle {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to reach the server, e.g. `http://127.0.0.1:41234`
    /// (a wildcard bind address is replaced by loopback).
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Changes the knobs; requests arriving afterwards see the change.
    pub fn set_config(&self, f: impl FnOnce(&mut MockConfig)) {
        self.shared.update(f);
    }

    /// A snapshot of the current knobs.
    pub fn config(&self) -> MockConfig {
        self.shared.config()
    }

    /// Recorded requests, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Forgets recorded requests.
    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }

    /// A snapshot of the traffic counters.
    pub fn stats(&self) -> MockStats {
        self.shared.stats()
    }

    /// A mock started asleep ([`MockServer::start_asleep`]) suspends again, as `POST /mock/sleep` does;
    /// `false` for one that was not.
    pub fn sleep(&self) -> bool {
        let can = self.shared.can_sleep.load(std::sync::atomic::Ordering::Relaxed);
        if can {
            self.shared.sleep_now.notify_one();
        }
        can
    }

    /// The models loaded now (loading ones included), as `/api/ps` lists them, when the residency simulation
    /// ([`MockConfig::residency`]) is on; `None` when it is off.
    pub fn resident(&self) -> Option<Vec<ResidentModel>> {
        residency::resident(&self.shared)
    }

    /// Restores the start-up knobs and clears recorded requests and counters.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Stops listening and drops every open connection at once, as if the
    /// host went down: later connects are refused. Returns once the port is
    /// closed, so [`MockServer::start`] on the same address works right after.
    pub async fn stop(self) {
        let _ = self.stop_tx.send(());
        // The accept task only ends by being told to; a join error would be
        // a panic in it, and there is nothing left to clean up either way.
        let _ = self.task.await;
    }

    /// Stops the server and starts a fresh one on the same address with the
    /// current knobs (recorded requests and counters start empty).
    pub async fn restart(self) -> anyhow::Result<MockHandle> {
        let (config, addr) = (self.config(), self.addr);
        self.stop().await;
        MockServer::start(config, addr).await
    }
}

/// The routes: engine endpoints behind the recording/fault middleware, and
/// the control endpoints outside it.
fn router(app: App) -> Router {
    let engine = Router::new()
        .route("/", get(ollama::root))
        .route("/api/version", get(ollama::version))
        .route("/api/tags", get(ollama::tags))
        .route("/api/ps", get(ollama::ps))
        .route("/api/show", post(ollama::show))
        .route("/api/v1/models", get(lm_studio::models_v1))
        .route("/api/v0/models", get(lm_studio::models_v0))
        .route("/api/chat", post(ollama::chat))
        .route("/api/generate", post(ollama::generate))
        .route("/api/embed", post(ollama::embed))
        .route("/api/embeddings", post(ollama::embeddings))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1beta/models/{target}", post(gemini::models))
        .route("/openai/deployments/{deployment}/chat/completions", post(azure::chat))
        .route("/openai/deployments/{deployment}/embeddings", post(azure::embeddings))
        .route("/v1/models", get(openai::models))
        .route("/v1/models/{*model}", get(openai::model))
        .route("/health", get(openai::health))
        .route("/slots", get(openai::slots))
        .route("/props", get(openai::props))
        .fallback(not_found)
        .layer(from_fn_with_state(Arc::clone(&app), state::engine_middleware));
    let control = Router::new()
        .route("/mock/config", get(control::get_config).post(control::post_config))
        .route("/mock/requests", get(control::get_requests).delete(control::delete_requests))
        .route("/mock/stats", get(control::get_stats))
        .route("/mock/reset", post(control::reset))
        .route("/mock/sleep", post(control::sleep));
    engine.merge(control).with_state(app)
}

/// 404 for unknown paths, in the shape of the protocol the path belongs to.
async fn not_found(uri: Uri) -> Response {
    if uri.path().starts_with("/v1/") {
        // llama.cpp's answer, whatever the path.
        openai::error(StatusCode::NOT_FOUND, "File Not Found")
    } else {
        // What Ollama's router answers for unknown paths.
        (StatusCode::NOT_FOUND, "404 page not found").into_response()
    }
}

/// Accepts connections until told to stop (or, with `sleep`, to suspend: then `true`), then closes the
/// listener and aborts every connection task, which drops their sockets.
pub(crate) async fn accept_loop(
    listener: tokio::net::TcpListener,
    router: Router,
    app: App,
    stop_rx: &mut oneshot::Receiver<()>,
    sleep: Option<&tokio::sync::Notify>,
) -> bool {
    let mut connections = JoinSet::new();
    let slept = loop {
        tokio::select! {
            // Either an explicit stop or the handle being dropped.
            _ = &mut *stop_rx => break false,
            () = async { match sleep { Some(s) => s.notified().await, None => std::future::pending().await } } => {
                break true;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Reap finished tasks so the set does not grow forever.
                    while connections.try_join_next().is_some() {}
                    connections.spawn(serve_connection(stream, router.clone(), Arc::clone(&app)));
                }
                Err(err) => {
                    // Typically out of file descriptors; back off instead of spinning.
                    tracing::warn!("llmux-mock: accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    };
    drop(listener);
    connections.shutdown().await;
    slept
}

/// Serves one TCP connection (HTTP/1.1 or h2c), unless it is refused.
async fn serve_connection(stream: TcpStream, router: Router, app: App) {
    lock(&app.stats).connections += 1;
    if app.refusing() && !is_control_request(&stream).await && app.consume_refusal() {
        lock(&app.stats).refused += 1;
        return; // dropping the stream closes the connection unanswered
    }
    // Streamed tokens are small writes that must leave at once.
    let _ = stream.set_nodelay(true);
    let control = ConnControl::default();
    let per_request = control.clone();
    let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        req.extensions_mut().insert(per_request.clone());
        router.clone().oneshot(req)
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = conn => {
            if let Err(err) = result {
                tracing::debug!("llmux-mock: connection ended with error: {err}");
            }
        }
        // A fault asked to drop the connection without answering.
        () = control.killed() => {}
    }
}

/// Whether the connection's first bytes are a `/mock/*` request. Waits at
/// most [`REFUSE_PEEK`]; peeking leaves the bytes for the HTTP parser.
async fn is_control_request(stream: &TcpStream) -> bool {
    let mut head = [0u8; 16];
    match tokio::time::timeout(REFUSE_PEEK, stream.peek(&mut head)).await {
        Ok(Ok(n)) => head[..n].split(|b| *b == b' ').nth(1).is_some_and(|target| target.starts_with(b"/mock/")),
        _ => false,
    }
}
