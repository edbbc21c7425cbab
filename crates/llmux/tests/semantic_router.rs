//! The semantic auto router (`auto_router/<name>`) end to end: utterances and requests embedded through llmux's
//! own embedding group (the mock embeds deterministically: equal texts give equal vectors, different texts
//! nearly orthogonal ones), the closest route over its threshold wins, and any embedding failure falls back to
//! the default model without failing the request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

mod common;

use common::*;
use llmux_mock::{Fault, MockConfig};

fn yaml(chat: &str, embed: &str) -> String {
    format!(
        r#"
model_list:
  - model_name: smart
    litellm_params:
      model: auto_router/smart
      auto_router_default_model: general
      auto_router_embedding_model: embedding
      auto_router_config:
        routes:
          - {{name: coder, utterances: ["write a python function", "fix this stack trace"], score_threshold: 0.9}}
          - {{name: lights, utterances: ["turn off the kitchen light"]}}
  - model_name: coder
    litellm_params: {{model: ollama_chat/coder, api_base: "{chat}"}}
  - model_name: lights
    litellm_params: {{model: ollama_chat/small, api_base: "{chat}"}}
  - model_name: general
    litellm_params: {{model: ollama_chat/general, api_base: "{chat}"}}
  - model_name: embedding
    litellm_params: {{model: ollama/embed, api_base: "{embed}"}}
"#
    )
}

fn last_model(mock: &llmux_mock::MockHandle) -> String {
    let chats: Vec<_> = mock.requests().into_iter().filter(|r| r.path == "/api/chat").collect();
    chats.last().map(|r| r.body["model"].as_str().unwrap_or_default().to_owned()).unwrap_or_default()
}

fn ask(text: &str, stream: bool) -> String {
    serde_json::json!({"model": "smart", "stream": stream, "messages": [
        {"role": "system", "content": "You are a home assistant."},
        {"role": "user", "content": text},
    ]})
    .to_string()
}

#[tokio::test]
async fn requests_go_to_the_closest_route_and_otherwise_to_the_default() {
    let chat = mock("chat", &["coder", "small", "general"]).await;
    let embed = mock("embed", &["embed"]).await;
    let llmux = Llmux::start(&yaml(&chat.base_url(), &embed.base_url())).await;

    let reply = llmux.post("/v1/chat/completions", &ask("turn off the kitchen light", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(last_model(&chat), "small");
    let route = reply.header("x-llmux-route");
    assert!(route.contains("smart (semantic) -> lights (similarity 1.000)"), "{route}");

    let (status, _, frames) = llmux.stream("/v1/chat/completions", &ask("fix this stack trace", true)).await;
    assert_eq!(status, 200);
    assert!(!stream_text(&sse_events(&frames)).is_empty());
    assert_eq!(last_model(&chat), "coder");

    let reply = llmux.post("/v1/chat/completions", &ask("what is the weather like", false)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(last_model(&chat), "general");
    assert!(reply.header("x-llmux-route").contains("default general (no route reached its threshold)"));

    // The utterances were embedded once; each request embeds only its own text.
    let embeds: Vec<_> = embed.requests().into_iter().filter(|r| r.path == "/api/embed").collect();
    let utterance_calls = embeds.iter().filter(|r| r.body["input"].as_array().is_some_and(|a| a.len() == 3)).count();
    assert_eq!(utterance_calls, 1, "{embeds:?}");
    assert_eq!(embeds.len(), 4);
}

#[tokio::test]
async fn an_embedding_failure_sends_the_request_to_the_default_model() {
    let chat = mock("chat", &["coder", "small", "general"]).await;
    let mut broken = MockConfig::new("embed", &["embed"]);
    broken.fault = Fault::Status { status: 500, body: None, retry_after: None };
    let embed = mock_with(broken).await;
    let llmux = Llmux::start(&yaml(&chat.base_url(), &embed.base_url())).await;
    let reply = llmux.post("/v1/chat/completions", &ask("turn off the kitchen light", false)).await;
    assert_eq!(reply.status, 200, "the router never fails the request: {}", reply.text());
    assert_eq!(last_model(&chat), "general");
    let route = reply.header("x-llmux-route");
    assert!(route.contains("default general (embedding the utterances failed"), "{route}");
}

#[test]
fn semantic_router_config_errors_have_paths() {
    let yaml = r#"
model_list:
  - model_name: smart
    litellm_params: {model: auto_router/smart, auto_router_default_model: nowhere, auto_router_embedding_model: smart, auto_router_config_path: /no/such/file.json}
"#;
    let errors = llmux::config::load_str(yaml, &|_| None).unwrap_err().to_string();
    assert!(
        errors.contains("model_list[0].litellm_params.auto_router_config_path: cannot read /no/such/file.json"),
        "{errors}"
    );
    assert!(errors.contains("model_list[0].litellm_params.auto_router_default_model"), "{errors}");
}
