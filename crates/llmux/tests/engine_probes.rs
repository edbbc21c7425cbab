//! What llmux learns from each engine's own API and what it does with it: LM Studio's load state, Ollama's
//! per-model context length and capabilities (`/api/show`), opt-in generation probes (`health_check_model`),
//! and the per-group `keep_alive` warm policy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

mod common;

use std::time::Duration;

use common::*;
use llmux_mock::{Fault, MockConfig, ResidencyConfig};
use serde_json::Value;

/// A simulated host that holds one model at a time (LM Studio's just-in-time loading evicts the previous one).
async fn one_at_a_time(name: &str, models: &[&str]) -> llmux_mock::MockHandle {
    let mut config = MockConfig::new(name, models);
    config.residency = Some(ResidencyConfig {
        max_loaded_models: Some(1),
        default_size: Some(4_000_000_000),
        default_load_ms: 30,
        ..ResidencyConfig::default()
    });
    mock_with(config).await
}

fn host<'a>(hosts: &'a Value, origin: &str) -> &'a Value {
    hosts["hosts"].as_array().unwrap().iter().find(|h| h["host"] == origin).unwrap_or_else(|| panic!("{hosts}"))
}

fn resident(host: &Value) -> Vec<String> {
    host["resident_models"].as_array().unwrap().iter().map(|m| m["model"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn lm_studio_hosts_report_what_is_loaded_and_routing_follows_it() {
    let a = one_at_a_time("a", &["qwen", "llama"]).await;
    let b = one_at_a_time("b", &["qwen", "llama"]).await;
    let yaml = format!(
        r#"
model_list:
  - model_name: chat
    litellm_params: {{model: lm_studio/qwen, api_base: "{a}/v1"}}
  - model_name: chat
    litellm_params: {{model: lm_studio/qwen, api_base: "{b}/v1"}}
  - model_name: other
    litellm_params: {{model: lm_studio/llama, api_base: "{a}/v1"}}
"#,
        a = a.base_url(),
        b = b.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    // `llama` is loaded on a (as a user's earlier request would have); the probe sees it through LM Studio's API.
    assert_eq!(llmux.post("/v1/chat/completions", &chat_body("other", false)).await.status, 200);
    llmux.get("/health").await;
    let hosts = llmux.get("/health/hosts").await.json();
    let on_a = host(&hosts, &a.base_url());
    assert_eq!(on_a["engine"], "lm studio", "{on_a}");
    assert_eq!(resident(on_a), ["llama"]);
    assert_eq!(on_a["models"]["qwen"]["context_length"], 8192, "{on_a}");
    assert!(a.requests().iter().any(|r| r.path == "/api/v1/models"));

    // Another client of host b loads `qwen` there, evicting nothing llmux cares about; llmux's next look at b
    // sees it, and from then on every `chat` request stays on warm b: a never loads qwen (which would evict llama).
    assert_eq!(direct_chat(&b.base_url(), "qwen").await, 200);
    llmux.get("/health").await;
    assert_eq!(resident(host(&llmux.get("/health/hosts").await.json(), &b.base_url())), ["qwen"]);
    let loads_on_a = a.stats().loads;
    for _ in 0..6 {
        let reply = llmux.post("/v1/chat/completions", &chat_body("chat", false)).await;
        assert_eq!(reply.status, 200);
        assert!(reply.header("x-llmux-deployment").contains("model_list[1]"), "{}", reply.header("x-llmux-route"));
    }
    assert_eq!(a.stats().loads, loads_on_a, "the warm LM Studio host served every request");
}

/// An inference call straight to a mock engine (bypassing llmux), as another client of the host would make.
/// An Ollama mock whose models report `context` tokens of context.
async fn with_context(name: &str, models: &[&str], context: u64) -> llmux_mock::MockHandle {
    let mut config = MockConfig::new(name, models);
    config.context_length = context;
    mock_with(config).await
}

async fn direct_chat(base: &str, model: &str) -> u16 {
    let body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let client = llmux::upstream::client().unwrap();
    let request = http::Request::post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    http_body_util::BodyExt::collect(response.into_body()).await.unwrap();
    status
}

#[tokio::test]
async fn an_older_lm_studio_is_read_through_its_v0_api() {
    let mut config = MockConfig::new("old", &["qwen", "nomic-embed-text"]);
    config.loaded = vec!["qwen".into()];
    // LM Studio before 0.4 has no /api/v1/.
    config.fault = Fault::status(404);
    config.fault_paths = vec!["/api/v1/".into()];
    let old = mock_with(config).await;
    let yaml = format!(
        "model_list:\n  - model_name: chat\n    litellm_params: {{model: lm_studio/qwen, api_base: \"{}/v1\"}}\n",
        old.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    let health = llmux.get("/health").await.json();
    assert_eq!(health["healthy_count"], 1, "{health}");
    let hosts = llmux.get("/health/hosts").await.json();
    let h = host(&hosts, &old.base_url());
    assert_eq!(resident(h), ["qwen"], "{h}");
    assert_eq!(h["models"]["nomic-embed-text"]["capabilities"], serde_json::json!(["embedding"]), "{h}");
    assert!(old.requests().iter().any(|r| r.path == "/api/v0/models"));
}

#[tokio::test]
async fn model_info_shows_the_context_length_and_capabilities_ollama_reports() {
    let ollama = with_context("o", &["qwen3:8b", "llama3:8b"], 40_960).await;
    let yaml = format!(
        r#"
model_list:
  - model_name: coding
    litellm_params: {{model: ollama_chat/qwen3:8b, api_base: "{o}"}}
  - model_name: configured
    litellm_params: {{model: ollama_chat/llama3:8b, api_base: "{o}"}}
    model_info: {{max_input_tokens: 1000}}
  - model_name: "ollama/*"
    litellm_params: {{model: "ollama/*", api_base: "{o}"}}
litellm_settings:
  check_provider_endpoint: true
"#,
        o = ollama.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    llmux.get("/health").await;
    let info = llmux.get("/model/info").await.json();
    let entries = info["data"].as_array().unwrap();
    let named =
        |name: &str| entries.iter().find(|e| e["model_name"] == name).unwrap_or_else(|| panic!("{name} not in {info}"));
    let coding = &named("coding")["model_info"];
    assert_eq!(coding["max_input_tokens"], 40_960, "{coding}");
    assert_eq!(coding["supports_function_calling"], true);
    assert_eq!(coding["supports_vision"], false);
    assert_eq!(named("configured")["model_info"]["max_input_tokens"], 1000, "the config wins");
    // The wildcard is listed once per model the engine has, each with its facts and the host serving it.
    let expanded = named("ollama/llama3:8b");
    assert_eq!(expanded["litellm_params"]["model"], "ollama/llama3:8b");
    assert_eq!(expanded["litellm_params"]["api_base"], ollama.base_url());
    assert_eq!(expanded["model_info"]["max_input_tokens"], 40_960);
    let shows = ollama.requests().iter().filter(|r| r.path == "/api/show").count();
    assert_eq!(shows, 2, "one /api/show per model");
    llmux.get("/health").await;
    let again = ollama.requests().iter().filter(|r| r.path == "/api/show").count();
    assert_eq!(again, 2, "asked once, remembered");
    assert_eq!(ollama.stats().loads, 0);
}

#[tokio::test]
async fn transient_429s_from_ollama_neither_teach_nor_erase_model_facts() {
    let ollama = with_context("o", &["qwen3:8b"], 40_960).await;
    let yaml = format!(
        r#"
model_list:
  - model_name: coding
    litellm_params: {{model: ollama_chat/qwen3:8b, api_base: "{o}"}}
general_settings:
  health_check_ignore_transient_errors: true
"#,
        o = ollama.base_url()
    );
    let too_many = Fault::Status { status: 429, body: None, retry_after: None };
    ollama.set_config(|c| {
        c.fault = too_many.clone();
        c.fault_paths = vec!["/api/show".into()];
    });
    let llmux = Llmux::start(&yaml).await;
    let context = |info: serde_json::Value| info["data"][0]["model_info"]["max_input_tokens"].clone();
    llmux.get("/health").await;
    assert!(context(llmux.get("/model/info").await.json()).is_null(), "a 429 from /api/show teaches nothing");
    ollama.set_config(|c| c.fault = Fault::None);
    llmux.get("/health").await;
    assert_eq!(context(llmux.get("/model/info").await.json()), 40_960, "and /api/show is asked again");
    ollama.set_config(|c| {
        c.fault = too_many;
        c.fault_paths = vec!["/api/tags".into()];
    });
    let probe = llmux.get("/health").await.json();
    assert_eq!(probe["healthy_count"], 1, "a transient error is ignored: {probe}");
    assert_eq!(context(llmux.get("/model/info").await.json()), 40_960, "the facts survive the 429");
}

#[tokio::test]
async fn pre_call_checks_use_the_context_length_the_engine_reports() {
    let small = with_context("small", &["m"], 2_048).await;
    let large = with_context("large", &["m"], 131_072).await;
    let yaml = format!(
        r#"
model_list:
  - model_name: chat
    litellm_params: {{model: ollama_chat/m, api_base: "{s}"}}
  - model_name: chat
    litellm_params: {{model: ollama_chat/m, api_base: "{l}"}}
router_settings:
  enable_pre_call_checks: true
general_settings:
  background_health_checks: true
  health_check_interval: 60
"#,
        s = small.base_url(),
        l = large.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    eventually("both hosts probed", Duration::from_secs(5), async || {
        let hosts = llmux.get("/health/hosts").await.json();
        hosts["hosts"].as_array().unwrap().iter().all(|h| !h["models"]["m"].is_null())
    })
    .await;
    let long = "word ".repeat(12_000);
    let body = serde_json::json!({"model": "chat", "messages": [{"role": "user", "content": long}]}).to_string();
    for _ in 0..4 {
        let reply = llmux.post("/v1/chat/completions", &body).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(reply.header("x-llmux-deployment").contains("model_list[1]"), "{}", reply.header("x-llmux-route"));
    }
    assert!(posts(&small).is_empty(), "the 2k-context host never got a prompt it cannot hold");
}

#[tokio::test]
async fn an_opted_in_generation_probe_takes_a_deployment_out_until_it_answers_again() {
    let sick = mock("sick", &["m"]).await;
    let well = mock("well", &["m"]).await;
    // least-busy sends sequential requests to the first deployment in the file unless something excludes it (with
    // residency routing off: otherwise the host where the model is warm would win).
    let yaml = format!(
        r#"
model_list:
  - model_name: chat
    litellm_params: {{model: ollama_chat/m, api_base: "{s}"}}
    model_info: {{health_check_model: ollama_chat/m, health_check_max_tokens: 2}}
  - model_name: chat
    litellm_params: {{model: ollama_chat/m, api_base: "{w}"}}
router_settings:
  routing_strategy: least-busy
  residency_routing: false
general_settings:
  enable_health_check_routing: true
"#,
        s = sick.base_url(),
        w = well.base_url()
    );
    // The engine lists its models (the cheap probe passes) but every generation fails.
    sick.set_config(|c| c.fault = Fault::status(500));
    let llmux = Llmux::start(&yaml).await;
    let health = llmux.get("/health?model=chat").await.json();
    assert_eq!(health["unhealthy_count"], 1, "{health}");
    assert_eq!(health["unhealthy_endpoints"][0]["api_base"], sick.base_url(), "{health}");
    let probe = sick.requests().into_iter().find(|r| r.path == "/api/chat").expect("a generation probe was sent");
    assert_eq!(probe.body["model"], "m");
    assert_eq!(probe.body["options"]["num_predict"], 2, "health_check_max_tokens: {}", probe.body);
    assert!(posts(&well).is_empty(), "a deployment that did not opt in gets no generation from a probe");
    sick.clear_requests();
    for _ in 0..4 {
        let reply = llmux.post("/v1/chat/completions", &chat_body("chat", false)).await;
        assert_eq!(reply.status, 200);
        assert!(reply.header("x-llmux-route").contains("generation probe failed"), "{}", reply.header("x-llmux-route"));
    }
    assert!(posts(&sick).is_empty(), "the failing deployment was skipped");
    // It answers again: the next check brings it back, and it serves again.
    sick.set_config(|c| c.fault = Fault::None);
    let health = llmux.get("/health?model=chat").await.json();
    assert_eq!(health["unhealthy_count"], 0, "{health}");
    sick.clear_requests();
    let reply = llmux.post("/v1/chat/completions", &chat_body("chat", false)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(posts(&sick).len(), 1, "{}", reply.header("x-llmux-route"));
}

#[tokio::test]
async fn a_group_keep_alive_reaches_ollama_unless_a_deployment_sets_its_own() {
    let o = mock("o", &["a", "b", "c"]).await;
    let yaml = format!(
        r#"
model_list:
  - model_name: voice
    litellm_params: {{model: ollama_chat/a, api_base: "{o}"}}
    model_info: {{id: voice-a}}
  - model_name: voice
    litellm_params: {{model: ollama_chat/b, api_base: "{o}", keep_alive: 5m}}
    model_info: {{id: voice-b}}
  - model_name: agents
    litellm_params: {{model: ollama/c, api_base: "{o}"}}
llmux_settings:
  groups:
    voice: {{keep_alive: -1}}
    agents: {{keep_alive: 2h30m}}
"#,
        o = o.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    for id in ["voice-a", "voice-b", "agents"] {
        assert_eq!(llmux.post("/v1/chat/completions", &chat_body(id, false)).await.status, 200);
    }
    let sent = posts(&o);
    let keep_alive = |model: &str| sent.iter().find(|r| r.body["model"] == model).map(|r| r.body["keep_alive"].clone());
    assert_eq!(keep_alive("a"), Some(Value::from(-1)));
    assert_eq!(keep_alive("b"), Some(Value::from("5m")), "the deployment's own keep_alive wins");
    assert_eq!(keep_alive("c"), Some(Value::from("2h30m")), "on /api/generate too");
}

#[test]
fn a_bad_group_keep_alive_is_a_config_error_with_its_path() {
    let yaml = r#"
model_list:
  - model_name: voice
    litellm_params: {model: ollama_chat/a}
llmux_settings:
  groups:
    voice: {keep_alive: soon}
    nobody: {keep_alive: 5m}
"#;
    let Err(errors) = llmux::config::load_str(yaml, &|_| None) else { panic!("a bad keep_alive was accepted") };
    let errors = errors.to_string();
    assert!(errors.contains("llmux_settings.groups.voice.keep_alive"), "{errors}");
    let yaml = yaml.replace("soon", "10m");
    let (_, warnings) = llmux::config::load_str(&yaml, &|_| None).expect("loads");
    assert!(warnings.to_string().contains("llmux_settings.groups.nobody"), "{warnings}");
}

#[test]
fn a_group_or_alias_priority_is_read_and_a_bad_one_is_a_config_error_with_its_path() {
    let yaml = r#"
router_settings:
  model_group_alias: {assistant: voice}
model_list:
  - model_name: voice
    litellm_params: {model: ollama_chat/a}
llmux_settings:
  groups:
    voice: {priority: 3}
    assistant: {priority: high}
"#;
    let Err(errors) = llmux::config::load_str(yaml, &|_| None) else { panic!("a bad priority was accepted") };
    assert!(errors.to_string().contains("llmux_settings.groups.assistant.priority"), "{errors}");
    let (config, _) = llmux::config::load_str(&yaml.replace("high", "-2"), &|_| None).expect("loads");
    assert_eq!((config.priorities.get("voice"), config.priorities.get("assistant")), (Some(&3), Some(&-2)));
}
