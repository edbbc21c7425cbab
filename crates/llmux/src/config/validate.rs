//! Turns the resolved JSON tree into a [`Config`], section by section (each in its file under `sections/`),
//! collecting every problem with its YAML path.
//!
//! Each section lists the keys llmux acts on; keys LiteLLM knows but llmux does not act on yet are reported as
//! warnings (never silently ignored), and keys LiteLLM reads from another section are honoured where they are
//! and pointed out. The order of the calls below is the order problems are reported in.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::reader::{clamp_u32, get_bool, get_uint};
use super::sections::{
    auto_router, general_settings, hosts, litellm_settings, llmux_settings, model_list, router_settings, telemetry,
};
use super::{defaults, Config, Diagnostics, Pattern, Target};

/// The top-level sections of LiteLLM's proxy config llmux reads (`include` is merged away by `load`).
const TOP_LEVEL: &[&str] = &[
    "model_list",
    "litellm_settings",
    "router_settings",
    "general_settings",
    "environment_variables",
    "llmux_settings",
];

/// What `load` read besides the config files: the route files of semantic routers
/// (`auto_router_config_path`), by the path as written, each with its text or why it could not be read.
pub(super) type RouteFiles = HashMap<String, Result<String, String>>;

/// The config in `tree` (includes merged, environment resolved), with every problem in `diags`; `route_files`
/// are what `load` read for semantic routers.
pub(super) fn validate(
    tree: &Map<String, Value>,
    diags: &mut Diagnostics,
    env: &dyn Fn(&str) -> Option<String>,
    route_files: &RouteFiles,
) -> Option<Config> {
    for key in tree.keys() {
        if !TOP_LEVEL.contains(&key.as_str()) {
            diags.warn(key, "section not supported by llmux yet; ignored");
        }
    }
    let empty = Map::new();
    let litellm = section(tree, "litellm_settings", diags).unwrap_or(&empty);
    let router_map = section(tree, "router_settings", diags).unwrap_or(&empty);
    let general_map = section(tree, "general_settings", diags).unwrap_or(&empty);

    let mut deployments = model_list::model_list(tree.get("model_list"), diags, env);
    if let Some(n) = get_uint(router_map, "default_max_parallel_requests", "router_settings", diags) {
        for d in deployments.iter_mut().filter(|d| d.max_parallel_requests.is_none()) {
            d.max_parallel_requests = Some(clamp_u32(n.max(1)));
        }
    }
    let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
    let mut group_order = Vec::new();
    for d in &deployments {
        let members = groups.entry(d.model_name.clone()).or_default();
        if members.is_empty() {
            group_order.push(d.model_name.clone());
        }
        members.push(d.index);
    }
    let ids: std::collections::HashSet<String> = deployments.iter().map(|d| d.id.clone()).collect();
    let known = |name: &str| groups.contains_key(name) || ids.contains(name);

    let (aliases, alias_order) = router_settings::aliases(router_map.get("model_group_alias"), &known, diags);
    let is_name = |name: &str| known(name) || aliases.contains_key(name);
    auto_router::auto_routers(&mut deployments, &is_name, route_files, diags);
    let mut router = router_settings::router_settings(router_map, litellm, &is_name, diags);
    router.redis = router_settings::redis_settings(router_map, diags, env);
    let general = general_settings::general_settings(general_map, litellm, router_map, diags, env);
    litellm_settings::not_acted_on(litellm, diags);
    let llmux = tree.get("llmux_settings").and_then(Value::as_object);
    let telemetry = telemetry::telemetry(litellm, general_map, llmux, diags);

    let mut hosts = hosts::hosts(&mut deployments);
    llmux_settings::check_keys(tree.get("llmux_settings"), diags);
    hosts::host_limits(llmux, &mut hosts, &deployments, &is_name, diags);
    let llmux_settings::GroupSettings { keep_alive: group_keep_alive, priority: priorities } =
        llmux_settings::group_settings(llmux, &|g| groups.contains_key(g), &|a| aliases.contains_key(a), diags);
    let images = llmux_settings::image_fetch(llmux, diags);
    let ollama_requires_key = llmux_settings::ollama_requires_key(llmux, diags);
    let limits = llmux_settings::server_limits(llmux, general_map, diags);
    let warmup = llmux.and_then(|s| get_bool(s, "warmup", "llmux_settings", diags)).unwrap_or(defaults::WARMUP);
    // A pinned model stays loaded: Ollama would unload it after its default 5 minutes idle.
    for host in &hosts {
        for &i in &host.deployments {
            let d = &mut deployments[i];
            if let Target::Engine(engine) = &mut d.target {
                let pinned = host.limits.pinned.iter().any(|p| crate::state::same_model(p, &engine.upstream_model));
                if pinned && engine.keep_alive.is_none() {
                    engine.keep_alive = Some(Value::from(defaults::PINNED_KEEP_ALIVE));
                }
                if engine.keep_alive.is_none() {
                    engine.keep_alive = group_keep_alive.get(&d.model_name).cloned();
                }
            }
        }
    }
    let mut patterns: Vec<Pattern> = group_order.iter().filter_map(|g| Pattern::new(g)).collect();
    // LiteLLM's order: the longest pattern first, then the one with more regex metacharacters.
    let metachars = |p: &Pattern| p.group.chars().filter(|c| "*.?+^$[](){}|\\".contains(*c)).count();
    patterns.sort_by_key(|p| std::cmp::Reverse((p.group.len(), metachars(p))));
    for d in &deployments {
        let stars = d.engine().map_or(0, |e| e.upstream_model.matches('*').count());
        if stars > 0 && !d.model_name.contains('*') {
            diags.error(
                format!("model_list[{}].litellm_params.model", d.index),
                "a `*` in the model needs a wildcard model_name (e.g. model_name: ollama/*) to fill it in",
            );
        }
    }
    let ids = deployments.iter().map(|d| (d.id.clone(), d.index)).collect();
    let mut models = HashMap::new();
    for d in &deployments {
        models.entry(d.model.clone()).or_insert(d.index);
    }
    Some(Config {
        deployments,
        groups,
        group_order,
        aliases,
        alias_order,
        ids,
        models,
        hosts,
        patterns,
        router,
        general,
        images,
        ollama_requires_key,
        limits,
        telemetry,
        warmup,
        priorities,
    })
}

/// A top-level section that must be a mapping; absent or `null` is an empty one.
fn section<'a>(tree: &'a Map<String, Value>, key: &str, diags: &mut Diagnostics) -> Option<&'a Map<String, Value>> {
    match tree.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(_) => {
            diags.error(key, "must be a mapping");
            None
        }
    }
}
