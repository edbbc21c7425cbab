//! LiteLLM's key and spend routes (master key only): `/key/generate`, `/key/update`, `/key/delete`,
//! `/key/regenerate`, `/key/block`, `/key/unblock`, `/key/info`, `/key/list`, `/spend/logs`,
//! `/global/spend/report`. A key is returned once, by `/key/generate` and `/key/regenerate`; everything else
//! names keys by their hash (`token`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::store::{KeyRow, SpendFilter};
use super::{limits, Keys, Settings};
use crate::error::Error;
use crate::server::AppState;

/// The routes; the caller puts them behind the master key.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/key/generate", post(generate))
        .route("/key/update", post(update))
        .route("/key/delete", post(delete))
        .route("/key/regenerate", post(regenerate))
        .route("/key/{key}/regenerate", post(regenerate_path))
        .route("/key/block", post(block))
        .route("/key/unblock", post(unblock))
        .route("/key/info", get(info))
        .route("/key/list", get(list))
        .route("/spend/logs", get(spend_logs))
        .route("/global/spend/report", get(spend_report))
}

fn keys(state: &AppState) -> Result<Arc<Keys>, Error> {
    state.live.keys().cloned().ok_or(Error::NoDatabase)
}

fn db(e: sqlx::Error) -> Error {
    Error::Internal(format!("the key store failed: {}", crate::redact::redact(&e.to_string())))
}

fn body(bytes: &Bytes) -> Result<Map<String, Value>, Error> {
    if bytes.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::invalid("the body must be a JSON object", None)),
        Err(e) => Err(Error::invalid(format!("the body is not valid JSON: {e}"), None)),
    }
}

/// A new key: `sk-` and 22 characters of 16 random bytes (LiteLLM's `token_urlsafe(16)`).
fn new_key() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| Error::Internal("no randomness for a new key".into()))?;
    Ok(format!("sk-{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

/// Applies the fields of a `/key/generate` or `/key/update` body to `settings`; returns the budget's next reset
/// when `budget_duration` was given. `null` clears a field.
fn apply(settings: &mut Settings, fields: &Map<String, Value>, now: i64) -> Result<Option<Option<i64>>, Error> {
    let mut reset = None;
    for (name, value) in fields {
        let bad = |what: &str| Error::invalid(format!("{name}: must be {what}, found {value}"), Some(name));
        let text = || match value {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            _ => Err(bad("a string or null")),
        };
        let number = || match value {
            Value::Null => Ok(None),
            Value::Number(n) => {
                n.as_f64().filter(|v| v.is_finite() && *v >= 0.0).map(Some).ok_or_else(|| bad("a non-negative number"))
            }
            _ => Err(bad("a number or null")),
        };
        let count = || match value {
            Value::Null => Ok(None),
            Value::Number(n) => n.as_u64().map(Some).ok_or_else(|| bad("a non-negative integer")),
            _ => Err(bad("an integer or null")),
        };
        let counts = || -> Result<BTreeMap<String, u64>, Error> {
            match value {
                Value::Null => Ok(BTreeMap::new()),
                Value::Object(m) => m
                    .iter()
                    .map(|(k, v)| v.as_u64().map(|n| (k.clone(), n)).ok_or_else(|| bad("a mapping of model → integer")))
                    .collect(),
                _ => Err(bad("a mapping of model → integer")),
            }
        };
        let duration = |text: Option<String>| -> Result<Option<i64>, Error> {
            text.map(|t| {
                limits::parse_duration(&t)
                    .map(|d| now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)))
                    .ok_or_else(|| bad("a duration like \"30s\", \"10m\", \"2h\", \"30d\" or \"1mo\""))
            })
            .transpose()
        };
        match name.as_str() {
            "key_alias" => settings.key_alias = text()?,
            "user_id" => settings.user_id = text()?,
            "team_id" => settings.team_id = text()?,
            "duration" => {
                let d = text()?;
                settings.expires_ms = duration(d.clone())?;
                settings.duration = d;
            }
            "budget_duration" => {
                let d = text()?;
                reset = Some(duration(d.clone())?);
                settings.budget_duration = d;
            }
            "models" => {
                settings.models = match value {
                    Value::Null => Vec::new(),
                    Value::Array(items) => items
                        .iter()
                        .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| bad("a list of model names")))
                        .collect::<Result<_, _>>()?,
                    _ => return Err(bad("a list of model names")),
                }
            }
            "max_budget" => settings.max_budget = number()?,
            "soft_budget" => settings.soft_budget = number()?,
            "tpm_limit" => settings.tpm_limit = count()?,
            "rpm_limit" => settings.rpm_limit = count()?,
            "max_parallel_requests" => settings.max_parallel_requests = count()?,
            "model_rpm_limit" => settings.model_rpm_limit = counts()?,
            "model_tpm_limit" => settings.model_tpm_limit = counts()?,
            "metadata" => {
                settings.metadata = match value {
                    Value::Null => Map::new(),
                    Value::Object(m) => m.clone(),
                    _ => return Err(bad("a mapping")),
                }
            }
            "aliases" => {
                settings.aliases = match value {
                    Value::Null => BTreeMap::new(),
                    Value::Object(m) => m
                        .iter()
                        .map(|(k, v)| {
                            v.as_str()
                                .map(|s| (k.clone(), s.to_owned()))
                                .ok_or_else(|| bad("a mapping of name → model"))
                        })
                        .collect::<Result<_, _>>()?,
                    _ => return Err(bad("a mapping of name → model")),
                }
            }
            "blocked" => {
                settings.blocked = match value {
                    Value::Null => false,
                    Value::Bool(b) => *b,
                    _ => return Err(bad("true or false")),
                }
            }
            // The key itself, the new spend, and LiteLLM's fields llmux does not keep.
            _ => {}
        }
    }
    Ok(reset)
}

/// A key as the API shows it: never the key, its hash as `token`.
fn shown(row: &KeyRow, spend: f64) -> Map<String, Value> {
    let s = &row.settings;
    let time = |ms: Option<i64>| ms.map(super::iso_time);
    let object = json!({
        "token": row.token,
        "key_name": row.key_name,
        "key_alias": s.key_alias,
        "spend": spend,
        "max_budget": s.max_budget,
        "soft_budget": s.soft_budget,
        "budget_duration": s.budget_duration,
        "budget_reset_at": time(row.budget_reset_at),
        "expires": time(s.expires_ms),
        "models": s.models,
        "aliases": s.aliases,
        "metadata": s.metadata,
        "tpm_limit": s.tpm_limit,
        "rpm_limit": s.rpm_limit,
        "max_parallel_requests": s.max_parallel_requests,
        "model_rpm_limit": s.model_rpm_limit,
        "model_tpm_limit": s.model_tpm_limit,
        "user_id": s.user_id,
        "team_id": s.team_id,
        "blocked": s.blocked,
        "created_at": super::iso_time(row.created_at),
        "updated_at": super::iso_time(row.changed_at),
    });
    match object {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The spend that counts for `row` now: what this replica knows, else the store's.
fn spend_of(keys: &Keys, row: &KeyRow) -> f64 {
    let now = super::now_ms();
    match keys.cache.by_token(&row.token) {
        Some(key) => key.spend(now),
        None => limits::current_spend(row.spend, row.budget_reset_at, now),
    }
}

async fn generate(State(state): State<AppState>, bytes: Bytes) -> Response {
    respond(generate_inner(&state, &bytes).await)
}

async fn generate_inner(state: &AppState, bytes: &Bytes) -> Result<Value, Error> {
    let keys = keys(state)?;
    let fields = body(bytes)?;
    let key = match fields.get("key") {
        None | Some(Value::Null) => new_key()?,
        Some(Value::String(k)) if k.starts_with("sk-") && k.len() >= 8 => k.clone(),
        Some(_) => {
            return Err(Error::invalid(
                "key: a custom key must be a string starting with 'sk-' (8 characters or more)",
                Some("key"),
            ))
        }
    };
    let now = super::now_ms();
    let mut settings = Settings::default();
    let reset = apply(&mut settings, &fields, now)?.flatten();
    if let Some(alias) = &settings.key_alias {
        if keys.store.key_by_alias(alias).await.map_err(db)?.is_some() {
            return Err(Error::invalid(
                format!("Unique key aliases across all keys are required. Key alias={alias} already exists."),
                Some("key_alias"),
            ));
        }
    }
    let row = KeyRow {
        token: super::hash_token(&key),
        key_name: super::abbreviate(&key),
        settings,
        spend: 0.0,
        budget_reset_at: reset,
        created_at: now,
        changed_at: now,
    };
    if keys.store.get_key(&row.token).await.map_err(db)?.is_some() {
        return Err(Error::invalid("key: this key already exists", Some("key")));
    }
    keys.store.insert_key(&row).await.map_err(db)?;
    keys.cache.put(row.clone());
    let mut out = shown(&row, 0.0);
    out.insert("key".into(), Value::String(key));
    out.insert("token_id".into(), Value::String(row.token.clone()));
    Ok(Value::Object(out))
}

/// The stored key a body's or query's `key` names.
async fn find(keys: &Keys, reference: Option<&Value>) -> Result<KeyRow, Error> {
    let Some(Value::String(reference)) = reference else {
        return Err(Error::invalid("key: missing; pass the key (sk-...) or its token", Some("key")));
    };
    keys.store.get_key(&super::token_of(reference)).await.map_err(db)?.ok_or_else(not_found)
}

fn not_found() -> Error {
    Error::NotFound("Key not found. Pass the key (sk-...) or its token (hash) as /key/list shows it.".into())
}

async fn update(State(state): State<AppState>, bytes: Bytes) -> Response {
    respond(
        async {
            let keys = keys(&state)?;
            let fields = body(&bytes)?;
            let row = find(&keys, fields.get("key")).await?;
            change(&keys, row, &fields).await
        }
        .await,
    )
}

/// Applies `fields` to the stored `row` and answers with the key as it now is.
async fn change(keys: &Keys, mut row: KeyRow, fields: &Map<String, Value>) -> Result<Value, Error> {
    let now = super::now_ms();
    let reset = apply(&mut row.settings, fields, now)?;
    if let Some(alias) = row.settings.key_alias.as_deref().filter(|_| fields.contains_key("key_alias")) {
        if keys.store.key_by_alias(alias).await.map_err(db)?.is_some_and(|other| other.token != row.token) {
            return Err(Error::invalid(
                format!("Unique key aliases across all keys are required. Key alias={alias} already exists."),
                Some("key_alias"),
            ));
        }
    }
    let spend = match fields.get("spend") {
        None => None,
        Some(Value::Number(n)) => n.as_f64().filter(|v| v.is_finite() && *v >= 0.0),
        Some(other) => return Err(Error::invalid(format!("spend: must be a number, found {other}"), Some("spend"))),
    };
    if let Some(reset) = reset {
        row.budget_reset_at = reset;
    }
    if !keys.store.update_key(&row.token, &row.settings, spend, row.budget_reset_at, now).await.map_err(db)? {
        return Err(not_found());
    }
    row.changed_at = now;
    if let Some(spend) = spend {
        row.spend = spend;
    }
    let stored = keys.store.get_key(&row.token).await.map_err(db)?.unwrap_or(row);
    keys.cache.put(stored.clone());
    Ok(Value::Object(shown(&stored, spend_of(keys, &stored))))
}

async fn set_blocked(state: &AppState, bytes: &Bytes, blocked: bool) -> Result<Value, Error> {
    let keys = keys(state)?;
    let fields = body(bytes)?;
    let row = find(&keys, fields.get("key")).await?;
    let mut change_to = Map::new();
    change_to.insert("blocked".into(), Value::Bool(blocked));
    change(&keys, row, &change_to).await
}

async fn block(State(state): State<AppState>, bytes: Bytes) -> Response {
    respond(set_blocked(&state, &bytes, true).await)
}

async fn unblock(State(state): State<AppState>, bytes: Bytes) -> Response {
    respond(set_blocked(&state, &bytes, false).await)
}

async fn delete(State(state): State<AppState>, bytes: Bytes) -> Response {
    respond(
        async {
            let keys = keys(&state)?;
            let fields = body(&bytes)?;
            let list = |name: &str| -> Vec<String> {
                fields
                    .get(name)
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default()
            };
            let mut tokens: Vec<String> = list("keys").iter().map(|k| super::token_of(k)).collect();
            for alias in list("key_aliases") {
                if let Some(row) = keys.store.key_by_alias(&alias).await.map_err(db)? {
                    tokens.push(row.token);
                }
            }
            if tokens.is_empty() {
                return Err(Error::invalid("pass `keys` (keys or tokens) or `key_aliases` to delete", Some("keys")));
            }
            let mut deleted = Vec::new();
            for token in tokens {
                if keys.store.delete_key(&token).await.map_err(db)? {
                    keys.cache.remove(&token);
                    deleted.push(token);
                }
            }
            if deleted.is_empty() {
                return Err(not_found());
            }
            Ok(json!({"deleted_keys": deleted}))
        }
        .await,
    )
}

async fn regenerate(State(state): State<AppState>, bytes: Bytes) -> Response {
    respond(
        async {
            let fields = body(&bytes)?;
            let reference = fields.get("key").cloned();
            regenerate_inner(&state, reference, fields).await
        }
        .await,
    )
}

async fn regenerate_path(State(state): State<AppState>, Path(key): Path<String>, bytes: Bytes) -> Response {
    respond(async { regenerate_inner(&state, Some(Value::String(key)), body(&bytes)?).await }.await)
}

async fn regenerate_inner(
    state: &AppState,
    reference: Option<Value>,
    mut fields: Map<String, Value>,
) -> Result<Value, Error> {
    let keys = keys(state)?;
    let row = find(&keys, reference.as_ref()).await?;
    let key = match fields.remove("new_key") {
        None | Some(Value::Null) => new_key()?,
        Some(Value::String(k)) if k.starts_with("sk-") && k.len() >= 8 => k,
        Some(_) => {
            return Err(Error::invalid("new_key: must start with 'sk-' (8 characters or more)", Some("new_key")))
        }
    };
    let token = super::hash_token(&key);
    let now = super::now_ms();
    if !keys.store.replace_token(&row.token, &token, &super::abbreviate(&key), now).await.map_err(db)? {
        return Err(not_found());
    }
    keys.cache.remove(&row.token);
    fields.remove("key");
    let stored = keys.store.get_key(&token).await.map_err(db)?.ok_or_else(not_found)?;
    let Value::Object(mut out) = change(&keys, stored, &fields).await? else {
        return Err(Error::Internal("regenerated key not shown".into()));
    };
    out.insert("key".into(), Value::String(key));
    out.insert("token_id".into(), Value::String(token));
    Ok(Value::Object(out))
}

async fn info(State(state): State<AppState>, Query(query): Query<HashMap<String, String>>) -> Response {
    respond(
        async {
            let keys = keys(&state)?;
            let reference = query.get("key").map(|k| Value::String(k.clone()));
            let row = find(&keys, reference.as_ref()).await?;
            let mut info = shown(&row, spend_of(&keys, &row));
            info.shift_remove("token");
            Ok(json!({"key": row.token, "info": info}))
        }
        .await,
    )
}

fn page_args(query: &HashMap<String, String>) -> Result<(i64, i64), Error> {
    let number = |name: &str, default: i64, max: i64| -> Result<i64, Error> {
        match query.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| Error::invalid(format!("{name}: must be an integer from 1 to {max}"), Some(name))),
        }
    };
    Ok((number("page", 1, i64::MAX / 2)?, number("size", 10, 100)?))
}

async fn list(State(state): State<AppState>, Query(query): Query<HashMap<String, String>>) -> Response {
    respond(
        async {
            let keys = keys(&state)?;
            let (page, size) = page_args(&query)?;
            let filter = |name: &str| query.get(name).map(String::as_str).filter(|v| !v.is_empty());
            let (rows, total) = keys
                .store
                .list_keys(filter("key_alias"), filter("user_id"), filter("team_id"), page, size)
                .await
                .map_err(db)?;
            let full = query.get("return_full_object").is_some_and(|v| v == "true");
            let listed: Vec<Value> = rows
                .iter()
                .map(|row| {
                    if full {
                        Value::Object(shown(row, spend_of(&keys, row)))
                    } else {
                        Value::String(row.token.clone())
                    }
                })
                .collect();
            Ok(json!({
                "keys": listed,
                "total_count": total,
                "current_page": page,
                "total_pages": (total + size - 1) / size,
            }))
        }
        .await,
    )
}

/// `start_date` and `end_date` (`YYYY-MM-DD`, both included) as a range of ms; today when absent.
fn dates(query: &HashMap<String, String>) -> Result<(i64, i64), Error> {
    let today = super::day_start(&super::day_of(super::now_ms())).unwrap_or(0);
    let day = |name: &str| -> Result<Option<i64>, Error> {
        query
            .get(name)
            .map(|d| {
                super::day_start(d)
                    .ok_or_else(|| Error::invalid(format!("{name}: must be a date YYYY-MM-DD"), Some(name)))
            })
            .transpose()
    };
    let from = day("start_date")?.unwrap_or(today);
    let to = day("end_date")?.unwrap_or(today.max(from)) + 86_400_000;
    Ok((from, to))
}

async fn spend_logs(State(state): State<AppState>, Query(query): Query<HashMap<String, String>>) -> Response {
    respond(
        async {
            let keys = keys(&state)?;
            let dated = query.contains_key("start_date") || query.contains_key("end_date");
            let (from, to) = if dated { dates(&query).map(|(f, t)| (Some(f), Some(t)))? } else { (None, None) };
            let filter = SpendFilter {
                api_key: query.get("api_key").map(|k| super::token_of(k)),
                request_id: query.get("request_id").cloned(),
                user_id: query.get("user_id").cloned(),
                from_ms: from,
                to_ms: to,
                limit: query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(1000).clamp(1, 10_000),
            };
            let rows = keys.store.spend_logs(&filter).await.map_err(db)?;
            let rows: Vec<Value> = rows
                .into_iter()
                .map(|r| {
                    json!({
                        "request_id": r.request_id,
                        "call_type": r.call_type,
                        "api_key": r.api_key,
                        "spend": r.spend,
                        "total_tokens": r.total_tokens,
                        "prompt_tokens": r.prompt_tokens,
                        "completion_tokens": r.completion_tokens,
                        "startTime": super::iso_time(r.start_time),
                        "endTime": super::iso_time(r.end_time),
                        "model": r.model,
                        "model_group": r.model_group,
                        "model_id": r.deployment,
                        "api_base": r.api_base,
                        "user": r.user_id,
                        "team_id": r.team_id,
                        "status": if (200..400).contains(&r.status) { "success" } else { "failure" },
                        "metadata": {
                            "user_api_key_alias": r.key_alias,
                            "status_code": r.status,
                            "protocol": r.protocol,
                            "tokens_estimated": r.tokens_estimated,
                            "ttfb_ms": r.ttfb_ms,
                        },
                    })
                })
                .collect();
            Ok(Value::Array(rows))
        }
        .await,
    )
}

/// Spend per day and key, each with its models: LiteLLM's `/global/spend/report?group_by=api_key` shape.
async fn spend_report(State(state): State<AppState>, Query(query): Query<HashMap<String, String>>) -> Response {
    respond(async {
        let keys = keys(&state)?;
        let (from, to) = dates(&query)?;
        let api_key = query.get("api_key").map(|k| super::token_of(k));
        let lines = keys.store.report(from, to, api_key.as_deref()).await.map_err(db)?;
        let mut days: Vec<(String, Vec<Value>)> = Vec::new();
        for line in lines {
            if days.last().is_none_or(|(d, _)| *d != line.day) {
                days.push((line.day.clone(), Vec::new()));
            }
            let Some((_, per_key)) = days.last_mut() else { continue };
            let model = json!({"model": line.model, "spend": line.spend, "total_tokens": line.total_tokens, "requests": line.requests});
            let same_key = per_key.last().is_some_and(|k| k["api_key"] == json!(line.api_key));
            if !same_key {
                per_key.push(json!({"api_key": line.api_key, "key_alias": line.key_alias, "total_spend": 0.0, "total_tokens": 0, "requests": 0, "metadata": []}));
            }
            if let Some(Value::Object(k)) = per_key.last_mut() {
                let add_f = |k: &mut Map<String, Value>, name: &str, v: f64| {
                    let now = k.get(name).and_then(Value::as_f64).unwrap_or(0.0);
                    k.insert(name.into(), json!(now + v));
                };
                add_f(k, "total_spend", line.spend);
                let tokens = k.get("total_tokens").and_then(Value::as_i64).unwrap_or(0) + line.total_tokens;
                k.insert("total_tokens".into(), json!(tokens));
                let requests = k.get("requests").and_then(Value::as_i64).unwrap_or(0) + line.requests;
                k.insert("requests".into(), json!(requests));
                if line.key_alias.is_some() {
                    k.insert("key_alias".into(), json!(line.key_alias));
                }
                if let Some(Value::Array(models)) = k.get_mut("metadata") {
                    models.push(model);
                }
            }
        }
        Ok(Value::Array(days.into_iter().map(|(day, api_keys)| json!({"group_by_day": day, "api_keys": api_keys})).collect()))
    }.await)
}

fn respond(result: Result<Value, Error>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(e) => e.into_response(),
    }
}
