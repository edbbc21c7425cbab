use bytes::BytesMut;
use serde_json::{json, Map, Value};

use super::request::to_anthropic;
use super::response::to_openai;
use super::stream::Events;
use crate::providers::StreamConverter;

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[test]
fn chat_request_becomes_a_messages_request() {
    let openai = object(json!({
        "model": "coding",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}},
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "a cat"},
            {"role": "user", "content": "thanks", "cache_control": {"type": "ephemeral"}},
        ],
        "tools": [{"type": "function", "function": {"name": "look", "description": "d", "parameters": {"type": "object"}}}],
        "tool_choice": "required",
        "stop": "END",
        "reasoning_effort": "low",
        "temperature": 0.2,
    }));
    let out = Value::Object(to_anthropic(&openai, "claude-x", None, &Map::new()).unwrap());
    assert_eq!(out["model"], "claude-x");
    assert_eq!(out["system"], json!([{"type": "text", "text": "Be brief."}]));
    let messages = out["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "tool result and the next user text merge into one user turn: {messages:?}");
    assert_eq!(
        messages[0]["content"][1],
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}})
    );
    assert_eq!(
        messages[1]["content"][0],
        json!({"type": "tool_use", "id": "toolu_1", "name": "look", "input": {"x": 1}})
    );
    assert_eq!(messages[2]["role"], "user");
    assert_eq!(messages[2]["content"][0], json!({"type": "tool_result", "tool_use_id": "toolu_1", "content": "a cat"}));
    assert_eq!(messages[2]["content"][1]["cache_control"], json!({"type": "ephemeral"}));
    assert_eq!(out["tools"][0]["input_schema"], json!({"type": "object"}));
    assert_eq!(out["tool_choice"], json!({"type": "any"}));
    assert_eq!(out["stop_sequences"], json!(["END"]));
    assert_eq!(out["thinking"], json!({"type": "enabled", "budget_tokens": 1024}));
    assert_eq!(out["temperature"], 0.2);
    // LiteLLM's default, raised above the thinking budget so the API accepts it.
    assert_eq!(out["max_tokens"], 1024 + 4096);
}

#[test]
fn max_tokens_comes_from_the_request_then_model_info_then_the_default() {
    let base = json!({"messages": [{"role": "user", "content": "hi"}]});
    let asked = object(json!({"messages": base["messages"], "max_completion_tokens": 77}));
    assert_eq!(to_anthropic(&asked, "m", Some(1000), &Map::new()).unwrap()["max_tokens"], 77);
    assert_eq!(to_anthropic(&object(base.clone()), "m", Some(1000), &Map::new()).unwrap()["max_tokens"], 1000);
    assert_eq!(to_anthropic(&object(base), "m", None, &Map::new()).unwrap()["max_tokens"], 4096);
}

#[test]
fn answer_becomes_a_chat_completion() {
    let answer = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "Hmm.", "signature": "sig"},
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_2", "name": "look", "input": {"x": 2}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 0},
    });
    let (out, total) = to_openai(answer.to_string().as_bytes(), 7).unwrap();
    let message = &out["choices"][0]["message"];
    assert_eq!(message["content"], "Let me look.");
    assert_eq!(message["reasoning_content"], "Hmm.");
    assert_eq!(message["thinking_blocks"][0]["signature"], "sig");
    assert_eq!(message["tool_calls"][0]["function"], json!({"name": "look", "arguments": "{\"x\":2}"}));
    assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(out["usage"]["prompt_tokens"], 13);
    assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 3);
    assert_eq!((total.input, total.output), (13, 5));
}

/// The streaming reference's example sequence, fed in awkward pieces.
#[test]
fn event_stream_becomes_openai_chunks() {
    let events = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-x\",\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n",
        "event: ping\ndata: {\"type\":\"ping\"}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Hmm\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"look\",\"input\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"x\\\":\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1}\"}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    let mut conv = Events::new(true, 1);
    let mut out = BytesMut::new();
    for piece in events.as_bytes().chunks(13) {
        conv.feed(piece, &mut out).unwrap();
    }
    conv.finish(&mut out).unwrap();
    let text = String::from_utf8(out.to_vec()).unwrap();
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(text.ends_with("data: [DONE]\n\n"));
    let deltas: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"].get(0)).map(|c| &c["delta"]).collect();
    assert_eq!(deltas[0]["role"], "assistant");
    assert!(deltas.iter().any(|d| d["reasoning_content"] == "Hmm"));
    assert!(deltas.iter().any(|d| d["content"] == "Hello"));
    let args: String = deltas.iter().filter_map(|d| d["tool_calls"][0]["function"]["arguments"].as_str()).collect();
    assert_eq!(args, "{\"x\":1}");
    let finish = chunks.iter().find_map(|c| c["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish, Some("tool_calls"));
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!((usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64()), (Some(25), Some(15)));
    assert_eq!(conv.usage(), Some(crate::observe::Tokens { input: 25, output: 15 }));
}

#[test]
fn an_error_event_fails_the_stream_with_its_status() {
    let mut conv = Events::new(false, 1);
    let mut out = BytesMut::new();
    let err = conv
        .feed(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n", &mut out)
        .unwrap_err();
    match err {
        crate::error::Error::Upstream { status, .. } => assert_eq!(status.as_u16(), 529),
        other => panic!("{other:?}"),
    }
    let mut cut = Events::new(false, 1);
    assert!(cut.finish(&mut out).is_err(), "a stream without message_stop is broken off");
}
