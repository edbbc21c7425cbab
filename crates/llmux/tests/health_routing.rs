//! What health means for routing, over real loopback sockets: a probe answered with an HTTP error is reported
//! but (as LiteLLM) only gates routing with `enable_health_check_routing`; a host that cannot be reached is out
//! at once and re-probed in the background until it answers, so it is back within seconds; explicit weights
//! hold against residency.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

mod common;

use std::time::Duration;

use common::*;
use llmux_mock::{Fault, MockConfig, MockServer};

/// Two Ollama hosts serving `m` in one group, `extra` added under `router_settings`.
fn pair(a: &str, b: &str, general: &str, router: &str) -> String {
    format!(
        "general_settings:\n  background_health_checks: true\n  health_check_interval: 1\n{general}\nrouter_settings:\n  residency_routing: false\n{router}\nmodel_list:\n  - model_name: g\n    litellm_params: {{model: ollama_chat/m, api_base: \"{a}\"}}\n  - model_name: g\n    litellm_params: {{model: ollama_chat/m, api_base: \"{b}\"}}\n"
    )
}

fn chats(m: &llmux_mock::MockHandle) -> usize {
    m.requests().iter().filter(|r| r.path == "/api/chat").count()
}

/// A host whose `/api/tags` answers 400 while `/api/chat` works.
async fn tags_blocked(name: &str) -> llmux_mock::MockHandle {
    let mut c = MockConfig::new(name, &["m"]);
    c.fault = Fault::status(400);
    c.fault_paths = vec!["/api/tags".into()];
    mock_with(c).await
}

#[tokio::test]
async fn a_probe_answered_with_an_http_error_is_reported_but_routes_on_unless_health_check_routing() {
    let a = tags_blocked("alpha").await;
    let b = mock("beta", &["m"]).await;
    let llmux = Llmux::start(&pair(&a.base_url(), &b.base_url(), "", "")).await;
    eventually("alpha's probe failed", Duration::from_secs(10), async || {
        let hosts = llmux.get("/health/hosts").await.json();
        hosts.to_string().contains("status 400")
    })
    .await;
    let health = llmux.get("/health").await.json();
    assert_eq!(health["unhealthy_count"], 1, "{health}");
    for _ in 0..30 {
        assert_eq!(llmux.post("/v1/chat/completions", &chat_body("g", false)).await.status, 200);
    }
    assert!(chats(&a) >= 3, "alpha answers chats but got {} of 30", chats(&a));
    // A request it answered does not hide what the probe found.
    assert!(llmux.get("/health/hosts").await.text().contains("status 400"));

    // With enable_health_check_routing the probe's verdict gates routing, as in LiteLLM.
    let c = tags_blocked("gamma").await;
    let d = mock("delta", &["m"]).await;
    let llmux = Llmux::start(&pair(&c.base_url(), &d.base_url(), "  enable_health_check_routing: true", "")).await;
    eventually("gamma's probe failed", Duration::from_secs(10), async || {
        llmux.get("/health/hosts").await.text().contains("status 400")
    })
    .await;
    for _ in 0..10 {
        assert_eq!(llmux.post("/v1/chat/completions", &chat_body("g", false)).await.status, 200);
    }
    assert_eq!(chats(&c), 0);
}

#[tokio::test]
async fn a_host_that_refused_a_request_is_back_in_routing_within_seconds_of_answering_again() {
    let a = mock("alpha", &["m"]).await;
    let b = mock("beta", &["m"]).await;
    let addr = a.addr();
    // No background probes: only the re-probe of the ejected host can bring it back before the 30 s window.
    let yaml = format!(
        "router_settings:\n  residency_routing: false\nmodel_list:\n  - model_name: g\n    litellm_params: {{model: ollama_chat/m, api_base: \"{}\", order: 1}}\n  - model_name: g\n    litellm_params: {{model: ollama_chat/m, api_base: \"{}\", order: 2}}\n",
        a.base_url(),
        b.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    a.stop().await;
    let reply = llmux.post("/v1/chat/completions", &chat_body("g", false)).await;
    assert!(reply.text().contains("beta"), "{}", reply.text());
    assert!(reply.header("x-llmux-route").contains("failed"));
    // Down for a few seconds: the re-probes back off meanwhile (1 s, 1.5 s, 2.25 s, then 3 s apart). What stands
    // at alpha's address meanwhile hangs up on each, so they can be counted: the third has come by 4.75 s.
    let hang_up = tokio::net::TcpListener::bind(addr).await.expect("alpha's port is free");
    let reprobes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = reprobes.clone();
    let counter = tokio::spawn(async move {
        while let Ok((connection, _)) = hang_up.accept().await {
            drop(connection);
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    eventually("three re-probes", Duration::from_secs(15), async || {
        reprobes.load(std::sync::atomic::Ordering::Relaxed) >= 3
    })
    .await;
    let reply = llmux.post("/v1/chat/completions", &chat_body("g", false)).await;
    assert!(reply.header("x-llmux-route").contains("host down"), "{}", reply.header("x-llmux-route"));
    counter.abort();
    let _ = counter.await;
    let a = MockServer::start(MockConfig::new("alpha", &["m"]), addr).await.expect("alpha restarts");
    let readmitted = eventually("alpha is back in routing", Duration::from_secs(15), async || {
        llmux.get("/health/hosts").await.json()["hosts"][0]["status"] == "up"
    })
    .await;
    let reply = llmux.post("/v1/chat/completions", &chat_body("g", false)).await;
    assert!(reply.text().contains("alpha"), "order 1 is back: {}", reply.header("x-llmux-route"));
    println!("time to re-admission after the host answered again: {:.2} s", readmitted.as_secs_f64());
    assert!(readmitted < Duration::from_secs(10), "re-admitted after {readmitted:?}");
    // The check was a probe, not a client request.
    assert!(a.requests().iter().any(|r| r.path == "/api/tags"), "it was re-probed");
    assert_eq!(chats(&a), 1, "only the request after re-admission reached alpha");
}

#[tokio::test]
async fn explicit_weights_split_traffic_even_after_the_model_is_loaded_on_the_heavy_host() {
    let a = mock("alpha", &["m"]).await;
    let b = mock("beta", &["m"]).await;
    // Residency routing on (the default): the first answer makes `m` resident on whichever host served it.
    let yaml = format!(
        "model_list:\n  - model_name: g\n    litellm_params: {{model: ollama_chat/m, api_base: \"{}\", weight: 9}}\n  - model_name: g\n    litellm_params: {{model: ollama_chat/m, api_base: \"{}\", weight: 1}}\n",
        a.base_url(),
        b.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    for _ in 0..300 {
        assert_eq!(llmux.post("/v1/chat/completions", &chat_body("g", false)).await.status, 200);
    }
    let (heavy, light) = (chats(&a), chats(&b));
    println!("weight 9 : weight 1 over 300 requests: {heavy} : {light}");
    assert!((10..=60).contains(&light), "weight 1 of 10 got {light} of 300 (LiteLLM: about 30)");
}
