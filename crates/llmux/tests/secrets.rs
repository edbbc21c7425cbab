//! Secrets in a deployment's URL and headers stay between llmux and the engine: `api_base` credentials and query
//! values never show in `/model/info`, `/health`, `/health/hosts` or the route headers of an answer; URL
//! credentials go to the engine as basic auth and `extra_headers` as HTTP headers; a model name with control
//! characters is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

mod common;

use common::{chat_body, mock, posts, Llmux};

const PASSWORD: &str = "hunter2-secret";
const QUERY_KEY: &str = "qk-0123456789";
const HEADER_KEY: &str = "hdr-9876543210";

async fn llmux_with_secrets() -> (Llmux, llmux_mock::MockHandle) {
    let engine = mock("e", &["m"]).await;
    let base = engine.base_url().replacen("http://", &format!("http://ops:{PASSWORD}@"), 1);
    let yaml = format!(
        "model_list:\n  - model_name: g\n    litellm_params:\n      model: openai/m\n      api_base: \"{base}/v1?api-key={QUERY_KEY}\"\n      extra_headers: {{X-Tenant-Key: {HEADER_KEY}}}\n"
    );
    (Llmux::start(&yaml).await, engine)
}

fn assert_clean(what: &str, text: &str) {
    for secret in [PASSWORD, QUERY_KEY, HEADER_KEY] {
        assert!(!text.contains(secret), "{what} shows {secret}: {text}");
    }
}

#[tokio::test]
async fn url_credentials_and_extra_headers_reach_the_engine_only() {
    let (llmux, engine) = llmux_with_secrets().await;
    let reply = llmux.post("/v1/chat/completions", &chat_body("g", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    for header in ["x-llmux-route", "x-llmux-deployment"] {
        assert!(!reply.header(header).is_empty(), "{header} missing");
        assert_clean(header, &reply.header(header));
    }

    // The engine got the route on the path, the query kept, basic auth and the extra header.
    let sent = posts(&engine);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/v1/chat/completions");
    assert_eq!(sent[0].query.as_deref(), Some(format!("api-key={QUERY_KEY}").as_str()));
    let header = |name: &str| sent[0].headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("ops:{PASSWORD}"));
    assert_eq!(header("authorization"), Some(format!("Basic {basic}")));
    assert_eq!(header("x-tenant-key").as_deref(), Some(HEADER_KEY));
    assert!(sent[0].body.get("extra_headers").is_none(), "extra_headers went in the body: {}", sent[0].body);

    for path in ["/model/info", "/v1/model/info", "/health", "/health/hosts"] {
        let reply = llmux.get(path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_clean(path, &reply.text());
    }
    let info = llmux.get("/model/info").await.json();
    let params = &info["data"][0]["litellm_params"];
    assert!(params["api_base"].as_str().unwrap_or("").contains("api-key=***"), "{params}");
    assert!(params.get("extra_headers").is_none(), "{params}");
}

#[tokio::test]
async fn model_names_with_control_characters_and_array_bodies_are_refused() {
    let (llmux, engine) = llmux_with_secrets().await;
    let forged = r#"{"model":"g\nINFO llmux: forged line","messages":[{"role":"user","content":"hi"}]}"#;
    let reply = llmux.post("/v1/chat/completions", forged).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.json()["error"]["param"], "model", "{}", reply.text());
    let reply = llmux.post("/v1/chat/completions", &format!("[{}]", chat_body("g", false))).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(posts(&engine).is_empty());
}

#[tokio::test]
async fn readiness_says_only_its_status_without_the_key() {
    let engine = mock("e", &["m"]).await;
    let yaml = format!(
        "model_list:\n  - model_name: g\n    litellm_params: {{model: ollama_chat/m, api_base: \"{}\"}}\ngeneral_settings:\n  master_key: sk-ready\n",
        engine.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    let open = llmux.get_key("/health/readiness", None).await;
    assert_eq!(open.status, 200);
    assert_eq!(open.json(), serde_json::json!({"status": "healthy"}));
    let keyed = llmux.get_key("/health/readiness", Some("sk-ready")).await;
    assert_eq!(keyed.json()["deployments"], 1, "{}", keyed.text());
    assert!(keyed.json()["llmux_version"].is_string());
}
