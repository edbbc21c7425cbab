//! Loaded-model-aware routing against the mock's residency simulation (a memory budget per host, LRU eviction,
//! `/api/ps` telling the truth): probes never load a model, pinned models are preloaded and never evicted by
//! routing while another host can serve.

mod common;

use std::time::{Duration, Instant};

use common::*;
use llmux_mock::{MockConfig, ResidencyConfig};

/// A simulated Ollama host with a 10 GB budget and 6 GB models: two cannot be loaded together.
async fn host(name: &str, models: &[&str]) -> llmux_mock::MockHandle {
    let mut config = MockConfig::new(name, models);
    config.residency = Some(ResidencyConfig {
        memory_budget: Some(10_000_000_000),
        default_size: Some(6_000_000_000),
        default_load_ms: 50,
        ..ResidencyConfig::default()
    });
    mock_with(config).await
}

fn loaded(mock: &llmux_mock::MockHandle) -> Vec<String> {
    mock.resident().unwrap_or_default().into_iter().filter(|m| !m.loading).map(|m| m.name).collect()
}

#[tokio::test]
async fn health_probes_never_load_a_model() {
    let a = host("a", &["m1", "m2"]).await;
    let yaml = format!(
        "model_list:\n  - model_name: g\n    litellm_params: {{model: ollama_chat/m1, api_base: \"{}\"}}\ngeneral_settings:\n  background_health_checks: true\n  health_check_interval: 1\n",
        a.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    llmux.get("/health").await;
    llmux.get("/health/hosts").await;
    let stats = a.stats();
    assert!(stats.requests.get("/api/ps").copied().unwrap_or(0) >= 2, "probed: {:?}", stats.requests);
    assert_eq!(stats.loads, 0, "a probe loaded a model");
    assert!(loaded(&a).is_empty());
}

#[tokio::test]
async fn a_pinned_model_is_preloaded_and_routing_never_evicts_it_while_another_host_can_serve() {
    let a = host("a", &["keep", "other"]).await;
    let b = host("b", &["other"]).await;
    let yaml = format!(
        r#"
model_list:
  - model_name: keep
    litellm_params: {{model: ollama_chat/keep, api_base: "{a}"}}
  - model_name: other
    litellm_params: {{model: ollama_chat/other, api_base: "{a}"}}
  - model_name: other
    litellm_params: {{model: ollama_chat/other, api_base: "{b}"}}
router_settings:
  residency_routing: false
general_settings:
  background_health_checks: true
  health_check_interval: 1
llmux_settings:
  hosts:
    "{a}": {{memory_budget: 10GB, pinned: [keep]}}
"#,
        a = a.base_url(),
        b = b.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    // Preloaded at start-up, and seen resident by a probe.
    eventually("keep preloaded on a", Duration::from_secs(10), async || loaded(&a).contains(&"keep".to_owned())).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let hosts = llmux.get("/health/hosts").await.json();
    let placement = &hosts["hosts"][0]["placement"];
    assert_eq!(placement["fits"], false, "keep + other need 12 GB of a 10 GB budget: {placement}");

    // Even residency-blind, no request for `other` goes to a: loading it there would evict the pinned model.
    for _ in 0..20 {
        let reply = llmux.post("/v1/chat/completions", &chat_body("other", false)).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(reply.header("x-llmux-deployment").starts_with("model_list[2]"), "{}", reply.header("x-llmux-route"));
    }
    assert_eq!(a.stats().evictions, 0);
    assert_eq!(loaded(&a), ["keep"]);
    // The pinned model is sent with keep_alive -1 so the engine never lets it expire.
    let reply = llmux.post("/v1/chat/completions", &chat_body("keep", false)).await;
    assert_eq!(reply.status, 200);
    let sent = a.requests().into_iter().rfind(|r| r.path == "/api/chat").unwrap();
    assert_eq!(sent.body["keep_alive"], -1);

    // With b gone, a is the only candidate left: the request is served there rather than refused.
    b.stop().await;
    let reply = llmux.post("/v1/chat/completions", &chat_body("other", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.header("x-llmux-deployment").starts_with("model_list[1]"));
}

#[tokio::test]
async fn a_load_is_followed_by_a_look_at_what_the_engine_evicted() {
    let a = host("a", &["m1", "m2"]).await;
    let yaml = format!(
        "model_list:\n  - model_name: one\n    litellm_params: {{model: ollama_chat/m1, api_base: \"{a}\"}}\n  - model_name: two\n    litellm_params: {{model: ollama_chat/m2, api_base: \"{a}\"}}\n",
        a = a.base_url()
    );
    // No background probes: only the probe after a load can tell llmux what the engine did.
    let llmux = Llmux::start(&yaml).await;
    let resident = || async {
        let hosts = llmux.get("/health/hosts").await.json();
        let models = hosts["hosts"][0]["resident_models"].as_array().cloned().unwrap_or_default();
        models.iter().map(|m| (m["model"].as_str().unwrap_or("").to_owned(), m["probed"] == true)).collect::<Vec<_>>()
    };
    assert_eq!(llmux.post("/v1/chat/completions", &chat_body("one", false)).await.status, 200);
    eventually("the probe after the load saw m1", Duration::from_secs(10), async || {
        a.stats().requests.contains_key("/api/ps")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(resident().await, [("m1".to_owned(), true)]);
    // Loading m2 evicts m1 (6 + 6 GB > 10 GB): llmux learns it at once, not at the next probe interval.
    assert_eq!(llmux.post("/v1/chat/completions", &chat_body("two", false)).await.status, 200);
    assert_eq!(a.stats().evictions, 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while resident().await != [("m2".to_owned(), true)] {
        assert!(Instant::now() < deadline, "llmux still thinks {:?} is loaded", resident().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
