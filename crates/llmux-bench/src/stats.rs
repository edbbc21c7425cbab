//! What one run measured: latency histograms and counters ([`Stats`]), the CPU used by the contender, its
//! upstreams, the generator and the rest of the machine over the measured window ([`Window`]), and the JSON
//! summary built from them ([`report`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::{procfs, Load, Req};

// Constant bounds that hdrhistogram accepts: these constructors cannot fail.
#[allow(clippy::expect_used)]
pub(crate) fn hist() -> Histogram<u64> {
    // Nanoseconds, 1 ns .. 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds")
}

pub(crate) fn us(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}

pub(crate) fn summary(h: &Histogram<u64>) -> Value {
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

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// Everything measured in one run.
pub(crate) struct Stats {
    /// Send → last body byte, ns.
    pub(crate) lat: Histogram<u64>,
    /// Intended send time → last body byte (coordinated-omission corrected), ns; open loop only.
    pub(crate) lat_co: Histogram<u64>,
    /// Send → first non-empty body chunk, ns.
    pub(crate) ttfc: Histogram<u64>,
    /// Between consecutive body chunks of one response, ns.
    pub(crate) gap: Histogram<u64>,
    /// Body chunks per response.
    pub(crate) frames: Histogram<u64>,
    pub(crate) completed: u64,
    pub(crate) errors: u64,
    /// Jobs never sent because the run's hard stop passed while they queued.
    pub(crate) dropped: u64,
    pub(crate) statuses: BTreeMap<u16, u64>,
    pub(crate) bytes: u64,
    pub(crate) last_error: Option<String>,
}

impl Stats {
    // `Histogram::new(3)`: a valid precision, so it cannot fail.
    #[allow(clippy::expect_used)]
    pub(crate) fn new() -> Self {
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

    pub(crate) fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        self.last_error = Some(e.to_string());
    }
}

/// The measured window: contender, upstream, generator and machine CPU at its start.
pub(crate) struct Window {
    pub(crate) start: Instant,
    pub(crate) tree: procfs::Sample,
    pub(crate) upstream: procfs::Sample,
    pub(crate) gen_cpu: f64,
    pub(crate) machine: f64,
}

/// CPU used during a window.
pub(crate) struct Closed {
    elapsed: f64,
    cpu_s: f64,
    end: procfs::Sample,
    gen_cpu_s: f64,
    upstream_cpu_s: f64,
    /// Everything else on the machine, in % of one core.
    other_cpu_pct: f64,
}

impl Window {
    pub(crate) fn open(req: &Req) -> Self {
        Self {
            tree: procfs::sample(&req.watch),
            upstream: procfs::sample(&req.upstream),
            gen_cpu: procfs::self_cpu_s(),
            machine: procfs::machine_busy_s().0,
            start: Instant::now(),
        }
    }

    pub(crate) fn close(&self, req: &Req) -> Closed {
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

pub(crate) fn report(mode: &str, req: &Req, load: &Load, stats: &Stats, w: &Window, extra: Value) -> Value {
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
