//! Reliability rules as pure functions: how a failure is classified, whether it cools a deployment down,
//! whether the request retries, and how long it waits first (LiteLLM's rules, spec §3.1–§3.3, with llmux's
//! deliberate differences marked).

use std::time::Duration;

use crate::config::{Deployment, ErrorClass, RouterSettings};
use crate::error::Error;
use crate::state::MinuteCounts;

/// An engine failure as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Failure {
    /// LiteLLM's exception class.
    pub class: ErrorClass,
    /// The HTTP status (500 for a failed connection, as LiteLLM's `APIConnectionError`).
    pub status: u16,
    /// The engine could not be reached at all (refused, reset, DNS, connect timeout).
    pub connect: bool,
    /// The engine's `retry-after`.
    pub retry_after: Option<Duration>,
    /// The engine said the prompt is too long for the model.
    pub context_window: bool,
}

/// Substrings engines use to say the prompt exceeds the context window (vLLM, llama.cpp, OpenAI, LM Studio,
/// Anthropic; Gemini's "The input token count (…) exceeds the maximum number of tokens allowed (…)").
const CONTEXT_WINDOW_MARKERS: &[&str] = &[
    "context length",
    "context window",
    "context_length_exceeded",
    "maximum context",
    "exceeds the available context size",
    "prompt is too long",
    "input is too long",
    "too many tokens",
    "exceeds the maximum number of tokens allowed",
];

/// Substrings of a content-policy refusal.
const CONTENT_POLICY_MARKERS: &[&str] = &["content_policy", "content policy", "content management policy"];

impl Failure {
    /// Classifies an attempt's error; `None` for errors that are not the engine's (the client's request, llmux).
    pub fn of(err: &Error) -> Option<Failure> {
        let (status, connect, retry_after, message) = match err {
            Error::Connect(_) => (500, true, None, ""),
            Error::Timeout(_) => (408, false, None, ""),
            Error::BadUpstreamResponse(_) => (500, false, None, ""),
            Error::Upstream { status, retry_after, message, .. } => {
                (status.as_u16(), false, retry_after.map(Duration::from_secs), message.as_str())
            }
            Error::ContextWindowExceeded(_) => (400, false, None, "context window"),
            _ => return None,
        };
        let lower = message.to_ascii_lowercase();
        let has = |markers: &[&str]| markers.iter().any(|m| lower.contains(m));
        let context_window = matches!(status, 400 | 413 | 422) && has(CONTEXT_WINDOW_MARKERS);
        let class = match status {
            400 if has(CONTENT_POLICY_MARKERS) => ErrorClass::ContentPolicyViolation,
            401 | 403 => ErrorClass::Authentication,
            404 => ErrorClass::NotFound,
            408 => ErrorClass::Timeout,
            429 => ErrorClass::RateLimit,
            502 => ErrorClass::BadGateway,
            503 => ErrorClass::ServiceUnavailable,
            s if s >= 500 => ErrorClass::InternalServer,
            _ => ErrorClass::BadRequest,
        };
        Some(Failure { class, status, connect, retry_after, context_window })
    }

    /// LiteLLM retries 408, 409, 429 and 5xx (connection failures are 500).
    fn retryable_status(&self) -> bool {
        matches!(self.status, 408 | 409 | 429) || self.status >= 500
    }
}

/// What a failure does to the deployment's cooldown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cooldown {
    /// Nothing.
    No,
    /// Cool down now for this long.
    Now(Duration),
    /// Count the failure under `key` (expiring after the cooldown) and cool down when the count exceeds
    /// `allowed` (LiteLLM's counter logic, used when `allowed_fails` or `allowed_fails_policy` is set).
    IfCountExceeds {
        /// Counter key: the class for a policy entry, `None` for plain `allowed_fails`.
        key: Option<ErrorClass>,
        /// Failures tolerated.
        allowed: u32,
        /// Cooldown when exceeded.
        duration: Duration,
    },
}

/// Decides the cooldown for `failure` on deployment `d` of a group of `group_size`. `minute` holds this
/// minute's counts including this failure; `has_fallbacks` is whether the group has a fallback entry.
pub fn cooldown(
    settings: &RouterSettings,
    d: &Deployment,
    group_size: usize,
    has_fallbacks: bool,
    failure: &Failure,
    minute: MinuteCounts,
) -> Cooldown {
    if settings.disable_cooldowns {
        return Cooldown::No;
    }
    let duration = d.cooldown_time.or(failure.retry_after).unwrap_or(settings.cooldown_time);
    if duration.is_zero() {
        return Cooldown::No;
    }
    // llmux: a host that refuses connections is ejected at once (LiteLLM never cools connection errors down, so
    // every request pays the dead host again).
    if failure.connect {
        return Cooldown::Now(duration);
    }
    // 4xx other than 429, 401, 402, 404 and 408 are the request's fault, never the deployment's.
    if (400..500).contains(&failure.status) && !matches!(failure.status, 401 | 402 | 404 | 408 | 429) {
        return Cooldown::No;
    }
    let policy = d.allowed_fails_policy.as_ref().or(settings.allowed_fails_policy.as_ref());
    let allowed = d.allowed_fails.or(settings.allowed_fails);
    if let Some(n) = policy.and_then(|p| p.get(&failure.class)) {
        return Cooldown::IfCountExceeds { key: Some(failure.class), allowed: *n, duration };
    }
    if policy.is_some() || allowed.is_some() {
        // A lone deployment with nowhere to fall back to is never cooled down by a generic allowed_fails.
        if group_size <= 1 && !has_fallbacks {
            return Cooldown::No;
        }
        return Cooldown::IfCountExceeds { key: None, allowed: allowed.unwrap_or(3), duration };
    }
    let multi = group_size > 1;
    let total = minute.fails + minute.successes;
    let rate = f64::from(minute.fails) / f64::from(total.max(1));
    let cool = (failure.status == 429 && multi)
        || (rate >= 1.0 && total >= 1000)
        || (rate > 0.5 && total >= 5 && multi)
        || matches!(failure.status, 401 | 404)
        || (failure.status == 402 && multi);
    if cool {
        Cooldown::Now(duration)
    } else {
        Cooldown::No
    }
}

/// How many retries a request on `group` gets for `failure`, and whether a `retry_policy` entry decided it (a
/// policy entry lifts the usual "is this retryable" guards). Precedence: policy (group, then router) unless the
/// request set `num_retries: 0`; then the deployment's, else the router's, lowered by the request's `num_retries`.
pub fn retries_for(
    settings: &RouterSettings,
    group: &str,
    d: &Deployment,
    failure: &Failure,
    request_num_retries: Option<u32>,
) -> (u32, bool) {
    if request_num_retries != Some(0) {
        let from_policy = settings
            .model_group_retry_policy
            .get(group)
            .and_then(|p| p.get(&failure.class))
            .or_else(|| settings.retry_policy.get(&failure.class));
        if let Some(n) = from_policy {
            return (*n, true);
        }
    }
    // A client may ask for fewer retries than the config allows, never more: `"num_retries": 1000000000` must not
    // hold one request for minutes.
    let configured = d.num_retries.unwrap_or(settings.num_retries);
    (request_num_retries.map_or(configured, |n| n.min(configured)), false)
}

/// Whether another attempt in the same group is worth it. `available` counts the group's deployments that are
/// neither cooling down nor refused after this failure was recorded.
pub fn should_retry(
    settings: &RouterSettings,
    failure: &Failure,
    group_size: usize,
    available: usize,
    from_policy: bool,
) -> bool {
    if available == 0 {
        return false;
    }
    if from_policy {
        return true;
    }
    if failure.context_window && !settings.context_window_fallbacks.is_empty() {
        return false;
    }
    if failure.class == ErrorClass::ContentPolicyViolation && !settings.content_policy_fallbacks.is_empty() {
        return false;
    }
    match failure.status {
        401 | 403 => group_size > 1,
        404 => false,
        _ => failure.retryable_status(),
    }
}

/// The wait before retry number `n` (0-based): none when another deployment of the group can take it;
/// otherwise the engine's `retry-after` (if in (0, 60] s), else `0.5 s × 2^n` clamped to [`retry_after`, 8 s]
/// plus up to 0.75 s of jitter (`jitter` in [0, 1)).
pub fn backoff(
    settings: &RouterSettings,
    failure: &Failure,
    n: u32,
    group_size: usize,
    available: usize,
    jitter: f64,
) -> Duration {
    if group_size > 1 && available > 0 {
        return Duration::ZERO;
    }
    if let Some(after) = failure.retry_after.filter(|a| !a.is_zero() && *a <= Duration::from_secs(60)) {
        return after;
    }
    let exp = 0.5 * 2f64.powi(i32::try_from(n.min(16)).unwrap_or(16));
    let base = exp.max(settings.retry_after.as_secs_f64()).min(8.0);
    Duration::from_secs_f64(base + 0.75 * jitter.clamp(0.0, 1.0))
}
