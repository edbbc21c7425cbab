//! The eviction rules of residency routing: whether loading a model on a host pushes another model out of its
//! memory, and whether that one is pinned or serving requests. Pure functions of what the host holds (probed or
//! inferred, in [`crate::state`]) and what its owner declared (`llmux_settings.hosts`); [`super::pick`] prefers
//! hosts where they say no.

use crate::config::HostLimits;
use crate::state::{same_model, HostState, Resident};

/// What loading a model on a host would push out of its memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Eviction {
    /// Some loaded model must go (see [`crate::router::DeploymentView::evicts`]).
    pub evicts: bool,
    /// ... and a pinned model may be the one.
    pub pinned: bool,
    /// ... and even with every idle model gone, one serving requests (`serving`) must go.
    pub busy: bool,
}

/// What loading `model` on host `h` would evict, `serving` telling which loaded models serve requests now.
pub fn eviction(h: &HostState, limits: &HostLimits, model: &str, serving: &dyn Fn(&str) -> bool) -> Eviction {
    let evicts = would_evict(h, limits, model);
    Eviction {
        evicts,
        pinned: evicts && would_evict_pinned(h, limits, model),
        busy: evicts && would_evict_busy(h, limits, model, serving),
    }
}

/// Whether loading `model` on host `h` must evict a loaded model: the host is at `max_loaded_models`, or the
/// model does not fit in what `memory_budget` (else the budget learned from past evictions) leaves. A model of
/// unknown size only counts against `max_loaded_models`; without limits nothing is known to be evicted.
fn would_evict(h: &HostState, limits: &HostLimits, model: &str) -> bool {
    if limits.memory_budget.or(h.learned_budget).is_none() && limits.max_loaded_models.is_none() {
        return false;
    }
    let loaded: Vec<_> = h.resident.iter().collect();
    over_limits(h, limits, &loaded, model)
}

/// Whether loading `model` on host `h` must evict a model that is serving requests (`serving`): it does not fit
/// even with every idle model gone.
fn would_evict_busy(h: &HostState, limits: &HostLimits, model: &str, serving: &dyn Fn(&str) -> bool) -> bool {
    let kept: Vec<_> = h.resident.iter().filter(|r| !same_model(&r.model, model) && serving(&r.model)).collect();
    !kept.is_empty() && over_limits(h, limits, &kept, model)
}

/// Whether `model` does not fit next to `kept` on host `h`: they are `max_loaded_models` already, or their sizes
/// and its own exceed `memory_budget` or the budget learned (where the engine reported them).
fn over_limits(h: &HostState, limits: &HostLimits, kept: &[&Resident], model: &str) -> bool {
    let size_of = |name: &str| h.sizes.iter().find(|(m, _)| same_model(m, name)).map(|(_, s)| *s);
    let full = limits.max_loaded_models.is_some_and(|max| kept.len() >= max as usize);
    let loaded: u64 = kept.iter().filter_map(|r| r.size.or_else(|| size_of(&r.model))).sum();
    let budget = limits.memory_budget.or(h.learned_budget);
    let over = matches!((budget, size_of(model)), (Some(budget), Some(size)) if loaded + size > budget);
    full || over
}

/// Whether loading `model` on host `h` must evict something while a pinned model is loaded (so the pinned one
/// may be the victim).
fn would_evict_pinned(h: &HostState, limits: &HostLimits, model: &str) -> bool {
    let pinned = |name: &str| limits.pinned.iter().any(|p| same_model(p, name));
    if limits.pinned.is_empty() || pinned(model) || !h.resident.iter().any(|r| pinned(&r.model)) {
        return false;
    }
    would_evict(h, limits, model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cold_model_that_does_not_fit_next_to_a_pinned_one_would_evict_it() {
        let limits =
            HostLimits { memory_budget: Some(10_000), max_loaded_models: Some(3), pinned: vec!["keep:latest".into()] };
        let loaded = |models: &[(&str, u64)]| HostState {
            resident: models
                .iter()
                .map(|(m, size)| Resident {
                    model: (*m).into(),
                    size: Some(*size),
                    probed: true,
                    ..Resident::default()
                })
                .collect(),
            sizes: [("big".to_owned(), 6_000), ("small".to_owned(), 1_000)].into_iter().collect(),
            ..HostState::default()
        };
        let h = loaded(&[("keep", 5_000)]);
        assert!(would_evict_pinned(&h, &limits, "big"), "5,000 + 6,000 > 10,000");
        assert!(!would_evict_pinned(&h, &limits, "small"));
        assert!(!would_evict_pinned(&h, &limits, "unknown-size"), "unknown size: only the count can tell");
        assert!(!would_evict_pinned(&h, &limits, "keep"), "the pinned model itself");
        assert!(!would_evict_pinned(&loaded(&[("other", 5_000)]), &limits, "big"), "nothing pinned is loaded");
        let full = loaded(&[("keep", 1), ("a", 1), ("b", 1)]);
        assert!(would_evict_pinned(&full, &limits, "small"), "at max_loaded_models");
    }

    #[test]
    fn without_declared_limits_the_budget_learned_from_past_evictions_decides() {
        let none = HostLimits::default();
        let a = Resident { model: "a".into(), size: Some(6_000), probed: true, ..Resident::default() };
        let mut h = HostState {
            resident: vec![a],
            sizes: [("b".to_owned(), 6_000)].into_iter().collect(),
            ..HostState::default()
        };
        let serving_a = |m: &str| m == "a";
        assert_eq!(eviction(&h, &none, "b", &serving_a), Eviction::default(), "nothing known");
        h.learned_budget = Some(10_000);
        let learned = eviction(&h, &none, "b", &serving_a);
        assert!(learned.evicts && learned.busy, "6,000 serving + 6,000 > the 10,000 learned");
        let declared = HostLimits { memory_budget: Some(20_000), ..HostLimits::default() };
        assert!(!eviction(&h, &declared, "b", &serving_a).evicts, "a declared budget wins");
    }

    #[test]
    fn a_load_evicts_a_busy_model_only_when_it_does_not_fit_with_every_idle_one_gone() {
        let limits = HostLimits { memory_budget: Some(10_000), max_loaded_models: Some(2), pinned: Vec::new() };
        let resident =
            |m: &str, size| Resident { model: m.into(), size: Some(size), probed: true, ..Resident::default() };
        let h = HostState {
            resident: vec![resident("a", 6_000), resident("c", 3_000)],
            sizes: [("b".to_owned(), 6_000), ("d".to_owned(), 1_000)].into_iter().collect(),
            ..HostState::default()
        };
        let serving_a = |m: &str| m == "a";
        assert!(would_evict_busy(&h, &limits, "b", &serving_a), "6,000 serving + 6,000 > 10,000");
        assert!(!would_evict_busy(&h, &limits, "d", &serving_a), "c is idle: it goes, a stays");
        assert!(!would_evict_busy(&h, &limits, "b", &|_| false), "nothing serving: any may go");
        let both = |m: &str| m == "a" || m == "c";
        assert!(would_evict_busy(&h, &limits, "d", &both), "two serving at max_loaded_models 2");
    }
}
