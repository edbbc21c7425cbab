//! The attempt plan of one request: which group (or `order` tier) to try next, whether a failed attempt is
//! retried (and after how long), when `order` escalates, which fallback group comes next, and which error the
//! client finally gets — LiteLLM's fallback rules in one pure state machine.
//!
//! The executor feeds it events (an answer, a failure with its [`Failure`] class and the minute's counts, no
//! candidate, the group's availability) and carries out the [`Action`]s it returns (pick via [`super::pick`],
//! call the engine, record into `State`, sleep). Nothing here touches a socket, a clock or the state, so every
//! rule is unit-tested by driving a plan with a fake executor (`plan_tests.rs`).

use std::time::Duration;

use crate::config::{Config, Deployment, ErrorClass};
use crate::error::Error;
use crate::protocol::openai::{Operation, RouterControls};
use crate::router::complexity::ComplexityRouter;
use crate::router::policy::{self, Cooldown, Failure};
use crate::router::semantic::SemanticRouter;
use crate::router::wake;
use crate::router::{self, NoCandidate, Target};
use crate::state::{CooldownCause, HostIx, MinuteCounts};

/// How long a host that refused a live connection is skipped (unless a probe or a request finds it back
/// sooner): long enough that a powered-off host's connect timeout is not paid every few seconds.
pub const PASSIVE_DOWN_MIN: Duration = Duration::from_secs(30);

/// What the executor does next.
#[derive(Debug)]
pub enum Action<'c> {
    /// Try a group (or one of its `order` tiers) with its retries: pick a deployment of `target` (see
    /// [`Plan::avoid`]) and call it; then report [`Plan::answered`] or [`Plan::failed`].
    Try(Hop<'c>),
    /// Pick again in the same group after `wait` (a retry).
    Retry { wait: Duration },
    /// Classify the request with the complexity router `name` and report the chosen model with [`Plan::routed`].
    Classify { name: String, router: &'c ComplexityRouter },
    /// Embed the request for the semantic router `name` and report the chosen model with [`Plan::routed`].
    Embed { name: String, router: &'c SemanticRouter },
    /// Every candidate failed, and a host that can be woken may be among them: tell [`Plan::asleep`] which hosts
    /// sleep now.
    FindAsleep,
    /// Wake `host` (or join the wake already under way), hold the request until it answers or its patience runs
    /// out, and report with [`Plan::woke`].
    Wake { host: usize },
    /// Give up: the client gets this error.
    Fail(Error),
}

/// A group to try: the name it was reached by, the group, the `order` tier (an escalation), and the depth.
#[derive(Debug, Clone)]
pub struct Hop<'c> {
    /// The name the client (or a fallback list, or a router) used.
    pub name: String,
    /// What `name` resolved to.
    pub target: Target<'c>,
    /// Set when this hop is an order escalation to that tier.
    pub order: Option<u32>,
    /// Fallback depth (0: the requested model).
    pub depth: u32,
}

/// What a failed attempt means, before the executor records it.
#[derive(Debug)]
pub enum Failed<'c> {
    /// An engine failure to count: record it (giving its [`MinuteCounts`]), then call [`Plan::cooldown`] and
    /// [`Plan::after_failure`].
    Count(Failure),
    /// Not an engine's failure (nothing to count or retry): the group ends here; do this next.
    Next(Action<'c>),
}

/// A name on the walk's stack.
#[derive(Debug)]
struct Pending {
    name: String,
    order: Option<u32>,
    depth: u32,
    /// The router that chose `name`: its fallbacks apply after the target's own.
    via: Option<String>,
}

/// The group being tried.
#[derive(Debug)]
struct Current<'c> {
    pending: Pending,
    target: Target<'c>,
    /// Deployments not to pick again in this group (401/403).
    avoid: Vec<usize>,
    last_err: Option<Error>,
    /// The `order` tier of the group's first failed attempt: an answer from a higher tier is an escalation.
    failed_tier: Option<u32>,
}

/// One request's walk through retries, `order` escalation and fallbacks.
#[derive(Debug)]
pub struct Plan<'c> {
    config: &'c Config,
    op: Operation,
    requested: String,
    disable_fallbacks: bool,
    client_fallbacks: Option<Vec<String>>,
    num_retries: Option<u32>,
    stack: Vec<Pending>,
    tried: Vec<(String, Option<u32>)>,
    primary: Option<Error>,
    last: Option<Error>,
    escalated: bool,
    /// Other groups tried as fallbacks, for the explanation the final error carries.
    fallback_groups: Vec<String>,
    primary_group: Option<String>,
    current: Option<Current<'c>>,
    /// Engine calls made so far, against `max_attempts`.
    pub attempts: u32,
    /// Retries made in the group that produced the final outcome.
    pub retries: u32,
    /// Fallback depth of the final outcome, plus the order tiers an answer passed.
    pub fallbacks: u32,
    /// The highest `order` tier the current group's attempts reached.
    pub last_tier: Option<u32>,
    /// Every group tried, with the name it was reached by and its depth, in the walk's order (what a wake-up
    /// chooses from).
    walked: Vec<(String, Target<'c>, u32)>,
    wake: WakeStage,
    /// The error the walk ended with, kept while a wake-up is considered or under way.
    ended_with: Option<Error>,
}

/// Where a request stands with waking a sleeping host: it wakes at most one, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WakeStage {
    NotYet,
    Asked,
    /// Waking this host; the group at this index of `walked` is tried again once it answers.
    Waking {
        host: usize,
        group: usize,
    },
    Done,
}

impl<'c> Plan<'c> {
    /// The plan for a request for `model` with the client's router `controls`.
    pub fn new(config: &'c Config, op: Operation, model: &str, controls: &RouterControls) -> Self {
        Plan {
            config,
            op,
            requested: model.to_owned(),
            disable_fallbacks: controls.disable_fallbacks,
            client_fallbacks: controls.fallbacks.clone(),
            num_retries: controls.num_retries,
            stack: vec![Pending { name: model.to_owned(), order: None, depth: 0, via: None }],
            tried: Vec::new(),
            primary: None,
            last: None,
            escalated: false,
            fallback_groups: Vec::new(),
            primary_group: None,
            current: None,
            attempts: 0,
            retries: 0,
            fallbacks: 0,
            last_tier: None,
            walked: Vec::new(),
            wake: WakeStage::NotYet,
            ended_with: None,
        }
    }

    /// The first action.
    pub fn start(&mut self) -> Action<'c> {
        self.next_group()
    }

    /// The walk, depth first as LiteLLM nests fallbacks: the requested model with its retries; on failure its
    /// higher `order` tiers, then its configured fallbacks, each hop with its own retries and fallbacks,
    /// loop-safe, bounded by `max_fallbacks` and the attempt budget.
    fn next_group(&mut self) -> Action<'c> {
        let config = self.config;
        let router = &config.router;
        while let Some(hop) = self.stack.pop() {
            if self.attempts >= router.max_attempts {
                break;
            }
            let target = match router::resolve(config, self.op, &hop.name) {
                Ok(t) => t,
                Err(e) if hop.depth == 0 => return Action::Fail(e),
                Err(_) => continue,
            };
            // A fallback to a group already tried is skipped (loops end); an order hop only skips its own tier.
            if self.tried.iter().any(|(g, o)| g == target.group && (*o == hop.order || hop.order.is_none())) {
                continue;
            }
            self.tried.push((target.group.to_owned(), hop.order));
            // A strategy router is never called: it hands the request to a model, which then goes through normal
            // routing (its order, health, fallbacks keyed by it first).
            if let Some(classifier) = target.classifier {
                self.stack.push(hop);
                return Action::Classify { name: self.stack_top_name(), router: classifier };
            }
            if let Some(semantic) = target.semantic {
                self.stack.push(hop);
                return Action::Embed { name: self.stack_top_name(), router: semantic };
            }
            self.fallbacks = hop.depth;
            let first = self.primary_group.get_or_insert_with(|| target.group.to_owned());
            if first != target.group && !self.fallback_groups.iter().any(|g| g == target.group) {
                self.fallback_groups.push(target.group.to_owned());
            }
            self.retries = 0;
            self.last_tier = None;
            let action = Hop { name: hop.name.clone(), target: target.clone(), order: hop.order, depth: hop.depth };
            if hop.order.is_none() {
                self.walked.push((hop.name.clone(), target.clone(), hop.depth));
            }
            self.current = Some(Current { pending: hop, target, avoid: Vec::new(), last_err: None, failed_tier: None });
            return Action::Try(action);
        }
        // The client gets the primary group's error, or the last error when order tiers were escalated (both as
        // LiteLLM), with LiteLLM's explanation of the fallbacks tried.
        let err = if self.escalated { self.last.take() } else { self.primary.take() };
        let err = err.unwrap_or_else(|| Error::Internal("no attempt was made".into()));
        let group = self.primary_group.clone().unwrap_or_else(|| self.requested.clone());
        let fixable = !client_fault(&err, Failure::of(&err).as_ref());
        let err = explain_fallbacks(err, &group, &self.fallback_groups);
        // Nothing awake could serve it: a sleeping host may (once per request).
        if fixable && self.wake == WakeStage::NotYet && self.config.hosts.iter().any(|h| h.wake.is_some()) {
            self.wake = WakeStage::Asked;
            self.ended_with = Some(err);
            return Action::FindAsleep;
        }
        Action::Fail(err)
    }

    /// After [`Action::FindAsleep`]: `asleep(host)` says which hosts sleep now. Wakes the one the request most
    /// prefers that it may wake (see [`wake::host_to_wake`]), or fails with the walk's error.
    pub fn asleep(&mut self, asleep: &dyn Fn(usize) -> bool) -> Action<'c> {
        let err = self.ended_with.take().unwrap_or_else(|| Error::Internal("no attempt was made".into()));
        match wake::host_to_wake(self.config, &self.walked, asleep) {
            Some((host, group)) => {
                self.wake = WakeStage::Waking { host, group };
                self.ended_with = Some(err);
                Action::Wake { host }
            }
            None => {
                self.wake = WakeStage::Done;
                Action::Fail(err)
            }
        }
    }

    /// After [`Action::Wake`]: the host answered (`up`), and the group that needed it is tried again (one
    /// attempt, whatever the budget left); or it did not within `waited`, and the client gets a 503 naming it,
    /// with what the walk before the wake-up ran into.
    pub fn woke(&mut self, up: bool, waited: Duration) -> Action<'c> {
        let WakeStage::Waking { host, group } = self.wake else {
            return Action::Fail(Error::Internal("no wake-up under way".into()));
        };
        self.wake = WakeStage::Done;
        let err = self.ended_with.take().unwrap_or_else(|| Error::Internal("no attempt was made".into()));
        let origin = self.config.hosts.get(host).map_or("?", |h| h.origin.as_str());
        let Some((name, target, depth)) = self.walked.get(group).cloned().filter(|_| up) else {
            return Action::Fail(Error::HostAsleep(format!(
                "llmux: nothing awake can serve model={}, and the host that can, {origin}, did not answer within {} s of its wake-on-LAN packet (llmux_settings.hosts.{origin}.wake.boot_seconds). Before the wake-up: {err}",
                self.requested,
                waited.as_secs()
            )));
        };
        self.attempts = self.attempts.min(self.config.router.max_attempts.saturating_sub(1));
        (self.retries, self.last_tier, self.fallbacks) = (0, None, depth);
        let pending = Pending { name: name.clone(), order: None, depth, via: None };
        let hop = Hop { name, target: target.clone(), order: None, depth };
        self.current = Some(Current { pending, target, avoid: Vec::new(), last_err: None, failed_tier: None });
        Action::Try(hop)
    }

    fn stack_top_name(&self) -> String {
        self.stack.last().map(|h| h.name.clone()).unwrap_or_default()
    }

    /// A strategy router (the last [`Action::Classify`] or [`Action::Embed`]) chose `model`.
    pub fn routed(&mut self, model: String) -> Action<'c> {
        if let Some(router) = self.stack.pop() {
            let hop = Pending { name: model, order: None, depth: router.depth, via: Some(router.name) };
            self.stack.push(hop);
        }
        self.next_group()
    }

    /// Whether the attempt budget allows another call in the current group; when not, the group ends (with
    /// its last error, or the budget's).
    pub fn may_attempt(&mut self) -> Option<Action<'c>> {
        let max = self.config.router.max_attempts;
        if self.attempts < max {
            return None;
        }
        let err = self.current.as_mut().and_then(|c| c.last_err.take()).unwrap_or_else(|| budget_error(max));
        Some(self.group_failed(err))
    }

    /// Deployments the next pick in the current group must not choose.
    pub fn avoid(&self) -> &[usize] {
        self.current.as_ref().map_or(&[], |c| &c.avoid)
    }

    /// The pick found no candidate: the group ends with its last error, or LiteLLM's text for `none`.
    pub fn no_candidate(&mut self, none: NoCandidate) -> Action<'c> {
        let Some(current) = self.current.as_mut() else { return Action::Fail(Error::Internal("no group".into())) };
        let group = current.target.group;
        // A queue that timed out says so even after an earlier failure.
        let err = match none {
            NoCandidate::AllBusy => no_candidate_error(self.config, group, none),
            none => current.last_err.take().unwrap_or_else(|| no_candidate_error(self.config, group, none)),
        };
        self.group_failed(err)
    }

    /// An attempt is being made on a deployment of `tier`.
    pub fn attempting(&mut self, tier: Option<u32>) {
        self.attempts += 1;
        self.last_tier = self.last_tier.max(tier);
    }

    /// The attempt on a deployment of `tier` answered: counts the order tiers passed since the group's first
    /// failure as fallbacks (`x-litellm-attempted-fallbacks`), whether the failure was a 5xx (which LiteLLM
    /// escalates with a hop) or a refused connection (which takes the host out, so the retry lands higher).
    pub fn answered(&mut self, tier: Option<u32>) {
        let Some(current) = &self.current else { return };
        if let (Some(from), Some(to)) = (current.failed_tier, tier) {
            let passed = router::order_tiers(self.config, current.target.members)
                .iter()
                .filter(|&&t| t > from && t <= to)
                .count();
            self.fallbacks += u32::try_from(passed).unwrap_or(0);
        }
    }

    /// The attempt on a deployment of `tier` failed with `err`.
    pub fn failed(&mut self, err: Error, tier: Option<u32>) -> Failed<'c> {
        if let Some(current) = self.current.as_mut() {
            current.failed_tier = current.failed_tier.or(tier);
        }
        match Failure::of(&err) {
            Some(failure) => {
                if let Some(current) = self.current.as_mut() {
                    current.last_err = Some(err);
                }
                Failed::Count(failure)
            }
            None => Failed::Next(self.group_failed(err)),
        }
    }

    /// The attempt could not be made (a wildcard name with no match, an image link that cannot be fetched):
    /// the group ends with `err`, not retried.
    pub fn ended(&mut self, err: Error) -> Action<'c> {
        self.group_failed(err)
    }

    /// How deployment `d`'s failure is recorded: a host that refused the connection is taken out for this long
    /// (every deployment on it, not just `d`); `d` is cooled down per LiteLLM's rules given the minute's
    /// `counts`. A 401/403 deployment is not picked again in this group.
    pub fn cooldown(&mut self, d: &Deployment, failure: &Failure, counts: MinuteCounts) -> Consequence {
        let router = &self.config.router;
        let Some(current) = self.current.as_mut() else { return Consequence::default() };
        let host_down = if failure.connect {
            d.host.map(|h| (HostIx(h), router.cooldown_time.max(PASSIVE_DOWN_MIN)))
        } else {
            None
        };
        let has_fallbacks = lookup(&router.fallbacks, &current.pending.name, current.target.group).is_some();
        let cooldown = policy::cooldown(router, d, current.target.members.len(), has_fallbacks, failure, counts);
        if matches!(failure.status, 401 | 403) {
            current.avoid.push(d.index);
        }
        Consequence { host_down, cooldown, cause: cooldown_cause(failure) }
    }

    /// After recording the failure of `d`: retry in the group (after a back-off) when LiteLLM's retry rules
    /// allow, given `available` deployments not cooling down nor avoided and a random `jitter` in 0..1; else
    /// the group ends and the walk moves on.
    pub fn after_failure(&mut self, d: &Deployment, failure: &Failure, available: usize, jitter: f64) -> Action<'c> {
        let router = &self.config.router;
        let Some(current) = self.current.as_mut() else { return Action::Fail(Error::Internal("no group".into())) };
        let members = current.target.members.len();
        let (allowed, from_policy) = policy::retries_for(router, current.target.group, d, failure, self.num_retries);
        if self.retries >= allowed || !policy::should_retry(router, failure, members, available, from_policy) {
            let err = current.last_err.take().unwrap_or_else(|| Error::Internal("lost an error".into()));
            return self.group_failed(err);
        }
        let wait = policy::backoff(router, failure, self.retries, members, available, jitter);
        self.retries += 1;
        Action::Retry { wait }
    }

    /// The current group failed with `err`: queue where the walk goes next, and go there.
    fn group_failed(&mut self, err: Error) -> Action<'c> {
        let Some(current) = self.current.take() else { return Action::Fail(err) };
        let router = &self.config.router;
        let failure = Failure::of(&err);
        let hop = &current.pending;
        let hops = if self.attempts >= router.max_attempts || hop.depth >= router.max_fallbacks {
            Vec::new()
        } else {
            self.next_hops(hop, &current.target, &err, failure.as_ref())
        };
        self.escalated |= hops.iter().any(|h| h.name == hop.name);
        self.primary.get_or_insert_with(|| err.clone());
        self.last = Some(err);
        self.stack.extend(hops.into_iter().rev());
        self.next_group()
    }

    /// Where a failed hop goes next: its group's higher `order` tiers (when the group has several and the error
    /// is not about the prompt), then the configured fallbacks for the error kind.
    fn next_hops(&self, hop: &Pending, target: &Target<'_>, err: &Error, failure: Option<&Failure>) -> Vec<Pending> {
        let config = self.config;
        let router = &config.router;
        let prompt_problem = matches!(err, Error::ContextWindowExceeded(_))
            || failure.is_some_and(|f| f.context_window || f.class == ErrorClass::ContentPolicyViolation);
        if client_fault(err, failure) || self.disable_fallbacks {
            return Vec::new();
        }
        let depth = hop.depth + 1;
        let mut hops = Vec::new();
        let tiers = router::order_tiers(config, target.members);
        if tiers.len() >= 2 && !prompt_problem {
            // The level just tried: cooldowns may already have moved the hop past its first tier.
            let current = self.last_tier.or(hop.order).or(tiers.first().copied()).unwrap_or(0);
            let name = &hop.name;
            hops.extend(tiers.iter().filter(|&&o| o > current).map(|&o| Pending {
                via: hop.via.clone(),
                name: name.clone(),
                order: Some(o),
                depth,
            }));
        }
        // An order hop's configured fallbacks are already queued behind it by the hop that escalated.
        if hop.order.is_some() {
            return hops;
        }
        let context = failure.is_some_and(|f| f.context_window) || matches!(err, Error::ContextWindowExceeded(_));
        let content = failure.is_some_and(|f| f.class == ErrorClass::ContentPolicyViolation);
        let lists = if context && !router.context_window_fallbacks.is_empty() {
            Some(&router.context_window_fallbacks)
        } else if content && !router.content_policy_fallbacks.is_empty() {
            Some(&router.content_policy_fallbacks)
        } else {
            None
        };
        let client_list = self.client_fallbacks.as_deref().filter(|_| hop.depth == 0 && lists.is_none());
        let targets: &[String] = match (lists, client_list) {
            // The request's own `fallbacks` replace the configured chain, as LiteLLM's per-call override.
            (None, Some(list)) => list,
            // A configured context-window/content list without an entry for this group: the original error.
            (Some(list), _) => lookup(list, &hop.name, target.group).map(|v| v.as_slice()).unwrap_or(&[]),
            (None, None) => lookup(&router.fallbacks, &hop.name, target.group)
                .or_else(|| hop.via.as_deref().and_then(|via| lookup(&router.fallbacks, via, via)))
                .or_else(|| lookup(&router.fallbacks, "*", "*"))
                .map(|v| v.as_slice())
                .unwrap_or(&router.default_fallbacks),
        };
        hops.extend(targets.iter().map(|t| Pending { name: t.clone(), order: None, depth, via: None }));
        hops
    }
}

/// How a failed attempt is recorded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Consequence {
    /// The host to skip, and for how long.
    pub host_down: Option<(HostIx, Duration)>,
    /// The deployment's cooldown.
    pub cooldown: Cooldown,
    /// Why it cools down (a successful probe lifts a cooldown for an unreachable host).
    pub cause: CooldownCause,
}

impl Default for Consequence {
    fn default() -> Self {
        Consequence { host_down: None, cooldown: Cooldown::No, cause: CooldownCause::Unreachable }
    }
}

/// Whether `err` is the client's own fault (a bad request), which no fallback can fix.
fn client_fault(err: &Error, failure: Option<&Failure>) -> bool {
    match failure {
        None => !matches!(err, Error::ContextWindowExceeded(_) | Error::NoDeployments { .. }),
        Some(f) => f.class == ErrorClass::BadRequest && !f.context_window,
    }
}

/// LiteLLM 1.109's explanation after a failed walk (spec §3.7): the primary group's error, then
/// `\n\nLiteLLM: model group '<group>' failed with the error above.` and which fallback groups were tried, or
/// that none was (tools match the first sentence, so it is LiteLLM's word for word). A client's own bad request
/// is returned as it is: no fallback applies to it.
fn explain_fallbacks(err: Error, group: &str, tried: &[String]) -> Error {
    if client_fault(&err, Failure::of(&err).as_ref()) {
        return err;
    }
    let mut note = format!("\n\nLiteLLM: model group '{group}' failed with the error above.");
    if tried.is_empty() {
        note.push_str(&format!(
            " No fallback was attempted. To add one: router_settings.fallbacks: [{{\"{group}\": [\"<another model group>\"]}}]"
        ));
    } else {
        let list: Vec<String> = tried.iter().map(|g| format!("'{g}'")).collect();
        note.push_str(&format!(" Fallback model groups tried: [{}], and they failed too.", list.join(", ")));
    }
    match err {
        Error::Upstream { status, mut message, kind, retry_after } => {
            message.push_str(&note);
            Error::Upstream { status, message, kind, retry_after }
        }
        Error::NoDeployments { mut message, all_cooling_down, retry_after } => {
            message.push_str(&note);
            Error::NoDeployments { message, all_cooling_down, retry_after }
        }
        Error::Connect(m) => Error::Connect(m + &note),
        Error::Timeout(m) => Error::Timeout(m + &note),
        Error::BadUpstreamResponse(m) => Error::BadUpstreamResponse(m + &note),
        Error::ContextWindowExceeded(m) => Error::ContextWindowExceeded(m + &note),
        other => other,
    }
}

/// Why `failure` cools its deployment down: a connection failure is lifted by a successful probe, others keep
/// their status.
fn cooldown_cause(failure: &Failure) -> CooldownCause {
    if failure.connect {
        CooldownCause::Unreachable
    } else {
        CooldownCause::Status(failure.status)
    }
}

/// The fallback list for a failed hop: keyed by the name the client sent (LiteLLM's rule), else by the group.
fn lookup<'l>(list: &'l [(String, Vec<String>)], name: &str, group: &str) -> Option<&'l Vec<String>> {
    list.iter().find(|(k, _)| k == name).or_else(|| list.iter().find(|(k, _)| k == group)).map(|(_, v)| v)
}

fn budget_error(max: u32) -> Error {
    Error::NoDeployments {
        message: format!("llmux: the request used its attempt budget (router_settings.max_attempts = {max})"),
        all_cooling_down: false,
        retry_after: 1,
    }
}

/// LiteLLM's texts for "nothing to try" (clients grep them).
pub fn no_candidate_error(config: &Config, group: &str, none: NoCandidate) -> Error {
    let pre_call = if config.router.enable_pre_call_checks { "True" } else { "False" };
    match none {
        NoCandidate::AllCoolingDown { ids, retry_in_ms, whole_group } => {
            let secs = retry_in_ms.div_ceil(1000).max(1);
            let list: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
            // LiteLLM 1.109 (`RouterRateLimitError`) adds this sentence only when every id of the group cools down.
            let all = if whole_group { " All deployments for selected model are in cooldown." } else { "" };
            Error::NoDeployments {
                message: format!(
                    "No deployments available for selected model, Try again in {secs} seconds.{all} Passed model={group}. pre-call-checks={pre_call}, cooldown_list=[{}]",
                    list.join(", ")
                ),
                all_cooling_down: whole_group,
                retry_after: secs,
            }
        }
        NoCandidate::OverLimit => Error::NoDeployments {
            message: format!(
                "No deployments available for selected model, Try again in 60 seconds. Passed model={group}. pre-call-checks={pre_call}, cooldown_list=[] (every deployment is over its rpm/tpm this minute)"
            ),
            all_cooling_down: false,
            retry_after: 60,
        },
        NoCandidate::ContextWindow { tokens, largest } => Error::ContextWindowExceeded(format!(
            "ContextWindowExceededError: the prompt (about {tokens} tokens) does not fit any deployment of model={group} (largest max_input_tokens: {largest})"
        )),
        NoCandidate::AllBusy => Error::NoDeployments {
            message: format!(
                "No deployments available for selected model, Try again in 5 seconds. Passed model={group}. pre-call-checks={pre_call}, cooldown_list=[] (every deployment is at its max_parallel_requests and none freed up within router_settings.queue_timeout)"
            ),
            all_cooling_down: false,
            retry_after: 5,
        },
        NoCandidate::Exhausted => Error::NoDeployments {
            message: format!("No deployments available for selected model, Try again in 1 seconds. Passed model={group}. pre-call-checks={pre_call}, cooldown_list=[]"),
            all_cooling_down: false,
            retry_after: 1,
        },
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
