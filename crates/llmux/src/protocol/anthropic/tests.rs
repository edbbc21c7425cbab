use bytes::BytesMut;
use serde_json::{json, Value};

use super::*;
use crate::protocol::translate::Chunk;

fn config() -> Config {
    let yaml =
        "model_list:\n  - model_name: m\n    litellm_params: {model: ollama_chat/m, api_base: \"http://h1:11434\"}\n";
    crate::config::load_str(yaml, &|_| None).expect("config").0
}

/// The OpenAI body a Messages request becomes.
fn openai_of(body: Value) -> Value {
    let mut t = Messages::new();
    let canonical = t.request(body.to_string().as_bytes(), &config()).expect("request converts");
    assert_eq!(canonical.op, Operation::Chat);
    serde_json::from_slice(&canonical.body).expect("JSON")
}

fn rejected(body: Value) -> Error {
    let mut t = Messages::new();
    t.request(body.to_string().as_bytes(), &config()).expect_err("request is rejected")
}

fn param_of(e: &Error) -> Option<String> {
    match e {
        Error::InvalidRequest { param, .. } => param.clone(),
        _ => None,
    }
}

#[test]
fn request_maps_system_sampling_and_routing_fields() {
    let out = openai_of(json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
                   {"type": "text", "text": "Use French."}],
        "messages": [{"role": "user", "content": "hi"}],
        "stop_sequences": ["END"],
        "temperature": 0.2, "top_p": 0.9, "top_k": 40,
        "metadata": {"user_id": "u-1"},
        "stream": true,
        "service_tier": "auto",
        "num_retries": 2,
    }));
    assert_eq!(out["model"], "claude-sonnet-4-5", "the client's name routes");
    assert_eq!(out["messages"][0], json!({"role": "system", "content": "Be brief.\nUse French."}));
    assert_eq!(out["messages"][1], json!({"role": "user", "content": "hi"}));
    assert_eq!(out["max_tokens"], 256);
    assert_eq!(out["stop"], json!(["END"]));
    assert_eq!(
        (out["temperature"].clone(), out["top_p"].clone(), out["top_k"].clone()),
        (json!(0.2), json!(0.9), json!(40))
    );
    assert_eq!(out["user"], "u-1");
    assert_eq!(out["stream"], true);
    assert_eq!(out["stream_options"]["include_usage"], true);
    assert!(out.get("service_tier").is_none(), "Anthropic-only fields stay behind");
    assert_eq!(out["num_retries"], 2, "router controls travel on");
    assert!(out.get("metadata").is_none() && out.get("stop_sequences").is_none());
}

#[test]
fn request_maps_images_and_tool_results_in_order() {
    let out = openai_of(json!({
        "model": "m", "max_tokens": 10,
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "plan", "signature": "sig"},
                {"type": "redacted_thinking", "data": "xx"},
                {"type": "text", "text": "calling"},
                {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"a": 1}},
                {"type": "tool_use", "id": "toolu_2", "name": "put", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "text", "text": "and then?"},
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "one"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
                 "content": [{"type": "text", "text": "boom"},
                             {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j"}}]},
            ]},
        ],
    }));
    let m = out["messages"].as_array().expect("messages");
    let roles: Vec<&str> = m.iter().map(|m| m["role"].as_str().unwrap_or("")).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "tool", "user"]);
    assert_eq!(m[0]["content"][0], json!({"type": "text", "text": "look"}));
    assert_eq!(m[0]["content"][1]["image_url"]["url"], "data:image/png;base64,iVBOR");
    assert_eq!(m[0]["content"][2]["image_url"]["url"], "https://example.com/a.jpg");
    assert_eq!(m[1]["content"], "calling");
    assert_eq!(m[1]["reasoning_content"], "plan");
    assert_eq!(m[1]["tool_calls"][0]["id"], "toolu_1");
    assert_eq!(m[1]["tool_calls"][0]["type"], "function");
    assert_eq!(m[1]["tool_calls"][0]["function"], json!({"name": "get", "arguments": "{\"a\":1}"}));
    assert_eq!(m[2], json!({"role": "tool", "content": "one", "tool_call_id": "toolu_1"}));
    assert_eq!(m[3]["tool_call_id"], "toolu_2");
    assert_eq!(m[3]["content"], "Error: boom");
    // The tool's image leads the user turn that follows, before the user's own text.
    assert_eq!(m[4]["content"][0]["image_url"]["url"], "data:image/jpeg;base64,/9j");
    assert_eq!(m[4]["content"][1], json!({"type": "text", "text": "and then?"}));
}

#[test]
fn tool_only_assistant_turn_has_null_content() {
    let out = openai_of(json!({"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
    ]}));
    assert_eq!(out["messages"][1]["content"], Value::Null);
    assert_eq!(out["messages"][2], json!({"role": "tool", "content": "", "tool_call_id": "t"}));
    assert_eq!(out["messages"].as_array().map(Vec::len), Some(3), "no empty user turn after the tool result");
}

#[test]
fn request_maps_tools_and_tool_choice() {
    let out = openai_of(json!({
        "model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}],
        "tools": [
            {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
            {"type": "bash_20250124", "name": "bash"},
            {"type": "custom", "name": "strict_one", "input_schema": {"type": "object"}, "strict": true},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
    }));
    let tools = out["tools"].as_array().expect("tools");
    assert_eq!(tools.len(), 2, "server tools are dropped: {tools:?}");
    assert_eq!(
        tools[0],
        json!({"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}}})
    );
    assert_eq!(tools[1]["function"]["strict"], true);
    assert_eq!(out["tool_choice"], "required");
    assert_eq!(out["parallel_tool_calls"], false);

    let named = openai_of(json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}],
        "tools": [{"name": "f", "input_schema": {}}], "tool_choice": {"type": "tool", "name": "f"}}));
    assert_eq!(named["tool_choice"], json!({"type": "function", "function": {"name": "f"}}));
    assert!(named.get("parallel_tool_calls").is_none());
    let none = openai_of(json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}],
        "tools": [{"name": "f", "input_schema": {}}], "tool_choice": {"type": "none"}}));
    assert_eq!(none["tool_choice"], "none");

    // Only server tools: no tools and no tool_choice reach the engine (OpenAI engines reject a choice alone).
    let server_only = openai_of(json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "web_search_20250305", "name": "web_search"}], "tool_choice": {"type": "auto"}}));
    assert!(server_only.get("tools").is_none() && server_only.get("tool_choice").is_none(), "{server_only}");
}

#[test]
fn thinking_becomes_reasoning_effort() {
    let effort = |thinking: Value| {
        openai_of(json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}], "thinking": thinking}))
            ["reasoning_effort"]
            .clone()
    };
    assert_eq!(effort(json!({"type": "enabled", "budget_tokens": 1024})), "low");
    assert_eq!(effort(json!({"type": "enabled", "budget_tokens": 4096})), "medium");
    assert_eq!(effort(json!({"type": "enabled", "budget_tokens": 16384})), "high");
    assert_eq!(effort(json!({"type": "disabled"})), "none");
    assert_eq!(effort(json!({"type": "adaptive"})), "medium");
    assert_eq!(effort(json!({"type": "something_new"})), Value::Null);
    let out = openai_of(json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}],
        "output_config": {"effort": "max", "format": {"type": "json_schema", "schema": {"type": "object"}}}}));
    assert_eq!(out["reasoning_effort"], "high");
    assert_eq!(out["response_format"]["json_schema"]["schema"], json!({"type": "object"}));
}

#[test]
fn bad_requests_name_the_field() {
    let e = rejected(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}));
    assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
    assert_eq!(param_of(&e).as_deref(), Some("max_tokens"));
    assert_eq!(e.anthropic_kind(), "invalid_request_error");

    let e = rejected(json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}));
    assert_eq!(param_of(&e).as_deref(), Some("model"));
    let e = rejected(json!({"model": "m", "max_tokens": 5, "messages": []}));
    assert_eq!(param_of(&e).as_deref(), Some("messages"));
    let e = rejected(json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}));
    assert_eq!(param_of(&e).as_deref(), Some("messages[0].role"));
    let e = rejected(
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "hologram"}]}]}),
    );
    assert!(param_of(&e).is_some_and(|p| p.starts_with("messages[0].content[0]")), "{e:?}");
    let e = rejected(json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}}]}]}));
    assert_eq!(param_of(&e).as_deref(), Some("messages[0].content[0].source"));
    let e = rejected(json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
        "tools": [{"name": "f"}]}));
    assert_eq!(param_of(&e).as_deref(), Some("tools[0].input_schema"));
    let e = rejected(json!({"model": "m", "max_tokens": "many", "messages": [{"role": "user", "content": "x"}]}));
    assert_eq!(param_of(&e).as_deref(), Some("max_tokens"));
    let mut t = Messages::new();
    assert!(t.request(b"{not json", &config()).is_err());
}

#[test]
fn whole_answer_has_thinking_text_and_tool_use() {
    let mut t = Messages::new();
    t.request(
        json!({"model": "coding", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}]})
            .to_string()
            .as_bytes(),
        &config(),
    )
    .expect("request");
    let openai = json!({
        "id": "chatcmpl-1", "model": "qwen3:8b",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Let me check.", "reasoning_content": "thinking hard",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "bad", "arguments": "{\"city\": \"Par"}},
                {"type": "function", "function": {"name": "empty", "arguments": ""}},
            ]}}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37, "prompt_tokens_details": {"cached_tokens": 10}},
    });
    let out: Value = serde_json::from_slice(&t.response(openai.to_string().as_bytes()).expect("answer")).expect("JSON");
    assert!(out["id"].as_str().is_some_and(|id| id.starts_with("msg_")), "{out}");
    assert_eq!(out["type"], "message");
    assert_eq!(out["role"], "assistant");
    assert_eq!(out["model"], "coding", "answered with the name the client sent");
    assert_eq!(out["content"][0], json!({"type": "thinking", "thinking": "thinking hard", "signature": ""}));
    assert_eq!(out["content"][1], json!({"type": "text", "text": "Let me check."}));
    assert_eq!(
        out["content"][2],
        json!({"type": "tool_use", "id": "call_1", "name": "get", "input": {"city": "Paris"}})
    );
    assert_eq!(out["content"][3]["input"], json!({"_raw": "{\"city\": \"Par"}));
    assert_eq!(out["content"][4]["input"], json!({}));
    assert!(out["content"][4]["id"].as_str().is_some_and(|id| id.starts_with("toolu_")));
    assert_eq!(out["stop_reason"], "tool_use");
    assert_eq!(out["stop_sequence"], Value::Null);
    assert_eq!(
        out["usage"],
        json!({"input_tokens": 20, "output_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10})
    );
}

#[test]
fn finish_reasons_map_to_stop_reasons() {
    let reason = |finish: Value| {
        let mut t = Messages::new();
        let body = json!({"choices": [{"message": {"content": "x"}, "finish_reason": finish}]});
        let out: Value =
            serde_json::from_slice(&t.response(body.to_string().as_bytes()).expect("answer")).expect("JSON");
        out["stop_reason"].clone()
    };
    assert_eq!(reason(json!("stop")), "end_turn");
    assert_eq!(reason(json!("length")), "max_tokens");
    assert_eq!(reason(json!(null)), "end_turn");
    assert_eq!(reason(json!("content_filter")), "refusal");
}

#[test]
fn tool_input_keeps_what_it_cannot_parse() {
    use super::answer::tool_input;
    assert_eq!(tool_input(" {\"a\": [1]} "), json!({"a": [1]}));
    assert_eq!(tool_input("\"{\\\"a\\\":1}\""), json!({"a": 1}), "double-encoded arguments are unwrapped");
    assert_eq!(tool_input("[1,2]"), json!({"_raw": "[1,2]"}));
    assert_eq!(tool_input("not json"), json!({"_raw": "not json"}));
    assert_eq!(tool_input(""), json!({}));
}

/// The named events of an Anthropic SSE stream.
fn events(bytes: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(bytes).expect("UTF-8");
    assert!(text.ends_with("\n\n"), "{text}");
    text.split("\n\n")
        .filter(|b| !b.is_empty())
        .map(|block| {
            let mut lines = block.lines();
            let name = lines.next().and_then(|l| l.strip_prefix("event: ")).expect("event line").to_owned();
            let data = lines.next().and_then(|l| l.strip_prefix("data: ")).expect("data line");
            let value: Value = serde_json::from_str(data).expect("JSON data");
            assert_eq!(value["type"], name.as_str(), "data type matches the event name");
            (name, value)
        })
        .collect()
}

fn chunk(v: Value) -> Chunk {
    serde_json::from_value(v).expect("chunk")
}

fn streamed(request: Value, chunks: Vec<Value>) -> Vec<(String, Value)> {
    let mut t = Messages::new();
    t.request(request.to_string().as_bytes(), &config()).expect("request");
    let mut enc = t.stream();
    let mut out = BytesMut::new();
    enc.keepalive(&mut out);
    for c in chunks {
        enc.chunk(chunk(c), &mut out).expect("chunk");
    }
    enc.finish(&mut out).expect("finish");
    events(&out)
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn stream_thinking_then_text_then_usage() {
    let ev = streamed(
        json!({"model": "tools_fast", "max_tokens": 9, "stream": true, "messages": [{"role": "user", "content": "hello there"}]}),
        vec![
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "Hm"}}]}),
            json!({"choices": [{"index": 0, "delta": {"reasoning": "m."}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": ""}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}}),
        ],
    );
    assert_eq!(
        names(&ev),
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let start = &ev[0].1["message"];
    assert_eq!(start["model"], "tools_fast");
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    assert_eq!(start["usage"]["input_tokens"], 3, "an estimate until the engine counts");
    assert_eq!(
        ev[2].1,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
    );
    assert_eq!(ev[3].1["delta"], json!({"type": "thinking_delta", "thinking": "Hm"}));
    assert_eq!(ev[5].1, json!({"type": "content_block_stop", "index": 0}));
    assert_eq!(ev[6].1["content_block"], json!({"type": "text", "text": ""}));
    assert_eq!(ev[6].1["index"], 1);
    assert_eq!(ev[8].1["delta"], json!({"type": "text_delta", "text": "lo"}));
    assert_eq!(ev[10].1["delta"], json!({"stop_reason": "end_turn", "stop_sequence": null}));
    assert_eq!(ev[10].1["usage"], json!({"output_tokens": 5, "input_tokens": 12, "cache_read_input_tokens": 0}));
}

#[test]
fn stream_tool_calls_are_whole_blocks() {
    let ev = streamed(
        json!({"model": "m", "max_tokens": 9, "stream": true, "messages": [{"role": "user", "content": "x"}]}),
        vec![
            json!({"choices": [{"index": 0, "delta": {"content": "Checking."}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_a", "function": {"name": "get", "arguments": "{\"ci"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "put", "arguments": ""}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "ty\":\"Paris\"}"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        ],
    );
    assert_eq!(
        names(&ev),
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(ev[5].1["content_block"], json!({"type": "tool_use", "id": "call_a", "name": "get", "input": {}}));
    assert_eq!(ev[5].1["index"], 1);
    assert_eq!(ev[6].1["delta"], json!({"type": "input_json_delta", "partial_json": "{\"city\":\"Paris\"}"}));
    assert_eq!(ev[8].1["content_block"]["name"], "put");
    assert_eq!(ev[8].1["index"], 2);
    assert_eq!(ev[10].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(ev[10].1["usage"], json!({"output_tokens": 0}), "no engine usage: no input count claimed");
}

#[test]
fn stream_failure_is_one_error_event() {
    let mut t = Messages::new();
    t.request(
        json!({"model": "m", "max_tokens": 9, "stream": true, "messages": [{"role": "user", "content": "x"}]})
            .to_string()
            .as_bytes(),
        &config(),
    )
    .expect("request");
    let mut enc = t.stream();
    let mut out = BytesMut::new();
    enc.chunk(chunk(json!({"choices": [{"index": 0, "delta": {"content": "par"}}]})), &mut out).expect("chunk");
    let before = events(&out).len();
    enc.fail(
        &Error::Upstream {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            message: "engine down".into(),
            kind: None,
            retry_after: None,
        },
        &mut out,
    );
    let ev = events(&out);
    assert_eq!(names(&ev), ["message_start", "content_block_start", "content_block_delta", "error"]);
    assert_eq!(ev.len(), before + 1, "nothing is closed before the error");
    assert_eq!(ev[3].1, json!({"type": "error", "error": {"type": "overloaded_error", "message": "engine down"}}));
}

#[test]
fn count_tokens_estimates_text() {
    let body = json!({
        "model": "m",
        "system": "abcd",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "abcdefgh"},
                      {"type": "tool_result", "tool_use_id": "t", "content": "abcd"}]}],
        "tools": [{"name": "abcd", "input_schema": {}}],
    });
    let out: Value = serde_json::from_slice(&count_tokens(body.to_string().as_bytes()).expect("count")).expect("JSON");
    // 4 + 8 + 4 + 4 + 2 ("{}") = 22 characters → 6 tokens.
    assert_eq!(out, json!({"input_tokens": 6}));
    let e = count_tokens(b"{\"model\": \"m\"}").expect_err("no messages");
    assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
}
