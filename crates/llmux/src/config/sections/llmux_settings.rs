//! `llmux_settings`, llmux's own section: per-group `keep_alive` and `priority`, remote image fetching, the
//! Ollama API's key, and what a client connection may cost (`server`). Its `hosts` are [`super::hosts`]', its
//! `metrics` [`super::telemetry`]'s.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::config::reader::{get_bool, get_num, mapping, megabytes, must_be, seconds};
use crate::config::{defaults, Diagnostics, ImageFetch, ServerLimits};

/// The keys `llmux_settings` may have.
const LLMUX_KEYS: &[&str] = &["hosts", "groups", "images", "ollama_api", "server", "metrics", "warmup"];

/// Reports an `llmux_settings` that is not a mapping, and every key in it llmux does not know.
pub(crate) fn check_keys(settings: Option<&Value>, diags: &mut Diagnostics) {
    const S: &str = "llmux_settings";
    let settings = match settings {
        None | Some(Value::Null) => return,
        Some(Value::Object(m)) => m,
        Some(other) => return diags.error(S, must_be("a mapping", other)),
    };
    for key in settings.keys().filter(|k| !LLMUX_KEYS.contains(&k.as_str())) {
        diags.warn(format!("{S}.{key}"), "unknown llmux setting; ignored");
    }
}

/// `llmux_settings.groups.<name>`: per model group, `keep_alive` (how long its Ollama deployments keep their
/// model loaded after a request: Ollama's `30m`, `-1` for ever, `0` to unload at once, unless a deployment sets
/// its own or pins it); per group or alias, `priority` (the default place of its requests in the queue for a
/// free slot, lower first, as LiteLLM's request `priority`).
pub(crate) struct GroupSettings {
    pub keep_alive: HashMap<String, Value>,
    pub priority: HashMap<String, i64>,
}

/// Reads `llmux_settings.groups`; `is_group` and `is_alias` say what a key names.
pub(crate) fn group_settings(
    settings: Option<&Map<String, Value>>,
    is_group: &dyn Fn(&str) -> bool,
    is_alias: &dyn Fn(&str) -> bool,
    diags: &mut Diagnostics,
) -> GroupSettings {
    const S: &str = "llmux_settings.groups";
    let mut out = GroupSettings { keep_alive: HashMap::new(), priority: HashMap::new() };
    let Some(groups) = settings.and_then(|s| s.get("groups")).filter(|g| !g.is_null()) else { return out };
    let Value::Object(groups) = groups else {
        diags.error(S, must_be("a mapping of model_name: settings", groups));
        return out;
    };
    for (group, value) in groups {
        let at = format!("{S}.{group}");
        if !is_group(group) && !is_alias(group) {
            diags.warn(&at, "no model_list entry has this model_name and no alias has this name; ignored");
            continue;
        }
        let Value::Object(entry) = value else {
            diags.error(&at, must_be("a mapping", value));
            continue;
        };
        for key in entry.keys().filter(|k| !["keep_alive", "priority"].contains(&k.as_str())) {
            diags.warn(format!("{at}.{key}"), "unknown group setting; ignored");
        }
        match entry.get("keep_alive") {
            None | Some(Value::Null) => {}
            Some(_) if !is_group(group) => {
                diags.warn(format!("{at}.keep_alive"), "keep_alive is set per model_name, not per alias; ignored");
            }
            Some(v) if is_keep_alive(v) => {
                out.keep_alive.insert(group.clone(), v.clone());
            }
            Some(v) => diags.error(
                format!("{at}.keep_alive"),
                format!("must be a duration like 30m, 1h, -1 (for ever) or 0 (unload at once), found {v}"),
            ),
        }
        match entry.get("priority") {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_i64() {
                Some(p) => {
                    out.priority.insert(group.clone(), p);
                }
                None => {
                    diags.error(format!("{at}.priority"), format!("must be a whole number (lower first), found {v}"))
                }
            },
        }
    }
    out
}

/// `llmux_settings.images`: `allow_private_networks`, `max_mb`, `timeout` (see [`ImageFetch`]).
pub(crate) fn image_fetch(settings: Option<&Map<String, Value>>, diags: &mut Diagnostics) -> ImageFetch {
    const S: &str = "llmux_settings.images";
    let mut out = ImageFetch::default();
    let Some(images) = settings.and_then(|s| mapping(s, "images", "llmux_settings", diags)) else { return out };
    for key in images.keys().filter(|k| !["allow_private_networks", "max_mb", "timeout"].contains(&k.as_str())) {
        diags.warn(format!("{S}.{key}"), "unknown image setting; ignored");
    }
    if let Some(allow) = get_bool(images, "allow_private_networks", S, diags) {
        out.allow_private = allow;
    }
    if let Some(mb) = get_num(images, "max_mb", S, diags) {
        out.max_bytes = megabytes(mb);
    }
    if let Some(secs) = get_num(images, "timeout", S, diags).filter(|s| *s > 0.0) {
        out.timeout = seconds(secs);
    }
    out
}

/// `llmux_settings.server` (see [`ServerLimits`]) and `general_settings.max_response_size_mb`.
pub(crate) fn server_limits(
    settings: Option<&Map<String, Value>>,
    general: &Map<String, Value>,
    diags: &mut Diagnostics,
) -> ServerLimits {
    const S: &str = "llmux_settings.server";
    const KEYS: &[&str] = &[
        "header_read_timeout",
        "idle_timeout",
        "max_connections",
        "max_header_kb",
        "http2_max_concurrent_streams",
        "max_buffered_mb",
    ];
    let mut out = ServerLimits::default();
    if let Some(n) = get_num(general, "max_response_size_mb", "general_settings", diags) {
        if n > 0.0 {
            out.max_answer_bytes = megabytes(n);
        } else {
            diags.error("general_settings.max_response_size_mb", "must be a positive number of MB");
        }
    }
    let Some(server) = settings.and_then(|s| mapping(s, "server", "llmux_settings", diags)) else { return out };
    for key in server.keys().filter(|k| !KEYS.contains(&k.as_str())) {
        diags.warn(format!("{S}.{key}"), "unknown server setting; ignored");
    }
    // Every one of these must be positive: zero would close every connection or refuse every answer.
    let positive = |key: &str, diags: &mut Diagnostics| {
        let n = get_num(server, key, S, diags)?;
        if n > 0.0 && n.is_finite() {
            Some(n)
        } else {
            diags.error(format!("{S}.{key}"), "must be a positive number");
            None
        }
    };
    if let Some(secs) = positive("header_read_timeout", diags) {
        out.header_read_timeout = seconds(secs);
    }
    if let Some(secs) = positive("idle_timeout", diags) {
        out.idle_timeout = seconds(secs);
    }
    if let Some(n) = positive("max_connections", diags) {
        out.max_connections = Some(n as usize);
    }
    if let Some(kb) = positive("max_header_kb", diags) {
        out.max_header_bytes = ((kb * 1024.0) as usize).max(defaults::MIN_HEADER_BYTES);
    }
    if let Some(n) = positive("http2_max_concurrent_streams", diags) {
        out.http2_max_streams = n.min(f64::from(u32::MAX)) as u32;
    }
    if let Some(n) = positive("max_buffered_mb", diags) {
        out.max_buffered_bytes = megabytes(n);
    }
    out
}

/// `llmux_settings.ollama_api.require_key` (default true).
pub(crate) fn ollama_requires_key(settings: Option<&Map<String, Value>>, diags: &mut Diagnostics) -> bool {
    const S: &str = "llmux_settings.ollama_api";
    let Some(api) = settings.and_then(|s| mapping(s, "ollama_api", "llmux_settings", diags)) else {
        return defaults::OLLAMA_REQUIRES_KEY;
    };
    for key in api.keys().filter(|k| *k != "require_key") {
        diags.warn(format!("{S}.{key}"), "unknown Ollama API setting; ignored");
    }
    let required = get_bool(api, "require_key", S, diags).unwrap_or(defaults::OLLAMA_REQUIRES_KEY);
    if !required {
        diags.warn(
            format!("{S}.require_key"),
            "false: Ollama's routes (/api/*) answer without the master key, as Ollama itself does; keep llmux on a trusted network",
        );
    }
    required
}

/// Whether Ollama takes `value` as a `keep_alive`: seconds as a number, or a Go duration (`1h30m`, `-1m`, `300`).
fn is_keep_alive(value: &Value) -> bool {
    match value {
        Value::Number(_) => true,
        Value::String(s) => {
            let s = s.strip_prefix('-').unwrap_or(s);
            if s.parse::<f64>().is_ok() {
                return true;
            }
            let mut rest = s;
            while !rest.is_empty() {
                let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
                if digits == 0 {
                    return false;
                }
                rest = &rest[digits..];
                let unit = ["ns", "us", "µs", "ms", "s", "m", "h"].iter().find(|u| rest.starts_with(**u));
                match unit {
                    Some(u) => rest = &rest[u.len()..],
                    None => return false,
                }
            }
            !s.is_empty()
        }
        _ => false,
    }
}
