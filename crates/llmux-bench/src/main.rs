//! `llmux-bench`: the load generator of the side-by-side benchmark (`bench/run`). Not part of the test suite.
//!
//! Modes (each prints one JSON object per line on stdout; `saturate --sample-every` and `hold` print progress
//! lines first, the summary line last):
//! - `rate`: open loop, a fixed request rate for a fixed time over C keep-alive connections; latency histogram.
//! - `saturate`: closed loop, C connections sending back to back; throughput.
//! - `stream`: open loop of streaming requests; time to first body chunk and the gaps between chunks.
//! - `hold`: opens N streams, holds them while sampling the contender's memory.
//! - `startup`: spawns a command and times spawn → first 200 from a URL.
//! - `replay`: sends a schedule of requests (JSON lines) each at its own time; time to first token and total
//!   time per request and per client (`bench/swap`).
//!
//! `--watch-pid PID` (repeatable) names the contender: the CPU time (utime+stime) and memory (VmRSS, VmHWM) of
//! that process and all its descendants are read at the start and end of the measured window.
//!
//! The generator runs on one thread (a current-thread runtime) so that it takes as little as possible of the
//! cores it shares with the contender; its own CPU time is reported as `gen_cpu_s`.

mod conn;
mod procfs;
mod replay;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::{Command, ExitCode, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::spawn_local;

use crate::conn::{connect, exchange, Conn, Target};

#[derive(Debug, Parser)]
#[command(name = "llmux-bench", version, about = "Load generator for bench/run (JSON lines on stdout)")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

/// What to send and whom to watch.
#[derive(Debug, Clone, Args)]
struct Req {
    /// Request URL (http:// only); repeat for a round-robin mix (all on one host:port).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// Request body (JSON text, or @FILE): one for all URLs, or one per --url. No body = GET.
    #[arg(long = "body")]
    bodies: Vec<String>,
    /// Extra header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Free text copied into the output.
    #[arg(long, default_value = "")]
    label: String,
    /// Root pid of the contender (repeatable); its process tree's CPU and memory are reported.
    #[arg(long = "watch-pid")]
    watch: Vec<u32>,
    /// Pid of an upstream (repeatable): its tree's CPU is reported as `upstream_cpu_s`, so that the CPU
    /// used by everything else on the machine (`other_cpu_pct`) can be told apart.
    #[arg(long = "upstream-pid")]
    upstream: Vec<u32>,
    /// Per-request time limit in seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
}

/// How long and how wide.
#[derive(Debug, Clone, Args)]
struct Load {
    /// Keep-alive connections (the most requests in flight at once).
    #[arg(long, short = 'c', default_value_t = 16)]
    connections: usize,
    /// Measured seconds.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds of the same load first (connections opened, caches warm).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Open loop at a fixed request rate; latency percentiles.
    Rate {
        #[command(flatten)]
        req: Req,
        #[command(flatten)]
        load: Load,
        /// Requests per second.
        #[arg(long)]
        rate: f64,
    },
    /// Closed loop: every connection sends its next request as soon as the previous answer is read.
    Saturate {
        #[command(flatten)]
        req: Req,
        #[command(flatten)]
        load: Load,
        /// Stop after this many measured requests instead of after --duration (the soak).
        #[arg(long)]
        requests: Option<u64>,
        /// Print a progress line with the watched tree's RSS every S seconds.
        #[arg(long)]
        sample_every: Option<f64>,
    },
    /// Open loop of streaming requests: time to first chunk, gaps between chunks.
    Stream {
        #[command(flatten)]
        req: Req,
        #[command(flatten)]
        load: Load,
        /// Streams started per second.
        #[arg(long)]
        rate: f64,
    },
    /// Opens N concurrent streams (one connection each), holds them, samples the contender's memory.
    Hold {
        #[command(flatten)]
        req: Req,
        /// Streams to open.
        #[arg(long, default_value_t = 5_000)]
        streams: usize,
        /// Streams opened per second.
        #[arg(long, default_value_t = 1_000.0)]
        ramp: f64,
        /// Seconds to hold them once all are open.
        #[arg(long, default_value_t = 10.0)]
        hold: f64,
        /// Seconds after the ramp to wait for the last stream's first chunk.
        #[arg(long, default_value_t = 30.0)]
        open_timeout: f64,
    },
    /// Prints the CPU seconds and memory of the watched process trees now.
    Mem {
        /// Root pid (repeatable).
        #[arg(long = "watch-pid", required = true)]
        watch: Vec<u32>,
    },
    /// Waits until the machine is quiet: busy CPU (all processes) below --threshold cores over 1 s.
    WaitQuiet {
        /// Cores' worth of CPU considered quiet.
        #[arg(long, default_value_t = 0.1)]
        threshold: f64,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60.0)]
        max_wait: f64,
    },
    /// Sends a schedule of requests (JSON lines of {"at", "client", "path", "body"}) each at its own time;
    /// time to first token and total time, per client.
    Replay {
        #[command(flatten)]
        args: replay::ReplayArgs,
    },
    /// Spawns a command and times spawn → first HTTP 200 from --url (polled every 0.5 ms), --runs times.
    Startup {
        /// URL to poll (http://host:port/path).
        #[arg(long)]
        url: String,
        /// Repetitions.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Seconds before a run counts as failed.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// The command and its arguments (after `--`).
        #[arg(trailing_var_arg = true, required = true)]
        cmd: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.mode {
        Mode::Startup { url, runs, timeout, cmd } => startup(&url, runs, timeout, &cmd),
        Mode::WaitQuiet { threshold, max_wait } => {
            let t0 = Instant::now();
            let mut busy;
            loop {
                let (b0, _) = procfs::machine_busy_s();
                std::thread::sleep(Duration::from_secs(1));
                busy = procfs::machine_busy_s().0 - b0;
                if busy <= threshold || t0.elapsed().as_secs_f64() >= max_wait {
                    break;
                }
            }
            emit(&json!({"mode": "wait-quiet", "waited_s": (t0.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                "busy_cores": (busy * 100.0).round() / 100.0, "quiet": busy <= threshold}));
            Ok(())
        }
        Mode::Mem { watch } => {
            let s = procfs::sample(&watch);
            emit(&json!({"mode": "mem", "rss_kb": s.rss_kb, "hwm_kb": s.hwm_kb, "procs": s.procs, "cpu_s": s.cpu_s()}));
            Ok(())
        }
        mode => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime")
            .and_then(|rt| tokio::task::LocalSet::new().block_on(&rt, run(mode))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("llmux-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mode: Mode) -> anyhow::Result<()> {
    let out = match mode {
        Mode::Rate { req, load, rate } => open_loop(&req, &load, rate, false).await?,
        Mode::Stream { req, load, rate } => open_loop(&req, &load, rate, true).await?,
        Mode::Saturate { req, load, requests, sample_every } => saturate(&req, &load, requests, sample_every).await?,
        Mode::Hold { req, streams, ramp, hold, open_timeout } => {
            hold_streams(&req, streams, ramp, hold, open_timeout).await?
        }
        Mode::Replay { args } => replay::replay(&args).await?,
        Mode::Startup { .. } | Mode::Mem { .. } | Mode::WaitQuiet { .. } => {
            unreachable!("handled without a runtime")
        }
    };
    emit(&out);
    Ok(())
}

fn emit(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

// Constant bounds that hdrhistogram accepts: these constructors cannot fail.
#[allow(clippy::expect_used)]
fn hist() -> Histogram<u64> {
    // Nanoseconds, 1 ns .. 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds")
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}

fn summary(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    json!({
        "p50": us(h.value_at_quantile(0.50)),
        "p90": us(h.value_at_quantile(0.90)),
        "p99": us(h.value_at_quantile(0.99)),
        "p999": us(h.value_at_quantile(0.999)),
        "max": us(h.max()),
        "mean": (h.mean() / 100.0).round() / 10.0,
    })
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// Everything measured in one run.
struct Stats {
    /// Send → last body byte, ns.
    lat: Histogram<u64>,
    /// Intended send time → last body byte (coordinated-omission corrected), ns; open loop only.
    lat_co: Histogram<u64>,
    /// Send → first non-empty body chunk, ns.
    ttfc: Histogram<u64>,
    /// Between consecutive body chunks of one response, ns.
    gap: Histogram<u64>,
    /// Body chunks per response.
    frames: Histogram<u64>,
    completed: u64,
    errors: u64,
    /// Jobs never sent because the run's hard stop passed while they queued.
    dropped: u64,
    statuses: BTreeMap<u16, u64>,
    bytes: u64,
    last_error: Option<String>,
}

impl Stats {
    // `Histogram::new(3)`: a valid precision, so it cannot fail.
    #[allow(clippy::expect_used)]
    fn new() -> Self {
        Self {
            lat: hist(),
            lat_co: hist(),
            ttfc: hist(),
            gap: hist(),
            frames: Histogram::new(3).expect("valid histogram"),
            completed: 0,
            errors: 0,
            dropped: 0,
            statuses: BTreeMap::new(),
            bytes: 0,
            last_error: None,
        }
    }

    fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        self.last_error = Some(e.to_string());
    }
}

/// The measured window: contender, upstream, generator and machine CPU at its start.
struct Window {
    start: Instant,
    tree: procfs::Sample,
    upstream: procfs::Sample,
    gen_cpu: f64,
    machine: f64,
}

/// CPU used during a window.
struct Closed {
    elapsed: f64,
    cpu_s: f64,
    end: procfs::Sample,
    gen_cpu_s: f64,
    upstream_cpu_s: f64,
    /// Everything else on the machine, in % of one core.
    other_cpu_pct: f64,
}

impl Window {
    fn open(req: &Req) -> Self {
        Self {
            tree: procfs::sample(&req.watch),
            upstream: procfs::sample(&req.upstream),
            gen_cpu: procfs::self_cpu_s(),
            machine: procfs::machine_busy_s().0,
            start: Instant::now(),
        }
    }

    fn close(&self, req: &Req) -> Closed {
        let elapsed = self.start.elapsed().as_secs_f64();
        let end = procfs::sample(&req.watch);
        let cpu_s = end.cpu_s() - self.tree.cpu_s();
        let upstream_cpu_s = procfs::sample(&req.upstream).cpu_s() - self.upstream.cpu_s();
        let gen_cpu_s = procfs::self_cpu_s() - self.gen_cpu;
        let machine = procfs::machine_busy_s().0 - self.machine;
        let other = (machine - cpu_s - upstream_cpu_s - gen_cpu_s).max(0.0);
        Closed { elapsed, cpu_s, end, gen_cpu_s, upstream_cpu_s, other_cpu_pct: other / elapsed.max(1e-9) * 100.0 }
    }
}

fn report(mode: &str, req: &Req, load: &Load, stats: &Stats, w: &Window, extra: Value) -> Value {
    let Closed { elapsed, cpu_s, end, gen_cpu_s, upstream_cpu_s, other_cpu_pct } = w.close(req);
    let mut v = json!({
        "mode": mode,
        "label": req.label,
        "connections": load.connections,
        "duration_s": (elapsed * 1000.0).round() / 1000.0,
        "completed": stats.completed,
        "errors": stats.errors,
        "dropped": stats.dropped,
        "statuses": stats.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "last_error": stats.last_error,
        "achieved_rps": if elapsed > 0.0 { (stats.completed as f64 / elapsed * 10.0).round() / 10.0 } else { 0.0 },
        "bytes": stats.bytes,
        "lat_us": summary(&stats.lat),
        "cpu_s": (cpu_s * 1000.0).round() / 1000.0,
        "cpu_ms_per_req": if stats.completed > 0 { cpu_s * 1000.0 / stats.completed as f64 } else { 0.0 },
        "rss_kb": end.rss_kb,
        "hwm_kb": end.hwm_kb,
        "procs": end.procs,
        "gen_cpu_s": (gen_cpu_s * 1000.0).round() / 1000.0,
        "upstream_cpu_s": (upstream_cpu_s * 1000.0).round() / 1000.0,
        "other_cpu_pct": other_cpu_pct.round(),
    });
    if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
        m.extend(e);
    }
    v
}

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
async fn open_loop(req: &Req, load: &Load, rate: f64, streaming: bool) -> anyhow::Result<Value> {
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
async fn saturate(req: &Req, load: &Load, requests: Option<u64>, sample_every: Option<f64>) -> anyhow::Result<Value> {
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

/// `hold`: N streams, one connection each, opened at `ramp` per second and held `hold` seconds.
async fn hold_streams(req: &Req, streams: usize, ramp: f64, hold: f64, open_timeout: f64) -> anyhow::Result<Value> {
    let target = Rc::new(Target::new(&req.urls, &req.bodies, &req.headers)?);
    let opened = Rc::new(Cell::new(0usize));
    let failed = Rc::new(Cell::new(0usize));
    let ended = Rc::new(Cell::new(0usize));
    let last_error: Rc<RefCell<Option<String>>> = Rc::default();
    let before = procfs::sample(&req.watch);
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(streams);
    for i in 0..streams {
        let due = t0 + Duration::from_secs_f64(i as f64 / ramp.max(1.0));
        let (target, opened, failed, ended, last_error) =
            (target.clone(), opened.clone(), failed.clone(), ended.clone(), last_error.clone());
        tasks.push(spawn_local(async move {
            tokio::time::sleep_until(due.into()).await;
            let mut conn = match connect(target.addr).await {
                Ok(c) => c,
                Err(e) => {
                    failed.set(failed.get() + 1);
                    *last_error.borrow_mut() = Some(format!("connect: {e}"));
                    return;
                }
            };
            let mut got_first = false;
            let res = exchange(&mut conn, target.request(i as u64), Duration::from_secs(86_400), |_, _| {
                if !got_first {
                    got_first = true;
                    opened.set(opened.get() + 1);
                }
            })
            .await;
            match res {
                Ok(o) if o.status == 200 && got_first => ended.set(ended.get() + 1),
                Ok(o) => {
                    failed.set(failed.get() + 1);
                    *last_error.borrow_mut() = Some(format!("HTTP {}", o.status));
                }
                Err(e) => {
                    if got_first {
                        ended.set(ended.get() + 1);
                    } else {
                        failed.set(failed.get() + 1);
                    }
                    *last_error.borrow_mut() = Some(e.to_string());
                }
            }
        }));
    }
    let give_up = t0 + Duration::from_secs_f64(streams as f64 / ramp.max(1.0) + open_timeout);
    while opened.get() + failed.get() < streams && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let open_s = t0.elapsed().as_secs_f64();
    emit(
        &json!({"event": "open", "label": req.label, "opened": opened.get(), "failed": failed.get(), "open_s": open_s}),
    );
    let hold_end = Instant::now() + Duration::from_secs_f64(hold);
    let mut peak = procfs::sample(&req.watch);
    while Instant::now() < hold_end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = procfs::sample(&req.watch);
        if s.rss_kb > peak.rss_kb {
            peak = s;
        }
    }
    let held = opened.get() - ended.get().min(opened.get());
    let at_end = procfs::sample(&req.watch);
    for t in &tasks {
        t.abort();
    }
    drop(tasks);
    // Let the connections close and the contender release what it held.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = procfs::sample(&req.watch);
    let err = last_error.borrow().clone();
    Ok(json!({
        "mode": "hold",
        "label": req.label,
        "streams": streams,
        "opened": opened.get(),
        "failed": failed.get(),
        "still_open_at_end": held,
        "open_s": (open_s * 100.0).round() / 100.0,
        "rss_kb_before": before.rss_kb,
        "rss_kb_open": peak.rss_kb.max(at_end.rss_kb),
        "rss_kb_after": after.rss_kb,
        "hwm_kb": after.hwm_kb,
        "procs": after.procs,
        "last_error": err,
    }))
}

/// Sends one `GET path` on a fresh connection and returns the status code.
fn probe(addr: SocketAddr, host: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_nodelay(true).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let r = s.read(&mut buf[n..]).ok()?;
        if r == 0 {
            break;
        }
        n += r;
    }
    std::str::from_utf8(&buf[..n]).ok()?.split(' ').nth(1)?.parse().ok()
}

/// `startup`: spawn → first 200, repeated.
fn startup(url: &str, runs: usize, timeout: f64, cmd: &[String]) -> anyhow::Result<()> {
    if runs == 0 || cmd.is_empty() {
        bail!("--runs must be positive and a command given");
    }
    let uri: http::Uri = url.parse()?;
    let auth = uri.authority().context("url without host")?;
    let addr = format!("{}:{}", auth.host(), auth.port_u16().unwrap_or(80))
        .to_socket_addrs()?
        .next()
        .context("url host does not resolve")?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    if probe(addr, auth.as_str(), path).is_some() {
        bail!("something already answers on {addr}");
    }
    let mut times = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let mut child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {}", cmd[0]))?;
        let result = loop {
            if probe(addr, auth.as_str(), path) == Some(200) {
                break Ok(t0.elapsed());
            }
            if let Some(status) = child.try_wait()? {
                break Err(anyhow::anyhow!("{} exited ({status}) before answering", cmd[0]));
            }
            if t0.elapsed().as_secs_f64() > timeout {
                break Err(anyhow::anyhow!("no 200 from {url} within {timeout} s"));
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        let _ = child.kill();
        let _ = child.wait();
        times.push(result?.as_secs_f64() * 1000.0);
        // Wait until the port is free again.
        let free_by = Instant::now() + Duration::from_secs(5);
        while probe(addr, auth.as_str(), path).is_some() && Instant::now() < free_by {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let r = |x: f64| (x * 100.0).round() / 100.0;
    emit(&json!({
        "mode": "startup",
        "runs": runs,
        "min_ms": r(sorted[0]),
        "median_ms": r(sorted[sorted.len() / 2]),
        "max_ms": r(sorted[sorted.len() - 1]),
        "all_ms": times.iter().map(|t| r(*t)).collect::<Vec<_>>(),
    }));
    Ok(())
}
