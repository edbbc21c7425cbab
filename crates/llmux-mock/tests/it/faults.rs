//! Fault injection, pacing and server lifecycle.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::{get, post, read_all, send, TIMEOUT};
use crate::{start, wait_stats};
use llmux_mock::{Fault, MockConfig, MockServer};

fn chat(stream: bool) -> Value {
    json!({ "model": "m", "stream": stream, "messages": [{ "role": "user", "content": "hi" }] })
}

/// Writes a request on a raw connection without reading the answer.
async fn open_request(addr: std::net::SocketAddr, path: &str, body: &Value) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let body = body.to_string();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    stream
}

#[tokio::test]
async fn status_fault_applies_fault_times_then_reverts() {
    let mut cfg = MockConfig::new("h", &["m"]);
    cfg.fault = Fault::Status { status: 503, body: None, retry_after: Some(2) };
    cfg.fault_times = Some(2);
    let mock = start(cfg).await;

    let resp = post(mock.addr(), "/api/chat", &chat(false)).await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after"), Some("2"));
    assert!(resp.json()["error"].as_str().unwrap().contains("h"));
    // Listing endpoints are not faulted and do not use up the count.
    assert_eq!(get(mock.addr(), "/api/tags").await.status, 200);
    let resp = post(mock.addr(), "/v1/chat/completions", &chat(false)).await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.json()["error"]["type"], "unavailable_error");

    assert_eq!(post(mock.addr(), "/api/chat", &chat(false)).await.status, 200);
    assert_eq!(mock.config().fault, Fault::None);
    assert_eq!(mock.config().fault_times, None);
    let stats = mock.stats();
    assert_eq!(stats.faulted, 2);
    assert_eq!(stats.requests["/api/chat"], 2);

    // A custom body: text stays text, JSON stays JSON.
    mock.set_config(|c| c.fault = Fault::Status { status: 429, body: Some(json!("slow down")), retry_after: None });
    let resp = post(mock.addr(), "/v1/embeddings", &json!({"model": "m", "input": "x"})).await;
    assert_eq!((resp.status, resp.text().as_str()), (429, "slow down"));
    mock.set_config(|c| c.fault = Fault::Status { status: 500, body: Some(json!({"oops": 1})), retry_after: None });
    let resp = post(mock.addr(), "/api/generate", &json!({"model": "m", "prompt": "x"})).await;
    assert_eq!((resp.status, resp.json()), (500, json!({"oops": 1})));
}

#[tokio::test]
async fn refuse_closes_connections_on_accept() {
    let mut cfg = MockConfig::new("h", &["m"]);
    cfg.fault = Fault::Refuse;
    let mock = start(cfg).await;

    // A bare connect: accepted, then closed without a byte.
    let mut stream = TcpStream::connect(mock.addr()).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(TIMEOUT, stream.read(&mut buf))
        .await
        .expect("refused connection must be closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // An HTTP request gets no response either, on any engine path.
    assert_eq!(get(mock.addr(), "/api/tags").await.raw_len, 0);
    assert_eq!(post(mock.addr(), "/api/chat", &chat(false)).await.raw_len, 0);
    // Control requests still get through, so tests can lift the fault.
    let resp = post(mock.addr(), "/mock/config", &json!({ "fault": "none" })).await;
    assert_eq!(resp.status, 200);
    assert_eq!(post(mock.addr(), "/api/chat", &chat(false)).await.status, 200);
    assert_eq!(mock.stats().refused, 3);

    // With fault_times the refusals run out.
    mock.set_config(|c| {
        c.fault = Fault::Refuse;
        c.fault_times = Some(1);
    });
    assert_eq!(post(mock.addr(), "/api/chat", &chat(false)).await.raw_len, 0);
    assert_eq!(post(mock.addr(), "/api/chat", &chat(false)).await.status, 200);
}

#[tokio::test]
async fn drop_after_chunks_cuts_streams_and_plain_responses() {
    let mut cfg = MockConfig::new("h", &["m"]);
    cfg.fault = Fault::DropAfterChunks(2);
    let mock = start(cfg).await;

    let resp = post(mock.addr(), "/api/chat", &chat(true)).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.chunks.len(), 2, "{:?}", resp.text());
    assert!(!resp.complete, "the stream must end without its terminator");
    assert!(resp.ndjson().iter().all(|l| l["done"] == false));

    let mut body = chat(true);
    body["stream_options"] = json!({ "include_usage": true });
    let resp = post(mock.addr(), "/v1/chat/completions", &body).await;
    assert_eq!(resp.chunks.len(), 2);
    assert!(!resp.complete);
    assert!(!resp.text().contains("[DONE]"));

    // Non-streaming: the connection closes with no response at all.
    let resp = post(mock.addr(), "/api/chat", &chat(false)).await;
    assert_eq!(resp.raw_len, 0);
    let stats = wait_stats(&mock, |s| s.in_flight == 0).await;
    assert_eq!((stats.faulted, stats.cancelled), (3, 0));

    // More chunks than the stream has: everything but the end arrives.
    mock.set_config(|c| c.fault = Fault::DropAfterChunks(100));
    let resp = post(mock.addr(), "/api/chat", &chat(true)).await;
    assert_eq!(resp.chunks.len(), 4);
    assert!(!resp.complete);
}

#[tokio::test]
async fn malformed_bodies() {
    let mut cfg = MockConfig::new("h", &["m"]);
    cfg.fault = Fault::Malformed;
    let mock = start(cfg).await;
    let resp = post(mock.addr(), "/api/chat", &chat(false)).await;
    assert_eq!(resp.status, 200);
    assert!(serde_json::from_slice::<Value>(&resp.body).is_err());

    let resp = post(mock.addr(), "/api/chat", &chat(true)).await;
    let lines: Vec<&str> = std::str::from_utf8(&resp.body).unwrap().lines().collect();
    assert!(serde_json::from_str::<Value>(lines[0]).is_ok());
    assert!(serde_json::from_str::<Value>(lines[1]).is_err());

    // The first frame is the role chunk and the first token (two events), the second frame is broken.
    let resp = post(mock.addr(), "/v1/chat/completions", &chat(true)).await;
    let events = resp.sse();
    assert!(serde_json::from_str::<Value>(&events[0]).is_ok());
    assert!(serde_json::from_str::<Value>(&events[1]).is_ok());
    assert!(serde_json::from_str::<Value>(&events[2]).is_err());
}

#[tokio::test]
async fn hang_until_client_gives_up_counts_as_cancelled() {
    let mut cfg = MockConfig::new("h", &["m"]);
    cfg.fault = Fault::Hang;
    let mock = start(cfg).await;
    let mut stream = open_request(mock.addr(), "/api/chat", &chat(false)).await;
    wait_stats(&mock, |s| s.in_flight == 1).await;
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_millis(30), stream.read(&mut buf)).await;
    assert!(read.is_err(), "a hung request must not be answered");
    drop(stream);
    let stats = wait_stats(&mock, |s| s.in_flight == 0).await;
    assert_eq!(stats.cancelled, 1);
}

#[tokio::test]
async fn client_disconnect_mid_stream_is_counted() {
    let mut cfg = MockConfig::new("h", &["m"]);
    cfg.reply_tokens = Some(1000);
    cfg.tokens_per_sec = 200.0;
    let mock = start(cfg).await;
    let mut stream = open_request(mock.addr(), "/api/chat", &chat(true)).await;
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(TIMEOUT, stream.read(&mut buf)).await.unwrap().unwrap();
    assert!(n > 0);
    drop(stream);
    let stats = wait_stats(&mock, |s| s.in_flight == 0).await;
    assert_eq!((stats.cancelled, stats.completed), (1, 0));
}

#[tokio::test]
async fn streaming_is_paced() {
    let mut cfg = MockConfig::new("h", &["m"]);
    cfg.reply_tokens = Some(4);
    cfg.tokens_per_sec = 50.0; // 20ms between tokens
    cfg.ttft_ms = 30;
    cfg.latency_ms = 10;
    let mock = start(cfg).await;
    let started = Instant::now();
    let mut stream = open_request(mock.addr(), "/api/chat", &chat(true)).await;
    let mut arrivals = Vec::new();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(TIMEOUT, stream.read(&mut buf)).await.unwrap().unwrap();
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.windows(4).any(|w| w == b"\r\n\r\n") {
            arrivals.push((started.elapsed(), raw.len()));
        }
    }
    let resp = crate::client::parse(&raw);
    assert_eq!(resp.chunks.len(), 5);
    let total = arrivals.last().unwrap().0;
    // latency 10 + ttft 30 + 3 gaps of 20ms before the last token.
    assert!(total >= Duration::from_millis(95), "finished too early: {total:?}");
    // Bytes arrived in several separate reads, not as one burst at the end.
    assert!(arrivals.len() >= 3, "not streamed: {arrivals:?}");
    assert!(arrivals[0].0 + Duration::from_millis(40) <= total, "{arrivals:?}");

    // Non-streaming answers take the same simulated time.
    let t = Instant::now();
    assert_eq!(post(mock.addr(), "/api/chat", &chat(false)).await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(110), "{:?}", t.elapsed());
}

#[tokio::test]
async fn stop_refuses_connects_and_restart_reuses_the_port() {
    let mut cfg = MockConfig::new("h", &["m"]);
    cfg.fault = Fault::Hang;
    let mock = start(cfg.clone()).await;
    let addr = mock.addr();
    assert_eq!(mock.base_url(), format!("http://127.0.0.1:{}", addr.port()));
    let mut hung = open_request(addr, "/api/chat", &chat(false)).await;
    wait_stats(&mock, |s| s.in_flight == 1).await;

    let t = Instant::now();
    mock.stop().await;
    // The open connection is dropped at once...
    assert!(read_all(&mut hung, TIMEOUT).await.is_empty());
    assert!(t.elapsed() < Duration::from_secs(1));
    // ...and new connects are refused.
    assert!(TcpStream::connect(addr).await.is_err());

    cfg.fault = Fault::None;
    let mock = MockServer::start(cfg, addr).await.expect("restart on same port");
    assert_eq!(mock.addr(), addr);
    assert_eq!(post(addr, "/api/chat", &chat(false)).await.status, 200);
    let mock = mock.restart().await.unwrap();
    assert_eq!(post(addr, "/api/chat", &chat(false)).await.status, 200);
    drop(mock);
}

#[tokio::test]
async fn faults_can_target_other_paths() {
    let mut cfg = MockConfig::new("h", &["m"]);
    cfg.fault = Fault::status(500);
    cfg.fault_paths = vec!["/api/tags".into()];
    let mock = start(cfg).await;
    assert_eq!(get(mock.addr(), "/api/tags").await.status, 500);
    assert_eq!(post(mock.addr(), "/api/chat", &chat(false)).await.status, 200);
    let resp = send(mock.addr(), "GET", "/mock/stats", None, &[]).await;
    assert_eq!(resp.status, 200);
}

#[tokio::test]
async fn refuse_also_closes_already_open_connections() {
    let mock = start(MockConfig::new("h", &["m"])).await;
    let mut stream = TcpStream::connect(mock.addr()).await.unwrap();
    let req = "GET /api/tags HTTP/1.1\r\nHost: x\r\n\r\n";
    stream.write_all(req.as_bytes()).await.unwrap();
    // Read one keep-alive response: head plus Content-Length bytes.
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(TIMEOUT, stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "connection closed early");
        raw.extend_from_slice(&buf[..n]);
        let resp = crate::client::parse(&raw);
        if resp.status != 0 && resp.complete {
            assert_eq!(resp.status, 200);
            break;
        }
    }
    mock.set_config(|c| c.fault = Fault::Refuse);
    stream.write_all(req.as_bytes()).await.unwrap();
    assert!(read_all(&mut stream, TIMEOUT).await.is_empty());
}

#[tokio::test]
async fn unknown_paths_get_engine_style_404s() {
    let mock = start(MockConfig::new("h", &["m"])).await;
    let resp = get(mock.addr(), "/api/nope").await;
    assert_eq!((resp.status, resp.text().as_str()), (404, "404 page not found"));
    let resp = get(mock.addr(), "/v1/nope").await;
    assert_eq!(resp.status, 404);
    assert!(resp.json()["error"]["message"].is_string());
    assert_eq!(mock.requests().len(), 2, "unknown paths are recorded too");
}
