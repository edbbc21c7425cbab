//! A deliberately tiny HTTP/1.1 client over a raw `TcpStream`.
//!
//! Raw sockets (rather than a full client library) let the tests see exactly
//! what the mock puts on the wire: individual chunks, a missing chunked
//! terminator, a connection closed without a response.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound for any single test request, so a bug fails instead of hanging.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A response as read off the wire.
#[derive(Debug, Default)]
pub struct Resp {
    /// Status code; 0 when no status line arrived.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunks joined).
    pub body: Vec<u8>,
    /// Each HTTP chunk, for chunked bodies.
    pub chunks: Vec<Vec<u8>>,
    /// Whether the body ended properly (terminating chunk / full length).
    pub complete: bool,
    /// Bytes received in total, head included.
    pub raw_len: usize,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// NDJSON lines parsed as JSON.
    pub fn ndjson(&self) -> Vec<Value> {
        self.text()
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
            .collect()
    }

    /// SSE `data:` payloads, `[DONE]` included as a string.
    pub fn sse(&self) -> Vec<String> {
        self.text()
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.strip_prefix("data: ").unwrap_or_else(|| panic!("not an SSE data event: {e:?}")).to_owned())
            .collect()
    }
}

/// Sends one request with `Connection: close` and reads until the server
/// closes; a reset after some data counts as the end of the data.
pub async fn send(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> Resp {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(&body);
    // A refused connection may already be closed; the read tells the story.
    let _ = stream.write_all(head.as_bytes()).await;
    let raw = read_all(&mut stream, TIMEOUT).await;
    parse(&raw)
}

pub async fn get(addr: SocketAddr, path: &str) -> Resp {
    send(addr, "GET", path, None, &[]).await
}

pub async fn post(addr: SocketAddr, path: &str, body: &Value) -> Resp {
    send(addr, "POST", path, Some(body), &[]).await
}

/// Reads until EOF, error or `timeout`; panics on timeout.
pub async fn read_all(stream: &mut TcpStream, timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => panic!("timed out reading; got {:?}", String::from_utf8_lossy(&raw)),
            Ok(Ok(0)) | Ok(Err(_)) => return raw,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

/// Parses a raw HTTP/1.1 response, tolerating truncation.
pub fn parse(raw: &[u8]) -> Resp {
    let mut resp = Resp { raw_len: raw.len(), ..Resp::default() };
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return resp;
    };
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    resp.status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            resp.headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let rest = &raw[split + 4..];
    if resp.header("transfer-encoding") == Some("chunked") {
        let mut pos = 0;
        while let Some(eol) = rest[pos..].windows(2).position(|w| w == b"\r\n") {
            let size_text = String::from_utf8_lossy(&rest[pos..pos + eol]).into_owned();
            let Ok(size) = usize::from_str_radix(size_text.trim(), 16) else {
                break;
            };
            pos += eol + 2;
            if size == 0 {
                resp.complete = true;
                break;
            }
            if pos + size > rest.len() {
                resp.body.extend_from_slice(&rest[pos..]);
                break;
            }
            resp.chunks.push(rest[pos..pos + size].to_vec());
            resp.body.extend_from_slice(&rest[pos..pos + size]);
            pos += size + 2;
        }
    } else if let Some(len) = resp.header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        resp.body = rest[..len.min(rest.len())].to_vec();
        resp.complete = rest.len() >= len;
    } else {
        resp.body = rest.to_vec();
        resp.complete = true;
    }
    resp
}
