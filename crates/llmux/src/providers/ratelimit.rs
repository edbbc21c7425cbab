//! What a provider's rate-limit headers mean to llmux: how long to leave a deployment alone after a refusal
//! (LiteLLM's `_get_retry_after_from_exception_header`: `retry-after-ms`, else `retry-after` in seconds or as an
//! HTTP date; the cooldown then lasts that long), and which headers go on to the client (LiteLLM passes a
//! provider's `x-ratelimit-*` through, and renames Anthropic's `anthropic-ratelimit-*` to them).

use std::time::SystemTime;

use http::{HeaderMap, HeaderName};

/// Whole seconds to wait before asking again, from an answer's headers at `now`; `None` when they do not say.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<u64> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let seconds = |s: f64| (s.is_finite() && s >= 0.0).then(|| s.ceil() as u64);
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()).and_then(|ms| seconds(ms / 1000.0)) {
        return Some(ms);
    }
    let value = text("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return seconds(secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).map_or(0, |d| d.as_secs_f64().ceil() as u64))
}

/// Anthropic's rate-limit headers and the `x-ratelimit-*` names LiteLLM gives them
/// (`litellm/llms/anthropic/common_utils.py:process_anthropic_headers`, resets added).
const ANTHROPIC_NAMES: &[(&str, &str)] = &[
    ("anthropic-ratelimit-requests-limit", "x-ratelimit-limit-requests"),
    ("anthropic-ratelimit-requests-remaining", "x-ratelimit-remaining-requests"),
    ("anthropic-ratelimit-requests-reset", "x-ratelimit-reset-requests"),
    ("anthropic-ratelimit-tokens-limit", "x-ratelimit-limit-tokens"),
    ("anthropic-ratelimit-tokens-remaining", "x-ratelimit-remaining-tokens"),
    ("anthropic-ratelimit-tokens-reset", "x-ratelimit-reset-tokens"),
];

/// Copies the rate-limit headers of an engine's answer (`from`) onto the client's response (`to`).
pub fn pass_on(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if name.as_str().starts_with("x-ratelimit-") {
            to.insert(name.clone(), value.clone());
        } else if let Some((_, renamed)) = ANTHROPIC_NAMES.iter().find(|(n, _)| *n == name.as_str()) {
            to.insert(HeaderName::from_static(renamed), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn retry_after_in_milliseconds_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(&headers(&[("retry-after", "20")]), now), Some(20));
        assert_eq!(retry_after(&headers(&[("retry-after", "1.5")]), now), Some(2));
        assert_eq!(retry_after(&headers(&[("retry-after-ms", "2500"), ("retry-after", "60")]), now), Some(3));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(retry_after(&headers(&[("retry-after", &later)]), now), Some(30));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(retry_after(&headers(&[("retry-after", &past)]), now), Some(0));
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-4")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn rate_limit_headers_go_on_with_anthropics_renamed() {
        let from = headers(&[
            ("x-ratelimit-remaining-requests", "99"),
            ("anthropic-ratelimit-tokens-remaining", "1200"),
            ("anthropic-ratelimit-requests-reset", "2026-12-03T00:00:30Z"),
            ("content-length", "5"),
        ]);
        let mut to = HeaderMap::new();
        pass_on(&from, &mut to);
        assert_eq!(to.len(), 3);
        assert_eq!(to["x-ratelimit-remaining-requests"], "99");
        assert_eq!(to["x-ratelimit-remaining-tokens"], "1200");
        assert_eq!(to["x-ratelimit-reset-requests"], "2026-12-03T00:00:30Z");
    }
}
