//! Virtual keys, LiteLLM's way: one `sk-…` key per app or person, with a model allow-list, rpm/tpm/parallel
//! limits, a budget, and spend counted from every request it makes.
//!
//! Keys live in a database through `sqlx` ([`store`]): an embedded SQLite file under `--data-dir` by default,
//! PostgreSQL when `general_settings.database_url` (or `DATABASE_URL`) is set, with the same migrations for
//! both. A key is shown once and stored as its sha256 (LiteLLM's `hash_token`). Requests never wait on the
//! database: [`cache`] holds every key in memory by hash, refreshed from the store every second (so replicas on
//! one PostgreSQL see each other's keys); [`limits`] decides, [`usage`] counts (through Redis when replicas
//! share one), [`spend`] writes spend in batches and keeps it while the database is away; [`api`] serves
//! `/key/*` and `/spend/*`.

pub mod api;
pub mod cache;
pub mod limits;
pub mod spend;
pub mod store;
pub mod usage;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Config, GeneralSettings, RedisSettings};
use crate::error::Error;
use crate::observe::Caller;

/// What a key may do, as `/key/generate` and `/key/update` set it (stored as JSON; new fields need no
/// migration).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub key_alias: Option<String>,
    /// Allowed models: names, aliases, wildcards, access groups; empty allows all.
    pub models: Vec<String>,
    /// Per-key model aliases: requested name → model called.
    pub aliases: BTreeMap<String, String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub max_budget: Option<f64>,
    /// Reported in `/key/info`; never refuses.
    pub soft_budget: Option<f64>,
    /// How often spend resets (`"30d"`).
    pub budget_duration: Option<String>,
    pub tpm_limit: Option<u64>,
    pub rpm_limit: Option<u64>,
    pub max_parallel_requests: Option<u64>,
    pub model_rpm_limit: BTreeMap<String, u64>,
    pub model_tpm_limit: BTreeMap<String, u64>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub blocked: bool,
    /// When the key stops working (ms since the epoch), from `duration`.
    pub expires_ms: Option<i64>,
    pub duration: Option<String>,
}

impl Settings {
    /// Whether a request with this key needs counting before it is admitted.
    fn limited(&self) -> bool {
        self.rpm_limit.is_some()
            || self.tpm_limit.is_some()
            || self.max_parallel_requests.is_some()
            || !self.model_rpm_limit.is_empty()
            || !self.model_tpm_limit.is_empty()
    }
}

/// One key as the cache holds it.
#[derive(Debug)]
pub struct Key {
    /// The sha256 of the key, hex (LiteLLM's `token`).
    pub token: String,
    digest: [u8; 32],
    /// `sk-...` and the last four characters, for people to tell keys apart.
    pub key_name: String,
    pub settings: Settings,
    pub created_at: i64,
    pub changed_at: i64,
    /// Spend as the store last said, plus what this replica has written since (f64 bits).
    spend: AtomicU64,
    /// When spend next resets (ms; 0: never).
    budget_reset_at: AtomicI64,
}

impl Key {
    fn new(row: store::KeyRow) -> Option<Key> {
        let digest = digest_of_token(&row.token)?;
        Some(Key {
            digest,
            key_name: row.key_name,
            settings: row.settings,
            created_at: row.created_at,
            changed_at: row.changed_at,
            spend: AtomicU64::new(row.spend.to_bits()),
            budget_reset_at: AtomicI64::new(row.budget_reset_at.unwrap_or(0)),
            token: row.token,
        })
    }

    /// Spend that counts now (zero once the budget window has passed).
    pub fn spend(&self, now_ms: i64) -> f64 {
        limits::current_spend(f64::from_bits(self.spend.load(Ordering::Relaxed)), self.budget_reset_at(), now_ms)
    }

    pub fn budget_reset_at(&self) -> Option<i64> {
        Some(self.budget_reset_at.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }

    fn add_spend(&self, amount: f64) {
        let _ = self
            .spend
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| Some((f64::from_bits(bits) + amount).to_bits()));
    }

    fn set_spend(&self, spend: f64, reset_at: Option<i64>) {
        self.spend.store(spend.to_bits(), Ordering::Relaxed);
        self.budget_reset_at.store(reset_at.unwrap_or(0), Ordering::Relaxed);
    }

    /// How the key is named in messages: its alias, else its abbreviation.
    pub fn name(&self) -> &str {
        self.settings.key_alias.as_deref().unwrap_or(&self.key_name)
    }

    /// Who sent a request with this key, for the request's record (never the key itself).
    pub fn caller(&self) -> Caller {
        Caller {
            key_id: Some(self.token.clone()),
            key_alias: self.settings.key_alias.clone(),
            user_id: self.settings.user_id.clone(),
            team_id: self.settings.team_id.clone(),
        }
    }
}

/// The store, the cache, the counters and the spend writer, for the lifetime of the process.
pub struct Keys {
    store: store::Store,
    cache: cache::Cache,
    usage: usage::Usage,
    spend: Arc<spend::Spend>,
}

/// The outcome of admitting a request: the model to call when the key's aliases renamed it, and the
/// parallel-request slot the answer holds until its last byte.
#[derive(Default)]
pub struct Admission {
    pub model: Option<String>,
    pub slot: Option<usage::Slot>,
}

impl Keys {
    /// Opens the store (creating the SQLite file under `data_dir` unless `database_url` names a PostgreSQL),
    /// runs the migrations, loads every key and starts the background tasks.
    pub async fn open(
        general: &GeneralSettings,
        data_dir: &Path,
        redis: Option<&RedisSettings>,
    ) -> anyhow::Result<Arc<Keys>> {
        let store = store::Store::open(general.database_url.as_ref().map(|u| u.expose()), data_dir).await?;
        let cache = cache::Cache::default();
        cache.replace(store.load_keys().await?);
        let usage = usage::Usage::new(redis);
        let spend = spend::Spend::new(general);
        let keys = Arc::new(Keys { store, cache, usage, spend });
        spend::spawn_writer(&keys);
        cache::spawn_refresh(&keys);
        Ok(keys)
    }

    /// The key `sent` names, when it is one: found by its digest, then compared in constant time.
    pub fn find(&self, sent: &str) -> Option<Arc<Key>> {
        let digest: [u8; 32] = Sha256::digest(sent.as_bytes()).into();
        let key = self.cache.get(&digest)?;
        bool::from(key.digest.ct_eq(&digest)).then_some(key)
    }

    /// Blocked, expired or over budget: refused before the body is read.
    pub fn check_usable(&self, key: &Key) -> Result<(), Error> {
        let now = now_ms();
        limits::usable(&key.settings, key.spend(now), now)
            .map_err(|r| r.error(&key.token, key.name(), &key.settings.models))
    }

    /// May `key` call `requested` now? Applies its aliases, checks its models and counts it against its
    /// limits (shared through Redis when replicas share one).
    pub async fn admit(&self, key: &Arc<Key>, config: &Config, requested: &str) -> Result<Admission, Error> {
        let s = &key.settings;
        let target = limits::aliased(&s.aliases, requested);
        if !limits::model_allowed(&s.models, requested, target, config) {
            let refusal = limits::Refusal::ModelDenied { model: requested.to_owned() };
            return Err(refusal.error(&key.token, key.name(), &s.models));
        }
        let model = (target != requested).then(|| target.to_owned());
        if !s.limited() {
            return Ok(Admission { model, slot: None });
        }
        let slot = self.usage.admit(key, target).await.map_err(|r| r.error(&key.token, key.name(), &s.models))?;
        Ok(Admission { model, slot: Some(slot) })
    }

    /// Writes the spend still queued (at shutdown).
    pub async fn flush(&self) {
        if !self.spend.write(&self.store).await {
            tracing::error!("spend not written at shutdown: the key store does not answer");
        }
    }

    /// Whether the database answered the last time it was asked, for `/health/readiness`.
    pub fn readiness(&self) -> serde_json::Value {
        self.spend.readiness(self.store.kind())
    }

    /// Where finished requests are counted: register it on the observe hub.
    pub fn sink(self: &Arc<Self>) -> Arc<dyn crate::observe::Sink> {
        Arc::new(spend::Recorder { keys: Arc::downgrade(self) })
    }
}

/// `body` with its `model` value (at `span`, quotes included) replaced by `model`.
pub fn with_model(body: &Bytes, span: std::ops::Range<usize>, model: &str) -> Bytes {
    let quoted = serde_json::to_string(model).unwrap_or_else(|_| "\"\"".to_owned());
    let mut out = Vec::with_capacity(body.len() + quoted.len());
    out.extend_from_slice(&body[..span.start]);
    out.extend_from_slice(quoted.as_bytes());
    out.extend_from_slice(&body[span.end..]);
    Bytes::from(out)
}

/// LiteLLM's `hash_token`: sha256, hex.
pub fn hash_token(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// The stored form of a key reference in an API body: `sk-…` keys are hashed, anything else is taken as the
/// hash already.
pub fn token_of(reference: &str) -> String {
    if reference.starts_with("sk-") {
        hash_token(reference)
    } else {
        reference.to_ascii_lowercase()
    }
}

fn digest_of_token(token: &str) -> Option<[u8; 32]> {
    if token.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(token.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sk-...` and the last four characters.
pub fn abbreviate(key: &str) -> String {
    let tail: String = key.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("sk-...{tail}")
}

pub(crate) fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// The UTC day of `ms`, `YYYY-MM-DD` (how spend is grouped).
pub fn day_of(ms: i64) -> String {
    let (y, m, d) = civil(ms.div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `ms` as ISO 8601 in UTC, as LiteLLM prints times.
pub fn iso_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (h, mi, s) = (secs.rem_euclid(86_400) / 3600, secs.rem_euclid(3600) / 60, secs.rem_euclid(60));
    format!("{}T{h:02}:{mi:02}:{s:02}.{:03}+00:00", day_of(ms), ms.rem_euclid(1000))
}

/// The ms at which day `YYYY-MM-DD` starts (UTC), for date filters.
pub fn day_start(day: &str) -> Option<i64> {
    let mut parts = day.trim().get(..10)?.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // days_from_civil
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_times_print_in_utc() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(1_796_256_000_000), "2026-12-03");
        assert_eq!(iso_time(1_796_256_000_000 + 3_723_004), "2026-12-03T01:02:03.004+00:00");
        assert_eq!(day_start("2026-12-03"), Some(1_796_256_000_000));
        assert_eq!(day_start("1970-01-01"), Some(0));
        assert_eq!(day_start("2024-02-29").map(day_of).as_deref(), Some("2024-02-29"));
        assert_eq!(day_start("yesterday"), None);
    }

    #[test]
    fn keys_hash_as_litellm_and_references_take_either_form() {
        // LiteLLM's hash_token("sk-1234").
        assert_eq!(hash_token("sk-1234"), "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b");
        let token = hash_token("sk-abc");
        assert_eq!(token.len(), 64);
        assert_eq!(token_of("sk-abc"), token);
        assert_eq!(token_of(&token.to_uppercase()), token);
        assert_eq!(digest_of_token(&token).map(|d| hex(&d)), Some(token));
        assert_eq!(abbreviate("sk-abcdefgh"), "sk-...efgh");
    }

    #[test]
    fn the_model_is_replaced_in_place() {
        let body = Bytes::from_static(br#"{"model":"fast","messages":[]}"#);
        assert_eq!(with_model(&body, 9..15, "qwen\"3"), Bytes::from_static(br#"{"model":"qwen\"3","messages":[]}"#));
    }
}
