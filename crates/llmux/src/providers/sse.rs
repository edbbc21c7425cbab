//! Reading an engine's server-sent events: where one event ends in the bytes received so far, and the data it
//! carries (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>). Shared
//! by the providers whose engines stream SSE in their own shapes (Anthropic's named events, Gemini's `data:` lines),
//! and the OpenAI chunk both turn each event into.

use serde_json::{json, Value};

/// One OpenAI `chat.completion.chunk` of choice 0 carrying `delta`, with `finish` as its `finish_reason`.
pub fn chat_chunk(id: &str, created: u64, model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })
}

/// Where the first complete event in `buf` ends: (its length, the length with the blank line after it).
pub fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = memchr::memmem::find(buf, b"\n\n").map(|at| (at, at + 2));
    let crlf = memchr::memmem::find(buf, b"\r\n\r\n").map(|at| (at, at + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// The `data:` lines of one event, joined.
pub fn data_of(event: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(rest.strip_prefix(b" ").unwrap_or(rest));
        }
    }
    data
}
