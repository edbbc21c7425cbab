//! The fleet as the dashboard and `llmux status` show it: every host (what `/health/hosts` reports) and every
//! group with its deployments by `order`: health, cooldown left, requests in flight and waiting.

use serde::Serialize;
use serde_json::{json, Value};

use crate::config::Config;
use crate::executor::Executor;
use crate::router::DeploymentView;
use crate::state::{HostState, HostStatus};

/// One deployment of a group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    /// `model_list[i]`.
    pub deployment: String,
    /// `litellm_params.model`.
    pub model: String,
    /// Its host's `scheme://host:port` (none for a strategy router).
    pub host: Option<String>,
    pub order: Option<u32>,
    /// `healthy`, `cooldown`, `down`, `asleep`, `waking`, `loading`, `degraded`, `failing probe`, `unknown`, or `router` for a
    /// strategy router (which calls no engine itself).
    pub health: &'static str,
    /// Why, when not healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Seconds of cooldown left.
    pub cooldown_seconds: Option<f64>,
    pub in_flight: u32,
    /// `max_parallel_requests`.
    pub max_parallel: Option<u32>,
    /// Its model is loaded on its host now (as far as the host's last answer said; never when it is down).
    pub warm: bool,
}

/// One model group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub name: String,
    /// Requests waiting for a slot now.
    pub queued: u32,
    /// The aliases that point at it.
    pub aliases: Vec<String>,
    /// Its deployments by `order` (unordered last), then by position in `model_list`.
    pub deployments: Vec<Member>,
}

/// A deployment's health in a word (and why), from its host (`wakes`: it has wake-on-LAN settings, so not
/// answering means asleep) and what the router sees of it at `now`.
pub fn health(
    view: &DeploymentView,
    host: Option<&HostState>,
    wakes: bool,
    now: u64,
) -> (&'static str, Option<String>) {
    let reason = || host.map(|h| h.reason.clone()).filter(|r| !r.is_empty());
    if view.unhealthy || host.is_some_and(|h| h.status == HostStatus::Down) {
        return match host {
            Some(h) if wakes && h.waking => ("waking", reason()),
            Some(h) if wakes && !h.http_error => ("asleep", reason()),
            _ => ("down", reason()),
        };
    }
    if view.cooldown_until > now {
        return ("cooldown", None);
    }
    if view.probe_failed {
        return ("failing probe", None);
    }
    match host.map(|h| h.status) {
        Some(HostStatus::Loading) => ("loading", reason()),
        Some(HostStatus::Degraded) => ("degraded", reason()),
        Some(HostStatus::Unknown) => ("unknown", None),
        Some(HostStatus::Up) | None => ("healthy", None),
        Some(HostStatus::Down) => ("down", reason()),
    }
}

/// Every group in file order, from the config, the hosts and the router's views of each group's members.
pub fn groups(
    config: &Config,
    hosts: &[HostState],
    views: impl Fn(&[usize]) -> Vec<DeploymentView>,
    queued: impl Fn(&str) -> u32,
    now: u64,
) -> Vec<Group> {
    config
        .group_order
        .iter()
        .filter_map(|name| {
            let members = config.groups.get(name)?;
            let mut deployments: Vec<(Option<u32>, usize, Member)> = members
                .iter()
                .zip(views(members))
                .map(|(&i, view)| {
                    let d = &config.deployments[i];
                    let host = d.host.and_then(|h| hosts.get(h));
                    let (health, reason) = match d.host {
                        None => ("router", None),
                        Some(h) => {
                            health(&view, host, config.hosts.get(h).is_some_and(|spec| spec.wake.is_some()), now)
                        }
                    };
                    let member = Member {
                        deployment: format!("model_list[{i}]"),
                        model: d.model.clone(),
                        host: d.host.and_then(|h| config.hosts.get(h)).map(|h| h.origin.clone()),
                        order: d.order,
                        health,
                        reason,
                        cooldown_seconds: (view.cooldown_until > now)
                            .then(|| ((view.cooldown_until - now) as f64 / 100.0).ceil() / 10.0),
                        in_flight: view.in_flight,
                        max_parallel: d.max_parallel_requests,
                        // A host that does not answer may have lost its models.
                        warm: view.warm && !matches!(health, "down" | "asleep" | "waking"),
                    };
                    (d.order, i, member)
                })
                .collect();
            deployments.sort_by_key(|(order, i, _)| (order.unwrap_or(u32::MAX), *i));
            let mut aliases: Vec<String> = config
                .alias_order
                .iter()
                .filter(|a| config.aliases.get(*a).is_some_and(|t| &t.target == name))
                .cloned()
                .collect();
            aliases.dedup();
            Some(Group {
                name: name.clone(),
                queued: queued(name),
                aliases,
                deployments: deployments.into_iter().map(|(_, _, m)| m).collect(),
            })
        })
        .collect()
}

/// The whole view: hosts as `/health/hosts` lists them, groups, aliases.
pub fn fleet(exec: &Executor) -> Value {
    let config = &exec.config;
    let now = exec.state.now();
    let hosts = exec.state.hosts();
    let groups = groups(config, &hosts, |m| exec.state.snapshot(m, now, None), |g| exec.queued(g), now.0);
    let aliases: Vec<Value> = config
        .alias_order
        .iter()
        .filter_map(|name| {
            config.aliases.get(name).map(|a| json!({"name": name, "target": a.target, "hidden": a.hidden}))
        })
        .collect();
    json!({
        "hosts": super::super::health::host_list(exec),
        "groups": groups,
        "aliases": aliases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
model_list:
  - model_name: coding
    litellm_params: {model: ollama_chat/big, api_base: "http://cranberry:11434", order: 2}
  - model_name: coding
    litellm_params: {model: ollama_chat/big, api_base: "http://star:11434", order: 1, max_parallel_requests: 2}
  - model_name: coding
    litellm_params: {model: ollama_chat/big, api_base: "http://spare:11434"}
router_settings:
  model_group_alias: {code: coding, default: coding}
"#;

    fn config() -> Config {
        crate::config::load_str(YAML, &|_| None).map(|(c, _)| c).expect("config loads")
    }

    #[test]
    fn deployments_are_listed_by_order_with_their_health_and_load() {
        let config = config();
        let mut hosts = vec![HostState::default(); config.hosts.len()];
        let star = config.deployments[1].host.expect("host");
        hosts[star].status = HostStatus::Down;
        hosts[star].reason = "connection refused".into();
        let cranberry = config.deployments[0].host.expect("host");
        hosts[cranberry].status = HostStatus::Up;
        let views = |members: &[usize]| {
            members
                .iter()
                .map(|&i| DeploymentView {
                    unhealthy: i == 1,
                    cooldown_until: if i == 0 { 12_340 } else { 0 },
                    in_flight: i as u32,
                    warm: i <= 1,
                    ..Default::default()
                })
                .collect()
        };
        let groups = groups(&config, &hosts, views, |g| if g == "coding" { 3 } else { 0 }, 10_000);
        assert_eq!(groups.len(), 1);
        let coding = &groups[0];
        assert_eq!((coding.queued, coding.aliases.clone()), (3, vec!["code".to_owned(), "default".to_owned()]));
        let rows: Vec<(&str, Option<u32>, &str)> =
            coding.deployments.iter().map(|m| (m.deployment.as_str(), m.order, m.health)).collect();
        assert_eq!(
            rows,
            [
                ("model_list[1]", Some(1), "down"),
                ("model_list[0]", Some(2), "cooldown"),
                ("model_list[2]", None, "unknown")
            ]
        );
        assert_eq!(coding.deployments[0].reason.as_deref(), Some("connection refused"));
        assert_eq!(coding.deployments[0].max_parallel, Some(2));
        assert_eq!(coding.deployments[1].cooldown_seconds, Some(2.4));
        assert!(coding.deployments[1].warm);
        assert!(!coding.deployments[0].warm, "a model on a host that is down is not counted as loaded");
        assert_eq!(coding.deployments[2].in_flight, 2);
        assert_eq!(coding.deployments[0].host.as_deref(), Some("http://star:11434"));
    }

    #[test]
    fn a_host_that_can_be_woken_sleeps_rather_than_being_down() {
        let view = DeploymentView { unhealthy: true, ..Default::default() };
        let mut host =
            HostState { status: HostStatus::Down, reason: "connection refused".into(), ..Default::default() };
        assert_eq!(health(&view, Some(&host), false, 0).0, "down");
        assert_eq!(health(&view, Some(&host), true, 0).0, "asleep");
        host.waking = true;
        assert_eq!(health(&view, Some(&host), true, 0).0, "waking");
        // Answering with an HTTP error is not sleeping.
        host.waking = false;
        host.http_error = true;
        assert_eq!(health(&view, Some(&host), true, 0).0, "down");
    }
}
