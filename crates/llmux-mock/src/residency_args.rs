//! The command-line flags of the residency simulation (`MockConfig::residency`). Any of them turns it on;
//! they apply over `--config-json`'s `residency` object.

use anyhow::{bail, Context as _};
use clap::Args;
use llmux_mock::{parse_size, KeepAlive, MockConfig};
use serde_json::Value;

/// Residency simulation: memory budget, model sizes and load times, LRU eviction, keep-alive.
#[derive(Debug, Clone, Default, Args)]
pub struct ResidencyArgs {
    /// Simulate model residency (with the defaults unless other residency flags are given).
    #[arg(long)]
    residency: bool,
    /// Memory the loaded models may take together: bytes, or with a unit (14GB, 600MiB).
    #[arg(long, value_name = "SIZE")]
    memory_budget: Option<String>,
    /// The most models loaded at once.
    #[arg(long, value_name = "N")]
    max_loaded_models: Option<usize>,
    /// A model's size, NAME=SIZE (repeatable, or comma-separated).
    #[arg(long, value_name = "NAME=SIZE", value_delimiter = ',')]
    model_size: Vec<String>,
    /// Size of models without --model-size (default: a stable 1-8 GB from the name).
    #[arg(long, value_name = "SIZE")]
    default_model_size: Option<String>,
    /// A model's load time in milliseconds, NAME=MS (repeatable, or comma-separated).
    #[arg(long, value_name = "NAME=MS", value_delimiter = ',')]
    model_load_ms: Vec<String>,
    /// Load time of models without --model-load-ms, in milliseconds.
    #[arg(long, value_name = "MS")]
    load_ms: Option<u64>,
    /// How long an idle model stays loaded when the request does not say: 5m, 30s, 0, -1 (forever).
    #[arg(long, value_name = "DURATION")]
    keep_alive: Option<String>,
}

impl ResidencyArgs {
    /// Applies the flags to `cfg`, turning residency on when any is given.
    pub fn apply(&self, cfg: &mut MockConfig) -> anyhow::Result<()> {
        let any = self.residency
            || self.memory_budget.is_some()
            || self.max_loaded_models.is_some()
            || !self.model_size.is_empty()
            || self.default_model_size.is_some()
            || !self.model_load_ms.is_empty()
            || self.load_ms.is_some()
            || self.keep_alive.is_some();
        if !any {
            return Ok(());
        }
        let r = cfg.residency.get_or_insert_with(Default::default);
        let size = |s: &str, what: &str| {
            parse_size(&Value::String(s.to_owned())).with_context(|| format!("{what}: invalid size {s:?}"))
        };
        if let Some(s) = &self.memory_budget {
            r.memory_budget = Some(size(s, "--memory-budget")?);
        }
        if let Some(n) = self.max_loaded_models {
            r.max_loaded_models = Some(n);
        }
        for item in self.model_size.iter().filter(|i| !i.is_empty()) {
            let (name, s) = split_pair(item, "--model-size")?;
            r.model_sizes.insert(name.to_owned(), size(s, "--model-size")?);
        }
        if let Some(s) = &self.default_model_size {
            r.default_size = Some(size(s, "--default-model-size")?);
        }
        for item in self.model_load_ms.iter().filter(|i| !i.is_empty()) {
            let (name, ms) = split_pair(item, "--model-load-ms")?;
            let ms = ms.trim().parse().with_context(|| format!("--model-load-ms: invalid milliseconds {ms:?}"))?;
            r.load_ms.insert(name.to_owned(), ms);
        }
        if let Some(ms) = self.load_ms {
            r.default_load_ms = ms;
        }
        if let Some(ka) = &self.keep_alive {
            r.keep_alive = KeepAlive::parse(&Value::String(ka.clone()))
                .with_context(|| format!("--keep-alive: invalid duration {ka:?}"))?;
        }
        Ok(())
    }
}

/// `NAME=VALUE`, split at the last `=` (model names have no `=`, but may have `:`).
fn split_pair<'a>(item: &'a str, flag: &str) -> anyhow::Result<(&'a str, &'a str)> {
    match item.rsplit_once('=') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim(), value)),
        _ => bail!("{flag}: expected NAME=VALUE, got {item:?}"),
    }
}
