//! `routing_strategy`: how one deployment is drawn from the candidates that survived the filters.

use super::{Candidate, DeploymentView};
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
pub(super) fn choose(strategy: &Strategy, pool: &[Candidate<'_>], rng: &mut fastrand::Rng) -> usize {
    let first = pool[0].d.index;
    match strategy {
        Strategy::SimpleShuffle => weighted(pool, rng),
        // Ties go to the first in file order, as LiteLLM.
        Strategy::LeastBusy => pool.iter().min_by_key(|c| c.view.in_flight).map_or(first, |c| c.d.index),
        Strategy::LatencyBased { buffer, .. } => {
            // Unmeasured deployments count as 0 s, so each gets tried.
            let latency = |c: &Candidate<'_>| c.view.latency.unwrap_or(0.0);
            let lowest = pool.iter().map(latency).fold(f64::INFINITY, f64::min);
            random_among(pool.iter().filter(|c| latency(c) <= lowest * (1.0 + buffer)), rng).unwrap_or(first)
        }
        Strategy::UsageBased => {
            let lowest = pool.iter().map(|c| c.view.tokens_this_minute).min().unwrap_or(0);
            random_among(pool.iter().filter(|c| c.view.tokens_this_minute == lowest), rng).unwrap_or(first)
        }
        Strategy::CostBased => {
            let cost = |c: &Candidate<'_>| c.d.cost_per_token.map_or(2.0 * UNKNOWN_COST, |(i, o)| i + o);
            // First cheapest in file order (min_by keeps the first of equals).
            pool.iter().min_by(|a, b| cost(a).total_cmp(&cost(b))).map_or(first, |c| c.d.index)
        }
    }
}

/// A uniformly random member of `items`, without collecting them.
fn random_among<'a, 'b: 'a>(
    items: impl Iterator<Item = &'a Candidate<'b>> + Clone,
    rng: &mut fastrand::Rng,
) -> Option<usize> {
    let n = items.clone().count();
    (n > 0).then(|| rng.usize(..n)).and_then(|k| items.map(|c| c.d.index).nth(k))
}

/// simple-shuffle: the first weight set any member sets (`weight`, then `rpm`, then `tpm`) decides, members
/// without it weighing 0; no weights at all → uniform.
fn weighted(pool: &[Candidate<'_>], rng: &mut fastrand::Rng) -> usize {
    let sets: [fn(&Deployment) -> Option<f64>; 3] = [|d| d.weight, |d| d.rpm, |d| d.tpm];
    let Some(set) = sets.iter().find(|set| pool.iter().any(|c| set(c.d).unwrap_or(0.0) > 0.0)) else {
        return pool[rng.usize(..pool.len())].d.index;
    };
    let total: f64 = pool.iter().map(|c| set(c.d).unwrap_or(0.0)).sum();
    let mut r = rng.f64() * total;
    for c in pool {
        let w = set(c.d).unwrap_or(0.0);
        if w > 0.0 && r < w {
            return c.d.index;
        }
        r -= w;
    }
    // Rounding left r just above the last weight: the last positive-weight member.
    pool.iter().rev().find(|c| set(c.d).unwrap_or(0.0) > 0.0).map_or(pool[0].d.index, |c| c.d.index)
}
