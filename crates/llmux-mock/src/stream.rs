//! Streaming responses: paced NDJSON (Ollama) and SSE (OpenAI) bodies, with
//! the mid-stream faults.
//!
//! The protocol modules turn a [`Plan`](crate::engine::Plan) into a list of
//! [`Frame`]s; [`respond`] sends them from a separate task through a small
//! channel, so each frame is written (and flushed) when it is due rather
//! than all at once, and a client that hangs up is noticed at the next send.

use std::io;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderValue};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::faults::Fault;
use crate::state::Ctx;

/// One chunk of a streamed body, already framed for the wire.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    /// The bytes to write.
    pub bytes: Bytes,
    /// Whether the frame is a generated token and so waits one token
    /// interval; bookkeeping frames (the final stats, `[DONE]`) do not.
    pub paced: bool,
}

/// How frames are delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// One JSON object per line (Ollama).
    Ndjson,
    /// Server-sent events, `data: {json}\n\n` (OpenAI).
    Sse,
    /// Server-sent events named by their JSON's `type`, `event: <type>\ndata: {json}\n\n` (Anthropic).
    NamedSse,
}

impl Framing {
    /// A frame carrying `value`.
    pub(crate) fn frame(self, value: &Value, paced: bool) -> Frame {
        let json = value.to_string();
        let bytes = match self {
            Framing::Ndjson => format!("{json}\n"),
            Framing::Sse => format!("data: {json}\n\n"),
            Framing::NamedSse => {
                let kind = value.get("type").and_then(Value::as_str).unwrap_or("message");
                format!("event: {kind}\ndata: {json}\n\n")
            }
        };
        Frame { bytes: Bytes::from(bytes), paced }
    }

    /// The SSE end marker.
    pub(crate) fn done() -> Frame {
        Frame { bytes: Bytes::from_static(b"data: [DONE]\n\n"), paced: false }
    }

    fn content_type(self) -> &'static str {
        match self {
            Framing::Ndjson => "application/x-ndjson",
            Framing::Sse | Framing::NamedSse => "text/event-stream",
        }
    }

    /// A line that is framed correctly but whose JSON is cut off.
    fn garbage(self) -> Bytes {
        Bytes::from_static(match self {
            Framing::Ndjson => b"{\"model\":\"mock\",\"message\":{\"role\":\"assist\n",
            Framing::Sse => b"data: {\"id\":\"chatcmpl-broken\",\"choices\":[{\"delta\n\n",
            Framing::NamedSse => b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"ind\n\n",
        })
    }
}

/// A streaming 200 response that sends `frames` paced by the request's
/// timing and subject to its mid-stream fault.
pub(crate) fn respond(ctx: &Ctx, framing: Framing, frames: Vec<Frame>) -> Response {
    // Capacity 1 keeps the writer at most one frame ahead of the socket, so
    // pacing is real and a vanished client is noticed promptly.
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(1);
    tokio::spawn(write_frames(ctx.clone(), framing, frames, tx));

    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        if item.is_err() {
            // Returning Pending once makes hyper flush what it already has
            // before it sees the error and closes the connection; otherwise
            // the last good chunks could be lost with the buffer.
            tokio::task::yield_now().await;
        }
        Some((item, rx))
    });
    let mut resp = Response::new(Body::from_stream(body));
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(framing.content_type()));
    if framing != Framing::Ndjson {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    resp
}

/// Sends `frames` into `tx` at the pace the request asks for.
async fn write_frames(ctx: Ctx, framing: Framing, frames: Vec<Frame>, tx: mpsc::Sender<Result<Bytes, io::Error>>) {
    let timing = ctx.timing();
    // Never let the drop fault reach the last frame: the point is that the
    // client misses the end of the stream.
    let drop_at = match ctx.fault {
        Fault::DropAfterChunks(n) => Some((n as usize).min(frames.len().saturating_sub(1))),
        _ => None,
    };
    let malformed = ctx.fault == Fault::Malformed;
    for (i, frame) in frames.into_iter().enumerate() {
        if drop_at == Some(i) {
            ctx.track.mark_faulted();
            let _ =
                tx.send(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "mock fault: drop_after_chunks"))).await;
            return;
        }
        let delay = if i == 0 {
            timing.ttft
        } else if frame.paced {
            timing.interval
        } else {
            std::time::Duration::ZERO
        };
        if !delay.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                // The client hung up while we were "thinking"; the body was
                // dropped and the stats already count the cancellation.
                () = tx.closed() => return,
            }
        }
        let bytes = if malformed && i == 1 { framing.garbage() } else { frame.bytes };
        if tx.send(Ok(bytes)).await.is_err() {
            return;
        }
        if malformed && i == 1 {
            // The stream ends cleanly at the HTTP level right after the
            // broken line, so only the content is wrong.
            ctx.track.mark_faulted();
            return;
        }
    }
}
