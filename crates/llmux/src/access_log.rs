//! The access log: one line per request, at `info` under the target `llmux::access`, through `tracing` (so
//! JSON with `--log-format json`, readable text otherwise, and `LLMUX_LOG=llmux::access=off` silences it).
//!
//! It says what the request asked for, where it went and why, and what it cost — never prompt or answer text,
//! never a key (the caller appears by key alias and user/team id only).

use std::fmt::Write as _;
use std::sync::Arc;

use crate::observe::{Finished, Sink};
use crate::redact::escape;

/// The tracing target of access log lines.
pub const TARGET: &str = "llmux::access";

/// The [`Sink`] that writes the access log.
pub struct AccessLog;

impl Sink for AccessLog {
    fn finished(&self, r: &Arc<Finished>) {
        if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
            return;
        }
        let answered = r.attempts.iter().rev().find(|a| a.error.is_none()).map(|a| a.label.as_str());
        let failed = failed_attempts(r);
        tracing::info!(
            target: TARGET,
            request_id = %r.id,
            protocol = r.protocol.as_str(),
            operation = r.operation,
            requested = %escape(&r.requested),
            group = r.group.as_deref().map(escape).as_deref().unwrap_or(""),
            deployment = answered.unwrap_or(""),
            status = r.status,
            stream = r.stream,
            ttfb_ms = r.ttfb_ms,
            duration_ms = r.duration_ms,
            queue_wait_ms = r.queue_wait_ms,
            tokens_in = r.tokens_in,
            tokens_out = r.tokens_out,
            tokens_estimated = r.tokens_estimated,
            cost_usd = r.cost_usd,
            retries = r.retries,
            fallbacks = r.fallbacks,
            failed_attempts = failed.as_str(),
            error = r.error.as_deref().map(escape).as_deref().unwrap_or(""),
            key_alias = r.caller.key_alias.as_deref().unwrap_or(""),
            user_id = r.caller.user_id.as_deref().unwrap_or(""),
            team_id = r.caller.team_id.as_deref().unwrap_or(""),
            "{}",
            summary(r, answered)
        );
    }
}

/// The line's message: `POST coding -> model_list[0] @ http://gpu:11434 200 in 812 ms`.
fn summary(r: &Finished, answered: Option<&str>) -> String {
    let mut line = String::with_capacity(96);
    let _ = write!(line, "{} {}", r.protocol.as_str(), escape(&r.requested));
    if let Some(group) = r.group.as_deref().filter(|g| *g != r.requested) {
        let _ = write!(line, " -> {}", escape(group));
    }
    if let Some(deployment) = answered {
        let _ = write!(line, " -> {deployment}");
    }
    let _ = write!(line, " {} in {} ms", r.status, r.duration_ms);
    line
}

/// Every failed attempt: `model_list[0] @ http://gpu:11434: 503 engine overloaded; …` (empty when none).
fn failed_attempts(r: &Finished) -> String {
    let mut out = String::new();
    for a in &r.attempts {
        let Some(error) = &a.error else { continue };
        if !out.is_empty() {
            out.push_str("; ");
        }
        let _ = write!(out, "{}: {}", a.label, escape(error));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{Attempt, Caller, ClientProtocol, RequestId};

    fn attempt(deployment: usize, error: Option<&str>) -> Attempt {
        Attempt {
            deployment,
            label: format!("model_list[{deployment}] @ http://gpu{deployment}:11434"),
            group: "coding".into(),
            facts: Default::default(),
            error: error.map(str::to_owned),
            status: Some(if error.is_some() { 503 } else { 200 }),
            started_ms: 0,
            duration_ms: 5,
            reason: "strategy",
            cold: false,
            cooled_down: false,
        }
    }

    #[test]
    fn the_line_names_the_route_and_every_failed_attempt() {
        let r = Finished {
            id: RequestId("r1".into()),
            started_unix_ms: 0,
            protocol: ClientProtocol::Anthropic,
            operation: "chat",
            caller: Caller::default(),
            requested: "claude-sonnet".into(),
            group: Some("coding".into()),
            deployment: Some(1),
            host: None,
            route: String::new(),
            attempts: vec![attempt(0, Some("503 overloaded\nINFO forged")), attempt(1, None)],
            status: 200,
            stream: true,
            ttfb_ms: Some(3),
            duration_ms: 42,
            queue_wait_ms: 0,
            tokens_in: 1,
            tokens_out: 2,
            tokens_estimated: false,
            cost_usd: 0.0,
            fallbacks: 0,
            retries: 1,
            complexity_tier: None,
            error: None,
        };
        let answered = Some("model_list[1] @ http://gpu1:11434");
        assert_eq!(
            summary(&r, answered),
            "anthropic claude-sonnet -> coding -> model_list[1] @ http://gpu1:11434 200 in 42 ms"
        );
        assert_eq!(failed_attempts(&r), "model_list[0] @ http://gpu0:11434: 503 overloaded\\nINFO forged");
    }
}
