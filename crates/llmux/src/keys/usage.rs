//! A key's use this minute (requests, tokens, per model) and its requests in flight, the facts
//! [`super::limits::within_limits`] decides on. Only keys with a limit are counted.
//!
//! With Redis configured (`router_settings.redis_*`, as replicas already share routing state) the counts are
//! Redis's: one pipelined round trip per admitted request (INCR of the minute's and the in-flight counters,
//! GET of the minute's tokens), so replicas enforce one limit together exactly. When Redis does not answer
//! in time each replica counts on its own (logged once), as LiteLLM degrades.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::limits::{self, Refusal};
use super::Key;
use crate::config::RedisSettings;

/// How long a Redis round trip may take before this replica counts on its own.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// Minute counters outlive their minute by this much.
const MINUTE_TTL_SECS: i64 = 120;
/// In-flight counters expire when a replica dies holding some.
const IN_FLIGHT_TTL_SECS: i64 = 600;

/// This minute's counts of one key.
#[derive(Debug, Default)]
struct Window {
    minute: u64,
    requests: u64,
    tokens: u64,
    /// Per model group: (requests, tokens).
    models: HashMap<String, (u64, u64)>,
    in_flight: u64,
}

impl Window {
    fn roll(&mut self, minute: u64) {
        if self.minute != minute {
            self.minute = minute;
            self.requests = 0;
            self.tokens = 0;
            self.models.clear();
        }
    }
}

struct Inner {
    local: Mutex<HashMap<String, Window>>,
    redis: Option<Redis>,
}

/// The counters.
pub struct Usage {
    inner: Arc<Inner>,
}

/// A request's place among its key's requests in flight, given back when the answer's last byte is sent.
pub struct Slot {
    inner: Arc<Inner>,
    token: String,
    shared: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut local) = self.inner.local.lock() {
            if let Some(w) = local.get_mut(&self.token) {
                w.in_flight = w.in_flight.saturating_sub(1);
            }
        }
        if self.shared {
            if let (Some(redis), Ok(handle)) = (&self.inner.redis, tokio::runtime::Handle::try_current()) {
                let (redis, key) = (redis.clone(), redis.key(&self.token, "par"));
                handle.spawn(async move {
                    let mut pipe = redis::pipe();
                    pipe.decr(&key, 1).ignore();
                    redis.run::<()>(pipe).await;
                });
            }
        }
    }
}

fn minute_and_second() -> (u64, u64) {
    let secs = u64::try_from(super::now_ms() / 1000).unwrap_or(0);
    (secs / 60, secs % 60)
}

impl Usage {
    pub fn new(redis: Option<&RedisSettings>) -> Usage {
        let prefix = std::env::var("LLMUX_REDIS_PREFIX").unwrap_or_else(|_| "llmux".to_owned());
        let redis = redis.map(|settings| Redis {
            info: crate::shared::connection_info(settings),
            prefix: Arc::from(prefix),
            conn: Arc::new(tokio::sync::Mutex::new(None)),
            down: Arc::new(AtomicBool::new(false)),
        });
        Usage { inner: Arc::new(Inner { local: Mutex::default(), redis }) }
    }

    /// Counts one request of `key` for `model` if its limits leave room.
    pub async fn admit(&self, key: &Key, model: &str) -> Result<Slot, Refusal> {
        let (minute, second) = minute_and_second();
        if let Some(redis) = &self.inner.redis {
            if let Some(slot) = self.admit_shared(redis, key, model, minute, second).await {
                return slot;
            }
        }
        let mut local = self.inner.local.lock().unwrap_or_else(|e| e.into_inner());
        let w = local.entry(key.token.clone()).or_default();
        w.roll(minute);
        let used = limits::Usage { requests: w.requests, tokens: w.tokens, in_flight: w.in_flight };
        let (mr, mt) = w.models.get(model).copied().unwrap_or_default();
        let by_model = limits::Usage { requests: mr, tokens: mt, in_flight: 0 };
        limits::within_limits(&key.settings, model, used, by_model, second)?;
        w.requests += 1;
        w.in_flight += 1;
        w.models.entry(model.to_owned()).or_default().0 += 1;
        Ok(Slot { inner: self.inner.clone(), token: key.token.clone(), shared: false })
    }

    /// [`Usage::admit`] through Redis; `None` when Redis did not answer (count locally then).
    async fn admit_shared(
        &self,
        redis: &Redis,
        key: &Key,
        model: &str,
        minute: u64,
        second: u64,
    ) -> Option<Result<Slot, Refusal>> {
        let t = &key.token;
        let (rpm, tpm, par) =
            (redis.key(t, &format!("r:{minute}")), redis.key(t, &format!("t:{minute}")), redis.key(t, "par"));
        let (mrpm, mtpm) = (redis.key(t, &format!("r:{minute}:{model}")), redis.key(t, &format!("t:{minute}:{model}")));
        let mut pipe = redis::pipe();
        pipe.incr(&rpm, 1).expire(&rpm, MINUTE_TTL_SECS).ignore();
        pipe.get(&tpm);
        pipe.incr(&par, 1).expire(&par, IN_FLIGHT_TTL_SECS).ignore();
        pipe.incr(&mrpm, 1).expire(&mrpm, MINUTE_TTL_SECS).ignore();
        pipe.get(&mtpm);
        let (requests, tokens, in_flight, model_requests, model_tokens): (u64, Option<u64>, u64, u64, Option<u64>) =
            redis.run(pipe).await?;
        let used = limits::Usage {
            requests: requests.saturating_sub(1),
            tokens: tokens.unwrap_or(0),
            in_flight: in_flight.saturating_sub(1),
        };
        let by_model = limits::Usage {
            requests: model_requests.saturating_sub(1),
            tokens: model_tokens.unwrap_or(0),
            in_flight: 0,
        };
        if let Err(refusal) = limits::within_limits(&key.settings, model, used, by_model, second) {
            // Not admitted: it takes no place in this minute's counts nor among those in flight.
            let mut undo = redis::pipe();
            undo.decr(&rpm, 1).ignore().decr(&par, 1).ignore().decr(&mrpm, 1).ignore();
            redis.run::<()>(undo).await;
            return Some(Err(refusal));
        }
        Some(Ok(Slot { inner: self.inner.clone(), token: key.token.clone(), shared: true }))
    }

    /// Counts `tokens` of a finished request of `key` for `model` (for `tpm_limit`, `model_tpm_limit`).
    pub fn add_tokens(&self, key: &Key, model: &str, tokens: u64) {
        if tokens == 0 {
            return;
        }
        let (minute, _) = minute_and_second();
        if let Some(redis) = &self.inner.redis {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let t = &key.token;
                let (tpm, mtpm) = (redis.key(t, &format!("t:{minute}")), redis.key(t, &format!("t:{minute}:{model}")));
                let redis = redis.clone();
                handle.spawn(async move {
                    let mut pipe = redis::pipe();
                    pipe.incr(&tpm, tokens).expire(&tpm, MINUTE_TTL_SECS).ignore();
                    pipe.incr(&mtpm, tokens).expire(&mtpm, MINUTE_TTL_SECS).ignore();
                    redis.run::<()>(pipe).await;
                });
            }
        }
        let mut local = self.inner.local.lock().unwrap_or_else(|e| e.into_inner());
        let w = local.entry(key.token.clone()).or_default();
        w.roll(minute);
        w.tokens = w.tokens.saturating_add(tokens);
        let m = w.models.entry(model.to_owned()).or_default();
        m.1 = m.1.saturating_add(tokens);
    }
}

/// The Redis the counts are shared through.
#[derive(Clone)]
struct Redis {
    info: Result<redis::ConnectionInfo, String>,
    prefix: Arc<str>,
    conn: Arc<tokio::sync::Mutex<Option<ConnectionManager>>>,
    down: Arc<AtomicBool>,
}

impl Redis {
    /// `P:key:TOKEN:what` (the token is the key's hash, never the key).
    fn key(&self, token: &str, what: &str) -> String {
        format!("{}:key:{token}:{what}", self.prefix)
    }

    async fn connection(&self) -> Result<ConnectionManager, String> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let client = redis::Client::open(self.info.clone()?).map_err(|e| e.to_string())?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(REDIS_TIMEOUT)
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config).await.map_err(|e| e.to_string())?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Runs `pipe`; `None` (and a warning, once per outage) when Redis does not answer in time.
    async fn run<T: redis::FromRedisValue>(&self, pipe: redis::Pipeline) -> Option<T> {
        let call = async {
            let mut conn = self.connection().await?;
            pipe.query_async::<T>(&mut conn).await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(REDIS_TIMEOUT, call).await {
            Ok(Ok(v)) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!("virtual-key limits are shared through redis again");
                }
                Some(v)
            }
            Ok(Err(why)) => self.failed(&why),
            Err(_) => self.failed("no answer in time"),
        }
    }

    fn failed<T>(&self, why: &str) -> Option<T> {
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!("virtual-key limits cannot be shared through redis ({why}); each replica counts on its own");
        }
        None
    }
}
