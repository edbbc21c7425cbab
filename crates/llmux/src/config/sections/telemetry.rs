//! What llmux tells about itself beyond its answers: Prometheus metrics on `/metrics`, switched on as LiteLLM
//! switches its own (`litellm_settings.callbacks` / `success_callback` naming `prometheus`) or by
//! `llmux_settings.metrics: true`, and `require_auth_for_metrics_endpoint`; OpenTelemetry traces with LiteLLM's
//! `otel` callback (or the standard `OTEL_EXPORTER_OTLP_*` variables alone, see [`crate::otel`]).

use serde_json::{Map, Value};

use crate::config::reader::{get_bool, must_be};
use crate::config::Diagnostics;

/// The `litellm_settings` keys that list callbacks.
pub(super) const CALLBACK_KEYS: &[&str] = &["callbacks", "success_callback", "failure_callback"];

/// How llmux reports on itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Telemetry {
    /// Serve `/metrics`.
    pub metrics: bool,
    /// `/metrics` needs the master key (`require_auth_for_metrics_endpoint`; LiteLLM's default: it does not).
    pub metrics_require_auth: bool,
    /// A callback list names `otel`: export traces over OTLP.
    pub otel: bool,
}

/// Reads the telemetry settings; every callback llmux does not act on is reported by its YAML path.
pub(crate) fn telemetry(
    litellm: &Map<String, Value>,
    general: &Map<String, Value>,
    llmux: Option<&Map<String, Value>>,
    diags: &mut Diagnostics,
) -> Telemetry {
    const L: &str = "litellm_settings";
    let mut prometheus = false;
    let mut otel = false;
    for key in CALLBACK_KEYS {
        let path = format!("{L}.{key}");
        let names: Vec<(String, &Value)> = match litellm.get(*key) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(items)) => items.iter().enumerate().map(|(i, v)| (format!("{path}[{i}]"), v)).collect(),
            Some(one) => vec![(path, one)],
        };
        for (path, value) in names {
            match value {
                Value::String(name) if name == "prometheus" => prometheus = true,
                Value::String(name) if name == "otel" => otel = true,
                Value::String(name) => {
                    diags.warn(path, format!("callback {name:?} is not acted on by llmux yet; ignored"))
                }
                other => diags.error(path, must_be("a callback name", other)),
            }
        }
    }
    let asked = llmux.and_then(|settings| get_bool(settings, "metrics", "llmux_settings", diags));
    let require_auth = get_bool(litellm, "require_auth_for_metrics_endpoint", L, diags)
        .or_else(|| get_bool(general, "require_auth_for_metrics_endpoint", "general_settings", diags))
        .unwrap_or(false);
    Telemetry { metrics: asked.unwrap_or(prometheus), metrics_require_auth: require_auth, otel }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(litellm: Value, general: Value, llmux: Value) -> (Telemetry, Vec<String>) {
        let mut diags = Diagnostics::default();
        let (Value::Object(l), Value::Object(g)) = (litellm, general) else { unreachable!() };
        let t = telemetry(&l, &g, llmux.as_object(), &mut diags);
        let said = diags.warnings().chain(diags.errors()).map(|d| format!("{}: {}", d.path, d.message)).collect();
        (t, said)
    }

    #[test]
    fn prometheus_in_any_callback_list_or_llmux_settings_turns_metrics_on() {
        let (t, said) = read(json!({"callbacks": ["prometheus", "langfuse"]}), json!({}), json!({}));
        assert_eq!(t, Telemetry { metrics: true, metrics_require_auth: false, otel: false });
        assert_eq!(
            said,
            vec![r#"litellm_settings.callbacks[1]: callback "langfuse" is not acted on by llmux yet; ignored"#]
        );
        let (t, said) = read(json!({"success_callback": "prometheus"}), json!({}), json!({}));
        assert!(t.metrics && said.is_empty());
        assert!(read(json!({}), json!({}), json!({"metrics": true})).0.metrics);
        assert!(!read(json!({"callbacks": ["prometheus"]}), json!({}), json!({"metrics": false})).0.metrics);
        assert!(!read(json!({}), json!({}), json!({})).0.metrics, "off by default");
    }

    #[test]
    fn the_otel_callback_turns_traces_on_and_is_not_reported_as_ignored() {
        let (t, said) = read(json!({"callbacks": ["otel"]}), json!({}), json!({}));
        assert!(t.otel && !t.metrics && said.is_empty(), "{said:?}");
        assert!(!read(json!({}), json!({}), json!({})).0.otel, "off by default");
    }

    #[test]
    fn auth_for_metrics_is_read_where_litellm_reads_it_and_from_general_settings() {
        let on = |l: Value, g: Value| read(l, g, json!({})).0.metrics_require_auth;
        assert!(on(json!({"require_auth_for_metrics_endpoint": true}), json!({})));
        assert!(on(json!({}), json!({"require_auth_for_metrics_endpoint": "true"})));
        assert!(!on(json!({}), json!({})));
        let (_, said) = read(json!({"callbacks": [3]}), json!({}), json!({"metrics": "yes"}));
        assert_eq!(
            said,
            vec![
                "litellm_settings.callbacks[0]: must be a callback name, found a number",
                "llmux_settings.metrics: must be true or false, found \"yes\"",
            ]
        );
    }
}
