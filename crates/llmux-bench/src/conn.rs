//! One HTTP/1.1 keep-alive connection per worker (hyper's low-level client): no pool, no extra layers, so the
//! generator's own cost per request stays small next to the contender's.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What to send: one address, one or more (path, body) pairs used round-robin, common headers.
#[derive(Debug)]
pub struct Target {
    pub addr: SocketAddr,
    reqs: Vec<(Uri, Bytes)>,
    headers: HeaderMap,
}

impl Target {
    /// `urls` and `bodies` pair up by position; a single body is used for every URL. A body is JSON text, or
    /// `@FILE`. Headers are `Name: value`.
    pub fn new(urls: &[String], bodies: &[String], headers: &[String]) -> anyhow::Result<Self> {
        if urls.is_empty() {
            bail!("no --url");
        }
        if bodies.len() > 1 && bodies.len() != urls.len() {
            bail!("give one --body, or one per --url ({} urls, {} bodies)", urls.len(), bodies.len());
        }
        let mut addr = None;
        let mut authority = None;
        let mut reqs = Vec::new();
        for (i, url) in urls.iter().enumerate() {
            let uri: Uri = url.parse().with_context(|| format!("bad url {url}"))?;
            if uri.scheme_str() != Some("http") {
                bail!("only http:// urls: {url}");
            }
            let auth = uri.authority().context("url without host")?.clone();
            let host_port = format!("{}:{}", auth.host(), auth.port_u16().unwrap_or(80));
            let a = host_port.to_socket_addrs()?.next().context("url host does not resolve")?;
            if addr.is_some_and(|prev| prev != a) {
                bail!("all --url must share one host:port");
            }
            addr = Some(a);
            authority = Some(auth);
            let path: Uri = uri.path_and_query().map_or("/", |p| p.as_str()).parse()?;
            let body = match bodies.get(i).or(bodies.first()) {
                None => Bytes::new(),
                Some(b) => match b.strip_prefix('@') {
                    Some(file) => Bytes::from(std::fs::read(file).with_context(|| format!("reading {file}"))?),
                    None => Bytes::from(b.clone()),
                },
            };
            reqs.push((path, body));
        }
        let mut map = HeaderMap::new();
        map.insert(HOST, HeaderValue::from_str(authority.context("no url")?.as_str())?);
        map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for h in headers {
            let (name, value) = h.split_once(':').with_context(|| format!("header without ':': {h}"))?;
            map.insert(HeaderName::from_bytes(name.trim().as_bytes())?, HeaderValue::from_str(value.trim())?);
        }
        Ok(Self { addr: addr.context("no url")?, reqs, headers: map })
    }

    /// The `i`-th request of the round-robin.
    pub fn request(&self, i: u64) -> Request<Full<Bytes>> {
        let (uri, body) = &self.reqs[(i % self.reqs.len() as u64) as usize];
        let method = if body.is_empty() { Method::GET } else { Method::POST };
        let mut req = Request::new(Full::new(body.clone()));
        *req.method_mut() = method;
        *req.uri_mut() = uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// A connected HTTP/1.1 client connection.
pub type Conn = SendRequest<Full<Bytes>>;

/// Opens a connection; its driver runs as a local task.
pub async fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// What one request/response exchange gave.
#[derive(Debug)]
pub struct Outcome {
    pub status: u16,
    /// When the last byte of the body arrived.
    pub end: Instant,
    pub bytes: u64,
}

/// Sends `req` on `conn` and reads the whole body, calling `on_frame(arrival, len)` for every non-empty data
/// frame. Fails on connection errors and after `timeout`.
pub async fn exchange(
    conn: &mut Conn,
    req: Request<Full<Bytes>>,
    timeout: Duration,
    mut on_frame: impl FnMut(Instant, usize),
) -> anyhow::Result<Outcome> {
    let work = async {
        conn.ready().await?;
        let resp = conn.send_request(req).await?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut bytes = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                if !data.is_empty() {
                    on_frame(Instant::now(), data.len());
                    bytes += data.len() as u64;
                }
            }
        }
        anyhow::Ok(Outcome { status, end: Instant::now(), bytes })
    };
    tokio::time::timeout(timeout, work).await.context("timed out")?
}
