//! Connection workers: one single-threaded runtime per core, each serving the connections handed to it from
//! accept to close, with its own pool of engine connections.
//!
//! On one shared multi-threaded runtime, a request and the engine connection it uses often sit on different
//! threads, and every hand-over between them is a cross-thread wake-up (a futex call and a context switch);
//! measured here, that was about an eighth of llmux's CPU per request. Keeping a client connection, its
//! request and its engine connection on one thread removes those, while one worker per core still uses every
//! core. Background work (health checks, reloads, Redis) stays on the main runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

/// Work for a worker: builds the future to run there (a connection's whole life), on the worker's thread, so
/// its sockets register with that worker's reactor.
pub type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// The running workers; dropping this lets them finish (their connections are then closed).
pub struct Workers {
    senders: Vec<mpsc::UnboundedSender<Job>>,
    next: AtomicUsize,
}

impl Workers {
    /// Starts `n` workers (at least one), each a thread with its own single-threaded runtime and engine client.
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let mut senders = Vec::with_capacity(n.max(1));
        for i in 0..n.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
            std::thread::Builder::new().name(format!("llmux-worker-{i}")).spawn(move || {
                crate::upstream::use_local_client();
                runtime.block_on(async move {
                    while let Some(job) = rx.recv().await {
                        tokio::spawn(job());
                    }
                });
            })?;
            senders.push(tx);
        }
        Ok(Workers { senders, next: AtomicUsize::new(0) })
    }

    /// Runs `job` on the next worker in turn; on the current runtime if no worker is left.
    pub fn run(&self, job: Job) {
        let at = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        if let Err(mpsc::error::SendError(job)) = self.senders[at].send(job) {
            tokio::spawn(job());
        }
    }
}

/// Workers to start when not told: one per core.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(1)
}
