//! The resolved routing table `llmux check` prints: alias → group → deployments with order, weight and host.

use std::fmt::Write;

use super::{Config, Target};

/// Renders the routing table, one group at a time, deployments in the order the router considers them.
pub fn routing_table(config: &Config) -> String {
    let mut out = String::new();
    for group in &config.group_order {
        let aliases: Vec<&str> = config
            .alias_order
            .iter()
            .filter(|a| config.aliases.get(*a).is_some_and(|x| &x.target == group))
            .map(String::as_str)
            .collect();
        let via = if aliases.is_empty() { String::new() } else { format!("  (aliases: {})", aliases.join(", ")) };
        let _ = writeln!(out, "{group}{via}");
        let mut members: Vec<usize> = config.groups.get(group).cloned().unwrap_or_default();
        members.sort_by_key(|&i| config.deployments[i].order.unwrap_or(u32::MAX));
        for &i in &members {
            if let Target::AutoRouter { complexity: Some(router), .. } = &config.deployments[i].target {
                for tier in crate::router::complexity::Tier::ALL {
                    if let Some(targets) = router.tier_targets(tier) {
                        let _ = writeln!(out, "  {:<9} -> {}", tier.as_str(), targets.join(" | "));
                    }
                }
                if let Some(default) = router.default_model() {
                    let _ = writeln!(out, "  default   -> {default}");
                }
            }
        }
        for i in members {
            let d = &config.deployments[i];
            let order = d.order.map_or("-".to_owned(), |o| o.to_string());
            let weight = d.weight.or(d.rpm).or(d.tpm).map_or("-".to_owned(), |w| w.to_string());
            let (engine, host) = match &d.target {
                Target::Engine(e) => (d.model.as_str(), crate::redact::url(&e.api_base)),
                Target::AutoRouter { complexity: Some(_), .. } => (d.model.as_str(), "(complexity router)".to_owned()),
                Target::AutoRouter { .. } => (d.model.as_str(), "(semantic router)".to_owned()),
            };
            let _ = writeln!(out, "  order {order:<3} weight {weight:<5} model_list[{i}]  {engine}  {host}");
        }
    }
    if !config.hosts.is_empty() {
        let _ = writeln!(out, "hosts");
        for host in &config.hosts {
            let kind = host.profile.api_name;
            let members: Vec<String> = host.deployments.iter().map(|i| format!("model_list[{i}]")).collect();
            let _ = writeln!(out, "  {}  {kind}  {}", host.origin, members.join(", "));
            if let Some(w) = &host.wake {
                let only =
                    if w.wake_for.is_empty() { String::new() } else { format!(", for {}", w.wake_for.join(", ")) };
                let boot = w.boot.as_secs_f64();
                let _ = writeln!(out, "    wakes: {} via {}, boot {boot} s{only}", w.mac_text(), w.address);
            }
        }
    }
    let r = &config.router;
    let g = &config.general;
    let probes = if g.background_health_checks {
        format!(
            "health probes every {} s ({})",
            g.health_check_interval,
            if g.health_check_routing { "gating routing" } else { "unreachable hosts out, HTTP errors reported" }
        )
    } else {
        "no background health probes".to_owned()
    };
    let _ = writeln!(
        out,
        "routing: {}, num_retries {}, max_attempts {}, cooldown {} s, {probes}",
        r.routing_strategy.name(),
        r.num_retries,
        r.max_attempts,
        r.cooldown_time.as_secs_f64()
    );
    if !config.router.fallbacks.is_empty() || !config.router.default_fallbacks.is_empty() {
        let _ = writeln!(out, "fallbacks");
        for (from, to) in &config.router.fallbacks {
            let _ = writeln!(out, "  {from} -> {}", to.join(", "));
        }
        if !config.router.default_fallbacks.is_empty() {
            let _ = writeln!(out, "  (default) -> {}", config.router.default_fallbacks.join(", "));
        }
    }
    out
}
