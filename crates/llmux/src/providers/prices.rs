//! What a cloud model costs when the config does not say: a small bundled table (`prices.json`, with its source
//! and the date it was read) for the providers llmux has presets for. A deployment's own
//! `input_cost_per_token` / `output_cost_per_token` (in `litellm_params` or `model_info`) always win, as in
//! LiteLLM, whose own model cost map this table is a small, dated excerpt of. Local engines cost nothing.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::config::Deployment;

/// One model's row.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Price {
    /// USD per prompt token.
    pub input_cost_per_token: f64,
    /// USD per generated token.
    pub output_cost_per_token: f64,
    /// The most tokens the model generates in one answer.
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Table {
    models: HashMap<String, Price>,
}

fn table() -> &'static HashMap<String, Price> {
    static TABLE: OnceLock<HashMap<String, Price>> = OnceLock::new();
    TABLE.get_or_init(|| {
        serde_json::from_str::<Table>(include_str!("prices.json")).map(|t| t.models).unwrap_or_default()
    })
}

/// The bundled row for `model` of provider `prefix` (`anthropic`, `claude-sonnet-4-5`): the exact name, else
/// the name without a date suffix (`claude-sonnet-4-5-20250929`, `claude-3-5-haiku-latest`).
pub fn lookup(prefix: &str, model: &str) -> Option<Price> {
    let table = table();
    let key = |m: &str| format!("{prefix}/{m}");
    if let Some(p) = table.get(&key(model)) {
        return Some(*p);
    }
    let (base, suffix) = model.rsplit_once('-')?;
    let dated = suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_digit());
    (dated || suffix == "latest").then(|| table.get(&key(base)).copied()).flatten()
}

/// USD per (input, output) token of deployment `d`: its configured costs, else the bundled table's for its
/// provider and model; `None` when neither knows (a local engine, a model the table lacks). The cost of an
/// answer is `input × prompt tokens + output × completion tokens`.
pub fn cost_per_token(d: &Deployment) -> Option<(f64, f64)> {
    d.cost_per_token.or_else(|| {
        let engine = d.engine()?;
        lookup(engine.engine.prefix, &engine.upstream_model).map(|p| (p.input_cost_per_token, p.output_cost_per_token))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_loads_and_is_found_by_provider_and_model() {
        assert!(table().len() >= 20, "prices.json did not parse");
        let sonnet = lookup("anthropic", "claude-sonnet-4-5").unwrap();
        assert_eq!((sonnet.input_cost_per_token, sonnet.output_cost_per_token), (3e-6, 1.5e-5));
        assert_eq!(lookup("anthropic", "claude-sonnet-4-5-20250929"), Some(sonnet));
        assert_eq!(lookup("anthropic", "claude-3-5-haiku-latest").and_then(|p| p.max_output_tokens), Some(8192));
        assert_eq!(lookup("groq", "claude-sonnet-4-5"), None, "the provider is part of the key");
        assert_eq!(lookup("anthropic", "claude-sonnet-4-5-x"), None);
        for (name, p) in table() {
            assert!(p.input_cost_per_token >= 0.0 && p.input_cost_per_token < 1e-3, "{name}");
            assert!(p.output_cost_per_token >= 0.0 && p.output_cost_per_token < 1e-3, "{name}");
            let prefix = name.split('/').next().unwrap_or("");
            assert!(super::super::engine(prefix).is_some_and(|e| e.cloud) || prefix == "gemini", "{name}");
        }
    }

    #[test]
    fn configured_costs_win_over_the_table() {
        let yaml = "model_list:
  - {model_name: a, litellm_params: {model: anthropic/claude-haiku-4-5, api_key: k}}
  - {model_name: b, litellm_params: {model: anthropic/claude-haiku-4-5, api_key: k, input_cost_per_token: 0.5}}
  - {model_name: c, litellm_params: {model: ollama_chat/qwen3:8b}}
";
        let (config, _) = crate::config::load_str(yaml, &|_| None).unwrap();
        assert_eq!(cost_per_token(&config.deployments[0]), Some((1e-6, 5e-6)));
        assert_eq!(cost_per_token(&config.deployments[1]), Some((0.5, 0.0)));
        assert_eq!(cost_per_token(&config.deployments[2]), None, "a local engine costs nothing known");
    }
}
