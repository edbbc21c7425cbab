//! What the response headers and route explanations say about a request: which deployment answered, the
//! route it took, retries and fallbacks counted as LiteLLM counts them.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::Deployment;
use crate::router::plan::Hop;
use crate::router::{self, complexity::Classification, semantic};

/// What the response headers and route explanations say about one deployment, made once per config rather
/// than formatted on every request.
pub(super) struct Label {
    /// `x-llmux-deployment`: `model_list[i] <model> @ <host>`.
    pub(super) deployment: Option<HeaderValue>,
    /// `x-litellm-model-id`.
    pub(super) id: Option<HeaderValue>,
    /// `x-litellm-model-group`.
    pub(super) group: Option<HeaderValue>,
    /// How a route step ends: `model_list[i] @ <host>`.
    pub(super) step: String,
    /// What the request's record says about it.
    pub(super) facts: std::sync::Arc<crate::observe::DeploymentFacts>,
}

impl Label {
    pub(super) fn of(config: &crate::config::Config, d: &Deployment) -> Label {
        let host = d.engine().map(|e| e.host()).unwrap_or("");
        let value = |s: &str| HeaderValue::from_str(s).ok().filter(|_| !s.is_empty());
        Label {
            deployment: value(&format!("model_list[{}] {} @ {host}", d.index, d.model)),
            id: value(&d.id),
            group: value(&d.model_name),
            step: format!("model_list[{}] @ {host}", d.index),
            facts: std::sync::Arc::new(crate::observe::DeploymentFacts::of(config, d)),
        }
    }
}

pub(super) const X_LLMUX_DEPLOYMENT: HeaderName = HeaderName::from_static("x-llmux-deployment");
pub(super) const X_LLMUX_ROUTE: HeaderName = HeaderName::from_static("x-llmux-route");
pub(super) const X_MODEL_ID: HeaderName = HeaderName::from_static("x-litellm-model-id");
pub(super) const X_MODEL_GROUP: HeaderName = HeaderName::from_static("x-litellm-model-group");
pub(super) const X_ATTEMPTED_RETRIES: HeaderName = HeaderName::from_static("x-litellm-attempted-retries");
pub(super) const X_MAX_RETRIES: HeaderName = HeaderName::from_static("x-litellm-max-retries");
pub(super) const X_ATTEMPTED_FALLBACKS: HeaderName = HeaderName::from_static("x-litellm-attempted-fallbacks");

/// One route step: `<name> -> <group> -> <tier> -> model_list[i] @ <host>`, and what was skipped. Built by
/// appending: it is made for every request.
pub(super) fn describe(name: &str, group: &str, pick: &router::Pick, label: &str) -> String {
    let mut step = String::with_capacity(name.len() + group.len() + label.len() + 32);
    for part in [name, " -> ", group, " -> "] {
        step.push_str(part);
    }
    match pick.tier {
        Some(order) => {
            step.push_str("order ");
            step.push_str(itoa::Buffer::new().format(order));
        }
        None => step.push_str("unordered"),
    }
    step.push_str(" -> ");
    step.push_str(label);
    if !pick.skipped.is_empty() {
        let skipped: Vec<String> = pick.skipped.iter().map(|(i, why)| format!("model_list[{i}] {why}")).collect();
        step.push_str(&format!(" (skipped {})", skipped.join(", ")));
    }
    match (pick.expected, pick.cached >= router::MIN_CACHED_TOKENS) {
        (Some(s), true) => step.push_str(&format!(" [expected {s:.1}s, ~{} prompt tokens cached]", pick.cached)),
        (Some(s), false) => step.push_str(&format!(" [expected {s:.1}s]")),
        (None, true) => step.push_str(&format!(" [~{} prompt tokens cached]", pick.cached)),
        (None, false) => {}
    }
    step
}

/// One route step for a semantic router's decision.
pub(super) fn describe_semantic(router: &str, choice: &semantic::Choice) -> String {
    match (choice.score, &choice.fallback_reason) {
        (Some(score), _) => format!("{router} (semantic) -> {} (similarity {score:.3})", choice.model),
        (None, Some(why)) => format!("{router} (semantic) -> default {} ({why})", choice.model),
        (None, None) => format!("{router} (semantic) -> {}", choice.model),
    }
}

/// One route step for a complexity decision, with each dimension's contribution.
pub(super) fn describe_classification(router: &str, c: &Classification, chosen: &str) -> String {
    let parts: Vec<String> =
        c.dimensions.iter().filter(|d| d.raw != 0.0).map(|d| format!("{} {:+.3}", d.name, d.weight * d.raw)).collect();
    let why = if c.no_user_text {
        "no user text".to_owned()
    } else if c.reasoning_override {
        format!("reasoning override; {}", parts.join(", "))
    } else {
        parts.join(", ")
    };
    format!("{router} -> complexity {} score {:.3} [{why}] -> {chosen}", c.tier, c.score)
}

/// Why an attempt went to the picked deployment, in one word (see [`crate::observe::Attempt::reason`]).
pub(super) fn decision(pick: &router::Pick, view: &router::DeploymentView, hop: &Hop<'_>, retry: bool) -> &'static str {
    use router::Skip;
    let skipped = |want: &[Skip]| pick.skipped.iter().any(|(_, why)| want.contains(why));
    if retry {
        "retry"
    } else if hop.depth > 0 {
        "fallback"
    } else if hop.order.is_some() {
        "escalation"
    } else if skipped(&[Skip::BusyWarm]) {
        "spill"
    } else if pick.skipped.iter().any(|(_, why)| matches!(why, Skip::Slower(_))) {
        "fastest"
    } else if skipped(&[Skip::PrefixElsewhere, Skip::CacheFull]) {
        "cached"
    } else if view.warm && skipped(&[Skip::Cold]) {
        "warm"
    } else if skipped(&[Skip::NoRoom, Skip::EvictsPinned, Skip::HostLoading]) {
        "fits"
    } else {
        "strategy"
    }
}

/// A count header's value.
pub(super) fn count(n: u32) -> HeaderValue {
    if n == 0 {
        HeaderValue::from_static("0")
    } else {
        HeaderValue::from(n)
    }
}

pub(super) fn put(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if value.is_empty() {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DeploymentIx;
    use router::{DeploymentView, Pick, Skip, Target};

    fn hop(order: Option<u32>, depth: u32) -> Hop<'static> {
        let target = Target { group: "g", members: &[0, 1], classifier: None, semantic: None };
        Hop { name: "g".into(), target, order, depth }
    }

    fn pick(skipped: Vec<(usize, Skip)>) -> Pick {
        let skipped = skipped.into_iter().map(|(i, why)| (DeploymentIx(i), why)).collect();
        Pick { deployment: DeploymentIx(0), tier: Some(1), skipped, available: 2, expected: None, cached: 0 }
    }

    #[test]
    fn each_attempt_says_why_it_went_where_it_went() {
        let (warm, cold) = (DeploymentView { warm: true, ..Default::default() }, DeploymentView::default());
        let plain = hop(None, 0);
        assert_eq!(decision(&pick(vec![]), &cold, &plain, false), "strategy");
        assert_eq!(decision(&pick(vec![(1, Skip::Cold)]), &warm, &plain, false), "warm");
        assert_eq!(decision(&pick(vec![(1, Skip::NoRoom)]), &cold, &plain, false), "fits");
        assert_eq!(decision(&pick(vec![(1, Skip::BusyWarm)]), &cold, &plain, false), "spill");
        assert_eq!(decision(&pick(vec![(1, Skip::Slower(4_000))]), &warm, &plain, false), "fastest");
        assert_eq!(decision(&pick(vec![(1, Skip::PrefixElsewhere)]), &warm, &plain, false), "cached");
        assert_eq!(decision(&pick(vec![]), &cold, &hop(Some(2), 0), false), "escalation");
        assert_eq!(decision(&pick(vec![]), &warm, &hop(None, 1), false), "fallback");
        assert_eq!(decision(&pick(vec![(1, Skip::Cold)]), &warm, &hop(None, 1), true), "retry");
    }
}
