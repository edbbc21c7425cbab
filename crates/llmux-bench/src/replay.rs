//! `replay`: sends a recorded or generated schedule of requests, each at its own time (open loop, no limit on
//! concurrency), and measures for every request its time to first token and total time. Used by `bench/swap`.
//!
//! The schedule is JSON lines: `{"at": SECONDS_FROM_START, "client": "voice", "path": "/v1/chat/completions",
//! "body": {...}}`, optionally with `"timeout": SECONDS`: that request's client hangs up after so long (a client
//! with a short time limit, such as a voice assistant; it fails as `client hung up`), instead of `--timeout`. Time to first token is, for a streamed (SSE) answer, the time from sending the request to
//! the first event carrying generated text (`delta.content`, `delta.reasoning_content`, `delta.tool_calls` or a
//! completion's `text`); SSE comments and role-only chunks do not count. Non-streamed requests have no time to
//! first token, only a total time. A request fails on a transport error, a time-out, a status other than 200, or
//! an SSE `error` event.
//!
//! Prints one JSON summary (overall and per client); `--out FILE` also gets one JSON line per request (its
//! client, status, times and the `x-llmux-deployment` that answered).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use clap::Args;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt as _, Full};
use serde_json::{json, Value};
use tokio::task::spawn_local;

use crate::conn::{connect, Conn};

/// `replay`'s arguments.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// Base URL of the server (http://host:port); the schedule's paths are appended.
    #[arg(long)]
    url: String,
    /// The schedule: JSON lines of {"at", "client", "path", "body"}.
    #[arg(long)]
    schedule: PathBuf,
    /// Extra header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Free text copied into the output.
    #[arg(long, default_value = "")]
    label: String,
    /// Per-request time limit in seconds.
    #[arg(long, default_value_t = 300.0)]
    timeout: f64,
    /// Also write one JSON line per request here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One scheduled request.
struct Item {
    at: f64,
    client: String,
    uri: Uri,
    body: Bytes,
    stream: bool,
    /// The client's own time limit, seconds.
    timeout: Option<f64>,
}

/// What one request gave.
#[derive(Debug, Default)]
struct Record {
    idx: usize,
    client: String,
    /// Scheduled offset, seconds.
    at: f64,
    /// How late it was actually sent, ms.
    late_ms: f64,
    stream: bool,
    status: u16,
    ok: bool,
    ttft_ms: Option<f64>,
    total_ms: f64,
    deployment: Option<String>,
    error: Option<String>,
}

/// Runs the replay; returns the summary.
pub async fn replay(args: &ReplayArgs) -> anyhow::Result<Value> {
    let base: Uri = args.url.parse().with_context(|| format!("bad url {}", args.url))?;
    if base.scheme_str() != Some("http") {
        bail!("only http:// urls: {}", args.url);
    }
    let auth = base.authority().context("url without host")?.clone();
    let addr: SocketAddr = format!("{}:{}", auth.host(), auth.port_u16().unwrap_or(80))
        .to_socket_addrs()?
        .next()
        .context("url host does not resolve")?;
    let mut headers = HeaderMap::new();
    headers.insert(HOST, HeaderValue::from_str(auth.as_str())?);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for h in &args.headers {
        let (name, value) = h.split_once(':').with_context(|| format!("header without ':': {h}"))?;
        headers.insert(HeaderName::from_bytes(name.trim().as_bytes())?, HeaderValue::from_str(value.trim())?);
    }
    let items = read_schedule(&args.schedule)?;
    if items.is_empty() {
        bail!("{}: empty schedule", args.schedule.display());
    }
    let headers = Rc::new(headers);
    let timeout = Duration::from_secs_f64(args.timeout);
    let pool: Rc<RefCell<Vec<Conn>>> = Rc::default();
    let records: Rc<RefCell<Vec<Record>>> = Rc::default();
    let t0 = Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::with_capacity(items.len());
    for (idx, item) in items.into_iter().enumerate() {
        let due = t0 + Duration::from_secs_f64(item.at.max(0.0));
        tokio::time::sleep_until(due.into()).await;
        let (headers, pool, records) = (headers.clone(), pool.clone(), records.clone());
        tasks.push(spawn_local(async move {
            let rec = one(idx, item, due, addr, &headers, &pool, timeout).await;
            records.borrow_mut().push(rec);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut records = records.take();
    records.sort_by_key(|r| r.idx);
    if let Some(path) = &args.out {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        for r in &records {
            writeln!(
                f,
                "{}",
                json!({
                    "idx": r.idx, "client": r.client, "at": r.at, "late_ms": round1(r.late_ms), "stream": r.stream,
                    "status": r.status, "ok": r.ok, "ttft_ms": r.ttft_ms.map(round1), "total_ms": round1(r.total_ms),
                    "deployment": r.deployment, "error": r.error,
                })
            )?;
        }
        f.flush()?;
    }
    let mut by_client: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in &records {
        by_client.entry(r.client.as_str()).or_default().push(r);
    }
    let all: Vec<&Record> = records.iter().collect();
    Ok(json!({
        "mode": "replay",
        "label": args.label,
        "duration_s": round1(t0.elapsed().as_secs_f64()),
        "max_late_ms": round1(records.iter().map(|r| r.late_ms).fold(0.0, f64::max)),
        "overall": summarise(&all),
        "by_client": by_client.iter().map(|(k, v)| ((*k).to_owned(), summarise(v))).collect::<serde_json::Map<_, _>>(),
    }))
}

fn read_schedule(path: &PathBuf) -> anyhow::Result<Vec<Item>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut items = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), n + 1))?;
        let at = v["at"].as_f64().with_context(|| format!("{}:{}: no \"at\"", path.display(), n + 1))?;
        let path_str = v["path"].as_str().unwrap_or("/v1/chat/completions");
        let body = &v["body"];
        items.push(Item {
            at,
            client: v["client"].as_str().unwrap_or("default").to_owned(),
            uri: path_str.parse().with_context(|| format!("bad path {path_str}"))?,
            body: Bytes::from(body.to_string()),
            stream: body["stream"].as_bool().unwrap_or(false),
            timeout: v["timeout"].as_f64().filter(|t| t.is_finite() && *t > 0.0),
        });
    }
    items.sort_by(|a, b| a.at.total_cmp(&b.at));
    Ok(items)
}

/// Sends one request on a pooled (or new) keep-alive connection and reads its answer.
async fn one(
    idx: usize,
    item: Item,
    due: Instant,
    addr: SocketAddr,
    headers: &HeaderMap,
    pool: &RefCell<Vec<Conn>>,
    timeout: Duration,
) -> Record {
    let mut rec = Record { idx, client: item.client.clone(), at: item.at, stream: item.stream, ..Record::default() };
    let sent = Instant::now();
    rec.late_ms = ms(sent.saturating_duration_since(due));
    let mut conn = None;
    while let Some(c) = pool.borrow_mut().pop() {
        // A connection the server closed meanwhile is dropped.
        if !c.is_closed() {
            conn = Some(c);
            break;
        }
    }
    let mut conn = match conn {
        Some(c) => c,
        None => match connect(addr).await {
            Ok(c) => c,
            Err(e) => {
                rec.error = Some(format!("connect: {e}"));
                rec.total_ms = ms(sent.elapsed());
                return rec;
            }
        },
    };
    let (timeout, hangs_up) = match item.timeout {
        Some(t) => (Duration::from_secs_f64(t), true),
        None => (timeout, false),
    };
    let mut req = Request::new(Full::new(item.body.clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = item.uri.clone();
    *req.headers_mut() = headers.clone();
    let work = async {
        conn.ready().await?;
        let resp = conn.send_request(req).await?;
        rec.status = resp.status().as_u16();
        rec.deployment = resp.headers().get("x-llmux-deployment").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut body = resp.into_body();
        let mut sse = Sse::default();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                if item.stream && sse.feed(&data) && rec.ttft_ms.is_none() {
                    rec.ttft_ms = Some(ms(sent.elapsed()));
                }
            }
        }
        anyhow::Ok(sse.error)
    };
    match tokio::time::timeout(timeout, work).await {
        Err(_) if hangs_up => rec.error = Some("client hung up".to_owned()),
        Err(_) => rec.error = Some("timed out".to_owned()),
        Ok(Err(e)) => rec.error = Some(format!("{e:#}")),
        Ok(Ok(stream_error)) => {
            rec.total_ms = ms(sent.elapsed());
            if rec.status != 200 {
                rec.error = Some(format!("HTTP {}", rec.status));
            } else if let Some(e) = stream_error {
                rec.error = Some(format!("stream error: {e}"));
            } else {
                rec.ok = true;
            }
            pool.borrow_mut().push(conn);
            return rec;
        }
    }
    rec.total_ms = ms(sent.elapsed());
    rec
}

/// An incremental SSE reader that notices the first event with generated text, and error events.
#[derive(Default)]
struct Sse {
    buf: Vec<u8>,
    error: Option<String>,
}

impl Sse {
    /// Feeds bytes; true when a complete event in them carries generated text.
    fn feed(&mut self, data: &[u8]) -> bool {
        self.buf.extend_from_slice(data);
        let mut token = false;
        while let Some(end) = find_event_end(&self.buf) {
            let event: Vec<u8> = self.buf.drain(..end.1).take(end.0).collect();
            for line in String::from_utf8_lossy(&event).lines() {
                let Some(payload) = line.strip_prefix("data:") else { continue };
                let payload = payload.trim();
                if payload == "[DONE]" {
                    continue;
                }
                let Ok(v) = serde_json::from_str::<Value>(payload) else { continue };
                if let Some(e) = v.get("error") {
                    self.error.get_or_insert_with(|| e.to_string());
                }
                token |= has_text(&v);
            }
        }
        token
    }
}

/// (end of the event, end of its separator) of the first complete event in `buf`.
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Whether a chunk carries generated text.
fn has_text(v: &Value) -> bool {
    let Some(choice) = v.get("choices").and_then(|c| c.get(0)) else { return false };
    let non_empty = |x: Option<&Value>| match x {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        _ => false,
    };
    let delta = choice.get("delta");
    non_empty(delta.and_then(|d| d.get("content")))
        || non_empty(delta.and_then(|d| d.get("reasoning_content")))
        || non_empty(delta.and_then(|d| d.get("tool_calls")))
        || non_empty(choice.get("text"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Nearest-rank percentile of sorted `v`.
fn pct(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(round1(v[rank - 1]))
}

fn dist(mut v: Vec<f64>) -> Value {
    v.sort_by(f64::total_cmp);
    json!({
        "n": v.len(),
        "p50": pct(&v, 0.50),
        "p95": pct(&v, 0.95),
        "p99": pct(&v, 0.99),
        "max": v.last().copied().map(round1),
        "mean": if v.is_empty() { None } else { Some(round1(v.iter().sum::<f64>() / v.len() as f64)) },
    })
}

fn summarise(records: &[&Record]) -> Value {
    let ok: Vec<&&Record> = records.iter().filter(|r| r.ok).collect();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for r in records.iter().filter(|r| !r.ok) {
        *errors.entry(r.error.clone().unwrap_or_default()).or_default() += 1;
    }
    json!({
        "requests": records.len(),
        "failed": records.len() - ok.len(),
        "streams": records.iter().filter(|r| r.stream).count(),
        "ttft_ms": dist(ok.iter().filter_map(|r| r.ttft_ms).collect()),
        "total_ms": dist(ok.iter().map(|r| r.total_ms).collect()),
        "errors": errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_first_text_and_errors() {
        let mut s = Sse::default();
        assert!(!s.feed(b": keep-alive\n\n"));
        assert!(!s.feed(b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"));
        assert!(!s.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel"));
        assert!(s.feed(b"lo\"}}]}\n\ndata: [DONE]\n\n"));
        assert!(s.error.is_none());
        assert!(!s.feed(b"data: {\"error\":{\"message\":\"boom\"}}\n\n"));
        assert!(s.error.is_some());
        let mut s = Sse::default();
        assert!(s.feed(b"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0}]}}]}\r\n\r\n"));
    }

    #[test]
    fn a_request_may_carry_its_clients_time_limit() {
        let path = std::env::temp_dir().join(format!("llmux-bench-schedule-{}.jsonl", std::process::id()));
        let lines = [
            r#"{"at": 2, "client": "notify", "body": {"model": "m", "stream": true}, "timeout": 1.5}"#,
            r#"{"at": 1, "client": "agent", "path": "/v1/chat/completions", "body": {"model": "m"}}"#,
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        let items = read_schedule(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(items.iter().map(|i| i.client.as_str()).collect::<Vec<_>>(), ["agent", "notify"]);
        assert_eq!((items[0].timeout, items[0].stream), (None, false));
        assert_eq!((items[1].timeout, items[1].stream), (Some(1.5), true));
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(pct(&v, 0.5), Some(50.0));
        assert_eq!(pct(&v, 0.95), Some(95.0));
        assert_eq!(pct(&[3.0], 0.95), Some(3.0));
        assert_eq!(pct(&[], 0.5), None);
    }
}
