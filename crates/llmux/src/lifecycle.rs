//! The running service around a config: live reload and drain.
//!
//! [`Live`] holds the current [`Executor`] behind an atomic pointer. A request takes the snapshot that is
//! current when it arrives and finishes on it, so a reload never changes a request halfway. Reloads come from
//! SIGHUP, from a change of the config file or its includes (polled by content, which also sees bind mounts,
//! Swarm configs and Kubernetes' ConfigMap symlink swaps that file-event APIs miss), and from
//! `POST /config/reload`. Each one validates the whole new config first and keeps the running one on any error.
//!
//! Draining flips readiness to 503 so load balancers stop sending before the listener closes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{self, Config, RedisSettings};
use crate::executor::Executor;
use crate::server::tls::TlsFiles;
use crate::upstream::HttpClient;

/// The service's current config and what hangs off it.
pub struct Live {
    current: ArcSwap<Executor>,
    /// The config file, when llmux was started with one (the demo and tests have none).
    source: Option<PathBuf>,
    health: Mutex<Option<tokio::task::AbortHandle>>,
    draining: AtomicBool,
    /// Serialises reloads; remembers what the last attempt read.
    last: tokio::sync::Mutex<Fingerprint>,
    tls: Option<TlsFiles>,
    /// The Redis that replicas share state through, as configured at start-up.
    redis: Option<RedisSettings>,
    /// Where llmux listens, for the reload guard (unset: loopback, as in tests and the demo).
    exposure: std::sync::OnceLock<Exposure>,
    /// Where finished requests are told (access log, metrics, dashboard, spend); it outlives reloads.
    hub: Arc<crate::observe::Hub>,
    /// Virtual keys and spend, when a key store is open (not in tests that serve without one).
    keys: std::sync::OnceLock<Arc<crate::keys::Keys>>,
    /// The configured key store did not answer at start-up and is being retried.
    keys_awaited: AtomicBool,
    /// `--data-dir`: where llmux keeps its files (the SQLite key store).
    data_dir: std::sync::OnceLock<PathBuf>,
    /// `/metrics`: counted from the hub, on when the current config asks for it.
    metrics: Arc<crate::metrics::Metrics>,
    /// Warm-up ahead of demand, when the config at start-up asked for it.
    warmup: std::sync::OnceLock<Arc<crate::warmup::Warmup>>,
    /// The file watcher's debounce, once [`Live::spawn_watcher`] started it; one watch round at a time.
    watcher: std::sync::OnceLock<Duration>,
    watching: tokio::sync::Mutex<()>,
}

/// What one look of the file watcher found (see [`Live::check_files`]).
#[derive(Debug)]
pub enum WatchRound {
    /// The files read the same as at the last load attempt.
    Unchanged,
    /// They changed, and were still changing after the debounce: the next round looks again.
    Unsettled,
    /// They changed, and the reload that followed went like this.
    Reloaded(Result<ReloadReport, Vec<String>>),
}

/// How often a key store that did not answer at start-up is tried again.
const KEY_STORE_RETRY: Duration = Duration::from_secs(2);

/// Who can reach the listener, as far as authentication goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exposure {
    /// The listener is on a non-loopback address (`0.0.0.0`, a LAN address).
    pub public: bool,
    /// `--allow-no-auth` / `LLMUX_ALLOW_NO_AUTH=1`: serving such an address without a master key is intended.
    pub allow_no_auth: bool,
}

/// Why `config` must not be served on a listener with `exposure`: no master key on a non-loopback address,
/// unless allowed. LiteLLM refuses to start without a master key; llmux keeps keyless serving for loopback
/// (a laptop, the demo, tests) and for those who say so.
pub fn serving_refusal(config: &Config, exposure: Exposure) -> Option<String> {
    (config.general.master_key.is_none() && exposure.public && !exposure.allow_no_auth).then(|| {
        "general_settings.master_key: not set while llmux listens on a non-loopback address, where anyone who can \
         reach it could use every model. Set master_key (or os.environ/LITELLM_MASTER_KEY), listen on 127.0.0.1 (--host), or pass \
         --allow-no-auth (LLMUX_ALLOW_NO_AUTH=1) if a proxy in front authenticates"
            .to_owned()
    })
}

/// Why a reload from `old` to `new` is refused, each reason a line; empty when it may go ahead. A reload must
/// not empty the service (an empty or half-written file reads as a config with no deployments), nor switch
/// authentication off or to another key unless the new file says so (`general_settings.
/// allow_auth_change_on_reload: true`; a restart always may), nor reach a state start-up would refuse.
pub fn reload_refusal(old: &Config, new: &Config, exposure: Exposure) -> Vec<String> {
    let mut why = Vec::new();
    if new.deployments.is_empty() && !old.deployments.is_empty() {
        why.push(format!(
            "model_list: the new config has no deployments (an empty or half-written file?) while the running one has {}; \
             restart llmux to serve an empty config",
            old.deployments.len()
        ));
    }
    if !new.general.allow_auth_change_on_reload {
        let change = match (&old.general.master_key, &new.general.master_key) {
            (Some(_), None) => Some("drops general_settings.master_key (every route would answer without a key)"),
            (Some(a), Some(b)) if a != b => Some("changes general_settings.master_key"),
            _ => None,
        };
        if let Some(change) = change {
            why.push(format!(
                "general_settings.master_key: the new config {change}; set general_settings.allow_auth_change_on_reload: true \
                 in it to allow that on reload, or restart llmux"
            ));
        }
        if old.ollama_requires_key && !new.ollama_requires_key && new.general.master_key.is_some() {
            why.push(
                "llmux_settings.ollama_api.require_key: the new config turns the key off on Ollama's routes; set \
                 general_settings.allow_auth_change_on_reload: true to allow that on reload, or restart llmux"
                    .to_owned(),
            );
        }
    }
    why.extend(serving_refusal(new, exposure));
    why
}

/// The files a config was read from, and a hash of their contents.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Fingerprint {
    files: Vec<PathBuf>,
    hash: [u8; 32],
}

/// Where a config came from: the file named on the command line and every file it read.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The path as given.
    pub path: PathBuf,
    /// The files read (the config and its includes), from [`config::load_tracked`].
    pub files: Vec<PathBuf>,
}

/// What a successful reload did.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// Deployments in the new config.
    pub deployments: usize,
    /// The new config's warnings, and a certificate that could not be reloaded.
    pub warnings: Vec<String>,
}

impl Live {
    /// Serves `config` (read from `source`, if any) and starts its background health checks.
    pub fn new(config: Config, source: Option<ConfigSource>, client: HttpClient, tls: Option<TlsFiles>) -> Arc<Live> {
        register_secrets(&config);
        let redis = config.router.redis.clone();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        metrics.set_enabled(config.telemetry.metrics);
        let executor = Executor::new(Arc::new(config), client);
        let health = executor.spawn_health_checks();
        let last = match &source {
            Some(source) => fingerprint(&watched(&source.path, source.files.clone())),
            None => Fingerprint::default(),
        };
        let live = Arc::new(Live {
            current: ArcSwap::from_pointee(executor),
            source: source.map(|s| s.path),
            health: Mutex::new(health),
            draining: AtomicBool::new(false),
            last: tokio::sync::Mutex::new(last),
            tls,
            redis,
            exposure: std::sync::OnceLock::new(),
            hub: Arc::new(crate::observe::Hub::default()),
            keys: std::sync::OnceLock::new(),
            keys_awaited: AtomicBool::new(false),
            data_dir: std::sync::OnceLock::new(),
            metrics,
            warmup: std::sync::OnceLock::new(),
            watcher: std::sync::OnceLock::new(),
            watching: tokio::sync::Mutex::new(()),
        });
        live.hub.register(Arc::new(crate::access_log::AccessLog));
        live.hub.register(live.metrics.clone());
        if let Some(redis) = &live.redis {
            // Spawned once `live` exists: the task ends when it can no longer reach it.
            let prefix = std::env::var("LLMUX_REDIS_PREFIX").unwrap_or_else(|_| "llmux".to_owned());
            let this = Arc::downgrade(&live);
            let outbox = crate::shared::spawn(redis, prefix, move || {
                this.upgrade().map(|live: Arc<Live>| live.executor().state.clone())
            });
            live.executor().state.attach(outbox);
        }
        prepare_semantic_routers(live.executor());
        live
    }

    /// The Redis replicas share state through, as configured at start.
    pub fn redis(&self) -> Option<&RedisSettings> {
        self.redis.as_ref()
    }

    /// The executor of the current config.
    pub fn executor(&self) -> Arc<Executor> {
        self.current.load_full()
    }

    /// Records where llmux listens, so a reload that would leave a public listener without a key is refused.
    /// Set once; later calls are ignored.
    pub fn set_exposure(&self, exposure: Exposure) {
        let _ = self.exposure.set(exposure);
    }

    /// Where finished requests are told.
    pub fn hub(&self) -> &Arc<crate::observe::Hub> {
        &self.hub
    }

    /// Serves virtual keys from `keys` and counts spend into it. Set once; later calls are ignored.
    pub fn attach_keys(&self, keys: Arc<crate::keys::Keys>) {
        if self.keys.set(keys.clone()).is_ok() {
            self.hub.register(keys.sink());
        }
    }

    /// The key store, when one is open.
    pub fn keys(&self) -> Option<&Arc<crate::keys::Keys>> {
        self.keys.get()
    }

    /// Opens the key store in the background, retrying until it answers (a PostgreSQL that was not up when
    /// llmux started): meanwhile the master key works, virtual keys are refused and readiness says so.
    pub fn open_keys_later(self: &Arc<Self>, general: crate::config::GeneralSettings, dir: PathBuf) {
        self.keys_awaited.store(true, Ordering::Relaxed);
        let live = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(KEY_STORE_RETRY).await;
                let Some(serving) = live.upgrade() else { return };
                let redis = serving.redis.clone();
                if let Ok(keys) = crate::keys::Keys::open(&general, &dir, redis.as_ref()).await {
                    tracing::info!("the key store answers: virtual keys are served");
                    serving.attach_keys(keys);
                    serving.keys_awaited.store(false, Ordering::Relaxed);
                    return;
                }
            }
        });
    }

    /// Whether the configured key store is still being waited for.
    pub fn keys_awaited(&self) -> bool {
        self.keys_awaited.load(Ordering::Relaxed)
    }

    /// Keeps warm-up's handle (it learns from the hub and is started once).
    pub fn set_warmup(&self, warmup: Arc<crate::warmup::Warmup>) {
        let _ = self.warmup.set(warmup);
    }

    /// Warm-up ahead of demand, when it runs.
    pub fn warmup(&self) -> Option<&Arc<crate::warmup::Warmup>> {
        self.warmup.get()
    }

    /// Records `--data-dir` (set once).
    pub fn set_data_dir(&self, dir: PathBuf) {
        let _ = self.data_dir.set(dir);
    }

    /// `--data-dir`, where llmux keeps its files, when serving from a config file.
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.get().map(PathBuf::as_path)
    }

    /// What `/metrics` serves.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// The native TLS settings, when llmux terminates TLS itself.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// Whether a shutdown has begun (readiness answers 503).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Begins a shutdown: readiness answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Re-reads and validates the config file, then switches new requests to it. `trigger` names the cause in
    /// the log. On error the running config stays and the error lines (with YAML paths) are returned.
    pub async fn reload(&self, trigger: &str) -> Result<ReloadReport, Vec<String>> {
        self.reload_checked(trigger, None).await
    }

    /// [`Live::reload`]; with `settled`, only when the files still hash to it once read (the watcher's debounce:
    /// a file being written while it was read is left for the next poll, never half loaded).
    async fn reload_checked(&self, trigger: &str, settled: Option<[u8; 32]>) -> Result<ReloadReport, Vec<String>> {
        let Some(path) = self.source.clone() else {
            return Err(vec!["llmux was started without a config file (--config); there is nothing to reload".into()]);
        };
        let mut last = self.last.lock().await;
        let before = fingerprint(&last.files);
        let (loaded, files) = config::load_tracked(&path);
        let after = fingerprint(&watched(&path, files));
        // A file that changed while it was being read is reloaded again on the next poll.
        let unsettled = settled.is_some_and(|hash| hash != after.hash);
        *last = if after.files == before.files && before.hash != after.hash || unsettled { before } else { after };
        drop(last);
        if unsettled {
            tracing::info!(trigger, "the config file changed while it was read; reloading once it is stable");
            return Err(vec!["the config file changed while it was read; try again".to_owned()]);
        }
        let loaded = loaded.and_then(|(config, diags)| {
            let refused =
                reload_refusal(&self.executor().config, &config, self.exposure.get().copied().unwrap_or_default());
            if refused.is_empty() {
                return Ok((config, diags));
            }
            let mut refusal = config::Diagnostics::default();
            for why in refused {
                let (at, message) = why.split_once(": ").unwrap_or(("config", why.as_str()));
                refusal.error(at, message);
            }
            Err(refusal)
        });
        match loaded {
            Ok((config, diags)) => {
                let mut warnings: Vec<String> = diags.warnings().map(ToString::to_string).collect();
                for w in &warnings {
                    tracing::warn!("{w}");
                }
                if let Some(tls) = &self.tls {
                    if let Err(e) = tls.reload() {
                        tracing::warn!("{e}; keeping the certificate in use");
                        warnings.push(format!("{e}; keeping the certificate in use"));
                    }
                }
                if config.router.redis != self.redis {
                    let w = "router_settings.redis_*: the Redis settings changed; they take effect at the next restart";
                    tracing::warn!("{w}");
                    warnings.push(w.to_owned());
                }
                let deployments = config.deployments.len();
                self.install(config);
                tracing::info!(trigger, deployments, warnings = warnings.len(), "config reloaded");
                Ok(ReloadReport { deployments, warnings })
            }
            Err(diags) => {
                let errors: Vec<String> = diags.errors().map(ToString::to_string).collect();
                tracing::error!(trigger, "config reload rejected; the running config stays:");
                for e in &errors {
                    tracing::error!("{e}");
                }
                Err(errors)
            }
        }
    }

    /// Switches new requests to `config`, keeping what the running one learned about hosts and deployments.
    fn install(&self, config: Config) {
        register_secrets(&config);
        self.metrics.set_enabled(config.telemetry.metrics);
        let old = self.current.load_full();
        let next = Arc::new(Executor::successor(&old, Arc::new(config)));
        let health = next.spawn_health_checks();
        prepare_semantic_routers(next.clone());
        self.current.store(next);
        let mut slot = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(previous) = std::mem::replace(&mut *slot, health) {
            previous.abort();
        }
    }

    /// Looks at the config file and its includes every `every` (see [`Live::check_files`]), until draining.
    pub fn spawn_watcher(self: &Arc<Self>, every: Duration, debounce: Duration) {
        if self.source.is_none() || self.watcher.set(debounce).is_err() {
            return;
        }
        let live = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(live) = live.upgrade() else { return };
                if live.is_draining() {
                    return;
                }
                live.check_files().await;
            }
        });
    }

    /// One round of the file watcher, now: when the files changed since the last load attempt, and still read
    /// the same after the debounce (so a half-written file is not loaded), reloads. Rounds run one at a time,
    /// so when this returns the files as they were when it was called have been looked at. `None` when no
    /// watcher runs (`--watch 0`, or no config file): `POST /llmux/config/check` lets tests wait for a round
    /// this way instead of sleeping through the poll interval.
    pub async fn check_files(&self) -> Option<WatchRound> {
        let debounce = *self.watcher.get()?;
        let _one_at_a_time = self.watching.lock().await;
        let last = self.last.lock().await.clone();
        let now = fingerprint(&last.files);
        if now.hash == last.hash {
            return Some(WatchRound::Unchanged);
        }
        tokio::time::sleep(debounce).await;
        if fingerprint(&last.files).hash != now.hash {
            return Some(WatchRound::Unsettled);
        }
        Some(WatchRound::Reloaded(self.reload_checked("config file changed", Some(now.hash)).await))
    }
}

/// Embeds the semantic routers' utterances in the background, when the config has any.
fn prepare_semantic_routers(executor: Arc<Executor>) {
    let any = executor
        .config
        .deployments
        .iter()
        .any(|d| matches!(&d.target, crate::config::Target::AutoRouter { semantic: Some(_), .. }));
    if any {
        tokio::spawn(async move { executor.prepare_semantic_routers().await });
    }
}

fn register_secrets(config: &Config) {
    let secrets = config
        .deployments
        .iter()
        .filter_map(|d| d.engine().and_then(|e| e.api_key.as_ref()))
        .chain(config.general.master_key.as_ref())
        .chain(config.general.database_url.as_ref())
        .chain(config.router.redis.iter().flat_map(|r| r.password.iter().chain(r.url.iter())))
        .map(|s| s.expose().to_owned())
        .chain(config.deployments.iter().filter_map(|d| d.engine()).flat_map(|e| {
            // Credentials configured as headers (an Azure Entra token, an `Authorization` in extra_headers).
            e.extra_headers
                .iter()
                .filter(|(name, _)| matches!(name.as_str(), "authorization" | "api-key" | "x-api-key"))
                .filter_map(|(_, value)| value.to_str().ok())
                .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).to_owned())
        }))
        .collect();
    crate::redact::register_secrets(secrets);
}

/// The files to watch: those a load read, and the path as given, whose canonical form may be a symlink target
/// that a swap removes.
fn watched(path: &Path, mut files: Vec<PathBuf>) -> Vec<PathBuf> {
    if !files.iter().any(|f| f == path) {
        files.insert(0, path.to_path_buf());
    }
    files
}

/// Hashes the contents of `files` (a missing file hashes as missing, so its return is a change too). Config
/// files are small: reading them inline costs less than a hop to a blocking thread.
fn fingerprint(files: &[PathBuf]) -> Fingerprint {
    let mut hasher = Sha256::new();
    for file in files {
        hash_file(&mut hasher, file);
    }
    Fingerprint { files: files.to_vec(), hash: hasher.finalize().into() }
}

fn hash_file(hasher: &mut Sha256, file: &Path) {
    hasher.update(file.as_os_str().as_encoded_bytes());
    match std::fs::read(file) {
        Ok(bytes) => {
            hasher.update([1]);
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
        }
        Err(_) => hasher.update([0]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        config::load_str(yaml, &|_| None).unwrap_or_else(|d| panic!("{d}")).0
    }

    const MODELS: &str = "model_list:\n  - model_name: g\n    litellm_params: {model: ollama_chat/m, api_base: \"http://127.0.0.1:1\"}\n";

    fn with(general: &str) -> Config {
        config(&format!("{MODELS}general_settings:\n{general}"))
    }

    const LOOPBACK: Exposure = Exposure { public: false, allow_no_auth: false };
    const PUBLIC: Exposure = Exposure { public: true, allow_no_auth: false };

    #[test]
    fn a_reload_keeps_the_service_and_its_key() {
        let running = with("  master_key: sk-a\n");
        assert!(reload_refusal(&running, &with("  master_key: sk-a\n"), PUBLIC).is_empty());
        // An empty file: no deployments.
        let empty = config("");
        let why = reload_refusal(&running, &empty, LOOPBACK);
        assert!(why.iter().any(|w| w.starts_with("model_list:")), "{why:?}");
        // general_settings lost, or another key: refused unless the new file allows it.
        let keyless = config(MODELS);
        assert!(reload_refusal(&running, &keyless, LOOPBACK)[0].contains("drops general_settings.master_key"));
        assert!(reload_refusal(&running, &with("  master_key: sk-b\n"), LOOPBACK)[0].contains("changes"));
        assert!(reload_refusal(&running, &with("  master_key: sk-b\n  allow_auth_change_on_reload: true\n"), PUBLIC)
            .is_empty());
        // Allowed to drop the key, but a public listener without one is still refused (as at start-up)...
        let open = with("  allow_auth_change_on_reload: true\n");
        assert_eq!(reload_refusal(&running, &open, PUBLIC).len(), 1);
        // ... unless --allow-no-auth; on loopback it is fine.
        assert!(reload_refusal(&running, &open, Exposure { public: true, allow_no_auth: true }).is_empty());
        assert!(reload_refusal(&running, &open, LOOPBACK).is_empty());
        // Setting a key where there was none only closes the service: fine.
        assert!(reload_refusal(&keyless, &running, LOOPBACK).is_empty());
    }

    #[test]
    fn a_public_listener_needs_a_key_or_a_waiver() {
        let keyless = config(MODELS);
        assert!(serving_refusal(&keyless, PUBLIC).is_some());
        assert!(serving_refusal(&keyless, LOOPBACK).is_none());
        assert!(serving_refusal(&keyless, Exposure { public: true, allow_no_auth: true }).is_none());
        assert!(serving_refusal(&with("  master_key: sk-a\n"), PUBLIC).is_none());
    }
}
