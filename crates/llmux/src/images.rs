//! Remote images for engines that only take inline ones: Ollama's `images` is base64, so an `http(s)` URL in a
//! chat request's `image_url` part is fetched by llmux (once per request, however many attempts follow) and
//! inlined as a data URL — as LiteLLM does for Ollama.
//!
//! A client must not be able to make llmux read the home network for it: every address a URL resolves to (and
//! every redirect's) must be public unless `llmux_settings.images.allow_private_networks` is set; size and time
//! are bounded (`max_mb`, `timeout`); at most [`MAX_REDIRECTS`] redirects are followed.

use std::net::IpAddr;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, LOCATION, USER_AGENT};
use http::{HeaderValue, Method, Uri};
use http_body_util::Full;
use serde_json::Value;

use crate::body::ReadError;
use crate::config::ImageFetch;
use crate::error::Error;
use crate::upstream::HttpClient;

/// Redirects followed for one image.
pub const MAX_REDIRECTS: usize = 3;

/// Whether `body` may hold a remote image URL (a cheap scan before any parse; false positives are fine).
pub fn may_have_remote(body: &[u8]) -> bool {
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    has(b"image_url") && (has(b"\"http://") || has(b"\"https://"))
}

/// `body` (an OpenAI chat request) with every `http(s)` `image_url` replaced by a data URL of the fetched image,
/// or `None` when it has none. A failed fetch is the client's error (400 naming the part).
pub async fn inline_remote(body: &[u8], client: &HttpClient, policy: &ImageFetch) -> Result<Option<Bytes>, Error> {
    let mut request: Value = crate::protocol::openai::parse_body(body)?;
    let Some(messages) = request.get_mut("messages").and_then(Value::as_array_mut) else { return Ok(None) };
    let mut changed = false;
    for (i, message) in messages.iter_mut().enumerate() {
        let Some(parts) = message.get_mut("content").and_then(Value::as_array_mut) else { continue };
        for (j, part) in parts.iter_mut().enumerate() {
            if part.get("type").and_then(Value::as_str) != Some("image_url") {
                continue;
            }
            let Some(slot) = part.get_mut("image_url") else { continue };
            let url = match slot {
                Value::String(s) => s.clone(),
                Value::Object(o) => o.get("url").and_then(Value::as_str).unwrap_or_default().to_owned(),
                _ => continue,
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                continue;
            }
            let data_url = fetch(&url, client, policy).await.map_err(|why| {
                Error::invalid(
                    format!("Could not fetch the image at {}: {why}", shown(&url)),
                    Some(&format!("messages[{i}].content[{j}].image_url")),
                )
            })?;
            match slot {
                Value::Object(o) => {
                    o.insert("url".into(), Value::String(data_url));
                }
                other => *other = Value::String(data_url),
            }
            changed = true;
        }
    }
    if !changed {
        return Ok(None);
    }
    serde_json::to_vec(&request)
        .map(|v| Some(Bytes::from(v)))
        .map_err(|e| Error::Internal(format!("serialising a request: {e}")))
}

/// A URL as error messages show it: without its query, which may carry a signature or a token.
fn shown(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// Fetches one image within the policy and returns it as a data URL; the error says why not.
async fn fetch(url: &str, client: &HttpClient, policy: &ImageFetch) -> Result<String, String> {
    match tokio::time::timeout(policy.timeout, fetch_within(url, client, policy)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no complete answer within {:?}", policy.timeout)),
    }
}

async fn fetch_within(url: &str, client: &HttpClient, policy: &ImageFetch) -> Result<String, String> {
    let mut uri: Uri = url.parse().map_err(|e| format!("not a valid URL ({e})"))?;
    for _ in 0..=MAX_REDIRECTS {
        check_destination(&uri, policy.allow_private).await?;
        let mut request = http::Request::new(Full::new(Bytes::new()));
        *request.method_mut() = Method::GET;
        *request.uri_mut() = uri.clone();
        request.headers_mut().insert(USER_AGENT, HeaderValue::from_static("llmux"));
        if uri.scheme() == Some(&http::uri::Scheme::HTTP) {
            if let Some(authority) = uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
                request.headers_mut().insert(HOST, authority);
            }
        }
        let response = crate::upstream::send(client, request).await.map_err(|e| format!("{e}"))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| format!("a {status} without a Location"))?;
            uri = redirect_target(&uri, location)?;
            continue;
        }
        if !status.is_success() {
            return Err(format!("the server answered {status}"));
        }
        let declared = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = match crate::body::read_whole(response.into_body(), policy.max_bytes).await {
            Ok(b) => b,
            Err(ReadError::TooLarge) => return Err(format!("larger than {} bytes", policy.max_bytes)),
            Err(ReadError::Body(e)) => return Err(format!("reading it failed: {e}")),
        };
        let mime = sniff(&bytes)
            .or_else(|| declared.as_deref().filter(|t| t.starts_with("image/")).map(mime_only))
            .ok_or_else(|| "it is not an image".to_owned())?;
        let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
        return Ok(format!("data:{mime};base64,{data}"));
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

/// A redirect's target, absolute (a relative `Location` is resolved against `base`); only http(s).
fn redirect_target(base: &Uri, location: &str) -> Result<Uri, String> {
    let target: Uri = location.parse().map_err(|e| format!("a redirect to an invalid URL ({e})"))?;
    let resolved = if target.scheme().is_some() {
        target
    } else {
        let path = target.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut parts = base.clone().into_parts();
        parts.path_and_query = Some(path.parse().map_err(|e| format!("a redirect to an invalid path ({e})"))?);
        Uri::from_parts(parts).map_err(|e| format!("a redirect to an invalid URL ({e})"))?
    };
    match resolved.scheme_str() {
        Some("http") | Some("https") => Ok(resolved),
        _ => Err("a redirect to something other than http(s)".to_owned()),
    }
}

/// Refuses a destination that resolves to a non-public address, unless private networks are allowed.
async fn check_destination(uri: &Uri, allow_private: bool) -> Result<(), String> {
    let host = uri.host().ok_or("a URL without a host")?.trim_start_matches('[').trim_end_matches(']');
    if allow_private {
        return Ok(());
    }
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("{host} does not resolve ({e})"))?
            .map(|a| a.ip())
            .collect(),
    };
    match addrs.iter().find(|ip| !is_public(**ip)) {
        Some(ip) => Err(format!(
            "{host} is a private or local address ({ip}); set llmux_settings.images.allow_private_networks to allow it"
        )),
        None if addrs.is_empty() => Err(format!("{host} does not resolve")),
        None => Ok(()),
    }
}

/// Whether `ip` is on the public internet (not loopback, private, link-local, CGNAT, unique-local, multicast,
/// documentation or unspecified).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// The image type from the first bytes (what Ollama's decoders take).
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

fn mime_only(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or(content_type).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.10",
            "172.16.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["1.1.1.1", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn private_destinations_are_refused_unless_allowed() {
        let uri: Uri = "http://127.0.0.1:9/cat.png".parse().unwrap();
        let err = check_destination(&uri, false).await.unwrap_err();
        assert!(err.contains("allow_private_networks"), "{err}");
        assert!(check_destination(&uri, true).await.is_ok());
        let localhost: Uri = "http://localhost:9/cat.png".parse().unwrap();
        assert!(check_destination(&localhost, false).await.is_err(), "names are resolved before the check");
    }

    #[test]
    fn redirects_resolve_and_stay_on_http() {
        let base: Uri = "https://img.example/a/b.png?sig=x".parse().unwrap();
        assert_eq!(redirect_target(&base, "/c.png").unwrap().to_string(), "https://img.example/c.png");
        assert_eq!(redirect_target(&base, "http://other/x").unwrap().to_string(), "http://other/x");
        assert!(redirect_target(&base, "file:///etc/passwd").is_err());
    }

    #[test]
    fn scan_and_sniff() {
        assert!(may_have_remote(br#"{"type":"image_url","image_url":{"url":"https://x/y.png"}}"#));
        assert!(!may_have_remote(br#"{"type":"image_url","image_url":{"url":"data:image/png;base64,AA"}}"#));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"<html>"), None);
        assert_eq!(shown("https://x/y.png?token=secret"), "https://x/y.png");
    }
}
