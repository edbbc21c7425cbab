//! Serves one request: carries out its [`Plan`] (the pure attempt state machine in [`crate::router::plan`]),
//! sending it to one deployment after another until one answers, and records what happened into the routing
//! state. Failover happens only before the first byte reaches the client; a stream that breaks later ends with
//! an error event, never silently.
//!
//! - `attempt`: one call to one deployment (transport, timeouts, answer and error-body reading);
//! - `stream`: the client's stream (SSE/NDJSON forwarding and conversion, keep-alive comments);
//! - `labels`: the response headers and route explanation;
//! - `record`: what the request's record keeps of routing (the route, every attempt);
//! - `semantic`: a semantic router's embeddings;
//! - `wake`: holding a request while the sleeping host it needs wakes up;
//! - `load`: loads of cold models set off by llmux itself, so a client hanging up does not abort them;
//! - `affinity`: the prompt-prefix index consulted before each pick and told where each prompt went.

mod affinity;
mod attempt;
mod labels;
mod load;
mod queue;
mod record;
mod semantic;
mod stream;
mod wake;

pub use stream::execute_with_keepalive;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use crate::config::{Config, Deployment, Strategy};
use crate::error::Error;
use crate::observe::{Attempt, Trace};
use crate::protocol::openai::{Operation, RequestHead};
use crate::providers::{Call, Native};
use crate::router::complexity::Classification;
use crate::router::plan::{Action, Failed, Hop, Plan};
use crate::router::policy::Cooldown;
use crate::router::{self, NoCandidate};
use crate::state::{HostIx, State};
use crate::upstream::HttpClient;
use labels::*;
use record::Tried;

/// The request executor: config, routing state and the engine client.
pub struct Executor {
    /// The config snapshot.
    pub config: Arc<Config>,
    /// Routing state learned from traffic and health checks.
    pub state: Arc<State>,
    client: HttpClient,
    /// Loads llmux set off and still waits for, by deployment: until when their first byte may take.
    loading: std::sync::Mutex<std::collections::HashMap<usize, Instant>>,
    /// What the response headers say about each deployment, by index.
    labels: Vec<Label>,
    /// `x-litellm-max-retries`.
    max_retries: HeaderValue,
    /// Bytes of engine answers that may be held in memory at once, across requests
    /// (`llmux_settings.server.max_buffered_mb`).
    buffered: Arc<tokio::sync::Semaphore>,
    /// Requests waiting for a free slot (every candidate at its `max_parallel_requests`), by group, in order.
    queues: queue::Queues,
    /// Model loads llmux set off on Ollama hosts and that requests wait for.
    loads: load::Loads,
    /// Starts this config's background health rounds early, on request.
    rounds: Arc<crate::health::Rounds>,
}

/// One client request on its way through retries, order escalation and fallbacks.
struct Run<'a> {
    exec: &'a Executor,
    op: Operation,
    body: &'a [u8],
    head: &'a RequestHead<'a>,
    prompt_tokens: u64,
    /// Retries made in the group that produced the final outcome (`x-litellm-attempted-retries`).
    retries: u32,
    /// Fallbacks behind the final outcome (`x-litellm-attempted-fallbacks`).
    fallbacks: u32,
    /// The complexity router's verdict, when the request named one.
    classification: Option<Classification>,
    steps: Vec<String>,
    rng: fastrand::Rng,
    /// The body with its remote images inlined, made the first time an engine that needs that is tried
    /// (`Some(None)`: the body has none).
    inlined: Option<Option<Bytes>>,
    /// The client's own request, when it spoke an engine family's native API.
    native: Option<Native<'a>>,
    /// The request's record, told the route at the end and given to the answer's body for its tokens.
    trace: &'a Trace,
    /// Every attempt made, for the record (empty when the trace is off).
    attempts: Vec<Attempt>,
    /// Time spent queued for a free slot.
    queue_wait: Duration,
    /// When the answer's first byte was ready.
    answered_at: Option<Instant>,
    /// Attempts made in the current group (a later one is a retry).
    tries_in_hop: u32,
    /// The prompt's message-boundary chain, for prompt-cache affinity (chat requests under residency routing).
    prefix: Option<crate::router::affinity::Prefix>,
    /// The answer's token cap, when the request sets one.
    output_tokens: u64,
}

impl Executor {
    /// An executor over `config`.
    pub fn new(config: Arc<Config>, client: HttpClient) -> Self {
        let state = Arc::new(State::new(&config));
        Executor::with_state(config, state, client)
    }

    /// An executor over a reloaded `config` that keeps what `old` learned (see [`State::successor`]) and its
    /// engine connection pool.
    pub fn successor(old: &Executor, config: Arc<Config>) -> Self {
        let state = Arc::new(State::successor(&old.state, &old.config, &config));
        Executor::with_state(config, state, old.client.clone())
    }

    fn with_state(config: Arc<Config>, state: Arc<State>, client: HttpClient) -> Self {
        // A host found unreachable (by a request or a probe) is re-probed in the background until it answers.
        let (weak, hook_config, hook_client) = (Arc::downgrade(&state), config.clone(), client.clone());
        state.on_unreachable(crate::state::UnreachableHook(Box::new(move |host| {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else { return false };
            let task =
                crate::health::recheck_unreachable(hook_config.clone(), weak.clone(), hook_client.clone(), host.0);
            runtime.spawn(task);
            true
        })));
        let labels = config.deployments.iter().map(|d| Label::of(&config, d)).collect();
        let max_retries = HeaderValue::from(config.router.num_retries);
        let budget = config.limits.max_buffered_bytes.min(tokio::sync::Semaphore::MAX_PERMITS);
        let buffered = Arc::new(tokio::sync::Semaphore::new(budget));
        let queues = queue::Queues::default();
        let loads = load::Loads::default();
        let rounds = Arc::default();
        let loading = Default::default();
        Executor { config, state, client, loading, labels, max_retries, buffered, queues, loads, rounds }
    }

    /// The engine client, shared with on-demand health probes.
    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    /// The timing seam of this config's background health loop (see [`crate::health::Rounds`]).
    pub fn health_rounds(&self) -> &crate::health::Rounds {
        &self.rounds
    }

    /// Requests of `group` waiting now for a deployment to free a slot.
    pub fn queued(&self, group: &str) -> u32 {
        self.queues.waiting(group)
    }

    /// Starts the background health checks when the config asks for them (the handle stops them: a reload
    /// replaces them with the new config's), and preloads pinned models.
    pub fn spawn_health_checks(&self) -> Option<tokio::task::AbortHandle> {
        if self.config.hosts.iter().any(|h| h.profile.preloads && !h.limits.pinned.is_empty()) {
            let (config, client) = (self.config.clone(), self.client.clone());
            tokio::spawn(async move { crate::health::preload_pinned(&config, &client).await });
        }
        let general = &self.config.general;
        general.background_health_checks.then(|| {
            let interval = Duration::from_secs(general.health_check_interval.max(1));
            let (config, state, client, rounds) =
                (self.config.clone(), self.state.clone(), self.client.clone(), self.rounds.clone());
            let task = crate::health::run(config, state, client, interval, rounds);
            tokio::spawn(task).abort_handle()
        })
    }

    /// Serves one API request: routes it, calls engines until one answers, and returns the client response.
    /// What happened goes into `trace`.
    pub async fn execute(&self, op: Operation, body: &[u8], head: &RequestHead<'_>, trace: &Trace) -> Response {
        self.execute_native(op, body, head, None, trace).await
    }

    /// [`Executor::execute`] for a request that came in an engine family's own API: engines of that family get
    /// `native` as sent and answer in it (the response then carries [`NativeAnswer`]); others get `body`.
    pub async fn execute_native(
        &self,
        op: Operation,
        body: &[u8],
        head: &RequestHead<'_>,
        native: Option<Native<'_>>,
        trace: &Trace,
    ) -> Response {
        let needs_tokens = self.config.router.enable_pre_call_checks
            || matches!(self.config.router.routing_strategy, Strategy::UsageBased | Strategy::LatencyBased { .. });
        let (prefix, output_tokens) = match affinity::prompt_of(&self.config, op, body) {
            Some((prefix, cap)) => (Some(prefix), cap),
            None => (None, 0),
        };
        let prompt_tokens = match &prefix {
            _ if needs_tokens => estimate_prompt_tokens(body),
            Some(prefix) => prefix.tokens(),
            None => 0,
        };
        let mut run = Run {
            exec: self,
            op,
            body,
            head,
            prompt_tokens,
            retries: 0,
            fallbacks: 0,
            classification: None,
            steps: Vec::new(),
            rng: fastrand::Rng::new(),
            inlined: None,
            native,
            trace,
            attempts: Vec::new(),
            queue_wait: Duration::ZERO,
            answered_at: None,
            tries_in_hop: 0,
            output_tokens,
            prefix,
        };
        let result = run.walk().await;
        let (mut response, deployment) = match result {
            Ok((response, d)) => (response, Some(d)),
            Err(err) => {
                if err.status().is_server_error() || err.status() == StatusCode::TOO_MANY_REQUESTS {
                    let (model, route) = (crate::redact::escape(&head.model), run.steps.join("; "));
                    let (route, err) =
                        (crate::redact::escape(&route), crate::redact::escape(&err.to_string()).into_owned());
                    tracing::warn!(model = %model, route = %route, "request failed: {err}");
                }
                if trace.is_on() {
                    let why = short(&err);
                    trace.update(|d| d.record.error = Some(why));
                }
                (axum::response::IntoResponse::into_response(err), None)
            }
        };
        let route = match run.steps.len() {
            1 => std::mem::take(&mut run.steps[0]),
            _ => run.steps.join("; "),
        };
        if trace.is_on() {
            run.record(&route, deployment, response.status().as_u16());
        }
        let headers = response.headers_mut();
        headers.reserve(9);
        if let Some(d) = deployment {
            let label = &self.labels[d];
            for (name, value) in
                [(X_LLMUX_DEPLOYMENT, &label.deployment), (X_MODEL_ID, &label.id), (X_MODEL_GROUP, &label.group)]
            {
                if let Some(value) = value {
                    headers.insert(name, value.clone());
                }
            }
        }
        if let Some(c) = &run.classification {
            put(headers, "x-litellm-complexity-router-tier", c.tier.as_str());
            put(headers, "x-litellm-complexity-router-score", &format!("{:.3}", c.score));
        }
        if let Some(value) = HeaderValue::from_maybe_shared(Bytes::from(route)).ok().filter(|v| !v.is_empty()) {
            headers.insert(X_LLMUX_ROUTE, value);
        }
        headers.insert(X_ATTEMPTED_RETRIES, count(run.retries));
        headers.insert(X_MAX_RETRIES, self.max_retries.clone());
        headers.insert(X_ATTEMPTED_FALLBACKS, count(run.fallbacks));
        response
    }
}

impl Run<'_> {
    /// Carries out the request's [`Plan`]: routes through strategy routers, picks and calls deployments, records
    /// what happened into the state, and sleeps for back-off or a free slot. Every decision is the plan's.
    async fn walk(&mut self) -> Result<(Response, usize), Error> {
        let exec = self.exec;
        let mut plan = Plan::new(&exec.config, self.op, &self.head.model, &self.head.controls);
        let result = self.carry_out(&mut plan).await;
        (self.retries, self.fallbacks) = (plan.retries, plan.fallbacks);
        result
    }

    async fn carry_out<'c>(&mut self, plan: &mut Plan<'c>) -> Result<(Response, usize), Error> {
        let exec = self.exec;
        let config: &Config = &exec.config;
        let router = &config.router;
        let latency_ttl = latency_ttl(config);
        let mut action = plan.start();
        // The group being tried, its queue deadline, and the wake-up armed when every candidate was busy.
        let mut hop: Option<Hop<'c>> = None;
        let mut queue_deadline: Option<Instant> = None;
        let mut freed = None;
        // The request's place in the group's queue while every candidate is busy.
        let on_leave = || exec.state.queue_moved();
        let mut place: Option<queue::Place<'_>> = None;
        loop {
            match action {
                Action::Fail(err) => return Err(err),
                Action::Classify { name, router: classifier } => {
                    let messages = request_messages(self.body);
                    let classification = classifier.classify(&messages);
                    let Some(chosen) = classifier.route(&classification, &mut self.rng).map(str::to_owned) else {
                        return Err(Error::Internal(format!("complexity router {name} has no model for its tier")));
                    };
                    self.steps.push(describe_classification(&name, &classification, &chosen));
                    self.classification = Some(classification);
                    action = plan.routed(chosen);
                    continue;
                }
                Action::Embed { name, router: semantic } => {
                    let choice = exec.semantic_route(semantic, self.body).await;
                    self.steps.push(describe_semantic(&name, &choice));
                    action = plan.routed(choice.model);
                    continue;
                }
                Action::FindAsleep => {
                    action = plan.asleep(&|host| exec.asleep(host));
                    continue;
                }
                Action::Wake { host } => {
                    let started = Instant::now();
                    let up = exec.wake(host).await;
                    let origin = config.hosts.get(host).map_or("?", |h| h.origin.as_str());
                    let waited = started.elapsed();
                    let outcome = if up { "answered" } else { "did not answer" };
                    self.steps.push(format!("woke {origin}: {outcome} after {:.1}s", waited.as_secs_f64()));
                    action = plan.woke(up, waited);
                    continue;
                }
                Action::Retry { wait } => {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                }
                Action::Try(next) => {
                    if next.depth > 0 {
                        let tier = next.order.map(|o| format!(" order {o}")).unwrap_or_default();
                        self.steps.push(format!("fallback {}{tier}", next.name));
                    }
                    (queue_deadline, freed, place) = (None, None, None);
                    self.tries_in_hop = 0;
                    hop = Some(next);
                }
            }
            let Some(hop) = &hop else { return Err(Error::Internal("a retry outside a group".into())) };
            let target = &hop.target;
            action = loop {
                if let Some(next) = plan.may_attempt() {
                    break next;
                }
                let now = exec.state.now();
                let mut views = exec.state.snapshot(target.members, now, latency_ttl);
                exec.mark_host_loading(target.members, &mut views);
                exec.mark_cached(target.members, self.prefix.as_ref(), &mut views);
                let ask = router::Ask {
                    prompt_tokens: self.prompt_tokens,
                    output_tokens: self.output_tokens,
                    target_order: hop.order,
                    avoid: plan.avoid(),
                };
                // The request's `priority`, else its name's or its group's default: lower waits less.
                let controls = &self.head.controls;
                let priority = controls
                    .priority
                    .or_else(|| config.priorities.get(self.head.model.as_ref()).copied())
                    .or_else(|| config.priorities.get(target.group).copied())
                    .unwrap_or(0);
                let my_turn = match &place {
                    Some(place) => place.first(),
                    None => exec.queues.may_enter(target.group, priority),
                };
                // Not its turn: as if every candidate were busy, it waits in the queue.
                let picked = if my_turn {
                    router::pick(config, target, &ask, &views, now.0, &mut self.rng)
                } else {
                    Err(NoCandidate::AllBusy)
                };
                let pick = match picked {
                    Ok(p) => p,
                    Err(NoCandidate::AllBusy) => {
                        // Every candidate is at its max_parallel_requests: queue, bounded, for a free slot. The
                        // wake-up is armed first and the pick made again, so a slot freed in between is not missed.
                        let Some(mut armed) = freed.take() else {
                            let mut armed = Box::pin(exec.state.slot_freed());
                            armed.as_mut().enable();
                            freed = Some(armed);
                            continue;
                        };
                        let deadline = *queue_deadline.get_or_insert_with(|| Instant::now() + router.queue_timeout);
                        let queued = Instant::now();
                        place.get_or_insert_with(|| exec.queues.join(target.group, priority, &on_leave));
                        let waited = tokio::time::timeout_at(deadline.into(), armed.as_mut()).await;
                        self.queue_wait += queued.elapsed();
                        if waited.is_err() {
                            break plan.no_candidate(NoCandidate::AllBusy);
                        }
                        continue;
                    }
                    Err(none) => break plan.no_candidate(none),
                };
                // Out of the queue before the attempt: those behind may try for the next slot.
                drop(place.take());
                match self.call(plan, hop, &pick, views).await {
                    Ok(done) => return Ok(done),
                    Err(next) => break next,
                }
            };
            // Whatever comes next (a back-off, a fallback, a failure), it does not hold up those behind.
            place = None;
        }
    }

    /// One attempt on the picked deployment, its outcome recorded into the state and told to the plan: the
    /// answer, or what the plan does next.
    async fn call<'c>(
        &mut self,
        plan: &mut Plan<'c>,
        hop: &Hop<'c>,
        pick: &router::Pick,
        views: Vec<router::DeploymentView>,
    ) -> Result<(Response, usize), Action<'c>> {
        let exec = self.exec;
        let config: &Config = &exec.config;
        let router = &config.router;
        let (name, target) = (&hop.name, &hop.target);
        let ix = pick.deployment;
        let index = ix.0;
        let d = &config.deployments[index];
        let step = describe(name, target.group, pick, &exec.labels[index].step);
        let view = target.members.iter().position(|&m| m == index).map(|p| views[p]).unwrap_or_default();
        let reason = decision(pick, &view, hop, self.tries_in_hop > 0);
        self.tries_in_hop += 1;
        plan.attempting(pick.tier);
        let Some(model) = config.engine_model(d, name) else {
            return Err(plan.ended(Error::invalid(
                format!("{} serves the wildcard {:?}: request a model name that matches it", d.id, d.model_name),
                Some("model"),
            )));
        };
        // Before the attempt is counted anywhere: a link the client sent that cannot be fetched is its error.
        let inlined = match self.inline_images_for(d).await {
            Ok(body) => body,
            Err(e) => {
                let why = short(&e);
                let failed = Some((why.clone(), e.status().as_u16()));
                self.attempted(Tried { index, group: target.group, reason, cold: false }, failed, Duration::ZERO);
                self.steps.push(format!("{step} failed: {why}"));
                return Err(plan.ended(e));
            }
        };
        let now = exec.state.now();
        let mut guard = exec.state.start(ix, self.prompt_tokens, now);
        // Where the prompt goes is where its prefix will be cached; on llama.cpp it is pinned to that slot.
        let pinned = self.prefix.as_ref().and_then(|prefix| {
            let (lease, slot) = exec.place_prompt(d, prefix, target.members.len(), now)?;
            if let Some(guard) = guard.as_mut() {
                guard.attach(lease);
            }
            slot.map(|slot| crate::providers::openai::with_slot(inlined.as_deref().unwrap_or(self.body), slot))
        });
        let marked = exec.state.model_routed(ix, &model, now);
        // A host that must load the model first gets the time loading took it before, and some, to answer.
        let load_cost = target.members.iter().position(|&m| m == index).and_then(|p| views[p].load_cost);
        let patience = load_cost.filter(|_| marked).and_then(|s| Duration::try_from_secs_f64(s * 1.5).ok());
        // A request that finds such a load still running waits for the same load: it gets what is left of that
        // time (and its first byte, neither cold nor warm, teaches nothing).
        let joined = if marked { None } else { exec.load_in_progress(index) };
        let started = Instant::now();
        let until = patience.map(|p| exec.load_started(index, started + p));
        // Only where a probe told what is loaded: elsewhere "not known to be loaded" is no evidence of a load.
        let owned = marked
            && self.op != Operation::Embeddings
            && router.residency_routing
            && exec.state.probed(d.host.map(HostIx));
        let load = owned.then(|| exec.loads.start(&exec.config, &exec.client, d, &model)).flatten();
        let body = pinned.as_deref().or(inlined.as_deref()).unwrap_or(self.body);
        let call = Call { op: self.op, deployment: d, model: &model, body, head: self.head, native: self.native };
        let result = exec.attempt(call, guard, patience.or(joined), load, self.trace).await;
        if let Some(until) = until {
            exec.load_awaited(index, until);
        }
        let err = match result {
            Ok(response) => {
                let max_samples = match router.routing_strategy {
                    Strategy::LatencyBased { max_samples, .. } => max_samples,
                    _ => 10,
                };
                let now = exec.state.now();
                if self.head.stream && joined.is_none() {
                    exec.state.record_first_byte(ix, started.elapsed(), marked);
                }
                if marked {
                    // The engine may have evicted another model to load this one: look now rather than at
                    // the next probe (the seed probes every 15 minutes).
                    exec.reprobe(d.host, now);
                }
                exec.state.record_success(ix, started.elapsed(), max_samples, now);
                exec.state.host_answered(ix, &model, now);
                self.answered_at = Some(Instant::now());
                self.attempted(Tried { index, group: target.group, reason, cold: marked }, None, started.elapsed());
                self.steps.push(step);
                plan.answered(pick.tier);
                return Ok((response, index));
            }
            Err(err) => err,
        };
        let why = short(&err);
        let failed = Some((why.clone(), err.status().as_u16()));
        self.attempted(Tried { index, group: target.group, reason, cold: marked }, failed, started.elapsed());
        self.steps.push(format!("{step} failed: {why}"));
        let now = exec.state.now();
        if marked {
            exec.state.load_failed(ix, &model, now);
        }
        let failure = match plan.failed(err, pick.tier) {
            Failed::Count(failure) => failure,
            Failed::Next(next) => return Err(next),
        };
        let counts = exec.state.record_failure(ix, now);
        let consequence = plan.cooldown(d, &failure, counts);
        if let Some((host, window)) = consequence.host_down {
            exec.state.host_unreachable(host, &why, now, now.after(window));
        }
        let cooled = match consequence.cooldown {
            Cooldown::No => false,
            Cooldown::Now(t) => {
                exec.state.cool_down(ix, t, consequence.cause, now);
                true
            }
            Cooldown::IfCountExceeds { key, allowed, duration } => {
                let over = exec.state.count_allowed_fail(ix, key, duration, now) > allowed;
                if over {
                    exec.state.cool_down(ix, duration, consequence.cause, now);
                }
                over
            }
        };
        if let Some(attempt) = self.attempts.last_mut().filter(|_| cooled) {
            attempt.cooled_down = true;
        }
        let views = exec.state.snapshot(target.members, now, latency_ttl(config));
        let avoid = plan.avoid();
        let available =
            target.members.iter().zip(&views).filter(|(i, v)| !avoid.contains(i) && v.cooldown_until <= now.0).count();
        Err(plan.after_failure(d, &failure, available, self.rng.f64()))
    }
}

/// How long latency samples count, under the latency-based strategy.
fn latency_ttl(config: &Config) -> Option<Duration> {
    match config.router.routing_strategy {
        Strategy::LatencyBased { ttl, .. } => Some(ttl),
        _ => None,
    }
}
impl Run<'_> {
    /// The body to send to `d` when its engine takes only inline images (Ollama) and the request links remote
    /// ones: fetched once per request (see [`crate::images`]); `None` to send the body as received.
    async fn inline_images_for(&mut self, d: &Deployment) -> Result<Option<Bytes>, Error> {
        let inline_only = d.engine().is_some_and(|e| matches!(e.adapter(), crate::providers::Adapter::Ollama { .. }));
        if !inline_only || self.op != Operation::Chat {
            return Ok(None);
        }
        if let Some(done) = &self.inlined {
            return Ok(done.clone());
        }
        let done = if crate::images::may_have_remote(self.body) {
            let exec = self.exec;
            crate::images::inline_remote(self.body, &exec.client, &exec.config.images).await?
        } else {
            None
        };
        self.inlined = Some(done.clone());
        Ok(done)
    }
}

/// The `messages` of a chat body, for classification (an unreadable body gives none: the router's default).
fn request_messages(body: &[u8]) -> Vec<serde_json::Value> {
    #[derive(serde::Deserialize)]
    struct Messages {
        #[serde(default)]
        messages: Vec<serde_json::Value>,
    }
    serde_json::from_slice::<Messages>(body).map(|m| m.messages).unwrap_or_default()
}

/// A prompt-token estimate (characters / 4 of the text in `messages`, `prompt` or `input`), only computed when
/// a strategy or pre-call check needs it. Images and other non-text parts are not counted.
fn estimate_prompt_tokens(body: &[u8]) -> u64 {
    #[derive(serde::Deserialize)]
    struct Texts {
        #[serde(default)]
        messages: Vec<serde_json::Value>,
        #[serde(default)]
        prompt: serde_json::Value,
        #[serde(default)]
        input: serde_json::Value,
    }
    fn chars(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::String(s) => s.chars().count(),
            serde_json::Value::Array(items) => items.iter().map(chars).sum(),
            serde_json::Value::Object(m) => {
                m.get("content").map(chars).unwrap_or(0) + m.get("text").map(chars).unwrap_or(0)
            }
            _ => 0,
        }
    }
    let Ok(texts) = serde_json::from_slice::<Texts>(body) else { return 0 };
    let total = texts.messages.iter().map(chars).sum::<usize>() + chars(&texts.prompt) + chars(&texts.input);
    (total as u64).div_ceil(4)
}

/// An error in one line for a route step: its status and the first 120 characters.
fn short(err: &Error) -> String {
    let text = err.to_string();
    let mut s: String = text.chars().take(120).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    format!("{} {}", err.status().as_u16(), s.replace(['\r', '\n'], " "))
}
