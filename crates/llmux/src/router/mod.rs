//! The routing decision: a pure function from (requested name, config, state snapshot, random source) to an
//! ordered list of deployments to try. No I/O and no clock reads happen here, so every rule is unit-tested with
//! hand-built inputs; the executor walks the plan and records outcomes in [`crate::state`].

use crate::config::{Config, Deployment, Target};
use crate::error::Error;
use crate::protocol::openai::Operation;

/// What the router knows about each deployment at decision time, indexed like `Config::deployments`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeploymentView {
    /// A recent attempt could not connect; such deployments are tried only after every reachable one.
    pub unreachable: bool,
}

/// The decision for one requested name: the group it resolved to and the deployments to try, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan<'a> {
    /// The name the client sent.
    pub requested: String,
    /// The model group it resolved to.
    pub group: &'a str,
    /// Deployment indices in the order to try them.
    pub attempts: Vec<usize>,
}

/// Resolves `requested` and orders the group's deployments: reachable ones first; within those, lowest
/// `order` tier first (deployments without `order` after every ordered tier, as LiteLLM shadows them), and
/// inside a tier a weighted shuffle (`weight`, else `rpm`, else `tpm`, else uniform) decides who goes first.
pub fn plan<'a>(
    config: &'a Config,
    op: Operation,
    requested: &str,
    state: &[DeploymentView],
    rng: &mut fastrand::Rng,
) -> Result<Plan<'a>, Error> {
    let resolved = config
        .resolve(requested)
        .ok_or_else(|| Error::UnknownModel { route: op.route().to_owned(), model: requested.to_owned() })?;
    let members: Vec<&Deployment> = resolved.deployments.iter().map(|&i| &config.deployments[i]).collect();
    if let Some(Target::AutoRouter { kind }) =
        members.iter().map(|d| &d.target).find(|t| matches!(t, Target::AutoRouter { .. }))
    {
        return Err(Error::Unsupported {
            message: format!(
                "model {requested:?} is a strategy router (auto_router/{kind}), which llmux does not implement yet; call one of its target models directly"
            ),
            not_implemented: true,
        });
    }
    let view = |d: &Deployment| state.get(d.index).copied().unwrap_or_default();
    let mut attempts = Vec::with_capacity(members.len());
    for unreachable in [false, true] {
        let mut pool: Vec<&Deployment> =
            members.iter().copied().filter(|d| view(d).unreachable == unreachable).collect();
        // Ordered tiers ascending, then the unordered deployments.
        pool.sort_by_key(|d| d.order.unwrap_or(u32::MAX));
        let mut start = 0;
        while start < pool.len() {
            let tier = pool[start].order;
            let end = pool[start..].iter().position(|d| d.order != tier).map_or(pool.len(), |n| start + n);
            weighted_order(&pool[start..end], rng, &mut attempts);
            start = end;
        }
    }
    Ok(Plan { requested: requested.to_owned(), group: resolved.group, attempts })
}

/// Appends `tier` to `out` in a weighted random order without replacement. The weight set is the first of
/// `weight`, `rpm`, `tpm` that any member sets (members missing it weigh 0 and go last); none set → uniform.
fn weighted_order(tier: &[&Deployment], rng: &mut fastrand::Rng, out: &mut Vec<usize>) {
    let pickers: [fn(&Deployment) -> Option<f64>; 3] = [|d| d.weight, |d| d.rpm, |d| d.tpm];
    let weights: Vec<f64> = pickers
        .iter()
        .map(|pick| tier.iter().map(|d| pick(d).unwrap_or(0.0)).collect::<Vec<f64>>())
        .find(|w| w.iter().any(|&x| x > 0.0))
        .unwrap_or_else(|| vec![1.0; tier.len()]);
    let mut left: Vec<(usize, f64)> = tier.iter().map(|d| d.index).zip(weights).collect();
    while !left.is_empty() {
        let total: f64 = left.iter().map(|(_, w)| w).sum();
        let pos = if total > 0.0 {
            let mut r = rng.f64() * total;
            left.iter()
                .position(|&(_, w)| {
                    r -= w;
                    w > 0.0 && r < 0.0
                })
                .unwrap_or_else(|| left.iter().rposition(|&(_, w)| w > 0.0).unwrap_or(0))
        } else {
            rng.usize(..left.len())
        };
        out.push(left.remove(pos).0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn config(yaml: &str) -> Config {
        load_str(yaml, &|_| None).unwrap().0
    }

    const TWO_TIERS: &str = r#"
router_settings:
  model_group_alias: {fast: small}
model_list:
  - model_name: small
    litellm_params: {model: ollama_chat/s, api_base: "http://a:1", order: 2}
  - model_name: small
    litellm_params: {model: ollama_chat/s, api_base: "http://b:1", order: 1}
  - model_name: small
    litellm_params: {model: ollama_chat/s, api_base: "http://c:1"}
"#;

    #[test]
    fn lowest_order_first_and_unordered_last() {
        let c = config(TWO_TIERS);
        let mut rng = fastrand::Rng::with_seed(7);
        let p = plan(&c, Operation::Chat, "fast", &[], &mut rng).unwrap();
        assert_eq!(p.group, "small");
        assert_eq!(p.attempts, vec![1, 0, 2]);
    }

    #[test]
    fn unreachable_deployments_go_after_reachable_ones() {
        let c = config(TWO_TIERS);
        let state = [DeploymentView::default(), DeploymentView { unreachable: true }, DeploymentView::default()];
        let p = plan(&c, Operation::Chat, "small", &state, &mut fastrand::Rng::with_seed(1)).unwrap();
        assert_eq!(p.attempts, vec![0, 2, 1]);
    }

    #[test]
    fn unknown_model_is_litellms_400() {
        let c = config(TWO_TIERS);
        let err = plan(&c, Operation::Chat, "nope", &[], &mut fastrand::Rng::with_seed(1)).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
        assert_eq!(
            err.to_string(),
            "/chat/completions: Invalid model name passed in model=nope. Call `/v1/models` to view available models for your key."
        );
    }

    #[test]
    fn weights_split_traffic_in_proportion() {
        let c = config(
            r#"
model_list:
  - model_name: g
    litellm_params: {model: openai/x, api_base: "http://a:1", weight: 3}
  - model_name: g
    litellm_params: {model: openai/x, api_base: "http://b:1", weight: 1}
  - model_name: g
    litellm_params: {model: openai/x, api_base: "http://c:1"}
"#,
        );
        let mut rng = fastrand::Rng::with_seed(42);
        let mut first = [0u32; 3];
        for _ in 0..4000 {
            let p = plan(&c, Operation::Chat, "g", &[], &mut rng).unwrap();
            first[p.attempts[0]] += 1;
            assert_eq!(p.attempts.len(), 3);
        }
        // Weight 0 (unset while others are set) is never picked first, as LiteLLM.
        assert_eq!(first[2], 0);
        let ratio = f64::from(first[0]) / f64::from(first[1]);
        assert!((2.5..3.6).contains(&ratio), "ratio {ratio}");
    }

    #[test]
    fn rpm_is_the_weight_when_no_weight_is_set() {
        let c = config(
            r#"
model_list:
  - model_name: g
    litellm_params: {model: openai/x, api_base: "http://a:1", rpm: 10}
  - model_name: g
    rpm: 90
    litellm_params: {model: openai/x, api_base: "http://b:1"}
"#,
        );
        let mut rng = fastrand::Rng::with_seed(3);
        let b_first =
            (0..2000).filter(|_| plan(&c, Operation::Chat, "g", &[], &mut rng).unwrap().attempts[0] == 1).count();
        assert!((1650..1950).contains(&b_first), "{b_first}");
    }

    #[test]
    fn auto_router_is_reported_as_not_implemented() {
        let c = config(
            r#"
model_list:
  - model_name: a
    litellm_params: {model: openai/x, api_base: "http://a:1"}
  - model_name: smart
    litellm_params: {model: auto_router/complexity_router}
"#,
        );
        let err = plan(&c, Operation::Chat, "smart", &[], &mut fastrand::Rng::with_seed(1)).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::NOT_IMPLEMENTED);
    }
}
