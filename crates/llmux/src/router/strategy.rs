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

/// One of simple-shuffle's weight sets: a deployment's `weight`, `rpm` or `tpm`.
pub(super) type WeightSet = fn(&Deployment) -> Option<f64>;

/// simple-shuffle's weight set for `pool`: the first that any member sets (`weight`, then `rpm`, then `tpm`).
fn weight_set(pool: &[Candidate<'_>]) -> Option<WeightSet> {
    let sets: [WeightSet; 3] = [|d| d.weight, |d| d.rpm, |d| d.tpm];
    sets.into_iter().find(|set| pool.iter().any(|c| set(c.d).unwrap_or(0.0) > 0.0))
}

/// The weight set when the owner wrote unequal shares for `pool` under simple-shuffle (the split residency
/// must not override); `None` when the strategy has no shares or every member weighs the same.
pub(super) fn explicit_shares(strategy: &Strategy, pool: &[Candidate<'_>]) -> Option<WeightSet> {
    if !matches!(strategy, Strategy::SimpleShuffle) {
        return None;
    }
    let set = weight_set(pool)?;
    let first = set(pool.first()?.d).unwrap_or(0.0);
    pool.iter().any(|c| set(c.d).unwrap_or(0.0) != first).then_some(set)
}

/// Draws one share value of `set` with probability proportional to the total weight of the members that have
/// it (members weighing 0 are never drawn, as LiteLLM's); the caller then chooses among those members.
pub(super) fn draw_share(pool: &[Candidate<'_>], set: WeightSet, rng: &mut fastrand::Rng) -> f64 {
    let weight = |c: &Candidate<'_>| set(c.d).unwrap_or(0.0);
    let total: f64 = pool.iter().map(weight).sum();
    let mut r = rng.f64() * total;
    for c in pool {
        let w = weight(c);
        if w > 0.0 && r < w {
            return w;
        }
        r -= w;
    }
    pool.iter().map(weight).rev().find(|w| *w > 0.0).unwrap_or(0.0)
}

/// simple-shuffle: the first weight set any member sets (`weight`, then `rpm`, then `tpm`) decides, members
/// without it weighing 0; no weights at all → uniform.
fn weighted(pool: &[Candidate<'_>], rng: &mut fastrand::Rng) -> usize {
    let Some(set) = weight_set(pool) else {
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
