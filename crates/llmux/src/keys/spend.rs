//! Spend: every finished request becomes a spend-log row and, with a virtual key, spend on that key. The
//! [`Recorder`] (an observe [`Sink`]) only queues; a task writes the queue every `proxy_batch_write_at` in one
//! transaction. While the database is away the rows wait (up to [`MAX_BUFFERED`]; beyond that the oldest rows
//! are dropped and counted, while the per-key totals, a number per key, are always kept), the outage is logged
//! once and shown in `/health/readiness`, and everything waiting is written when it is back.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::store::{SpendRow, Store};
use super::Keys;
use crate::config::GeneralSettings;
use crate::observe::{Finished, Sink};

/// Spend-log rows kept while the database is away.
pub const MAX_BUFFERED: usize = 100_000;
/// Rows per transaction.
const BATCH: usize = 2_000;

#[derive(Default)]
struct Queue {
    rows: VecDeque<SpendRow>,
    /// Spend not yet added to each key in the store, by token.
    unwritten: HashMap<String, f64>,
}

/// The queue, the writer's settings and the database's state.
pub struct Spend {
    queue: Mutex<Queue>,
    wake: tokio::sync::Notify,
    logs: bool,
    every: Duration,
    retention: Option<Duration>,
    /// When the database stopped answering (ms), 0 while it answers.
    down_since: AtomicU64,
    /// When it last answered (ms): a failure of an operation begun before that is old news.
    answered_at: AtomicU64,
    dropped: AtomicU64,
}

impl Spend {
    pub fn new(general: &GeneralSettings) -> Arc<Spend> {
        Arc::new(Spend {
            queue: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            logs: !general.disable_spend_logs,
            every: general.spend_batch_every,
            retention: general.spend_logs_retention,
            down_since: AtomicU64::new(0),
            answered_at: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spend of `token` this replica has counted but not yet written.
    pub fn unwritten(&self, token: &str) -> f64 {
        self.queue().unwritten.get(token).copied().unwrap_or(0.0)
    }

    pub fn all_unwritten(&self) -> Vec<(String, f64)> {
        self.queue().unwritten.iter().map(|(t, a)| (t.clone(), *a)).collect()
    }

    fn push(&self, row: Option<SpendRow>, key: Option<(&str, f64)>) {
        let mut queue = self.queue();
        if let Some((token, amount)) = key.filter(|(_, a)| *a != 0.0) {
            *queue.unwritten.entry(token.to_owned()).or_default() += amount;
        }
        if let Some(row) = row {
            if queue.rows.len() >= MAX_BUFFERED {
                queue.rows.pop_front();
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::error!(
                        "spend-log buffer full ({MAX_BUFFERED} rows) while the database is away; dropping the oldest rows (key spend is still kept)"
                    );
                }
            }
            queue.rows.push_back(row);
            if queue.rows.len() >= BATCH {
                self.wake.notify_one();
            }
        }
    }

    pub fn database_up(&self) {
        let now = u64::try_from(super::now_ms()).unwrap_or(0);
        self.answered_at.fetch_max(now, Ordering::Relaxed);
        let since = self.down_since.swap(0, Ordering::Relaxed);
        if since != 0 {
            tracing::info!("the key store answers again; writing the spend kept meanwhile");
            self.wake.notify_one();
        }
    }

    /// An operation begun at `began` (ms) failed. Two tasks use the database (the writer and the key refresh):
    /// one that waited out the outage may fail just after the other found it back, which is not a new outage.
    pub fn database_down(&self, error: &sqlx::Error, began: i64) {
        if self.answered_at.load(Ordering::Relaxed) >= u64::try_from(began).unwrap_or(0) {
            return;
        }
        let now = u64::try_from(super::now_ms()).unwrap_or(1).max(1);
        if self.down_since.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            tracing::error!(
                "the key store does not answer ({}); known keys keep working from memory and spend is kept until it is back",
                crate::redact::redact(&error.to_string())
            );
        }
    }

    /// The database's state for `/health/readiness`.
    pub fn readiness(&self, kind: &str) -> serde_json::Value {
        let since = self.down_since.load(Ordering::Relaxed);
        let buffered = self.queue().rows.len();
        serde_json::json!({
            "db": if since == 0 { "connected" } else { "unreachable" },
            "db_kind": kind,
            "db_unreachable_since": (since != 0).then(|| super::iso_time(i64::try_from(since).unwrap_or(0))),
            "spend_logs_buffered": buffered,
            "spend_logs_dropped": self.dropped.load(Ordering::Relaxed),
        })
    }

    /// Writes what is queued, a batch at a time; false when the database failed.
    pub async fn write(&self, store: &Store) -> bool {
        loop {
            let (rows, deltas): (Vec<SpendRow>, Vec<(String, f64)>) = {
                let queue = self.queue();
                (
                    queue.rows.iter().take(BATCH).cloned().collect(),
                    queue.unwritten.iter().map(|(t, a)| (t.clone(), *a)).collect(),
                )
            };
            if rows.is_empty() && deltas.is_empty() {
                return true;
            }
            let began = super::now_ms();
            if let Err(e) = store.write_spend(&rows, &deltas, began).await {
                self.database_down(&e, began);
                return false;
            }
            self.database_up();
            let mut queue = self.queue();
            // Only the writer removes rows, so the first `rows.len()` are the ones written.
            let n = rows.len().min(queue.rows.len());
            queue.rows.drain(..n);
            for (token, amount) in deltas {
                if let Some(left) = queue.unwritten.get_mut(&token) {
                    *left -= amount;
                    if left.abs() < 1e-12 {
                        queue.unwritten.remove(&token);
                    }
                }
            }
            drop(queue);
            if n < BATCH {
                return true;
            }
        }
    }

    /// Deletes rows past `maximum_spend_logs_retention_period`.
    pub async fn apply_retention(&self, store: &Store) {
        let Some(keep) = self.retention else { return };
        let cutoff = super::now_ms() - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX / 2);
        match store.delete_spend_before(cutoff).await {
            Ok(0) | Err(_) => {}
            Ok(n) => tracing::info!(rows = n, "spend-log rows past maximum_spend_logs_retention_period deleted"),
        }
    }
}

/// Starts the writer; it ends with `keys` ([`Keys::flush`] writes what is left at shutdown).
pub fn spawn_writer(keys: &Arc<Keys>) {
    let spend = keys.spend.clone();
    let keys = Arc::downgrade(keys);
    tokio::spawn(async move {
        loop {
            let _ = tokio::time::timeout(spend.every, spend.wake.notified()).await;
            let Some(keys) = Weak::upgrade(&keys) else { return };
            keys.spend.write(&keys.store).await;
        }
    });
}

/// The observe sink: a row and the key's spend per finished request.
pub struct Recorder {
    pub(super) keys: Weak<Keys>,
}

impl Sink for Recorder {
    fn finished(&self, record: &Arc<Finished>) {
        let Some(keys) = self.keys.upgrade() else { return };
        let key = record.caller.key_id.as_deref().and_then(|t| keys.cache.by_token(t));
        let tokens = record.tokens_in.saturating_add(record.tokens_out);
        if let Some(key) = &key {
            key.add_spend(record.cost_usd);
            if key.settings.tpm_limit.is_some() || !key.settings.model_tpm_limit.is_empty() {
                keys.usage.add_tokens(key, &record.requested, tokens);
            }
        }
        let row = keys.spend.logs.then(|| row_of(record));
        keys.spend.push(row, key.as_ref().map(|k| (k.token.as_str(), record.cost_usd)));
    }
}

fn row_of(r: &Finished) -> SpendRow {
    let start = i64::try_from(r.started_unix_ms).unwrap_or(0);
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    SpendRow {
        request_id: r.id.0.clone(),
        api_key: r.caller.key_id.clone(),
        key_alias: r.caller.key_alias.clone(),
        user_id: r.caller.user_id.clone(),
        team_id: r.caller.team_id.clone(),
        model: r.requested.clone(),
        model_group: r.group.clone(),
        deployment: r.attempts.last().filter(|a| a.error.is_none()).map(|a| a.label.clone()),
        api_base: r.host.clone(),
        protocol: r.protocol.as_str().to_owned(),
        call_type: r.operation.to_owned(),
        status: i64::from(r.status),
        prompt_tokens: clamp(r.tokens_in),
        completion_tokens: clamp(r.tokens_out),
        total_tokens: clamp(r.tokens_in.saturating_add(r.tokens_out)),
        tokens_estimated: r.tokens_estimated,
        spend: r.cost_usd,
        start_time: start,
        end_time: start.saturating_add(clamp(r.duration_ms)),
        ttfb_ms: r.ttfb_ms.map(clamp),
        day: super::day_of(start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{Caller, ClientProtocol, RequestId, Trace};

    /// A record as the hub would hand it over (built through a trace, so new fields need no change here).
    fn record() -> Finished {
        let trace = Trace::start(Arc::default(), RequestId("req-1".into()), ClientProtocol::Anthropic, "chat");
        let mut record = None;
        trace.update(|d| record = Some(d.record.clone()));
        let mut r = record.expect("a draft");
        r.started_unix_ms = 1_796_256_000_000;
        r.caller = Caller { key_id: Some("ab".repeat(32)), key_alias: Some("ha".into()), ..Default::default() };
        r.requested = "fast".into();
        r.group = Some("qwen".into());
        r.host = Some("http://box:11434".into());
        (r.status, r.duration_ms, r.tokens_in, r.tokens_out, r.cost_usd) = (200, 10, 7, 5, 0.25);
        r
    }

    fn spend() -> Arc<Spend> {
        let config = crate::config::load_str("model_list: []\n", &|_| None).map(|(c, _)| c).expect("config");
        Spend::new(&config.general)
    }

    #[test]
    fn a_finished_request_becomes_its_row() {
        let row = row_of(&record());
        assert_eq!(row.api_key.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!((row.model.as_str(), row.model_group.as_deref()), ("fast", Some("qwen")));
        assert_eq!((row.prompt_tokens, row.completion_tokens, row.total_tokens), (7, 5, 12));
        assert_eq!(
            (row.start_time, row.end_time, row.day.as_str()),
            (1_796_256_000_000, 1_796_256_000_010, "2026-12-03")
        );
        assert_eq!((row.protocol.as_str(), row.spend, row.status), ("anthropic", 0.25, 200));
    }

    #[test]
    fn a_failure_that_began_before_the_database_answered_is_not_a_new_outage() {
        let spend = spend();
        let before = crate::keys::now_ms() - 1_000;
        spend.database_down(&sqlx::Error::PoolTimedOut, before);
        assert_eq!(spend.readiness("postgresql")["db"], "unreachable");
        spend.database_up();
        // The other task's operation, stuck since before the database came back, times out now.
        spend.database_down(&sqlx::Error::PoolTimedOut, before + 10);
        assert_eq!(spend.readiness("postgresql")["db"], "connected");
        spend.database_down(&sqlx::Error::PoolTimedOut, crate::keys::now_ms() + 1);
        assert_eq!(spend.readiness("postgresql")["db"], "unreachable", "a failure begun afterwards is");
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_rows_but_never_key_spend() {
        let spend = spend();
        let row = row_of(&record());
        for n in 0..MAX_BUFFERED + 3 {
            let row = SpendRow { request_id: n.to_string(), ..row.clone() };
            spend.push(Some(row), Some(("k", 0.5)));
        }
        let queue = spend.queue();
        assert_eq!(queue.rows.len(), MAX_BUFFERED);
        assert_eq!(queue.rows.front().map(|r| r.request_id.as_str()), Some("3"));
        drop(queue);
        assert_eq!(spend.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(spend.unwritten("k"), 0.5 * (MAX_BUFFERED + 3) as f64);
        assert_eq!(spend.readiness("sqlite")["spend_logs_buffered"], MAX_BUFFERED);
    }
}
