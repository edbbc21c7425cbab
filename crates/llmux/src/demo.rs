//! `llmux demo`: the home-lab example config served against simulated Ollama hosts, so anyone can try llmux
//! without a GPU or an engine.

use std::net::SocketAddr;

use llmux_mock::{MockConfig, MockHandle, MockServer};

use crate::config;

/// The bundled example: a real user's LiteLLM config with four Ollama hosts.
pub const HOMELAB_YAML: &str = include_str!("../../../examples/homelab.yaml");

/// The hosts of the example, the base URL each has in the file, and the models each serves.
const HOSTS: &[(&str, &str, &[&str])] = &[
    ("clementine", "http://clementine:11434", &["nemotron-3-nano:4b", "embeddinggemma"]),
    ("banana", "http://banana:11434", &["nemotron-3-nano:4b", "qwen3.5:9b", "embeddinggemma"]),
    ("star", "http://star:11434", &["nemotron-cascade-2:30b"]),
    ("cranberry", "https://ollama", &["nemotron-cascade-2:30b"]),
];

/// Starts one simulated Ollama per host on loopback and returns them with the example config rewritten to
/// point at them.
pub async fn start_hosts() -> anyhow::Result<(Vec<MockHandle>, String)> {
    let mut yaml = HOMELAB_YAML.to_owned();
    let mut handles = Vec::new();
    for (name, base, models) in HOSTS {
        let mut mock = MockConfig::new(name, models);
        mock.tokens_per_sec = 20.0;
        let handle = MockServer::start(mock, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        yaml = yaml.replace(&format!("api_base: {base}\n"), &format!("api_base: {}\n", handle.base_url()));
        handles.push(handle);
    }
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
    for (h, (name, base, _)) in hosts.iter().zip(HOSTS) {
        eprintln!("simulated Ollama host {name} ({base}) at {}", h.base_url());
    }
    let url = format!("http://{addr}");
    eprintln!(
        "\nllmux demo: the home-lab config (examples/homelab.yaml) on {url}. Try:\n\n  \
         curl -s {url}/v1/chat/completions -H 'content-type: application/json' -d '{{\"model\":\"reasoning_fast\",\"messages\":[{{\"role\":\"user\",\"content\":\"Turn off the kitchen light\"}}]}}'\n  \
         curl -sN {url}/v1/chat/completions -H 'content-type: application/json' -d '{{\"model\":\"coding\",\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"Write a haiku\"}}]}}'\n  \
         curl -s {url}/v1/embeddings -H 'content-type: application/json' -d '{{\"model\":\"embedding\",\"input\":\"hello\"}}'\n\n\
         The same router in the other client protocols:\n\n  \
         curl -s {url}/api/tags                     # Ollama's API (Home Assistant, Open WebUI, Frigate: URL {url})\n  \
         curl -s {url}/api/chat -d '{{\"model\":\"tools_fast\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'\n  \
         curl -s {url}/v1/messages -H 'content-type: application/json' -d '{{\"model\":\"coding\",\"max_tokens\":100,\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'\n  \
         curl -s {url}/v1/responses -H 'content-type: application/json' -d '{{\"model\":\"coding\",\"input\":\"hi\"}}'\n"
    );
    crate::cli::serve(config, None, addr, options).await
}
