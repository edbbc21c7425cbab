//! `llmux demo`: the home-lab example config served against simulated Ollama hosts, so anyone can try llmux
//! without a GPU or an engine.

use std::net::SocketAddr;

use llmux_mock::{MockConfig, MockHandle, MockServer, ResidencyConfig};

use crate::config;

/// The bundled example: a real user's LiteLLM config with four Ollama hosts.
pub const HOMELAB_YAML: &str = include_str!("../../../examples/homelab.yaml");

/// The hosts of the example, the base URL each has in the file, the models each serves (the first loaded at
/// start) and the memory its models may use, in GB.
const HOSTS: &[(&str, &str, &[&str], u64)] = &[
    ("clementine", "http://clementine:11434", &["nemotron-3-nano:4b", "embeddinggemma"], 32),
    ("banana", "http://banana:11434", &["nemotron-3-nano:4b", "qwen3.5:9b", "embeddinggemma"], 12),
    ("star", "http://star:11434", &["nemotron-cascade-2:30b"], 96),
    ("cranberry", "https://ollama", &["nemotron-cascade-2:30b"], 44),
];

/// The host that sleeps in the demo (the big box, as in a real home lab): it answers only after a wake-on-LAN
/// packet reaches a UDP port of its own on loopback, then boots in `SLEEPER_BOOT_MS`; its config allows it
/// `SLEEPER_BOOT_SECONDS` (a real box's `boot_seconds` is a bound, not a measurement: llmux learns the real time).
const SLEEPER: &str = "star";
const SLEEPER_BOOT_MS: u64 = 3_000;
const SLEEPER_BOOT_SECONDS: u64 = 10;

/// The simulated models' sizes, about what Ollama reports for them.
const SIZES_GB: &[(&str, f64)] =
    &[("nemotron-3-nano:4b", 3.2), ("embeddinggemma", 0.6), ("qwen3.5:9b", 6.6), ("nemotron-cascade-2:30b", 24.0)];

/// Starts one simulated Ollama per host on loopback, each with its memory and its first model loaded, and
/// returns them with the example config rewritten to point at them (and `llmux_settings.hosts` telling llmux
/// each host's memory budget).
pub async fn start_hosts() -> anyhow::Result<(Vec<MockHandle>, String)> {
    let mut yaml = HOMELAB_YAML.to_owned();
    let mut budgets = String::from("\nllmux_settings:\n  hosts:\n");
    let mut handles = Vec::new();
    for (name, base, models, budget_gb) in HOSTS {
        let mut mock = MockConfig::new(name, models);
        mock.tokens_per_sec = 20.0;
        mock.loaded = models.iter().take(1).map(|m| (*m).to_owned()).collect();
        mock.residency = Some(ResidencyConfig {
            memory_budget: Some(budget_gb * 1_000_000_000),
            model_sizes: SIZES_GB.iter().map(|(m, gb)| ((*m).to_owned(), (gb * 1e9) as u64)).collect(),
            default_load_ms: 1_500,
            ..ResidencyConfig::default()
        });
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let (handle, wake) = if *name == SLEEPER {
            // Its wake address is a loopback port the demo itself listens on: never a broadcast.
            let wake_on = std::net::UdpSocket::bind(loopback)?.local_addr()?;
            let boot = std::time::Duration::from_millis(SLEEPER_BOOT_MS);
            let handle = MockServer::start_asleep(mock, loopback, wake_on, boot).await?;
            let boot_s = SLEEPER_BOOT_SECONDS;
            (handle, format!(", wake: {{mac: \"02:00:00:00:00:01\", address: \"{wake_on}\", boot_seconds: {boot_s}}}"))
        } else {
            (MockServer::start(mock, loopback).await?, String::new())
        };
        yaml = yaml.replace(&format!("api_base: {base}\n"), &format!("api_base: {}\n", handle.base_url()));
        budgets.push_str(&format!("    \"{}\": {{memory_budget: {budget_gb}GB{wake}}}\n", handle.base_url()));
        handles.push(handle);
    }
    yaml.push_str(&budgets);
    Ok((handles, yaml))
}

/// Runs the demo on `addr` until interrupted.
pub async fn run(addr: SocketAddr, options: crate::cli::ServeOptions) -> anyhow::Result<()> {
    let (hosts, yaml) = start_hosts().await?;
    let (config, diags) = config::load_str(&yaml, &config::process_env)
        .map_err(|d| anyhow::anyhow!("the bundled demo config does not load:\n{d}"))?;
    for d in diags.iter() {
        eprintln!("{d}");
    }
    for (h, (name, base, _, _)) in hosts.iter().zip(HOSTS) {
        let sleeps = if *name == SLEEPER { " (asleep: woken by wake-on-LAN when a request needs it)" } else { "" };
        eprintln!("simulated Ollama host {name} ({base}) at {}{sleeps}", h.base_url());
    }
    let url = format!("http://{addr}");
    let port = addr.port();
    eprintln!(
        "\nllmux demo: the home-lab config (examples/homelab.yaml) on {url}. Try:\n\n  \
         curl -s {url}/v1/chat/completions -H 'content-type: application/json' -d '{{\"model\":\"reasoning_fast\",\"messages\":[{{\"role\":\"user\",\"content\":\"Turn off the kitchen light\"}}]}}'\n  \
         curl -sN {url}/v1/chat/completions -H 'content-type: application/json' -d '{{\"model\":\"coding\",\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"Write a haiku\"}}]}}'\n  \
         curl -s {url}/v1/embeddings -H 'content-type: application/json' -d '{{\"model\":\"embedding\",\"input\":\"hello\"}}'\n\n\
         Watch them on the dashboard: {url}/ui (or `llmux status --port {port}` in a terminal)\n\n\
         The same router in the other client protocols:\n\n  \
         curl -s {url}/api/tags                     # Ollama's API (Home Assistant, Open WebUI, Frigate: URL {url})\n  \
         curl -s {url}/api/chat -d '{{\"model\":\"tools_fast\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'\n  \
         curl -s {url}/v1/messages -H 'content-type: application/json' -d '{{\"model\":\"coding\",\"max_tokens\":100,\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'\n  \
         curl -s {url}/v1/responses -H 'content-type: application/json' -d '{{\"model\":\"coding\",\"input\":\"hi\"}}'\n"
    );
    crate::cli::serve(config, None, addr, options).await
}
