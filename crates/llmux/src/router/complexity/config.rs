//! Reads a deployment's `complexity_router_config` and `complexity_router_default_model` the way LiteLLM's
//! `ComplexityRouterConfig` (pydantic) and `ComplexityRouter.__init__` do, reporting every problem with its path.
//!
//! Replacement semantics follow LiteLLM: a configured `tiers`, `tier_boundaries`, `token_thresholds` or
//! `dimension_weights` map replaces the default map whole; missing boundaries and token thresholds then fall back
//! to their defaults key by key (LiteLLM reads them with `.get(key, default)`), but a missing dimension weight is 0
//! (`weights.get(name, 0)`). A keyword list replaces its default only when non-empty; `custom_technical_keywords`
//! is appended to the technical list.
//!
//! Where LiteLLM accepts a setting that can only fail later (an empty tier pool, a target that is not a model) or
//! silently does nothing (an unknown tier name such as `simple`), llmux reports it at load instead.

use crate::config::reader::{as_mapping, finite_number, must_be, string_list};
use crate::config::Diagnostics;
use regex::Regex;
use serde_json::{Map, Value};

use super::defaults;
use super::matcher::Matcher;
use super::text::{py_strip, Reminders};
use super::{ComplexityRouter, Tier, DIMENSIONS};

/// Keys llmux reads.
const ACTED_ON: &[&str] = &[
    "tiers",
    "tier_boundaries",
    "reasoning_override_min_score",
    "token_thresholds",
    "dimension_weights",
    "code_keywords",
    "reasoning_keywords",
    "technical_keywords",
    "custom_technical_keywords",
    "simple_keywords",
    "default_model",
    "reminder_markers",
    "classifier_type",
    "escalation_keywords",
    "route_housekeeping_to_cheapest_tier",
    "housekeeping_patterns",
];

/// LiteLLM options that replace or override the heuristic scorer's decision: honouring the config without them
/// would route differently, so enabling one is an error rather than a warning.
const DECISION_CHANGING: &[&str] = &[
    "tier_definitions",
    "enable_non_reasoning_tier",
    "custom_dimensions",
    "llm_v2_config",
    "capability_classifier_config",
    "opensource_classifier_config",
    "stall_escalation_enabled",
    "cache_aware_routing",
    "enable_context_window_escalation",
    "keyword_tier_rules",
    "semantic_keyword_matching",
    "classifier_plugin",
    "classifier_llm_config",
    "plugins",
    "adaptive",
    "plan_mode_min_tier",
];

/// LiteLLM options (v1.109) that llmux does not implement and that leave the scorer's tier alone, or
/// only describe display, logging or affinity: reported and ignored.
const NOT_ACTED_ON: &[&str] = &[
    "tier_model_configs",
    "fallback_tier",
    "classification_prompt",
    "classification_examples",
    "tier_labels",
    "return_raw_model_name",
    "heuristic_v2_artifact",
    "heuristic_v2_success_threshold",
    "local_heuristic",
    "heuristic_first_max_tier",
    "hybrid_boundary_margin",
    "classifier_plugin_timeout_ms",
    "classifier_fallback",
    "classifier_context_window_size",
    "classifier_context_budget_chars",
    "classifier_context_per_turn_chars",
    "classifier_context_include_assistant_turns",
    "adaptive_weights",
    "tier_distance_penalty",
    "adaptive_eligible",
    "stall_escalation_window",
    "stall_escalation_repeat_threshold",
    "plan_mode_patterns",
    "max_tokens_from_tier_model",
    "context_compaction",
    "context_window_escalation_buffer",
    "cache_aware_routing_output_tokens",
    "cache_aware_routing_timeout_ms",
    "modality_routing",
    "modality_pin_override",
    "embedding_model",
    "match_threshold",
    "classification_mode",
    "session_affinity",
    "deployment_affinity",
    "session_affinity_ttl_seconds",
];

const CONFIG: &str = "complexity_router_config";
const DEFAULT_MODEL: &str = "complexity_router_default_model";

/// Whether an option that changes the decision is switched on (absent-like values are not).
fn enabled(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

impl ComplexityRouter {
    /// Parses a deployment's `litellm_params` map (keys `complexity_router_config`,
    /// `complexity_router_default_model`; other keys are not looked at).
    ///
    /// Every problem goes into `diags` at a path relative to `litellm_params`, e.g.
    /// `complexity_router_config.tier_boundaries.simple_medium` (the config loader files them under the
    /// deployment's path). `is_name(target)` says whether a tier target or the default model is a known model
    /// name or alias; an unknown one is an error. Returns `None` when any error was reported.
    pub fn from_params(
        params: &Map<String, Value>,
        is_name: &dyn Fn(&str) -> bool,
        diags: &mut Diagnostics,
    ) -> Option<Self> {
        // Its own problems apart, so that "any error" means this router's.
        let mut report = Diagnostics::default();
        let router = parse(params, is_name, &mut report);
        let failed = report.has_errors();
        diags.extend_under("", report);
        if failed {
            return None;
        }
        router
    }
}

fn parse(
    params: &Map<String, Value>,
    is_name: &dyn Fn(&str) -> bool,
    report: &mut Diagnostics,
) -> Option<ComplexityRouter> {
    let empty = Map::new();
    let config = match params.get(CONFIG) {
        None | Some(Value::Null) => &empty,
        Some(value) => as_mapping(value, CONFIG, report).unwrap_or(&empty),
    };
    for (key, value) in config {
        let path = format!("{CONFIG}.{key}");
        if ACTED_ON.contains(&key.as_str()) {
            continue;
        }
        if DECISION_CHANGING.contains(&key.as_str()) {
            if enabled(value) {
                report.error(path, "not implemented by llmux, and it changes which tier LiteLLM picks");
            }
        } else if NOT_ACTED_ON.contains(&key.as_str()) {
            report.warn(path, "LiteLLM option not implemented by llmux; ignored");
        } else {
            report.warn(path, "unknown key; ignored (as LiteLLM does)");
        }
    }

    if let Some(value) = config.get("classifier_type") {
        match value {
            Value::Null => {}
            Value::String(s) if s == "heuristic" => {}
            Value::String(s) => report.error(
                format!("{CONFIG}.classifier_type"),
                format!("{s:?} is not implemented by llmux: only the heuristic scorer (\"heuristic\") is"),
            ),
            other => report.error(format!("{CONFIG}.classifier_type"), must_be("a string", other)),
        }
    }

    let tiers = tiers(config, is_name, report);
    let default_model = default_model(params, config, &tiers, is_name, report);

    let mut boundaries = defaults::BOUNDARIES.map(|(_, v)| v);
    if let Some(map) = mapping(config, "tier_boundaries", report) {
        let names = defaults::BOUNDARIES.map(|(k, _)| k);
        for (key, value) in map {
            let path = format!("{CONFIG}.tier_boundaries.{key}");
            match names.iter().position(|n| n == key) {
                Some(i) => {
                    if let Some(v) = finite_number(value, &path, report) {
                        boundaries[i] = v;
                    }
                }
                None => report.warn(
                    path,
                    "unknown boundary; ignored: the boundaries are simple_medium, medium_complex and complex_reasoning",
                ),
            }
        }
        if !(boundaries[0] <= boundaries[1] && boundaries[1] <= boundaries[2]) {
            report.warn(
                format!("{CONFIG}.tier_boundaries"),
                format!(
                    "not ascending ({} / {} / {}): a score is tested against simple_medium, then medium_complex, then complex_reasoning, so a tier is unreachable",
                    boundaries[0], boundaries[1], boundaries[2]
                ),
            );
        }
    }

    // Unset tracks the SIMPLE/MEDIUM boundary (latest version; legacy promoted on 2+ markers unconditionally).
    let mut override_min = boundaries[0];
    match config.get("reasoning_override_min_score") {
        None | Some(Value::Null) => {}
        Some(value) => {
            if let Some(v) = finite_number(value, &format!("{CONFIG}.reasoning_override_min_score"), report) {
                override_min = v;
            }
        }
    }

    let mut token_thresholds = defaults::TOKEN_THRESHOLDS.map(|(_, v)| v);
    if let Some(map) = mapping(config, "token_thresholds", report) {
        let names = defaults::TOKEN_THRESHOLDS.map(|(k, _)| k);
        for (key, value) in map {
            let path = format!("{CONFIG}.token_thresholds.{key}");
            match names.iter().position(|n| n == key) {
                Some(i) => match integer(value) {
                    Some(v) => token_thresholds[i] = v,
                    None => report.error(path, format!("must be an integer, found {value}")),
                },
                None => report.warn(path, "unknown threshold; ignored: the thresholds are simple and complex"),
            }
        }
    }

    let mut weights = defaults::WEIGHTS.map(|(_, w)| w);
    if let Some(map) = mapping(config, "dimension_weights", report) {
        weights = [0.0; 7];
        let mut seen = [false; 7];
        for (key, value) in map {
            let path = format!("{CONFIG}.dimension_weights.{key}");
            match DIMENSIONS.iter().position(|n| n == key) {
                Some(i) => {
                    if let Some(w) = finite_number(value, &path, report) {
                        weights[i] = w;
                        seen[i] = true;
                    }
                }
                None => report
                    .warn(path, format!("unknown dimension; ignored: the dimensions are {}", DIMENSIONS.join(", "))),
            }
        }
        let missing: Vec<&str> = DIMENSIONS.iter().zip(seen).filter(|(_, s)| !s).map(|(n, _)| *n).collect();
        if !missing.is_empty() {
            report.warn(
                format!("{CONFIG}.dimension_weights"),
                format!("{} weigh 0: a configured map replaces LiteLLM's default weights entirely", missing.join(", ")),
            );
        }
    }

    let code = keywords(config, "code_keywords", report).unwrap_or_else(|| owned(defaults::CODE));
    let reasoning = keywords(config, "reasoning_keywords", report).unwrap_or_else(|| owned(defaults::REASONING));
    let mut technical = keywords(config, "technical_keywords", report).unwrap_or_else(|| owned(defaults::TECHNICAL));
    let simple = keywords(config, "simple_keywords", report).unwrap_or_else(|| owned(defaults::SIMPLE));
    if let Some(custom) = scoring_list(config, "custom_technical_keywords", report) {
        append_custom(&mut technical, custom);
    }

    let reminders = reminder_markers(config, report);

    // `escalation_keywords`: unset → ["LITELLM ESCALATE"]; entries are trimmed and blank ones dropped, so an
    // empty list switches escalation off.
    let escalation = match keyword_list(config, "escalation_keywords", report) {
        None => owned(defaults::ESCALATION),
        Some(list) => list.iter().map(|k| py_strip(k)).filter(|k| !k.is_empty()).map(str::to_owned).collect(),
    };
    let housekeeping = match config.get("route_housekeeping_to_cheapest_tier") {
        None | Some(Value::Null) | Some(Value::Bool(true)) => true,
        Some(Value::Bool(false)) => false,
        Some(other) => {
            report.error(format!("{CONFIG}.route_housekeeping_to_cheapest_tier"), must_be("true or false", other));
            true
        }
    };
    let housekeeping = housekeeping.then(|| {
        let mut sentinels = owned(defaults::HOUSEKEEPING);
        if let Some(extra) = keyword_list(config, "housekeeping_patterns", report) {
            sentinels.extend(extra.iter().map(|k| py_strip(k)).filter(|k| !k.is_empty()).map(str::to_owned));
        }
        sentinels
    });

    let matcher = match Matcher::new([code, reasoning, technical, simple]) {
        Ok(m) => m,
        Err(e) => {
            report.error(CONFIG, e);
            return None;
        }
    };
    let multi_step = match defaults::MULTI_STEP.iter().map(|(_, rust)| Regex::new(rust)).collect::<Result<Vec<_>, _>>()
    {
        Ok(regexes) => regexes,
        Err(e) => {
            report.error(CONFIG, format!("cannot compile the multi-step patterns: {e}"));
            return None;
        }
    };

    let mut all_targets: Vec<String> = Vec::new();
    for name in tiers.iter().flatten().flatten().chain(default_model.iter()) {
        if !all_targets.contains(name) {
            all_targets.push(name.clone());
        }
    }

    Some(ComplexityRouter {
        tiers,
        default_model,
        boundaries,
        override_min,
        token_thresholds,
        weights,
        matcher,
        multi_step,
        reminders,
        escalation,
        housekeeping,
        all_targets,
    })
}

fn owned(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// A sub-mapping of the config: `None` when absent; a non-mapping is an error (pydantic rejects `null` too).
fn mapping<'c>(config: &'c Map<String, Value>, key: &str, report: &mut Diagnostics) -> Option<&'c Map<String, Value>> {
    as_mapping(config.get(key)?, &format!("{CONFIG}.{key}"), report)
}

/// An integer as pydantic's lax `int` takes it from JSON: an integer, or a float with no fractional part.
fn integer(value: &Value) -> Option<i64> {
    let n = value.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

/// A list of strings, or `None` when absent/`null`.
fn keyword_list(config: &Map<String, Value>, key: &str, report: &mut Diagnostics) -> Option<Vec<String>> {
    string_list(config.get(key)?, &format!("{CONFIG}.{key}"), report)
}

/// A scoring keyword list, with a warning for blank entries: LiteLLM keeps them, and they match nearly every
/// prompt (an empty keyword wherever there is a letter or digit, a space wherever there is a space).
fn scoring_list(config: &Map<String, Value>, key: &str, report: &mut Diagnostics) -> Option<Vec<String>> {
    let list = keyword_list(config, key, report)?;
    for (i, keyword) in list.iter().enumerate() {
        if py_strip(keyword).is_empty() {
            report.warn(format!("{CONFIG}.{key}[{i}]"), "blank keyword: it matches almost every prompt");
        }
    }
    Some(list)
}

/// A replacement keyword list: `None` (keep the default) when absent, `null` or empty, as LiteLLM's
/// `config.code_keywords or DEFAULT_CODE_KEYWORDS` does.
fn keywords(config: &Map<String, Value>, key: &str, report: &mut Diagnostics) -> Option<Vec<String>> {
    let list = scoring_list(config, key, report)?;
    if list.is_empty() {
        report.warn(format!("{CONFIG}.{key}"), "empty: LiteLLM keeps its default list");
        return None;
    }
    Some(list)
}

/// `_append_custom_keywords`: custom keywords not already in the base list (case-insensitively) are appended in
/// order of first appearance; a keyword repeated within the custom list keeps its last spelling.
fn append_custom(base: &mut Vec<String>, custom: Vec<String>) {
    let base_lowered: std::collections::HashSet<String> = base.iter().map(|k| k.to_lowercase()).collect();
    let mut added: Vec<(String, String)> = Vec::new();
    for keyword in custom {
        let lowered = keyword.to_lowercase();
        if base_lowered.contains(&lowered) {
            continue;
        }
        match added.iter_mut().find(|(l, _)| *l == lowered) {
            Some(entry) => entry.1 = keyword,
            None => added.push((lowered, keyword)),
        }
    }
    base.extend(added.into_iter().map(|(_, k)| k));
}

fn reminder_markers(config: &Map<String, Value>, report: &mut Diagnostics) -> Reminders {
    let default = || {
        let (open, close) = defaults::REMINDER_MARKERS;
        Reminders::new(vec![(open.to_owned(), close.to_owned())])
    };
    let path = format!("{CONFIG}.reminder_markers");
    let items = match config.get("reminder_markers") {
        None | Some(Value::Null) => return default(),
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => {
            report.error(
                path,
                "must list at least one {open, close} pair (omit it for the default <system-reminder> pair)",
            );
            return default();
        }
        Some(other) => {
            report.error(path, must_be("a list of {open, close} pairs", other));
            return default();
        }
    };
    let mut pairs = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Some(map) = item.as_object() else {
            report.error(at, must_be("a mapping with open and close", item));
            continue;
        };
        let mut side = |key: &str| match map.get(key) {
            Some(Value::String(s)) if !py_strip(s).is_empty() => Some(py_strip(s).to_lowercase()),
            Some(Value::String(_)) => {
                report.error(format!("{at}.{key}"), "must not be blank");
                None
            }
            Some(other) => {
                report.error(format!("{at}.{key}"), must_be("a string", other));
                None
            }
            None => {
                report.error(format!("{at}.{key}"), "missing");
                None
            }
        };
        let (open, close) = (side("open"), side("close"));
        if let (Some(open), Some(close)) = (open, close) {
            if open == close {
                report.error(at, "open and close must be different strings");
            } else {
                pairs.push((open, close));
            }
        }
    }
    if pairs.is_empty() {
        return default();
    }
    Reminders::new(pairs)
}

/// `tiers`: absent → LiteLLM's default map; otherwise the configured map replaces it whole.
fn tiers(
    config: &Map<String, Value>,
    is_name: &dyn Fn(&str) -> bool,
    report: &mut Diagnostics,
) -> [Option<Vec<String>>; 4] {
    let mut out: [Option<Vec<String>>; 4] = Default::default();
    let Some(value) = config.get("tiers") else {
        for (name, model) in defaults::TIER_MODELS {
            if let Some(tier) = Tier::from_name(name) {
                out[tier as usize] = Some(vec![model.to_owned()]);
            }
        }
        let unknown: Vec<&str> = defaults::TIER_MODELS.iter().map(|(_, m)| *m).filter(|m| !is_name(m)).collect();
        if !unknown.is_empty() {
            report.error(
                format!("{CONFIG}.tiers"),
                format!(
                    "missing: LiteLLM's default tiers route to gpt-4o-mini, gpt-4o and claude-sonnet-4-20250514, and {} not a model in this config; map SIMPLE, MEDIUM, COMPLEX and REASONING to your model names",
                    if unknown.len() == 1 { format!("{} is", unknown[0]) } else { format!("{} are", unknown.join(", ")) }
                ),
            );
        }
        return out;
    };
    let path = format!("{CONFIG}.tiers");
    let Value::Object(map) = value else {
        report.error(path, must_be("a mapping of tier to model name(s)", value));
        return out;
    };
    for (key, value) in map {
        let at = format!("{path}.{key}");
        let Some(tier) = Tier::from_name(key) else {
            let hint = match Tier::from_name(&key.to_uppercase()) {
                Some(t) => format!(" (tier names are upper-case: {t}; LiteLLM never routes to {key:?})"),
                None => String::new(),
            };
            report.error(at, format!("unknown tier name; the tiers are SIMPLE, MEDIUM, COMPLEX and REASONING{hint}"));
            continue;
        };
        let mut names: Vec<String> = Vec::new();
        match value {
            Value::String(s) => names.push(s.clone()),
            Value::Array(items) if items.is_empty() => {
                report.error(at, "empty: LiteLLM fails every request routed to this tier");
                continue;
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) if names.contains(s) => {
                            report.error(format!("{at}[{i}]"), format!("duplicate model {s:?} (LiteLLM rejects duplicates in a tier)"))
                        }
                        Value::String(s) => names.push(s.clone()),
                        Value::Object(_) => report.error(
                            format!("{at}[{i}]"),
                            "tier entries with their own litellm_params are not supported by llmux; name a model instead",
                        ),
                        other => report.error(format!("{at}[{i}]"), must_be("a model name", other)),
                    }
                }
            }
            Value::Object(_) => {
                report.error(
                    at,
                    "tier entries with their own litellm_params are not supported by llmux; name a model instead",
                );
                continue;
            }
            other => {
                report.error(at, must_be("a model name or a list of model names", other));
                continue;
            }
        }
        let list = matches!(value, Value::Array(_));
        for (i, name) in names.iter().enumerate() {
            if !is_name(name) {
                let at = if list { format!("{at}[{i}]") } else { at.clone() };
                report.error(at, format!("unknown model {name:?}: not a model_name or alias in this config"));
            }
        }
        if !names.is_empty() {
            out[tier as usize] = Some(names);
        }
    }
    out
}

/// The default model, as `Router.init_complexity_router_deployment` and `ComplexityRouter.__init__` settle it:
/// `complexity_router_default_model`, else `complexity_router_config.default_model`, else (only when the config
/// is non-empty) the MEDIUM, then SIMPLE, tier (a list's first entry); none of them → the deployment is refused.
/// The value kept is the one that is truthy in Python: an empty `complexity_router_default_model` passes the
/// presence check but leaves `complexity_router_config.default_model` in force.
fn default_model(
    params: &Map<String, Value>,
    config: &Map<String, Value>,
    tiers: &[Option<Vec<String>>; 4],
    is_name: &dyn Fn(&str) -> bool,
    report: &mut Diagnostics,
) -> Option<String> {
    let read = |value: Option<&Value>, path: &str, report: &mut Diagnostics| match value {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            if !s.is_empty() && !is_name(s) {
                report.error(path, format!("unknown model {s:?}: not a model_name or alias in this config"));
            }
            Some(s.clone())
        }
        Some(other) => {
            report.error(path, must_be("a model name", other));
            None
        }
    };
    let from_params = read(params.get(DEFAULT_MODEL), DEFAULT_MODEL, report);
    let from_config = read(config.get("default_model"), &format!("{CONFIG}.default_model"), report);
    let resolved = if config.is_empty() {
        from_params.clone()
    } else {
        // Derived from the tier map; those names were checked as tier targets already.
        let derived =
            || [Tier::Medium, Tier::Simple].iter().find_map(|t| tiers[*t as usize].as_ref()?.first().cloned());
        from_params.clone().or_else(|| from_config.clone()).or_else(derived)
    };
    let Some(resolved) = resolved else {
        if !report.has_errors() {
            report.error(
                DEFAULT_MODEL,
                "missing: LiteLLM refuses a complexity router with no default model unless complexity_router_config sets default_model or a MEDIUM or SIMPLE tier",
            );
        }
        return None;
    };
    let kept = if resolved.is_empty() { from_config } else { Some(resolved) };
    kept.filter(|name| !name.is_empty())
}
