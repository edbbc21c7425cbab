//! The routing decision: pure functions from (request facts, config, state snapshot, time, random source) to
//! the deployment to try next. No I/O and no clock reads happen here, so every rule is unit-tested with
//! hand-built inputs; the executor calls [`pick`] before each attempt and records outcomes in
//! [`crate::state`].
//!
//! The candidate pipeline follows LiteLLM's order: health filter → cooldown filter → context-window pre-call
//! check → `order` (lowest surviving tier only) → strategy.

pub mod affinity;
pub mod complexity;
pub mod plan;
pub mod policy;
pub mod residency;
pub mod semantic;
pub mod speed;
mod strategy;
pub mod wake;
pub mod warmup;

use crate::config::{Config, Deployment};
use crate::error::Error;
use crate::protocol::openai::Operation;
use crate::state::DeploymentIx;

/// What the router knows about one deployment at decision time, indexed like `Config::deployments`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DeploymentView {
    /// Cooling down until this time (ms on the state clock); 0 = not cooling down.
    pub cooldown_until: u64,
    /// Its host is down (a failed probe, or a refused connection on a live request).
    pub unhealthy: bool,
    /// ... because it sleeps: it does not answer and can be woken (`llmux_settings.hosts.<base>.wake`).
    pub asleep: bool,
    /// Its opt-in generation probe failed recently.
    pub probe_failed: bool,
    /// Its model is loaded on its host now (a probe saw it, or llmux just routed it there).
    pub warm: bool,
    /// Loading its model would push another model out of its host's memory (declared `llmux_settings.hosts`
    /// limits against the sizes the engine reports).
    pub evicts: bool,
    /// ... and a pinned model may be the one pushed out.
    pub evicts_pinned: bool,
    /// ... and even with every idle model gone it would push out one that is serving requests now.
    pub evicts_busy: bool,
    /// Its host is busy loading another model (a probe saw it loading, or llmux set off a load there that is
    /// still awaited): a request for this model would queue behind that load and then evict it.
    pub host_loading: bool,
    /// Learned seconds a stream waits when the model must first be loaded on this host (cold first byte minus
    /// warm first byte); `None` until a cold start was seen.
    pub load_cost: Option<f64>,
    /// The context length its engine reports for its model; pre-call checks use it when the config gives none.
    pub context_window: Option<u64>,
    /// Smoothed seconds a request holds the deployment, to its last byte; `None` until one finished.
    pub service: Option<f64>,
    /// Requests in flight now.
    pub in_flight: u32,
    /// Mean recent latency in seconds; `None` = no sample yet.
    pub latency: Option<f64>,
    /// Requests started this minute.
    pub requests_this_minute: u64,
    /// Prompt tokens sent this minute (estimated).
    pub tokens_this_minute: u64,
    /// Estimated tokens of this request's prompt its engine most likely still holds in its KV cache
    /// ([`affinity`]).
    pub cached: u64,
    /// Its engine has a cache slot llmux has sent no prompt to yet: a new conversation placed there pushes no
    /// other conversation's prefix out.
    pub cache_room: bool,
    /// Prompt tokens its engine reads per second, learned from the timings it reports ([`speed`]).
    pub prefill_rate: Option<f64>,
    /// Tokens its engine writes per second, likewise.
    pub decode_rate: Option<f64>,
}

/// A requested name resolved to its model group.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The group's `model_name`.
    pub group: &'a str,
    /// The group's deployments (one, when a deployment id was requested).
    pub members: &'a [usize],
    /// Set when the name is a complexity router: the request is classified and sent to a tier's target.
    pub classifier: Option<&'a complexity::ComplexityRouter>,
    /// Set when the name is a semantic router: the request's text is embedded and sent to the closest route.
    pub semantic: Option<&'a semantic::SemanticRouter>,
}

/// Resolves a requested name (deployment id, alias, group, or a deployment's `litellm_params.model`) to a
/// group, in LiteLLM's order. A strategy router (`auto_router/...`) comes back with its classifier or its
/// semantic router.
pub fn resolve<'a>(config: &'a Config, op: Operation, requested: &str) -> Result<Target<'a>, Error> {
    let resolved = config
        .resolve(requested)
        .ok_or_else(|| Error::UnknownModel { route: op.route().to_owned(), model: requested.to_owned() })?;
    let mut classifier = None;
    let mut semantic = None;
    for &i in resolved.deployments {
        if let crate::config::Target::AutoRouter { kind, complexity, semantic: s } = &config.deployments[i].target {
            match (complexity, s) {
                (Some(router), _) => classifier = Some(router.as_ref()),
                (None, Some(router)) => semantic = Some(router.as_ref()),
                (None, None) => {
                    return Err(Error::Internal(format!("the strategy router auto_router/{kind} was not parsed")));
                }
            }
        }
    }
    Ok(Target { group: resolved.group, members: resolved.deployments, classifier, semantic })
}

/// The facts of one attempt that routing depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ask<'a> {
    /// Estimated prompt tokens (0 = unknown).
    pub prompt_tokens: u64,
    /// The answer's token cap, when the request sets one (0 = none: a typical answer is assumed).
    pub output_tokens: u64,
    /// Restrict to this `order` tier (an order-escalation hop).
    pub target_order: Option<u32>,
    /// Deployments this request must not try again (they refused it in a way a retry cannot fix).
    pub avoid: &'a [usize],
}

/// Why a candidate was not picked, for `x-llmux-route`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Its host failed the last health probe.
    Unhealthy,
    /// Its host sleeps (it is woken only when nothing awake can serve the request).
    Asleep,
    /// Its opt-in generation probe (`health_check_model`) failed.
    ProbeFailed,
    /// Cooling down for this many more milliseconds.
    CoolingDown(u64),
    /// The prompt does not fit its context window.
    ContextWindow,
    /// Over its `rpm`/`tpm` this minute.
    OverLimit,
    /// At its `max_parallel_requests`.
    Busy,
    /// Its model is not loaded on its host while another candidate has it loaded.
    Cold,
    /// Loading its model would evict a pinned model, and another candidate would not.
    EvictsPinned,
    /// Loading its model would evict a model serving requests.
    EvictsBusy,
    /// Its host would have to evict a model to load this one, and another cold host has room.
    NoRoom,
    /// It has the model loaded but is so busy that loading it elsewhere is quicker.
    BusyWarm,
    /// Its host is busy loading another model, and another candidate's is not.
    HostLoading,
    /// Another candidate most likely holds more of the prompt in its cache, and is not much busier.
    PrefixElsewhere,
    /// Every cache slot of its engine holds another conversation's prompt, and another candidate has room.
    CacheFull,
    /// It holds the prompt's prefix but is busier than the least busy candidate by more than the threshold.
    Overloaded,
    /// Expected to take this many milliseconds, longer than another candidate by more than the margin.
    Slower(u64),
    /// A better `order` tier has a candidate.
    LowerPriority,
    /// Already refused this request.
    Avoided,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Unhealthy => f.write_str("host down"),
            Skip::Asleep => f.write_str("host asleep"),
            Skip::ProbeFailed => f.write_str("generation probe failed"),
            Skip::CoolingDown(ms) => write!(f, "cooling down {:.1}s", *ms as f64 / 1000.0),
            Skip::ContextWindow => f.write_str("context window too small"),
            Skip::OverLimit => f.write_str("over rpm/tpm"),
            Skip::Busy => f.write_str("at max_parallel_requests"),
            Skip::Cold => f.write_str("model not loaded"),
            Skip::EvictsPinned => f.write_str("would evict a pinned model"),
            Skip::EvictsBusy => f.write_str("would evict a model serving requests"),
            Skip::NoRoom => f.write_str("no room to load the model"),
            Skip::BusyWarm => f.write_str("warm but busier than a load elsewhere"),
            Skip::HostLoading => f.write_str("host busy loading another model"),
            Skip::PrefixElsewhere => f.write_str("prompt cached elsewhere"),
            Skip::CacheFull => f.write_str("cache slots hold other conversations"),
            Skip::Overloaded => f.write_str("holds the prompt but is much busier"),
            Skip::Slower(ms) => write!(f, "slower: expected {:.1}s", *ms as f64 / 1000.0),
            Skip::LowerPriority => f.write_str("lower order"),
            Skip::Avoided => f.write_str("refused this request"),
        }
    }
}

/// The deployment to try, and why the others were passed over.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    /// The chosen deployment.
    pub deployment: DeploymentIx,
    /// Its `order` tier.
    pub tier: Option<u32>,
    /// Every other member and why it was not chosen (members merely not drawn by the strategy are omitted).
    pub skipped: Vec<(DeploymentIx, Skip)>,
    /// Members neither cooling down nor refused: whether a retry may go elsewhere at once.
    pub available: usize,
    /// Seconds the chosen deployment is expected to take, when its speeds are known ([`speed`]).
    pub expected: Option<f64>,
    /// Estimated prompt tokens the chosen deployment most likely holds in its cache.
    pub cached: u64,
}

/// Why no deployment can be tried.
#[derive(Debug, Clone, PartialEq)]
pub enum NoCandidate {
    /// Every candidate is cooling down; the earliest is back after this many milliseconds.
    AllCoolingDown {
        /// Ids of the cooled-down deployments.
        ids: Vec<String>,
        /// Milliseconds until the first one is back.
        retry_in_ms: u64,
        /// Every deployment of the group is among them (none was left out as down or as having refused this
        /// request): LiteLLM then adds "All deployments for selected model are in cooldown." to its 429.
        whole_group: bool,
    },
    /// The prompt fits no candidate's context window.
    ContextWindow {
        /// The prompt estimate.
        tokens: u64,
        /// The largest window among the candidates.
        largest: u64,
    },
    /// Every candidate is over its rate limits this minute.
    OverLimit,
    /// Every candidate is at its `max_parallel_requests`: wait for a slot.
    AllBusy,
    /// Nothing left to try (all refused this request, or the order tier is empty).
    Exhausted,
}

/// Chooses the deployment for the next attempt among `target.members`; `views[k]` is the state of
/// `target.members[k]` (missing views count as a fresh deployment). Linear in the group's size, independent of
/// the number of deployments in the config.
pub fn pick(
    config: &Config,
    target: &Target<'_>,
    ask: &Ask<'_>,
    views: &[DeploymentView],
    now: u64,
    rng: &mut fastrand::Rng,
) -> Result<Pick, NoCandidate> {
    let mut skipped = Vec::new();
    let mut pool: Vec<Candidate<'_>> = Vec::with_capacity(target.members.len());
    for (k, &i) in target.members.iter().enumerate() {
        if ask.avoid.contains(&i) {
            skipped.push((DeploymentIx(i), Skip::Avoided));
        } else {
            pool.push(Candidate { d: &config.deployments[i], view: views.get(k).copied().unwrap_or_default() });
        }
    }
    if pool.is_empty() {
        return Err(NoCandidate::Exhausted);
    }
    let mut drop_where = |pool: &mut Vec<Candidate<'_>>, why: &dyn Fn(&Candidate<'_>) -> Option<Skip>| {
        pool.retain(|c| match why(c) {
            Some(skip) => {
                skipped.push((DeploymentIx(c.d.index), skip));
                false
            }
            None => true,
        });
    };

    // Health: drop hosts that failed their probe, unless that drops everyone (LiteLLM's safety net).
    if pool.iter().any(|c| !c.view.unhealthy && !c.view.probe_failed) {
        drop_where(&mut pool, &|c| {
            if c.view.unhealthy {
                Some(if c.view.asleep { Skip::Asleep } else { Skip::Unhealthy })
            } else {
                c.view.probe_failed.then_some(Skip::ProbeFailed)
            }
        });
    }

    // Cooldowns.
    if pool.iter().all(|c| c.view.cooldown_until > now) {
        let retry_in_ms = pool.iter().map(|c| c.view.cooldown_until - now).min().unwrap_or(0);
        let whole_group = pool.len() == target.members.len();
        return Err(NoCandidate::AllCoolingDown {
            ids: pool.iter().map(|c| c.d.id.clone()).collect(),
            retry_in_ms,
            whole_group,
        });
    }
    drop_where(&mut pool, &|c| (c.view.cooldown_until > now).then(|| Skip::CoolingDown(c.view.cooldown_until - now)));
    let available = pool.len();

    // Context window, when pre-call checks are on.
    if config.router.enable_pre_call_checks && ask.prompt_tokens > 0 {
        let window = |c: &Candidate<'_>| c.d.max_input_tokens.or(c.view.context_window);
        let fits = |c: &Candidate<'_>| window(c).is_none_or(|max| ask.prompt_tokens <= max);
        if !pool.iter().any(fits) {
            let largest = pool.iter().filter_map(window).max().unwrap_or(0);
            return Err(NoCandidate::ContextWindow { tokens: ask.prompt_tokens, largest });
        }
        drop_where(&mut pool, &|c| (!fits(c)).then_some(Skip::ContextWindow));
    }

    // Rate limits, for the strategies that honour them.
    if strategy::honours_limits(&config.router.routing_strategy) {
        let under = |c: &Candidate<'_>| strategy::under_limits(c.d, &c.view, ask.prompt_tokens);
        if !pool.iter().any(under) {
            return Err(NoCandidate::OverLimit);
        }
        drop_where(&mut pool, &|c| (!under(c)).then_some(Skip::OverLimit));
    }

    // Slot-limited engines: a deployment at its max_parallel_requests spills to the others (any tier).
    let busy = |c: &Candidate<'_>| c.d.max_parallel_requests.is_some_and(|max| c.view.in_flight >= max);
    if pool.iter().all(busy) {
        return Err(NoCandidate::AllBusy);
    }
    drop_where(&mut pool, &|c| busy(c).then_some(Skip::Busy));

    // A model serving requests is never evicted: a host where loading this one would push it out is passed over
    // like a busy one (any tier takes over); when every candidate is one, the request waits in the queue until a
    // model goes idle.
    if config.router.residency_routing {
        if pool.iter().all(|c| c.view.evicts_busy) {
            return Err(NoCandidate::AllBusy);
        }
        drop_where(&mut pool, &|c| c.view.evicts_busy.then_some(Skip::EvictsBusy));
    }

    // Order: the requested tier, else the lowest surviving one; unordered deployments only when no ordered
    // deployment survives.
    let tier = match ask.target_order {
        Some(o) => Some(o),
        None => pool.iter().filter_map(|c| c.d.order).min(),
    };
    drop_where(&mut pool, &|c| (c.d.order != tier).then_some(Skip::LowerPriority));
    if pool.is_empty() {
        return Err(NoCandidate::Exhausted);
    }

    // Pinned models stay loaded: a host that would have to evict one is used only when nothing else is left.
    if pool.iter().any(|c| !c.view.evicts_pinned) {
        drop_where(&mut pool, &|c| c.view.evicts_pinned.then_some(Skip::EvictsPinned));
    }

    // Residency: within the tier, a host that has the model loaded beats one that would have to load it (and
    // evict another model to do so). Explicit `weight`/`rpm`/`tpm` shares hold against it: the share is drawn
    // first, and residency decides among the equally weighted members of the drawn share; what it still rules
    // out whatever the weights is a host where the model would evict another one (declared budgets or
    // `max_loaded_models`) or that is busy loading another model, while another candidate is not.
    if config.router.residency_routing {
        if pool.iter().any(|c| !c.view.host_loading) {
            drop_where(&mut pool, &|c| c.view.host_loading.then_some(Skip::HostLoading));
        }
        if let Some(set) = strategy::explicit_shares(&config.router.routing_strategy, &pool) {
            if pool.iter().any(|c| !c.view.evicts) {
                drop_where(&mut pool, &|c| c.view.evicts.then_some(Skip::NoRoom));
            }
            let drawn = strategy::draw_share(&pool, set, rng);
            pool.retain(|c| set(c.d).unwrap_or(0.0) == drawn);
        }
        if pool.iter().any(|c| c.view.warm) {
            // A busy warm host against an idle cold one: the queue on the warm host (requests in flight times
            // how long a request holds it, streams to their end) against the learned cost of loading the model on
            // the cold one.
            let wait =
                |c: &Candidate<'_>| f64::from(c.view.in_flight) * c.view.service.or(c.view.latency).unwrap_or(0.0);
            let warm_wait = pool.iter().filter(|c| c.view.warm).map(wait).fold(f64::INFINITY, f64::min);
            let cold_cost = |c: &Candidate<'_>| {
                if c.view.warm || c.view.evicts {
                    return None;
                }
                c.view.load_cost.map(|load| load + wait(c))
            };
            let best_cold = pool.iter().filter_map(cold_cost).fold(f64::INFINITY, f64::min);
            if best_cold < warm_wait {
                drop_where(&mut pool, &|c| {
                    (cold_cost(c) != Some(best_cold)).then_some(if c.view.warm { Skip::BusyWarm } else { Skip::Cold })
                });
            } else {
                drop_where(&mut pool, &|c| (!c.view.warm).then_some(Skip::Cold));
            }
        } else if pool.iter().any(|c| !c.view.evicts) {
            // Nobody has it loaded: load it where it fits without pushing another model out.
            drop_where(&mut pool, &|c| c.view.evicts.then_some(Skip::NoRoom));
        }
    }

    // Prompt cache and speed, within what residency left. First speed, once some candidate's rates are known:
    // candidates expected to take much longer than the quickest are passed over (a cached prefix counts as
    // prompt not to read; one that has not answered yet is assumed as fast as the others, so it is tried and
    // learned rather than passed over for ever). Then, among those left, the one holding the longest prefix of
    // the prompt, unless it is much busier than the least busy (SGLang's load guard).
    if config.router.residency_routing && pool.len() > 1 {
        let assumed = speed::assumed_rates(pool.iter().map(|c| &c.view));
        let expected = |c: &Candidate<'_>| speed::expected_seconds(&assumed.fill(c.view), ask);
        if pool.iter().all(|c| expected(c).is_some()) {
            let best = pool.iter().filter_map(expected).fold(f64::INFINITY, f64::min);
            drop_where(&mut pool, &|c| {
                let e = expected(c).unwrap_or(f64::INFINITY);
                (e > best * speed::SPEED_MARGIN).then(|| Skip::Slower((e * 1000.0).round() as u64))
            });
        }
        let most = pool.iter().map(|c| c.view.cached).max().unwrap_or(0);
        let least_busy = pool.iter().map(|c| c.view.in_flight).min().unwrap_or(0);
        let holder_busy = pool.iter().filter(|c| c.view.cached == most).map(|c| c.view.in_flight).min();
        if most >= MIN_CACHED_TOKENS && holder_busy.is_some_and(|b| b <= least_busy + BALANCE_THRESHOLD) {
            drop_where(&mut pool, &|c| (c.view.cached < most).then_some(Skip::PrefixElsewhere));
        } else if most >= MIN_CACHED_TOKENS {
            // The holder is swamped: the load goes where the queue is short, as SGLang does.
            let over = |c: &Candidate<'_>| c.view.in_flight > least_busy + BALANCE_THRESHOLD;
            drop_where(&mut pool, &|c| over(c).then_some(Skip::Overloaded));
        } else if pool.iter().any(|c| c.view.cache_room) {
            // A new conversation goes where it evicts no other one's prefix.
            drop_where(&mut pool, &|c| (!c.view.cache_room).then_some(Skip::CacheFull));
        }
    }

    let chosen = strategy::choose(&config.router.routing_strategy, &pool, rng);
    let view = pool.iter().find(|c| c.d.index == chosen).map(|c| c.view).unwrap_or_default();
    let expected = speed::expected_seconds(&view, ask);
    Ok(Pick { deployment: DeploymentIx(chosen), tier, skipped, available, expected, cached: view.cached })
}

/// A cached prefix shorter than this (estimated tokens) is not worth concentrating load for: it is read again
/// in well under a second anywhere.
pub const MIN_CACHED_TOKENS: u64 = 256;
/// Requests in flight by which the deployment holding a prompt's prefix may exceed the least busy candidate and
/// still be preferred (SGLang's `balance_abs_threshold`, sized for a home lab's handful of parallel slots).
pub const BALANCE_THRESHOLD: u32 = 2;

/// A deployment still in the running, with its state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate<'a> {
    d: &'a Deployment,
    view: DeploymentView,
}

/// The distinct `order` values of a group, ascending (for order escalation).
pub fn order_tiers(config: &Config, members: &[usize]) -> Vec<u32> {
    let mut tiers: Vec<u32> = members.iter().filter_map(|&i| config.deployments[i].order).collect();
    tiers.sort_unstable();
    tiers.dedup();
    tiers
}

#[cfg(test)]
mod tests;
