//! What one client connection may cost llmux: a time limit on a request head, on the idle time between
//! requests, a cap on open connections (the oldest idle ones make room for new ones), a limit on the size of a
//! request head, a back-off on accept errors, and the file-descriptor limit raised at start-up.
//!
//! Without these, anyone who can reach the port could hold connections open forever (a "slowloris" client
//! sending a header byte every few seconds, or thousands of idle keep-alive connections) until llmux runs out
//! of file descriptors and stops answering, `/health/liveliness` included.
//!
//! The timeouts are kept here rather than with hyper's `header_read_timeout`, because hyper's clock starts as
//! soon as it waits for a head, which on a kept-alive connection is the whole idle time between requests: the
//! two limits could not differ. Here a connection knows whether a request is open (the service wrapper
//! counts them) and when the first byte of the next head came (the IO wrapper notes it).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::Request;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::error::Error;

/// One open client connection, as the registry and its own task see it.
#[derive(Debug)]
pub struct Conn {
    /// Requests open on it (an HTTP/2 connection may have many).
    in_flight: AtomicUsize,
    /// When it last became idle (ms since the registry's epoch, at least 1).
    idle_since: AtomicU64,
    /// When the first byte of the next request head arrived while idle (ms since the epoch); 0: none yet.
    head_since: AtomicU64,
    /// Set when the registry chose it to make room: it closes as soon as it is idle.
    shed: AtomicBool,
    /// HTTP/2 (seen from its preface): bytes between requests are frames (pings, window updates), not a head.
    http2: AtomicBool,
    /// Wakes the connection's task: a head began, it went idle, or it was shed.
    wake: Notify,
    epoch: Instant,
}

impl Conn {
    fn new(epoch: Instant) -> Conn {
        let conn = Conn {
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            shed: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            wake: Notify::new(),
            epoch,
        };
        conn.idle_since.store(conn.now(), Ordering::Relaxed);
        conn
    }

    /// Milliseconds since the epoch, never 0 (0 means "not set").
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX).max(1)
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// A request began: until its answer is sent, no idle or head timeout applies.
    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Relaxed);
    }

    /// A request's answer was sent (or abandoned).
    fn end(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since.store(self.now(), Ordering::Relaxed);
            self.head_since.store(0, Ordering::Relaxed);
            self.wake.notify_one();
        }
    }

    /// Bytes arrived: on an idle HTTP/1 connection they begin a head, which must be complete in time.
    fn bytes_read(&self, first: &[u8]) {
        if first.starts_with(b"PRI * HTTP/2.0") {
            self.http2.store(true, Ordering::Relaxed);
        }
        if self.is_idle() && !self.http2.load(Ordering::Relaxed) && self.head_since.load(Ordering::Relaxed) == 0 {
            self.head_since.store(self.now(), Ordering::Relaxed);
            self.wake.notify_one();
        }
    }

    /// Why this connection must close now, if it must, or when to look again.
    fn check(&self, timeouts: Timeouts) -> Check {
        if !self.is_idle() {
            return Check::Busy;
        }
        if self.shed.load(Ordering::Acquire) {
            return Check::Close(Why::Shed);
        }
        check(self.now(), self.idle_since.load(Ordering::Relaxed), self.head_since.load(Ordering::Relaxed), timeouts)
    }
}

/// The two connection timeouts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    /// From the first byte of a request head to its end.
    pub header: Duration,
    /// Between requests.
    pub idle: Duration,
}

/// What an idle connection's task does next.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Check {
    /// A request is open: nothing applies until it ends (the connection's task is woken then).
    Busy,
    /// Close it.
    Close(Why),
    /// Look again after this long.
    Wait(Duration),
}

/// Why a connection was closed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Why {
    HeadTimeout,
    Idle,
    Shed,
}

/// The decision for an idle connection: `now`, when it became idle, when its next head began (0: not yet), all
/// in milliseconds of one clock.
fn check(now: u64, idle_since: u64, head_since: u64, t: Timeouts) -> Check {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let (since, limit, why) = if head_since != 0 {
        (head_since, ms(t.header), Why::HeadTimeout)
    } else {
        (idle_since, ms(t.idle), Why::Idle)
    };
    let deadline = since.saturating_add(limit);
    if now >= deadline {
        Check::Close(why)
    } else {
        Check::Wait(Duration::from_millis(deadline - now))
    }
}

/// Every open client connection, oldest first.
pub struct Registry {
    conns: Mutex<BTreeMap<u64, Arc<Conn>>>,
    next: AtomicU64,
    epoch: Instant,
}

/// A connection's place in the [`Registry`]; dropping it (when the connection ends) frees the place.
pub struct Registered {
    registry: Arc<Registry>,
    id: u64,
    /// The connection's shared state.
    pub conn: Arc<Conn>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry { conns: Mutex::new(BTreeMap::new()), next: AtomicU64::new(0), epoch: Instant::now() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Makes room for a new connection under `cap` (closing the oldest idle ones) and registers it; `None`
    /// when every open connection is busy with a request, so the new one must be refused.
    pub fn admit(self: &Arc<Self>, cap: usize) -> Option<Registered> {
        let mut conns = self.lock();
        while conns.len() >= cap.max(1) {
            let victim = oldest_idle(conns.iter().map(|(&id, c)| (id, c.is_idle())))?;
            if let Some(conn) = conns.remove(&victim) {
                conn.shed.store(true, Ordering::Release);
                conn.wake.notify_one();
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(self.epoch));
        conns.insert(id, conn.clone());
        Some(Registered { registry: self.clone(), id, conn })
    }

    /// Closes the oldest idle connection (out of file descriptors: one is better spent on a new client).
    pub fn shed_oldest_idle(&self) -> bool {
        let mut conns = self.lock();
        let Some(victim) = oldest_idle(conns.iter().map(|(&id, c)| (id, c.is_idle()))) else { return false };
        if let Some(conn) = conns.remove(&victim) {
            conn.shed.store(true, Ordering::Release);
            conn.wake.notify_one();
        }
        true
    }
}

/// The first idle connection of `conns` (given oldest first): the one to close for a new one.
fn oldest_idle(mut conns: impl Iterator<Item = (u64, bool)>) -> Option<u64> {
    conns.find(|&(_, idle)| idle).map(|(id, _)| id)
}

/// Drives `connection` (a hyper connection future) until it ends, or until `conn` is idle past its timeouts
/// or shed, then drops it (no request is open then, so nothing is cut off).
pub async fn supervise<F: Future>(connection: F, conn: &Conn, timeouts: Timeouts) {
    tokio::pin!(connection);
    loop {
        let wait = match conn.check(timeouts) {
            Check::Close(why) => {
                tracing::debug!("closing a client connection: {why:?}");
                return;
            }
            Check::Busy => None,
            Check::Wait(d) => Some(d),
        };
        let sleep = async {
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut connection => return,
            () = conn.wake.notified() => {}
            () = sleep => {}
        }
    }
}

/// Waits until `conn` is shed (for a connection still in its TLS handshake).
pub async fn shed(conn: &Conn) {
    while !conn.shed.load(Ordering::Acquire) {
        conn.wake.notified().await;
    }
}

/// A client socket (or TLS stream) that tells its [`Conn`] when bytes arrive.
pub struct TrackedIo<T> {
    inner: T,
    conn: Arc<Conn>,
}

impl<T> TrackedIo<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, conn: Arc<Conn>) -> Self {
        TrackedIo { inner, conn }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.bytes_read(&buf.filled()[before..]);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The connection service wrapped: counts the requests open on the connection (until each answer's body has
/// been sent or dropped), and answers a head over the size limit with a JSON 431.
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    conn: Arc<Conn>,
    max_header_bytes: usize,
}

impl<S> Tracked<S> {
    /// Wraps `inner` for the connection `conn`.
    pub fn new(inner: S, conn: Arc<Conn>, max_header_bytes: usize) -> Self {
        Tracked { inner, conn, max_header_bytes }
    }
}

/// Keeps its connection counted busy while alive.
struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// An answer's body that keeps its connection counted busy until it is sent whole or dropped.
pub struct TrackedBody {
    inner: Body,
    _busy: Busy,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The size of a request head as HTTP/1.1 sends it: request line and header lines.
pub fn head_size<B>(request: &Request<B>) -> usize {
    let line = request.method().as_str().len() + request.uri().to_string().len() + 12;
    request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum::<usize>() + line
}

impl<S, B> hyper::service::Service<Request<B>> for Tracked<S>
where
    S: hyper::service::Service<Request<B>, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<B>) -> Self::Future {
        self.conn.begin();
        let busy = Busy(self.conn.clone());
        if head_size(&request) > self.max_header_bytes {
            let response = Error::HeadersTooLarge { limit: self.max_header_bytes }.into_response();
            return Box::pin(async move { Ok(response.map(|inner| TrackedBody { inner, _busy: busy })) });
        }
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = match future.await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok(response.map(|inner| TrackedBody { inner, _busy: busy }))
        })
    }
}

/// How long accept errors (out of file descriptors, mostly) are not logged again after one was.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// The first and the longest pause after an accept error.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Accept errors: how long to pause after each (doubling while they go on), and when to log one (once per
/// [`ACCEPT_LOG_INTERVAL`], with how many were not logged).
#[derive(Debug, Default)]
pub struct AcceptErrors {
    pause: Option<Duration>,
    logged: Option<Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    /// An error at `now`: the pause before the next accept, and `Some(errors not logged since the last log)`
    /// when this one is to be logged.
    pub fn failed(&mut self, now: Instant) -> (Duration, Option<u64>) {
        let pause = self.pause.map_or(ACCEPT_BACKOFF.0, |p| (p * 2).min(ACCEPT_BACKOFF.1));
        self.pause = Some(pause);
        let log = self.logged.is_none_or(|at| now.duration_since(at) >= ACCEPT_LOG_INTERVAL);
        if log {
            self.logged = Some(now);
            let unlogged = std::mem::take(&mut self.unlogged);
            (pause, Some(unlogged))
        } else {
            self.unlogged += 1;
            (pause, None)
        }
    }

    /// A connection was accepted: the next error pauses briefly again.
    pub fn accepted(&mut self) {
        self.pause = None;
    }
}

/// File descriptors kept for everything but client connections (engine connections are counted apart: one
/// per client connection at most, hence the halving in [`default_max_connections`]).
const RESERVED_FDS: u64 = 256;
/// The default cap never goes beyond this: each connection costs memory too.
const MAX_DEFAULT_CONNECTIONS: u64 = 10_000;

/// The default cap on client connections for a file-descriptor limit `nofile`: each may need an engine
/// connection as well, and some descriptors are kept for files, DNS and health probes.
pub fn default_max_connections(nofile: u64) -> usize {
    let cap = nofile.saturating_sub(RESERVED_FDS) / 2;
    usize::try_from(cap.clamp(64, MAX_DEFAULT_CONNECTIONS)).unwrap_or(64)
}

/// Raises the soft limit on open files to the hard one (systemd and most shells start services at 1,024
/// while allowing far more) and returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    #[cfg(unix)]
    {
        let before = rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).unwrap_or(1024);
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(now) => {
                if now > before {
                    tracing::debug!("open-file limit raised from {before} to {now}");
                }
                now
            }
            Err(e) => {
                tracing::warn!("cannot raise the open-file limit above {before}: {e}");
                before
            }
        }
    }
    #[cfg(not(unix))]
    {
        8192
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts { header: Duration::from_secs(30), idle: Duration::from_secs(120) };

    #[test]
    fn an_idle_connection_closes_after_the_idle_timeout() {
        assert_eq!(check(1_000, 1_000, 0, T), Check::Wait(Duration::from_secs(120)));
        assert_eq!(check(100_000, 1_000, 0, T), Check::Wait(Duration::from_secs(21)));
        assert_eq!(check(121_000, 1_000, 0, T), Check::Close(Why::Idle));
    }

    #[test]
    fn a_started_head_has_the_header_timeout_from_its_first_byte() {
        // Idle for 100 s, then a head begins: 30 s from then, not what was left of the idle time.
        assert_eq!(check(101_000, 1_000, 101_000, T), Check::Wait(Duration::from_secs(30)));
        assert_eq!(check(131_000, 1_000, 101_000, T), Check::Close(Why::HeadTimeout));
        // A head begun early still gets only 30 s.
        assert_eq!(check(32_000, 1_000, 2_000, T), Check::Close(Why::HeadTimeout));
    }

    #[test]
    fn the_oldest_idle_connection_is_shed_first() {
        assert_eq!(oldest_idle([(1, false), (2, true), (3, true)].into_iter()), Some(2));
        assert_eq!(oldest_idle([(1, false), (2, false)].into_iter()), None);
    }

    #[test]
    fn the_registry_sheds_idle_connections_and_refuses_when_all_are_busy() {
        let registry = Registry::new();
        let a = registry.admit(2).unwrap();
        let b = registry.admit(2).unwrap();
        b.conn.begin();
        let c = registry.admit(2).unwrap();
        assert!(a.conn.shed.load(Ordering::Acquire), "the oldest idle one made room");
        assert!(!b.conn.shed.load(Ordering::Acquire));
        assert_eq!(registry.len(), 2);
        c.conn.begin();
        assert!(registry.admit(2).is_none(), "every connection busy: the new one is refused");
        drop(c);
        assert!(registry.admit(2).is_some());
    }

    #[test]
    fn a_connection_is_busy_until_its_last_answer_ends() {
        let conn = Conn::new(Instant::now());
        conn.begin();
        conn.begin();
        conn.end();
        assert_eq!(conn.check(T), Check::Busy);
        conn.end();
        assert!(matches!(conn.check(T), Check::Wait(_)));
    }

    #[test]
    fn http2_frames_between_requests_are_not_a_head() {
        let conn = Conn::new(Instant::now());
        conn.bytes_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert_eq!(conn.head_since.load(Ordering::Relaxed), 0);
        let h1 = Conn::new(Instant::now());
        h1.bytes_read(b"GET / HT");
        assert_ne!(h1.head_since.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn accept_errors_back_off_and_log_once_per_interval() {
        let mut errors = AcceptErrors::default();
        let t0 = Instant::now();
        assert_eq!(errors.failed(t0), (Duration::from_millis(10), Some(0)));
        assert_eq!(errors.failed(t0 + Duration::from_millis(10)), (Duration::from_millis(20), None));
        let mut pause = Duration::ZERO;
        for i in 0..20 {
            pause = errors.failed(t0 + Duration::from_millis(20 + i)).0;
        }
        assert_eq!(pause, Duration::from_secs(1));
        assert_eq!(errors.failed(t0 + Duration::from_secs(11)).1, Some(21));
        errors.accepted();
        assert_eq!(errors.failed(t0 + Duration::from_secs(12)).0, Duration::from_millis(10));
    }

    #[test]
    fn the_default_cap_leaves_descriptors_for_engines() {
        assert_eq!(default_max_connections(1024), 384);
        assert_eq!(default_max_connections(256), 64);
        assert_eq!(default_max_connections(1 << 20), 10_000);
    }
}
