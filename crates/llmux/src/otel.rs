//! OpenTelemetry traces: one span per request (kind server) and one per attempt at a deployment (kind client,
//! its child), with the routing decision as attributes, sent to an OTLP/HTTP collector as JSON
//! (<https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding>).
//!
//! On when the standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT` (or LiteLLM's
//! `OTEL_ENDPOINT`) is set, or when a callback list names LiteLLM's `otel` (then the collector defaults to
//! `http://localhost:4318`); off otherwise, and then nothing is registered: no cost per request. The spans are
//! built from the request's [`Finished`] record, so they say what the access log and the metrics say. Export
//! never slows a request: records wait in a bounded queue (dropped, and counted, when it is full) and go out in
//! batches from a task of their own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use crate::observe::{Finished, Sink};

/// Records waiting for export; beyond this they are dropped (and counted).
const QUEUE: usize = 8192;
/// Spans per export request, at most (two or so per record).
const BATCH: usize = 512;
/// How long a record waits for others to share its export.
const LINGER: Duration = Duration::from_secs(1);
/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how spans are sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The full traces URL (`…/v1/traces`).
    pub endpoint: String,
    /// Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`: `k=v,k2=v2`), such as a collector's token.
    pub headers: Vec<(String, String)>,
    pub service_name: String,
}

impl Settings {
    /// The settings `env` gives, when traces are on (`callback`: a callback list names `otel`). Errors name the
    /// variable at fault.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>, callback: bool) -> Result<Option<Settings>, String> {
        let set = |name: &str| env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v == "none")
        {
            return Ok(None);
        }
        let (variable, endpoint) = if let Some(url) = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url)
        } else if let Some(base) = set("OTEL_EXPORTER_OTLP_ENDPOINT") {
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("{}/v1/traces", base.trim_end_matches('/')))
        } else if let Some(url) = set("OTEL_ENDPOINT") {
            ("OTEL_ENDPOINT", url)
        } else if callback {
            ("the otel callback", "http://localhost:4318/v1/traces".to_owned())
        } else {
            return Ok(None);
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(format!("{variable}: an OTLP/HTTP collector URL (http:// or https://), found {endpoint:?}"));
        }
        let headers = ["OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_HEADERS"]
            .iter()
            .find_map(|name| set(name))
            .map(|list| {
                list.split(',')
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .filter(|(k, _)| !k.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let service_name = set("OTEL_SERVICE_NAME").unwrap_or_else(|| "llmux".to_owned());
        Ok(Some(Settings { endpoint, headers, service_name }))
    }
}

/// The sink that queues finished requests for export.
pub struct Exporter {
    queue: tokio::sync::mpsc::Sender<Arc<Finished>>,
    dropped: AtomicU64,
}

impl Exporter {
    /// Starts the export task; register the returned sink on the observe hub.
    pub fn start(settings: Settings, client: crate::upstream::HttpClient) -> Arc<Exporter> {
        // Header values are often a collector's token: never in a log.
        crate::redact::register_secrets(settings.headers.iter().map(|(_, v)| v.clone()).collect());
        let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_default();
        if !protocol.is_empty() && protocol != "http/json" {
            tracing::warn!("OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: llmux sends OTLP over http/json (port 4318)");
        }
        tracing::info!(endpoint = %crate::redact::url(&settings.endpoint), "OpenTelemetry traces exported over OTLP/HTTP");
        let (queue, records) = tokio::sync::mpsc::channel(QUEUE);
        tokio::spawn(export(settings, client, records));
        Arc::new(Exporter { queue, dropped: AtomicU64::new(0) })
    }
}

impl Sink for Exporter {
    fn finished(&self, record: &Arc<Finished>) {
        if self.queue.try_send(record.clone()).is_err() && self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!("OpenTelemetry export queue full ({QUEUE} requests): spans are being dropped");
        }
    }
}

/// Sends batches until the hub goes away.
async fn export(
    settings: Settings,
    client: crate::upstream::HttpClient,
    mut records: tokio::sync::mpsc::Receiver<Arc<Finished>>,
) {
    let mut failing = false;
    let mut rng = fastrand::Rng::new();
    while let Some(first) = records.recv().await {
        let mut batch = vec![first];
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while batch.len() * 2 < BATCH {
            tokio::select! {
                more = records.recv() => match more {
                    Some(record) => batch.push(record),
                    None => break,
                },
                () = &mut linger => break,
            }
        }
        let spans: Vec<Value> = batch.iter().flat_map(|r| spans(r, &mut rng)).collect();
        let body = document(&settings.service_name, spans);
        match send(&settings, &client, body).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("OpenTelemetry collector answers again");
            }
            Ok(()) => {}
            Err(why) if !failing => {
                failing = true;
                tracing::warn!("OpenTelemetry export failed ({why}); spans are dropped until the collector answers");
            }
            Err(_) => {}
        }
    }
}

async fn send(settings: &Settings, client: &crate::upstream::HttpClient, body: Value) -> Result<(), String> {
    let mut request = http::Request::post(&settings.endpoint).header(http::header::CONTENT_TYPE, "application/json");
    for (name, value) in &settings.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request.body(Full::new(Bytes::from(body.to_string()))).map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(EXPORT_TIMEOUT, client.request(request))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| crate::redact::redact(&e.to_string()))?;
    let status = answer.status();
    // Read to the end, so the connection goes back to the pool.
    let _ = answer.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the collector answered {status}"))
    }
}

/// An OTLP `ExportTraceServiceRequest` holding `spans`.
fn document(service_name: &str, spans: Vec<Value>) -> Value {
    json!({"resourceSpans": [{
        "resource": {"attributes": [string("service.name", service_name)]},
        "scopeSpans": [{"scope": {"name": "llmux", "version": env!("CARGO_PKG_VERSION")}, "spans": spans}],
    }]})
}

/// OTLP span kinds.
const SERVER: u8 = 2;
const CLIENT: u8 = 3;
/// OTLP status codes.
const STATUS_OK: u8 = 1;
const STATUS_ERROR: u8 = 2;

/// The request's span and one child per attempt, with fresh ids from `rng`.
pub fn spans(r: &Finished, rng: &mut fastrand::Rng) -> Vec<Value> {
    let trace_id = format!("{:032x}", rng.u128(1..));
    let root_id = format!("{:016x}", rng.u64(1..));
    let start_ns = u128::from(r.started_unix_ms) * 1_000_000;
    let at = |offset_ms: u64| (start_ns + u128::from(offset_ms) * 1_000_000).to_string();
    let failed = r.status >= 400 || r.error.is_some();
    let mut attributes = vec![
        string("gen_ai.operation.name", r.operation),
        string("gen_ai.request.model", &r.requested),
        int("gen_ai.usage.input_tokens", r.tokens_in),
        int("gen_ai.usage.output_tokens", r.tokens_out),
        int("http.response.status_code", u64::from(r.status)),
        string("llmux.request_id", &r.id.0),
        string("llmux.protocol", r.protocol.as_str()),
        string("llmux.route", &r.route),
        boolean("llmux.stream", r.stream),
        int("llmux.queue_wait_ms", r.queue_wait_ms),
        int("llmux.retries", u64::from(r.retries)),
        int("llmux.fallbacks", u64::from(r.fallbacks)),
        boolean("llmux.tokens_estimated", r.tokens_estimated),
        json!({"key": "llmux.cost_usd", "value": {"doubleValue": r.cost_usd}}),
    ];
    let optional = [
        ("llmux.group", r.group.as_deref()),
        ("server.address", r.host.as_deref()),
        ("llmux.complexity_tier", r.complexity_tier),
        ("llmux.key_alias", r.caller.key_alias.as_deref()),
        ("error.type", r.error.as_deref()),
    ];
    attributes.extend(optional.iter().filter_map(|(k, v)| v.map(|v| string(k, v))));
    if let Some(answered) = r.attempts.last().filter(|a| a.error.is_none()) {
        attributes.push(string("llmux.deployment", &answered.label));
        attributes.push(string("gen_ai.response.model", &answered.facts.engine_model));
    }
    if let Some(ttfb) = r.ttfb_ms {
        attributes.push(int("llmux.ttfb_ms", ttfb));
    }
    let mut out = vec![json!({
        "traceId": trace_id,
        "spanId": root_id,
        "name": format!("{} {}", r.operation, r.requested),
        "kind": SERVER,
        "startTimeUnixNano": at(0),
        "endTimeUnixNano": at(r.duration_ms),
        "attributes": attributes,
        "status": status(failed, r.error.as_deref()),
    })];
    for (n, a) in r.attempts.iter().enumerate() {
        let mut attributes = vec![
            string("llmux.deployment", &a.label),
            string("llmux.group", &a.group),
            string("llmux.reason", a.reason),
            int("llmux.attempt", n as u64 + 1),
            boolean("llmux.cold", a.cold),
            boolean("llmux.cooled_down", a.cooled_down),
            string("gen_ai.system", a.facts.provider),
            string("gen_ai.request.model", &a.facts.engine_model),
            string("server.address", &a.facts.host),
            string("llmux.model_id", &a.facts.id),
        ];
        if let Some(code) = a.status {
            attributes.push(int("http.response.status_code", u64::from(code)));
        }
        if let Some(error) = &a.error {
            attributes.push(string("error.type", error));
        }
        out.push(json!({
            "traceId": trace_id,
            "spanId": format!("{:016x}", rng.u64(1..)),
            "parentSpanId": root_id,
            "name": format!("{} {}", r.operation, a.facts.engine_model),
            "kind": CLIENT,
            "startTimeUnixNano": at(a.started_ms),
            "endTimeUnixNano": at(a.started_ms.saturating_add(a.duration_ms)),
            "attributes": attributes,
            "status": status(a.error.is_some(), a.error.as_deref()),
        }));
    }
    out
}

fn status(failed: bool, message: Option<&str>) -> Value {
    if failed {
        json!({"code": STATUS_ERROR, "message": message.unwrap_or_default()})
    } else {
        json!({"code": STATUS_OK})
    }
}

fn string(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// OTLP's JSON carries 64-bit integers as strings.
fn int(key: &str, value: u64) -> Value {
    json!({"key": key, "value": {"intValue": value.to_string()}})
}

fn boolean(key: &str, value: bool) -> Value {
    json!({"key": key, "value": {"boolValue": value}})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

    use super::*;
    use crate::observe::{Attempt, ClientProtocol, DeploymentFacts, RequestId, Trace};

    fn env<'p>(pairs: &'p [(&'p str, &'p str)]) -> impl Fn(&str) -> Option<String> + 'p {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn the_endpoint_comes_from_the_standard_variables_or_the_otel_callback() {
        assert_eq!(Settings::from_env(&env(&[]), false), Ok(None), "off unless asked");
        let on = Settings::from_env(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]), false);
        assert_eq!(on.unwrap().unwrap().endpoint, "http://collector:4318/v1/traces");
        let both = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:4318/custom"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer t0k, x-tenant=lab"),
            ("OTEL_SERVICE_NAME", "router"),
        ]);
        let s = Settings::from_env(&both, false).unwrap().unwrap();
        assert_eq!(s.endpoint, "http://b:4318/custom");
        assert_eq!(s.headers, [("authorization".into(), "Bearer t0k".into()), ("x-tenant".into(), "lab".into())]);
        assert_eq!(s.service_name, "router");
        let callback = Settings::from_env(&env(&[]), true).unwrap().unwrap();
        assert_eq!(callback.endpoint, "http://localhost:4318/v1/traces");
        assert_eq!(Settings::from_env(&env(&[("OTEL_SDK_DISABLED", "true")]), true), Ok(None));
        let grpc = Settings::from_env(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")]), false);
        assert!(grpc.unwrap_err().starts_with("OTEL_EXPORTER_OTLP_ENDPOINT:"));
    }

    fn attempt(label: &str, error: Option<&str>, started_ms: u64) -> Attempt {
        Attempt {
            deployment: 0,
            label: label.into(),
            facts: Arc::new(DeploymentFacts {
                engine_model: "qwen3:8b".into(),
                provider: "ollama_chat",
                ..DeploymentFacts::default()
            }),
            group: "coding".into(),
            error: error.map(str::to_owned),
            status: Some(if error.is_some() { 503 } else { 200 }),
            started_ms,
            duration_ms: 5,
            reason: if error.is_some() { "warm" } else { "retry" },
            cold: false,
            cooled_down: error.is_some(),
        }
    }

    #[test]
    fn a_request_is_a_server_span_with_a_client_span_per_attempt() {
        let trace = Trace::start(Arc::default(), RequestId("req-7".into()), ClientProtocol::Ollama, "chat");
        let mut record = None;
        trace.update(|d| record = Some(d.record.clone()));
        let mut r = record.unwrap();
        r.started_unix_ms = 1_000;
        r.requested = "coding".into();
        r.status = 200;
        r.duration_ms = 30;
        r.tokens_out = 9;
        r.attempts =
            vec![attempt("model_list[0] @ a", Some("connection refused"), 2), attempt("model_list[1] @ b", None, 8)];
        let spans = spans(&r, &mut fastrand::Rng::with_seed(7));
        assert_eq!(spans.len(), 3);
        let (root, first, second) = (&spans[0], &spans[1], &spans[2]);
        assert_eq!((root["name"].as_str(), root["kind"].as_u64()), (Some("chat coding"), Some(2)));
        assert_eq!(root["startTimeUnixNano"], "1000000000");
        assert_eq!(root["endTimeUnixNano"], "1030000000");
        assert_eq!(root["status"]["code"], 1);
        let attr = |span: &Value, key: &str| {
            span["attributes"].as_array().unwrap().iter().find(|a| a["key"] == key).map(|a| a["value"].clone())
        };
        assert_eq!(attr(root, "llmux.deployment").unwrap()["stringValue"], "model_list[1] @ b");
        assert_eq!(attr(root, "gen_ai.usage.output_tokens").unwrap()["intValue"], "9");
        for child in [first, second] {
            assert_eq!(child["traceId"], root["traceId"]);
            assert_eq!(child["parentSpanId"], root["spanId"]);
            assert_eq!(child["kind"], 3);
        }
        assert_ne!(first["spanId"], second["spanId"]);
        assert_eq!(first["status"]["code"], 2);
        assert_eq!(attr(first, "error.type").unwrap()["stringValue"], "connection refused");
        assert_eq!(attr(first, "llmux.cooled_down").unwrap()["boolValue"], true);
        assert_eq!(attr(second, "llmux.reason").unwrap()["stringValue"], "retry");
        assert_eq!(second["startTimeUnixNano"], "1008000000");
        assert_eq!(second["endTimeUnixNano"], "1013000000");
    }
}
