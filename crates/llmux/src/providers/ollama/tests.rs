//! Translation tests: request bodies, answers, streams fed in awkward splits, embeddings, errors.

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

use super::Ollama;
use crate::config::{Deployment, EngineTarget, Secret, Target};
use crate::error::Error;
use crate::protocol::openai::{Operation, RequestHead};
use crate::providers::{engine, Call, Provider, UpstreamRequest};

const CHAT: Ollama = Ollama { chat: true };
const GENERATE: Ollama = Ollama { chat: false };

struct Dep {
    upstream: &'static str,
    extra: Value,
    keep_alive: Option<Value>,
    key: Option<&'static str>,
}

impl Default for Dep {
    fn default() -> Self {
        Dep { upstream: "qwen3:8b", extra: json!({}), keep_alive: None, key: None }
    }
}

fn deployment(chat: bool, dep: Dep) -> Deployment {
    let prefix = if chat { "ollama_chat" } else { "ollama" };
    let extra_params = match dep.extra {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    Deployment {
        id: "dep-1".to_owned(),
        index: 0,
        model_name: "local".to_owned(),
        model: format!("{prefix}/{}", dep.upstream),
        target: Target::Engine(EngineTarget {
            engine: engine(prefix).unwrap(),
            upstream_model: dep.upstream.to_owned(),
            api_base: "http://ollama:11434".to_owned(),
            api_key: dep.key.map(|k| Secret::new(k.to_owned())),
            basic_auth: None,
            extra_headers: Vec::new(),
            keep_alive: dep.keep_alive,
            extra_params,
            wire: Default::default(),
        }),
        order: None,
        weight: None,
        rpm: None,
        tpm: None,
        timeout: None,
        stream_timeout: None,
        num_retries: None,
        cooldown_time: None,
        allowed_fails: None,
        allowed_fails_policy: None,
        max_parallel_requests: None,
        cost_per_token: None,
        max_input_tokens: None,
        host: None,
        health_check_timeout: None,
        access_groups: Vec::new(),
        disable_background_health_check: false,
        health_check: None,
        mode: None,
        model_info: Map::new(),
        public_params: Map::new(),
    }
}

/// Runs `f` with a call built from `body`.
fn with_call<T>(op: Operation, chat: bool, dep: Dep, body: &Value, f: impl FnOnce(&Call<'_>) -> T) -> T {
    let deployment = deployment(chat, dep);
    let bytes = serde_json::to_vec(body).unwrap();
    let head = RequestHead::parse(&bytes, op).unwrap();
    let model = deployment.engine().map(|e| e.upstream_model.clone()).unwrap_or_default();
    let call = Call { op, deployment: &deployment, model: &model, body: &bytes, head: &head, native: None };
    f(&call)
}

fn build(op: Operation, chat: bool, dep: Dep, body: Value) -> Result<(UpstreamRequest, Value), Error> {
    with_call(op, chat, dep, &body, |call| {
        let req = Ollama { chat }.build_request(call)?;
        let json = serde_json::from_slice(&req.body).unwrap();
        Ok((req, json))
    })
}

fn chat_body(extra: Value) -> Value {
    let mut body = json!({"model": "local", "messages": [{"role": "user", "content": "hi"}]});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

fn convert(op: Operation, chat: bool, request: Value, answer: Value) -> Value {
    with_call(op, chat, Dep::default(), &request, |call| {
        let out = Ollama { chat }.convert_response(call, Bytes::from(answer.to_string())).unwrap();
        serde_json::from_slice(&out.body).unwrap()
    })
}

// ----- requests: /api/chat -----

#[test]
fn chat_request_maps_sampling_params_into_options() {
    let (req, body) = build(
        Operation::Chat,
        true,
        Dep { extra: json!({"num_ctx": 8192, "top_k": 20, "temperature": 0.1}), ..Dep::default() },
        chat_body(json!({
            "max_tokens": 50, "temperature": 0.7, "top_p": 0.9, "seed": 42, "stop": "END",
            "frequency_penalty": 1.1, "presence_penalty": 0.5, "top_k": 40, "min_p": 0.05,
            "user": "someone", "n": 1, "stream": false
        })),
    )
    .unwrap();
    assert_eq!(req.uri, "http://ollama:11434/api/chat");
    assert_eq!(req.headers.get("content-type").unwrap(), "application/json");
    assert_eq!(req.headers.get("host").unwrap(), "ollama:11434");
    assert!(req.headers.get("authorization").is_none());
    assert_eq!(body["model"], "qwen3:8b");
    assert_eq!(body["stream"], false);
    assert_eq!(
        body["options"],
        json!({
            "num_ctx": 8192, "top_k": 40, "temperature": 0.7, "num_predict": 50, "top_p": 0.9, "seed": 42,
            "stop": ["END"], "repeat_penalty": 1.1, "presence_penalty": 0.5, "min_p": 0.05
        })
    );
    assert!(body.get("user").is_none() && body["options"].get("user").is_none());
    assert!(body.get("format").is_none() && body.get("think").is_none() && body.get("tools").is_none());
}

#[test]
fn chat_request_stream_flag_key_and_max_completion_tokens() {
    let (req, body) = build(
        Operation::Chat,
        true,
        Dep { key: Some("sk-test"), ..Dep::default() },
        chat_body(json!({"stream": true, "max_tokens": 10, "max_completion_tokens": 20, "stop": ["a", "b"]})),
    )
    .unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(body["options"]["num_predict"], 20);
    assert_eq!(body["options"]["stop"], json!(["a", "b"]));
    assert_eq!(req.headers.get("authorization").unwrap(), "Bearer sk-test");
    assert!(req.headers.get("authorization").unwrap().is_sensitive());
}

#[test]
fn chat_request_explicit_ollama_option_beats_mapped_one_and_options_object_merges() {
    let (_, body) = build(
        Operation::Chat,
        true,
        Dep { extra: json!({"options": {"num_gpu": 1}, "mirostat": 2}), ..Dep::default() },
        chat_body(json!({"frequency_penalty": 0.3, "repeat_penalty": 1.2, "options": {"num_thread": 4}})),
    )
    .unwrap();
    assert_eq!(body["options"]["repeat_penalty"], 1.2);
    assert_eq!(body["options"]["num_gpu"], 1);
    assert_eq!(body["options"]["mirostat"], 2);
    assert_eq!(body["options"]["num_thread"], 4);
}

#[test]
fn chat_request_response_format() {
    let (_, body) =
        build(Operation::Chat, true, Dep::default(), chat_body(json!({"response_format": {"type": "json_object"}})))
            .unwrap();
    assert_eq!(body["format"], "json");

    let schema = json!({"type": "object", "properties": {"age": {"type": "integer"}}});
    let (_, body) = build(
        Operation::Chat,
        true,
        Dep::default(),
        chat_body(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}})),
    )
    .unwrap();
    assert_eq!(body["format"], schema);

    let (_, body) =
        build(Operation::Chat, true, Dep::default(), chat_body(json!({"response_format": {"type": "text"}}))).unwrap();
    assert!(body.get("format").is_none());

    let err = build(Operation::Chat, true, Dep::default(), chat_body(json!({"response_format": {"type": "xml"}})))
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn chat_request_think_from_reasoning_effort_and_think_field() {
    let think = |upstream: &'static str, extra: Value| {
        let (_, body) = build(Operation::Chat, true, Dep { upstream, ..Dep::default() }, chat_body(extra)).unwrap();
        body.get("think").cloned()
    };
    assert_eq!(think("qwen3:8b", json!({"reasoning_effort": "low"})), Some(json!(true)));
    assert_eq!(think("qwen3:8b", json!({"reasoning_effort": "high"})), Some(json!(true)));
    assert_eq!(think("qwen3:8b", json!({"reasoning_effort": "none"})), Some(json!(false)));
    assert_eq!(think("gpt-oss:20b", json!({"reasoning_effort": "high"})), Some(json!("high")));
    assert_eq!(think("qwen3:8b", json!({"think": false, "reasoning_effort": "high"})), Some(json!(false)));
    assert_eq!(think("gpt-oss:20b", json!({"think": "medium"})), Some(json!("medium")));
    assert_eq!(think("qwen3:8b", json!({})), None);
}

#[test]
fn clines_anthropic_style_thinking_turns_think_on_and_off() {
    let body = |upstream: &'static str, extra: Value| {
        let (_, body) = build(Operation::Chat, true, Dep { upstream, ..Dep::default() }, chat_body(extra)).unwrap();
        body
    };
    let on = json!({"thinking": {"type": "enabled", "budget_tokens": 2048}});
    assert_eq!(body("qwen3:8b", on.clone())["think"], json!(true));
    assert!(body("qwen3:8b", on)["options"].get("thinking").is_none(), "not an Ollama option");
    let big = json!({"thinking": {"type": "enabled", "budget_tokens": 32000}});
    assert_eq!(body("gpt-oss:20b", big)["think"], json!("high"));
    let off = json!({"thinking": {"type": "disabled"}});
    assert_eq!(body("qwen3:8b", off)["think"], json!(false));
    let both = json!({"thinking": {"type": "enabled"}, "reasoning_effort": "none"});
    assert_eq!(body("qwen3:8b", both)["think"], json!(false), "reasoning_effort is the OpenAI field: it wins");
}

#[test]
fn chat_request_keep_alive_request_over_deployment() {
    let dep = || Dep { keep_alive: Some(json!("30m")), ..Dep::default() };
    let (_, body) = build(Operation::Chat, true, dep(), chat_body(json!({}))).unwrap();
    assert_eq!(body["keep_alive"], "30m");
    let (_, body) = build(Operation::Chat, true, dep(), chat_body(json!({"keep_alive": -1}))).unwrap();
    assert_eq!(body["keep_alive"], -1);
    assert!(body["options"].get("keep_alive").is_none());
}

#[test]
fn chat_request_tools_pass_through_and_tool_choice_is_dropped() {
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    let (_, body) =
        build(Operation::Chat, true, Dep::default(), chat_body(json!({"tools": tools, "tool_choice": "auto"})))
            .unwrap();
    assert_eq!(body["tools"], tools);
    assert!(body.get("tool_choice").is_none());

    let (_, body) =
        build(Operation::Chat, true, Dep::default(), chat_body(json!({"tools": tools, "tool_choice": "none"})))
            .unwrap();
    assert!(body.get("tools").is_none());

    let (_, body) = build(
        Operation::Chat,
        true,
        Dep::default(),
        chat_body(json!({"functions": [{"name": "f", "parameters": {"type": "object"}}]})),
    )
    .unwrap();
    assert_eq!(
        body["tools"],
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
    );
}

#[test]
fn chat_request_messages() {
    let (_, body) = build(
        Operation::Chat,
        true,
        Dep::default(),
        json!({"model": "local", "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "what is"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"}},
                {"type": "text", "text": "in these?"},
                {"type": "image_url", "image_url": "https://example.com/cat.jpg"}
            ]},
            {"role": "assistant", "content": null, "reasoning_content": "let me look", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\": \"cat\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "broken", "arguments": "{not json"}},
                {"id": "call_3", "type": "function", "function": {"name": "empty", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
            {"role": "tool", "tool_call_id": "unknown", "content": "?"}
        ]}),
    )
    .unwrap();
    let m = &body["messages"];
    assert_eq!(m[0], json!({"role": "system", "content": "be brief"}));
    assert_eq!(
        m[1],
        json!({"role": "user", "content": "what is\nin these?", "images": ["iVBORw0KGgo=", "https://example.com/cat.jpg"]})
    );
    assert_eq!(m[2]["role"], "assistant");
    assert_eq!(m[2]["content"], "");
    assert_eq!(m[2]["thinking"], "let me look");
    assert_eq!(
        m[2]["tool_calls"][0],
        json!({"id": "call_1", "function": {"name": "lookup", "arguments": {"q": "cat"}}})
    );
    assert_eq!(m[2]["tool_calls"][1]["function"]["arguments"], "{not json");
    assert_eq!(m[2]["tool_calls"][2]["function"]["arguments"], json!({}));
    assert_eq!(m[3], json!({"role": "tool", "content": "a cat", "tool_name": "lookup", "tool_call_id": "call_1"}));
    assert!(m[4].get("tool_name").is_none());
}

#[test]
fn chat_request_rejects_unsupported_content_and_bad_data_urls() {
    let err = build(
        Operation::Chat,
        true,
        Dep::default(),
        json!({"model": "local", "messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "xx", "format": "wav"}}
        ]}]}),
    )
    .unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    assert!(err.to_string().contains("input_audio"), "{err}");

    let err = build(
        Operation::Chat,
        true,
        Dep::default(),
        json!({"model": "local", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/svg+xml,<svg/>"}}
        ]}]}),
    )
    .unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn base_url_already_ending_with_the_route_is_kept() {
    let deployment = {
        let mut d = deployment(true, Dep::default());
        if let Target::Engine(e) = &mut d.target {
            e.api_base = "http://ollama:11434/api/chat".to_owned();
        }
        d
    };
    let body = serde_json::to_vec(&chat_body(json!({}))).unwrap();
    let head = RequestHead::parse(&body, Operation::Chat).unwrap();
    let model = deployment.engine().map(|e| e.upstream_model.clone()).unwrap_or_default();
    let call =
        Call { op: Operation::Chat, deployment: &deployment, model: &model, body: &body, head: &head, native: None };
    assert_eq!(CHAT.build_request(&call).unwrap().uri, "http://ollama:11434/api/chat");
}

// ----- requests: /api/generate -----

#[test]
fn generate_request_flattens_messages_into_a_prompt() {
    let (req, body) = build(
        Operation::Chat,
        false,
        Dep { keep_alive: Some(json!("5m")), extra: json!({"num_ctx": 4096}), ..Dep::default() },
        json!({"model": "local", "temperature": 0.2, "messages": [
            {"role": "system", "content": "sys one"},
            {"role": "developer", "content": "sys two"},
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}
            ]},
            {"role": "assistant", "content": "calling", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}
            ]},
            {"role": "assistant", "content": "more"},
            {"role": "tool", "tool_call_id": "call_1", "content": "result"},
            {"role": "user", "content": "thanks"}
        ]}),
    )
    .unwrap();
    assert_eq!(req.uri, "http://ollama:11434/api/generate");
    assert_eq!(
        body["prompt"],
        "### System:\nsys one\nsys two\n\n### User:\nlook\n\n### Assistant:\ncalling\nTool Calls:\n\
         {\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":{\"a\":1}}}\nmore\n\n\
         ### User:\nresult\nthanks\n\n"
    );
    assert_eq!(body["images"], json!(["/9j/4AAQ"]));
    assert_eq!(body["options"], json!({"num_ctx": 4096, "temperature": 0.2}));
    assert_eq!(body["keep_alive"], "5m");
    assert_eq!(body["stream"], false);
    assert!(body.get("messages").is_none());
}

#[test]
fn generate_request_refuses_tools_unless_tool_choice_none() {
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let err = build(Operation::Chat, false, Dep::default(), chat_body(json!({"tools": tools}))).unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    assert!(err.to_string().contains("ollama_chat/"), "{err}");

    let (_, body) =
        build(Operation::Chat, false, Dep::default(), chat_body(json!({"tools": tools, "tool_choice": "none"})))
            .unwrap();
    assert!(body.get("tools").is_none());
    assert_eq!(body["prompt"], "### User:\nhi\n\n");
}

#[test]
fn generate_request_format_think_and_system_lift() {
    let (_, body) = build(
        Operation::Chat,
        false,
        Dep { extra: json!({"system": "You are terse.", "top_k": 10}), ..Dep::default() },
        chat_body(json!({"response_format": {"type": "json_object"}, "reasoning_effort": "medium"})),
    )
    .unwrap();
    assert_eq!(body["format"], "json");
    assert_eq!(body["think"], true);
    assert_eq!(body["system"], "You are terse.");
    assert_eq!(body["options"], json!({"top_k": 10}));
}

#[test]
fn completion_request_sends_the_raw_prompt() {
    for chat in [false, true] {
        let (req, body) = build(
            Operation::Completion,
            chat,
            Dep::default(),
            json!({"model": "local", "prompt": "def f(", "suffix": "return x", "max_tokens": 16, "stream": true,
                   "frequency_penalty": 1.05}),
        )
        .unwrap();
        assert_eq!(req.uri, "http://ollama:11434/api/generate");
        assert_eq!(body["prompt"], "def f(");
        assert_eq!(body["suffix"], "return x");
        assert_eq!(body["stream"], true);
        assert_eq!(body["options"], json!({"num_predict": 16, "repeat_penalty": 1.05}));
    }
    let (_, body) =
        build(Operation::Completion, false, Dep::default(), json!({"model": "local", "prompt": ["only one"]})).unwrap();
    assert_eq!(body["prompt"], "only one");

    for prompt in [json!(["a", "b"]), json!([]), json!([[1, 2, 3]])] {
        let err = build(Operation::Completion, false, Dep::default(), json!({"model": "local", "prompt": prompt}))
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }
}

// ----- embeddings -----

#[test]
fn embeddings_request_for_both_prefixes() {
    for chat in [true, false] {
        let (req, body) = build(
            Operation::Embeddings,
            chat,
            Dep {
                upstream: "embeddinggemma",
                keep_alive: Some(json!("1h")),
                extra: json!({"num_ctx": 2048}),
                ..Dep::default()
            },
            json!({"model": "embed", "input": "hello", "dimensions": 256, "truncate": false, "encoding_format": "float"}),
        )
        .unwrap();
        assert_eq!(req.uri, "http://ollama:11434/api/embed");
        assert_eq!(
            body,
            json!({"model": "embeddinggemma", "input": ["hello"], "dimensions": 256, "truncate": false,
                   "keep_alive": "1h", "options": {"num_ctx": 2048}})
        );
    }
    let (_, body) =
        build(Operation::Embeddings, true, Dep::default(), json!({"model": "embed", "input": ["a", "b"]})).unwrap();
    assert_eq!(body, json!({"model": "qwen3:8b", "input": ["a", "b"]}));
    let err = build(Operation::Embeddings, true, Dep::default(), json!({"model": "embed", "input": []})).unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn embeddings_response_floats_keep_the_engine_digits() {
    let answer =
        r#"{"model":"embeddinggemma","embeddings":[[0.010071029,-0.0017594862],[0.5,1e-7]],"prompt_eval_count":8}"#;
    let request = json!({"model": "embed", "input": ["a", "b"]});
    let out = with_call(Operation::Embeddings, true, Dep::default(), &request, |call| {
        CHAT.convert_response(call, Bytes::from_static(answer.as_bytes())).unwrap().body
    });
    let text = std::str::from_utf8(&out).unwrap();
    assert!(text.contains("[0.010071029,-0.0017594862]"), "{text}");
    let json: Value = serde_json::from_str(text).unwrap();
    assert_eq!(json["object"], "list");
    assert_eq!(json["model"], "embed");
    assert_eq!(json["data"][1]["object"], "embedding");
    assert_eq!(json["data"][1]["index"], 1);
    assert_eq!(json["usage"], json!({"prompt_tokens": 8, "total_tokens": 8}));
}

#[test]
fn embeddings_response_base64() {
    let answer = json!({"embeddings": [[1.0, -2.5, 0.25]]});
    let json = convert(
        Operation::Embeddings,
        false,
        json!({"model": "embed", "input": "a", "encoding_format": "base64"}),
        answer,
    );
    let encoded = json["data"][0]["embedding"].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
    let floats: Vec<f32> = bytes.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(floats, vec![1.0, -2.5, 0.25]);
    assert_eq!(json["usage"]["prompt_tokens"], 0);
}

// ----- non-streamed answers -----

#[test]
fn chat_response_with_tool_calls() {
    let json = convert(
        Operation::Chat,
        true,
        chat_body(json!({})),
        json!({"model": "qwen3:8b", "message": {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"id": "abc", "function": {"name": "noop", "arguments": {}}}
        ]}, "done": true, "done_reason": "stop", "prompt_eval_count": 12, "eval_count": 7}),
    );
    assert!(json["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(json["object"], "chat.completion");
    assert_eq!(json["model"], "local");
    let choice = &json["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(choice["message"].get("content").is_none_or(Value::is_null));
    let calls = &choice["message"]["tool_calls"];
    assert!(calls[0]["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"], json!({"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}));
    assert_eq!(calls[1]["id"], "abc");
    assert_eq!(calls[1]["function"]["arguments"], "{}");
    assert_eq!(json["usage"], json!({"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}));
}

#[test]
fn chat_response_thinking_field_and_think_tags() {
    let json = convert(
        Operation::Chat,
        true,
        chat_body(json!({})),
        json!({"message": {"role": "assistant", "content": "Paris.", "thinking": "capital of France"},
               "done": true, "done_reason": "length"}),
    );
    let choice = &json["choices"][0];
    assert_eq!(choice["message"]["content"], "Paris.");
    assert_eq!(choice["message"]["reasoning_content"], "capital of France");
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(json["usage"], json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}));

    let json = convert(
        Operation::Chat,
        true,
        chat_body(json!({})),
        json!({"message": {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nAnswer"}, "done": true}),
    );
    assert_eq!(json["choices"][0]["message"]["content"], "Answer");
    assert_eq!(json["choices"][0]["message"]["reasoning_content"], "hmm");
    assert_eq!(json["choices"][0]["finish_reason"], "stop");

    let json = convert(
        Operation::Chat,
        true,
        chat_body(json!({})),
        json!({"message": {"role": "assistant", "content": "no tags <think>here</think>"}, "done": true}),
    );
    assert_eq!(json["choices"][0]["message"]["content"], "no tags <think>here</think>");
    assert!(json["choices"][0]["message"].get("reasoning_content").is_none());
}

#[test]
fn generate_response_for_chat_and_completion() {
    let answer = json!({"response": "<think>x</think>Hi", "done": true, "done_reason": "stop",
                        "prompt_eval_count": 3, "eval_count": 2});
    let json = convert(Operation::Chat, false, chat_body(json!({})), answer.clone());
    assert_eq!(json["object"], "chat.completion");
    assert_eq!(json["choices"][0]["message"]["content"], "Hi");
    assert_eq!(json["choices"][0]["message"]["reasoning_content"], "x");
    assert_eq!(json["usage"]["total_tokens"], 5);

    let json = convert(Operation::Completion, false, json!({"model": "local", "prompt": "p"}), answer);
    assert!(json["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(json["object"], "text_completion");
    assert_eq!(json["model"], "local");
    assert_eq!(
        json["choices"],
        json!([{"text": "<think>x</think>Hi", "index": 0, "logprobs": null, "finish_reason": "stop"}])
    );
    assert_eq!(json["usage"], json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}));
}

#[test]
fn unreadable_or_failed_answers_are_errors() {
    let err = with_call(Operation::Chat, true, Dep::default(), &chat_body(json!({})), |call| {
        CHAT.convert_response(call, Bytes::from_static(b"<html>")).unwrap_err()
    });
    assert!(matches!(err, Error::BadUpstreamResponse(_)));
    let err = with_call(Operation::Chat, true, Dep::default(), &chat_body(json!({})), |call| {
        CHAT.convert_response(call, Bytes::from_static(br#"{"error":"runner crashed"}"#)).unwrap_err()
    });
    assert!(matches!(&err, Error::Upstream { message, .. } if message == "runner crashed"), "{err:?}");
}

#[test]
fn errors_keep_status_and_message() {
    let err = CHAT.convert_error(
        StatusCode::NOT_FOUND,
        &HeaderMap::new(),
        br#"{"error":"model \"nope\" not found, try pulling it first"}"#,
    );
    assert_eq!(err.status(), StatusCode::NOT_FOUND);
    assert_eq!(err.to_string(), "model \"nope\" not found, try pulling it first");
    let err = GENERATE.convert_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        &HeaderMap::new(),
        br#"{"error":"open /root/.ollama/models/blobs/sha256-x: no such file or directory"}"#,
    );
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
}

// ----- streams -----

/// Feeds `pieces` and finishes; returns the SSE payloads (JSON values; `[DONE]` as a string) or the error.
fn run_stream(op: Operation, chat: bool, request: Value, pieces: &[&[u8]]) -> Result<Vec<Value>, Error> {
    with_call(op, chat, Dep::default(), &request, |call| {
        let mut conv = Ollama { chat }.stream_converter(call).unwrap();
        let mut out = BytesMut::new();
        for piece in pieces {
            conv.feed(piece, &mut out)?;
        }
        conv.finish(&mut out)?;
        Ok(parse_sse(&out))
    })
}

fn parse_sse(out: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(out).unwrap();
    assert!(text.ends_with("\n\n"), "{text}");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let data = e.strip_prefix("data: ").unwrap();
            if data == "[DONE]" {
                Value::String(data.to_owned())
            } else {
                serde_json::from_str(data).unwrap()
            }
        })
        .collect()
}

fn chat_line(content: &str) -> String {
    json!({"model": "qwen3:8b", "message": {"role": "assistant", "content": content}, "done": false}).to_string() + "\n"
}

fn done_line(reason: &str) -> String {
    json!({"model": "qwen3:8b", "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": reason,
           "prompt_eval_count": 5, "eval_count": 3})
    .to_string()
        + "\n"
}

/// The concatenated `delta.content` and `delta.reasoning_content` of chat chunks.
fn texts(events: &[Value]) -> (String, String) {
    let (mut content, mut reasoning) = (String::new(), String::new());
    for e in events.iter().filter(|e| e.is_object()) {
        if let Some(delta) = e["choices"].get(0).map(|c| &c["delta"]) {
            content.push_str(delta["content"].as_str().unwrap_or(""));
            reasoning.push_str(delta["reasoning_content"].as_str().unwrap_or(""));
        }
    }
    (content, reasoning)
}

#[test]
fn stream_lines_split_merged_and_utf8_cut() {
    let all = [chat_line("Héllo"), chat_line(" wörld 🎉"), done_line("stop")].concat();
    let bytes = all.as_bytes();
    // Cut inside the first JSON line, inside the multi-byte 'ö', and inside the emoji; the last piece holds the
    // end of one line and the whole done line.
    let o = all.find('ö').unwrap() + 1;
    let e = all.find('🎉').unwrap() + 2;
    let pieces: Vec<&[u8]> = vec![&bytes[..10], &bytes[10..o], &bytes[o..e], &bytes[e..]];
    let events = run_stream(Operation::Chat, true, chat_body(json!({"stream": true})), &pieces).unwrap();

    assert_eq!(texts(&events).0, "Héllo wörld 🎉");
    let chunks: Vec<&Value> = events.iter().filter(|e| e.is_object()).collect();
    assert_eq!(chunks.len(), 3);
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(c["id"], id);
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "local");
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks[1]["choices"][0]["delta"].get("role").is_none());
    assert_eq!(chunks[2]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
    assert!(chunks[2].get("usage").is_none());
    assert_eq!(events.last().unwrap(), "[DONE]");

    // Byte by byte gives the same text.
    let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
    let events = run_stream(Operation::Chat, true, chat_body(json!({"stream": true})), &pieces).unwrap();
    assert_eq!(texts(&events).0, "Héllo wörld 🎉");
}

#[test]
fn stream_include_usage_and_length() {
    let all = [chat_line("a"), done_line("length")].concat();
    let events = run_stream(
        Operation::Chat,
        true,
        chat_body(json!({"stream": true, "stream_options": {"include_usage": true}})),
        &[all.as_bytes()],
    )
    .unwrap();
    assert_eq!(events.len(), 4);
    assert_eq!(events[1]["choices"][0]["finish_reason"], "length");
    assert_eq!(events[2]["choices"], json!([]));
    assert_eq!(events[2]["usage"], json!({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}));
    assert_eq!(events[2]["id"], events[0]["id"]);
    assert_eq!(events[3], "[DONE]");
}

#[test]
fn stream_without_done_line_is_an_error() {
    let all = chat_line("partial");
    let err = run_stream(Operation::Chat, true, chat_body(json!({"stream": true})), &[all.as_bytes()]).unwrap_err();
    assert!(matches!(&err, Error::BadUpstreamResponse(m) if m == "engine closed the stream before it finished"));
    let err = run_stream(Operation::Chat, true, chat_body(json!({"stream": true})), &[]).unwrap_err();
    assert!(matches!(err, Error::BadUpstreamResponse(_)));
}

#[test]
fn stream_done_line_without_newline_still_finishes() {
    let all = [chat_line("x"), done_line("stop")].concat();
    let trimmed = all.trim_end();
    let events = run_stream(Operation::Chat, true, chat_body(json!({"stream": true})), &[trimmed.as_bytes()]).unwrap();
    assert_eq!(events.last().unwrap(), "[DONE]");
}

#[test]
fn stream_error_line_is_an_upstream_error() {
    let all = [chat_line("x"), "{\"error\":\"model runner has unexpectedly stopped\"}\n".to_owned()].concat();
    let err = run_stream(Operation::Chat, true, chat_body(json!({"stream": true})), &[all.as_bytes()]).unwrap_err();
    match err {
        Error::Upstream { message, .. } => {
            assert_eq!(message, "model runner has unexpectedly stopped")
        }
        other => panic!("{other:?}"),
    }
    let err = run_stream(Operation::Chat, true, chat_body(json!({"stream": true})), &[b"not json\n"]).unwrap_err();
    assert!(matches!(err, Error::BadUpstreamResponse(_)));
}

#[test]
fn stream_think_tags_split_across_lines() {
    let lines = [
        chat_line("\n<th"),
        chat_line("ink>step one"),
        chat_line(", step two</"),
        chat_line("thi"),
        chat_line("nk>\n\n"),
        chat_line("The answer"),
        chat_line(" is 4 </think>"),
        done_line("stop"),
    ]
    .concat();
    let events = run_stream(Operation::Chat, true, chat_body(json!({"stream": true})), &[lines.as_bytes()]).unwrap();
    let (content, reasoning) = texts(&events);
    assert_eq!(reasoning, "step one, step two");
    assert_eq!(content, "The answer is 4 </think>");
}

#[test]
fn stream_unclosed_think_is_reasoning_and_thinking_field_is_reasoning() {
    let lines = [chat_line("<think>still thinking</thi"), done_line("length")].concat();
    let events = run_stream(Operation::Chat, true, chat_body(json!({"stream": true})), &[lines.as_bytes()]).unwrap();
    assert_eq!(texts(&events), (String::new(), "still thinking</thi".to_owned()));

    let lines = [
        json!({"message": {"role": "assistant", "content": "", "thinking": "hmm"}, "done": false}).to_string(),
        json!({"message": {"role": "assistant", "content": "ok"}, "done": false}).to_string(),
        done_line("stop"),
    ]
    .join("\n");
    let events = run_stream(Operation::Chat, true, chat_body(json!({"stream": true})), &[lines.as_bytes()]).unwrap();
    assert_eq!(texts(&events), ("ok".to_owned(), "hmm".to_owned()));
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(events[0]["choices"][0]["delta"]["reasoning_content"], "hmm");
}

#[test]
fn stream_tool_calls() {
    let lines = [
        json!({"message": {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
        ]}, "done": false})
        .to_string(),
        json!({"message": {"role": "assistant", "content": "", "tool_calls": [
            {"id": "xyz", "function": {"name": "get_time", "arguments": {}}}
        ]}, "done": false})
        .to_string(),
        done_line("stop"),
    ]
    .join("\n");
    let events = run_stream(Operation::Chat, true, chat_body(json!({"stream": true})), &[lines.as_bytes()]).unwrap();
    let first = &events[0]["choices"][0]["delta"];
    assert_eq!(first["role"], "assistant");
    let call = &first["tool_calls"][0];
    assert_eq!(call["index"], 0);
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"], json!({"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}));
    let second = &events[1]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(second["index"], 1);
    assert_eq!(second["id"], "xyz");
    assert_eq!(events[2]["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn stream_generate_as_chat() {
    let lines = [
        json!({"response": "", "thinking": "hm", "done": false}).to_string(),
        json!({"response": "Hi", "done": false}).to_string(),
        json!({"response": "", "done": true, "done_reason": "stop", "prompt_eval_count": 1, "eval_count": 1})
            .to_string(),
    ]
    .join("\n");
    let events =
        run_stream(Operation::Chat, false, chat_body(json!({"stream": true})), &[lines.as_bytes(), b"\n"]).unwrap();
    assert_eq!(texts(&events), ("Hi".to_owned(), "hm".to_owned()));
    assert_eq!(events[0]["object"], "chat.completion.chunk");
    assert_eq!(events.last().unwrap(), "[DONE]");
}

#[test]
fn stream_legacy_completion() {
    let lines = [
        json!({"response": "def", "done": false}).to_string(),
        json!({"response": " f():", "done": false}).to_string(),
        json!({"response": "", "done": true, "done_reason": "length", "prompt_eval_count": 2, "eval_count": 9})
            .to_string(),
        String::new(),
    ]
    .join("\n");
    let events = run_stream(
        Operation::Completion,
        true,
        json!({"model": "local", "prompt": "p", "stream": true, "stream_options": {"include_usage": true}}),
        &[lines.as_bytes()],
    )
    .unwrap();
    assert_eq!(events.len(), 5);
    let id = events[0]["id"].as_str().unwrap();
    assert!(id.starts_with("cmpl-"));
    assert_eq!(events[0]["object"], "text_completion");
    assert_eq!(events[0]["choices"], json!([{"text": "def", "index": 0, "logprobs": null, "finish_reason": null}]));
    assert_eq!(events[1]["choices"][0]["text"], " f():");
    assert_eq!(events[2]["choices"][0], json!({"text": "", "index": 0, "logprobs": null, "finish_reason": "length"}));
    assert_eq!(events[3]["choices"], json!([]));
    assert_eq!(events[3]["usage"]["completion_tokens"], 9);
    assert_eq!(events[3]["id"], id);
    assert_eq!(events[4], "[DONE]");
}

#[test]
fn embeddings_never_stream() {
    let request = json!({"model": "embed", "input": "a"});
    with_call(Operation::Embeddings, true, Dep::default(), &request, |call| {
        assert!(CHAT.stream_converter(call).is_none());
    });
}

#[test]
fn deployment_response_format_is_a_default_the_request_overrides() {
    let dep = || Dep { extra: json!({"response_format": {"type": "json_object"}}), ..Dep::default() };
    let (_, body) = build(Operation::Chat, true, dep(), chat_body(json!({}))).unwrap();
    assert_eq!(body["format"], "json");
    assert!(body["options"].get("response_format").is_none());
    let (_, body) =
        build(Operation::Chat, true, dep(), chat_body(json!({"response_format": {"type": "text"}}))).unwrap();
    assert!(body.get("format").is_none());
}

#[test]
fn stream_ignores_what_follows_the_done_line() {
    let all = [chat_line("a"), done_line("stop"), chat_line("late")].concat();
    let (head, tail) = all.as_bytes().split_at(all.len() - 7);
    let events = run_stream(Operation::Chat, true, chat_body(json!({"stream": true})), &[head, tail]).unwrap();
    assert_eq!(texts(&events).0, "a");
    assert_eq!(events.iter().filter(|e| *e == "[DONE]").count(), 1);
}

#[test]
fn raw_invalid_utf8_from_the_engine_becomes_replacement_characters_not_an_error() {
    let request = json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let mut line = br#"{"model":"qwen3:8b","message":{"role":"assistant","content":"a"#.to_vec();
    line.extend_from_slice(&[0xE2, 0x82]); // a cut three-byte character
    line.extend_from_slice(b"b\"},\"done\":false}\n");
    let done = done_line("stop");
    let events = run_stream(Operation::Chat, true, request, &[&line, done.as_bytes()]).unwrap();
    let text: String = events.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "a\u{FFFD}b");
    assert_eq!(events.last().unwrap(), "[DONE]");
}

#[test]
fn the_load_time_and_usage_of_a_stream_and_of_a_plain_answer_are_read_from_the_engine() {
    let done = json!({"model": "m", "message": {"role": "assistant", "content": ""}, "done": true,
                      "done_reason": "stop", "load_duration": 2_500_000_000u64,
                      "prompt_eval_count": 12, "eval_count": 30});
    let lines = [chat_line("x"), done.to_string() + "\n"].concat();
    let load = with_call(Operation::Chat, true, Dep::default(), &chat_body(json!({"stream": true})), |call| {
        let mut conv = Ollama { chat: true }.stream_converter(call).unwrap();
        let mut out = BytesMut::new();
        assert_eq!((conv.load_duration(), conv.usage()), (None, None), "not before the last line");
        conv.feed(lines.as_bytes(), &mut out)?;
        conv.finish(&mut out)?;
        Ok::<_, Error>((conv.load_duration(), conv.usage()))
    })
    .unwrap();
    assert_eq!(
        load,
        (Some(std::time::Duration::from_millis(2_500)), Some(crate::observe::Tokens { input: 12, output: 30 }))
    );
    let plain = |answer: &Value| {
        with_call(Operation::Chat, true, Dep::default(), &chat_body(json!({})), |call| {
            let converted = CHAT.convert_response(call, Bytes::from(answer.to_string())).unwrap();
            (converted.load_duration, converted.usage)
        })
    };
    assert_eq!(
        plain(&done),
        (Some(std::time::Duration::from_millis(2_500)), Some(crate::observe::Tokens { input: 12, output: 30 }))
    );
    assert_eq!(plain(&json!({"message": {"role": "assistant", "content": "hi"}, "done": true})), (None, None));
}

#[test]
fn a_native_request_keeps_every_field_and_takes_only_missing_defaults() {
    let dep = Dep {
        extra: json!({"num_ctx": 8192, "temperature": 0.2, "think": false}),
        keep_alive: Some(json!("30m")),
        ..Dep::default()
    };
    let deployment = deployment(true, dep);
    let target = deployment.engine().unwrap();
    let body = br#"{"model":"coding:latest","prompt":"x","options":{"temperature":0.9},"keep_alive":0,"raw":true,"suffix":"}"}"#;
    let sent: Value = serde_json::from_slice(&super::native::request(body, target, "qwen3:8b").unwrap()).unwrap();
    assert_eq!(sent["model"], "qwen3:8b");
    assert_eq!(sent["options"]["temperature"], 0.9, "the client wins");
    assert_eq!(sent["options"]["num_ctx"], 8192, "the deployment fills in");
    assert_eq!(sent["think"], false);
    assert_eq!(sent["keep_alive"], 0);
    assert_eq!((sent["raw"].clone(), sent["suffix"].clone()), (json!(true), json!("}")), "every field travels");
}
