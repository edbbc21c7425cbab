//! The two load shapes of `rate`, `stream` and `saturate`: an open loop (requests due at fixed intervals, taken
//! by the first free connection) and a closed loop (every connection sends its next request as soon as the
//! previous answer is read), both on keep-alive connections that a [`Worker`] reopens after errors.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::spawn_local;

use crate::conn::{connect, exchange, Conn, Target};
use crate::stats::{nanos, report, summary, Stats, Window};
use crate::{emit, procfs, Load, Req};

/// One unit of open-loop work.
struct Job {
    intended: Instant,
    idx: u64,
    measured: bool,
}

/// One connection's worth of load: its connection (reopened after errors) and where it records.
struct Worker {
    target: Rc<Target>,
    stats: Rc<RefCell<Stats>>,
    timeout: Duration,
    conn: Option<Conn>,
    gaps: Vec<u64>,
}

impl Worker {
    fn new(target: Rc<Target>, stats: Rc<RefCell<Stats>>, timeout: Duration) -> Self {
        Self { target, stats, timeout, conn: None, gaps: Vec::new() }
    }

    /// Sends request `idx` (opening a connection if needed) and records the outcome when `measured`.
    async fn request(&mut self, idx: u64, intended: Option<Instant>, measured: bool) {
        // A connection the server closed after its last answer (keep-alive limit or timeout) is replaced
        // without counting an error.
        if let Some(c) = self.conn.as_mut() {
            if c.ready().await.is_err() {
                self.conn = None;
            }
        }
        if self.conn.is_none() {
            match connect(self.target.addr).await {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    if measured {
                        self.stats.borrow_mut().error(format!("connect: {e}"));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    return;
                }
            }
        }
        let Some(c) = self.conn.as_mut() else { return };
        let gaps = &mut self.gaps;
        gaps.clear();
        let sent = Instant::now();
        let mut first = None;
        let mut prev = sent;
        let mut frames = 0u64;
        let res = exchange(c, self.target.request(idx), self.timeout, |at, _| {
            frames += 1;
            if first.is_none() {
                first = Some(at);
            } else {
                gaps.push(nanos(at - prev));
            }
            prev = at;
        })
        .await;
        if res.is_err() {
            self.conn = None;
        }
        if !measured {
            return;
        }
        let mut s = self.stats.borrow_mut();
        match res {
            Ok(o) => {
                *s.statuses.entry(o.status).or_default() += 1;
                if o.status != 200 {
                    s.error(format!("HTTP {}", o.status));
                    return;
                }
                s.completed += 1;
                s.bytes += o.bytes;
                let _ = s.lat.record(nanos(o.end - sent));
                if let Some(t) = intended {
                    let _ = s.lat_co.record(nanos(o.end.saturating_duration_since(t)));
                }
                if let Some(f) = first {
                    let _ = s.ttfc.record(nanos(f - sent));
                }
                let _ = s.frames.record(frames.max(1));
                for g in &self.gaps {
                    let _ = s.gap.record(*g);
                }
            }
            Err(e) => s.error(format!("{e:#}")),
        }
    }
}

/// `rate` and `stream`: jobs due at fixed intervals, taken by the first free connection.
pub(crate) async fn open_loop(req: &Req, load: &Load, rate: f64, streaming: bool) -> anyhow::Result<Value> {
    if rate <= 0.0 || load.connections == 0 {
        bail!("--rate and --connections must be positive");
    }
    let target = Rc::new(Target::new(&req.urls, &req.bodies, &req.headers)?);
    let stats = Rc::new(RefCell::new(Stats::new()));
    let timeout = Duration::from_secs_f64(req.timeout);
    let (tx, rx) = mpsc::unbounded_channel::<Job>();
    let rx = Rc::new(tokio::sync::Mutex::new(rx));
    let t0 = Instant::now() + Duration::from_millis(20);
    let measure_start = t0 + Duration::from_secs_f64(load.warmup);
    let end = measure_start + Duration::from_secs_f64(load.duration);
    // Jobs still queued this long after the last one was due are dropped, so an overloaded contender cannot
    // stretch the run without bound.
    let hard_stop = end + timeout.min(Duration::from_secs(10));
    let mut workers = Vec::new();
    for _ in 0..load.connections {
        let (target, stats, rx) = (target.clone(), stats.clone(), rx.clone());
        workers.push(spawn_local(async move {
            let mut worker = Worker::new(target, stats.clone(), timeout);
            loop {
                let job = { rx.lock().await.recv().await };
                let Some(job) = job else { break };
                if Instant::now() > hard_stop {
                    if job.measured {
                        stats.borrow_mut().dropped += 1;
                    }
                    continue;
                }
                worker.request(job.idx, Some(job.intended), job.measured).await;
            }
        }));
    }
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut window = None;
    let mut i: u64 = 0;
    loop {
        let due = t0 + interval.mul_f64(i as f64);
        if due >= end {
            break;
        }
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let measured = due >= measure_start;
        if measured && window.is_none() {
            window = Some(Window::open(req));
        }
        let _ = tx.send(Job { intended: due, idx: i, measured });
        i += 1;
    }
    drop(tx);
    for w in workers {
        let _ = w.await;
    }
    let window = window.context("the measured window is empty (rate too low for --duration?)")?;
    let s = stats.borrow();
    let mut extra = json!({ "target_rate": rate, "lat_co_us": summary(&s.lat_co) });
    if streaming {
        extra = json!({
            "target_rate": rate,
            "lat_co_us": summary(&s.lat_co),
            "ttfc_us": summary(&s.ttfc),
            "gap_us": summary(&s.gap),
            "frames_mean": (s.frames.mean() * 10.0).round() / 10.0,
        });
    }
    Ok(report(if streaming { "stream" } else { "rate" }, req, load, &s, &window, extra))
}

/// `saturate`: C connections, each sending back to back.
pub(crate) async fn saturate(
    req: &Req,
    load: &Load,
    requests: Option<u64>,
    sample_every: Option<f64>,
) -> anyhow::Result<Value> {
    if load.connections == 0 {
        bail!("--connections must be positive");
    }
    let target = Rc::new(Target::new(&req.urls, &req.bodies, &req.headers)?);
    let stats = Rc::new(RefCell::new(Stats::new()));
    let timeout = Duration::from_secs_f64(req.timeout);
    let t0 = Instant::now();
    let measure_start = t0 + Duration::from_secs_f64(load.warmup);
    let end = match requests {
        Some(_) => None,
        None => Some(measure_start + Duration::from_secs_f64(load.duration)),
    };
    let counter = Rc::new(Cell::new(0u64));
    let stop = Rc::new(Cell::new(false));
    let mut workers = Vec::new();
    for _ in 0..load.connections {
        let (target, stats, counter, stop) = (target.clone(), stats.clone(), counter.clone(), stop.clone());
        workers.push(spawn_local(async move {
            let mut worker = Worker::new(target, stats.clone(), timeout);
            loop {
                let now = Instant::now();
                if stop.get() || end.is_some_and(|e| now >= e) {
                    break;
                }
                let measured = now >= measure_start;
                let idx = counter.get();
                counter.set(idx + 1);
                worker.request(idx, None, measured).await;
                if let Some(n) = requests {
                    if stats.borrow().completed >= n {
                        stop.set(true);
                    }
                }
            }
        }));
    }
    tokio::time::sleep_until(measure_start.into()).await;
    let window = Window::open(req);
    let sampler = sample_every.map(|every| {
        let (stats, watch, label) = (stats.clone(), req.watch.clone(), req.label.clone());
        let start = window.start;
        spawn_local(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(every));
            loop {
                tick.tick().await;
                let s = procfs::sample(&watch);
                let (completed, errors) = {
                    let st = stats.borrow();
                    (st.completed, st.errors)
                };
                emit(&json!({
                    "event": "sample",
                    "label": label,
                    "t_s": (start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                    "completed": completed,
                    "errors": errors,
                    "rss_kb": s.rss_kb,
                    "hwm_kb": s.hwm_kb,
                    "cpu_s": s.cpu_s(),
                }));
            }
        })
    });
    for w in workers {
        let _ = w.await;
    }
    if let Some(s) = sampler {
        s.abort();
    }
    let s = stats.borrow();
    Ok(report("saturate", req, load, &s, &window, json!({})))
}
