//! Ollama native API shapes.

use serde_json::{json, Value};

use crate::client::{get, post};
use crate::start;
use llmux_mock::{MockConfig, ToolCallSpec};

fn chat_body(stream: Option<bool>) -> Value {
    let mut body = json!({
        "model": "llama3",
        "messages": [
            { "role": "system", "content": "be brief" },
            { "role": "user", "content": "why is the sky blue?" }
        ]
    });
    if let Some(s) = stream {
        body["stream"] = json!(s);
    }
    body
}

#[tokio::test]
async fn chat_non_stream_shape() {
    let mock = start(MockConfig::new("alpha", &["llama3"])).await;
    let resp = post(mock.addr(), "/api/chat", &chat_body(Some(false))).await;
    assert_eq!(resp.status, 200);
    assert!(resp.header("content-type").unwrap().starts_with("application/json"));
    let v = resp.json();
    assert_eq!(v["model"], "llama3");
    assert!(v["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["message"]["role"], "assistant");
    assert_eq!(v["message"]["content"], "Hello from alpha (llama3).");
    assert_eq!(v["done"], true);
    assert_eq!(v["done_reason"], "stop");
    // "be brief" + "why is the sky blue?" = 28 chars -> 7 tokens.
    assert_eq!(v["prompt_eval_count"], 7);
    assert_eq!(v["eval_count"], 4);
    for key in ["total_duration", "load_duration", "prompt_eval_duration", "eval_duration"] {
        assert!(v[key].is_u64(), "{key} missing: {v}");
    }
    assert!(v["eval_duration"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn chat_streams_ndjson_by_default() {
    let mock = start(MockConfig::new("alpha", &["llama3"])).await;
    let resp = post(mock.addr(), "/api/chat", &chat_body(None)).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/x-ndjson"));
    assert!(resp.complete);
    let lines = resp.ndjson();
    // One chunk per token plus the final statistics chunk, each its own HTTP chunk.
    assert_eq!(lines.len(), 5);
    assert_eq!(resp.chunks.len(), 5);
    let (last, tokens) = lines.split_last().unwrap();
    let text: String = tokens
        .iter()
        .map(|l| {
            assert_eq!(l["done"], false);
            assert_eq!(l["model"], "llama3");
            l["message"]["content"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, "Hello from alpha (llama3).");
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["message"]["content"], "");
    assert_eq!(last["eval_count"], 4);
    assert!(last["prompt_eval_count"].is_u64());
}

#[tokio::test]
async fn generate_with_thinking_streams_thinking_first() {
    let mut cfg = MockConfig::new("beta", &["qwen3"]);
    cfg.thinking = Some("Let me think.".into());
    let mock = start(cfg).await;
    let lines = post(mock.addr(), "/api/generate", &json!({ "model": "qwen3", "prompt": "hi" })).await.ndjson();
    let thinking: String = lines.iter().filter_map(|l| l["thinking"].as_str()).collect();
    assert_eq!(thinking, "Let me think.");
    let first_response = lines.iter().position(|l| !l["response"].as_str().unwrap().is_empty()).unwrap();
    assert!(lines[..first_response].iter().all(|l| l.get("thinking").is_some()));
    let response: String = lines.iter().map(|l| l["response"].as_str().unwrap()).collect();
    assert_eq!(response, "Hello from beta (qwen3).");
    assert_eq!(lines.last().unwrap()["done"], true);

    // Non-streaming carries both in one object; think:false suppresses thinking.
    let v = post(
        mock.addr(),
        "/api/chat",
        &json!({ "model": "qwen3", "stream": false, "messages": [{"role": "user", "content": "x"}] }),
    )
    .await
    .json();
    assert_eq!(v["message"]["thinking"], "Let me think.");
    let v = post(
        mock.addr(),
        "/api/generate",
        &json!({ "model": "qwen3", "prompt": "x", "stream": false, "think": false }),
    )
    .await
    .json();
    assert!(v.get("thinking").is_none());
    assert_eq!(v["response"], "Hello from beta (qwen3).");
}

#[tokio::test]
async fn chat_tool_call_reply() {
    let mut cfg = MockConfig::new("alpha", &["llama3"]);
    cfg.tool_call =
        Some(ToolCallSpec::new("get_current_weather", json!({ "location": "Paris, FR", "format": "celsius" })));
    let mock = start(cfg).await;
    let mut body = chat_body(Some(false));
    body["tools"] = json!([{ "type": "function", "function": { "name": "get_current_weather", "parameters": {} } }]);
    let v = post(mock.addr(), "/api/chat", &body).await.json();
    assert_eq!(v["done_reason"], "stop");
    assert_eq!(v["message"]["content"], "");
    let call = &v["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "get_current_weather");
    assert_eq!(call["arguments"]["location"], "Paris, FR");

    // Streamed: the call arrives whole in one chunk.
    body["stream"] = json!(true);
    let lines = post(mock.addr(), "/api/chat", &body).await.ndjson();
    let calls: Vec<&Value> = lines.iter().filter(|l| l["message"].get("tool_calls").is_some()).collect();
    assert_eq!(calls.len(), 1);
    assert!(calls[0]["message"]["tool_calls"][0]["function"]["arguments"].is_object());

    // Without tools in the request the reply is plain text.
    let v = post(mock.addr(), "/api/chat", &chat_body(Some(false))).await.json();
    assert_eq!(v["message"]["content"], "Hello from alpha (llama3).");
    assert!(v["message"].get("tool_calls").is_none());
}

#[tokio::test]
async fn num_predict_and_stop_options() {
    let mock = start(MockConfig::new("alpha", &["llama3"])).await;
    let mut body = chat_body(Some(false));
    body["options"] = json!({ "num_predict": 2 });
    let v = post(mock.addr(), "/api/chat", &body).await.json();
    assert_eq!(v["message"]["content"], "Hello from");
    assert_eq!(v["done_reason"], "length");
    assert_eq!(v["eval_count"], 2);
    body["options"] = json!({ "stop": [" alpha"] });
    let v = post(mock.addr(), "/api/chat", &body).await.json();
    assert_eq!(v["message"]["content"], "Hello from");
    assert_eq!(v["done_reason"], "stop");
}

#[tokio::test]
async fn unknown_model_is_404_in_ollama_shape() {
    let mock = start(MockConfig::new("alpha", &["llama3"])).await;
    let mut body = chat_body(Some(false));
    body["model"] = json!("mistral");
    let resp = post(mock.addr(), "/api/chat", &body).await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json(), json!({ "error": "model \"mistral\" not found, try pulling it first" }));
    // `llama3:latest` is the same model as `llama3`.
    body["model"] = json!("llama3:latest");
    assert_eq!(post(mock.addr(), "/api/chat", &body).await.status, 200);
    let resp = post(mock.addr(), "/api/show", &json!({ "model": "nope" })).await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json(), json!({ "error": "model 'nope' not found" }));
}

#[tokio::test]
async fn embed_is_deterministic_and_normalised() {
    let mock = start(MockConfig::new("alpha", &["nomic"])).await;
    let v = post(
        mock.addr(),
        "/api/embed",
        &json!({ "model": "nomic", "input": ["why is the sky blue?", "why is grass green?"] }),
    )
    .await
    .json();
    assert_eq!(v["model"], "nomic");
    let embeddings = v["embeddings"].as_array().unwrap();
    assert_eq!(embeddings.len(), 2);
    assert_eq!(embeddings[0].as_array().unwrap().len(), 8);
    assert_ne!(embeddings[0], embeddings[1]);
    let norm: f64 = embeddings[0].as_array().unwrap().iter().map(|x| x.as_f64().unwrap().powi(2)).sum();
    assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    for key in ["total_duration", "load_duration", "prompt_eval_count"] {
        assert!(v[key].is_u64(), "{key}");
    }
    let again =
        post(mock.addr(), "/api/embed", &json!({ "model": "nomic", "input": "why is the sky blue?", "dimensions": 8 }))
            .await
            .json();
    assert_eq!(again["embeddings"][0], embeddings[0]);
}

#[tokio::test]
async fn model_listing_endpoints() {
    let mut cfg = MockConfig::new("alpha", &["llama3:latest", "qwen3:8b"]);
    cfg.context_length = 32768;
    let mock = start(cfg).await;
    let root = get(mock.addr(), "/").await;
    assert_eq!((root.status, root.text().as_str()), (200, "Ollama is running"));
    assert_eq!(get(mock.addr(), "/api/version").await.json(), json!({ "version": "0.12.0" }));

    let tags = get(mock.addr(), "/api/tags").await.json();
    let models = tags["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    for m in models {
        for key in ["name", "model", "modified_at", "size", "digest", "details"] {
            assert!(m.get(key).is_some(), "{key} missing in {m}");
        }
        assert_eq!(m["details"]["format"], "gguf");
    }
    assert_eq!(models[0]["name"], "llama3:latest");

    // Nothing loaded until used; then the last used model shows up last.
    assert_eq!(get(mock.addr(), "/api/ps").await.json(), json!({ "models": [] }));
    for model in ["qwen3:8b", "llama3"] {
        let body = json!({ "model": model, "prompt": "x", "stream": false });
        assert_eq!(post(mock.addr(), "/api/generate", &body).await.status, 200);
    }
    let ps = get(mock.addr(), "/api/ps").await.json();
    let names: Vec<&str> = ps["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["qwen3:8b", "llama3"]);
    for key in ["name", "model", "size", "digest", "details", "expires_at", "size_vram"] {
        assert!(ps["models"][0].get(key).is_some(), "{key}");
    }
    // keep_alive 0 with an empty prompt unloads.
    let v = post(mock.addr(), "/api/generate", &json!({ "model": "llama3", "keep_alive": 0 })).await.json();
    assert_eq!(v["done_reason"], "unload");
    assert_eq!(mock.config().loaded, ["qwen3:8b"]);

    let show = post(mock.addr(), "/api/show", &json!({ "model": "qwen3:8b" })).await.json();
    assert_eq!(show["model_info"]["llama.context_length"], 32768);
    assert_eq!(show["model_info"]["general.architecture"], "llama");
    assert!(show["details"].is_object());
}
