//! Wildcard model names (`ollama/*`, `*`), as LiteLLM matches them, and model discovery for `/v1/models`
//! (`litellm_settings.check_provider_endpoint`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

mod common;

use common::*;

fn chat_paths(mock: &llmux_mock::MockHandle) -> Vec<serde_json::Value> {
    posts(mock).into_iter().map(|r| r.body).collect()
}

fn wildcard_yaml(ollama: &str, openai: &str, discover: bool) -> String {
    format!(
        r#"
litellm_settings:
  check_provider_endpoint: {discover}
model_list:
  - model_name: exact
    litellm_params: {{model: ollama_chat/llama3, api_base: "{ollama}"}}
  - model_name: "ollama/*"
    litellm_params: {{model: "ollama_chat/*", api_base: "{ollama}"}}
  - model_name: "local/*/beta"
    litellm_params: {{model: "ollama_chat/*", api_base: "{ollama}"}}
  - model_name: "*"
    litellm_params: {{model: "openai/*", api_base: "{openai}/v1"}}
"#
    )
}

#[tokio::test]
async fn a_wildcard_group_asks_its_engine_for_the_model_the_client_named() {
    let ollama = mock("ollama", &["qwen3:8b", "llama3"]).await;
    let openai = mock("cloud", &["gpt-x", "ollama/qwen3:8b"]).await;
    let llmux = Llmux::start(&wildcard_yaml(&ollama.base_url(), &openai.base_url(), false)).await;

    let reply = llmux.post("/v1/chat/completions", &chat_body("ollama/qwen3:8b", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(chat_paths(&ollama).last().unwrap()["model"], "qwen3:8b", "the * filled in from the request");
    assert_eq!(reply.json()["model"], "ollama/qwen3:8b", "the client sees the name it asked for");

    // The longest pattern wins over the catch-all, and an exact group over both.
    let reply = llmux.post("/v1/chat/completions", &chat_body("exact", true)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(chat_paths(&ollama).last().unwrap()["model"], "llama3");
    assert!(chat_paths(&openai).is_empty(), "nothing reached the catch-all yet");

    // Anything else goes to the catch-all, passed through unchanged.
    let reply = llmux.post("/v1/chat/completions", &chat_body("gpt-x", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(chat_paths(&openai).last().unwrap()["model"], "gpt-x");
    assert!(reply.header("x-llmux-route").contains('*'), "{}", reply.header("x-llmux-route"));

    // A model the engine does not have is the engine's answer, not a routing error.
    let reply = llmux.post("/v1/chat/completions", &chat_body("ollama/nope", false)).await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(chat_paths(&ollama).last().unwrap()["model"], "nope");
}

#[tokio::test]
async fn embeddings_and_streams_route_through_wildcards_too() {
    let ollama = mock("ollama", &["nomic-embed-text", "llama3"]).await;
    let openai = mock("cloud", &["gpt-x"]).await;
    let llmux = Llmux::start(&wildcard_yaml(&ollama.base_url(), &openai.base_url(), false)).await;
    let reply = llmux.post("/v1/embeddings", r#"{"model": "ollama/nomic-embed-text", "input": "hi"}"#).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(chat_paths(&ollama).last().unwrap()["model"], "nomic-embed-text");
    let (status, _, frames) = llmux.stream("/v1/chat/completions", &chat_body("ollama/llama3", true)).await;
    assert_eq!(status, 200);
    assert!(!stream_text(&sse_events(&frames)).is_empty());
    assert_eq!(chat_paths(&ollama).last().unwrap()["model"], "llama3");
}

#[tokio::test]
async fn v1_models_lists_what_the_engines_have_when_discovery_is_on() {
    let ollama = mock("ollama", &["qwen3:8b", "llama3"]).await;
    let openai = mock("cloud", &["gpt-x"]).await;
    let ids = |reply: Reply| -> Vec<String> {
        reply.json()["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
    };

    let plain = Llmux::start(&wildcard_yaml(&ollama.base_url(), &openai.base_url(), false)).await;
    assert_eq!(ids(plain.get("/v1/models").await), ["exact", "ollama/*", "local/*/beta", "*"]);

    let discovering = Llmux::start(&wildcard_yaml(&ollama.base_url(), &openai.base_url(), true)).await;
    let listed = ids(discovering.get("/v1/models").await);
    let expected = ["exact", "ollama/llama3", "ollama/qwen3:8b", "local/llama3/beta", "local/qwen3:8b/beta", "gpt-x"];
    assert_eq!(listed, expected);
    // Every listed name routes back to a deployment that has it.
    for id in listed.iter().filter(|id| !id.contains('*')) {
        let reply = discovering.post("/v1/chat/completions", &chat_body(id, false)).await;
        assert_eq!(reply.status, 200, "{id}: {}", reply.text());
    }
    // The lists are cached: a second listing asks no engine again. (Let the probe that follows a model load
    // settle first: a probe asks /api/tags, then /api/ps; the listing's was the first.)
    let asked = |path: &str| ollama.requests().iter().filter(|r| r.path == path).count();
    eventually("the probe after the loads is done", std::time::Duration::from_secs(5), async || {
        asked("/api/ps") >= 2 && asked("/api/tags") == asked("/api/ps")
    })
    .await;
    let probes = || ollama.requests().iter().filter(|r| r.path == "/api/tags").count();
    let before = probes();
    discovering.get("/v1/models").await;
    assert_eq!(probes(), before);
}

#[tokio::test]
async fn a_star_in_the_model_needs_a_wildcard_model_name() {
    let yaml =
        "model_list:\n  - model_name: plain\n    litellm_params: {model: \"ollama/*\", api_base: \"http://h:1\"}\n";
    let errors = llmux::config::load_str(yaml, &|_| None).unwrap_err().to_string();
    assert!(errors.contains("model_list[0].litellm_params.model"), "{errors}");
}
