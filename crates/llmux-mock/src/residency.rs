//! Model residency, simulated the way Ollama manages it: which models are loaded, how much memory they take,
//! how long loading one takes, which one is evicted to make room, and when an idle one expires.
//!
//! Off unless [`MockConfig::residency`] is set; then it is the truth behind `/api/ps`, the sizes in
//! `/api/tags`, the `loaded` knob (kept in step with it) and Ollama's `load_duration`.
//!
//! - A chat, generate or embedding request (Ollama or OpenAI-compatible route) for a model that is not loaded
//!   waits the model's load time before its answer starts (headers, first token, or the whole non-streamed
//!   answer). Loads on one host happen one at a time, as in Ollama's scheduler; a request for a model that is
//!   still loading waits for that load instead of starting another.
//! - To make room, idle loaded models are evicted least recently used first until the new one fits the memory
//!   budget and the model count; when only busy models stand in the way, the load waits until they finish
//!   (Ollama never unloads a model in use). A model larger than the whole budget is loaded once everything else
//!   is gone (Ollama would spill it to the CPU).
//! - When a model's last request finishes it stays loaded for the request's `keep_alive` (Ollama's forms: a
//!   duration string such as `"5m"`, a number of seconds, `0` = unload now, negative = forever), else for the
//!   configured default.
//! - An `/api/generate` without a prompt (or an `/api/chat` without messages) only loads the model — Ollama's
//!   documented preload — and with `keep_alive: 0` unloads it instead.
//! - A load whose requests all went away before it finished (their clients hung up) is aborted, as Ollama
//!   does: the model is not loaded, and the next request for it loads it again.
//! - Probes (`/api/tags`, `/api/ps`, `/api/show`, `/v1/models`, `/health`, ...) never load anything.
//!
//! Loads, evictions (and which of them pushed out a model that was serving when the load was asked for) and
//! unloads are counted in [`MockStats`](crate::MockStats).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{canonical_model, MockConfig};
use crate::state::{lock, App};
use crate::util::fnv1a;

/// The inference routes that need the model loaded.
const INFERENCE_PATHS: &[&str] = &[
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/embeddings",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
];

/// Residency knobs ([`MockConfig::residency`]).
///
/// JSON (e.g. in `POST /mock/config`): `{"residency": {"memory_budget": "14GB", "model_sizes": {"qwen3:8b":
/// "5.2GB"}, "default_size": 4000000000, "load_ms": {"qwen3:8b": 3000}, "default_load_ms": 1000,
/// "max_loaded_models": 3, "keep_alive": "5m"}}`; every key is optional, `"residency": {}` turns the simulation
/// on with the defaults, `null` turns it off. Sizes are bytes, as a number or a string with a unit (`B`, `KB`,
/// `MB`, `GB`, `TB` decimal; `KiB`, `MiB`, `GiB`, `TiB` binary; `K`/`M`/`G`/`T` = decimal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResidencyConfig {
    /// Memory the loaded models may take together, in bytes. `None` = unlimited.
    #[serde(deserialize_with = "de_opt_size")]
    pub memory_budget: Option<u64>,
    /// The most models loaded at once (Ollama's `OLLAMA_MAX_LOADED_MODELS`). `None` = no limit but memory.
    pub max_loaded_models: Option<usize>,
    /// Size of each model in bytes, by name (`x` and `x:latest` are the same model). Reported by `/api/tags`
    /// and `/api/ps` (as `size` and `size_vram`).
    #[serde(deserialize_with = "de_size_map")]
    pub model_sizes: BTreeMap<String, u64>,
    /// Size of a model not in `model_sizes`. `None` = the stable pseudo-size (1–8 GB, from the name) that
    /// `/api/tags` reports without residency.
    #[serde(deserialize_with = "de_opt_size")]
    pub default_size: Option<u64>,
    /// Load time of each model in milliseconds, by name.
    pub load_ms: BTreeMap<String, u64>,
    /// Load time of a model not in `load_ms`, in milliseconds.
    pub default_load_ms: u64,
    /// How long an idle model stays loaded when the request does not say (Ollama's `OLLAMA_KEEP_ALIVE`,
    /// default 5 minutes).
    pub keep_alive: KeepAlive,
}

impl Default for ResidencyConfig {
    fn default() -> Self {
        Self {
            memory_budget: None,
            max_loaded_models: None,
            model_sizes: BTreeMap::new(),
            default_size: None,
            load_ms: BTreeMap::new(),
            default_load_ms: 0,
            keep_alive: KeepAlive::For(Duration::from_secs(300)),
        }
    }
}

impl ResidencyConfig {
    /// The size of `model` in bytes.
    pub fn size_of(&self, model: &str) -> u64 {
        lookup(&self.model_sizes, model).or(self.default_size).unwrap_or_else(|| pseudo_size(model))
    }

    /// How long loading `model` takes.
    pub fn load_time(&self, model: &str) -> Duration {
        Duration::from_millis(lookup(&self.load_ms, model).unwrap_or(self.default_load_ms))
    }
}

/// The value for `model` in a map keyed by model names, `:latest` implied.
fn lookup(map: &BTreeMap<String, u64>, model: &str) -> Option<u64> {
    map.get(model).copied().or_else(|| {
        let wanted = canonical_model(model);
        map.iter().find(|(k, _)| canonical_model(k) == wanted).map(|(_, v)| *v)
    })
}

/// A plausible, stable model size in bytes (1–8 GB), what `/api/tags` reports for a model of unknown size.
pub(crate) fn pseudo_size(name: &str) -> u64 {
    1_000_000_000 + fnv1a(name.as_bytes()) % 7_000_000_000
}

/// The size `/api/tags` and `/api/ps` report for `model`.
pub(crate) fn reported_size(cfg: &MockConfig, model: &str) -> u64 {
    cfg.residency.as_ref().map_or_else(|| pseudo_size(model), |r| r.size_of(model))
}

/// How long an idle model stays loaded: Ollama's `keep_alive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Unloaded when idle for this long (zero = as soon as its requests finish).
    For(Duration),
    /// Never unloaded (a negative `keep_alive`).
    Forever,
}

impl KeepAlive {
    /// Parses Ollama's forms: a number of seconds (negative = forever), or a duration string (`"5m"`,
    /// `"1h30m"`, `"300ms"`, `"-1m"`; a bare number string is seconds).
    pub fn parse(value: &Value) -> Option<Self> {
        match value {
            Value::Number(n) => n.as_f64().and_then(Self::from_secs),
            Value::String(s) => {
                let s = s.trim();
                match s.parse::<f64>() {
                    Ok(secs) => Self::from_secs(secs),
                    Err(_) => parse_go_duration(s),
                }
            }
            _ => None,
        }
    }

    fn from_secs(secs: f64) -> Option<Self> {
        if secs.is_nan() {
            None
        } else if secs < 0.0 {
            Some(KeepAlive::Forever)
        } else {
            Duration::try_from_secs_f64(secs).ok().map(KeepAlive::For)
        }
    }

    /// Whether this means "unload as soon as idle".
    pub fn is_zero(self) -> bool {
        self == KeepAlive::For(Duration::ZERO)
    }

    /// When a model idle from `now` expires; `None` = never.
    fn expiry(self, now: Instant) -> Option<Instant> {
        match self {
            KeepAlive::For(d) => now.checked_add(d),
            KeepAlive::Forever => None,
        }
    }
}

/// A Go `time.ParseDuration` string: an optional sign, then one or more number+unit pairs (`ns`, `us`, `µs`,
/// `ms`, `s`, `m`, `h`). Negative = forever, as Ollama treats it.
fn parse_go_duration(s: &str) -> Option<KeepAlive> {
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    if negative && total > 0.0 {
        Some(KeepAlive::Forever)
    } else {
        Duration::try_from_secs_f64(total).ok().map(KeepAlive::For)
    }
}

impl fmt::Display for KeepAlive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepAlive::Forever => f.write_str("-1"),
            KeepAlive::For(d) if d.subsec_nanos() == 0 => write!(f, "{}s", d.as_secs()),
            KeepAlive::For(d) => write!(f, "{}ms", d.as_millis()),
        }
    }
}

impl Serialize for KeepAlive {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for KeepAlive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        KeepAlive::parse(&value).ok_or_else(|| {
            D::Error::custom(format!("invalid keep_alive {value}: expected seconds or a duration such as \"5m\""))
        })
    }
}

/// Parses a size: bytes as a number, or a string with an optional unit (`"14GB"`, `"600MiB"`, `"3.5G"`).
pub fn parse_size(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f.round() as u64)),
        Value::String(s) => parse_size_str(s),
        _ => None,
    }
}

/// A size string: a number and an optional unit.
pub fn parse_size_str(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let number: f64 = s[..split].trim().parse().ok()?;
    let scale: f64 = match s[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * scale;
    (bytes.is_finite() && bytes >= 0.0).then(|| bytes.round() as u64)
}

fn de_opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => parse_size(&v).map(Some).ok_or_else(|| D::Error::custom(format!("invalid size {v}"))),
    }
}

fn de_size_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, u64>, D::Error> {
    let map = BTreeMap::<String, Value>::deserialize(d)?;
    map.into_iter()
        .map(|(k, v)| match parse_size(&v) {
            Some(size) => Ok((k, size)),
            None => Err(D::Error::custom(format!("invalid size {v} for model {k}"))),
        })
        .collect()
}

/// A loaded (or loading) model, as `/api/ps` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResidentModel {
    /// The model's name (as the served list spells it).
    pub name: String,
    /// Bytes it takes.
    pub size: u64,
    /// When it expires if left idle; `None` = never (`keep_alive` negative).
    pub expires_at: Option<SystemTime>,
    /// Whether it is still loading.
    pub loading: bool,
    /// Requests using it now.
    pub in_use: u32,
}

/// One model in memory.
#[derive(Debug)]
struct Entry {
    /// The canonical name (`:latest` explicit), for matching.
    key: String,
    /// The name reported.
    name: String,
    size: u64,
    /// When its load finishes (in the past once loaded).
    ready_at: Instant,
    /// When it expires if idle; `None` = never.
    expires_at: Option<Instant>,
    /// How long it stays once idle: the last request's `keep_alive`.
    session: KeepAlive,
    /// Requests using it now (the one loading it included).
    refs: u32,
    /// When its last request finished (meaningful while `refs` is 0): a load asked for before then waited for it.
    idle_since: Instant,
}

/// The residency state of one server.
#[derive(Debug)]
pub(crate) struct State {
    /// Least recently used first.
    entries: Vec<Entry>,
    /// When the load in progress (and any queued behind it) is done.
    loader_free_at: Option<Instant>,
    /// `loaded` as last written, to notice a change made through the config.
    mirror: Option<Vec<String>>,
    /// Bumped whenever a model becomes idle or leaves, for loads waiting on busy models.
    freed: watch::Sender<u64>,
}

impl Default for State {
    fn default() -> Self {
        Self { entries: Vec::new(), loader_free_at: None, mirror: None, freed: watch::Sender::new(0) }
    }
}

impl State {
    /// Forgets every model (the server's knobs were reset); loads waiting for room try again.
    pub(crate) fn reset(&mut self) {
        self.entries.clear();
        self.loader_free_at = None;
        self.mirror = None;
        self.freed.send_modify(|g| *g += 1);
    }

    fn find(&self, key: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.key == key)
    }

    fn used(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    /// Brings the state up to date: takes over changes made to `loaded` through the config (added models count
    /// as loaded now, removed idle ones leave), drops expired idle models, and writes the result back to
    /// `loaded`.
    fn sync(&mut self, cfg: &mut MockConfig, rc: &ResidencyConfig, app: &App, now: Instant) {
        if self.mirror.as_ref() != Some(&cfg.loaded) {
            let wanted: Vec<String> = cfg.loaded.iter().map(|m| canonical_model(m)).collect();
            self.entries.retain(|e| e.refs > 0 || wanted.contains(&e.key));
            for (name, key) in cfg.loaded.iter().zip(wanted) {
                if self.find(&key).is_none() {
                    self.entries.push(Entry {
                        key,
                        name: name.clone(),
                        size: rc.size_of(name),
                        ready_at: now,
                        expires_at: rc.keep_alive.expiry(now),
                        session: rc.keep_alive,
                        refs: 0,
                        idle_since: now,
                    });
                }
            }
        }
        let before = self.entries.len();
        self.entries.retain(|e| e.refs > 0 || e.expires_at.is_none_or(|at| at > now));
        let expired = before - self.entries.len();
        if expired > 0 {
            lock(&app.stats).unloads += expired as u64;
            self.freed.send_modify(|g| *g += 1);
        }
        self.write_back(cfg);
    }

    fn write_back(&mut self, cfg: &mut MockConfig) {
        cfg.loaded = self.entries.iter().map(|e| e.name.clone()).collect();
        self.mirror = Some(cfg.loaded.clone());
    }

    fn snapshot(&self, now: Instant) -> Vec<ResidentModel> {
        let wall = SystemTime::now();
        let mut out: Vec<ResidentModel> = self
            .entries
            .iter()
            .map(|e| ResidentModel {
                name: e.name.clone(),
                size: e.size,
                expires_at: e.expires_at.map(|at| wall + at.saturating_duration_since(now)),
                loading: e.ready_at > now,
                in_use: e.refs,
            })
            .collect();
        // Ollama lists the latest expiry first.
        out.sort_by(|a, b| match (a.expires_at, b.expires_at) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => y.cmp(&x),
        });
        out
    }
}

/// The models loaded now (loading ones included), latest expiry first; `None` when residency is off.
pub(crate) fn resident(app: &App) -> Option<Vec<ResidentModel>> {
    app.update(|cfg| {
        let rc = cfg.residency.clone()?;
        let mut st = lock(&app.residency);
        let now = Instant::now();
        st.sync(cfg, &rc, app, now);
        Some(st.snapshot(now))
    })
}

/// What an inference request asks of residency, read from its body before it is handled.
#[derive(Debug)]
pub(crate) struct Want {
    model: String,
    keep_alive: Option<KeepAlive>,
    /// A generate without a prompt (or a chat without messages): load or unload only.
    preload: bool,
}

impl Want {
    /// The residency part of a request to `path`; `None` for everything but inference with a model.
    pub(crate) fn parse(path: &str, body: &Value) -> Option<Self> {
        if !INFERENCE_PATHS.contains(&path) {
            return None;
        }
        let model = body.get("model")?.as_str().filter(|m| !m.is_empty())?.to_owned();
        let preload = match path {
            "/api/generate" => body.get("prompt").and_then(Value::as_str).unwrap_or_default().is_empty(),
            "/api/chat" => body.get("messages").and_then(Value::as_array).is_none_or(Vec::is_empty),
            _ => false,
        };
        Some(Self { model, keep_alive: body.get("keep_alive").and_then(KeepAlive::parse), preload })
    }
}

/// A request's hold on a loaded model: it cannot be evicted while held. Dropping the lease (when the answer
/// is finished, or the client went away) starts the model's keep-alive.
#[derive(Debug)]
pub(crate) struct Lease {
    app: App,
    key: String,
    keep_alive: Option<KeepAlive>,
    /// How long the request waited for the model (its load, a load queued before it, or room being freed).
    pub(crate) waited: Duration,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let app = self.app.clone();
        app.update(|cfg| {
            let Some(rc) = cfg.residency.clone() else { return };
            let mut st = lock(&app.residency);
            let now = Instant::now();
            if let Some(i) = st.find(&self.key) {
                let e = &mut st.entries[i];
                e.refs = e.refs.saturating_sub(1);
                if let Some(ka) = self.keep_alive {
                    e.session = ka;
                }
                if e.refs == 0 && now < e.ready_at {
                    // Every request waiting for this load went away: Ollama aborts a load its requests left.
                    st.entries.remove(i);
                    lock(&app.stats).aborted_loads += 1;
                    st.freed.send_modify(|g| *g += 1);
                } else if e.refs == 0 {
                    e.idle_since = now;
                    if e.session.is_zero() {
                        st.entries.remove(i);
                        lock(&app.stats).unloads += 1;
                    } else {
                        e.expires_at = e.session.expiry(now);
                    }
                    st.freed.send_modify(|g| *g += 1);
                }
            }
            st.sync(cfg, &rc, &app, now);
        });
    }
}

/// What one attempt to take a model gave.
enum Step {
    /// Residency is off (or was turned off meanwhile): nothing to do.
    Off,
    /// Held; the model is ready at this instant.
    Held(Lease, Instant),
    /// Only busy models stand in the way: wait until one is freed.
    Wait(watch::Receiver<u64>),
}

/// Makes sure the model `want` names is loaded before the request is answered: loads it (waiting its load
/// time, evicting idle models to make room) if needed, or unloads it for a preload with `keep_alive: 0`.
/// Returns the lease to hold until the answer is finished; `None` when residency is off, the model is not
/// served, or the request was an unload.
pub(crate) async fn admit(app: &App, cfg: &MockConfig, want: Option<Want>) -> Option<Lease> {
    let want = want?;
    if cfg.residency.is_none() || !cfg.serves(&want.model) {
        return None;
    }
    let started = Instant::now();
    let key = canonical_model(&want.model);
    if want.preload && want.keep_alive.is_some_and(KeepAlive::is_zero) {
        unload(app, &key);
        return None;
    }
    // The name to report: the served list's spelling, else the request's.
    let name = cfg.models.iter().find(|m| canonical_model(m) == key).cloned().unwrap_or_else(|| want.model.clone());
    loop {
        match try_take(app, &key, &name, want.keep_alive, started) {
            Step::Off => return None,
            Step::Held(mut lease, ready_at) => {
                tokio::time::sleep_until(ready_at).await;
                lease.waited = started.elapsed();
                return Some(lease);
            }
            Step::Wait(mut freed) => {
                // A sender dropped means the server is gone; the request is moot then.
                if freed.changed().await.is_err() {
                    return None;
                }
            }
        }
    }
}

/// One attempt to take `key` for a request that arrived at `asked`: already there (loaded or loading), loaded
/// now after evicting idle models, or blocked by busy ones.
fn try_take(app: &App, key: &str, name: &str, keep_alive: Option<KeepAlive>, asked: Instant) -> Step {
    app.update(|cfg| {
        let Some(rc) = cfg.residency.clone() else { return Step::Off };
        let mut st = lock(&app.residency);
        let now = Instant::now();
        st.sync(cfg, &rc, app, now);
        let session = keep_alive.unwrap_or(rc.keep_alive);
        // Made only once held: dropping a lease releases the model (and takes the locks held here).
        let lease = || Lease { app: app.clone(), key: key.to_owned(), keep_alive, waited: Duration::ZERO };
        if let Some(i) = st.find(key) {
            let mut e = st.entries.remove(i);
            e.refs += 1;
            e.session = session;
            e.expires_at = session.expiry(now);
            let ready_at = e.ready_at;
            st.entries.push(e);
            st.write_back(cfg);
            return Step::Held(lease(), ready_at);
        }
        let size = rc.size_of(name);
        let budget = rc.memory_budget.unwrap_or(u64::MAX);
        let max_models = rc.max_loaded_models.unwrap_or(usize::MAX).max(1);
        let fits = |used: u64, count: usize| used.saturating_add(size) <= budget && count < max_models;
        // Idle models to evict, least recently used first, until the new one fits.
        let mut used = st.used();
        let mut count = st.entries.len();
        let mut victims = Vec::new();
        for (i, e) in st.entries.iter().enumerate() {
            if fits(used, count) {
                break;
            }
            if e.refs == 0 {
                victims.push(i);
                used -= e.size;
                count -= 1;
            }
        }
        if !fits(used, count) && st.entries.iter().any(|e| e.refs > 0) {
            // Only models in use stand in the way: Ollama waits for them to finish.
            return Step::Wait(st.freed.subscribe());
        }
        // Either it fits now, or it is larger than the budget with nothing else loaded.
        let busy_victims = victims.iter().filter(|&&i| st.entries[i].idle_since > asked).count() as u64;
        for &i in victims.iter().rev() {
            st.entries.remove(i);
        }
        let start = st.loader_free_at.filter(|t| *t > now).unwrap_or(now);
        let ready_at = start + rc.load_time(name);
        st.loader_free_at = Some(ready_at);
        st.entries.push(Entry {
            key: key.to_owned(),
            name: name.to_owned(),
            size,
            ready_at,
            expires_at: session.expiry(ready_at),
            session,
            refs: 1,
            idle_since: ready_at,
        });
        {
            let mut stats = lock(&app.stats);
            stats.loads += 1;
            stats.evictions += victims.len() as u64;
            stats.evicted_busy += busy_victims;
            *stats.model_loads.entry(name.to_owned()).or_default() += 1;
        }
        st.write_back(cfg);
        Step::Held(lease(), ready_at)
    })
}

/// Unloads `key` (a preload with `keep_alive: 0`): at once when idle, else once its requests finish.
fn unload(app: &App, key: &str) {
    app.update(|cfg| {
        let Some(rc) = cfg.residency.clone() else { return };
        let mut st = lock(&app.residency);
        let now = Instant::now();
        if let Some(i) = st.find(key) {
            if st.entries[i].refs == 0 {
                st.entries.remove(i);
                lock(&app.stats).unloads += 1;
                st.freed.send_modify(|g| *g += 1);
            } else {
                st.entries[i].session = KeepAlive::For(Duration::ZERO);
            }
        }
        st.sync(cfg, &rc, app, now);
    });
}

/// Keeps `lease` (if any) alive until `resp`'s body is finished or dropped.
pub(crate) fn hold(resp: axum::response::Response, lease: Option<Lease>) -> axum::response::Response {
    match lease {
        None => resp,
        Some(lease) => resp.map(|body| axum::body::Body::new(Held { inner: body, _lease: lease })),
    }
}

/// A body that holds a [`Lease`] until it is dropped.
struct Held {
    inner: axum::body::Body,
    _lease: Lease,
}

impl http_body::Body for Held {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keep_alive_forms() {
        let secs = |s: u64| Some(KeepAlive::For(Duration::from_secs(s)));
        assert_eq!(KeepAlive::parse(&json!("5m")), secs(300));
        assert_eq!(KeepAlive::parse(&json!("1h30m")), secs(5400));
        assert_eq!(KeepAlive::parse(&json!("300ms")), Some(KeepAlive::For(Duration::from_millis(300))));
        assert_eq!(KeepAlive::parse(&json!(30)), secs(30));
        assert_eq!(KeepAlive::parse(&json!("30")), secs(30));
        assert_eq!(KeepAlive::parse(&json!(0.5)), Some(KeepAlive::For(Duration::from_millis(500))));
        assert_eq!(KeepAlive::parse(&json!(-1)), Some(KeepAlive::Forever));
        assert_eq!(KeepAlive::parse(&json!("-1m")), Some(KeepAlive::Forever));
        assert!(KeepAlive::parse(&json!(0)).unwrap().is_zero());
        assert!(KeepAlive::parse(&json!("0s")).unwrap().is_zero());
        assert_eq!(KeepAlive::parse(&json!("soon")), None);
        assert_eq!(KeepAlive::parse(&json!("5x")), None);
        assert_eq!(KeepAlive::parse(&json!(null)), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size(&json!(1234)), Some(1234));
        assert_eq!(parse_size(&json!("14GB")), Some(14_000_000_000));
        assert_eq!(parse_size(&json!("3.5 GB")), Some(3_500_000_000));
        assert_eq!(parse_size(&json!("600MB")), Some(600_000_000));
        assert_eq!(parse_size(&json!("1GiB")), Some(1 << 30));
        assert_eq!(parse_size(&json!("2g")), Some(2_000_000_000));
        assert_eq!(parse_size(&json!("lots")), None);
        assert_eq!(parse_size(&json!(-1)), None);
    }

    #[test]
    fn config_json_round_trips() {
        let rc: ResidencyConfig = serde_json::from_value(json!({
            "memory_budget": "14GB",
            "model_sizes": {"a": "3.5GB", "b:7b": 7_000_000_000u64},
            "load_ms": {"a": 300},
            "default_load_ms": 100,
            "keep_alive": "10m",
        }))
        .unwrap();
        assert_eq!(rc.memory_budget, Some(14_000_000_000));
        assert_eq!(rc.size_of("a:latest"), 3_500_000_000);
        assert_eq!(rc.size_of("b:7b"), 7_000_000_000);
        assert_eq!(rc.size_of("c"), pseudo_size("c"));
        assert_eq!(rc.load_time("a"), Duration::from_millis(300));
        assert_eq!(rc.load_time("b:7b"), Duration::from_millis(100));
        assert_eq!(rc.keep_alive, KeepAlive::For(Duration::from_secs(600)));
        let back: ResidencyConfig = serde_json::from_value(serde_json::to_value(&rc).unwrap()).unwrap();
        assert_eq!(back, rc);
        assert!(serde_json::from_value::<ResidencyConfig>(json!({"memory_budgt": 1})).is_err());
        assert!(serde_json::from_value::<ResidencyConfig>(json!({"keep_alive": "later"})).is_err());
    }

    #[test]
    fn want_only_for_inference() {
        assert!(Want::parse("/api/ps", &json!({"model": "m"})).is_none());
        assert!(Want::parse("/api/tags", &json!({})).is_none());
        assert!(Want::parse("/api/chat", &json!({"messages": []})).is_none());
        let w = Want::parse("/api/generate", &json!({"model": "m", "keep_alive": 0})).unwrap();
        assert!(w.preload && w.keep_alive.unwrap().is_zero());
        let w = Want::parse("/api/generate", &json!({"model": "m", "prompt": "hi"})).unwrap();
        assert!(!w.preload && w.keep_alive.is_none());
        assert!(Want::parse("/api/chat", &json!({"model": "m"})).unwrap().preload);
        assert!(!Want::parse("/v1/chat/completions", &json!({"model": "m", "messages": []})).unwrap().preload);
    }
}
