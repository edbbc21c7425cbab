//! The placement check: can the models assigned to a host all stay loaded together?

use std::collections::HashMap;

use crate::config::{Config, Host};
use crate::state::same_model;

/// Whether the models assigned to a host can all stay loaded at once, as far as its declared limits and the
/// sizes the engine reports tell. An LRU eviction costs a reload of 30 s or more, so this is checked up front.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Placement {
    /// `memory_budget` in bytes.
    pub memory_budget: Option<u64>,
    /// `max_loaded_models`.
    pub max_loaded_models: Option<u32>,
    /// Models that must stay loaded.
    pub pinned: Vec<String>,
    /// Each engine model the host's deployments use, with its size when the engine reports one.
    pub assigned: Vec<AssignedModel>,
    /// Their sizes added up (the known ones).
    pub assigned_bytes: u64,
    /// `Some(false)` when they cannot all be loaded together; `None` when a size is unknown and the count fits.
    pub fits: Option<bool>,
    /// Why not, in a sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// One model assigned to a host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AssignedModel {
    /// The engine's model name.
    pub model: String,
    /// Bytes, from `/api/tags`.
    pub size: Option<u64>,
}

/// The placement of `host`'s models under its limits, from what its last probe listed; `None` without limits.
pub fn placement(config: &Config, host: &Host, sizes: &HashMap<String, u64>) -> Option<Placement> {
    let limits = &host.limits;
    if limits.memory_budget.is_none() && limits.max_loaded_models.is_none() && limits.pinned.is_empty() {
        return None;
    }
    let mut assigned: Vec<AssignedModel> = Vec::new();
    for &i in &host.deployments {
        let Some(engine) = config.deployments[i].engine() else { continue };
        let model = &engine.upstream_model;
        if model.contains('*') || assigned.iter().any(|a| same_model(&a.model, model)) {
            continue;
        }
        let size = sizes.iter().find(|(m, _)| same_model(m, model)).map(|(_, s)| *s);
        assigned.push(AssignedModel { model: model.clone(), size });
    }
    let assigned_bytes = assigned.iter().filter_map(|a| a.size).sum();
    let unknown = assigned.iter().filter(|a| a.size.is_none()).count();
    let gb = |b: u64| b as f64 / 1e9;
    let mut problem = None;
    if let Some(max) = limits.max_loaded_models.filter(|&max| assigned.len() > max as usize) {
        problem = Some(format!("{} models are assigned but only {max} can be loaded at once", assigned.len()));
    }
    if let Some(budget) = limits.memory_budget.filter(|&b| assigned_bytes > b) {
        problem = Some(format!(
            "the assigned models need {:.1} GB together, more than the {:.1} GB budget: they cannot all stay loaded",
            gb(assigned_bytes),
            gb(budget)
        ));
    }
    let fits = if problem.is_some() {
        Some(false)
    } else if unknown > 0 && limits.memory_budget.is_some() {
        None
    } else {
        Some(true)
    };
    Some(Placement {
        memory_budget: limits.memory_budget,
        max_loaded_models: limits.max_loaded_models,
        pinned: limits.pinned.clone(),
        assigned,
        assigned_bytes,
        fits,
        problem,
    })
}
