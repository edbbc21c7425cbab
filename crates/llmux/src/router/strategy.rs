//! `routing_strategy`: how one deployment is drawn from the candidates that survived the filters.

use super::DeploymentView;
use crate::config::{Deployment, Strategy};

/// LiteLLM's cost for a deployment without a configured price, per token, in and out.
const UNKNOWN_COST: f64 = 5.0;

/// Whether the strategy skips deployments over their `rpm`/`tpm` (the usage, latency and cost strategies do).
pub fn honours_limits(strategy: &Strategy) -> bool {
    matches!(strategy, Strategy::UsageBased | Strategy::LatencyBased { .. } | Strategy::CostBased)
}

/// Whether one more request of `tokens` keeps `d` within its limits this minute (LiteLLM's usage-based v2 test:
/// `tpm_used + tokens > tpm` or `rpm_used + 1 > rpm` excludes it).
pub fn under_limits(d: &Deployment, view: &DeploymentView, tokens: u64) -> bool {
    let rpm_ok = d.rpm.is_none_or(|rpm| (view.requests_this_minute + 1) as f64 <= rpm);
    let tpm_ok = d.tpm.is_none_or(|tpm| (view.tokens_this_minute + tokens) as f64 <= tpm);
    rpm_ok && tpm_ok
}

/// Draws one deployment from a non-empty `pool`.
pub fn choose(
    strategy: &Strategy,
    pool: &[&Deployment],
    view: &dyn Fn(usize) -> DeploymentView,
    rng: &mut fastrand::Rng,
) -> usize {
    match strategy {
        Strategy::SimpleShuffle => weighted(pool, rng),
        // Ties go to the first in file order, as LiteLLM.
        Strategy::LeastBusy => pool.iter().min_by_key(|d| view(d.index).in_flight).map_or(pool[0].index, |d| d.index),
        Strategy::LatencyBased { buffer, .. } => {
            // Unmeasured deployments count as 0 s, so each gets tried.
            let latency = |d: &&Deployment| view(d.index).latency.unwrap_or(0.0);
            let lowest = pool.iter().map(latency).fold(f64::INFINITY, f64::min);
            let near: Vec<usize> =
                pool.iter().filter(|d| latency(d) <= lowest * (1.0 + buffer)).map(|d| d.index).collect();
            near[rng.usize(..near.len())]
        }
        Strategy::UsageBased => {
            let lowest = pool.iter().map(|d| view(d.index).tokens_this_minute).min().unwrap_or(0);
            let least: Vec<usize> =
                pool.iter().filter(|d| view(d.index).tokens_this_minute == lowest).map(|d| d.index).collect();
            least[rng.usize(..least.len())]
        }
        Strategy::CostBased => {
            let cost = |d: &&Deployment| d.cost_per_token.map_or(2.0 * UNKNOWN_COST, |(i, o)| i + o);
            // First cheapest in file order (min_by keeps the first of equals).
            pool.iter().min_by(|a, b| cost(a).total_cmp(&cost(b))).map_or(pool[0].index, |d| d.index)
        }
    }
}

/// simple-shuffle: the first weight set any member sets (`weight`, then `rpm`, then `tpm`) decides, members
/// without it weighing 0; no weights at all → uniform.
fn weighted(pool: &[&Deployment], rng: &mut fastrand::Rng) -> usize {
    let sets: [fn(&Deployment) -> Option<f64>; 3] = [|d| d.weight, |d| d.rpm, |d| d.tpm];
    let Some(set) = sets.iter().find(|set| pool.iter().any(|d| set(d).unwrap_or(0.0) > 0.0)) else {
        return pool[rng.usize(..pool.len())].index;
    };
    let total: f64 = pool.iter().map(|d| set(d).unwrap_or(0.0)).sum();
    let mut r = rng.f64() * total;
    for d in pool {
        let w = set(d).unwrap_or(0.0);
        if w > 0.0 && r < w {
            return d.index;
        }
        r -= w;
    }
    // Rounding left r just above the last weight: the last positive-weight member.
    pool.iter().rev().find(|d| set(d).unwrap_or(0.0) > 0.0).map_or(pool[0].index, |d| d.index)
}
