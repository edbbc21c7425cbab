//! Unit tests of the Ollama translator: requests as the engines get them, answers as the clients read them.

use std::time::{Duration, UNIX_EPOCH};

use bytes::BytesMut;
use serde_json::{json, Value};

use super::*;
use crate::protocol::translate::Chunk;

fn config() -> Config {
    let yaml = r#"
model_list:
  - model_name: llama3
    litellm_params: {model: ollama_chat/llama3, api_base: "http://h1:11434"}
  - model_name: "qwen3:8b"
    litellm_params: {model: ollama_chat/qwen3:8b, api_base: "http://h1:11434"}
  - model_name: "tagged:latest"
    litellm_params: {model: openai/t, api_base: "http://h2:1/v1"}
router_settings:
  model_group_alias: {tools_fast: "qwen3:8b"}
"#;
    crate::config::load_str(yaml, &|_| None).unwrap().0
}

fn translate(route: Route, body: Value) -> Result<(Ollama, Value), Error> {
    let mut t = Ollama::new(route);
    let canonical = t.request(body.to_string().as_bytes(), &config())?;
    assert_eq!(canonical.op, route.operation());
    Ok((t, serde_json::from_slice(&canonical.body).unwrap()))
}

const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

#[test]
fn a_chat_request_becomes_an_openai_request_with_everything_it_asked_for() {
    let (_, out) = translate(
        Route::Chat,
        json!({
            "model": "tools_fast",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "what is here?", "images": [PNG]},
                {"role": "assistant", "content": "", "thinking": "look it up",
                 "tool_calls": [{"function": {"name": "lookup", "arguments": {"q": "x"}}},
                                {"function": {"name": "weather", "arguments": {"city": "Paris"}}}]},
                {"role": "tool", "tool_name": "weather", "content": "sunny"},
                {"role": "tool", "tool_name": "lookup", "content": "a cat"},
            ],
            "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
            "format": {"type": "object", "properties": {"a": {"type": "string"}}},
            "options": {"num_ctx": 16384, "num_predict": 64, "temperature": 0.2, "top_p": 0.9, "seed": 7,
                        "stop": ["END"], "top_k": 20},
            "keep_alive": "10m",
            "think": "high",
            "logprobs": true,
        }),
    )
    .unwrap();
    assert_eq!(out["model"], "tools_fast");
    assert_eq!(out["stream"], true, "Ollama streams when `stream` is absent");
    assert_eq!(out["stream_options"]["include_usage"], true);
    let m = &out["messages"];
    assert_eq!(m[0], json!({"role": "system", "content": "be brief"}));
    assert_eq!(m[1]["content"][0], json!({"type": "text", "text": "what is here?"}));
    assert_eq!(m[1]["content"][1]["image_url"]["url"], format!("data:image/png;base64,{PNG}"));
    let calls = &m[2]["tool_calls"];
    assert_eq!(m[2]["content"], Value::Null, "a pure tool-call turn has no content");
    assert_eq!(m[2]["reasoning_content"], "look it up");
    assert_eq!(calls[0]["function"], json!({"name": "lookup", "arguments": "{\"q\":\"x\"}"}));
    assert_eq!(calls[0]["type"], "function");
    // Each result answers the call of its function's name, whatever the order.
    assert_eq!(m[3]["role"], "tool");
    assert_eq!(m[3]["tool_call_id"], calls[1]["id"]);
    assert_eq!(m[4]["tool_call_id"], calls[0]["id"]);
    assert_eq!(m[4]["content"], "a cat");
    assert_eq!(out["tools"][0]["function"]["name"], "lookup");
    assert_eq!(out["response_format"]["type"], "json_schema");
    assert_eq!(out["response_format"]["json_schema"]["schema"]["properties"]["a"]["type"], "string");
    assert_eq!(out["options"]["num_ctx"], 16384, "options travel as sent for the Ollama provider");
    assert_eq!(out["max_tokens"], 64);
    assert_eq!(out["temperature"], 0.2);
    assert_eq!(out["top_p"], 0.9);
    assert_eq!(out["seed"], 7);
    assert_eq!(out["stop"], json!(["END"]));
    assert_eq!(out["top_k"], 20);
    assert_eq!(out["keep_alive"], "10m");
    assert_eq!(out["think"], "high");
    assert_eq!(out["reasoning_effort"], "high");
    assert_eq!(out["logprobs"], true);
    assert!(out.get("format").is_none(), "format went into response_format");
}

#[test]
fn json_format_no_stream_and_boolean_think() {
    let (_, out) = translate(
        Route::Chat,
        json!({"model": "llama3", "messages": [{"role": "user", "content": "hi"}], "format": "json",
               "stream": false, "think": false, "options": {"num_predict": -1}}),
    )
    .unwrap();
    assert_eq!(out["response_format"], json!({"type": "json_object"}));
    assert_eq!(out["stream"], false);
    assert!(out.get("stream_options").is_none());
    assert_eq!(out["think"], false);
    assert!(out.get("reasoning_effort").is_none());
    assert!(out.get("max_tokens").is_none(), "-1 is no limit");
}

#[test]
fn tool_results_with_ids_and_unknown_calls() {
    let (_, out) = translate(
        Route::Chat,
        json!({"model": "llama3", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "1"},
            {"role": "tool", "tool_name": "g", "content": "2"},
        ]}),
    )
    .unwrap();
    let m = &out["messages"];
    assert_eq!(m[1]["tool_calls"][0]["id"], "c1");
    assert_eq!(m[1]["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
    assert_eq!(m[2]["tool_call_id"], "c1");
    assert_eq!(m[3]["name"], "g", "a result for no call keeps its function name");
    assert!(m[3]["tool_call_id"].as_str().is_some_and(|id| !id.is_empty()));
}

#[test]
fn names_with_and_without_latest_route_and_unknown_ones_are_404() {
    let (t, out) =
        translate(Route::Chat, json!({"model": "llama3:latest", "messages": [{"role": "user", "content": "x"}]}))
            .unwrap();
    assert_eq!(out["model"], "llama3", "the name that routes");
    assert_eq!(t.model, "llama3:latest", "answers repeat the client's name");
    let (_, out) =
        translate(Route::Chat, json!({"model": "tagged", "messages": [{"role": "user", "content": "x"}]})).unwrap();
    assert_eq!(out["model"], "tagged:latest");
    let (_, out) = translate(Route::Embed, json!({"model": "tools_fast:latest", "input": "x"})).unwrap();
    assert_eq!(out["model"], "tools_fast");
    let err =
        translate(Route::Chat, json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]})).unwrap_err();
    assert_eq!(err.status_in(Dialect::Ollama), http::StatusCode::NOT_FOUND);
    assert_eq!(err.body_in(Dialect::Ollama), json!({"error": "model \"nope\" not found, try pulling it first"}));
    let err = translate(Route::Chat, json!({"model": "nope", "messages": []})).unwrap_err();
    assert_eq!(err.status_in(Dialect::Ollama), http::StatusCode::NOT_FOUND, "the model is checked first");
    let err = translate(Route::Chat, json!({"model": "qwen3:4b", "messages": [{"role": "user", "content": "x"}]}))
        .unwrap_err();
    assert_eq!(err.status_in(Dialect::Ollama), http::StatusCode::NOT_FOUND, "another tag is another model");
    assert_eq!(listed_name("llama3"), "llama3:latest");
    assert_eq!(listed_name("qwen3:8b"), "qwen3:8b");
    assert_eq!(listed_name("localhost:5000/m"), "localhost:5000/m:latest");
}

#[test]
fn bad_input_is_a_400_naming_the_field() {
    let cases = [
        (json!({"messages": [{"role": "user", "content": "x"}]}), "model"),
        (json!({"model": "llama3", "messages": []}), "messages"),
        (json!({"model": "llama3", "messages": [{"role": "robot", "content": "x"}]}), "messages[0].role"),
        (json!({"model": "llama3", "messages": [{"role": "user", "content": "x"}], "format": 3}), "format"),
        (json!({"model": "llama3", "messages": [{"role": "user", "content": "x"}], "think": "max"}), "think"),
        (
            json!({"model": "llama3", "messages": [{"role": "user", "content": "x"}], "options": {"temperature": "hot"}}),
            "options.temperature",
        ),
        (
            json!({"model": "llama3", "messages": [{"role": "user", "content": "x", "images": ["!!!"]}]}),
            "messages[0].images[0]",
        ),
    ];
    for (body, param) in cases {
        let err = translate(Route::Chat, body.clone()).unwrap_err();
        assert_eq!(err.status_in(Dialect::Ollama), http::StatusCode::BAD_REQUEST, "{body}");
        let Error::InvalidRequest { param: Some(p), .. } = &err else { panic!("{body}: {err:?}") };
        assert_eq!(p, param, "{body}");
    }
}

#[test]
fn generate_is_a_system_and_a_user_message_with_images() {
    let jpeg = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgH";
    let (_, out) = translate(
        Route::Generate,
        json!({"model": "llama3", "prompt": "describe", "system": "you are a camera", "images": [jpeg],
               "suffix": "end", "raw": false, "context": [1, 2, 3], "stream": false, "keep_alive": 0}),
    )
    .unwrap();
    let m = &out["messages"];
    assert_eq!(m[0], json!({"role": "system", "content": "you are a camera"}));
    assert_eq!(m[1]["role"], "user");
    assert_eq!(m[1]["content"][0]["text"], "describe");
    assert_eq!(m[1]["content"][1]["image_url"]["url"], format!("data:image/jpeg;base64,{jpeg}"));
    assert_eq!(out["suffix"], "end", "for ollama/ deployments, which honour it");
    assert_eq!(out["raw"], false);
    assert_eq!(out["keep_alive"], 0);
    assert!(out.get("context").is_none());
    assert!(out.get("system").is_none());
    let err = translate(Route::Generate, json!({"model": "llama3"})).unwrap_err();
    assert!(err.to_string().contains("does not preload"), "{err}");
}

#[test]
fn embed_requests() {
    let (_, out) = translate(
        Route::Embed,
        json!({"model": "llama3", "input": ["a", "b"], "truncate": true, "options": {"num_ctx": 512}, "dimensions": 4}),
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"model": "llama3", "input": ["a", "b"], "dimensions": 4, "truncate": true, "options": {"num_ctx": 512}})
    );
    let (_, out) =
        translate(Route::Embeddings, json!({"model": "llama3", "prompt": "hello", "keep_alive": "1m"})).unwrap();
    assert_eq!(out, json!({"model": "llama3", "input": "hello", "keep_alive": "1m"}));
    assert!(translate(Route::Embed, json!({"model": "llama3", "input": [1]})).is_err());
}

#[test]
fn images_are_sniffed() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let url = |b: &[u8]| request::sniff(&base64::engine::general_purpose::STANDARD.decode(b64(b)).unwrap());
    assert_eq!(url(b"GIF89a......"), "image/gif");
    assert_eq!(url(b"RIFF\0\0\0\0WEBPVP8 "), "image/webp");
    assert_eq!(url(b"\xff\xd8\xff\xe0\0\x10JFIF"), "image/jpeg");
    assert_eq!(url(b"\x89PNG\r\n\x1a\n"), "image/png");
}

fn answer(route: Route, model: &str, openai: Value) -> Value {
    let mut t = Ollama::new(route);
    t.model = model.into();
    serde_json::from_slice(&t.response(openai.to_string().as_bytes()).unwrap()).unwrap()
}

#[test]
fn a_whole_chat_answer_in_ollamas_shape() {
    let out = answer(
        Route::Chat,
        "tools_fast:latest",
        json!({"id": "x", "model": "engine-name", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null, "reasoning_content": "hmm",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}}),
    );
    assert_eq!(out["model"], "tools_fast:latest");
    assert_eq!(out["message"]["role"], "assistant");
    assert_eq!(out["message"]["content"], "");
    assert_eq!(out["message"]["thinking"], "hmm");
    assert_eq!(out["message"]["tool_calls"][0]["function"], json!({"index": 0, "name": "f", "arguments": {"a": 1}}));
    assert_eq!(out["message"]["tool_calls"][0]["id"], "call_1");
    assert_eq!(out["done"], true);
    assert_eq!(out["done_reason"], "stop");
    assert_eq!(out["prompt_eval_count"], 11);
    assert_eq!(out["eval_count"], 5);
    assert!(out["total_duration"].as_u64().is_some_and(|d| d > 0));
    assert_eq!(out["total_duration"], out["eval_duration"]);
    assert_eq!(out["load_duration"], 0);
    assert!(out["created_at"].as_str().is_some_and(|t| t.ends_with('Z') && t.contains('T')));
    assert!(out.get("context").is_none());
}

#[test]
fn a_whole_generate_answer_in_ollamas_shape() {
    let out = answer(
        Route::Generate,
        "llava",
        json!({"choices": [{"finish_reason": "length", "message": {"content": "a cat"}}],
               "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
    );
    assert_eq!(out["response"], "a cat");
    assert_eq!(out["done_reason"], "length");
    assert_eq!(out["done"], true);
    assert!(out.get("thinking").is_none());
    assert!(out.get("message").is_none());
}

#[test]
fn embeddings_answers() {
    let openai = json!({"data": [{"index": 1, "embedding": [0.5, 0.25]}, {"index": 0, "embedding": [0.125, 1e-7]}],
                        "usage": {"prompt_tokens": 4, "total_tokens": 4}});
    let out = answer(Route::Embed, "e", openai.clone());
    assert_eq!(out["model"], "e");
    assert_eq!(out["embeddings"], json!([[0.125, 1e-7], [0.5, 0.25]]), "in input order");
    assert_eq!(out["prompt_eval_count"], 4);
    let out = answer(Route::Embeddings, "e", openai);
    assert_eq!(out, json!({"embedding": [0.125, 1e-7]}));
    let mut t = Ollama::new(Route::Embed);
    assert!(t.response(br#"{"data":[{"index":0,"embedding":"AAAA"}]}"#).is_err());
}

fn chunk(v: Value) -> Chunk {
    serde_json::from_value(v).unwrap()
}

fn lines(out: &BytesMut) -> Vec<Value> {
    std::str::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn a_chat_stream_is_ndjson_with_tool_calls_in_a_line_of_their_own() {
    let mut t = Ollama::new(Route::Chat);
    t.request(br#"{"model":"llama3:latest","messages":[{"role":"user","content":"x"}]}"#, &config()).unwrap();
    let mut enc = t.stream();
    let mut out = BytesMut::new();
    let script = [
        json!({"choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "think"}}]}),
        json!({"choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
        json!({"choices": [{"index": 0, "delta": {"content": "lo"}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{\"a\""}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "id": "c2", "function": {"name": "g", "arguments": ""}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        json!({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}}),
    ];
    for c in script {
        enc.chunk(chunk(c), &mut out).unwrap();
    }
    enc.finish(&mut out).unwrap();
    let l = lines(&out);
    assert_eq!(l.len(), 5, "{l:#?}");
    assert_eq!(l[0]["message"], json!({"role": "assistant", "content": "", "thinking": "think"}));
    assert_eq!(l[0]["done"], false);
    assert_eq!(l[0]["model"], "llama3:latest");
    assert_eq!(l[1]["message"]["content"], "Hel");
    assert_eq!(l[2]["message"]["content"], "lo");
    let calls = &l[3]["message"]["tool_calls"];
    assert_eq!(calls[0]["function"], json!({"index": 0, "name": "f", "arguments": {"a": 1}}));
    assert_eq!(calls[0]["id"], "c1");
    assert_eq!(calls[1]["function"], json!({"index": 1, "name": "g", "arguments": {}}));
    assert_eq!(l[3]["done"], false);
    let last = &l[4];
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["message"]["content"], "");
    assert_eq!((last["prompt_eval_count"].as_u64(), last["eval_count"].as_u64()), (Some(7), Some(9)));
    let total = last["total_duration"].as_u64().unwrap();
    let parts = last["prompt_eval_duration"].as_u64().unwrap() + last["eval_duration"].as_u64().unwrap();
    assert_eq!(total, parts);
}

#[test]
fn a_generate_stream_and_a_failing_one() {
    let mut t = Ollama::new(Route::Generate);
    t.request(br#"{"model":"llama3","prompt":"x"}"#, &config()).unwrap();
    let mut enc = t.stream();
    let mut out = BytesMut::new();
    enc.chunk(chunk(json!({"choices": [{"delta": {"reasoning": "r"}}]})), &mut out).unwrap();
    enc.chunk(chunk(json!({"choices": [{"delta": {"content": "a cat"}, "finish_reason": "length"}]})), &mut out)
        .unwrap();
    enc.finish(&mut out).unwrap();
    let l = lines(&out);
    assert_eq!(l.len(), 3);
    assert_eq!((l[0]["response"].as_str(), l[0]["thinking"].as_str()), (Some(""), Some("r")));
    assert_eq!(l[1]["response"], "a cat");
    assert_eq!(l[2]["response"], "");
    assert_eq!(l[2]["done_reason"], "length");
    assert_eq!(l[2]["done"], true);

    let mut t = Ollama::new(Route::Chat);
    let mut enc = t.stream();
    let mut out = BytesMut::new();
    enc.chunk(chunk(json!({"choices": [{"delta": {"content": "par"}}]})), &mut out).unwrap();
    enc.fail(&Error::Connect("the answer broke off".into()), &mut out);
    let l = lines(&out);
    assert_eq!(l[1], json!({"error": "the answer broke off"}));
}

#[test]
fn timestamps_are_rfc3339() {
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    let t = UNIX_EPOCH + Duration::from_micros(1_709_251_199_123_456);
    assert_eq!(rfc3339(t), "2024-02-29T23:59:59.123456Z");
}
