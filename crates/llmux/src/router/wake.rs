//! Waking a sleeping host, as decisions: which host a request that found nothing awake to serve it wakes, how
//! the wake goes second by second (a few magic packets, spaced, then probes), and how long the host is given.
//! The effects (the UDP packets, the probes, holding the request) are in [`crate::health::wake`] and the
//! executor; nothing here touches a socket or a clock.

use std::time::Duration;

use crate::config::Config;
use crate::router::Target;

/// Magic packets sent per wake (one a second): NICs and switches drop the odd one, a storm helps nobody.
pub const PACKETS: u32 = 3;
/// The gap between probes of the waking host (a refused connect costs nothing; the request goes out within
/// this of the engine answering); packets go out every other tick.
pub const TICK: Duration = Duration::from_millis(500);

/// Which host a request whose every candidate (its `order` tiers and every fallback) failed should wake: the
/// first, in the order the walk tried them (the requested group's lowest `order` tier first), that has `wake`
/// configured, is `asleep`, and may be woken for the name the request reached it by (`wake_for`). `tried` holds
/// each group with that name (and its fallback depth); returns the host and the index in `tried` of the group to
/// try again once it answers.
pub fn host_to_wake(
    config: &Config,
    tried: &[(String, Target<'_>, u32)],
    asleep: &dyn Fn(usize) -> bool,
) -> Option<(usize, usize)> {
    for (at, (name, target, _)) in tried.iter().enumerate() {
        let mut members: Vec<usize> = target.members.to_vec();
        members.sort_by_key(|&i| config.deployments[i].order.unwrap_or(u32::MAX));
        for i in members {
            let Some(host) = config.deployments[i].host else { continue };
            let Some(wake) = config.hosts.get(host).and_then(|h| h.wake.as_ref()) else { continue };
            if wake.may_wake(name, target.group) && asleep(host) {
                return Some((host, at));
            }
        }
    }
    None
}

/// How long a woken host gets to answer: its `boot_seconds`, or half as long again as it took to come up
/// before when that is longer.
pub fn patience(boot: Duration, learned_boot: Option<f64>) -> Duration {
    let learned = learned_boot.and_then(|s| Duration::try_from_secs_f64(s * 1.5).ok()).unwrap_or_default();
    boot.max(learned)
}

/// What the wake does at its `tick`-th [`TICK`] (0: the start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send a magic packet, then probe the host a tick later.
    Packet,
    /// Probe the host (a TCP connect, then the engine's own probe).
    Probe,
    /// The host answered: route to it.
    Up,
    /// It did not answer within its patience: the requests waiting for it get their fallbacks, then a 503.
    GiveUp,
}

/// The wake's step at `tick`, given whether the host `answered` the last probe and the `patience` it has.
pub fn step(tick: u32, answered: bool, patience: Duration) -> Step {
    if answered {
        Step::Up
    } else if TICK * tick >= patience && tick > 0 {
        Step::GiveUp
    } else if tick % 2 == 0 && tick / 2 < PACKETS {
        Step::Packet
    } else {
        Step::Probe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let yaml = r#"
model_list:
  - model_name: small
    litellm_params: {model: ollama_chat/s, api_base: "http://mac:1"}
  - model_name: big
    litellm_params: {model: ollama_chat/b, api_base: "http://p40:1", order: 2}
  - model_name: big
    litellm_params: {model: ollama_chat/b, api_base: "http://ti:1", order: 1}
llmux_settings:
  hosts:
    http://p40:1: {wake: {mac: "aa:bb:cc:dd:ee:01"}}
    http://ti:1: {wake: {mac: "aa:bb:cc:dd:ee:02", wake_for: [reasoning]}}
"#;
        crate::config::load_str(yaml, &|_| None).unwrap().0
    }

    fn tried<'c>(config: &'c Config, names: &[&str]) -> Vec<(String, Target<'c>, u32)> {
        let op = crate::protocol::openai::Operation::Chat;
        names.iter().map(|n| ((*n).to_owned(), crate::router::resolve(config, op, n).unwrap(), 0)).collect()
    }

    #[test]
    fn the_lowest_tier_host_that_may_be_woken_is_woken() {
        let config = config();
        let (mac, p40, ti) = (0, 1, 2);
        assert_eq!(config.hosts[ti].origin, "http://ti:1");
        let all_asleep = |_: usize| true;
        // `ti` is order 1 but only `reasoning` may wake it: a request for `big` wakes the order-2 p40.
        assert_eq!(host_to_wake(&config, &tried(&config, &["small", "big"]), &all_asleep), Some((p40, 1)));
        let only_ti = |h: usize| h == ti;
        assert_eq!(host_to_wake(&config, &tried(&config, &["big"]), &only_ti), None, "wake_for");
        // The host without `wake` is down, not asleep: nothing to wake for `small`.
        assert_eq!(host_to_wake(&config, &tried(&config, &["small"]), &all_asleep), None);
        let awake = |h: usize| h == mac;
        assert_eq!(host_to_wake(&config, &tried(&config, &["big"]), &awake), None, "p40 answers: not asleep");
    }

    #[test]
    fn a_wake_sends_three_packets_a_second_apart_then_probes_until_its_patience_runs_out() {
        let patience = Duration::from_secs(4);
        let steps: Vec<Step> = (0..10).map(|t| step(t, false, patience)).collect();
        use Step::*;
        assert_eq!(steps, [Packet, Probe, Packet, Probe, Packet, Probe, Probe, Probe, GiveUp, GiveUp]);
        assert_eq!(step(2, true, patience), Up, "an answer ends it at once");
        assert_eq!(step(0, false, Duration::ZERO), Packet, "always at least one packet");
    }

    #[test]
    fn a_host_gets_its_boot_seconds_or_longer_when_it_was_slower_before() {
        let boot = Duration::from_secs(60);
        assert_eq!(patience(boot, None), boot);
        assert_eq!(patience(boot, Some(20.0)), boot);
        assert_eq!(patience(boot, Some(50.0)), Duration::from_secs(75));
    }
}
