//! `general_settings`: the master key, request size, background health checks, and keys and spend storage. LiteLLM
//! reads some of these only here; llmux also honours them where the seed config put them (`litellm_settings`),
//! and says so.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::config::reader::{get_bool, get_num, get_str, get_uint, megabytes, must_be, seconds};
use crate::config::{defaults, Diagnostics, GeneralSettings, Secret};

/// The `general_settings` keys llmux acts on; the rest are reported as not acted on.
const GENERAL_ACTED_ON: &[&str] = &[
    "master_key",
    "allow_auth_change_on_reload",
    "max_request_size_mb",
    "max_response_size_mb",
    "background_health_checks",
    "health_check_interval",
    "enable_health_check_routing",
    "health_check_ignore_transient_errors",
    "health_check_staleness_threshold",
    "database_url",
    "disable_spend_logs",
    "maximum_spend_logs_retention_period",
    "proxy_batch_write_at",
    "require_auth_for_metrics_endpoint",
];

/// `general_settings`, with the health-check keys LiteLLM users often put in `litellm_settings` or
/// `router_settings`.
pub(crate) fn general_settings(
    general: &Map<String, Value>,
    litellm: &Map<String, Value>,
    router: &Map<String, Value>,
    diags: &mut Diagnostics,
    env: &dyn Fn(&str) -> Option<String>,
) -> GeneralSettings {
    const G: &str = "general_settings";
    for key in general.keys() {
        if !GENERAL_ACTED_ON.contains(&key.as_str()) {
            diags.warn(format!("{G}.{key}"), "not acted on by llmux yet; ignored");
        }
    }
    let master_key = get_str(general, "master_key", G, diags).filter(|k| !k.is_empty()).map(Secret::new);
    let max_mb = get_num(general, "max_request_size_mb", G, diags).unwrap_or(defaults::MAX_REQUEST_SIZE_MB);
    // LiteLLM reads these only from general_settings; the seed config (and many users) put them in
    // litellm_settings, where LiteLLM silently ignores them. llmux honours them there and says so.
    let misplaced = |key: &str, diags: &mut Diagnostics| {
        diags.warn(
            format!("litellm_settings.{key}"),
            format!("misplaced: LiteLLM reads this only from general_settings (and ignores it here); llmux honours it — move it to general_settings.{}", key.trim_start_matches("enable_")),
        );
    };
    let background_health_checks = match get_bool(general, "background_health_checks", G, diags) {
        Some(v) => Some(v),
        None if litellm.contains_key("enable_background_health_checks") => {
            misplaced("enable_background_health_checks", diags);
            get_bool(litellm, "enable_background_health_checks", "litellm_settings", diags)
        }
        None if litellm.contains_key("background_health_checks") => {
            misplaced("background_health_checks", diags);
            get_bool(litellm, "background_health_checks", "litellm_settings", diags)
        }
        None => None,
    }
    .unwrap_or(false);
    let interval = match get_uint(general, "health_check_interval", G, diags) {
        Some(v) => Some(v),
        None if litellm.contains_key("health_check_interval") => {
            misplaced("health_check_interval", diags);
            get_uint(litellm, "health_check_interval", "litellm_settings", diags)
        }
        None => get_uint(router, "health_check_interval", "router_settings", diags),
    }
    .unwrap_or(defaults::HEALTH_CHECK_INTERVAL);
    let flag = |key: &str, diags: &mut Diagnostics| {
        get_bool(general, key, G, diags).or_else(|| get_bool(router, key, "router_settings", diags))
    };
    // LiteLLM's default: a probe's HTTP error is only reported. A host a probe cannot reach is out either way.
    let health_check_routing = flag("enable_health_check_routing", diags).unwrap_or(false);
    let health_check_ignore_transient_errors = flag("health_check_ignore_transient_errors", diags).unwrap_or(false);
    let staleness = get_num(general, "health_check_staleness_threshold", G, diags)
        .or_else(|| get_num(router, "health_check_staleness_threshold", "router_settings", diags))
        .map_or(Duration::from_secs(interval.saturating_mul(defaults::STALENESS_INTERVALS).max(1)), seconds);
    let database_url =
        get_str(general, "database_url", G, diags).or_else(|| env("DATABASE_URL")).filter(|u| !u.trim().is_empty());
    if let Some(url) = &database_url {
        if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            diags.error(
                format!("{G}.database_url"),
                "must be a postgresql:// URL (without it llmux keeps keys in SQLite under --data-dir)",
            );
        }
    }
    let retention = match general.get("maximum_spend_logs_retention_period") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64().filter(|v| *v > 0.0).map(seconds),
        Some(Value::String(s)) => {
            let parsed = crate::keys::limits::parse_duration(s);
            if parsed.is_none() {
                diags.error(
                    format!("{G}.maximum_spend_logs_retention_period"),
                    format!("must be a duration like \"30d\", \"12h\" or seconds, found {s:?}"),
                );
            }
            parsed
        }
        Some(other) => {
            diags.error(format!("{G}.maximum_spend_logs_retention_period"), must_be("a duration like \"30d\"", other));
            None
        }
    };
    let spend_batch_every = get_num(general, "proxy_batch_write_at", G, diags)
        .filter(|v| *v > 0.0)
        .map_or(defaults::SPEND_BATCH_EVERY, seconds);
    GeneralSettings {
        database_url: database_url.map(Secret::new),
        disable_spend_logs: get_bool(general, "disable_spend_logs", G, diags).unwrap_or(false),
        spend_logs_retention: retention,
        spend_batch_every,
        allow_auth_change_on_reload: get_bool(general, "allow_auth_change_on_reload", G, diags).unwrap_or(false),
        check_provider_endpoint: get_bool(litellm, "check_provider_endpoint", "litellm_settings", diags)
            .unwrap_or(false),
        health_check_routing,
        health_check_ignore_transient_errors,
        health_check_staleness: staleness,
        master_key,
        max_request_body_bytes: megabytes(max_mb),
        background_health_checks,
        health_check_interval: interval,
    }
}
