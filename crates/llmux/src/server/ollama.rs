//! Ollama's model routes as its clients call them: `/api/tags`, `/api/ps`, `/api/show`, `/api/version`, and the
//! management routes llmux answers without touching an engine (`/api/pull`, `/api/delete`, …).
//!
//! The models are llmux's names (groups, then aliases that are not hidden, as `/v1/models` lists them), each
//! listed with its tag (`:latest` when it has none), as Ollama lists its own: Home Assistant compares the name it
//! picked with the listed `model` field as is, and Open WebUI looks a name without a tag up with `:latest` added;
//! llmux routes both spellings. What a name's engines reported (size, context length, capabilities, what is
//! loaded) fills in the rest; family, parameter size and quantisation are not known to llmux and are empty.

use std::borrow::Cow;
use std::collections::HashSet;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use http::{header, Method, StatusCode, Uri};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::AppState;
use crate::config::{Config, Deployment};
use crate::error::{Dialect, Error};
use crate::protocol::ollama::{listed_name, rfc3339, routable_name, VERSION};
use crate::protocol::openai::Operation;
use crate::state::{same_model, HostState, Millis, ModelFacts, Resident};

/// The routes, merged into the app (behind its key check).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/tags", get(tags))
        .route("/api/ps", get(ps))
        .route("/api/show", post(show))
        .route("/api/version", get(version))
        .route("/api/pull", post(pull))
        .route("/api/delete", any(manage))
        .route("/api/create", any(manage))
        .route("/api/copy", any(manage))
        .route("/api/push", any(manage))
        .route("/api/blobs/{digest}", any(manage))
}

/// One model llmux lists: its name as configured and the deployments behind it with the model each engine is
/// asked for.
struct Listed<'c> {
    name: String,
    members: Vec<(&'c Deployment, Option<String>)>,
}

/// The deployments `name` routes to, with their engine model names; `None` when it does not route.
fn members<'c>(config: &'c Config, name: &str) -> Option<Vec<(&'c Deployment, Option<String>)>> {
    let resolved = config.resolve(name)?;
    Some(
        resolved
            .deployments
            .iter()
            .map(|&i| {
                let d = &config.deployments[i];
                (d, config.engine_model(d, name).map(Cow::into_owned))
            })
            .collect(),
    )
}

/// Every name `/api/tags` lists, in `/v1/models` order. A wildcard group is listed as the models its engines
/// reported (an Ollama client cannot pick a pattern); one whose engines reported none is left out.
fn listed<'c>(config: &'c Config, hosts: &[HostState]) -> Vec<Listed<'c>> {
    let mut names: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for group in &config.group_order {
        if group.contains('*') {
            names.extend(super::models::wildcard_names(config, hosts, group));
        } else {
            names.push(group.clone());
        }
    }
    for name in &config.alias_order {
        if config.aliases.get(name).is_some_and(|a| !a.hidden) {
            names.push(name.clone());
        }
    }
    names
        .into_iter()
        .filter(|n| seen.insert(listed_name(n).into_owned()))
        .filter_map(|name| members(config, &name).map(|members| Listed { name, members }))
        .collect()
}

/// What llmux knows about a name from its engines.
#[derive(Default)]
struct Known {
    size: Option<u64>,
    context_length: Option<u64>,
    capabilities: Vec<String>,
    /// `gguf` when an engine behind the name is Ollama or llama.cpp.
    format: &'static str,
}

fn host<'h>(hosts: &'h [HostState], d: &Deployment) -> Option<&'h HostState> {
    d.host.and_then(|h| hosts.get(h))
}

fn facts<'h>(host: &'h HostState, model: &str) -> Option<&'h ModelFacts> {
    host.models.iter().find(|(m, _)| same_model(m, model)).map(|(_, f)| f)
}

fn known(listed: &Listed<'_>, hosts: &[HostState]) -> Known {
    let mut out = Known::default();
    let mut capabilities: Option<&[String]> = None;
    for (d, model) in &listed.members {
        let (Some(host), Some(model)) = (host(hosts, d), model.as_deref()) else { continue };
        if let Some(format) = host.engine.and_then(|e| e.model_format) {
            out.format = format;
        }
        if out.size.is_none() {
            out.size = host.sizes.iter().find(|(m, _)| same_model(m, model)).map(|(_, s)| *s);
        }
        if let Some(f) = facts(host, model) {
            // The smallest context of the engines a request may go to.
            if let Some(c) = f.context_length {
                out.context_length = Some(out.context_length.map_or(c, |o| o.min(c)));
            }
            if capabilities.is_none() && !f.capabilities.is_empty() {
                capabilities = Some(&f.capabilities);
            }
        }
    }
    // What the config says of the model (`model_info`) wins over what the engines reported.
    let info = listed.members.first().map(|(d, _)| &d.model_info);
    let flag = |key: &str| info.and_then(|i| i.get(key)).and_then(Value::as_bool);
    if let Some(max) = info.and_then(|i| i.get("max_input_tokens")).and_then(Value::as_u64) {
        out.context_length = Some(max);
    }
    let embedding = info.and_then(|i| i.get("mode")).and_then(Value::as_str) == Some("embedding");
    out.capabilities = match capabilities {
        Some(c) => c.to_vec(),
        None if embedding => vec!["embedding".into()],
        None => vec!["completion".into()],
    };
    if embedding && !out.capabilities.iter().any(|c| c == "embedding") {
        out.capabilities.push("embedding".into());
    }
    for (key, capability) in
        [("supports_function_calling", "tools"), ("supports_vision", "vision"), ("supports_reasoning", "thinking")]
    {
        match flag(key) {
            Some(true) if !out.capabilities.iter().any(|c| c == capability) => out.capabilities.push(capability.into()),
            Some(false) => out.capabilities.retain(|c| c != capability),
            _ => {}
        }
    }
    out
}

/// Ollama's `details` object.
fn details(known: &Known) -> Value {
    json!({
        "parent_model": "",
        "format": known.format,
        "family": "",
        "families": null,
        "parameter_size": "",
        "quantization_level": "",
    })
}

/// A stable sha256-like digest of an llmux name (Ollama's is the manifest's; clients only compare them).
fn digest(name: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(name.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// When llmux's state began (started or loaded a new config), as `modified_at`.
fn modified_at(state: &AppState) -> String {
    let ms = state.executor().state.to_unix(Millis(0));
    rfc3339(UNIX_EPOCH + Duration::from_millis(ms))
}

/// `GET /api/tags`.
async fn tags(State(state): State<AppState>) -> Json<Value> {
    let executor = state.executor();
    let hosts = executor.state.hosts();
    let modified = modified_at(&state);
    let models: Vec<Value> = listed(&executor.config, &hosts)
        .iter()
        .map(|l| {
            let known = known(l, &hosts);
            let name = listed_name(&l.name);
            json!({
                "name": name,
                "model": name,
                "modified_at": modified,
                "size": known.size.unwrap_or(0),
                "digest": digest(&l.name),
                "details": details(&known),
            })
        })
        .collect();
    Json(json!({"models": models}))
}

/// `GET /api/ps`: each name whose model is loaded on one of its engines' hosts now.
async fn ps(State(state): State<AppState>) -> Json<Value> {
    let executor = state.executor();
    let hosts = executor.state.hosts();
    let mut models = Vec::new();
    for l in listed(&executor.config, &hosts) {
        let loaded: Option<&Resident> = l.members.iter().find_map(|(d, model)| {
            let model = model.as_deref()?;
            host(&hosts, d)?.resident.iter().find(|r| same_model(&r.model, model))
        });
        let Some(loaded) = loaded else { continue };
        let known = known(&l, &hosts);
        let name = listed_name(&l.name);
        let mut entry = Map::new();
        entry.insert("name".into(), json!(name));
        entry.insert("model".into(), json!(name));
        entry.insert("size".into(), json!(loaded.size.or(known.size).unwrap_or(0)));
        entry.insert("digest".into(), json!(digest(&l.name)));
        entry.insert("details".into(), details(&known));
        // A model llmux only saw itself route there has no expiry it knows of.
        if let Some(expires) = &loaded.expires_at {
            entry.insert("expires_at".into(), json!(expires));
        }
        entry.insert("size_vram".into(), json!(loaded.size_vram.unwrap_or(0)));
        if let Some(context) = loaded.context_length {
            entry.insert("context_length".into(), json!(context));
        }
        models.push(Value::Object(entry));
    }
    Json(json!({"models": models}))
}

/// The body of `/api/show` and `/api/pull`: `model`, or `name` from older clients.
#[derive(Debug, Default, Deserialize)]
struct NameBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
}

fn name_body(body: &[u8]) -> Result<(String, Option<bool>), Error> {
    let parsed: NameBody = crate::protocol::openai::parse_body(body)?;
    let name = parsed.model.filter(|m| !m.is_empty()).or(parsed.name.filter(|m| !m.is_empty()));
    let name = name.ok_or_else(|| Error::invalid("model is required", Some("model")))?;
    Ok((name, parsed.stream))
}

/// `POST /api/show`: what llmux knows of a name, in Ollama's shape.
async fn show(State(state): State<AppState>, body: Bytes) -> Response {
    let executor = state.executor();
    let config = &executor.config;
    let (sent, _) = match name_body(&body) {
        Ok(b) => b,
        Err(e) => return e.response_in(Dialect::Ollama),
    };
    let routable = match routable_name(config, Operation::Chat, &sent) {
        Ok(n) => n,
        Err(e) => return e.response_in(Dialect::Ollama),
    };
    let Some(members) = members(config, &routable) else {
        return Error::UnknownModel { route: "/api/show".into(), model: sent }.response_in(Dialect::Ollama);
    };
    let hosts = executor.state.hosts();
    let listed = Listed { name: routable, members };
    let known = known(&listed, &hosts);
    let mut modelfile = format!("# Modelfile generated by llmux for \"{}\"\n", listed_name(&listed.name));
    let engines: Vec<&str> = listed.members.iter().filter_map(|(_, m)| m.as_deref()).collect();
    if engines.len() > 1 {
        modelfile.push_str(&format!("# Served by {} deployments\n", engines.len()));
    }
    if let Some(first) = engines.first() {
        modelfile.push_str(&format!("FROM {first}\n"));
    }
    // llmux does not know the architecture: its own name keys the context length, as Ollama keys it by
    // `general.architecture`.
    let mut model_info = Map::new();
    model_info.insert("general.architecture".into(), json!("llmux"));
    model_info.insert("general.basename".into(), json!(listed.name));
    if let Some(context) = known.context_length {
        model_info.insert("llmux.context_length".into(), json!(context));
    }
    let answer = json!({
        "license": "",
        "modelfile": modelfile,
        "parameters": "",
        "template": "",
        "details": details(&known),
        "model_info": model_info,
        "capabilities": known.capabilities,
        "modified_at": modified_at(&state),
    });
    Json(answer).into_response()
}

/// `GET /api/version`.
async fn version() -> Json<Value> {
    Json(json!({"version": VERSION}))
}

/// `POST /api/pull`: a name llmux serves is already there, and the answer says so as Ollama does for a model it
/// has; llmux never pulls anything onto an engine.
async fn pull(State(state): State<AppState>, body: Bytes) -> Response {
    let executor = state.executor();
    let (sent, stream) = match name_body(&body) {
        Ok(b) => b,
        Err(e) => return e.response_in(Dialect::Ollama),
    };
    if routable_name(&executor.config, Operation::Chat, &sent).is_err() {
        return Error::NotFound(format!(
            "llmux does not pull models: \"{sent}\" is not a model llmux serves (GET /api/tags lists them); \
             pull it on an engine host and add it to llmux's config"
        ))
        .response_in(Dialect::Ollama);
    }
    if stream == Some(false) {
        return Json(json!({"status": "success"})).into_response();
    }
    let mut lines = String::new();
    for status in ["pulling manifest", "verifying sha256 digest", "writing manifest", "success"] {
        lines.push_str(&json!({"status": status}).to_string());
        lines.push('\n');
    }
    ([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from(lines)).into_response()
}

/// `/api/delete`, `/api/create`, `/api/copy`, `/api/push`, `/api/blobs/…`: refused with a 403 whose message the
/// Ollama clients show, without touching an engine.
async fn manage(method: Method, uri: Uri) -> Response {
    let what = match uri.path() {
        "/api/delete" => "delete models",
        "/api/create" => "create models",
        "/api/copy" => "copy models",
        "/api/push" => "push models",
        _ => "store model blobs",
    };
    let message = format!(
        "llmux routes to the models its config names and does not {what}; do that on an engine host \
         ({method} {} is not served)",
        uri.path()
    );
    (StatusCode::FORBIDDEN, Json(json!({"error": message}))).into_response()
}
