//! Responses requests → chat requests: input items, previous responses, tools, formats, options.

use super::*;
use crate::protocol::openai::parse_body;
use crate::protocol::responses::Stored;

fn chat(body: Value) -> Result<(ChatRequest, Turn), Error> {
    chat_with(body, &Store::new())
}

fn chat_with(body: Value, store: &Store) -> Result<(ChatRequest, Turn), Error> {
    let req: CreateRequest = parse_body(body.to_string().as_bytes())?;
    to_chat(req, store)
}

fn roles(c: &ChatRequest) -> Vec<&str> {
    c.messages.iter().map(|m| m.role.as_str()).collect()
}

#[test]
fn a_string_input_with_instructions_and_options() {
    let (c, turn) = chat(json!({
        "model": "m", "input": "hi", "instructions": "be brief", "max_output_tokens": 7, "temperature": 0.2,
        "top_p": 0.9, "user": "u1", "stream": true, "reasoning": {"effort": "low"}, "metadata": {"k": "v"},
        "store": false, "unknown_field": 1, "num_retries": 2,
    }))
    .unwrap();
    assert_eq!(roles(&c), ["system", "user"]);
    assert_eq!(c.max_tokens, Some(7));
    assert_eq!(c.reasoning_effort.as_deref(), Some("low"));
    assert!(c.stream_options.as_ref().is_some_and(|o| o.include_usage));
    assert_eq!(c.extra.get("user"), Some(&json!("u1")));
    assert_eq!(c.extra.get("num_retries"), Some(&json!(2)));
    assert!(!c.extra.contains_key("unknown_field") && !c.extra.contains_key("metadata"));
    assert_eq!(turn.base.metadata, json!({"k": "v"}));
    assert!(!turn.store);
    assert!(turn.id.starts_with("resp_"));
    assert_eq!(turn.conversation.len(), 1, "instructions are not part of the stored conversation");
}

#[test]
fn items_map_to_chat_messages() {
    let (c, _) = chat(json!({"model": "m", "input": [
        {"role": "developer", "content": "dev rules"},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
        ]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "hmm"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "I will"}, {"type": "output_text", "text": " call"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{\"a\":1}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}", "namespace": "ns"},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
    ]}))
    .unwrap();
    assert_eq!(roles(&c), ["system", "user", "assistant", "tool", "tool"]);
    let user = &c.messages[1];
    let Some(MessageContent::Parts(parts)) = &user.content else { panic!("{user:?}") };
    assert_eq!(parts[1].image_url.as_ref().map(|u| u.url()), Some("data:image/png;base64,AAAA"));
    let assistant = &c.messages[2];
    assert_eq!(assistant.content.as_ref().map(|c| c.text().into_owned()).as_deref(), Some("I will call"));
    assert_eq!(assistant.reasoning_content.as_deref(), Some("hmm"));
    let calls = assistant.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 2, "consecutive calls merge into one assistant message");
    assert_eq!(calls[1].function.name, "ns__g");
    assert_eq!(c.messages[3].tool_call_id.as_deref(), Some("c1"));
    assert_eq!(c.messages[4].content.as_ref().map(|c| c.text().into_owned()).as_deref(), Some("two"));
}

#[test]
fn bad_items_are_400s_naming_the_field() {
    let err =
        chat(json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}))
            .unwrap_err();
    assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
    assert!(matches!(&err, Error::InvalidRequest { param: Some(p), .. } if p == "input[0].content[0].file_id"));
    let err = chat(json!({"model": "m", "input": [{"role": "critic", "content": "x"}]})).unwrap_err();
    assert!(matches!(&err, Error::InvalidRequest { param: Some(p), .. } if p == "input[0].role"));
    let err = chat(json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_x"}]})).unwrap_err();
    assert!(matches!(&err, Error::InvalidRequest { param: Some(p), .. } if p == "input[0].id"));
    let err = chat(json!({"model": "m", "input": "x", "text": {"format": {"type": "xml"}}})).unwrap_err();
    assert!(matches!(&err, Error::InvalidRequest { param: Some(p), .. } if p == "text.format.type"));
}

#[test]
fn tools_flat_namespaced_custom_and_hosted() {
    let (c, turn) = chat(json!({"model": "m", "input": "x", "tool_choice": {"type": "function", "name": "f"},
        "parallel_tool_calls": false, "tools": [
        {"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}, "strict": true},
        {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "g"}]},
        {"type": "custom", "name": "apply_patch", "description": "patch", "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
        {"type": "web_search"}, {"type": "local_shell"},
    ]}))
    .unwrap();
    let tools = c.tools.unwrap();
    let names: Vec<&str> = tools.iter().filter_map(|t| t["function"]["name"].as_str()).collect();
    assert_eq!(names, ["f", "ns__g", "apply_patch"]);
    assert_eq!(tools[0]["function"]["strict"], json!(true));
    assert_eq!(tools[2]["function"]["parameters"]["required"], json!(["input"]));
    assert!(tools[2]["function"]["description"].as_str().unwrap().contains("start: x"));
    assert_eq!(c.tool_choice, Some(json!({"type": "function", "function": {"name": "f"}})));
    assert_eq!(c.extra.get("parallel_tool_calls"), Some(&json!(false)));
    assert!(turn.tools.custom.contains("apply_patch"));
    assert_eq!(turn.tools.namespaced.get("ns__g"), Some(&("ns".to_owned(), "g".to_owned())));
    // Only hosted tools: no tools and no tool_choice reach the engine.
    let (c, _) =
        chat(json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}], "tool_choice": "auto"})).unwrap();
    assert!(c.tools.is_none() && c.tool_choice.is_none());
}

#[test]
fn text_format_becomes_response_format() {
    let (c, _) = chat(json!({"model": "m", "input": "x", "text": {"format": {
        "type": "json_schema", "name": "person", "schema": {"type": "object"}, "strict": true}}}))
    .unwrap();
    assert_eq!(
        c.response_format,
        Some(
            json!({"type": "json_schema", "json_schema": {"name": "person", "schema": {"type": "object"}, "strict": true}})
        )
    );
}

#[test]
fn previous_response_id_prepends_the_stored_conversation() {
    let store = Store::new();
    let (_, first) = chat_with(json!({"model": "m", "input": "first", "instructions": "sys"}), &store).unwrap();
    let mut conversation = first.conversation.clone();
    let mut answer = message("assistant", Some(MessageContent::Text("answer one".into())));
    answer.tool_calls = None;
    conversation.push(answer);
    store.put(
        first.id.clone(),
        Stored::new(crate::protocol::responses::store::raw_json(&json!({"output": []})), conversation, vec![]),
    );
    let (c, turn) = chat_with(
        json!({"model": "m", "input": "second", "previous_response_id": first.id, "instructions": "new"}),
        &store,
    )
    .unwrap();
    let texts: Vec<String> =
        c.messages.iter().map(|m| m.content.as_ref().map(|c| c.text().into_owned()).unwrap_or_default()).collect();
    assert_eq!(texts, ["new", "first", "answer one", "second"], "old instructions are not carried over");
    assert_eq!(turn.conversation.len(), 3);
    let err = chat_with(json!({"model": "m", "input": "x", "previous_response_id": "resp_nope"}), &store).unwrap_err();
    assert_eq!(err.to_string(), "Previous response with id 'resp_nope' not found.");
    assert!(matches!(&err, Error::InvalidRequest { param: Some(p), .. } if p == "previous_response_id"));
}

#[test]
fn item_references_resolve_from_the_store() {
    let store = Store::new();
    store.put(
        "resp_a".into(),
        Stored::new(
            crate::protocol::responses::store::raw_json(
                &json!({"output": [{"type": "function_call", "id": "fc_1", "call_id": "c9", "name": "f", "arguments": "{}"}]}),
            ),
            vec![],
            vec![],
        ),
    );
    let (c, _) = chat_with(
        json!({"model": "m", "input": [{"role": "user", "content": "x"}, {"type": "item_reference", "id": "fc_1"},
            {"type": "function_call_output", "call_id": "c9", "output": "ok"}]}),
        &store,
    )
    .unwrap();
    assert_eq!(roles(&c), ["user", "assistant", "tool"]);
    assert_eq!(c.messages[1].tool_calls.as_ref().unwrap()[0].id.as_deref(), Some("c9"));
}
