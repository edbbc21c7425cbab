//! End to end over loopback: llmux in front of mock engines, checking what a client sees.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

mod common;

use std::time::Duration;

use common::*;
use llmux_mock::{Fault, MockConfig};

fn two_hosts_yaml(first: &str, second: &str) -> String {
    format!(
        r#"
router_settings:
  model_group_alias: {{fast: small}}
  fallbacks:
    - fast: [big]
model_list:
  - model_name: small
    litellm_params: {{model: ollama_chat/small, api_base: "{first}", order: 1}}
  - model_name: small
    litellm_params: {{model: ollama_chat/small, api_base: "{second}", order: 2}}
  - model_name: big
    litellm_params: {{model: openai/big, api_base: "{second}/v1"}}
"#
    )
}

#[tokio::test]
async fn order_one_answers_while_it_is_up() {
    let (a, b) = (mock("alpha", &["small"]).await, mock("beta", &["small", "big"]).await);
    let llmux = Llmux::start(&two_hosts_yaml(&a.base_url(), &b.base_url())).await;
    for _ in 0..5 {
        let reply = llmux.post("/v1/chat/completions", &chat_body("fast", false)).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(reply.json()["choices"][0]["message"]["content"].as_str().unwrap().contains("alpha"));
        assert!(reply.header("x-llmux-deployment").starts_with("model_list[0]"));
    }
    assert!(b.requests().is_empty(), "order 2 must not be used while order 1 is up");
}

#[tokio::test]
async fn a_stopped_order_one_host_fails_over_to_order_two() {
    let (a, b) = (mock("alpha", &["small"]).await, mock("beta", &["small", "big"]).await);
    let llmux = Llmux::start(&two_hosts_yaml(&a.base_url(), &b.base_url())).await;
    a.stop().await;
    let reply = llmux.post("/v1/chat/completions", &chat_body("fast", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.json()["choices"][0]["message"]["content"].as_str().unwrap().contains("beta"));
    assert!(reply.header("x-llmux-deployment").starts_with("model_list[1]"));
    let route = reply.header("x-llmux-route");
    assert!(route.contains("model_list[0]") && route.contains("failed"), "{route}");

    // Streams fail over the same way, before the first byte.
    let (status, _, frames) = llmux.stream("/v1/chat/completions", &chat_body("fast", true)).await;
    assert_eq!(status, 200);
    let events = sse_events(&frames);
    assert!(stream_text(&events).contains("beta"));
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn when_the_whole_group_is_down_the_fallback_group_answers() {
    let (a, b) = (mock("alpha", &["small"]).await, mock("beta", &["big"]).await);
    let llmux = Llmux::start(&two_hosts_yaml(&a.base_url(), &b.base_url())).await;
    a.stop().await;
    // beta serves only `big`: its `small` deployment answers 404, so the group fails and `fast` falls back.
    let reply = llmux.post("/v1/chat/completions", &chat_body("fast", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-litellm-attempted-fallbacks"), "1");
    assert_eq!(posts(&b).last().unwrap().path, "/v1/chat/completions");
}

#[tokio::test]
async fn engine_errors_keep_their_status_and_message() {
    let a = mock_with({
        let mut c = MockConfig::new("alpha", &["small"]);
        c.fault = Fault::Status {
            status: 400,
            body: Some(serde_json::json!({"error": "invalid option num_ctx"})),
            retry_after: None,
        };
        c
    })
    .await;
    let yaml = format!(
        "model_list:\n  - model_name: small\n    litellm_params: {{model: ollama_chat/small, api_base: \"{}\"}}\n",
        a.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    let reply = llmux.post("/v1/chat/completions", &chat_body("small", false)).await;
    assert_eq!(reply.status, 400);
    let json = reply.json();
    assert_eq!(json["error"]["message"], "invalid option num_ctx");
    assert_eq!(json["error"]["code"], "400");
}

#[tokio::test]
async fn chunks_leave_as_the_engine_produces_them() {
    let a = mock_with({
        let mut c = MockConfig::new("alpha", &["small"]);
        c.reply_tokens = Some(8);
        c.tokens_per_sec = 25.0;
        c
    })
    .await;
    let yaml = format!(
        "model_list:\n  - model_name: small\n    litellm_params: {{model: ollama_chat/small, api_base: \"{0}\"}}\n  - model_name: pass\n    litellm_params: {{model: openai/small, api_base: \"{0}/v1\"}}\n",
        a.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    for model in ["small", "pass"] {
        let (status, headers, frames) = llmux.stream("/v1/chat/completions", &chat_body(model, true)).await;
        assert_eq!(status, 200);
        assert!(headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        let content_frames = frames.iter().filter(|(_, b)| b.windows(7).any(|w| w == b"content")).count();
        assert!(content_frames >= 8, "{model}: {content_frames} frames carried content; tokens were coalesced");
        // 8 tokens at 25/s: the first and last content frames are at least ~7 token intervals apart.
        let spread = frames.last().unwrap().0 - frames.first().unwrap().0;
        assert!(spread >= Duration::from_millis(200), "{model}: all frames arrived within {spread:?}");
        assert_eq!(sse_events(&frames).last().map(String::as_str), Some("[DONE]"));
    }
}

#[tokio::test]
async fn a_stream_broken_mid_way_ends_with_an_error_event() {
    let a = mock_with({
        let mut c = MockConfig::new("alpha", &["small"]);
        c.reply_tokens = Some(10);
        c.fault = Fault::DropAfterChunks(3);
        c
    })
    .await;
    let yaml = format!(
        "model_list:\n  - model_name: small\n    litellm_params: {{model: ollama_chat/small, api_base: \"{}\"}}\n",
        a.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    let (status, _, frames) = llmux.stream("/v1/chat/completions", &chat_body("small", true)).await;
    assert_eq!(status, 200);
    let events = sse_events(&frames);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let error = &events[events.len() - 2];
    assert!(error.contains("\"error\""), "the client must learn the stream broke: {events:?}");
}

#[tokio::test]
async fn master_key_is_required_and_never_echoed() {
    let a = mock("alpha", &["small"]).await;
    let yaml = format!(
        "general_settings:\n  master_key: sk-master-123456\nmodel_list:\n  - model_name: small\n    litellm_params: {{model: ollama_chat/small, api_base: \"{}\"}}\n",
        a.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    let body = chat_body("small", false);
    let missing = llmux.post_key("/v1/chat/completions", &body, None).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()["error"]["message"], "Authentication Error, No api key passed in.");
    let wrong = llmux.post_key("/v1/chat/completions", &body, Some("sk-master-12345X")).await;
    assert_eq!(wrong.status, 401);
    assert!(!wrong.text().contains("sk-master"));
    let right = llmux.post_key("/v1/chat/completions", &body, Some("sk-master-123456")).await;
    assert_eq!(right.status, 200);
    let other_method = llmux.get("/v1/embeddings").await;
    assert_eq!(other_method.status, 405, "a wrong method is a 405 with or without the key");
    // Health probes need no key.
    assert_eq!(llmux.get("/health/liveliness").await.status, 200);
}

#[tokio::test]
async fn bad_requests_get_openai_style_400s() {
    let a = mock("alpha", &["small"]).await;
    let yaml = format!(
        "model_list:\n  - model_name: small\n    litellm_params: {{model: ollama_chat/small, api_base: \"{}\"}}\n",
        a.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    let cases = [
        ("{not json", "Invalid JSON"),
        ("", "empty"),
        (r#"{"messages":[{"role":"user","content":"x"}]}"#, "'model'"),
        (r#"{"model":"small"}"#, "'messages'"),
        (r#"{"model":"small","messages":"hi"}"#, "'messages'"),
        (r#"{"model":"small","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#, "stream"),
        (r#"{"model":"small","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#, "temperature"),
        (r#"{"model":7,"messages":[{"role":"user","content":"x"}]}"#, "'model'"),
    ];
    for (body, needle) in cases {
        let reply = llmux.post("/v1/chat/completions", body).await;
        assert_eq!(reply.status, 400, "{body}");
        let json = reply.json();
        assert_eq!(json["error"]["type"], "invalid_request_error");
        assert!(json["error"]["message"].as_str().unwrap().contains(needle), "{body}: {json}");
    }
    let unknown = llmux.post("/v1/chat/completions", &chat_body("nope", false)).await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("/chat/completions: Invalid model name passed in model=nope"));
    assert!(a.requests().is_empty(), "nothing invalid reaches the engine");
    let missing_route = llmux.get("/v1/nothing").await;
    assert_eq!(missing_route.status, 404);
    assert!(missing_route.json()["error"]["message"].is_string());
    for path in ["/v1/chat/completions", "/embeddings"] {
        let wrong_method = llmux.get(path).await;
        assert_eq!(wrong_method.status, 405, "GET {path}");
        assert_eq!(wrong_method.json()["error"]["message"], format!("method GET is not allowed on {path}"));
    }
    let trailing = llmux.post("/v1/chat/completions/", &chat_body("small", false)).await;
    assert_eq!(trailing.status, 404, "only the exact API paths are served");
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let a = mock("alpha", &["small"]).await;
    let yaml = format!(
        "general_settings:\n  max_request_size_mb: 1\nmodel_list:\n  - model_name: small\n    litellm_params: {{model: ollama_chat/small, api_base: \"{}\"}}\n",
        a.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    let big = "x".repeat(1_200_000);
    let body = serde_json::json!({"model": "small", "messages": [{"role": "user", "content": big}]}).to_string();
    let reply = llmux.post("/v1/chat/completions", &body).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"]["code"], "413");
}

#[tokio::test]
async fn models_list_groups_and_visible_aliases() {
    let a = mock("alpha", &["small"]).await;
    let yaml = format!(
        "router_settings:\n  model_group_alias:\n    fast: small\n    secret: {{model: small, hidden: true}}\nmodel_list:\n  - model_name: small\n    litellm_params: {{model: ollama_chat/small, api_base: \"{}\", api_key: sk-engine-key-1}}\n",
        a.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    let models = llmux.get("/v1/models").await.json();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["small", "fast"]);
    assert_eq!(models["object"], "list");
    let info = llmux.get("/model/info").await;
    assert!(!info.text().contains("sk-engine-key-1"), "secrets must not leak: {}", info.text());
    assert_eq!(info.json()["data"][0]["model_info"]["mode"], "chat");
    // The hidden alias still routes.
    assert_eq!(llmux.post("/v1/chat/completions", &chat_body("secret", false)).await.status, 200);
    // The engine got the key.
    assert_eq!(a.requests()[0].header("authorization"), Some("Bearer sk-engine-key-1"));
}

#[tokio::test]
async fn a_host_that_fails_its_probe_is_skipped_without_costing_a_request() {
    let (a, b) = (mock("alpha", &["small"]).await, mock("beta", &["small", "big"]).await);
    let yaml = format!(
        "general_settings:\n  background_health_checks: true\n  health_check_interval: 1\n{}",
        two_hosts_yaml(&a.base_url(), &b.base_url())
    );
    let llmux = Llmux::start(&yaml).await;
    a.stop().await;
    // A probe round that starts now sees alpha down.
    llmux.health_round(None).await;
    let reply = llmux.post("/v1/chat/completions", &chat_body("fast", false)).await;
    assert_eq!(reply.status, 200);
    let route = reply.header("x-llmux-route");
    assert!(!route.contains("failed"), "the dead host was tried although its probe failed: {route}");
    assert!(reply.header("x-llmux-deployment").starts_with("model_list[1]"));
    // Probes are cheap listings, never generations.
    let paths: Vec<String> = b.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        paths
            .iter()
            .all(|p| ["/api/tags", "/api/ps", "/api/show", "/v1/models", "/api/chat", "/api/generate"]
                .contains(&p.as_str())),
        "{paths:?}"
    );
    assert_eq!(b.requests().iter().filter(|r| r.path == "/api/chat").count(), 1);
}

#[tokio::test]
async fn openai_compatible_engines_get_the_clients_bytes_with_only_model_rewritten() {
    let a = mock("alpha", &["served-name"]).await;
    let yaml = format!(
        "model_list:\n  - model_name: pass\n    litellm_params: {{model: hosted_vllm/served-name, api_base: \"{}/v1\"}}\n",
        a.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    let body = r#"{"model": "pass", "messages":[{"role":"user","content":"h\u00e9"}],"x_custom":{"k":[1,2.50,"z"]}, "logit_bias":{"50256":-100},"top_k":7}"#;
    let reply = llmux.post("/v1/chat/completions", body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let sent = &a.requests()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(
        std::str::from_utf8(&sent.raw_body).unwrap(),
        body.replace(r#""model": "pass""#, r#""model": "served-name""#)
    );
    assert_eq!(sent.header("authorization"), Some("Bearer fake-api-key"));
}

#[tokio::test]
async fn vision_images_reach_ollama_as_base64() {
    let a = mock("alpha", &["vis"]).await;
    let yaml = format!(
        "model_list:\n  - model_name: vis\n    litellm_params: {{model: ollama_chat/vis, api_base: \"{}\"}}\n",
        a.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    let body = serde_json::json!({
        "model": "vis",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=="}}
        ]}]
    });
    let reply = llmux.post("/v1/chat/completions", &body.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let sent = &a.requests()[0].body;
    assert_eq!(sent["messages"][0]["images"][0], "iVBORw0KGgoAAAANSUhEUg==");
    assert_eq!(sent["messages"][0]["content"], "What is in this picture?");
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_stream_cancels_generation_on_the_engine() {
    let a = mock_with({
        let mut c = MockConfig::new("alpha", &["small"]);
        c.reply_tokens = Some(200);
        c.tokens_per_sec = 50.0;
        c
    })
    .await;
    let yaml = format!(
        "model_list:\n  - model_name: small\n    litellm_params: {{model: ollama_chat/small, api_base: \"{0}\"}}\n  - model_name: pass\n    litellm_params: {{model: openai/small, api_base: \"{0}/v1\"}}\n",
        a.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    for (n, model) in ["small", "pass"].into_iter().enumerate() {
        let (first, body) = llmux.stream_first_frame("/v1/chat/completions", &chat_body(model, true)).await;
        assert!(first.starts_with(b"data: "));
        drop(body);
        let gone = format!("{model}: the engine was not told the client went");
        eventually(&gone, Duration::from_secs(5), async || a.stats().cancelled > n as u64).await;
        let stats = a.stats();
        assert_eq!(stats.cancelled, n as u64 + 1, "{model}: the engine kept generating for a gone client: {stats:?}");
        assert_eq!(stats.in_flight, 0);
    }
}

#[tokio::test]
async fn health_endpoints_report_hosts_models_and_503_for_a_dead_model() {
    let a = mock("alpha", &["small"]).await;
    let b = mock("beta", &["small", "big"]).await;
    let llmux = Llmux::start(&two_hosts_yaml(&a.base_url(), &b.base_url())).await;
    // Without background checks, GET /health probes now.
    let health = llmux.get("/health").await;
    assert_eq!(health.status, 200);
    let json = health.json();
    assert_eq!(json["healthy_count"], 3, "{json}");
    assert_eq!(json["unhealthy_count"], 0);
    assert!(
        a.requests().iter().all(|r| ["/api/tags", "/api/ps", "/api/show"].contains(&r.path.as_str())),
        "probes only list models and read their metadata"
    );
    // A request makes the model resident; /api/ps on the next probe confirms it.
    assert_eq!(llmux.post("/v1/chat/completions", &chat_body("fast", false)).await.status, 200);
    llmux.get("/health").await;
    let hosts = llmux.get("/health/hosts").await.json();
    let alpha = hosts["hosts"].as_array().unwrap().iter().find(|h| h["host"] == a.base_url()).unwrap().clone();
    assert_eq!(alpha["status"], "up");
    assert_eq!(alpha["resident_models"][0]["model"], "small");
    assert_eq!(alpha["resident_models"][0]["probed"], true);
    assert_eq!(alpha["available_models"][0], "small");
    // alpha goes away: its deployment is unhealthy; beta keeps the group healthy; a model only on alpha → 503.
    let alpha_url = a.base_url();
    a.stop().await;
    let json = llmux.get("/health").await.json();
    assert_eq!(json["unhealthy_count"], 1, "{json}");
    assert!(json["unhealthy_endpoints"][0]["error"].as_str().unwrap().len() > 3);
    assert_eq!(llmux.get("/health?model=fast").await.status, 200);
    let yaml = format!("model_list:\n  - model_name: lonely\n    litellm_params: {{model: ollama_chat/small, api_base: \"{}\"}}\n  - model_name: other\n    litellm_params: {{model: ollama_chat/x, api_base: \"{}\"}}\n", alpha_url, b.base_url());
    let lonely = Llmux::start(&yaml).await;
    let reply = lonely.get("/health?model=lonely").await;
    assert_eq!(reply.status, 503);
    // `other` names a model beta does not have: degraded host, unhealthy endpoint with the reason.
    let json = lonely.get("/health?model=other").await.json();
    assert!(json["unhealthy_endpoints"][0]["error"].as_str().unwrap().contains("not on"), "{json}");
}
