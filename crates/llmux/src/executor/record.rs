//! What the request's record (the access log, `/ui`'s feed, traces) keeps of routing: the route, every attempt
//! with why it went where it went, the deployment that answered and the tokens to estimate from.

use std::time::{Duration, Instant};

use super::Run;
use crate::observe::Attempt;

impl Run<'_> {
    /// Tells the request's record what routing did: the route, every attempt, the deployment that answered
    /// (`deployment`, with the outcome's `status`), and what its tokens are estimated from if the engine
    /// reports none.
    pub(super) fn record(&mut self, route: &str, deployment: Option<usize>, status: u16) {
        let config = &self.exec.config;
        let d = deployment.and_then(|i| config.deployments.get(i));
        let attempts = std::mem::take(&mut self.attempts);
        let prompt = if self.prompt_tokens > 0 { self.prompt_tokens } else { self.body.len() as u64 / 4 };
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.trace.update(|draft| {
            let r = &mut draft.record;
            // The server names it first (the client's name, before a key's alias renamed it).
            if r.requested.is_empty() {
                r.requested.push_str(&self.head.model);
            }
            r.group = attempts.last().map(|a| a.group.clone());
            r.deployment = deployment;
            r.host = d.and_then(|d| d.engine()).map(|e| e.host().to_owned());
            r.route.push_str(route);
            r.attempts = attempts;
            r.stream = self.head.stream;
            r.queue_wait_ms = ms(self.queue_wait);
            r.retries = self.retries;
            r.fallbacks = self.fallbacks;
            r.complexity_tier = self.classification.as_ref().map(|c| c.tier.as_str());
            draft.outcome = Some(status);
            draft.first_byte = self.answered_at;
            draft.estimate.input = prompt;
            draft.price = d.and_then(|d| d.cost_per_token);
        });
    }
}

/// An attempt, as the record keeps it.
pub(super) struct Tried<'t> {
    pub(super) index: usize,
    pub(super) group: &'t str,
    pub(super) reason: &'static str,
    pub(super) cold: bool,
}

impl Run<'_> {
    /// Keeps an attempt for the record: `failed` with why and the status, or answered after `took`.
    pub(super) fn attempted(&mut self, tried: Tried<'_>, failed: Option<(String, u16)>, took: Duration) {
        if !self.trace.is_on() {
            return;
        }
        let Tried { index, group, reason, cold } = tried;
        let (error, status) = match failed {
            Some((why, status)) => (Some(why), status),
            None => (None, 200),
        };
        let began = Instant::now().checked_sub(took).unwrap_or_else(Instant::now);
        let started_ms = self.trace.offset_ms(began);
        self.attempts.push(Attempt {
            deployment: index,
            label: self.exec.labels[index].step.clone(),
            facts: self.exec.labels[index].facts.clone(),
            group: group.to_owned(),
            error,
            status: Some(status),
            started_ms,
            duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            reason,
            cold,
            cooled_down: false,
        });
    }
}
