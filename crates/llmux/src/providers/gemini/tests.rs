use bytes::BytesMut;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

use super::response::to_openai;
use super::stream::Events;
use super::{embed, method_uri, request::to_gemini, Gemini};
use crate::error::Error;
use crate::providers::{Provider, StreamConverter};

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[test]
fn routes_carry_the_model_and_method_and_never_the_key() {
    let uri = |base: &str, stream: bool| {
        let method = if stream { "streamGenerateContent" } else { "generateContent" };
        method_uri(base, "gemini-2.5-flash", method, stream).unwrap().to_string()
    };
    assert_eq!(
        uri("https://generativelanguage.googleapis.com", false),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(
        uri("http://127.0.0.1:9/", true),
        "http://127.0.0.1:9/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    // A base with a path is the URL up to the version, as LiteLLM joins it.
    assert_eq!(
        uri("https://proxy/gemini/v1", false),
        "https://proxy/gemini/v1/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(
        method_uri("http://e/v1beta", "models/text-embedding-004", "batchEmbedContents", false).unwrap(),
        "http://e/v1beta/models/text-embedding-004:batchEmbedContents"
    );
}

#[test]
fn chat_request_becomes_generate_content() {
    let openai = object(json!({
        "model": "flash",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1__thought__c2ln", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_1__thought__c2ln", "content": "a cat"},
            {"role": "user", "content": "thanks"},
        ],
        "tools": [{"type": "function", "function": {"name": "look", "description": "d",
            "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}, "additionalProperties": false}}}],
        "tool_choice": {"type": "function", "function": {"name": "look"}},
        "stop": "END",
        "max_completion_tokens": 100,
        "temperature": 0.2,
        "top_p": 0.9,
        "n": 2,
        "seed": 7,
        "reasoning_effort": "low",
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "user": "someone",
    }));
    let out = Value::Object(to_gemini(&openai, "gemini-2.5-flash", &Map::new()).unwrap());
    assert_eq!(out["systemInstruction"], json!({"parts": [{"text": "Be brief."}]}));
    let contents = out["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 3, "the function response and the next user text merge into one turn: {contents:?}");
    assert_eq!(contents[0]["role"], "user");
    assert_eq!(contents[0]["parts"][1], json!({"inlineData": {"mimeType": "image/png", "data": "AAAA"}}));
    assert_eq!(contents[0]["parts"][2], json!({"fileData": {"fileUri": "https://example.com/cat.jpg"}}));
    assert_eq!(contents[1]["role"], "model");
    assert_eq!(
        contents[1]["parts"][0],
        json!({"functionCall": {"name": "look", "args": {"x": 1}}, "thoughtSignature": "c2ln"})
    );
    assert_eq!(
        contents[2]["parts"][0],
        json!({"functionResponse": {"name": "look", "response": {"content": "a cat"}}}),
        "named after the call it answers"
    );
    assert_eq!(contents[2]["parts"][1], json!({"text": "thanks"}));
    let declaration = &out["tools"][0]["functionDeclarations"][0];
    assert_eq!(declaration["name"], "look");
    assert_eq!(declaration["parameters"], json!({"type": "object", "properties": {"x": {"type": "integer"}}}));
    assert_eq!(out["toolConfig"], json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["look"]}}));
    let config = &out["generationConfig"];
    assert_eq!(config["stopSequences"], json!(["END"]));
    assert_eq!(config["maxOutputTokens"], 100);
    assert_eq!((config["temperature"].as_f64(), config["topP"].as_f64()), (Some(0.2), Some(0.9)));
    assert_eq!((config["candidateCount"].as_u64(), config["seed"].as_u64()), (Some(2), Some(7)));
    assert_eq!(config["thinkingConfig"], json!({"thinkingBudget": 1024, "includeThoughts": true}));
    assert_eq!(config["responseMimeType"], "application/json");
    assert_eq!(config["responseJsonSchema"], json!({"type": "object"}));
    assert_eq!(out["safetySettings"][0]["threshold"], "BLOCK_NONE", "Gemini's own fields pass");
    assert!(out.get("user").is_none() && out.get("messages").is_none(), "the API refuses unknown fields");
}

#[test]
fn deployment_params_are_translated_where_the_request_sets_none() {
    let openai = object(json!({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.5}));
    let extra = object(json!({"temperature": 1.0, "max_tokens": 50, "safety_settings": []}));
    let out = to_gemini(&openai, "m", &extra).unwrap();
    assert_eq!(out["generationConfig"]["temperature"], 0.5);
    assert_eq!(out["generationConfig"]["maxOutputTokens"], 50);
    assert_eq!(out["safetySettings"], json!([]));
    assert!(!out.contains_key("temperature"));
    let choice = |c: Value| {
        let openai = object(json!({"messages": [{"role": "user", "content": "hi"}], "tool_choice": c}));
        Value::Object(to_gemini(&openai, "m", &Map::new()).unwrap())["toolConfig"]["functionCallingConfig"]["mode"]
            .clone()
    };
    assert_eq!(
        (choice(json!("auto")), choice(json!("required")), choice(json!("none"))),
        (json!("AUTO"), json!("ANY"), json!("NONE"))
    );
}

#[test]
fn answer_becomes_a_chat_completion() {
    let answer = json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "Let me think.", "thought": true},
                {"text": "Looking"},
                {"text": " now."},
                {"functionCall": {"name": "look", "args": {"x": 2}}, "thoughtSignature": "sig"},
            ]},
            "finishReason": "STOP",
        }],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 7, "totalTokenCount": 22},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "abc",
    });
    let (out, total) = to_openai(answer.to_string().as_bytes(), "gemini-2.5-flash", 7).unwrap();
    let message = &out["choices"][0]["message"];
    assert_eq!(message["content"], "Looking now.");
    assert_eq!(message["reasoning_content"], "Let me think.");
    let call = &message["tool_calls"][0];
    assert_eq!(call["function"], json!({"name": "look", "arguments": "{\"x\":2}"}));
    let id = call["id"].as_str().unwrap();
    assert!(id.starts_with("call_") && id.ends_with("__thought__sig"), "{id}");
    assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(out["usage"]["completion_tokens"], 12, "thinking tokens are completion tokens");
    assert_eq!(out["usage"]["completion_tokens_details"]["reasoning_tokens"], 7);
    assert_eq!(out["usage"]["total_tokens"], 22);
    assert_eq!((total.input, total.output), (10, 12));
    assert_eq!(out["id"], "abc");

    let finish = |reason: &str| {
        let a = json!({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]});
        to_openai(a.to_string().as_bytes(), "m", 1).unwrap().0["choices"][0]["finish_reason"].clone()
    };
    assert_eq!(finish("MAX_TOKENS"), "length");
    assert_eq!(finish("SAFETY"), "content_filter");
    assert_eq!(finish("RECITATION"), "content_filter");

    let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}});
    let (out, _) = to_openai(blocked.to_string().as_bytes(), "m", 1).unwrap();
    assert_eq!(out["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(out["choices"][0]["message"]["content"], Value::Null);
    assert!(to_openai(b"{}", "m", 1).is_err(), "no candidates and no block reason is a broken answer");
}

fn chunks(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// The shape of the reference's streamed example, fed in awkward pieces.
#[test]
fn sse_stream_becomes_openai_chunks() {
    let events = concat!(
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hmm\", \"thought\": true}], \"role\": \"model\"}}], \"usageMetadata\": {\"promptTokenCount\": 9}, \"modelVersion\": \"gemini-2.5-flash\", \"responseId\": \"r1\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hello\"}], \"role\": \"model\"}}]}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"look\", \"args\": {\"x\": 1}}}], \"role\": \"model\"}, \"finishReason\": \"STOP\"}], \"usageMetadata\": {\"promptTokenCount\": 9, \"candidatesTokenCount\": 6, \"thoughtsTokenCount\": 3, \"totalTokenCount\": 18}}\r\n\r\n",
    );
    let mut conv = Events::new("gemini-2.5-flash", true, 1);
    let mut out = BytesMut::new();
    for piece in events.as_bytes().chunks(11) {
        conv.feed(piece, &mut out).unwrap();
    }
    conv.finish(&mut out).unwrap();
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
    let chunks = chunks(&text);
    assert!(chunks.iter().all(|c| c["id"] == "r1" && c["object"] == "chat.completion.chunk"));
    let deltas: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"].get(0)).map(|c| &c["delta"]).collect();
    assert_eq!(deltas[0]["role"], "assistant");
    assert_eq!(deltas[1]["reasoning_content"], "Hmm");
    assert_eq!(deltas[2]["content"], "Hello");
    assert_eq!(deltas[3]["tool_calls"][0]["index"], 0);
    assert_eq!(deltas[3]["tool_calls"][0]["function"], json!({"name": "look", "arguments": "{\"x\":1}"}));
    let finish: Vec<&str> = chunks.iter().filter_map(|c| c["choices"][0]["finish_reason"].as_str()).collect();
    assert_eq!(finish, ["tool_calls"]);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!((usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64()), (Some(9), Some(9)));
    assert_eq!(conv.usage(), Some(crate::observe::Tokens { input: 9, output: 9 }));
}

#[test]
fn a_stream_cut_off_or_failing_is_an_error() {
    let mut cut = Events::new("m", false, 1);
    let mut out = BytesMut::new();
    cut.feed(b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hi\"}]}}]}\n\n", &mut out).unwrap();
    assert!(cut.finish(&mut out).is_err(), "no finishReason: the stream was cut off");
    let mut failing = Events::new("m", false, 1);
    let err = failing
        .feed(b"data: {\"error\": {\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}}\n\n", &mut out)
        .unwrap_err();
    match err {
        Error::Upstream { status, message, .. } => {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(message, "The model is overloaded.");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn errors_keep_status_and_message_and_retry_info_sets_the_cooldown() {
    let body = json!({"error": {"code": 429, "message": "You exceeded your current quota.", "status": "RESOURCE_EXHAUSTED",
    "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12.2s"},
    ]}});
    match Gemini.convert_error(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), body.to_string().as_bytes()) {
        Error::Upstream { status, message, retry_after, .. } => {
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(message, "You exceeded your current quota.");
            assert_eq!(retry_after, Some(13));
        }
        other => panic!("{other:?}"),
    }
    let over = json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
        "message": "The input token count (1196265) exceeds the maximum number of tokens allowed (1048575)."}});
    let err = Gemini.convert_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), over.to_string().as_bytes());
    let failure = crate::router::policy::Failure::of(&err).unwrap();
    assert!(failure.context_window, "context_window_fallbacks apply");
}

#[test]
fn embeddings_go_in_one_batch_and_come_back_as_a_list() {
    let openai = object(json!({"input": ["a", "b"], "dimensions": 3}));
    let body = embed::to_gemini(&openai, "text-embedding-004").unwrap();
    assert_eq!(
        body["requests"][1],
        json!({"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 3})
    );
    assert!(embed::to_gemini(&object(json!({"input": [[1, 2]]})), "m").is_err(), "token arrays are refused");
    let answer = json!({"embeddings": [{"values": [0.5, -1.0]}, {"values": [1.0, 0.0]}]});
    let out = embed::to_openai(answer.to_string().as_bytes(), "emb", false).unwrap();
    assert_eq!(out["data"][1], json!({"object": "embedding", "index": 1, "embedding": [1.0, 0.0]}));
    assert_eq!(out["model"], "emb");
    let out = embed::to_openai(answer.to_string().as_bytes(), "emb", true).unwrap();
    // 0.5f32 and -1.0f32, little-endian.
    assert_eq!(out["data"][0]["embedding"], "AAAAPwAAgL8=");
}
