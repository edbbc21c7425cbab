//! Engine hosts: deployments grouped by the scheme and authority of their `api_base` (one probe, one down-mark
//! for all of a host's deployments), and `llmux_settings.hosts.<api_base>` (memory budget, loaded-model cap,
//! pinned models, wake-on-LAN).

use serde_json::{Map, Value};

use crate::config::reader::{clamp_u32, get_uint, must_be, names};
use crate::config::{defaults, Deployment, Diagnostics, Host, HostLimits};
use crate::providers;

/// Groups engine deployments by host (scheme + authority) and sets each deployment's `host`.
pub(crate) fn hosts(deployments: &mut [Deployment]) -> Vec<Host> {
    let mut hosts: Vec<Host> = Vec::new();
    for d in deployments.iter_mut() {
        let Some(engine) = d.engine() else { continue };
        let origin = engine.origin();
        let at = match hosts.iter().position(|h| h.origin == origin) {
            Some(at) => at,
            None => {
                hosts.push(Host {
                    origin,
                    profile: &providers::profile::OPENAI_COMPATIBLE,
                    probe_base: None,
                    api_key: engine.api_key.clone(),
                    basic_auth: engine.basic_auth.clone(),
                    probe_timeout: defaults::PROBE_TIMEOUT,
                    probe_disabled: true,
                    deployments: Vec::new(),
                    limits: HostLimits::default(),
                    wake: None,
                });
                hosts.len() - 1
            }
        };
        let host = &mut hosts[at];
        // A provider's public endpoint is not probed (a probe costs requests against the account's rate limit
        // and tells nothing about residency), nor is an API that has no model list llmux reads.
        let unprobed = engine.engine.cloud && engine.engine.default_api_base == Some(engine.api_base.as_str());
        if let Some(profile) = engine.engine.profile.filter(|_| !unprobed) {
            let current = host.probe_base.is_some().then_some(host.profile);
            // The first base of the API that tells the most (Ollama's over OpenAI's); the engine probed the most
            // thoroughly (Ollama, then LM Studio, then plain `/models`).
            if current.is_none_or(|c| profile.api > c.api) {
                host.probe_base = Some(engine.api_base.clone());
            }
            if current.is_none_or(|c| profile.probe > c.probe) {
                host.profile = profile;
            }
        }
        if let Some(t) = d.health_check_timeout {
            host.probe_timeout = if host.deployments.is_empty() { t } else { host.probe_timeout.max(t) };
        }
        host.probe_disabled &= d.disable_background_health_check || host.probe_base.is_none();
        host.deployments.push(d.index);
        d.host = Some(at);
    }
    hosts
}

/// `llmux_settings.hosts`: per engine host (keyed by its `api_base` or `scheme://host:port`), `memory_budget`,
/// `max_loaded_models`, `pinned` models and how to `wake` it.
pub(crate) fn host_limits(
    settings: Option<&Map<String, Value>>,
    hosts: &mut [Host],
    deployments: &[Deployment],
    known: &dyn Fn(&str) -> bool,
    diags: &mut Diagnostics,
) {
    const S: &str = "llmux_settings";
    let Some(settings) = settings else { return };
    let entries = match settings.get("hosts") {
        None | Some(Value::Null) => return,
        Some(Value::Object(m)) => m,
        Some(other) => return diags.error(format!("{S}.hosts"), must_be("a mapping of api_base: settings", other)),
    };
    for (url, value) in entries {
        let at = format!("{S}.hosts.{url}");
        let origin = crate::config::origin_of(url);
        let Some(host) = hosts.iter_mut().find(|h| h.origin == origin) else {
            diags.warn(&at, format!("no deployment has its api_base on {origin}; ignored"));
            continue;
        };
        let Value::Object(entry) = value else {
            diags.error(&at, must_be("a mapping", value));
            continue;
        };
        for key in
            entry.keys().filter(|k| !["memory_budget", "max_loaded_models", "pinned", "wake"].contains(&k.as_str()))
        {
            diags.warn(format!("{at}.{key}"), "unknown host setting; ignored");
        }
        if let Some(wake) = entry.get("wake") {
            host.wake = super::wake::host_wake(wake, &format!("{at}.wake"), known, diags);
        }
        host.limits.memory_budget = match entry.get("memory_budget") {
            None | Some(Value::Null) => None,
            Some(v) => bytes_of(v).or_else(|| {
                diags.error(format!("{at}.memory_budget"), format!("must be a size like 84GB or 44GiB, found {v}"));
                None
            }),
        };
        host.limits.max_loaded_models = get_uint(entry, "max_loaded_models", &at, diags).map(clamp_u32);
        let served: Vec<&str> = host
            .deployments
            .iter()
            .filter_map(|&i| deployments[i].engine())
            .map(|e| e.upstream_model.as_str())
            .collect();
        let unserved = |i: usize, name: &str, diags: &mut Diagnostics| {
            if !served.iter().any(|m| crate::state::same_model(m, name)) {
                diags.warn(
                    format!("{at}.pinned[{i}]"),
                    format!("no deployment on this host serves {name:?} (engine model names: {})", served.join(", ")),
                );
            }
        };
        let what = ("an engine model name", "a list of model names");
        host.limits.pinned = names(entry.get("pinned"), &format!("{at}.pinned"), what, diags, &unserved);
    }
}

/// A size in bytes: a number, or a number with a unit (`84GB`, `44 GiB`, `512MB`); GB is 10^9, GiB 2^30.
fn bytes_of(value: &Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let text = value.as_str()?.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * scale;
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}
