//! The dashboard's read-only API (`/ui/api/...`) and `llmux status`, against llmux served on loopback in front
//! of mock engines: the master key guards the data but not the page, `llmux status` prints each host's loaded
//! models and each group's deployments, and the live feed sends the kept requests, then each new one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use llmux_mock::MockConfig;

const KEY: &str = "sk-dashboard-test";

/// llmux over two Ollama hosts, `host:port` of each; the mocks live as long as this.
struct Lab {
    llmux: Llmux,
    a: String,
    b: String,
    _mocks: (llmux_mock::MockHandle, llmux_mock::MockHandle),
}

/// Two Ollama hosts: `a` with `small` loaded, `b` with nothing; group `g` prefers `a` (order 1).
async fn lab() -> Lab {
    let mut a = MockConfig::new("a", &["small"]);
    a.loaded = vec!["small".into()];
    let a = mock_with(a).await;
    let b = mock("b", &["small"]).await;
    let yaml = format!(
        "general_settings:\n  master_key: {KEY}\n  background_health_checks: true\n  health_check_interval: 1\n\
         router_settings:\n  model_group_alias: {{fast: g}}\n\
         model_list:\n  - model_name: g\n    litellm_params: {{model: ollama_chat/small, api_base: \"{}\", order: 2}}\n  \
         - model_name: g\n    litellm_params: {{model: ollama_chat/small, api_base: \"{}\", order: 1}}\n",
        b.base_url(),
        a.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    Lab { llmux, a: a.base_url().replace("http://", ""), b: b.base_url().replace("http://", ""), _mocks: (a, b) }
}

#[tokio::test]
async fn the_page_is_open_but_its_data_wants_the_master_key() {
    let Lab { llmux, _mocks, .. } = lab().await;
    let page = llmux.get("/ui").await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").starts_with("text/html"));
    assert!(page.header("content-security-policy").contains("script-src 'self'"));
    assert!(llmux.get("/ui/app.js").await.text().contains("sessionStorage"));
    for path in ["/ui/api/fleet", "/ui/api/requests", "/ui/api/rates", "/ui/api/live"] {
        assert_eq!(llmux.get(path).await.status, 401, "{path} without a key");
        assert_eq!(llmux.get_key(path, Some("sk-wrong")).await.status, 401, "{path} with a wrong key");
    }
    let fleet = llmux.get_key("/ui/api/fleet", Some(KEY)).await;
    assert_eq!(fleet.status, 200);
    assert_eq!(fleet.header("cache-control"), "no-store");
}

#[tokio::test]
async fn llmux_status_lists_each_hosts_loaded_models_and_each_groups_deployments_by_order() {
    let Lab { llmux, a, b, _mocks } = lab().await;
    let base = format!("http://{}", llmux.addr);
    // The first probes run at start-up; wait until both hosts have answered one.
    let mut fleet = serde_json::Value::Null;
    eventually("both hosts probed up", Duration::from_secs(20), async || {
        fleet = llmux::status::fetch(&base, Some(KEY)).await.unwrap();
        fleet["hosts"].as_array().unwrap().iter().all(|h| h["status"] == "up")
    })
    .await;
    let out = llmux::status::render(&fleet);
    let lines: Vec<&str> = out.lines().collect();
    let row = |needle: &str| {
        lines.iter().find(|l| l.starts_with(needle)).copied().unwrap_or_else(|| panic!("no {needle} row:\n{out}"))
    };
    let words = |line: &str| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(words(lines[0])[..4], ["HOST", "STATUS", "PROBE", "MEMORY"], "{out}");
    // Host b has nothing loaded; a has `small` (the mock reports no size and no expiry for it).
    assert!(row(&b).contains("(none loaded)"), "{out}");
    assert!(row(&a).split_whitespace().any(|w| w == "small"), "{out}");
    // The group: order 1 (on a, loaded there) first.
    let group = lines.iter().position(|l| l.starts_with("GROUP")).unwrap();
    assert_eq!(words(lines[group + 1])[..5], ["g", "1", "model_list[1]", a.as_str(), "yes"], "{out}");
    assert_eq!(words(lines[group + 2])[..3], ["2", "model_list[0]", b.as_str()], "{out}");
    assert!(lines[group + 1].ends_with("healthy"), "{out}");
    assert!(out.contains("aliases: fast → g"), "{out}");

    let refused = llmux::status::fetch(&base, Some("sk-wrong")).await.unwrap_err();
    assert!(refused.contains("refused the key"), "{refused}");
    assert!(!refused.contains("sk-wrong"), "the key is never echoed: {refused}");
}

/// The next server-sent event of `body` (its `event:` name and `data:`), skipping keep-alive comments.
async fn next_event(body: &mut hyper::body::Incoming, buffer: &mut String) -> (String, serde_json::Value) {
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let name = block.lines().find_map(|l| l.strip_prefix("event:")).map(|n| n.trim().to_owned());
            let data: String = block.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim).collect();
            if let Some(name) = name {
                return (name, serde_json::from_str(&data).unwrap());
            }
            continue;
        }
        let frame = tokio::time::timeout(Duration::from_secs(20), body.frame()).await.expect("an event").unwrap();
        if let Ok(data) = frame.unwrap().into_data() {
            buffer.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
}

async fn chat(llmux: &Llmux, id: &str) {
    let client = llmux::upstream::client().unwrap();
    let request = http::Request::post(format!("http://{}/v1/chat/completions", llmux.addr))
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .header("x-request-id", id)
        .body(Full::new(Bytes::from(r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
}

#[tokio::test]
async fn the_live_feed_sends_the_kept_requests_then_each_new_one_with_its_attempts() {
    let Lab { llmux, a, _mocks, .. } = lab().await;
    chat(&llmux, "before-the-page").await;
    // The record is told when the answer's body is done, which may be a moment after the client read it.
    eventually("the first request is kept", Duration::from_secs(10), async || {
        llmux.get_key("/ui/api/requests", Some(KEY)).await.text().contains("before-the-page")
    })
    .await;
    let client = llmux::upstream::client().unwrap();
    let request = http::Request::get(format!("http://{}/ui/api/live", llmux.addr))
        .header("authorization", format!("Bearer {KEY}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut buffer = String::new();
    let (name, snapshot) = next_event(&mut body, &mut buffer).await;
    assert_eq!(name, "snapshot");
    assert_eq!(snapshot[0]["id"], "before-the-page", "{snapshot}");

    chat(&llmux, "while-the-page-is-open").await;
    let (name, record) = next_event(&mut body, &mut buffer).await;
    assert_eq!(name, "request");
    assert_eq!(record["id"], "while-the-page-is-open");
    assert_eq!(record["requested"], "fast");
    assert_eq!(record["status"], 200);
    let attempts = record["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{record}");
    assert!(attempts[0]["label"].as_str().unwrap().contains(&a), "{record}");

    // The same requests, newest first, from the plain list, and counted for the host in the rates.
    let list = llmux.get_key("/ui/api/requests", Some(KEY)).await.json();
    let ids: Vec<&str> = list["requests"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["while-the-page-is-open", "before-the-page"]);
    let rates = llmux.get_key("/ui/api/rates", Some(KEY)).await.json();
    let host = rates["hosts"].as_array().unwrap().iter().find(|h| h["host"] == format!("http://{a}")).unwrap();
    assert_eq!(host["requests"], 2, "{rates}");
    assert!(host["ttft_p50_ms"].is_u64(), "{rates}");
}

#[tokio::test]
async fn an_open_live_feed_ends_when_the_server_starts_shutting_down() {
    // Served by hand to reach `Live`: an open dashboard must not hold a shutdown's drain for its whole timeout.
    let yaml = "model_list:\n  - model_name: g\n    litellm_params: {model: ollama_chat/small, api_base: \"http://127.0.0.1:9\"}\n";
    let (config, _) = llmux::config::load_str(yaml, &|_| None).unwrap();
    let live = llmux::lifecycle::Live::new(config, None, llmux::upstream::client().unwrap(), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = live.clone();
    tokio::spawn(async move {
        llmux::server::serve_on(serving, listener, std::future::pending(), std::future::pending(), Duration::ZERO, 1)
            .await
    });
    let client = llmux::upstream::client().unwrap();
    let request = http::Request::get(format!("http://{addr}/ui/api/live")).body(Full::new(Bytes::new())).unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut buffer = String::new();
    assert_eq!(next_event(&mut body, &mut buffer).await.0, "snapshot");

    live.start_draining();
    let end = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(frame) = body.frame().await {
            frame.unwrap();
        }
    })
    .await;
    assert!(end.is_ok(), "the live feed went on after the shutdown began");
}
