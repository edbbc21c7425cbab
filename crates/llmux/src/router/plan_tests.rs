//! The attempt plan driven by a fake executor: the real `router::pick` over hand-built views, engine outcomes
//! from a table, cooldowns and host-down marks kept in a vector. No socket, no sleep, no clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use http::StatusCode;

use super::*;
use crate::config::load_str;
use crate::router::{pick, Ask, DeploymentView};

fn config(yaml: &str) -> Config {
    load_str(yaml, &|_| None).unwrap_or_else(|d| panic!("{d}")).0
}

/// What the fake executor saw.
#[derive(Debug, Default)]
struct Sim {
    /// Deployments called, in order.
    calls: Vec<usize>,
    /// Back-off waits asked for.
    waits: Vec<Duration>,
    cooled: Vec<bool>,
    fails: Vec<u32>,
    /// Hosts woken, in order.
    wakes: Vec<usize>,
}

fn status(code: u16) -> Error {
    let status = StatusCode::from_u16(code).unwrap();
    Error::Upstream { status, message: format!("engine says {code}"), kind: None, retry_after: None }
}

/// Drives a request for `model` to its end; `outcome(deployment, call number)` is each engine's answer.
fn drive(
    c: &Config,
    model: &str,
    controls: &RouterControls,
    outcome: impl FnMut(usize, usize) -> Result<(), Error>,
) -> (Result<usize, Error>, Sim, u32, u32) {
    drive_with(c, model, controls, &[], false, outcome)
}

/// [`drive`] where the hosts `asleep` sleep, and a wake-up brings its host back when `wakes_up`.
fn drive_with(
    c: &Config,
    model: &str,
    controls: &RouterControls,
    asleep: &[usize],
    wakes_up: bool,
    mut outcome: impl FnMut(usize, usize) -> Result<(), Error>,
) -> (Result<usize, Error>, Sim, u32, u32) {
    let mut sim =
        Sim { cooled: vec![false; c.deployments.len()], fails: vec![0; c.deployments.len()], ..Sim::default() };
    let mut plan = Plan::new(c, Operation::Chat, model, controls);
    let mut action = plan.start();
    let mut hop: Option<Hop<'_>> = None;
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..100 {
        match action {
            Action::Fail(e) => return (Err(e), sim, plan.retries, plan.fallbacks),
            Action::Classify { .. } | Action::Embed { .. } => panic!("no strategy routers here"),
            Action::Retry { wait } => sim.waits.push(wait),
            Action::Try(next) => hop = Some(next),
            Action::FindAsleep => {
                action = plan.asleep(&|h| asleep.contains(&h));
                continue;
            }
            Action::Wake { host } => {
                sim.wakes.push(host);
                if wakes_up {
                    // The probe that finds it answering lifts its connection cooldowns.
                    for d in c.deployments.iter().filter(|d| d.host == Some(host)) {
                        sim.cooled[d.index] = false;
                    }
                }
                action = plan.woke(wakes_up, Duration::from_secs(60));
                continue;
            }
        }
        let h = hop.as_ref().unwrap();
        if let Some(next) = plan.may_attempt() {
            action = next;
            continue;
        }
        let views: Vec<DeploymentView> = h
            .target
            .members
            .iter()
            .map(|&i| DeploymentView { cooldown_until: if sim.cooled[i] { u64::MAX } else { 0 }, ..Default::default() })
            .collect();
        let ask = Ask { prompt_tokens: 0, output_tokens: 0, target_order: h.order, avoid: plan.avoid() };
        let p = match pick(c, &h.target, &ask, &views, 1, &mut rng) {
            Ok(p) => p,
            Err(none) => {
                action = plan.no_candidate(none);
                continue;
            }
        };
        let i = p.deployment.0;
        plan.attempting(p.tier);
        sim.calls.push(i);
        let err = match outcome(i, sim.calls.len()) {
            Ok(()) => {
                plan.answered(p.tier);
                return (Ok(i), sim, plan.retries, plan.fallbacks);
            }
            Err(e) => e,
        };
        let failure = match plan.failed(err, p.tier) {
            Failed::Count(f) => f,
            Failed::Next(next) => {
                action = next;
                continue;
            }
        };
        sim.fails[i] += 1;
        let d = &c.deployments[i];
        let cons = plan.cooldown(d, &failure, MinuteCounts { fails: sim.fails[i], successes: 0 });
        if let Some((host, window)) = cons.host_down {
            assert!(window >= PASSIVE_DOWN_MIN);
            for (j, other) in c.deployments.iter().enumerate() {
                if other.host == Some(host.0) {
                    sim.cooled[j] = true;
                }
            }
        }
        match cons.cooldown {
            Cooldown::No => {}
            Cooldown::Now(_) => sim.cooled[i] = true,
            Cooldown::IfCountExceeds { allowed, .. } => sim.cooled[i] |= sim.fails[i] > allowed,
        }
        let avoid = plan.avoid();
        let available = h.target.members.iter().filter(|m| !avoid.contains(m) && !sim.cooled[**m]).count();
        action = plan.after_failure(d, &failure, available, 0.5);
    }
    panic!("the plan did not end within 100 actions");
}

fn none() -> RouterControls {
    RouterControls::default()
}

/// The README fault table's setup: `g` with order 1 (deployment 0) and order 2 (1), falling back to `backup` (2).
const TABLE: &str = r#"
router_settings:
  fallbacks:
    - g: [backup]
model_list:
  - model_name: g
    litellm_params: {model: ollama_chat/m, api_base: "http://a:1", order: 1}
  - model_name: g
    litellm_params: {model: ollama_chat/m, api_base: "http://b:1", order: 2}
  - model_name: backup
    litellm_params: {model: ollama_chat/m, api_base: "http://c:1"}
"#;

#[test]
fn every_decision_row_of_the_fault_table() {
    let c = config(TABLE);
    let refused = || Error::Connect("could not connect to engine at a:1".into());
    let limited = || Error::Upstream {
        status: StatusCode::TOO_MANY_REQUESTS,
        message: "slow down".into(),
        kind: None,
        retry_after: Some(20),
    };
    // (fault, the error it causes, whether every deployment of the group fails, who answers, engine calls)
    type Row = (&'static str, Box<dyn Fn() -> Error>, bool, Result<usize, u16>, usize);
    let rows: Vec<Row> = vec![
        ("connection refused", Box::new(refused), false, Ok(1), 2),
        ("503", Box::new(|| status(503)), false, Ok(1), 4),
        ("500", Box::new(|| status(500)), false, Ok(1), 4),
        ("429 retry-after", Box::new(limited), false, Ok(1), 2),
        ("404", Box::new(|| status(404)), false, Ok(1), 2),
        ("401", Box::new(|| status(401)), false, Ok(1), 2),
        ("400", Box::new(|| status(400)), false, Err(400), 1),
        ("hung", Box::new(|| Error::Timeout("no answer".into())), false, Ok(1), 4),
        ("malformed", Box::new(|| Error::BadUpstreamResponse("not JSON".into())), false, Ok(1), 4),
        ("503 on the whole group", Box::new(|| status(503)), true, Ok(2), 7),
        ("429 on the whole group", Box::new(limited), true, Ok(2), 3),
    ];
    for (name, fault, both, expect, calls) in rows {
        let (result, sim, _, _) =
            drive(&c, "g", &none(), |i, _| if i == 0 || (both && i == 1) { Err(fault()) } else { Ok(()) });
        match (expect, &result) {
            (Ok(want), Ok(got)) => assert_eq!(want, *got, "{name}: answered by"),
            (Err(code), Err(e)) => assert_eq!(e.status().as_u16(), code, "{name}: status"),
            _ => panic!("{name}: {result:?}"),
        }
        assert_eq!(sim.calls.len(), calls, "{name}: engine calls {:?}", sim.calls);
    }
}

#[test]
fn an_answer_from_a_higher_order_tier_counts_as_a_fallback() {
    let c = config(TABLE);
    let (result, _, retries, fallbacks) =
        drive(&c, "g", &none(), |i, _| if i == 0 { Err(status(503)) } else { Ok(()) });
    assert_eq!(result.unwrap(), 1);
    assert_eq!((retries, fallbacks), (0, 1), "the order hop is a fresh group with its own retries");
}

const CHAIN: &str = r#"
router_settings:
  num_retries: 0
  model_group_alias: {nick: a}
  fallbacks:
    - a: [b]
    - b: [c]
    - c: [a]
model_list:
  - model_name: a
    litellm_params: {model: ollama_chat/a, api_base: "http://a:1"}
  - model_name: b
    litellm_params: {model: ollama_chat/b, api_base: "http://b:1"}
  - model_name: c
    litellm_params: {model: ollama_chat/c, api_base: "http://c:1"}
"#;

#[test]
fn fallback_loops_end_and_the_client_gets_the_primary_error_with_litellms_note() {
    let c = config(CHAIN);
    let (result, sim, _, _) = drive(&c, "a", &none(), |i, _| Err(status(500 + i as u16)));
    assert_eq!(sim.calls, vec![0, 1, 2], "a, b, c once each: c -> a is a loop");
    let err = result.unwrap_err();
    assert_eq!(err.status().as_u16(), 500, "the primary group's error");
    let text = err.to_string();
    assert!(text.contains("LiteLLM: model group 'a' failed with the error above."), "{text}");
    assert!(text.contains("Fallback model groups tried: ['b', 'c'], and they failed too."), "{text}");
}

#[test]
fn max_fallbacks_bounds_the_depth() {
    let c = config(&CHAIN.replace("num_retries: 0", "num_retries: 0\n  max_fallbacks: 1"));
    let (_, sim, _, _) = drive(&c, "a", &none(), |_, _| Err(status(500)));
    assert_eq!(sim.calls, vec![0, 1]);
}

#[test]
fn fallbacks_are_keyed_by_the_name_the_client_sent_then_by_the_group() {
    let yaml = CHAIN.replace("    - c: [a]", "    - c: [a]\n    - nick: [c]");
    let c = config(&yaml);
    let (result, sim, _, fallbacks) = drive(&c, "nick", &none(), |i, _| if i == 2 { Ok(()) } else { Err(status(500)) });
    assert_eq!(result.unwrap(), 2);
    assert_eq!(sim.calls, vec![0, 2], "the alias's own list, not a's");
    assert_eq!(fallbacks, 1);
    let c = config(CHAIN);
    let (_, sim, _, _) = drive(&c, "nick", &none(), |i, _| if i == 1 { Ok(()) } else { Err(status(500)) });
    assert_eq!(sim.calls, vec![0, 1], "no list for the alias: the group's");
}

#[test]
fn default_fallbacks_apply_when_no_list_names_the_group() {
    let yaml = CHAIN.replace("    - a: [b]\n", "").replace("  fallbacks:", "  default_fallbacks: [c]\n  fallbacks:");
    let c = config(&yaml);
    let (result, sim, _, _) = drive(&c, "a", &none(), |i, _| if i == 2 { Ok(()) } else { Err(status(500)) });
    assert_eq!((result.unwrap(), sim.calls), (2, vec![0, 2]));
}

#[test]
fn context_window_and_content_policy_errors_take_their_own_lists() {
    let yaml = CHAIN.replace(
        "  fallbacks:",
        "  context_window_fallbacks: [{a: [c]}]\n  content_policy_fallbacks: [{a: [b]}]\n  fallbacks:",
    );
    let c = config(&yaml);
    let long = || Error::Upstream {
        status: StatusCode::BAD_REQUEST,
        message: "this model's maximum context length is 4096".into(),
        kind: None,
        retry_after: None,
    };
    let (_, sim, _, _) = drive(&c, "a", &none(), |i, _| if i == 0 { Err(long()) } else { Ok(()) });
    assert_eq!(sim.calls, vec![0, 2], "context window -> c");
    let policy = || Error::Upstream {
        status: StatusCode::BAD_REQUEST,
        message: "blocked by content_policy_violation".into(),
        kind: None,
        retry_after: None,
    };
    if Failure::of(&policy()).is_some_and(|f| f.class == ErrorClass::ContentPolicyViolation) {
        let (_, sim, _, _) = drive(&c, "a", &none(), |i, _| if i == 0 { Err(policy()) } else { Ok(()) });
        assert_eq!(sim.calls, vec![0, 1], "content policy -> b");
    }
}

#[test]
fn a_bad_request_is_never_retried_nor_fallen_back_and_keeps_its_text() {
    let c = config(CHAIN);
    let (result, sim, _, _) = drive(&c, "a", &none(), |_, _| Err(status(400)));
    assert_eq!(sim.calls, vec![0]);
    assert!(!result.unwrap_err().to_string().contains("LiteLLM: model group"));
}

#[test]
fn client_fallbacks_replace_the_configured_chain_and_disable_fallbacks_stops_it() {
    let c = config(CHAIN);
    let controls = RouterControls { fallbacks: Some(vec!["c".into()]), ..none() };
    let (_, sim, _, _) = drive(&c, "a", &controls, |i, _| if i == 2 { Ok(()) } else { Err(status(500)) });
    assert_eq!(sim.calls, vec![0, 2]);
    let controls = RouterControls { disable_fallbacks: true, ..none() };
    let (result, sim, _, _) = drive(&c, "a", &controls, |_, _| Err(status(500)));
    assert_eq!(sim.calls, vec![0]);
    assert!(result.unwrap_err().to_string().contains("No fallback was attempted."));
}

#[test]
fn the_attempt_budget_ends_the_walk() {
    let c = config(&TABLE.replace("router_settings:", "router_settings:\n  max_attempts: 2"));
    let (result, sim, _, _) = drive(&c, "g", &none(), |_, _| Err(status(503)));
    assert_eq!(sim.calls.len(), 2);
    assert_eq!(result.unwrap_err().status().as_u16(), 503, "the last engine error, not the budget's");
}

#[test]
fn order_escalation_gives_the_client_the_last_error() {
    let c = config(&TABLE.replace("    - g: [backup]\n", "").replace("  fallbacks:\n", ""));
    let (result, sim, _, _) = drive(&c, "g", &none(), |i, _| Err(status(if i == 0 { 500 } else { 503 })));
    assert_eq!(sim.calls, vec![0, 0, 0, 1, 1, 1]);
    assert_eq!(result.unwrap_err().status().as_u16(), 503);
}

#[test]
fn retries_back_off_and_the_retry_count_is_the_final_groups() {
    let c = config(CHAIN.replace("num_retries: 0", "num_retries: 2").as_str());
    let (result, sim, retries, fallbacks) =
        drive(&c, "a", &none(), |i, n| if i == 0 && n < 3 { Err(status(500)) } else { Ok(()) });
    assert_eq!(result.unwrap(), 0);
    assert_eq!((sim.waits.len(), retries, fallbacks), (2, 2, 0));
}

#[test]
fn an_unknown_model_fails_at_once_but_an_unknown_fallback_is_skipped() {
    let c = config(CHAIN);
    let (result, sim, _, _) = drive(&c, "nowhere", &none(), |_, _| Ok(()));
    assert!(sim.calls.is_empty());
    assert_eq!(result.unwrap_err().status().as_u16(), 400);
    let controls = RouterControls { fallbacks: Some(vec!["nowhere".into(), "b".into()]), ..none() };
    let (result, sim, _, _) = drive(&c, "a", &controls, |i, _| if i == 1 { Ok(()) } else { Err(status(500)) });
    assert_eq!((result.unwrap(), sim.calls), (1, vec![0, 1]));
}

/// The fault table's setup with host `a` (order 1 of `g`) asleep and wakeable.
const SLEEPY: &str = r#"
router_settings:
  fallbacks:
    - g: [backup]
model_list:
  - model_name: g
    litellm_params: {model: ollama_chat/m, api_base: "http://a:1", order: 1}
  - model_name: g
    litellm_params: {model: ollama_chat/m, api_base: "http://b:1", order: 2}
  - model_name: backup
    litellm_params: {model: ollama_chat/m, api_base: "http://c:1"}
llmux_settings:
  hosts:
    http://a:1: {wake: {mac: "aa:bb:cc:dd:ee:ff", address: "127.0.0.1:9"}}
"#;

fn refused() -> Error {
    Error::Connect("could not connect to engine".into())
}

#[test]
fn a_request_nothing_awake_can_serve_wakes_its_host_once_and_is_sent_there_when_it_answers() {
    let c = config(SLEEPY);
    let a = c.deployments[0].host.unwrap();
    // Deployment 0 answers once it is woken (its first call found it asleep).
    let (result, sim, _, _) =
        drive_with(&c, "g", &none(), &[a], true, |i, n| if i == 0 && n > 1 { Ok(()) } else { Err(refused()) });
    assert_eq!(result.unwrap(), 0);
    assert_eq!(sim.wakes, [a], "one wake-up");
    assert!(
        sim.calls.contains(&1) && sim.calls.contains(&2),
        "order 2 and the fallback were tried first: {:?}",
        sim.calls
    );
    assert_eq!(sim.calls.last(), Some(&0));
}

#[test]
fn a_host_that_does_not_wake_up_ends_the_request_with_a_503_naming_it() {
    let c = config(SLEEPY);
    let a = c.deployments[0].host.unwrap();
    let (result, sim, _, _) = drive_with(&c, "g", &none(), &[a], false, |_, _| Err(refused()));
    let err = result.unwrap_err();
    assert_eq!(err.status().as_u16(), 503);
    let text = err.to_string();
    assert!(text.contains("http://a:1") && text.contains("did not answer within 60 s"), "{text}");
    assert!(text.contains("Fallback model groups tried: ['backup']"), "what the walk ran into: {text}");
    assert_eq!(sim.wakes, [a]);
}

#[test]
fn no_wake_up_when_something_awake_answers_the_client_erred_or_wake_for_excludes_the_request() {
    let c = config(SLEEPY);
    let a = c.deployments[0].host.unwrap();
    let (result, sim, _, _) =
        drive_with(&c, "g", &none(), &[a], true, |i, _| if i == 2 { Ok(()) } else { Err(refused()) });
    assert_eq!((result.unwrap(), sim.wakes.len()), (2, 0), "the fallback is awake");
    let (result, sim, _, _) = drive_with(&c, "g", &none(), &[a], true, |_, _| Err(status(400)));
    assert_eq!((result.unwrap_err().status().as_u16(), sim.wakes.len()), (400, 0), "a bad request");
    let only_backup =
        config(&SLEEPY.replace("address: \"127.0.0.1:9\"", "address: \"127.0.0.1:9\", wake_for: [backup]"));
    let (result, sim, _, _) = drive_with(&only_backup, "g", &none(), &[a], true, |_, _| Err(refused()));
    assert_eq!((result.unwrap_err().status().as_u16(), sim.wakes.len()), (502, 0), "wake_for: [backup]");
}
