//! How an engine is reached: its routes ([`Endpoint`]), the request URIs and headers made once per engine
//! ([`Wire`]), and joining a base URL with a route as LiteLLM does.

use std::sync::OnceLock;

use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Uri};

use crate::config::EngineTarget;
use crate::error::Error;
use crate::protocol::openai::Operation;

/// An engine route, relative to a deployment's `api_base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// OpenAI's route for the operation (`/chat/completions`, `/completions`, `/embeddings`).
    OpenAi(Operation),
    /// Ollama's `/api/chat`.
    OllamaChat,
    /// Ollama's `/api/generate`.
    OllamaGenerate,
    /// Ollama's `/api/embed`.
    OllamaEmbed,
    /// Ollama's older `/api/embeddings` (one prompt).
    OllamaEmbeddings,
    /// Anthropic's `/v1/messages`.
    AnthropicMessages,
}

impl Endpoint {
    const COUNT: usize = 8;

    /// Whether this is a route of Ollama's API.
    pub fn is_ollama(self) -> bool {
        matches!(
            self,
            Endpoint::OllamaChat | Endpoint::OllamaGenerate | Endpoint::OllamaEmbed | Endpoint::OllamaEmbeddings
        )
    }

    /// Whether this is a route of Anthropic's API.
    pub fn is_anthropic(self) -> bool {
        self == Endpoint::AnthropicMessages
    }

    /// The route appended to `api_base`.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::OpenAi(op) => op.route(),
            Endpoint::OllamaChat => "/api/chat",
            Endpoint::OllamaGenerate => "/api/generate",
            Endpoint::OllamaEmbed => "/api/embed",
            Endpoint::OllamaEmbeddings => "/api/embeddings",
            Endpoint::AnthropicMessages => "/v1/messages",
        }
    }

    /// Its slot in an engine's URI cache.
    fn slot(self) -> usize {
        match self {
            Endpoint::OpenAi(op) => op as usize,
            Endpoint::OllamaChat => 3,
            Endpoint::OllamaGenerate => 4,
            Endpoint::OllamaEmbed => 5,
            Endpoint::OllamaEmbeddings => 6,
            Endpoint::AnthropicMessages => 7,
        }
    }
}

/// An engine target's request URIs and `Authorization` value, made once instead of on every request (a URI
/// parse and two string builds each time, measured as a few percent of llmux's own CPU per request).
#[derive(Debug, Clone, Default)]
pub struct Wire(Box<WireCells>);

#[derive(Debug, Clone, Default)]
struct WireCells {
    uris: [OnceLock<Uri>; Endpoint::COUNT],
    /// `Basic <user:password>` from the URL, else `Bearer <api_key>` (marked sensitive), `None` without either;
    /// `Err` when the key cannot be a header.
    bearer: OnceLock<Result<Option<HeaderValue>, ()>>,
    /// `Host` for a plain-HTTP engine (which the client would otherwise format on every request).
    host: OnceLock<Option<HeaderValue>>,
}

impl EngineTarget {
    /// The absolute URI of `endpoint` on this engine.
    pub fn uri(&self, endpoint: Endpoint) -> Result<Uri, Error> {
        let cell = &self.wire.0.uris[endpoint.slot()];
        if let Some(uri) = cell.get() {
            return Ok(uri.clone());
        }
        let url = join_url(&self.api_base, endpoint.path());
        let uri = url
            .parse::<Uri>()
            .map_err(|e| Error::Internal(format!("engine URL {:?}: {e}", crate::redact::url(&url))))?;
        Ok(cell.get_or_init(|| uri).clone())
    }

    /// The headers of every request to this engine: JSON content, with a key `Authorization: Bearer` — or
    /// `Basic` when `api_base` carries `user:password@`, which wins over the key as in LiteLLM's HTTP client —
    /// and `litellm_params.extra_headers` (which may set `Authorization` themselves).
    pub fn request_headers(&self) -> Result<HeaderMap, Error> {
        let bearer = self.wire.0.bearer.get_or_init(|| {
            let value = match (&self.basic_auth, self.api_key.as_ref().filter(|k| !k.expose().is_empty())) {
                (Some(user), _) => {
                    use base64::Engine as _;
                    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user.expose()))
                }
                (None, Some(key)) => format!("Bearer {}", key.expose()),
                (None, None) => return Ok(None),
            };
            HeaderValue::from_str(&value).map_err(|_| ()).map(|mut v| {
                v.set_sensitive(true);
                Some(v)
            })
        });
        let bearer = bearer
            .as_ref()
            .map_err(|()| Error::Internal("the configured api_key is not a valid header value".to_owned()))?;
        let host = self.wire.0.host.get_or_init(|| plain_http_host(&self.api_base));
        let mut headers = HeaderMap::with_capacity(3 + self.extra_headers.len());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(value) = bearer {
            headers.insert(AUTHORIZATION, value.clone());
        }
        if let Some(value) = host {
            headers.insert(HOST, value.clone());
        }
        // Set last, so an `Authorization` written there wins; the body's type and the host stay llmux's.
        for (name, value) in self.extra_headers.iter().filter(|(n, _)| *n != CONTENT_TYPE && *n != HOST) {
            headers.insert(name.clone(), value.clone());
        }
        Ok(headers)
    }
}

/// The `Host` header for an `http://` base: its host, and its port unless 80. `None` for `https://` bases,
/// where the client decides (HTTP/2 carries the authority itself).
fn plain_http_host(api_base: &str) -> Option<HeaderValue> {
    let uri = api_base.parse::<Uri>().ok()?;
    if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
        return None;
    }
    let host = uri.host()?;
    match uri.port_u16() {
        Some(port) if port != 80 => HeaderValue::from_str(&format!("{host}:{port}")).ok(),
        _ => HeaderValue::from_str(host).ok(),
    }
}

/// Joins a base URL and a route, as LiteLLM's `ensure_api_route`: a base that already ends with the route is
/// used as is. The route goes onto the path, before a query the base carries (`…/v1?api-version=…` becomes
/// `…/v1/chat/completions?api-version=…`).
pub fn join_url(base: &str, route: &str) -> String {
    let (base, query) = match base.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (base, None),
    };
    let base = base.trim_end_matches('/');
    let mut url = if base.ends_with(route) { base.to_owned() } else { format!("{base}{route}") };
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(query);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_for_plain_http_engines_only() {
        let host = |base: &str| plain_http_host(base).map(|v| v.to_str().unwrap_or("").to_owned());
        assert_eq!(host("http://gpu-box:11434").as_deref(), Some("gpu-box:11434"));
        assert_eq!(host("http://gpu-box/v1").as_deref(), Some("gpu-box"));
        assert_eq!(host("http://gpu-box:80/v1").as_deref(), Some("gpu-box"));
        assert_eq!(host("http://[::1]:8080/v1").as_deref(), Some("[::1]:8080"));
        assert_eq!(host("https://api.openai.com/v1"), None);
    }

    #[test]
    fn routes_go_before_the_query() {
        assert_eq!(
            join_url("http://e/v1?api-version=2&k=x", "/chat/completions"),
            "http://e/v1/chat/completions?api-version=2&k=x"
        );
        assert_eq!(join_url("http://e/v1/", "/embeddings"), "http://e/v1/embeddings");
        assert_eq!(join_url("http://e/api/chat?x=1", "/api/chat"), "http://e/api/chat?x=1");
    }
}
