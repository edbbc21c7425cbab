//! Response objects and event streams built from chat answers: items, usage, incomplete and failed answers.

use std::sync::Arc;

use bytes::BytesMut;

use super::*;
use crate::protocol::openai::parse_body;
use crate::protocol::responses::{input::to_chat, CreateRequest};
use crate::protocol::translate::{Chunk, ChunkEncoder, SseEvents};

fn turn(body: Value, store: &Store) -> Turn {
    let req: CreateRequest = parse_body(body.to_string().as_bytes()).unwrap();
    to_chat(req, store).unwrap().1
}

fn chunk(v: Value) -> Chunk {
    serde_json::from_value(v).unwrap()
}

/// The events of a stream: (event name, data).
fn events(bytes: &[u8]) -> Vec<(String, Value)> {
    let text = String::from_utf8_lossy(bytes);
    text.split("\n\n")
        .filter(|b| b.starts_with("event: "))
        .map(|b| {
            let (head, data) = b.split_once('\n').unwrap();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            (head["event: ".len()..].to_owned(), data)
        })
        .collect()
}

#[test]
fn whole_answer_with_reasoning_text_and_a_call() {
    let store = Store::new();
    let mut t = turn(
        json!({"model": "alias", "input": "x", "tools": [
        {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "g"}]}]}),
        &store,
    );
    let completion = Completion::parse(br#"{"model":"upstream","choices":[{"message":{"content":"hello","reasoning_content":"think","tool_calls":[{"id":"call_1","type":"function","function":{"name":"ns__g","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8,"prompt_tokens_details":{"cached_tokens":2}}}"#).unwrap();
    let r: Value = serde_json::from_slice(&whole(&mut t, completion, &store).unwrap()).unwrap();
    assert_eq!(r["model"], "alias");
    assert_eq!(r["status"], "completed");
    let types: Vec<&str> = r["output"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["reasoning", "message", "function_call"]);
    assert_eq!(r["output"][0]["content"][0], json!({"type": "reasoning_text", "text": "think"}));
    assert_eq!(r["output"][1]["content"][0], json!({"type": "output_text", "text": "hello", "annotations": []}));
    assert_eq!(r["output"][2]["name"], "g");
    assert_eq!(r["output"][2]["namespace"], "ns");
    assert_eq!(r["output"][2]["call_id"], "call_1");
    assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"], 2);
    assert_eq!(r["usage"]["total_tokens"], 8);
    let stored = store.get(r["id"].as_str().unwrap()).unwrap();
    let last = stored.conversation.last().unwrap();
    assert_eq!(last.tool_calls.as_ref().unwrap()[0].function.name, "ns__g", "stored under the engine's name");
    assert_eq!(last.reasoning_content.as_deref(), Some("think"));
}

#[test]
fn length_is_incomplete_and_store_false_keeps_nothing() {
    let store = Store::new();
    let mut t = turn(json!({"model": "m", "input": "x", "store": false, "max_output_tokens": 3}), &store);
    let completion =
        Completion::parse(br#"{"choices":[{"message":{"content":"abc"},"finish_reason":"length"}]}"#).unwrap();
    let r: Value = serde_json::from_slice(&whole(&mut t, completion, &store).unwrap()).unwrap();
    assert_eq!(r["status"], "incomplete");
    assert_eq!(r["incomplete_details"], json!({"reason": "max_output_tokens"}));
    assert_eq!(r["output"][0]["status"], "incomplete");
    assert!(store.is_empty());
}

#[test]
fn stream_events_in_order_with_a_tool_call() {
    let store = Arc::new(Store::new());
    let t =
        turn(json!({"model": "m", "input": "x", "stream": true, "tools": [{"type": "function", "name": "f"}]}), &store);
    let id = t.id.clone();
    let mut enc = Encoder::new(t, store.clone());
    let mut out = BytesMut::new();
    enc.keepalive(&mut out);
    for c in [
        json!({"choices": [{"index": 0, "delta": {"reasoning_content": "hm"}}]}),
        json!({"choices": [{"index": 0, "delta": {"content": "He"}}]}),
        json!({"choices": [{"index": 0, "delta": {"content": "llo"}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_9", "function": {"name": "f", "arguments": "{\"a\""}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}, "finish_reason": "tool_calls"}]}),
        json!({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}}),
    ] {
        enc.chunk(chunk(c), &mut out).unwrap();
    }
    enc.finish(&mut out).unwrap();
    assert!(String::from_utf8_lossy(&out).contains(": keepalive\n\n"));
    let events = events(&out);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_text.delta",
            "response.reasoning_text.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], json!(name));
        assert_eq!(data["sequence_number"], json!(i));
    }
    assert_eq!(events[10].1["text"], "Hello");
    assert_eq!(events[13].1["output_index"], 2);
    assert_eq!(events[16].1["arguments"], "{\"a\":1}");
    let done = &events[18].1["response"];
    assert_eq!(done["id"], json!(id));
    assert_eq!(done["output"][2]["call_id"], "call_9");
    assert_eq!(done["usage"]["output_tokens"], 6);
    assert!(store.get(&id).is_some(), "a finished stream is stored");
}

#[test]
fn a_failed_stream_ends_with_response_failed() {
    let store = Arc::new(Store::new());
    let t = turn(json!({"model": "m", "input": "x", "stream": true}), &store);
    let id = t.id.clone();
    let mut enc = Encoder::new(t, store.clone());
    let mut out = BytesMut::new();
    enc.chunk(chunk(json!({"choices": [{"index": 0, "delta": {"content": "par"}}]})), &mut out).unwrap();
    enc.fail(&Error::Connect("the answer broke off".into()), &mut out);
    let events = events(&out);
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "response.failed");
    assert_eq!(data["response"]["status"], "failed");
    assert_eq!(data["response"]["error"], json!({"code": "server_error", "message": "the answer broke off"}));
    assert_eq!(data["response"]["output"][0]["status"], "incomplete");
    assert!(store.get(&id).is_none(), "a failed response is not stored");
    // Nothing sent yet: still created first, then failed.
    let mut enc = Encoder::new(turn(json!({"model": "m", "input": "x"}), &store), store.clone());
    let mut out = BytesMut::new();
    enc.fail(&Error::NoDeployments { message: "busy".into(), all_cooling_down: false, retry_after: 3 }, &mut out);
    let names: Vec<String> = super::tests::events(&out)
        .into_iter()
        .map(|(n, d)| {
            if n == "response.failed" {
                assert_eq!(d["response"]["error"]["code"], "rate_limit_exceeded");
            }
            n
        })
        .collect();
    assert_eq!(names, ["response.created", "response.in_progress", "response.failed"]);
    let _ = SseEvents::default();
}
