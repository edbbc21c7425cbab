//! Command line: `llmux --config FILE` serves, `llmux check FILE` validates and prints the routing table,
//! `llmux demo` serves the home-lab example against simulated engines, `llmux status` shows a running one's
//! fleet, `llmux healthcheck` asks a running one whether it is ready.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, Diagnostics};
use crate::lifecycle::{ConfigSource, Exposure, Live};
use crate::server::tls::TlsFiles;
use crate::server::{self, Drain};

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(name = "llmux", version, about = "OpenAI-compatible LLM router that reads LiteLLM's proxy config.yaml")]
pub struct Args {
    /// LiteLLM proxy config file.
    #[arg(long, short, env = "CONFIG_FILE_PATH", global = true)]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0", global = true)]
    pub host: IpAddr,
    /// Port to listen on.
    #[arg(long, short, default_value_t = 4000, env = "PORT", global = true)]
    pub port: u16,
    /// Seconds between SIGTERM and closing the listener: readiness answers 503 meanwhile, so a load balancer
    /// stops sending before connections are refused.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0, env = "LLMUX_DRAIN_GRACE", global = true)]
    pub drain_grace: f64,
    /// Seconds requests in flight (streams included) may run after the listener closes [default: 30, or
    /// LiteLLM's GRACEFUL_SHUTDOWN_TIMEOUT].
    #[arg(long, value_name = "SECONDS", env = "LLMUX_DRAIN_TIMEOUT", global = true)]
    pub drain_timeout: Option<f64>,
    /// Seconds between checks of the config file (and its includes) for changes; 0 turns watching off
    /// (SIGHUP and POST /config/reload still reload).
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, env = "LLMUX_WATCH_INTERVAL", global = true)]
    pub watch: f64,
    /// PEM certificate chain: serve HTTPS natively (re-read on every config reload).
    #[arg(long, value_name = "FILE", env = "LLMUX_TLS_CERT", requires = "tls_key", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE", env = "LLMUX_TLS_KEY", requires = "tls_cert", global = true)]
    pub tls_key: Option<PathBuf>,
    /// Connection workers, each a thread serving its connections from accept to close [default: one per core].
    #[arg(long, value_name = "N", env = "LLMUX_WORKERS", global = true)]
    pub workers: Option<usize>,
    /// Serve a non-loopback address without general_settings.master_key (llmux refuses to otherwise): for
    /// when a proxy in front authenticates.
    #[arg(long, env = "LLMUX_ALLOW_NO_AUTH", global = true)]
    pub allow_no_auth: bool,
    /// Log lines as readable text or as one JSON object each (the access log's fields at the top level).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "LLMUX_LOG_FORMAT", global = true)]
    pub log_format: LogFormat,
    /// Where llmux keeps its files: the SQLite store of virtual keys and spend (unless
    /// general_settings.database_url names a PostgreSQL) [default: the config file's directory].
    #[arg(long, value_name = "DIR", env = "LLMUX_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Warm-up (llmux_settings.warmup) on a simulated clock that starts at this time (unix ms) and moves only
    /// when `POST /llmux/clock` says: benchmarks and tests replay a week of demand in seconds.
    #[arg(long, value_name = "UNIX_MS", hide = true, global = true)]
    pub simulated_clock: Option<u64>,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-12-03T00:00:00Z  INFO llmux::access: … request_id=… status=200`.
    Text,
    /// `{"timestamp":…,"level":"INFO","target":"llmux::access","request_id":…,"status":200,…}`.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a config and print the resolved routing table; exits non-zero on errors.
    Check {
        /// The config file (or use --config).
        file: Option<PathBuf>,
        /// Also ask each engine host for its models (cheap listings, never a generation) and check that the
        /// models assigned to a host with `llmux_settings.hosts` limits can all stay loaded together.
        #[arg(long)]
        probe: bool,
    },
    /// Serve the bundled home-lab config against simulated Ollama hosts on loopback.
    Demo,
    /// Show a running llmux's fleet: every host with the models loaded on it, every group's deployments.
    Status {
        /// The llmux to ask [default: http://127.0.0.1:PORT].
        #[arg(long)]
        url: Option<String>,
        /// Its master key.
        #[arg(long, env = "LITELLM_MASTER_KEY", hide_env_values = true)]
        key: Option<String>,
    },
    /// Exit 0 if a running llmux answers its readiness check (for container HEALTHCHECKs), 1 otherwise.
    Healthcheck {
        /// What to GET [default: http(s)://127.0.0.1:PORT/health/readiness].
        #[arg(long)]
        url: Option<String>,
    },
}

/// How `llmux` serves, from the command line.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How a shutdown drains.
    pub drain: Drain,
    /// Certificate and key for native TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How often the config file is checked for changes (zero: never).
    pub watch: Duration,
    /// Connection workers.
    pub workers: usize,
    /// `--allow-no-auth`: a non-loopback address may be served without a master key.
    pub allow_no_auth: bool,
    /// `--data-dir`, as given.
    pub data_dir: Option<PathBuf>,
    /// `--simulated-clock`: warm-up's clock starts here (unix ms) and is moved by `POST /llmux/clock`.
    pub simulated_clock: Option<u64>,
}

impl Args {
    fn serve_options(&self) -> Result<ServeOptions, String> {
        let seconds = |what: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(format!("{what} must be a number of seconds, 0 or more (got {v})"))
            }
        };
        let timeout = match self.drain_timeout {
            Some(v) => v,
            None => match std::env::var("GRACEFUL_SHUTDOWN_TIMEOUT") {
                Ok(v) => v.trim().parse().map_err(|_| format!("GRACEFUL_SHUTDOWN_TIMEOUT={v:?} is not a number"))?,
                Err(_) => 30.0,
            },
        };
        Ok(ServeOptions {
            drain: Drain {
                grace: seconds("--drain-grace", self.drain_grace)?,
                timeout: seconds("--drain-timeout", timeout)?,
            },
            tls: self.tls_cert.clone().zip(self.tls_key.clone()),
            watch: seconds("--watch", self.watch)?,
            workers: match self.workers {
                Some(0) => return Err("--workers must be 1 or more".into()),
                Some(n) => n,
                None => crate::server::workers::default_count(),
            },
            allow_no_auth: self.allow_no_auth,
            data_dir: self.data_dir.clone(),
            simulated_clock: self.simulated_clock,
        })
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    let options = match args.serve_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("llmux: {e}");
            return ExitCode::from(2);
        }
    };
    match args.command {
        Some(Command::Check { ref file, probe }) => match file.as_ref().or(args.config.as_ref()) {
            Some(path) => check(path, probe, args.data_dir.as_deref()),
            None => {
                eprintln!("usage: llmux check CONFIG.yaml");
                ExitCode::from(2)
            }
        },
        #[cfg(feature = "demo")]
        Some(Command::Demo) => {
            // Nobody balances load onto the demo: Ctrl-C need not wait for one to notice.
            let options = ServeOptions { drain: Drain { grace: Duration::ZERO, ..options.drain }, ..options };
            run(crate::demo::run(SocketAddr::new(demo_host(&args), args.port), options))
        }
        // A production build leaves the mock engine out (`--no-default-features`); the subcommand stays so
        // `llmux demo` says why instead of clap's "unrecognized subcommand".
        #[cfg(not(feature = "demo"))]
        Some(Command::Demo) => {
            eprintln!("llmux: this build has no demo (built without the `demo` cargo feature)");
            ExitCode::from(2)
        }
        Some(Command::Status { ref url, ref key }) => {
            let url = url.clone().unwrap_or_else(|| format!("http://127.0.0.1:{}", args.port));
            let key = key.clone();
            run(async move {
                let fleet = crate::status::fetch(&url, key.as_deref()).await.map_err(|e| anyhow::anyhow!(e))?;
                print!("{}", crate::status::render(&fleet));
                Ok(())
            })
        }
        Some(Command::Healthcheck { ref url }) => {
            let scheme = if options.tls.is_some() { "https" } else { "http" };
            let url = url.clone().unwrap_or_else(|| format!("{scheme}://127.0.0.1:{}/health/readiness", args.port));
            run(async move {
                crate::healthcheck::check(&url).await.map_err(|e| anyhow::anyhow!("not ready: {e}"))?;
                println!("ready: {url}");
                Ok(())
            })
        }
        None => {
            let Some(path) = args.config.clone() else {
                eprintln!("llmux: no config given; run `llmux --config config.yaml`, or `llmux demo` to try it");
                return ExitCode::from(2);
            };
            let (loaded, files) = config::load_tracked(&path);
            let Some(config) = report(&path, loaded) else { return ExitCode::FAILURE };
            let source = ConfigSource { path, files };
            run(serve(config, Some(source), SocketAddr::new(args.host, args.port), options))
        }
    }
}

/// The demo listens on loopback unless --host says otherwise: it has no master key.
#[cfg(feature = "demo")]
fn demo_host(args: &Args) -> IpAddr {
    if args.host.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        args.host
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LLMUX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = format == LogFormat::Text && std::io::IsTerminal::is_terminal(&std::io::stderr());
    // Every event one line, whatever a client or engine put in the values it carries (see `OneLineStderr`).
    let writer = crate::redact::OneLineStderr { keep_ansi: ansi };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

fn run(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    // Requests are served by the connection workers (`server::workers`); this runtime accepts connections
    // and runs the background work.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("llmux: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("llmux: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_diagnostics(diags: &Diagnostics) {
    for d in diags.iter() {
        eprintln!("{d}");
    }
}

/// Prints every warning of a load once and, on failure, every error.
fn report(path: &Path, loaded: Result<(Config, Diagnostics), Diagnostics>) -> Option<Config> {
    match loaded {
        Ok((config, diags)) => {
            print_diagnostics(&diags);
            Some(config)
        }
        Err(diags) => {
            print_diagnostics(&diags);
            let n = diags.errors().count();
            eprintln!("llmux: {} has {n} error{}; not starting", path.display(), if n == 1 { "" } else { "s" });
            None
        }
    }
}

/// The warm-up schedule learned so far, from the profile in the data directory (`--data-dir`, else beside the
/// config file, as `serve` keeps it).
fn print_warmup_schedule(config_path: &Path, data_dir: Option<&Path>) {
    let beside = config_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir = data_dir.unwrap_or(beside);
    let now = u64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis(),
    )
    .unwrap_or(0);
    let schedule = crate::warmup::read(dir).map(|p| p.schedule(now)).unwrap_or_default();
    if schedule.is_empty() {
        println!("warm-up: nothing learned yet ({} in {})", crate::warmup::FILE, dir.display());
    }
    for (group, warm_ups) in schedule {
        let at: Vec<String> = warm_ups
            .iter()
            .map(|(minute, days)| {
                let window = crate::router::warmup::WINDOW_DAYS;
                format!("{:02}:{:02} UTC ({days} of the last {window} days)", minute / 60, minute % 60)
            })
            .collect();
        println!("warm-up: {group} woken and preloaded at {}", at.join(", "));
    }
}

fn check(path: &Path, probe: bool, data_dir: Option<&Path>) -> ExitCode {
    match config::load(path) {
        Ok((config, diags)) => {
            print_diagnostics(&diags);
            print!("{}", config::routing_table(&config));
            if config.warmup {
                print_warmup_schedule(path, data_dir);
            }
            println!();
            let limited = config.hosts.iter().filter(|h| h.limits != Default::default()).count();
            if probe {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                    eprintln!("llmux: cannot start the runtime");
                    return ExitCode::FAILURE;
                };
                if !runtime.block_on(check_placement(&config)) {
                    return ExitCode::FAILURE;
                }
            } else if limited > 0 {
                println!("{limited} hosts declare memory limits: `llmux check --probe` checks them against the engines' model sizes\n");
            }
            println!(
                "{}: OK ({} deployments, {} groups, {} aliases, {} warnings)",
                path.display(),
                config.deployments.len(),
                config.groups.len(),
                config.aliases.len(),
                diags.warnings().count()
            );
            ExitCode::SUCCESS
        }
        Err(diags) => {
            print_diagnostics(&diags);
            println!("{}: {} errors", path.display(), diags.errors().count());
            ExitCode::FAILURE
        }
    }
}

/// Probes every host and prints, for each with declared limits, whether its assigned models fit together.
/// False when one does not, or a host could not be asked.
async fn check_placement(config: &Config) -> bool {
    let Ok(client) = crate::upstream::client() else { return false };
    let state = crate::state::State::new(config);
    crate::health::probe_all(config, &state, &client).await;
    let mut ok = true;
    let gb = |b: u64| b as f64 / 1e9;
    for (host, seen) in config.hosts.iter().zip(state.hosts()) {
        if let Some(reason) = (seen.status == crate::state::HostStatus::Down).then_some(&seen.reason) {
            println!("{}: not reachable ({reason})", host.origin);
            ok &= host.limits == Default::default();
            continue;
        }
        let Some(placement) = crate::health::placement(config, host, &seen.sizes) else { continue };
        let models: Vec<String> = placement
            .assigned
            .iter()
            .map(|a| match a.size {
                Some(size) => format!("{} {:.1} GB", a.model, gb(size)),
                None => format!("{} (size unknown)", a.model),
            })
            .collect();
        let budget =
            placement.memory_budget.map_or("no memory budget".to_owned(), |b| format!("budget {:.1} GB", gb(b)));
        let verdict = match (&placement.problem, placement.fits) {
            (Some(problem), _) => {
                ok = false;
                format!("DOES NOT FIT: {problem}")
            }
            (None, None) => "unknown: the engine does not report every size".to_owned(),
            (None, Some(_)) => "fits".to_owned(),
        };
        println!(
            "{}: {} ({:.1} GB, {budget}): {verdict}",
            host.origin,
            models.join(", "),
            gb(placement.assigned_bytes)
        );
    }
    println!();
    ok
}

/// Serves `config` (read from `source`, which is then watched and reloaded) on `addr` until a shutdown signal,
/// then drains.
pub async fn serve(
    config: Config,
    source: Option<ConfigSource>,
    addr: SocketAddr,
    options: ServeOptions,
) -> anyhow::Result<()> {
    let exposure = Exposure { public: !addr.ip().is_loopback(), allow_no_auth: options.allow_no_auth };
    if let Some(refusal) = crate::lifecycle::serving_refusal(&config, exposure) {
        anyhow::bail!("not starting: {refusal}");
    }
    if config.general.master_key.is_none() {
        if exposure.public {
            tracing::warn!(
                "no general_settings.master_key (--allow-no-auth): ANYONE who can reach {addr} can use every model"
            );
        } else {
            tracing::info!("no general_settings.master_key: API calls need no key (listening on loopback only)");
        }
    }
    let tls = match &options.tls {
        Some((cert, key)) => Some(TlsFiles::load(cert, key).map_err(|e| anyhow::anyhow!(e))?),
        None => None,
    };
    // The key store lives beside the config unless --data-dir says otherwise; the demo (no file) has none.
    let data_dir = options.data_dir.clone().or_else(|| {
        let path = source.as_ref()?.path.clone();
        Some(path.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf))
    });
    // As in LiteLLM, virtual keys are made with the master key: without one there is nothing to store.
    let mut keys_later = None;
    let keys = match (&data_dir, &config.general.master_key) {
        (Some(dir), Some(_)) => match crate::keys::Keys::open(&config.general, dir, config.router.redis.as_ref()).await
        {
            Ok(keys) => Some(keys),
            // A PostgreSQL that is not up yet (a host rebooting, a stack starting in any order) must not keep
            // llmux from serving: the master key works meanwhile.
            Err(e) if config.general.database_url.is_some() => {
                tracing::error!(
                    "{e}: serving without virtual keys until the database answers (the master key works; retrying)"
                );
                keys_later = Some((config.general.clone(), dir.clone()));
                None
            }
            Err(e) => return Err(e),
        },
        (_, None) if config.general.database_url.is_some() => {
            tracing::warn!("general_settings.database_url is set but no master_key: virtual keys and spend are off");
            None
        }
        _ => None,
    };
    let otel = crate::otel::Settings::from_env(&|name| std::env::var(name).ok(), config.telemetry.otel)
        .map_err(|e| anyhow::anyhow!("OpenTelemetry: {e}"))?;
    let live = Live::new(config, source, crate::upstream::client()?, tls);
    if let Some(otel) = otel {
        live.hub().register(crate::otel::Exporter::start(otel, crate::upstream::client()?));
    }
    live.set_exposure(exposure);
    if live.executor().config.warmup {
        crate::warmup::Warmup::start(&live, data_dir.as_deref(), options.simulated_clock);
    }
    if let Some(dir) = data_dir {
        live.set_data_dir(dir);
    }
    if let Some(keys) = keys {
        live.attach_keys(keys);
    }
    if let Some((general, dir)) = keys_later {
        live.open_keys_later(general, dir);
    }
    if !options.watch.is_zero() {
        live.spawn_watcher(options.watch, Duration::from_millis(300));
    }
    let served = server::serve(live.clone(), addr, options.drain, options.workers).await;
    if let Some(keys) = live.keys() {
        keys.flush().await;
    }
    served
}
