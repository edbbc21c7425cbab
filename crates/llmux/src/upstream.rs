//! The pooled HTTP client llmux uses to reach engines: hyper-util's client (measurably cheaper per request
//! than higher-level clients, see `shared/notes/proxy-cost.md`) with rustls for `https://` bases.

use std::cell::OnceCell;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The engine client type.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How long establishing a TCP connection to an engine may take before the next deployment is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the shared client: keep-alive pool, TCP_NODELAY (streamed tokens leave at once), HTTP/1.1 and
/// HTTP/2 over TLS, plain HTTP for local engines.
pub fn client() -> anyhow::Result<HttpClient> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(https))
}

thread_local! {
    /// A connection worker's own client (see `server::workers`): its engine connections live on its thread.
    static LOCAL: OnceCell<HttpClient> = const { OnceCell::new() };
}

/// Makes the calling thread send engine requests through a client of its own (a connection worker does this
/// once, at start). Without it, or if building one fails, requests use the shared client.
pub fn use_local_client() {
    match client() {
        Ok(own) => LOCAL.with(|local| {
            let _ = local.set(own);
        }),
        Err(e) => tracing::warn!("a worker could not build its own engine client, it shares one: {e}"),
    }
}

/// Sends `request` through this thread's own client if it has one, else through `shared`.
pub fn send(shared: &HttpClient, request: http::Request<Full<Bytes>>) -> hyper_util::client::legacy::ResponseFuture {
    LOCAL.with(|local| local.get().unwrap_or(shared).request(request))
}
