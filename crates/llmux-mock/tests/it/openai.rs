//! OpenAI-compatible API shapes.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::client::{get, post};
use crate::start;
use llmux_mock::{MockConfig, ToolCallSpec};

fn chat_body() -> Value {
    json!({
        "model": "gpt-x",
        "messages": [{ "role": "user", "content": [{ "type": "text", "text": "hello there!" }] }]
    })
}

#[tokio::test]
async fn chat_completion_non_stream() {
    let mock = start(MockConfig::new("gamma", &["gpt-x"])).await;
    let resp = post(mock.addr(), "/v1/chat/completions", &chat_body()).await;
    assert_eq!(resp.status, 200);
    let v = resp.json();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].is_u64());
    assert_eq!(v["model"], "gpt-x");
    assert_eq!(v["choices"][0]["index"], 0);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from gamma (gpt-x).");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({ "prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                "prompt_tokens_details": { "cached_tokens": 0 } })
    );
    // Like llama.cpp: no `logprobs` unless asked for, and its `timings`.
    assert!(v["choices"][0].get("logprobs").is_none());
    assert_eq!(v["timings"]["predicted_n"], 4);
    assert_eq!(v["timings"]["prompt_n"], 3);
}

#[tokio::test]
async fn chat_stream_sse_with_include_usage() {
    let mock = start(MockConfig::new("gamma", &["gpt-x"])).await;
    let mut body = chat_body();
    body["stream"] = json!(true);
    body["stream_options"] = json!({ "include_usage": true });
    let resp = post(mock.addr(), "/v1/chat/completions", &body).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    assert!(resp.complete);
    let events = resp.sse();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let id = chunks[0]["id"].as_str().unwrap();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id);
        assert_eq!(c["model"], "gpt-x");
    }
    // As llama.cpp: a role-only chunk first, and no `usage` key on any chunk but the usage chunk.
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({ "role": "assistant", "content": null }));
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 4);
    assert_eq!(usage_chunk["usage"]["total_tokens"], 7);
    assert_eq!(usage_chunk["timings"]["predicted_n"], 4);
    assert!(rest.iter().all(|c| c.get("usage").is_none() && c.get("timings").is_none()));
    let (finish, deltas) = rest.split_last().unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    let text: String = deltas[1..]
        .iter()
        .map(|c| {
            assert!(c["choices"][0]["finish_reason"].is_null());
            assert!(c["choices"][0]["delta"].get("role").is_none());
            c["choices"][0]["delta"]["content"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, "Hello from gamma (gpt-x).");

    // Without include_usage there is no usage chunk and no usage field; the finish chunk carries the timings.
    body["stream_options"] = json!({ "include_usage": false });
    let events = post(mock.addr(), "/v1/chat/completions", &body).await.sse();
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(last.get("usage").is_none());
    assert!(last["timings"].is_object());
}

#[tokio::test]
async fn chat_role_chunk_arrives_with_the_first_token() {
    // The role chunk and the first content chunk are one write, so a paced stream's first content still comes
    // after exactly the time-to-first-token.
    let mut cfg = MockConfig::new("gamma", &["gpt-x"]);
    cfg.tokens_per_sec = 20.0;
    let mock = start(cfg).await;
    let mut body = chat_body();
    body["stream"] = json!(true);
    let resp = post(mock.addr(), "/v1/chat/completions", &body).await;
    let first = std::str::from_utf8(&resp.chunks[0]).unwrap();
    assert!(first.contains(r#""role":"assistant""#) && first.contains(r#""content":"Hello""#), "{first}");
}

#[tokio::test]
async fn chat_without_messages_is_rejected() {
    let mock = start(MockConfig::new("gamma", &["gpt-x"])).await;
    let resp = post(mock.addr(), "/v1/chat/completions", &json!({ "model": "gpt-x" })).await;
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.json()["error"],
        json!({ "code": 400, "message": "'messages' is required",
                                             "type": "invalid_request_error" })
    );
    // An empty list is accepted (llama.cpp answers it too).
    let resp = post(mock.addr(), "/v1/chat/completions", &json!({ "model": "gpt-x", "messages": [] })).await;
    assert_eq!(resp.status, 200);
}

#[tokio::test]
async fn llama_cpp_endpoints() {
    let mut cfg = MockConfig::new("gamma", &["gpt-x"]);
    cfg.context_length = 2048;
    cfg.slots = 3;
    let mock = start(cfg).await;
    assert_eq!(get(mock.addr(), "/health").await.json(), json!({ "status": "ok" }));
    let slots = get(mock.addr(), "/slots").await.json();
    assert_eq!(slots.as_array().unwrap().len(), 3);
    assert_eq!(slots[0], json!({ "id": 0, "n_ctx": 2048, "speculative": false, "is_processing": false }));
    let props = get(mock.addr(), "/props").await.json();
    assert_eq!(props["total_slots"], 3);
    assert_eq!(props["default_generation_settings"]["n_ctx"], 2048);
    assert_eq!(props["model_alias"], "gpt-x");
    let models = get(mock.addr(), "/v1/models").await.json();
    assert_eq!(models["data"][0]["meta"]["n_ctx_train"], 2048);
}

#[tokio::test]
async fn busy_slots_follow_requests_in_flight() {
    let mut cfg = MockConfig::new("gamma", &["gpt-x"]);
    cfg.slots = 2;
    cfg.ttft_ms = 400;
    let mock = start(cfg).await;
    let addr = mock.addr();
    let mut body = chat_body();
    body["stream"] = json!(true);
    let busy = tokio::spawn(async move { post(addr, "/v1/chat/completions", &body).await });
    let processing = || async {
        let slots = get(mock.addr(), "/slots").await.json();
        slots.as_array().unwrap().iter().map(|s| s["is_processing"] == true).collect::<Vec<bool>>()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while processing().await == [false, false] && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(processing().await, [true, false], "the stream holds one slot while it waits for its first token");
    busy.await.unwrap();
    let slots = get(mock.addr(), "/slots").await.json();
    assert!(slots.as_array().unwrap().iter().all(|s| s["is_processing"] == false));
}

#[tokio::test]
async fn streamed_tool_call_splits_arguments() {
    let mut cfg = MockConfig::new("gamma", &[]);
    cfg.tool_call = Some(ToolCallSpec::new("lookup", json!({ "query": "weather in Paris" })));
    let mock = start(cfg).await;
    let mut body = chat_body();
    body["tools"] = json!([{ "type": "function", "function": { "name": "lookup" } }]);
    body["stream"] = json!(true);
    let events = post(mock.addr(), "/v1/chat/completions", &body).await.sse();
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let calls: Vec<&Value> =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"].get("tool_calls")).map(|t| &t[0]).collect();
    assert!(calls.len() >= 3, "arguments should span several chunks: {calls:?}");
    assert_eq!(calls[0]["id"].as_str().map(|s| s.starts_with("call_")), Some(true));
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "lookup");
    let args: String = calls
        .iter()
        .map(|c| {
            assert_eq!(c["index"], 0);
            c["function"]["arguments"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&args).unwrap(), json!({ "query": "weather in Paris" }));
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");

    body["stream"] = json!(false);
    let v = post(mock.addr(), "/v1/chat/completions", &body).await.json();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    let args =
        choice["message"]["tool_calls"][0]["function"]["arguments"].as_str().expect("OpenAI arguments are a string");
    assert_eq!(serde_json::from_str::<Value>(args).unwrap(), json!({ "query": "weather in Paris" }));
}

#[tokio::test]
async fn reasoning_content_and_max_tokens() {
    let mut cfg = MockConfig::new("gamma", &[]);
    cfg.thinking = Some("Hmm.".into());
    cfg.reply_tokens = Some(50);
    let mock = start(cfg).await;
    let mut body = chat_body();
    body["max_tokens"] = json!(5);
    let v = post(mock.addr(), "/v1/chat/completions", &body).await.json();
    assert_eq!(v["choices"][0]["message"]["reasoning_content"], "Hmm.");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["choices"][0]["message"]["content"], "lorem ipsum dolor sit amet");
    body["stop"] = json!("dolor");
    let v = post(mock.addr(), "/v1/chat/completions", &body).await.json();
    assert_eq!(v["choices"][0]["message"]["content"], "lorem ipsum ");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn legacy_completions() {
    let mock = start(MockConfig::new("gamma", &["gpt-x"])).await;
    let body = json!({ "model": "gpt-x", "prompt": "Say hi", "stream": true,
                       "stream_options": { "include_usage": true } });
    let events = post(mock.addr(), "/v1/completions", &body).await.sse();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let text: String =
        chunks.iter().filter_map(|c| c["choices"].get(0)).map(|c| c["text"].as_str().unwrap().to_owned()).collect();
    assert_eq!(text, "Hello from gamma (gpt-x).");
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 4);

    let v = post(mock.addr(), "/v1/completions", &json!({ "model": "gpt-x", "prompt": "Say hi" })).await.json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], "Hello from gamma (gpt-x).");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 1);
}

#[tokio::test]
async fn embeddings_float_and_base64() {
    let mock = start(MockConfig::new("gamma", &["embed-x"])).await;
    let v = post(mock.addr(), "/v1/embeddings", &json!({ "model": "embed-x", "input": ["a", "b"] })).await.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "embed-x");
    assert_eq!(v["data"][1]["object"], "embedding");
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(v["usage"], json!({ "prompt_tokens": 2, "total_tokens": 2 }));

    let b =
        post(mock.addr(), "/v1/embeddings", &json!({ "model": "embed-x", "input": "a", "encoding_format": "base64" }))
            .await
            .json();
    let bytes = base64::engine::general_purpose::STANDARD.decode(b["data"][0]["embedding"].as_str().unwrap()).unwrap();
    let floats: Vec<f64> = bytes.chunks(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect();
    let plain: Vec<f64> = v["data"][0]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(floats, plain);

    // Same text, same vector as the Ollama endpoint.
    let o = post(mock.addr(), "/api/embed", &json!({ "model": "embed-x", "input": "a" })).await.json();
    assert_eq!(o["embeddings"][0], v["data"][0]["embedding"]);
}

#[tokio::test]
async fn models_and_errors() {
    let mock = start(MockConfig::new("gamma", &["gpt-x", "gpt-y"])).await;
    let v = get(mock.addr(), "/v1/models").await.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["object"], "model");
            assert!(m["created"].is_u64());
            assert!(m["owned_by"].is_string());
            m["id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(ids, ["gpt-x", "gpt-y"]);
    assert_eq!(get(mock.addr(), "/v1/models/gpt-y").await.json()["id"], "gpt-y");

    let mut body = chat_body();
    body["model"] = json!("nope");
    let resp = post(mock.addr(), "/v1/chat/completions", &body).await;
    assert_eq!(resp.status, 404);
    let err = &resp.json()["error"];
    assert!(err["message"].as_str().unwrap().contains("nope"));
    // llama.cpp's error shape: the status as `code`, no `param`.
    assert_eq!(err["type"], "not_found_error");
    assert!(err.get("param").is_none());
    assert_eq!(err["code"], 404);

    let resp =
        crate::client::send(mock.addr(), "POST", "/v1/chat/completions", None, &[("content-type", "application/json")])
            .await;
    assert_eq!(resp.status, 400);
    assert!(resp.json()["error"]["message"].is_string());
}
