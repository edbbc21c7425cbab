//! Test harness: llmux served in-process on a loopback port, in front of in-process mock engines.

#![allow(dead_code)]
// Test code: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod process;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use llmux::lifecycle::Live;
use llmux_mock::{MockConfig, MockHandle, MockServer};

/// A running llmux.
pub struct Llmux {
    pub addr: SocketAddr,
    /// `http://ADDR`, or `https://localhost:PORT` for a TLS client.
    base: String,
    client: llmux::upstream::HttpClient,
}

/// A response read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
    }
}

pub async fn mock(name: &str, models: &[&str]) -> MockHandle {
    mock_with(MockConfig::new(name, models)).await
}

pub async fn mock_with(config: MockConfig) -> MockHandle {
    MockServer::start(config, SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("mock starts")
}

impl Llmux {
    pub async fn start(yaml: &str) -> Llmux {
        away_from_a_minute_boundary().await;
        let (config, _) = llmux::config::load_str(yaml, &|_| None).unwrap_or_else(|d| panic!("config:\n{d}"));
        let live = Live::new(config, None, llmux::upstream::client().unwrap(), None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // The production serving path (connection workers, the gateway), one worker.
        tokio::spawn(llmux::server::serve_on(
            live,
            listener,
            std::future::pending(),
            std::future::pending(),
            std::time::Duration::ZERO,
            1,
        ));
        Llmux::at(addr)
    }

    /// A client for an llmux already listening on `addr` (e.g. a process).
    pub fn at(addr: SocketAddr) -> Llmux {
        Llmux { addr, base: format!("http://{addr}"), client: llmux::upstream::client().unwrap() }
    }

    /// An HTTPS client for the llmux on `addr` that trusts only the certificate `trusted` (DER).
    pub fn at_tls(addr: SocketAddr, trusted: &[u8]) -> Llmux {
        Llmux { addr, base: format!("https://localhost:{}", addr.port()), client: https_client(trusted) }
    }

    fn request(&self, path: &str, body: &str, key: Option<&str>) -> Request<Full<Bytes>> {
        let mut builder = Request::post(format!("{}{path}", self.base)).header("content-type", "application/json");
        if let Some(key) = key {
            builder = builder.header("authorization", format!("Bearer {key}"));
        }
        builder.body(Full::new(Bytes::from(body.to_owned()))).unwrap()
    }

    pub async fn post(&self, path: &str, body: &str) -> Reply {
        self.post_key(path, body, None).await
    }

    pub async fn post_key(&self, path: &str, body: &str, key: Option<&str>) -> Reply {
        let response = self.client.request(self.request(path, body, key)).await.expect("llmux answers");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply { status: parts.status, headers: parts.headers, body }
    }

    /// Runs a health probe round now and waits for it to finish (`POST /llmux/health/round`), instead of
    /// sleeping through a `health_check_interval`; returns the hosts as `/health/hosts` lists them then.
    pub async fn health_round(&self, key: Option<&str>) -> serde_json::Value {
        let reply = self.post_key("/llmux/health/round", "", key).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    }

    /// Runs the config file watcher's round now (`POST /llmux/config/check`): when it returns, the files as they
    /// are now have been looked at (and reloaded, or refused), without sleeping through the poll interval.
    pub async fn watch_round(&self, key: Option<&str>) -> Reply {
        self.post_key("/llmux/config/check", "", key).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.get_key(path, None).await
    }

    pub async fn get_key(&self, path: &str, key: Option<&str>) -> Reply {
        self.try_get_key(path, key).await.expect("llmux answers")
    }

    /// A GET that may fail to connect or be answered.
    pub async fn try_get(&self, path: &str) -> Result<Reply, String> {
        self.try_get_key(path, None).await
    }

    async fn try_get_key(&self, path: &str, key: Option<&str>) -> Result<Reply, String> {
        let mut builder = Request::get(format!("{}{path}", self.base));
        if let Some(key) = key {
            builder = builder.header("authorization", format!("Bearer {key}"));
        }
        let req = builder.body(Full::new(Bytes::new())).unwrap();
        let response = self.client.request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply { status: parts.status, headers: parts.headers, body })
    }

    /// Starts a stream and returns its body after the first frame, so a test can drop it mid-way.
    pub async fn stream_first_frame(&self, path: &str, body: &str) -> (Bytes, hyper::body::Incoming) {
        self.stream_first_frame_key(path, body, None).await
    }

    /// [`Llmux::stream_first_frame`] with an API key.
    pub async fn stream_first_frame_key(
        &self,
        path: &str,
        body: &str,
        key: Option<&str>,
    ) -> (Bytes, hyper::body::Incoming) {
        let response = self.client.request(self.request(path, body, key)).await.expect("llmux answers");
        let mut body = response.into_body();
        loop {
            let frame = body.frame().await.expect("a first frame").expect("frame");
            if let Ok(data) = frame.into_data() {
                return (data, body);
            }
        }
    }

    /// Streams a request, returning the headers and each body frame with its arrival time.
    pub async fn stream(&self, path: &str, body: &str) -> (StatusCode, HeaderMap, Vec<(Instant, Bytes)>) {
        let response = self.client.request(self.request(path, body, None)).await.expect("llmux answers");
        let (parts, mut body) = response.into_parts();
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("stream frame").into_data() {
                frames.push((Instant::now(), data));
            }
        }
        (parts.status, parts.headers, frames)
    }
}

/// A TLS client config that trusts only the certificate `trusted` (DER).
pub fn tls_trusting(trusted: &[u8]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(trusted.to_vec())).unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// An HTTPS client that trusts only the certificate `trusted` (DER).
pub fn https_client(trusted: &[u8]) -> llmux::upstream::HttpClient {
    let tls = tls_trusting(trusted);
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https)
}

/// The `data:` payloads of an SSE byte stream.
pub fn sse_events(frames: &[(Instant, Bytes)]) -> Vec<String> {
    let all: Vec<u8> = frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
    String::from_utf8_lossy(&all)
        .split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: ").map(str::to_owned))
        .collect()
}

/// The concatenated `delta.content` of SSE chat chunks.
pub fn stream_text(events: &[String]) -> String {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect()
}

pub fn chat_body(model: &str, stream: bool) -> String {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello"}],
    })
    .to_string()
}

/// The inference calls an engine received (POSTs), leaving out health probes (llmux probes a host right after it
/// made it load a model, and asks Ollama's `/api/show` about models it has not seen) and the loads llmux sets off
/// itself (an `/api/generate` without a prompt, see [`preloads`]).
pub fn posts(mock: &MockHandle) -> Vec<llmux_mock::RecordedRequest> {
    mock.requests().into_iter().filter(|r| r.method == "POST" && r.path != "/api/show" && !is_preload(r)).collect()
}

/// The model loads llmux set off on an Ollama engine (an `/api/generate` without a prompt).
pub fn preloads(mock: &MockHandle) -> Vec<llmux_mock::RecordedRequest> {
    mock.requests().into_iter().filter(is_preload).collect()
}

fn is_preload(r: &llmux_mock::RecordedRequest) -> bool {
    r.path == "/api/generate" && r.body.get("prompt").and_then(|p| p.as_str()).is_none_or(str::is_empty)
}

/// Polls `check` until it holds and returns how long that took; fails the test after `within`.
pub async fn eventually(
    what: &str,
    within: std::time::Duration,
    mut check: impl AsyncFnMut() -> bool,
) -> std::time::Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Waits, when a UTC minute ends within the next 8 s, until it has: failure and usage counters are per UTC minute
/// (as LiteLLM's), so a test that counts failures must not straddle two minutes.
pub async fn away_from_a_minute_boundary() {
    let into = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 60_000;
    if into > 52_000 {
        tokio::time::sleep(std::time::Duration::from_millis(u64::try_from(60_200 - into).unwrap())).await;
    }
}
