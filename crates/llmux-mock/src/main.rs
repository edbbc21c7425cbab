//! `llmux-mock`: run a mock inference engine from the command line.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use anyhow::Context as _;
use clap::Parser;
use llmux_mock::{Fault, MockConfig, MockServer};

mod residency_args;
use tracing_subscriber::EnvFilter;

/// A fault-injecting mock inference engine speaking the Ollama and OpenAI APIs.
///
/// Knobs are applied in order: defaults, then `--config-json`, then the
/// individual flags. All of them can be changed at run time with
/// `POST /mock/config`.
#[derive(Debug, Parser)]
#[command(name = "llmux-mock", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0 = pick a free one; the log line shows which).
    #[arg(long, default_value_t = 11434)]
    port: u16,
    /// Host name, shown in the default reply.
    #[arg(long)]
    name: Option<String>,
    /// Comma-separated models to serve (empty = any).
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Comma-separated models reported as loaded by /api/ps.
    #[arg(long, value_delimiter = ',')]
    loaded: Option<Vec<String>>,
    /// Delay before response headers, in milliseconds.
    #[arg(long)]
    latency_ms: Option<u64>,
    /// Extra delay before the first streamed token, in milliseconds.
    #[arg(long)]
    ttft_ms: Option<u64>,
    /// Streaming speed (0 = as fast as possible).
    #[arg(long)]
    tokens_per_sec: Option<f64>,
    /// Prompt reading speed for what the slots' KV caches do not hold (0 = instant).
    #[arg(long)]
    prefill_tokens_per_sec: Option<f64>,
    /// Reply template; {name}, {model} and {input} are filled in.
    #[arg(long)]
    reply: Option<String>,
    /// Reply with this many deterministic filler tokens instead.
    #[arg(long)]
    reply_tokens: Option<u32>,
    /// Reasoning text sent before the reply.
    #[arg(long)]
    thinking: Option<String>,
    /// Context length reported by /api/show (and per slot by /slots, /props).
    #[arg(long)]
    context_length: Option<u64>,
    /// Parallel slots reported by llama.cpp's /slots and /props.
    #[arg(long)]
    slots: Option<u32>,
    /// Default embedding size.
    #[arg(long)]
    embedding_dims: Option<usize>,
    /// Fault to inject: none, hang, refuse, malformed, or JSON such as
    /// '{"status":503}' or '{"drop_after_chunks":2}'.
    #[arg(long)]
    fault: Option<String>,
    /// Apply the fault to the next N requests only.
    #[arg(long)]
    fault_times: Option<u32>,
    /// JSON object of knobs (same keys as POST /mock/config), or @FILE to read it from a file.
    #[arg(long)]
    config_json: Option<String>,
    #[command(flatten)]
    residency: residency_args::ResidencyArgs,
    /// Sleep until a wake-on-LAN magic packet arrives on this UDP address (e.g. 127.0.0.1:4009): until then
    /// every connection is refused, as a suspended host's.
    #[arg(long, value_name = "ADDR")]
    asleep_until_wol: Option<SocketAddr>,
    /// With --asleep-until-wol: answer this many milliseconds after the first packet.
    #[arg(long, default_value_t = 0)]
    boot_ms: u64,
}

impl Cli {
    fn config(&self) -> anyhow::Result<MockConfig> {
        let mut cfg = MockConfig::default();
        if let Some(json) = &self.config_json {
            let text = match json.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
                None => json.clone(),
            };
            cfg.merge_json_str(&text).context("--config-json")?;
        }
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(v) = &self.$field {
                    cfg.$field = v.clone();
                }
            )*};
        }
        set!(name, models, loaded, latency_ms, ttft_ms, tokens_per_sec, prefill_tokens_per_sec, reply);
        set!(context_length, slots, embedding_dims);
        if let Some(n) = self.reply_tokens {
            cfg.reply_tokens = Some(n);
        }
        if let Some(text) = &self.thinking {
            cfg.thinking = Some(text.clone());
        }
        if let Some(fault) = &self.fault {
            // Bare words are accepted without JSON quotes for convenience.
            let value = serde_json::from_str(fault).unwrap_or_else(|_| serde_json::Value::String(fault.clone()));
            cfg.fault = serde_json::from_value::<Fault>(value).context("--fault")?;
        }
        if let Some(n) = self.fault_times {
            cfg.fault_times = Some(n);
        }
        self.residency.apply(&mut cfg)?;
        cfg.models.retain(|m| !m.is_empty());
        Ok(cfg)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = cli.config()?;
    let name = config.name.clone();
    let addr = SocketAddr::new(cli.host, cli.port);
    let handle = match cli.asleep_until_wol {
        Some(wake_on) => {
            let boot = std::time::Duration::from_millis(cli.boot_ms);
            MockServer::start_asleep(config, addr, wake_on, boot).await?
        }
        None => MockServer::start(config, addr).await?,
    };
    // Printed to stdout (not the log) so scripts can wait for it and read the
    // port when started with --port 0.
    let mut out = std::io::stdout();
    writeln!(out, "llmux-mock {name} listening on {}", handle.base_url())?;
    out.flush()?;
    shutdown_signal().await?;
    handle.stop().await;
    Ok(())
}

/// Resolves on SIGINT, or SIGTERM on Unix.
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_config_json() {
        let cli = Cli::parse_from([
            "llmux-mock",
            "--config-json",
            r#"{"name":"json","latency_ms":5,"fault":"hang"}"#,
            "--name",
            "flag",
            "--models",
            "a,b",
            "--fault",
            "{\"status\":503}",
            "--fault-times",
            "2",
        ]);
        let cfg = cli.config().unwrap();
        assert_eq!(cfg.name, "flag");
        assert_eq!(cfg.latency_ms, 5);
        assert_eq!(cfg.models, vec!["a", "b"]);
        assert_eq!(cfg.fault, Fault::status(503));
        assert_eq!(cfg.fault_times, Some(2));
    }

    #[test]
    fn residency_flags() {
        let cli = Cli::parse_from(["llmux-mock"]);
        assert_eq!(cli.config().unwrap().residency, None);
        let cli = Cli::parse_from([
            "llmux-mock",
            "--config-json",
            r#"{"residency":{"default_load_ms":5}}"#,
            "--memory-budget",
            "14GB",
            "--model-size",
            "a:4b=3.5GB,b=600MB",
            "--model-load-ms",
            "a:4b=300",
            "--keep-alive",
            "10m",
        ]);
        let r = cli.config().unwrap().residency.unwrap();
        assert_eq!(r.memory_budget, Some(14_000_000_000));
        assert_eq!(r.size_of("a:4b"), 3_500_000_000);
        assert_eq!(r.size_of("b"), 600_000_000);
        assert_eq!(r.load_time("a:4b").as_millis(), 300);
        assert_eq!(r.default_load_ms, 5);
        assert_eq!(r.keep_alive, llmux_mock::KeepAlive::For(std::time::Duration::from_secs(600)));
        assert!(Cli::parse_from(["llmux-mock", "--memory-budget", "lots"]).config().is_err());
        assert!(Cli::parse_from(["llmux-mock", "--model-size", "a"]).config().is_err());
    }

    #[test]
    fn bare_fault_words() {
        let cli = Cli::parse_from(["llmux-mock", "--fault", "refuse"]);
        assert_eq!(cli.config().unwrap().fault, Fault::Refuse);
        let cli = Cli::parse_from(["llmux-mock", "--fault", "explode"]);
        assert!(cli.config().is_err());
    }
}
