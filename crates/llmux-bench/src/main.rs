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
mod hold;
mod load;
mod procfs;
mod replay;
mod startup;
mod stats;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use crate::hold::hold_streams;
use crate::load::{open_loop, saturate};
use crate::startup::startup;

#[derive(Debug, Parser)]
#[command(name = "llmux-bench", version, about = "Load generator for bench/run (JSON lines on stdout)")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

/// What to send and whom to watch.
#[derive(Debug, Clone, Args)]
pub(crate) struct Req {
    /// Request URL (http:// only); repeat for a round-robin mix (all on one host:port).
    #[arg(long = "url", required = true)]
    pub(crate) urls: Vec<String>,
    /// Request body (JSON text, or @FILE): one for all URLs, or one per --url. No body = GET.
    #[arg(long = "body")]
    pub(crate) bodies: Vec<String>,
    /// Extra header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    pub(crate) headers: Vec<String>,
    /// Free text copied into the output.
    #[arg(long, default_value = "")]
    pub(crate) label: String,
    /// Root pid of the contender (repeatable); its process tree's CPU and memory are reported.
    #[arg(long = "watch-pid")]
    pub(crate) watch: Vec<u32>,
    /// Pid of an upstream (repeatable): its tree's CPU is reported as `upstream_cpu_s`, so that the CPU
    /// used by everything else on the machine (`other_cpu_pct`) can be told apart.
    #[arg(long = "upstream-pid")]
    pub(crate) upstream: Vec<u32>,
    /// Per-request time limit in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub(crate) timeout: f64,
}

/// How long and how wide.
#[derive(Debug, Clone, Args)]
pub(crate) struct Load {
    /// Keep-alive connections (the most requests in flight at once).
    #[arg(long, short = 'c', default_value_t = 16)]
    pub(crate) connections: usize,
    /// Measured seconds.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Unmeasured seconds of the same load first (connections opened, caches warm).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup: f64,
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

/// Prints one JSON line on stdout, flushed at once.
pub(crate) fn emit(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}
