//! `litellm_settings`: LiteLLM's module-level settings. The keys llmux acts on are read where they take effect
//! (fallbacks and retries in [`super::router_settings`], health checks in [`super::general_settings`],
//! callbacks in [`super::telemetry`]); this file reports the rest as not acted on.

use serde_json::{Map, Value};

use crate::config::Diagnostics;

/// The `litellm_settings` keys llmux acts on where they take effect.
const LITELLM_ACTED_ON: &[&str] = &[
    "default_fallbacks",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "num_retries",
    "request_timeout",
    "allowed_fails",
];

/// Reports every `litellm_settings` key llmux does not act on.
pub(crate) fn not_acted_on(litellm: &Map<String, Value>, diags: &mut Diagnostics) {
    for key in litellm.keys() {
        let k = key.as_str();
        if LITELLM_ACTED_ON.contains(&k)
            || [
                "enable_background_health_checks",
                "background_health_checks",
                "health_check_interval",
                "check_provider_endpoint",
                "require_auth_for_metrics_endpoint",
            ]
            .contains(&k)
            || super::telemetry::CALLBACK_KEYS.contains(&k)
        {
            continue;
        }
        diags.warn(format!("litellm_settings.{key}"), "not acted on by llmux yet; ignored");
    }
}
