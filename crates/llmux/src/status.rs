//! `llmux status`: the fleet of a running llmux in the terminal, `ollama ps` across every host: each host's
//! status, probe latency and memory with the models loaded on it, then each group's deployments by `order`
//! with their health and load. Reads the dashboard's `GET /ui/api/fleet`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

/// How long the whole request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Fetches the fleet view of the llmux at `base` (e.g. `http://127.0.0.1:4000`), with the master key if given.
pub async fn fetch(base: &str, key: Option<&str>) -> Result<Value, String> {
    let url = format!("{}/ui/api/fleet", base.trim_end_matches('/'));
    let mut request = http::Request::get(&url);
    if let Some(key) = key.filter(|k| !k.is_empty()) {
        let mut value =
            http::HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| "the key is not a valid header value")?;
        value.set_sensitive(true);
        request = request.header(http::header::AUTHORIZATION, value);
    }
    let request = request.body(Full::new(Bytes::new())).map_err(|e| format!("{url} is not a URL: {e}"))?;
    let client = crate::upstream::client().map_err(|e| e.to_string())?;
    let answer = async {
        let response = client.request(request).await.map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| format!("{url}: {e}"))?.to_bytes();
        Ok::<_, String>((status, body))
    };
    let (status, body) =
        tokio::time::timeout(TIMEOUT, answer).await.map_err(|_| format!("{url}: no answer within 10 s"))??;
    match status {
        http::StatusCode::OK => serde_json::from_slice(&body).map_err(|e| format!("{url}: not the fleet view: {e}")),
        http::StatusCode::UNAUTHORIZED => {
            Err(format!("{url}: llmux refused the key; pass the master key with --key or LITELLM_MASTER_KEY"))
        }
        http::StatusCode::NOT_FOUND => Err(format!("{url}: 404; is this llmux, and a version with the dashboard?")),
        other => Err(format!("{url}: {other}")),
    }
}

/// Lays rows out in columns two spaces apart, the header first.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn gb(bytes: u64) -> String {
    if bytes >= 1_000_000_000 {
        format!("{:.1} GB", bytes as f64 / 1e9)
    } else {
        format!("{} MB", bytes / 1_000_000)
    }
}

/// Seconds as a short age: `12 s`, `5 min`, `3.0 h`, `2 days`.
fn age(seconds: f64) -> String {
    match seconds {
        s if s < 60.0 => format!("{} s", s.round()),
        s if s < 3600.0 => format!("{} min", (s / 60.0).round()),
        s if s < 172_800.0 => format!("{:.1} h", s / 3600.0),
        s => format!("{} days", (s / 86_400.0).round()),
    }
}

/// When a model unloads, from the engine's RFC 3339 expiry and the server's clock: `4 min`, or `forever` for
/// Ollama's far-future stamp of a model kept loaded.
fn until(expires_at: &str, now_unix_ms: u64) -> String {
    let format = time::format_description::well_known::Rfc3339;
    let Ok(at) = time::OffsetDateTime::parse(expires_at, &format) else { return expires_at.to_owned() };
    let left = (at.unix_timestamp_nanos() / 1_000_000) as f64 / 1000.0 - now_unix_ms as f64 / 1000.0;
    match left {
        l if l > 365.0 * 86_400.0 => "forever".to_owned(),
        l if l <= 0.0 => "now".to_owned(),
        l => age(l),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `scheme://host:port` without the scheme.
fn host_name(origin: &str) -> &str {
    origin.split_once("://").map_or(origin, |(_, rest)| rest)
}

/// The hosts table: one row per loaded model (a host with none gets one row).
fn hosts(fleet: &Value, now: u64) -> String {
    let mut rows = Vec::new();
    for host in fleet["hosts"].as_array().into_iter().flatten() {
        let status = text(&host["status"]);
        let since = host["since_seconds_ago"].as_f64().map(|s| format!(" {}", age(s))).unwrap_or_default();
        let probe = host["probe_latency_ms"].as_u64().map(|ms| format!("{ms} ms")).unwrap_or_else(|| "-".into());
        let resident = host["resident_models"].as_array().cloned().unwrap_or_default();
        let used: u64 = resident.iter().filter_map(|m| m["size"].as_u64()).sum();
        let memory = match host["placement"]["memory_budget"].as_u64() {
            Some(budget) => format!("{} / {}", gb(used), gb(budget)),
            None if used > 0 => gb(used),
            None => "-".into(),
        };
        let pinned: Vec<String> = host["placement"]["pinned"].as_array().into_iter().flatten().map(text).collect();
        let mut first = vec![host_name(&text(&host["host"])).to_owned(), status.clone() + &since, probe, memory];
        if resident.is_empty() {
            let note = if status == "up" { "(none loaded)".to_owned() } else { format!("({})", text(&host["reason"])) };
            first.extend([note, String::new(), String::new(), String::new()]);
            rows.push(first);
            continue;
        }
        for (i, m) in resident.iter().enumerate() {
            let name = text(&m["model"]);
            let pin = pinned.iter().any(|p| crate::state::same_model(p, &name));
            let mut row = if i == 0 { first.clone() } else { vec![String::new(); 4] };
            row.extend([
                if pin { format!("{name} (pinned)") } else { name },
                m["size"].as_u64().map(gb).unwrap_or_default(),
                m["context_length"].as_u64().map(|c| c.to_string()).unwrap_or_default(),
                m["expires_at"].as_str().map(|e| until(e, now)).unwrap_or_default(),
            ]);
            rows.push(row);
        }
    }
    table(&["HOST", "STATUS", "PROBE", "MEMORY", "MODEL", "SIZE", "CONTEXT", "UNLOADS IN"], &rows)
}

/// The groups table: each deployment by `order`.
fn groups(fleet: &Value) -> String {
    let mut rows = Vec::new();
    for group in fleet["groups"].as_array().into_iter().flatten() {
        let queued = group["queued"].as_u64().filter(|&q| q > 0).map(|q| format!("{q} queued")).unwrap_or_default();
        for (i, d) in group["deployments"].as_array().into_iter().flatten().enumerate() {
            let mut health = text(&d["health"]);
            if let Some(s) = d["cooldown_seconds"].as_f64() {
                health.push_str(&format!(" {s} s"));
            }
            if let Some(reason) = d["reason"].as_str() {
                health.push_str(&format!(" ({reason})"));
            }
            let in_flight = match d["max_parallel"].as_u64() {
                Some(max) => format!("{}/{max}", text(&d["in_flight"])),
                None => text(&d["in_flight"]),
            };
            rows.push(vec![
                if i == 0 { text(&group["name"]) } else { String::new() },
                d["order"].as_u64().map(|o| o.to_string()).unwrap_or_else(|| "-".into()),
                text(&d["deployment"]),
                d["host"].as_str().map(host_name).unwrap_or("-").to_owned(),
                if d["warm"].as_bool() == Some(true) { "yes".into() } else { String::new() },
                in_flight,
                if i == 0 { queued.clone() } else { String::new() },
                health,
            ]);
        }
    }
    table(&["GROUP", "ORDER", "DEPLOYMENT", "HOST", "LOADED", "IN FLIGHT", "QUEUE", "HEALTH"], &rows)
}

/// The whole status: hosts, groups, aliases.
pub fn render(fleet: &Value) -> String {
    let now = fleet["now_unix_ms"].as_u64().unwrap_or(0);
    let mut out = hosts(fleet, now);
    out.push('\n');
    out.push_str(&groups(fleet));
    let aliases: Vec<String> = fleet["aliases"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| format!("{} → {}", text(&a["name"]), text(&a["target"])))
        .collect();
    if !aliases.is_empty() {
        out.push_str(&format!("\naliases: {}\n", aliases.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_fleet_reads_as_aligned_tables() {
        // 2026-12-03T00:00:00Z, and one model unloading 4 minutes later.
        let now = 1_796_256_000_000u64;
        let fleet = json!({
            "now_unix_ms": now,
            "hosts": [
                {"host": "http://clementine:11434", "status": "up", "since_seconds_ago": 310.0, "probe_latency_ms": 3,
                 "resident_models": [
                    {"model": "nemotron-3-nano:4b", "size": 3_200_000_000u64, "context_length": 8192,
                     "expires_at": "2026-12-03T00:04:00Z"},
                    {"model": "embeddinggemma:latest", "size": 600_000_000u64, "expires_at": "2318-01-01T00:00:00Z"}],
                 "placement": {"memory_budget": 32_000_000_000u64, "pinned": ["embeddinggemma"]}},
                {"host": "http://star:11434", "status": "down", "reason": "connection refused",
                 "since_seconds_ago": 12.0, "probe_latency_ms": null, "resident_models": [], "placement": null}
            ],
            "groups": [
                {"name": "coding", "queued": 2, "deployments": [
                    {"deployment": "model_list[3]", "host": "http://star:11434", "order": 1, "health": "down",
                     "reason": "connection refused", "in_flight": 0, "max_parallel": null, "warm": false},
                    {"deployment": "model_list[2]", "host": "https://ollama:443", "order": 2, "health": "cooldown",
                     "cooldown_seconds": 4.2, "in_flight": 1, "max_parallel": 2, "warm": true}]}
            ],
            "aliases": [{"name": "default", "target": "coding"}]
        });
        let expected = "\
HOST              STATUS     PROBE  MEMORY            MODEL                           SIZE    CONTEXT  UNLOADS IN
clementine:11434  up 5 min   3 ms   3.8 GB / 32.0 GB  nemotron-3-nano:4b              3.2 GB  8192     4 min
                                                      embeddinggemma:latest (pinned)  600 MB           forever
star:11434        down 12 s  -      -                 (connection refused)

GROUP   ORDER  DEPLOYMENT     HOST        LOADED  IN FLIGHT  QUEUE     HEALTH
coding  1      model_list[3]  star:11434          0          2 queued  down (connection refused)
        2      model_list[2]  ollama:443  yes     1/2                  cooldown 4.2 s

aliases: default → coding
";
        assert_eq!(render(&fleet), expected);
    }
}
