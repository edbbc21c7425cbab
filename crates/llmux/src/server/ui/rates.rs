//! Request rate and time to first token per host over the last hour, for the dashboard's charts: a [`Sink`]
//! that counts each finished request into its host's minute. Bounded: 60 minutes, at most [`MAX_HOSTS`] hosts a
//! minute (more fall into one "other" row), and a fixed histogram per host and minute.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::observe::{Finished, Sink};

/// Minutes kept.
pub const WINDOW_MINUTES: u64 = 60;
/// Hosts counted separately in one minute; requests to further hosts count under [`OTHER`].
pub const MAX_HOSTS: usize = 64;
/// The row of the hosts past [`MAX_HOSTS`].
pub const OTHER: &str = "other";
/// The row of requests that reached no host (unknown model, every deployment cooling down).
pub const NO_HOST: &str = "no host";

/// Upper bounds of the time-to-first-token buckets, in ms: about 12% apart from 1 ms to 10 minutes, so a
/// percentile read from them is off by at most that much.
fn bucket_bounds() -> &'static [u64] {
    static BOUNDS: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();
    BOUNDS.get_or_init(|| {
        let mut bounds = vec![1u64];
        while let Some(&last) = bounds.last().filter(|&&b| b < 600_000) {
            bounds.push((last as f64 * 1.12).ceil().max(last as f64 + 1.0) as u64);
        }
        bounds
    })
}

/// Times to first token, counted into [`bucket_bounds`].
#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    counts: Vec<u32>,
}

impl Histogram {
    fn add(&mut self, ms: u64) {
        let bounds = bucket_bounds();
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len() + 1];
        }
        let i = bounds.partition_point(|&b| b < ms);
        self.counts[i] = self.counts[i].saturating_add(1);
    }

    fn merge(&mut self, other: &Histogram) {
        if self.counts.is_empty() {
            self.counts = other.counts.clone();
            return;
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a = a.saturating_add(*b);
        }
    }

    /// The `q` quantile (0..=1) in ms: the upper bound of the bucket it falls in. `None` when empty.
    fn quantile(&self, q: f64) -> Option<u64> {
        let total: u64 = self.counts.iter().map(|&c| u64::from(c)).sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let bounds = bucket_bounds();
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Some(bounds.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        None
    }
}

/// One host in one minute.
#[derive(Debug, Clone, Default)]
struct Cell {
    requests: u32,
    errors: u32,
    ttft: Histogram,
}

impl Cell {
    fn add(&mut self, record: &Finished) {
        self.requests = self.requests.saturating_add(1);
        if record.status >= 400 {
            self.errors = self.errors.saturating_add(1);
        }
        if let Some(ms) = record.ttfb_ms.filter(|_| record.status < 400) {
            self.ttft.add(ms);
        }
    }
}

/// The last hour, minute by minute (UTC minutes since the epoch), oldest first.
#[derive(Debug, Default)]
struct Window {
    minutes: VecDeque<(u64, BTreeMap<String, Cell>)>,
}

/// The row a request counts under: its host's `scheme://host:port`.
fn row(record: &Finished) -> String {
    match &record.host {
        Some(host) => crate::config::origin_of(host),
        None => NO_HOST.to_owned(),
    }
}

impl Window {
    fn add(&mut self, record: &Finished) {
        let minute = (record.started_unix_ms + record.duration_ms) / 60_000;
        let newest = self.minutes.back().map_or(minute, |(m, _)| *m);
        if minute + WINDOW_MINUTES <= newest {
            return;
        }
        let at = match self.minutes.iter().position(|(m, _)| *m >= minute) {
            Some(i) if self.minutes[i].0 == minute => i,
            Some(i) => {
                self.minutes.insert(i, (minute, BTreeMap::new()));
                i
            }
            None => {
                self.minutes.push_back((minute, BTreeMap::new()));
                self.minutes.len() - 1
            }
        };
        let cells = &mut self.minutes[at].1;
        let mut key = row(record);
        if !cells.contains_key(&key) && cells.len() >= MAX_HOSTS {
            key = OTHER.to_owned();
        }
        cells.entry(key).or_default().add(record);
        let newest = self.minutes.back().map_or(minute, |(m, _)| *m);
        while self.minutes.front().is_some_and(|(m, _)| m + WINDOW_MINUTES <= newest) {
            self.minutes.pop_front();
        }
    }

    /// Every host seen in the hour before `now_minute` (inclusive), with its minutes.
    fn report(&self, now_minute: u64) -> Report {
        let first = (now_minute + 1).saturating_sub(WINDOW_MINUTES);
        let mut hosts: BTreeMap<&str, (Vec<MinutePoint>, Cell)> = BTreeMap::new();
        for (minute, cells) in self.minutes.iter().filter(|(m, _)| (first..=now_minute).contains(m)) {
            for (host, cell) in cells {
                let (points, hour) = hosts.entry(host).or_default();
                points.push(MinutePoint {
                    minute: *minute,
                    requests: cell.requests,
                    errors: cell.errors,
                    ttft_p50_ms: cell.ttft.quantile(0.5),
                    ttft_p95_ms: cell.ttft.quantile(0.95),
                });
                hour.requests = hour.requests.saturating_add(cell.requests);
                hour.errors = hour.errors.saturating_add(cell.errors);
                hour.ttft.merge(&cell.ttft);
            }
        }
        Report {
            first_minute: first,
            last_minute: now_minute,
            hosts: hosts
                .into_iter()
                .map(|(host, (minutes, hour))| HostRates {
                    host: host.to_owned(),
                    requests: hour.requests,
                    errors: hour.errors,
                    ttft_p50_ms: hour.ttft.quantile(0.5),
                    ttft_p95_ms: hour.ttft.quantile(0.95),
                    ttft_p99_ms: hour.ttft.quantile(0.99),
                    minutes,
                })
                .collect(),
        }
    }
}

/// One host's minute, as the dashboard draws it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MinutePoint {
    /// UTC minutes since the Unix epoch.
    pub minute: u64,
    pub requests: u32,
    pub errors: u32,
    pub ttft_p50_ms: Option<u64>,
    pub ttft_p95_ms: Option<u64>,
}

/// One host over the hour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostRates {
    pub host: String,
    pub requests: u32,
    pub errors: u32,
    pub ttft_p50_ms: Option<u64>,
    pub ttft_p95_ms: Option<u64>,
    pub ttft_p99_ms: Option<u64>,
    /// The minutes with requests, oldest first.
    pub minutes: Vec<MinutePoint>,
}

/// The last hour per host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub first_minute: u64,
    pub last_minute: u64,
    pub hosts: Vec<HostRates>,
}

/// The sink: counts each finished request (a lock held for a few hundred nanoseconds).
#[derive(Debug, Default)]
pub struct Rates {
    window: Mutex<Window>,
}

impl Rates {
    /// The hour up to `now_unix_ms`.
    pub fn report(&self, now_unix_ms: u64) -> Report {
        let window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        window.report(now_unix_ms / 60_000)
    }
}

impl Sink for Rates {
    fn finished(&self, record: &Arc<Finished>) {
        self.window.lock().unwrap_or_else(|e| e.into_inner()).add(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{Caller, ClientProtocol, RequestId};

    fn request(at_ms: u64, host: Option<&str>, status: u16, ttfb_ms: u64) -> Arc<Finished> {
        Arc::new(Finished {
            id: RequestId("r".into()),
            started_unix_ms: at_ms,
            protocol: ClientProtocol::OpenAi,
            operation: "chat",
            caller: Caller::default(),
            requested: "coding".into(),
            group: Some("coding".into()),
            deployment: Some(0),
            host: host.map(str::to_owned),
            route: String::new(),
            attempts: Vec::new(),
            status,
            stream: true,
            ttfb_ms: Some(ttfb_ms),
            duration_ms: 0,
            queue_wait_ms: 0,
            tokens_in: 1,
            tokens_out: 1,
            tokens_estimated: false,
            cost_usd: 0.0,
            fallbacks: 0,
            retries: 0,
            complexity_tier: None,
            error: None,
        })
    }

    const MIN: u64 = 60_000;

    #[test]
    fn requests_count_per_host_and_minute_with_ttft_percentiles() {
        let rates = Rates::default();
        let t0 = 1_000 * MIN;
        for ms in 1..=100 {
            rates.finished(&request(t0 + ms, Some("http://Star:11434/v1"), 200, ms * 10));
        }
        rates.finished(&request(t0 + MIN, Some("http://star:11434"), 503, 5));
        rates.finished(&request(t0 + MIN, Some("http://banana:11434"), 200, 40));
        rates.finished(&request(t0 + MIN, None, 404, 1));
        let report = rates.report(t0 + MIN + 5);
        let hosts: Vec<&str> = report.hosts.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(hosts, ["http://banana:11434", "http://star:11434", NO_HOST]);
        let star = &report.hosts[1];
        assert_eq!((star.requests, star.errors), (101, 1));
        assert_eq!(star.minutes.iter().map(|m| (m.minute, m.requests)).collect::<Vec<_>>(), [(1000, 100), (1001, 1)]);
        // Percentiles of 10, 20, ..., 1000 ms (the failed request's is left out), within a bucket's 12%.
        let (p50, p99) = (star.ttft_p50_ms.unwrap_or(0), star.ttft_p99_ms.unwrap_or(0));
        assert!((500..=560).contains(&p50), "{p50}");
        assert!((990..=1110).contains(&p99), "{p99}");
        assert_eq!(star.minutes[1].ttft_p50_ms, None);
    }

    #[test]
    fn only_the_last_hour_is_kept_and_reported() {
        let rates = Rates::default();
        for minute in 0..200 {
            rates.finished(&request(minute * MIN, Some("http://a:1"), 200, 10));
        }
        let late = rates.window.lock().map(|w| w.minutes.len()).unwrap_or(0);
        assert_eq!(late, WINDOW_MINUTES as usize);
        // Something from two hours ago arriving late is not counted.
        rates.finished(&request(50 * MIN, Some("http://a:1"), 200, 10));
        let report = rates.report(199 * MIN);
        assert_eq!(report.hosts[0].requests, 60);
        assert_eq!(report.hosts[0].minutes.first().map(|m| m.minute), Some(140));
        // An hour without traffic reports nothing.
        assert!(rates.report(300 * MIN).hosts.is_empty());
    }

    #[test]
    fn hosts_past_the_cap_share_one_row() {
        let rates = Rates::default();
        for n in 0..(MAX_HOSTS + 10) {
            rates.finished(&request(0, Some(&format!("http://h{n}:1")), 200, 10));
        }
        let report = rates.report(0);
        assert_eq!(report.hosts.len(), MAX_HOSTS + 1);
        assert_eq!(report.hosts.iter().find(|h| h.host == OTHER).map(|h| h.requests), Some(10));
    }
}
