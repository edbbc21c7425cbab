//! Routing state shared between replicas through Redis (LiteLLM's `router_settings.redis_*` keys or the
//! `REDIS_*` environment variables): cooldowns, host health and residency, usage per deployment and minute
//! (rpm/tpm limits, failure counts), in-flight counts (least-busy, `max_parallel_requests`).
//!
//! Requests never wait on Redis. [`crate::state::State`] records each change in an [`Outbox`] (its
//! [`ChangeSink`], one short lock); one task per process sends the outbox in a single pipeline every
//! [`FLUSH_EVERY`] and reads what the other replicas shared every [`POLL_EVERY`], so a host one replica finds
//! down is skipped by the others within a fraction of a second. When Redis is unreachable every replica routes on its own state, the outage
//! is logged once, and on return each replica re-sends its running cooldowns and host views.
//!
//! Keys, under a prefix (`LLMUX_REDIS_PREFIX`, default `llmux`):
//!
//! | key | type | content |
//! |---|---|---|
//! | `P:cooldown` | hash | deployment id → `until_unix_ms:status` |
//! | `P:host` | hash | host origin → JSON ([`SharedHost`]) |
//! | `P:usage:MINUTE` | hash | `id\|r`, `id\|t`, `id\|f`, `id\|s` → requests, tokens, fails, successes (UTC minute; expires) |
//! | `P:inflight:REPLICA` | hash | deployment id → requests in flight (expires unless refreshed) |
//! | `P:replicas` | sorted set | replica → unix ms of its last write |

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

use crate::config::RedisSettings;
use crate::state::{ChangeSink, CooldownCause, Millis, PeerUsage, Remote, SharedHost, State};

/// How often changes are sent.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// How often other replicas' state is read.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// A replica whose last write is older than this no longer counts (its in-flight requests expire with it).
const REPLICA_TTL: Duration = Duration::from_secs(5);
/// Every replica refreshes its presence this often, even with nothing to send.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How long one Redis round trip may take before the replica counts Redis as unreachable.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Usage buckets outlive their minute by this much.
const USAGE_TTL_SECONDS: i64 = 120;

/// Changes waiting to be sent to Redis: the state's [`ChangeSink`]. Filled on the request path, so every method is
/// one short lock.
#[derive(Debug, Default)]
pub struct Outbox {
    pending: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    /// Usage deltas by (UTC minute, deployment id).
    usage: HashMap<(u64, Arc<str>), PeerUsage>,
    /// Token corrections by (UTC minute, deployment id): what engines reported minus the estimates counted.
    tokens: HashMap<(u64, Arc<str>), i64>,
    /// Cooldowns started: id → (until unix ms, why).
    cooldowns: HashMap<Arc<str>, (u64, CooldownCause)>,
    /// Cooldowns a probe lifted.
    lifted: HashSet<Arc<str>>,
    /// Hosts whose view changed.
    hosts: HashSet<Arc<str>>,
}

impl ChangeSink for Outbox {
    fn usage(&self, id: &Arc<str>, delta: PeerUsage) {
        let mut pending = self.pending();
        let entry = pending.usage.entry((delta.minute, id.clone())).or_default();
        entry.requests += delta.requests;
        entry.tokens += delta.tokens;
        entry.fails += delta.fails;
        entry.successes += delta.successes;
    }

    fn tokens(&self, id: &Arc<str>, minute: u64, delta: i64) {
        let mut pending = self.pending();
        let entry = pending.tokens.entry((minute, id.clone())).or_default();
        *entry = entry.saturating_add(delta);
    }

    fn cooldown(&self, id: &Arc<str>, until: u64, cause: CooldownCause) {
        let mut pending = self.pending();
        pending.lifted.remove(id);
        let entry = pending.cooldowns.entry(id.clone()).or_insert((until, cause));
        if until >= entry.0 {
            *entry = (until, cause);
        }
    }

    fn lift(&self, id: &Arc<str>) {
        let mut pending = self.pending();
        pending.cooldowns.remove(id);
        pending.lifted.insert(id.clone());
    }

    fn host(&self, origin: &Arc<str>) {
        self.pending().hosts.insert(origin.clone());
    }
}

impl Outbox {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending())
    }

    /// Puts back what could not be sent: cooldowns and host views are re-sent whole on reconnection anyway, so
    /// only usage of the current minute is worth keeping.
    fn restore_usage(
        &self,
        usage: HashMap<(u64, Arc<str>), PeerUsage>,
        tokens: HashMap<(u64, Arc<str>), i64>,
        minute: u64,
    ) {
        for ((m, id), delta) in usage.into_iter().filter(|((m, _), _)| *m == minute) {
            self.usage(&id, PeerUsage { minute: m, ..delta });
        }
        for ((m, id), delta) in tokens.into_iter().filter(|((m, _), _)| *m == minute) {
            self.tokens(&id, m, delta);
        }
    }
}

/// Starts sharing the state that `current` returns (the current config's; `None` ends the task) through the
/// Redis at `settings`, and returns the outbox every state must record into.
pub fn spawn(
    settings: &RedisSettings,
    prefix: String,
    current: impl Fn() -> Option<Arc<State>> + Send + 'static,
) -> Arc<Outbox> {
    let outbox = Arc::new(Outbox::default());
    let sync = Sync::new(settings, prefix, outbox.clone());
    tokio::spawn(sync.run(current));
    outbox
}

/// The sharing task's own state.
struct Sync {
    info: Result<ConnectionInfo, String>,
    display: String,
    keys: Keys,
    replica: String,
    outbox: Arc<Outbox>,
    conn: Option<ConnectionManager>,
    /// `None` before the first attempt; then whether the last one worked (so an outage logs once).
    reachable: Option<bool>,
    next_connect: Instant,
    /// Cooldowns and host views must be sent whole (at start and after an outage).
    resync: bool,
    /// What this replica added to the usage buckets of `own_minute`, so the others' share can be told apart.
    own: HashMap<Arc<str>, PeerUsage>,
    own_minute: u64,
    sent_in_flight: HashMap<Arc<str>, u32>,
    last_heartbeat: Option<Instant>,
    last_poll: Option<Instant>,
    /// Expired cooldown fields seen by the last poll, deleted by the next flush.
    expired: Vec<String>,
}

struct Keys {
    cooldown: String,
    host: String,
    replicas: String,
    prefix: String,
}

impl Keys {
    fn usage(&self, minute: u64) -> String {
        format!("{}:usage:{minute}", self.prefix)
    }
    fn in_flight(&self, replica: &str) -> String {
        format!("{}:inflight:{replica}", self.prefix)
    }
}

fn unix_now() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(0)
}

/// Where to connect for `settings` (`redis_url` wins over the separate keys).
pub fn connection_info(settings: &RedisSettings) -> Result<ConnectionInfo, String> {
    if let Some(url) = &settings.url {
        return url.expose().into_connection_info().map_err(|e| format!("redis_url: {e}"));
    }
    Ok(ConnectionInfo {
        addr: ConnectionAddr::Tcp(settings.host.clone(), settings.port),
        redis: RedisConnectionInfo {
            db: settings.db,
            username: settings.username.clone(),
            password: settings.password.as_ref().map(|p| p.expose().to_owned()),
            ..RedisConnectionInfo::default()
        },
    })
}

impl Sync {
    fn new(settings: &RedisSettings, prefix: String, outbox: Arc<Outbox>) -> Sync {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let replica = format!("{}-{}-{:08x}", host.trim(), std::process::id(), fastrand::u32(..));
        Sync {
            info: connection_info(settings),
            display: settings.display(),
            keys: Keys {
                cooldown: format!("{prefix}:cooldown"),
                host: format!("{prefix}:host"),
                replicas: format!("{prefix}:replicas"),
                prefix,
            },
            replica,
            outbox,
            conn: None,
            reachable: None,
            next_connect: Instant::now(),
            resync: true,
            own: HashMap::new(),
            own_minute: 0,
            sent_in_flight: HashMap::new(),
            last_heartbeat: None,
            last_poll: None,
            expired: Vec::new(),
        }
    }

    async fn run(mut self, current: impl Fn() -> Option<Arc<State>>) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(state) = current() else { return };
            let result = match self.connection().await {
                Ok(mut conn) => self.exchange(&mut conn, &state).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => self.up(),
                Err(e) => self.down(&e, &state),
            }
        }
    }

    async fn connection(&mut self) -> Result<ConnectionManager, String> {
        if let Some(conn) = &self.conn {
            return Ok(conn.clone());
        }
        if Instant::now() < self.next_connect {
            return Err("not connected".into());
        }
        self.next_connect = Instant::now() + Duration::from_secs(1);
        let info = self.info.clone()?;
        let client = redis::Client::open(info).map_err(|e| e.to_string())?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(RESPONSE_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_number_of_retries(1)
            .set_max_delay(1000);
        let conn = tokio::time::timeout(RESPONSE_TIMEOUT * 2, ConnectionManager::new_with_config(client, config))
            .await
            .map_err(|_| "connection timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    fn up(&mut self) {
        match self.reachable {
            Some(true) => {}
            Some(false) => tracing::info!("redis at {} is reachable again; shared state resynchronised", self.display),
            None => tracing::info!("sharing routing state with other replicas through redis at {}", self.display),
        }
        self.reachable = Some(true);
        self.resync = false;
    }

    fn down(&mut self, error: &str, state: &State) {
        if self.reachable != Some(false) {
            tracing::warn!(
                "redis at {} is unreachable ({}); routing on this replica's own state until it is back",
                self.display,
                crate::redact::redact(error)
            );
            state.forget_peers();
        }
        self.reachable = Some(false);
        self.resync = true;
        self.last_poll = None;
    }

    /// One round: send what changed; every [`POLL_EVERY`], read what the others shared.
    async fn exchange(&mut self, conn: &mut ConnectionManager, state: &State) -> Result<(), String> {
        let now = state.now();
        let minute = state.minute_of(now);
        if minute != self.own_minute {
            self.own.clear();
            self.own_minute = minute;
        }
        let pending = self.outbox.take();
        let mut pipe = redis::pipe();
        let mut commands = 0usize;
        let mut cooldowns = pending.cooldowns;
        let mut hosts = pending.hosts;
        if self.resync {
            for (id, until, cause) in state.active_cooldowns(now) {
                cooldowns.entry(id).or_insert((until, cause));
            }
            hosts.extend(state.origins().iter().cloned());
        }
        for (id, (until, cause)) in &cooldowns {
            pipe.hset(&self.keys.cooldown, &**id, format!("{until}:{}", cause.tag())).ignore();
            commands += 1;
        }
        let lifted: Vec<&str> = pending.lifted.iter().map(|id| &**id).collect();
        let expired = std::mem::take(&mut self.expired);
        for field in lifted.iter().copied().chain(expired.iter().map(String::as_str)) {
            pipe.hdel(&self.keys.cooldown, field).ignore();
            commands += 1;
        }
        for origin in &hosts {
            if let Some(view) = state.shared_host(origin).filter(|v| v.updated > state.to_unix(Millis(0))) {
                let json = serde_json::to_string(&view).map_err(|e| e.to_string())?;
                pipe.hset(&self.keys.host, &**origin, json).ignore();
                commands += 1;
            }
        }
        for ((m, id), delta) in &pending.usage {
            let key = self.keys.usage(*m);
            for (suffix, n) in [("r", delta.requests), ("t", delta.tokens), ("f", delta.fails), ("s", delta.successes)]
            {
                if n > 0 {
                    pipe.hincr(&key, format!("{id}|{suffix}"), n).ignore();
                    commands += 1;
                }
            }
            pipe.expire(&key, USAGE_TTL_SECONDS).ignore();
        }
        for ((m, id), delta) in pending.tokens.iter().filter(|(_, d)| **d != 0) {
            let key = self.keys.usage(*m);
            pipe.hincr(&key, format!("{id}|t"), *delta).ignore();
            pipe.expire(&key, USAGE_TTL_SECONDS).ignore();
            commands += 1;
        }
        let in_flight: HashMap<Arc<str>, u32> =
            state.in_flight_by_id().filter(|(_, n)| *n > 0).map(|(id, n)| (id.clone(), n)).collect();
        let heartbeat_due = self.last_heartbeat.is_none_or(|t| t.elapsed() >= HEARTBEAT_EVERY);
        if in_flight != self.sent_in_flight || heartbeat_due {
            let key = self.keys.in_flight(&self.replica);
            pipe.del(&key).ignore();
            if !in_flight.is_empty() {
                let fields: Vec<(&str, u32)> = in_flight.iter().map(|(id, n)| (&**id, *n)).collect();
                pipe.hset_multiple(&key, &fields).ignore();
                pipe.pexpire(&key, i64::try_from(REPLICA_TTL.as_millis()).unwrap_or(5000)).ignore();
            }
            let unix = unix_now();
            pipe.zadd(&self.keys.replicas, &self.replica, unix).ignore();
            let stale = unix.saturating_sub(u64::try_from(REPLICA_TTL.as_millis()).unwrap_or(5000) * 12);
            pipe.zrembyscore(&self.keys.replicas, 0, stale).ignore();
            commands += 1;
        }
        if commands > 0 || !pending.usage.is_empty() {
            if let Err(e) = pipe.query_async::<()>(conn).await {
                self.outbox.restore_usage(pending.usage, pending.tokens, minute);
                return Err(e.to_string());
            }
            if in_flight != self.sent_in_flight || heartbeat_due {
                self.sent_in_flight = in_flight;
                self.last_heartbeat = Some(Instant::now());
            }
            for ((m, id), delta) in pending.usage {
                if m == minute {
                    let own = self.own.entry(id).or_default();
                    own.requests += delta.requests;
                    own.tokens += delta.tokens;
                    own.fails += delta.fails;
                    own.successes += delta.successes;
                }
            }
            for ((m, id), delta) in pending.tokens {
                if m == minute {
                    let own = self.own.entry(id).or_default();
                    own.tokens = own.tokens.saturating_add_signed(delta);
                }
            }
        }
        if self.last_poll.is_none_or(|t| t.elapsed() >= POLL_EVERY) {
            self.last_poll = Some(Instant::now());
            let remote = self.poll(conn, minute).await?;
            state.apply_remote(&remote);
        }
        Ok(())
    }

    /// Reads the other replicas' view.
    async fn poll(&mut self, conn: &mut ConnectionManager, minute: u64) -> Result<Remote, String> {
        let unix = unix_now();
        let alive_since = unix.saturating_sub(u64::try_from(REPLICA_TTL.as_millis()).unwrap_or(5000));
        type Read = (HashMap<String, String>, HashMap<String, String>, HashMap<String, i64>, Vec<String>);
        let (cooldowns, hosts, usage, replicas): Read = redis::pipe()
            .hgetall(&self.keys.cooldown)
            .hgetall(&self.keys.host)
            .hgetall(self.keys.usage(minute))
            .zrangebyscore(&self.keys.replicas, alive_since, "+inf")
            .query_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        let mut remote = Remote::default();
        for (id, value) in cooldowns {
            let until = value.split_once(':').and_then(|(u, _)| u.parse::<u64>().ok()).unwrap_or(0);
            if until > unix {
                remote.cooldowns.insert(id, until);
            } else if until.saturating_add(60_000) < unix {
                // Long over: tidy up (any replica may).
                self.expired.push(id);
            }
        }
        for (origin, json) in hosts {
            if let Ok(view) = serde_json::from_str::<SharedHost>(&json) {
                remote.hosts.insert(origin, view);
            }
        }
        for (field, n) in usage {
            // A count is only below zero when a correction arrived without its estimate (lost in a failed send).
            let n = u64::try_from(n).unwrap_or(0);
            let Some((id, kind)) = field.rsplit_once('|') else { continue };
            let own = self.own.get(id).copied().unwrap_or_default();
            let entry = remote.usage.entry(id.to_owned()).or_insert(PeerUsage { minute, ..PeerUsage::default() });
            match kind {
                "r" => entry.requests = n.saturating_sub(own.requests),
                "t" => entry.tokens = n.saturating_sub(own.tokens),
                "f" => entry.fails = n.saturating_sub(own.fails),
                "s" => entry.successes = n.saturating_sub(own.successes),
                _ => {}
            }
        }
        let others: Vec<String> = replicas.into_iter().filter(|r| *r != self.replica).collect();
        if !others.is_empty() {
            let mut pipe = redis::pipe();
            for other in &others {
                pipe.hgetall(self.keys.in_flight(other));
            }
            let counts: Vec<HashMap<String, u32>> = pipe.query_async(conn).await.map_err(|e| e.to_string())?;
            for (id, n) in counts.into_iter().flatten() {
                *remote.in_flight.entry(id).or_default() += n;
            }
        }
        Ok(remote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_corrections_go_out_signed_next_to_the_usage() {
        let outbox = Outbox::default();
        let id: Arc<str> = Arc::from("d");
        outbox.usage(&id, PeerUsage { minute: 7, requests: 1, tokens: 100, ..PeerUsage::default() });
        outbox.tokens(&id, 7, 300);
        outbox.tokens(&id, 7, -350);
        let pending = outbox.take();
        assert_eq!(pending.usage[&(7, id.clone())].tokens, 100);
        assert_eq!(pending.tokens[&(7, id.clone())], -50);
        // A failed send keeps the current minute's corrections.
        outbox.restore_usage(pending.usage, pending.tokens, 7);
        assert_eq!(outbox.take().tokens[&(7, id)], -50);
    }
}
