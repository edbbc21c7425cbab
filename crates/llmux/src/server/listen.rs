//! Accepting connections, plain or TLS, and draining them on shutdown.
//!
//! One hyper connection per accepted socket, each watched by a graceful-shutdown handle: when the shutdown
//! future resolves the listener closes (new connections are refused), idle keep-alive connections close, and
//! requests in flight, streams included, run to completion for up to the drain timeout. What one connection
//! may cost (timeouts, a cap on open connections, head size) is kept by [`limits`].

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::limits;
use super::workers::Workers;
use super::Gateway;
use crate::config::ServerLimits;
use crate::lifecycle::Live;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// hyper's connection builder for `limits`.
///
/// HTTP/1.1: hyper reads a head into a buffer of at most `max_buf_size`; at twice the head limit a head between
/// the two gets llmux's JSON 431 (see [`limits::Tracked`]) and only a larger one hyper's own bodiless 431. A
/// held stream pays 16 KB of read buffer for any cap over hyper's smallest (8 KB, which also capped heads at
/// 8 KB). HTTP/2: at most `http2_max_streams` open streams per connection, the same header limit, and hyper's
/// bound on streams a client resets right after opening them (the "rapid reset" attack).
fn builder(limits: &ServerLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let buffer = limits.max_header_bytes.saturating_mul(2).max(8192);
    // No hyper header_read_timeout: its clock would also run between requests (see `limits`).
    builder.http1().max_buf_size(buffer);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_streams)
        .max_header_list_size(u32::try_from(buffer).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(1024));
    builder
}

/// Serves `gateway` on `listener` until `shutdown` resolves, then waits up to `drain_timeout` for in-flight
/// requests. A second signal (`interrupt`) during the drain ends it at once. Each accepted connection is served
/// by one of `workers` (see [`Workers`]), under the current config's `llmux_settings.server` limits.
pub async fn serve(
    live: Arc<Live>,
    gateway: Gateway,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    interrupt: impl Future<Output = ()>,
    drain_timeout: Duration,
    workers: usize,
) -> anyhow::Result<()> {
    let workers = Workers::start(workers).map_err(|e| anyhow::anyhow!("cannot start the connection workers: {e}"))?;
    let default_cap = limits::default_max_connections(limits::raise_fd_limit());
    let registry = limits::Registry::new();
    let mut current = live.executor().config.limits.clone();
    let mut built = builder(&current);
    let mut errors = limits::AcceptErrors::default();
    let mut refused = limits::AcceptErrors::default();
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: an idle connection gives one back, and the loop
                    // pauses (longer while it goes on) and logs once in a while instead of spinning.
                    registry.shed_oldest_idle();
                    let (pause, log) = errors.failed(Instant::now());
                    if let Some(unlogged) = log {
                        let more = if unlogged > 0 { format!(" ({unlogged} more since the last report)") } else { String::new() };
                        tracing::warn!("accept failed: {e}{more}; {} connections open", registry.len());
                    }
                    tokio::time::sleep(pause).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        errors.accepted();
        let config = live.executor().config.clone();
        if config.limits != current {
            current = config.limits.clone();
            built = builder(&current);
        }
        let cap = current.max_connections.unwrap_or(default_cap);
        let Some(registered) = registry.admit(cap) else {
            // Every open connection has a request in flight: closing this one is all that can be done.
            if let (_, Some(unlogged)) = refused.failed(Instant::now()) {
                tracing::warn!(
                    "refused a connection: {cap} open, each with a request in flight (llmux_settings.server.max_connections){}",
                    if unlogged > 0 { format!("; {unlogged} more refused since the last report") } else { String::new() }
                );
            }
            continue;
        };
        // A streamed token must leave at once, not wait for Nagle's algorithm to batch it.
        let _ = tcp.set_nodelay(true);
        let timeouts = limits::Timeouts { header: current.header_read_timeout, idle: current.idle_timeout };
        let service = limits::Tracked::new(gateway.clone(), registered.conn.clone(), current.max_header_bytes);
        let builder = built.clone();
        let watcher = graceful.watcher();
        // The socket moves to the worker's reactor: taken off this runtime's here, registered there.
        let Ok(tcp) = tcp.into_std() else { continue };
        let tls = live.tls().map(|tls| tls.acceptor());
        workers.run(Box::new(move || {
            Box::pin(async move {
                let Ok(tcp) = tokio::net::TcpStream::from_std(tcp) else { return };
                let conn = registered.conn.clone();
                match tls {
                    None => {
                        let io = TokioIo::new(limits::TrackedIo::new(tcp, conn.clone()));
                        let served = builder.serve_connection_with_upgrades(io, service).into_owned();
                        limits::supervise(watcher.watch(served), &conn, timeouts).await;
                    }
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                        let stream = tokio::select! {
                            done = handshake => match done {
                                Ok(Ok(stream)) => stream,
                                Ok(Err(e)) => {
                                    tracing::debug!("TLS handshake failed: {e}");
                                    return;
                                }
                                Err(_) => return,
                            },
                            () = limits::shed(&conn) => return,
                        };
                        let io = TokioIo::new(limits::TrackedIo::new(stream, conn.clone()));
                        let served = builder.serve_connection_with_upgrades(io, service).into_owned();
                        limits::supervise(watcher.watch(served), &conn, timeouts).await;
                    }
                }
                drop(registered);
            })
        }));
    }
    drop(listener);
    tracing::info!("listener closed; waiting up to {}s for requests in flight", drain_timeout.as_secs_f64());
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("drained: every request finished"),
        () = tokio::time::sleep(drain_timeout) => {
            tracing::warn!("drain timeout ({}s) reached; closing the remaining connections", drain_timeout.as_secs_f64());
        }
        () = interrupt => tracing::warn!("second signal: closing the remaining connections now"),
    }
    Ok(())
}
