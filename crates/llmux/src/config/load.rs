//! Every file the config is made of is read here: the YAML (→ a JSON tree, `include`s merged) and the route
//! files semantic routers name (`auto_router_config_path`), so [`load_tracked`] can tell the reload watcher
//! about each of them. `environment_variables` and `os.environ/VAR` references are resolved here too.
//! Validation of the tree is `validate`'s job; it reads no file.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::validate::{self, RouteFiles};
use super::{Config, Diagnostics};

/// Environment variables llmux never takes from a config file (as LiteLLM's blocklist).
const BLOCKED_ENV: &[&str] =
    &["PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONHOME", "HOME", "USER", "SHELL", "LOGNAME"];

/// Loads and validates the config at `path`. On success the config comes with its warnings; on failure every
/// problem found is returned.
pub fn load(path: &Path) -> Result<(Config, Diagnostics), Diagnostics> {
    load_tracked(path).0
}

/// [`load`], also returning every file it read (the config and its `include`s), so a watcher knows what to
/// watch even when the config does not load.
pub fn load_tracked(path: &Path) -> (Result<(Config, Diagnostics), Diagnostics>, Vec<PathBuf>) {
    let mut diags = Diagnostics::default();
    let mut seen = HashSet::new();
    let tree = read_tree(path, &mut seen, &mut diags, "");
    let (loaded, routes) = finish(tree, &mut diags, &process_env);
    let loaded = loaded.map(|c| (c, diags.clone())).map_err(|()| diags);
    let mut sources: Vec<PathBuf> = seen.into_iter().chain(routes.into_keys().map(PathBuf::from)).collect();
    sources.sort();
    sources.dedup();
    (loaded, sources)
}

/// Reads the files semantic routers take their routes from (`litellm_params.auto_router_config_path`, relative
/// to the working directory as LiteLLM reads them), by the path as written: part of the config, so editing one is
/// a change to reload. A file that cannot be read is kept with why, for the router to report at its path.
fn route_files(tree: &Map<String, Value>) -> RouteFiles {
    let entries = tree.get("model_list").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    entries
        .iter()
        .filter_map(|entry| entry.get("litellm_params")?.get("auto_router_config_path")?.as_str())
        .map(|path| (path.to_owned(), std::fs::read_to_string(path).map_err(|e| e.to_string())))
        .collect()
}

/// Loads a config from YAML text (no `include` support: paths need a file), with `env` as the environment.
pub fn load_str(yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<(Config, Diagnostics), Diagnostics> {
    let mut diags = Diagnostics::default();
    let tree = parse_yaml(yaml, "<config>", &mut diags);
    finish(tree, &mut diags, env).0.map(|c| (c, diags.clone())).map_err(|()| diags)
}

/// Resolves the environment in the merged tree, reads the route files it names and validates it; returns the
/// config (or that it failed: the problems are in `diags`) and the route files read.
fn finish(
    tree: Option<Map<String, Value>>,
    diags: &mut Diagnostics,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Result<Config, ()>, RouteFiles) {
    let Some(mut tree) = tree else { return (Err(()), RouteFiles::new()) };
    let overlay = environment_overlay(&mut tree, diags, env);
    let lookup = |name: &str| overlay.get(name).cloned().or_else(|| env(name));
    for (key, value) in tree.iter_mut() {
        if key != "environment_variables" {
            resolve_env_refs(value, key, &lookup, diags);
        }
    }
    let routes = route_files(&tree);
    let config = validate::validate(&tree, diags, &lookup, &routes);
    let config = if diags.has_errors() { Err(()) } else { config.ok_or(()) };
    (config, routes)
}

/// `environment_variables` as a map the rest of the load reads before the process environment (llmux does not
/// mutate its own environment).
fn environment_overlay(
    tree: &mut Map<String, Value>,
    diags: &mut Diagnostics,
    env: &dyn Fn(&str) -> Option<String>,
) -> HashMap<String, String> {
    let mut overlay = HashMap::new();
    let Some(value) = tree.get_mut("environment_variables") else { return overlay };
    let Some(map) = value.as_object_mut() else {
        if !value.is_null() {
            diags.error("environment_variables", "must be a mapping of NAME: value");
        }
        return overlay;
    };
    for (name, value) in map.iter_mut() {
        let path = format!("environment_variables.{name}");
        if BLOCKED_ENV.contains(&name.as_str()) || name.starts_with("DYLD_") {
            diags.warn(&path, "this variable cannot be set from a config file; ignored");
            continue;
        }
        resolve_env_refs(value, &path, &|n| env(n), diags);
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                diags.error(&path, "must be a string, number or boolean");
                continue;
            }
        };
        overlay.insert(name.clone(), text);
    }
    overlay
}

/// The process environment as configs see it: `VAR`, or else the contents of the file named by `VAR_FILE`
/// (Docker and Kubernetes secrets), without its trailing newline.
pub fn process_env(name: &str) -> Option<String> {
    if let Ok(value) = std::env::var(name) {
        return Some(value);
    }
    let file = std::env::var(format!("{name}_FILE")).ok()?;
    let text = std::fs::read_to_string(file).ok()?;
    Some(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// Replaces every string `os.environ/VAR` in `value` by the variable's value; an unset variable is an error.
fn resolve_env_refs(value: &mut Value, path: &str, env: &dyn Fn(&str) -> Option<String>, diags: &mut Diagnostics) {
    match value {
        Value::String(s) => {
            if let Some(name) = s.strip_prefix("os.environ/") {
                match env(name) {
                    Some(v) => *s = v,
                    None => match env(&format!("{name}_FILE")) {
                        Some(file) => diags.error(
                            path,
                            format!("environment variable {name} is not set, and {name}_FILE ({file}) cannot be read"),
                        ),
                        None => diags.error(path, format!("environment variable {name} is not set")),
                    },
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                resolve_env_refs(item, &format!("{path}[{i}]"), env, diags);
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                resolve_env_refs(v, &format!("{path}.{k}"), env, diags);
            }
        }
        _ => {}
    }
}

/// Parses one YAML file into a JSON tree, on which validation reports YAML paths. serde-saphyr is pure Rust,
/// returns errors instead of panicking on any input, and bounds alias expansion, nodes and nesting with its
/// default budget, so a billion-laughs file is an error, not an out-of-memory.
fn parse_yaml(text: &str, origin: &str, diags: &mut Diagnostics) -> Option<Map<String, Value>> {
    let yaml: Option<Value> = match serde_saphyr::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            diags.error("", format!("{origin}: invalid YAML: {e}"));
            return None;
        }
    };
    match yaml {
        None | Some(Value::Null) => Some(Map::new()),
        Some(Value::Object(map)) => Some(map),
        Some(_) => {
            diags.error("", format!("{origin}: the top level must be a mapping (model_list, router_settings, …)"));
            None
        }
    }
}

/// Reads `path` and merges its `include`s (resolved relative to the including file; top-level lists are
/// concatenated, other values replaced; a file already read is skipped, so cycles end).
fn read_tree(
    path: &Path,
    seen: &mut HashSet<PathBuf>,
    diags: &mut Diagnostics,
    from: &str,
) -> Option<Map<String, Value>> {
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if !seen.insert(canonical) {
        return Some(Map::new());
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            diags.error(from, format!("cannot read {}: {e}", path.display()));
            return None;
        }
    };
    let mut tree = parse_yaml(&text, &path.display().to_string(), diags)?;
    let Some(includes) = tree.remove("include") else { return Some(tree) };
    let Some(list) = includes.as_array() else {
        diags.error("include", "must be a list of file paths");
        return Some(tree);
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    for (i, entry) in list.iter().enumerate() {
        let at = format!("include[{i}]");
        let Some(name) = entry.as_str() else {
            diags.error(&at, "must be a file path (string)");
            continue;
        };
        let Some(included) = read_tree(&dir.join(name), seen, diags, &at) else { continue };
        for (key, value) in included {
            match (tree.get_mut(&key), value) {
                (Some(Value::Array(base)), Value::Array(more)) => base.extend(more),
                (_, value) => {
                    tree.insert(key, value);
                }
            }
        }
    }
    Some(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_semantic_routers_route_file_is_watched_with_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let routes = dir.path().join("routes.json");
        std::fs::write(&routes, r#"{"routes": []}"#).unwrap();
        let main = dir.path().join("main.yaml");
        std::fs::write(
            &main,
            format!(
                "model_list:\n  - model_name: smart\n    litellm_params: {{model: auto_router/smart, auto_router_config_path: {:?}}}\n",
                routes.display().to_string()
            ),
        )
        .unwrap();
        let (_, files) = load_tracked(&main);
        assert!(files.contains(&routes), "{files:?}");
        assert!(files.iter().any(|f| f.ends_with("main.yaml")), "{files:?}");
    }

    #[test]
    fn includes_concatenate_lists_and_replace_other_values() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("main.yaml"),
            "include: [more.yaml]\nmodel_list:\n  - model_name: a\n    litellm_params: {model: ollama/a}\nrouter_settings: {num_retries: 1}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("more.yaml"),
            "include: [main.yaml]\nmodel_list:\n  - model_name: b\n    litellm_params: {model: ollama/b}\nrouter_settings: {num_retries: 4}\n",
        )
        .unwrap();
        let (config, _) = load(&dir.path().join("main.yaml")).unwrap();
        assert_eq!(config.group_order, ["a", "b"]);
        assert_eq!(config.router.num_retries, 4);
    }

    #[test]
    fn a_variable_can_come_from_the_file_its_file_variable_names() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("key");
        std::fs::write(&secret, "sk-from-a-file\n").unwrap();
        // A name no other test or CI sets.
        std::env::set_var("LLMUX_TEST_SECRET_FILE", &secret);
        assert_eq!(process_env("LLMUX_TEST_SECRET").as_deref(), Some("sk-from-a-file"));
        std::env::set_var("LLMUX_TEST_SECRET", "direct");
        assert_eq!(process_env("LLMUX_TEST_SECRET").as_deref(), Some("direct"), "the variable itself wins");
        std::env::remove_var("LLMUX_TEST_SECRET");
        std::env::set_var("LLMUX_TEST_SECRET_FILE", dir.path().join("missing"));
        let yaml = "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, api_base: 'http://h:1', api_key: os.environ/LLMUX_TEST_SECRET}\n";
        let errors = load_str(yaml, &process_env).unwrap_err().to_string();
        assert!(errors.contains("LLMUX_TEST_SECRET_FILE"), "{errors}");
        std::env::remove_var("LLMUX_TEST_SECRET_FILE");
    }

    #[test]
    fn environment_variables_feed_os_environ_references() {
        let yaml = "environment_variables:\n  KEY: os.environ/REAL\nmodel_list:\n  - model_name: a\n    litellm_params: {model: openai/a, api_base: 'http://h:1/v1', api_key: os.environ/KEY}\n";
        let env = |n: &str| (n == "REAL").then(|| "sk-secret".to_owned());
        let (config, _) = load_str(yaml, &env).unwrap();
        let key = config.deployments[0].engine().unwrap().api_key.clone().unwrap();
        assert_eq!(key.expose(), "sk-secret");
    }

    #[test]
    fn unset_variable_is_an_error_with_its_path() {
        let yaml = "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, api_base: 'http://h:1', api_key: os.environ/NOPE_X}\n";
        let diags = load_str(yaml, &|_| None).unwrap_err();
        let first = diags.errors().next().unwrap();
        assert_eq!(first.path, "model_list[0].litellm_params.api_key");
        assert!(first.message.contains("NOPE_X"));
    }
}
