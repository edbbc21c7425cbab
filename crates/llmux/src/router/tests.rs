//! The routing pipeline and reliability rules, driven with hand-built state: no sockets, no sleeps.

use std::time::Duration;

use super::policy::{self, Cooldown, Failure};
use super::*;
use crate::config::{load_str, ErrorClass};
use crate::state::{DeploymentIx, MinuteCounts};

fn config(yaml: &str) -> Config {
    load_str(yaml, &|_| None).unwrap_or_else(|d| panic!("{d}")).0
}

fn target<'a>(c: &'a Config, name: &str) -> Target<'a> {
    resolve(c, Operation::Chat, name).unwrap()
}

fn pick_one(c: &Config, name: &str, views: &[DeploymentView], now: u64) -> Result<Pick, NoCandidate> {
    pick(c, &target(c, name), &Ask::default(), views, now, &mut fastrand::Rng::with_seed(9))
}

const TIERS: &str = r#"
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

fn cooling(until: u64) -> DeploymentView {
    DeploymentView { cooldown_until: until, ..DeploymentView::default() }
}

#[test]
fn only_the_lowest_order_tier_is_drawn_from() {
    let c = config(TIERS);
    for seed in 0..50 {
        let p = pick(&c, &target(&c, "fast"), &Ask::default(), &[], 0, &mut fastrand::Rng::with_seed(seed)).unwrap();
        assert_eq!(p.deployment, 1);
        assert_eq!(p.tier, Some(1));
        assert!(
            p.skipped.contains(&(DeploymentIx(0), Skip::LowerPriority))
                && p.skipped.contains(&(DeploymentIx(2), Skip::LowerPriority))
        );
    }
}

#[test]
fn cooldown_is_filtered_before_order_so_the_next_tier_serves_at_once() {
    let c = config(TIERS);
    let views = [DeploymentView::default(), cooling(5_000), DeploymentView::default()];
    let p = pick_one(&c, "small", &views, 1_000).unwrap();
    assert_eq!((p.deployment.0, p.tier), (0, Some(2)));
    assert!(p.skipped.contains(&(DeploymentIx(1), Skip::CoolingDown(4_000))));
    // Unordered deployments serve only when no ordered one survives.
    let views = [cooling(5_000), cooling(5_000), DeploymentView::default()];
    assert_eq!(pick_one(&c, "small", &views, 1_000).unwrap().deployment, 2);
}

#[test]
fn all_cooling_down_names_every_id_and_the_earliest_return() {
    let c = config(TIERS);
    let views = [cooling(9_000), cooling(3_000), cooling(20_000)];
    match pick_one(&c, "small", &views, 1_000) {
        Err(NoCandidate::AllCoolingDown { ids, retry_in_ms, whole_group }) => {
            assert_eq!(ids.len(), 3);
            assert!(whole_group);
            assert_eq!(retry_in_ms, 2_000);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unhealthy_hosts_are_skipped_unless_every_host_is_unhealthy() {
    let c = config(TIERS);
    let down = DeploymentView { unhealthy: true, ..DeploymentView::default() };
    let p = pick_one(&c, "small", &[DeploymentView::default(), down, DeploymentView::default()], 0).unwrap();
    assert_eq!(p.deployment, 0);
    assert!(p.skipped.contains(&(DeploymentIx(1), Skip::Unhealthy)));
    assert_eq!(pick_one(&c, "small", &[down, down, down], 0).unwrap().deployment, 1);
    // A host where the load would push out a model serving requests is passed over; all such: the request queues.
    let evicts_busy = DeploymentView { evicts: true, evicts_busy: true, ..DeploymentView::default() };
    let p = pick_one(&c, "small", &[DeploymentView::default(), evicts_busy, DeploymentView::default()], 0).unwrap();
    assert_eq!(
        (p.deployment.0, p.skipped.contains(&(DeploymentIx(1), Skip::EvictsBusy))),
        (0, true),
        "order 2 takes over"
    );
    assert!(matches!(pick_one(&c, "small", &[evicts_busy; 3], 0), Err(NoCandidate::AllBusy)));
    // A host that sleeps is passed over the same way, and said to be asleep.
    let asleep = DeploymentView { asleep: true, ..down };
    let p = pick_one(&c, "small", &[DeploymentView::default(), asleep, DeploymentView::default()], 0).unwrap();
    assert!(p.skipped.contains(&(DeploymentIx(1), Skip::Asleep)));
    assert_eq!(Skip::Asleep.to_string(), "host asleep");
}

#[test]
fn an_order_escalation_hop_draws_only_from_its_tier() {
    let c = config(TIERS);
    let ask = Ask { target_order: Some(2), ..Ask::default() };
    let p = pick(&c, &target(&c, "small"), &ask, &[], 0, &mut fastrand::Rng::with_seed(1)).unwrap();
    assert_eq!(p.deployment, 0);
    assert_eq!(order_tiers(&c, target(&c, "small").members), [1, 2]);
}

#[test]
fn deployments_that_refused_the_request_are_avoided() {
    let c = config(TIERS);
    let ask = Ask { avoid: &[1], ..Ask::default() };
    assert_eq!(pick(&c, &target(&c, "small"), &ask, &[], 0, &mut fastrand::Rng::with_seed(1)).unwrap().deployment, 0);
    let ask = Ask { avoid: &[0, 1, 2], ..Ask::default() };
    assert_eq!(
        pick(&c, &target(&c, "small"), &ask, &[], 0, &mut fastrand::Rng::with_seed(1)),
        Err(NoCandidate::Exhausted)
    );
}

#[test]
fn unknown_model_is_litellms_400() {
    let c = config(TIERS);
    let err = resolve(&c, Operation::Chat, "nope").unwrap_err();
    assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
    assert_eq!(
        err.to_string(),
        "/chat/completions: Invalid model name passed in model=nope. Call `/v1/models` to view available models for your key."
    );
}

const WEIGHTED: &str = r#"
model_list:
  - model_name: g
    litellm_params: {model: openai/x, api_base: "http://a:1", weight: 3}
  - model_name: g
    litellm_params: {model: openai/x, api_base: "http://b:1", weight: 1}
  - model_name: g
    litellm_params: {model: openai/x, api_base: "http://c:1"}
"#;

/// Three deployments of one group without shares: residency alone decides among them.
const UNWEIGHTED: &str = r#"
model_list:
  - model_name: g
    litellm_params: {model: openai/x, api_base: "http://a:1"}
  - model_name: g
    litellm_params: {model: openai/x, api_base: "http://b:1"}
  - model_name: g
    litellm_params: {model: openai/x, api_base: "http://c:1"}
"#;

#[test]
fn weights_split_traffic_in_proportion_and_weightless_members_never_serve() {
    let c = config(WEIGHTED);
    let t = target(&c, "g");
    let mut rng = fastrand::Rng::with_seed(42);
    let mut hits = [0u32; 3];
    for _ in 0..8000 {
        hits[pick(&c, &t, &Ask::default(), &[], 0, &mut rng).unwrap().deployment.0] += 1;
    }
    assert_eq!(hits[2], 0);
    // Expected 6000 : 2000; ±5 standard deviations of a binomial(8000, 0.75) is ±194.
    assert!((5806..=6194).contains(&hits[0]), "{hits:?}");
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
    let t = target(&c, "g");
    let mut rng = fastrand::Rng::with_seed(3);
    let b = (0..4000).filter(|_| pick(&c, &t, &Ask::default(), &[], 0, &mut rng).unwrap().deployment == 1).count();
    // Expected 3600; 5 standard deviations of binomial(4000, 0.9) ≈ 95.
    assert!((3505..=3695).contains(&b), "{b}");
}

fn strategy_config(strategy: &str, extra: &str) -> Config {
    config(&format!(
        r#"
router_settings:
  routing_strategy: {strategy}
  {extra}
model_list:
  - model_name: g
    litellm_params: {{model: openai/x, api_base: "http://a:1", rpm: 2, input_cost_per_token: 0.3}}
  - model_name: g
    litellm_params: {{model: openai/x, api_base: "http://b:1", input_cost_per_token: 0.1, output_cost_per_token: 0.1}}
  - model_name: g
    litellm_params: {{model: openai/x, api_base: "http://c:1"}}
"#
    ))
}

#[test]
fn least_busy_takes_the_fewest_in_flight_first_in_file_order_on_ties() {
    let c = strategy_config("least-busy", "");
    let v = |n| DeploymentView { in_flight: n, ..DeploymentView::default() };
    assert_eq!(pick_one(&c, "g", &[v(3), v(1), v(2)], 0).unwrap().deployment, 1);
    assert_eq!(pick_one(&c, "g", &[v(1), v(1), v(1)], 0).unwrap().deployment, 0);
}

#[test]
fn latency_based_prefers_the_fastest_and_tries_unmeasured_ones() {
    let c = strategy_config("latency-based-routing", "routing_strategy_args: {lowest_latency_buffer: 0.5}");
    let v = |l: Option<f64>| DeploymentView { latency: l, ..DeploymentView::default() };
    let views = [v(Some(2.0)), v(Some(1.0)), v(Some(1.4))];
    let mut rng = fastrand::Rng::with_seed(5);
    let t = target(&c, "g");
    let picks: Vec<usize> =
        (0..200).map(|_| pick(&c, &t, &Ask::default(), &views, 0, &mut rng).unwrap().deployment.0).collect();
    assert!(picks.contains(&1) && picks.contains(&2) && !picks.contains(&0), "buffer 0.5 admits 1.4 s but not 2 s");
    assert_eq!(pick_one(&c, "g", &[v(Some(2.0)), v(Some(1.0)), v(None)], 0).unwrap().deployment, 2);
}

#[test]
fn usage_based_skips_deployments_over_rpm_and_prefers_the_least_used() {
    let c = strategy_config("usage-based-routing-v2", "");
    let used = |r, t| DeploymentView { requests_this_minute: r, tokens_this_minute: t, ..DeploymentView::default() };
    let p = pick_one(&c, "g", &[used(2, 0), used(0, 500), used(0, 100)], 0).unwrap();
    assert_eq!(p.deployment, 2);
    assert!(p.skipped.contains(&(DeploymentIx(0), Skip::OverLimit)));
}

#[test]
fn cost_based_takes_the_cheapest() {
    let c = strategy_config("cost-based-routing", "");
    assert_eq!(pick_one(&c, "g", &[], 0).unwrap().deployment, 1);
}

#[test]
fn pre_call_checks_drop_deployments_the_prompt_does_not_fit() {
    let c = config(
        r#"
router_settings: {enable_pre_call_checks: true}
model_list:
  - model_name: g
    litellm_params: {model: openai/x, api_base: "http://a:1", order: 1}
    model_info: {max_input_tokens: 100}
  - model_name: g
    litellm_params: {model: openai/x, api_base: "http://b:1", order: 2}
    model_info: {max_input_tokens: 1000}
"#,
    );
    let t = target(&c, "g");
    let ask = |tokens| Ask { prompt_tokens: tokens, ..Ask::default() };
    let mut rng = fastrand::Rng::with_seed(1);
    assert_eq!(pick(&c, &t, &ask(50), &[], 0, &mut rng).unwrap().deployment, 0);
    let p = pick(&c, &t, &ask(500), &[], 0, &mut rng).unwrap();
    assert_eq!(p.deployment, 1);
    assert!(p.skipped.contains(&(DeploymentIx(0), Skip::ContextWindow)));
    assert_eq!(
        pick(&c, &t, &ask(5000), &[], 0, &mut rng),
        Err(NoCandidate::ContextWindow { tokens: 5000, largest: 1000 })
    );
}

fn failure(status: u16) -> Failure {
    let err = crate::error::Error::Upstream {
        status: http::StatusCode::from_u16(status).unwrap(),
        message: "x".into(),
        kind: None,
        retry_after: None,
    };
    Failure::of(&err).unwrap()
}

const TWO: &str = r#"
model_list:
  - model_name: g
    litellm_params: {model: openai/x, api_base: "http://a:1"}
  - model_name: g
    litellm_params: {model: openai/x, api_base: "http://b:1"}
  - model_name: solo
    litellm_params: {model: openai/x, api_base: "http://c:1"}
"#;

#[test]
fn litellms_default_cooldown_rules() {
    let c = config(TWO);
    let (s, d) = (&c.router, &c.deployments[0]);
    let five = Duration::from_secs(5);
    let one = MinuteCounts { fails: 1, successes: 10 };
    // 429 in a multi-deployment group: now, for cooldown_time (or the engine's retry-after).
    assert_eq!(policy::cooldown(s, d, 2, false, &failure(429), one), Cooldown::Now(five));
    let mut limited = failure(429);
    limited.retry_after = Some(Duration::from_secs(20));
    assert_eq!(policy::cooldown(s, d, 2, false, &limited, one), Cooldown::Now(Duration::from_secs(20)));
    // ... but not for a lone deployment.
    assert_eq!(policy::cooldown(s, d, 1, false, &failure(429), one), Cooldown::No);
    // 401/404 always, 400 never, 5xx only by failure rate.
    assert_eq!(policy::cooldown(s, d, 1, false, &failure(401), one), Cooldown::Now(five));
    assert_eq!(policy::cooldown(s, d, 1, false, &failure(404), one), Cooldown::Now(five));
    assert_eq!(policy::cooldown(s, d, 2, false, &failure(400), one), Cooldown::No);
    assert_eq!(policy::cooldown(s, d, 2, false, &failure(500), one), Cooldown::No);
    let bad_minute = MinuteCounts { fails: 3, successes: 2 };
    assert_eq!(policy::cooldown(s, d, 2, false, &failure(500), bad_minute), Cooldown::Now(five));
    assert_eq!(policy::cooldown(s, d, 1, false, &failure(500), bad_minute), Cooldown::No);
}

#[test]
fn a_refused_connection_cools_down_at_once_even_alone() {
    let c = config(TWO);
    let refused = Failure::of(&crate::error::Error::Connect("refused".into())).unwrap();
    assert!(refused.connect);
    assert_eq!(refused.status, 500);
    let d = &c.deployments[2];
    assert_eq!(
        policy::cooldown(&c.router, d, 1, false, &refused, MinuteCounts::default()),
        Cooldown::Now(Duration::from_secs(5))
    );
}

#[test]
fn allowed_fails_switches_to_counting() {
    let c = config(&format!("router_settings:\n  allowed_fails: 2\n  cooldown_time: 30\n{TWO}"));
    let d = &c.deployments[0];
    let thirty = Duration::from_secs(30);
    assert_eq!(
        policy::cooldown(&c.router, d, 2, false, &failure(500), MinuteCounts::default()),
        Cooldown::IfCountExceeds { key: None, allowed: 2, duration: thirty }
    );
    // A lone deployment without a fallback entry is never cooled down by a generic allowed_fails.
    assert_eq!(
        policy::cooldown(&c.router, &c.deployments[2], 1, false, &failure(500), MinuteCounts::default()),
        Cooldown::No
    );
    let c = config(&format!("router_settings:\n  allowed_fails_policy: {{RateLimitErrorAllowedFails: 0}}\n{TWO}"));
    assert_eq!(
        policy::cooldown(&c.router, &c.deployments[2], 1, false, &failure(429), MinuteCounts::default()),
        Cooldown::IfCountExceeds { key: Some(ErrorClass::RateLimit), allowed: 0, duration: Duration::from_secs(5) }
    );
}

#[test]
fn retry_rules() {
    let c = config(&format!(
        "router_settings:\n  num_retries: 3\n  retry_policy: {{BadRequestErrorRetries: 1}}\n  model_group_retry_policy: {{solo: {{RateLimitErrorRetries: 7}}}}\n{TWO}"
    ));
    let s = &c.router;
    let d = &c.deployments[0];
    assert_eq!(policy::retries_for(s, "g", d, &failure(500), None), (3, false));
    assert_eq!(policy::retries_for(s, "g", d, &failure(400), None), (1, true));
    assert_eq!(policy::retries_for(s, "solo", d, &failure(429), None), (7, true));
    assert_eq!(policy::retries_for(s, "solo", d, &failure(429), Some(0)), (0, false));
    // A client may lower the retries, never raise them past the config's.
    assert_eq!(policy::retries_for(s, "g", d, &failure(500), Some(1)), (1, false));
    assert_eq!(policy::retries_for(s, "g", d, &failure(500), Some(1_000_000_000)), (3, false));
    // Retryable statuses; 401 only with another deployment; 404 never; a policy lifts the guards.
    assert!(policy::should_retry(s, &failure(503), 1, 1, false));
    assert!(policy::should_retry(s, &failure(429), 1, 1, false));
    assert!(!policy::should_retry(s, &failure(400), 2, 2, false));
    assert!(policy::should_retry(s, &failure(400), 2, 2, true));
    assert!(policy::should_retry(s, &failure(401), 2, 1, false));
    assert!(!policy::should_retry(s, &failure(401), 1, 1, false));
    assert!(!policy::should_retry(s, &failure(404), 2, 2, false));
    // Nothing left that is not cooling down: no retry in this group.
    assert!(!policy::should_retry(s, &failure(503), 2, 0, false));
}

#[test]
fn backoff_is_zero_with_somewhere_else_to_go_and_exponential_otherwise() {
    let c = config(TWO);
    let s = &c.router;
    assert_eq!(policy::backoff(s, &failure(503), 0, 2, 1, 0.5), Duration::ZERO);
    assert_eq!(policy::backoff(s, &failure(503), 0, 1, 1, 0.0), Duration::from_millis(500));
    assert_eq!(policy::backoff(s, &failure(503), 2, 1, 1, 0.0), Duration::from_secs(2));
    assert_eq!(policy::backoff(s, &failure(503), 9, 1, 1, 0.0), Duration::from_secs(8));
    assert_eq!(policy::backoff(s, &failure(503), 0, 1, 1, 1.0), Duration::from_millis(1250));
    let mut limited = failure(429);
    limited.retry_after = Some(Duration::from_secs(3));
    assert_eq!(policy::backoff(s, &limited, 0, 1, 0, 0.9), Duration::from_secs(3));
}

#[test]
fn context_window_and_content_policy_errors_are_recognised() {
    let err = |m: &str| crate::error::Error::Upstream {
        status: http::StatusCode::BAD_REQUEST,
        message: m.into(),
        kind: None,
        retry_after: None,
    };
    let ctx = Failure::of(&err("This model's maximum context length is 4096 tokens")).unwrap();
    assert!(ctx.context_window);
    assert!(
        Failure::of(&err("the request exceeds the available context size, try increasing it")).unwrap().context_window
    );
    assert_eq!(Failure::of(&err("blocked by content_policy")).unwrap().class, ErrorClass::ContentPolicyViolation);
    assert!(!Failure::of(&err("invalid temperature")).unwrap().context_window);
    assert!(Failure::of(&crate::error::Error::invalid("bad", None)).is_none(), "client errors are not engine failures");
}

#[test]
fn within_a_tier_the_host_with_the_model_loaded_wins() {
    let c = config(TIERS);
    let warm = DeploymentView { warm: true, ..DeploymentView::default() };
    let mut equal = config(TIERS);
    equal.deployments[0].order = Some(1);
    let t = target(&equal, "small");
    let mut rng = fastrand::Rng::with_seed(4);
    for _ in 0..100 {
        let p = pick(
            &equal,
            &t,
            &Ask::default(),
            &[DeploymentView::default(), warm, DeploymentView::default()],
            0,
            &mut rng,
        )
        .unwrap();
        assert_eq!(p.deployment, 1, "no weights: the warm host wins");
    }
    // Order still comes first: a warm lower-priority host does not jump the tier.
    let p = pick_one(&c, "small", &[warm, DeploymentView::default(), DeploymentView::default()], 0).unwrap();
    assert_eq!(p.deployment, 1);
}

#[test]
fn residency_routing_off_is_residency_blind() {
    let mut c = config(WEIGHTED);
    c.router.residency_routing = false;
    let warm = DeploymentView { warm: true, ..DeploymentView::default() };
    let t = target(&c, "g");
    let mut rng = fastrand::Rng::with_seed(4);
    let views = [DeploymentView::default(), warm, DeploymentView::default()];
    let mut cold = 0;
    for _ in 0..200 {
        if pick(&c, &t, &Ask::default(), &views, 0, &mut rng).unwrap().deployment != 1 {
            cold += 1;
        }
    }
    assert!(cold > 20, "the shuffle ignores where the model is loaded ({cold} of 200 went to cold hosts)");
}

#[test]
fn a_host_that_would_evict_a_pinned_model_is_used_only_when_nothing_else_is_left() {
    let c = config(WEIGHTED);
    let t = target(&c, "g");
    let evicts = DeploymentView { evicts_pinned: true, ..DeploymentView::default() };
    let mut rng = fastrand::Rng::with_seed(9);
    for _ in 0..100 {
        let p = pick(&c, &t, &Ask::default(), &[evicts, DeploymentView::default(), evicts], 0, &mut rng).unwrap();
        assert_eq!(p.deployment, 1);
    }
    let p = pick(&c, &t, &Ask::default(), &[evicts, evicts, evicts], 0, &mut rng).unwrap();
    assert!(p.skipped.is_empty() || !p.skipped.iter().any(|(_, s)| *s == Skip::EvictsPinned), "no alternative: used");
}

#[test]
fn with_nobody_warm_the_model_goes_where_it_fits() {
    let c = config(UNWEIGHTED);
    let t = target(&c, "g");
    let full = DeploymentView { evicts: true, ..DeploymentView::default() };
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..100 {
        let p = pick(&c, &t, &Ask::default(), &[full, full, DeploymentView::default()], 0, &mut rng).unwrap();
        assert_eq!(p.deployment, 2);
    }
    // A warm host still wins, and with no room anywhere the shuffle decides.
    let warm_full = DeploymentView { warm: true, ..full };
    let p = pick(&c, &t, &Ask::default(), &[warm_full, full, DeploymentView::default()], 0, &mut rng).unwrap();
    assert_eq!(p.deployment, 0);
    assert!(pick(&c, &t, &Ask::default(), &[full, full, full], 0, &mut rng).is_ok());
}

#[test]
fn a_busy_warm_host_loses_to_an_idle_cold_one_when_loading_is_quicker_than_waiting() {
    let c = config(UNWEIGHTED);
    let t = target(&c, "g");
    let mut rng = fastrand::Rng::with_seed(5);
    // Warm, 4 requests in flight at 3 s each: about 12 s of queue.
    let busy_warm = DeploymentView { warm: true, in_flight: 4, latency: Some(3.0), ..DeploymentView::default() };
    let quick_load = DeploymentView { load_cost: Some(5.0), ..DeploymentView::default() };
    let slow_load = DeploymentView { load_cost: Some(30.0), ..DeploymentView::default() };
    let unknown = DeploymentView::default();
    let p = pick(&c, &t, &Ask::default(), &[busy_warm, quick_load, slow_load], 0, &mut rng).unwrap();
    assert_eq!(p.deployment, 1, "a 5 s load beats a 12 s queue");
    assert!(p.skipped.contains(&(DeploymentIx(0), Skip::BusyWarm)), "{:?}", p.skipped);
    let p = pick(&c, &t, &Ask::default(), &[busy_warm, slow_load, unknown], 0, &mut rng).unwrap();
    assert_eq!(p.deployment, 0, "a 30 s load does not; an unlearned load cost never does");
    let idle_warm = DeploymentView { warm: true, ..DeploymentView::default() };
    let p = pick(&c, &t, &Ask::default(), &[idle_warm, quick_load, quick_load], 0, &mut rng).unwrap();
    assert_eq!(p.deployment, 0);
    // Streams answer their first byte in 0.2 s but hold the host for 10 s: the queue is 4 × 10 s, not 4 × 0.2 s.
    let streaming = DeploymentView {
        warm: true,
        in_flight: 4,
        latency: Some(0.2),
        service: Some(10.0),
        ..DeploymentView::default()
    };
    let p = pick(&c, &t, &Ask::default(), &[streaming, slow_load, unknown], 0, &mut rng).unwrap();
    assert_eq!(p.deployment, 1, "a 30 s load beats 40 s of streams ahead");
}

/// Share of 2,000 picks that went to each member.
fn shares(c: &Config, name: &str, views: &[DeploymentView]) -> Vec<f64> {
    let t = target(c, name);
    let mut rng = fastrand::Rng::with_seed(11);
    let mut counts = vec![0u32; c.deployments.len()];
    for _ in 0..2_000 {
        counts[pick(c, &t, &Ask::default(), views, 0, &mut rng).unwrap().deployment.0] += 1;
    }
    counts.iter().map(|&n| f64::from(n) / 2_000.0).collect()
}

const NINE_TO_ONE: &str = r#"
model_list:
  - model_name: g
    litellm_params: {model: ollama_chat/m, api_base: "http://a:1", weight: 9}
  - model_name: g
    litellm_params: {model: ollama_chat/m, api_base: "http://b:1", weight: 1}
  - model_name: h
    litellm_params: {model: ollama_chat/m, api_base: "http://a:1", rpm: 6}
  - model_name: h
    litellm_params: {model: ollama_chat/m, api_base: "http://b:1", rpm: 1440}
"#;

#[test]
fn explicit_weights_hold_against_residency() {
    let c = config(NINE_TO_ONE);
    let warm = DeploymentView { warm: true, ..DeploymentView::default() };
    let cold = DeploymentView::default();
    let share = shares(&c, "g", &[warm, cold]);
    assert!((0.06..0.14).contains(&share[1]), "weight 1 of 10 on a cold host: {share:?}");
    // rpm as weights too, warm on the small share.
    let share = shares(&c, "h", &[cold, warm]);
    assert!((0.99..=1.0).contains(&share[3]) && share[2] > 0.0, "6 : 1440 by rpm: {share:?}");
    // Every host failing its probe (LiteLLM's safety net keeps them all): the weights still split.
    let down = DeploymentView { unhealthy: true, ..warm };
    let share = shares(&c, "g", &[down, DeploymentView { unhealthy: true, ..cold }]);
    assert!((0.06..0.14).contains(&share[1]), "{share:?}");
}

#[test]
fn weights_do_not_override_eviction_pinning_or_a_host_busy_loading() {
    let c = config(NINE_TO_ONE);
    let warm = DeploymentView { warm: true, ..DeploymentView::default() };
    for (other, why) in [
        (DeploymentView { evicts: true, ..DeploymentView::default() }, Skip::NoRoom),
        (DeploymentView { evicts: true, evicts_pinned: true, ..DeploymentView::default() }, Skip::EvictsPinned),
        (DeploymentView { host_loading: true, ..DeploymentView::default() }, Skip::HostLoading),
    ] {
        assert_eq!(shares(&c, "g", &[warm, other])[1], 0.0, "{why:?}");
        let p = pick_one(&c, "g", &[warm, other], 0).unwrap();
        assert!(p.skipped.contains(&(DeploymentIx(1), why)), "{:?}", p.skipped);
    }
    // The heavy share's host busy loading: the light one takes everything meanwhile.
    let loading = DeploymentView { host_loading: true, warm: true, ..DeploymentView::default() };
    assert_eq!(shares(&c, "g", &[loading, DeploymentView::default()])[1], 1.0);
}

/// Three equal deployments of one group on three hosts.
const TRIO: &str = r#"
model_list:
  - model_name: coding
    litellm_params: {model: openai/q, api_base: "http://a:1/v1"}
  - model_name: coding
    litellm_params: {model: openai/q, api_base: "http://b:1/v1"}
  - model_name: coding
    litellm_params: {model: openai/q, api_base: "http://c:1/v1"}
"#;

fn picks(c: &Config, ask: &Ask<'_>, views: &[DeploymentView]) -> Vec<usize> {
    let t = target(c, "coding");
    let mut rng = fastrand::Rng::with_seed(1);
    let mut seen: Vec<usize> = (0..60).map(|_| pick(c, &t, ask, views, 0, &mut rng).unwrap().deployment.0).collect();
    seen.sort_unstable();
    seen.dedup();
    seen
}

#[test]
fn the_deployment_holding_the_prompt_prefix_wins_unless_it_is_much_busier() {
    let c = config(TRIO);
    let ask = Ask { prompt_tokens: 12_000, ..Ask::default() };
    let cached = DeploymentView { cached: 11_000, ..DeploymentView::default() };
    let fresh = DeploymentView::default();
    assert_eq!(picks(&c, &ask, &[fresh, cached, fresh]), vec![1]);
    let p = pick(&c, &target(&c, "coding"), &ask, &[fresh, cached, fresh], 0, &mut fastrand::Rng::new()).unwrap();
    assert!(
        p.skipped.contains(&(DeploymentIx(0), Skip::PrefixElsewhere))
            && p.skipped.contains(&(DeploymentIx(2), Skip::PrefixElsewhere))
    );
    assert_eq!(p.cached, 11_000);
    // Busier by the threshold: still preferred; busier beyond it: the load is shared again.
    let busy = |n| DeploymentView { in_flight: n, ..cached };
    assert_eq!(picks(&c, &ask, &[fresh, busy(BALANCE_THRESHOLD), fresh]), vec![1]);
    assert_eq!(picks(&c, &ask, &[fresh, busy(BALANCE_THRESHOLD + 1), fresh]), vec![0, 2]);
    // A short shared prefix is not worth concentrating load for.
    let little = DeploymentView { cached: MIN_CACHED_TOKENS - 1, ..fresh };
    assert_eq!(picks(&c, &ask, &[fresh, little, fresh]), vec![0, 1, 2]);
    // A new conversation goes where it pushes no other conversation's prefix out of a cache.
    let room = DeploymentView { cache_room: true, ..fresh };
    assert_eq!(picks(&c, &ask, &[fresh, room, fresh]), vec![1]);
    assert_eq!(picks(&c, &ask, &[room, cached, room]), vec![1], "the prefix comes first");
    // Residency comes first: a cold host holding an old prefix does not beat a warm one.
    let mut residency = config(TRIO);
    residency.router.residency_routing = false;
    assert_eq!(picks(&residency, &ask, &[fresh, cached, fresh]), vec![0, 1, 2], "off with residency routing");
}

#[test]
fn with_speeds_known_the_candidate_expected_to_finish_first_wins() {
    let c = config(TRIO);
    let ask = Ask { prompt_tokens: 20_000, output_tokens: 500, ..Ask::default() };
    // A P40 and two quick GPUs: the P40 holds the prompt but reads 20k tokens anyway slower than they do.
    let quick = DeploymentView { prefill_rate: Some(4_000.0), decode_rate: Some(60.0), ..DeploymentView::default() };
    let p40 = DeploymentView { prefill_rate: Some(300.0), decode_rate: Some(15.0), cached: 0, ..quick };
    assert_eq!(picks(&c, &ask, &[quick, p40, quick]), vec![0, 2], "similar estimates share the load");
    let p = pick(&c, &target(&c, "coding"), &ask, &[quick, p40, quick], 0, &mut fastrand::Rng::new()).unwrap();
    let expected = 20_000.0 / 300.0 + 500.0 / 15.0;
    assert!(
        p.skipped.contains(&(DeploymentIx(1), Skip::Slower((expected * 1000.0_f64).round() as u64))),
        "{:?}",
        p.skipped
    );
    assert!((p.expected.unwrap() - (5.0 + 500.0 / 60.0)).abs() < 1e-9);
    // The cache counts as prompt it need not read: a quick GPU holding the prefix beats the other quick one.
    let holder = DeploymentView { cached: 19_000, ..quick };
    assert_eq!(picks(&c, &ask, &[quick, p40, holder]), vec![2]);
    // Queued work counts: the holder busy with two long requests loses to an idle quick GPU.
    let queued = DeploymentView { in_flight: 2, service: Some(30.0), ..holder };
    assert_eq!(picks(&c, &ask, &[quick, p40, queued]), vec![0]);
    // A candidate that has not answered yet is assumed as fast as the others: it wins over a holder with a long
    // queue (rather than never being tried), and loses to an idle one.
    let unmeasured = DeploymentView::default();
    assert_eq!(picks(&c, &ask, &[unmeasured, p40, holder]), vec![2]);
    let swamped = DeploymentView { in_flight: 3, service: Some(40.0), ..holder };
    assert_eq!(picks(&c, &ask, &[unmeasured, p40, swamped]), vec![0]);
    // Among candidates the estimate cannot tell apart, the one holding the prefix wins.
    let close = DeploymentView { cached: 2_000, ..quick };
    assert_eq!(picks(&c, &ask, &[quick, close, quick]), vec![1]);
}
