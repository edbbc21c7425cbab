//! Hostile clients and engines (issue 21): connections that hold llmux open, oversized heads, and engine
//! answers or error bodies that never end. Raw sockets against the in-process server, limits scaled down via
//! `llmux_settings.server`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Whether the server closed `stream` (EOF or reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Sends `request` on `stream` and reads one response: status and body (content-length or chunked, decoded
/// loosely: the chunked body is returned with its size lines, enough for `contains`).
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> (u16, String) {
    stream.write_all(request).await.expect("write");
    let mut data = Vec::new();
    let mut buf = [0u8; 16384];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = String::from_utf8_lossy(&data).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            let body = &text[end + 4..];
            let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            if let Some(len) = head.lines().find_map(|l| l.strip_prefix("content-length:")) {
                if body.len() >= len.trim().parse::<usize>().unwrap_or(0) {
                    return (status, body.to_owned());
                }
            } else if head.contains("transfer-encoding: chunked") && body.ends_with("0\r\n\r\n") {
                return (status, body.to_owned());
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => {
                let text = String::from_utf8_lossy(&data).into_owned();
                panic!("connection ended before a whole response: {text:?}");
            }
            Ok(Ok(n)) => data.extend_from_slice(&buf[..n]),
        }
    }
}

fn yaml(base: &str, server: &str) -> String {
    format!(
        "llmux_settings:\n  server:\n{server}\nmodel_list:\n  - model_name: m\n    litellm_params: {{model: ollama_chat/m, api_base: \"{base}\"}}\n  - model_name: o\n    litellm_params: {{model: openai/m, api_base: \"{base}/v1\", api_key: k}}\n"
    )
}

const LIVELINESS: &[u8] = b"GET /health/liveliness HTTP/1.1\r\nhost: x\r\n\r\n";

#[tokio::test]
async fn a_slowloris_client_is_closed_within_the_header_timeout() {
    let mock = mock("a", &["m"]).await;
    let llmux = Llmux::start(&yaml(&mock.base_url(), "    header_read_timeout: 1\n    idle_timeout: 60")).await;
    let mut slow = TcpStream::connect(llmux.addr).await.unwrap();
    slow.write_all(b"GET /health/liveliness HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    let mut closed = false;
    // One header line every 200 ms, for at most 15 s: the head never ends.
    for i in 0..75 {
        if slow.write_all(format!("x-slow-{i}: y\r\n").as_bytes()).await.is_err() {
            closed = true;
            break;
        }
        if closed_within(&mut slow, Duration::from_millis(200)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "a head dribbled for {:?} is still being read", started.elapsed());
    // A well-behaved client is still served.
    let mut ok = TcpStream::connect(llmux.addr).await.unwrap();
    assert_eq!(exchange(&mut ok, LIVELINESS).await.0, 200);
}

#[tokio::test]
async fn an_idle_connection_closes_but_a_slow_stream_is_not_cut() {
    let mock = mock_with(llmux_mock::MockConfig {
        tokens_per_sec: 5.0,
        reply: "one two three four five six seven eight nine ten eleven twelve".into(),
        ..llmux_mock::MockConfig::new("a", &["m"])
    })
    .await;
    let llmux = Llmux::start(&yaml(&mock.base_url(), "    idle_timeout: 1")).await;

    // A stream that lasts about 2.5 s, longer than the idle timeout, arrives whole.
    let mut conn = TcpStream::connect(llmux.addr).await.unwrap();
    let body = chat_body("m", true);
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    let (status, text) = exchange(&mut conn, request.as_bytes()).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("[DONE]") && text.contains("twelve"), "the stream was cut: {text}");
    assert!(started.elapsed() > Duration::from_secs(1), "the stream was not slower than the idle timeout");

    // Then, idle, the connection is closed.
    assert!(closed_within(&mut conn, Duration::from_secs(10)).await, "an idle connection stayed open");

    // A connection that never sends anything is closed too.
    let mut silent = TcpStream::connect(llmux.addr).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(10)).await, "a silent connection stayed open");
}

#[tokio::test]
async fn at_the_connection_cap_the_oldest_idle_connections_make_room() {
    let mock = mock("a", &["m"]).await;
    let llmux = Llmux::start(&yaml(&mock.base_url(), "    max_connections: 4")).await;
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(TcpStream::connect(llmux.addr).await.unwrap());
        // Fixed: accepted in order, the server sees each before the next; a client cannot see a connection
        // accepted (it is idle and must stay so: sending anything on it would make it a different case).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Liveliness answers although far more connections than the cap are held.
    for _ in 0..3 {
        let mut probe = TcpStream::connect(llmux.addr).await.unwrap();
        let (status, body) = exchange(&mut probe, LIVELINESS).await;
        assert_eq!(status, 200, "{body}");
    }
    // The oldest were closed; at most the cap stays open.
    for (i, conn) in held.iter_mut().enumerate().take(6) {
        assert!(closed_within(conn, Duration::from_secs(5)).await, "held connection {i} (of the oldest) is still open");
    }
    // The newest held one is idle too, but younger than every one shed: it stays.
    let newest = held.last_mut().unwrap();
    assert!(!closed_within(newest, Duration::from_millis(300)).await, "the newest connection was closed");
}

#[tokio::test]
async fn a_20_kb_head_is_accepted_and_an_oversized_one_gets_a_json_431() {
    let mock = mock("a", &["m"]).await;
    let llmux = Llmux::start(&yaml(&mock.base_url(), "    idle_timeout: 60")).await;
    let big = |headers: usize, each: usize| {
        let mut request = String::from("GET /health/liveliness HTTP/1.1\r\nhost: x\r\n");
        for i in 0..headers {
            request.push_str(&format!("x-big-{i}: {}\r\n", "v".repeat(each)));
        }
        request.push_str("\r\n");
        request
    };
    let mut conn = TcpStream::connect(llmux.addr).await.unwrap();
    let (status, body) = exchange(&mut conn, big(20, 1000).as_bytes()).await;
    assert_eq!(status, 200, "a 20 KB head: {body}");

    let mut conn = TcpStream::connect(llmux.addr).await.unwrap();
    let (status, body) = exchange(&mut conn, big(10, 8000).as_bytes()).await;
    assert_eq!(status, 431, "an 80 KB head: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    let message = json["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("65536"), "{json}");
}

/// The peak resident memory of this process (the in-process llmux and the mock included), in MiB.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    kb / 1024
}

#[tokio::test]
async fn an_endless_error_body_is_cut_to_a_bounded_message() {
    let mock = mock("a", &["m"]).await;
    mock.set_config(|c| c.fault = llmux_mock::Fault::Endless(500));
    let llmux = Llmux::start(&yaml(&mock.base_url(), "    idle_timeout: 60")).await;
    for model in ["m", "o"] {
        let reply = llmux.post("/v1/chat/completions", &chat_body(model, false)).await;
        assert_eq!(reply.status, 500, "{model}");
        let message = reply.json()["error"]["message"].as_str().unwrap_or("").to_owned();
        assert!(message.len() < 16 * 1024, "{model}: a {} byte error message", message.len());
        assert!(message.contains("cut at 8192 bytes"), "{model}: {}", &message[message.len().saturating_sub(200)..]);
    }
    // Endless: had llmux read it whole, it would hold hundreds of MB by now.
    let peak = peak_rss_mib();
    eprintln!("peak RSS of the test process: {peak} MiB");
    assert!(peak < 200, "peak RSS {peak} MiB");
}

#[tokio::test]
async fn an_endless_answer_is_cut_at_the_cap_and_the_host_stays_in_rotation() {
    let mock = mock("a", &["m"]).await;
    mock.set_config(|c| c.fault = llmux_mock::Fault::Endless(200));
    let yaml =
        format!("general_settings:\n  max_response_size_mb: 2\n{}", yaml(&mock.base_url(), "    idle_timeout: 60"));
    let llmux = Llmux::start(&yaml).await;
    // An Ollama answer is read whole to be translated: cut at the cap, with its own error.
    let reply = llmux.post("/v1/chat/completions", &chat_body("m", false)).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    let message = reply.json()["error"]["message"].as_str().unwrap_or("").to_owned();
    assert!(message.contains("engine answer larger than 2097152 bytes"), "{message}");
    // Not a lost connection: the host is not taken out of rotation, the next request goes to it.
    mock.set_config(|c| c.fault = llmux_mock::Fault::None);
    let reply = llmux.post("/v1/chat/completions", &chat_body("m", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let hosts = llmux.get("/health/hosts").await.text();
    assert!(!hosts.contains("unreachable"), "{hosts}");

    // An OpenAI-compatible answer is passed through as it arrives, not held: the client gets it flowing.
    mock.set_config(|c| c.fault = llmux_mock::Fault::Endless(200));
    let mut conn = TcpStream::connect(llmux.addr).await.unwrap();
    let body = chat_body("o", false);
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut seen = 0usize;
    let mut head = Vec::new();
    let mut buf = vec![0u8; 65536];
    while seen < 8 * 1024 * 1024 {
        let n = tokio::time::timeout(Duration::from_secs(20), conn.read(&mut buf)).await.expect("bytes flow").unwrap();
        assert!(n > 0, "closed after {seen} bytes");
        if head.len() < 64 {
            head.extend_from_slice(&buf[..n.min(64)]);
        }
        seen += n;
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    drop(conn);
    let peak = peak_rss_mib();
    eprintln!("peak RSS of the test process: {peak} MiB");
    assert!(peak < 200, "peak RSS {peak} MiB");
}

#[tokio::test]
async fn answers_over_the_buffer_budget_get_a_503() {
    let mock = mock("a", &["m"]).await;
    mock.set_config(|c| c.fault = llmux_mock::Fault::Endless(200));
    // A budget smaller than one answer may be: the endless answer runs into the budget before the cap.
    let yaml =
        format!("general_settings:\n  max_response_size_mb: 8\n{}", yaml(&mock.base_url(), "    max_buffered_mb: 1"));
    let llmux = Llmux::start(&yaml).await;
    let reply = llmux.post("/v1/chat/completions", &chat_body("m", false)).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.text().contains("max_buffered_mb"), "{}", reply.text());
    mock.set_config(|c| c.fault = llmux_mock::Fault::None);
    let reply = llmux.post("/v1/chat/completions", &chat_body("m", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[test]
fn server_settings_are_read_and_bad_ones_named_by_their_yaml_path() {
    let model = "model_list:\n  - model_name: m\n    litellm_params: {model: ollama_chat/m, api_base: \"http://127.0.0.1:9\"}\n";
    let good = format!(
        "llmux_settings:\n  server: {{header_read_timeout: 5, idle_timeout: 7, max_connections: 9, max_header_kb: 40,\n           http2_max_concurrent_streams: 3, max_buffered_mb: 2}}\ngeneral_settings:\n  max_response_size_mb: 1\n{model}"
    );
    let (config, _) = llmux::config::load_str(&good, &|_| None).unwrap_or_else(|d| panic!("{d}"));
    let l = &config.limits;
    assert_eq!((l.header_read_timeout, l.idle_timeout), (Duration::from_secs(5), Duration::from_secs(7)));
    assert_eq!((l.max_connections, l.max_header_bytes, l.http2_max_streams), (Some(9), 40 * 1024, 3));
    assert_eq!((l.max_buffered_bytes, l.max_answer_bytes), (2 << 20, 1 << 20));
    let bad = format!("llmux_settings:\n  server:\n    idle_timeout: 0\n{model}");
    let errors = llmux::config::load_str(&bad, &|_| None).expect_err("refused").to_string();
    assert!(errors.contains("llmux_settings.server.idle_timeout"), "{errors}");
}
