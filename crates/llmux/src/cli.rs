//! Command line: `llmux --config FILE` serves, `llmux check FILE` validates and prints the routing table,
//! `llmux demo` serves the home-lab example against simulated engines.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, Diagnostics};
use crate::executor::Executor;
use crate::server::{self, AppState};

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
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a config and print the resolved routing table; exits non-zero on errors.
    Check {
        /// The config file (or use --config).
        file: Option<PathBuf>,
    },
    /// Serve the bundled home-lab config against simulated Ollama hosts on loopback.
    Demo,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    match args.command {
        Some(Command::Check { ref file }) => match file.as_ref().or(args.config.as_ref()) {
            Some(path) => check(path),
            None => {
                eprintln!("usage: llmux check CONFIG.yaml");
                ExitCode::from(2)
            }
        },
        Some(Command::Demo) => run(crate::demo::run(SocketAddr::new(demo_host(&args), args.port))),
        None => {
            let Some(path) = args.config.clone() else {
                eprintln!("llmux: no config given; run `llmux --config config.yaml`, or `llmux demo` to try it");
                return ExitCode::from(2);
            };
            let Some(config) = load_or_report(&path) else { return ExitCode::FAILURE };
            run(serve(config, SocketAddr::new(args.host, args.port)))
        }
    }
}

/// The demo listens on loopback unless --host says otherwise: it has no master key.
fn demo_host(args: &Args) -> IpAddr {
    if args.host.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        args.host
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LLMUX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

fn run(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
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

/// Loads the config, printing every warning once and, on failure, every error.
fn load_or_report(path: &Path) -> Option<Config> {
    match config::load(path) {
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

fn check(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok((config, diags)) => {
            print_diagnostics(&diags);
            print!("{}", config::routing_table(&config));
            println!();
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

/// Serves `config` on `addr` until a shutdown signal.
pub async fn serve(config: Config, addr: SocketAddr) -> anyhow::Result<()> {
    let secrets = config
        .deployments
        .iter()
        .filter_map(|d| d.engine().and_then(|e| e.api_key.as_ref()))
        .chain(config.general.master_key.as_ref())
        .map(|s| s.expose().to_owned())
        .collect();
    crate::redact::register_secrets(secrets);
    if config.general.master_key.is_none() {
        if addr.ip().is_loopback() {
            tracing::info!("no general_settings.master_key: API calls need no key (listening on loopback only)");
        } else {
            tracing::warn!(
                "no general_settings.master_key: ANYONE who can reach {addr} can use every model; set master_key (or os.environ/LITELLM_MASTER_KEY)"
            );
        }
    }
    let executor = Executor::new(Arc::new(config), crate::upstream::client()?);
    executor.spawn_health_checks();
    server::serve(AppState { executor: Arc::new(executor) }, addr).await
}
