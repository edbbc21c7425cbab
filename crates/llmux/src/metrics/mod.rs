//! `GET /metrics` in Prometheus' text format: LiteLLM's series under its names and labels (so Grafana boards
//! built for LiteLLM's Prometheus callback work), and llmux's own under `llmux_`.
//!
//! Served when the config asks for it (`litellm_settings.callbacks: ["prometheus"]`, or
//! `llmux_settings.metrics: true`). Counters and histograms are fed by finished requests (a [`Sink`] on the
//! hub, so they outlive reloads); gauges are read from the routing state at scrape time.

mod fleet;
mod requests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus_client::registry::Registry;

use crate::executor::Executor;
use crate::observe::{Finished, Sink};
use requests::RequestMetrics;

/// The `Content-Type` of what [`Metrics::render`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every metric llmux serves.
pub struct Metrics {
    /// The config asks for metrics: until it does, finished requests are not counted (nothing is paid).
    enabled: AtomicBool,
    registry: Registry,
    requests: RequestMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Metrics with nothing counted yet, off until [`Metrics::set_enabled`].
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = RequestMetrics::new(&mut registry);
        Metrics { enabled: AtomicBool::new(false), registry, requests }
    }

    /// Turns counting on or off (each config says whether it serves metrics).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Whether requests are counted.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// The metrics as Prometheus text: the counted series, then the gauges of `exec`'s state now.
    pub fn render(&self, exec: &Executor) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        let mut now = Registry::default();
        fleet::register(&mut now, exec);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &now)?;
        Ok(out)
    }
}

impl Sink for Metrics {
    fn finished(&self, record: &Arc<Finished>) {
        if self.enabled() {
            self.requests.record(record);
        }
    }
}
