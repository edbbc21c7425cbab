//! Walks a routing plan: sends the request to one deployment after another until one answers, then hands the
//! answer (whole or as a stream) back in OpenAI form. Failover happens only before the first byte reaches the
//! client; a stream that breaks later ends with an SSE error event, never silently.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::config::{Config, Deployment, EngineTarget, ErrorClass, Strategy};
use crate::error::Error;
use crate::protocol::openai::{Operation, RequestHead};
use crate::providers::{Call, Native, NativeAnswer, Provider, StreamConverter};
use crate::router::complexity::Classification;
use crate::router::policy::{self, Cooldown, Failure};
use crate::router::semantic;
use crate::router::{self, NoCandidate};
use crate::state::{OwnedInFlight, State};
use crate::upstream::HttpClient;

/// Default whole-request timeout, as LiteLLM's effective default for chat completions.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a host that refused a live connection is skipped (unless a probe or a request finds it back
/// sooner): long enough that a powered-off host's connect timeout is not paid every few seconds.
const PASSIVE_DOWN_MIN: Duration = Duration::from_secs(30);
/// How much of an engine's error body llmux reads: enough for any real error message; the rest is not read
/// (a broken engine once sent a 100 MB one, which went whole to the client and into one log line).
const MAX_ERROR_BODY: usize = 8 * 1024;
/// How long llmux waits for that much of an error body (an engine that dribbles it is not waited for).
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(10);

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
}

/// What the response headers and route explanations say about one deployment, made once per config rather
/// than formatted on every request.
struct Label {
    /// `x-llmux-deployment`: `model_list[i] <model> @ <host>`.
    deployment: Option<HeaderValue>,
    /// `x-litellm-model-id`.
    id: Option<HeaderValue>,
    /// `x-litellm-model-group`.
    group: Option<HeaderValue>,
    /// How a route step ends: `model_list[i] @ <host>`.
    step: String,
}

impl Label {
    fn of(d: &Deployment) -> Label {
        let host = d.engine().map(|e| e.host()).unwrap_or("");
        let value = |s: &str| HeaderValue::from_str(s).ok().filter(|_| !s.is_empty());
        Label {
            deployment: value(&format!("model_list[{}] {} @ {host}", d.index, d.model)),
            id: value(&d.id),
            group: value(&d.model_name),
            step: format!("model_list[{}] @ {host}", d.index),
        }
    }
}

const X_LLMUX_DEPLOYMENT: HeaderName = HeaderName::from_static("x-llmux-deployment");
const X_LLMUX_ROUTE: HeaderName = HeaderName::from_static("x-llmux-route");
const X_MODEL_ID: HeaderName = HeaderName::from_static("x-litellm-model-id");
const X_MODEL_GROUP: HeaderName = HeaderName::from_static("x-litellm-model-group");
const X_ATTEMPTED_RETRIES: HeaderName = HeaderName::from_static("x-litellm-attempted-retries");
const X_MAX_RETRIES: HeaderName = HeaderName::from_static("x-litellm-max-retries");
const X_ATTEMPTED_FALLBACKS: HeaderName = HeaderName::from_static("x-litellm-attempted-fallbacks");

/// One client request on its way through retries, order escalation and fallbacks.
struct Run<'a> {
    exec: &'a Executor,
    op: Operation,
    body: &'a [u8],
    head: &'a RequestHead<'a>,
    prompt_tokens: u64,
    /// Engine calls made so far, against `max_attempts`.
    attempts: u32,
    /// Retries made in the group that produced the final outcome.
    retries: u32,
    /// Fallback depth of the final outcome.
    fallbacks: u32,
    /// The highest `order` tier the last group attempt reached.
    last_tier: Option<u32>,
    /// The complexity router's verdict, when the request named one.
    classification: Option<Classification>,
    steps: Vec<String>,
    rng: fastrand::Rng,
    /// The body with its remote images inlined, made the first time an engine that needs that is tried
    /// (`Some(None)`: the body has none).
    inlined: Option<Option<Bytes>>,
    /// The client's own request, when it spoke an engine family's native API.
    native: Option<Native<'a>>,
}

/// A hop of the fallback walk: a model name, an order tier, and its depth.
struct Hop {
    name: String,
    order: Option<u32>,
    depth: u32,
    /// The complexity router that chose `name`: its fallbacks apply after the target's own.
    via: Option<String>,
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
            let task = crate::health::recheck_unreachable(hook_config.clone(), weak.clone(), hook_client.clone(), host);
            runtime.spawn(task);
            true
        })));
        let labels = config.deployments.iter().map(Label::of).collect();
        let max_retries = HeaderValue::from(config.router.num_retries);
        let budget = config.limits.max_buffered_bytes.min(tokio::sync::Semaphore::MAX_PERMITS);
        let buffered = Arc::new(tokio::sync::Semaphore::new(budget));
        Executor { config, state, client, loading: Default::default(), labels, max_retries, buffered }
    }

    /// The engine client, shared with on-demand health probes.
    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    /// Starts the background health checks when the config asks for them (the handle stops them: a reload
    /// replaces them with the new config's), and preloads pinned models.
    pub fn spawn_health_checks(&self) -> Option<tokio::task::AbortHandle> {
        if self.config.hosts.iter().any(|h| h.ollama_base.is_some() && !h.limits.pinned.is_empty()) {
            let (config, client) = (self.config.clone(), self.client.clone());
            tokio::spawn(async move { crate::health::preload_pinned(&config, &client).await });
        }
        let general = &self.config.general;
        general.background_health_checks.then(|| {
            let interval = Duration::from_secs(general.health_check_interval.max(1));
            let task = crate::health::run(self.config.clone(), self.state.clone(), self.client.clone(), interval);
            tokio::spawn(task).abort_handle()
        })
    }

    /// Serves one API request: routes it, calls engines until one answers, and returns the client response.
    pub async fn execute(&self, op: Operation, body: &[u8], head: &RequestHead<'_>) -> Response {
        self.execute_native(op, body, head, None).await
    }

    /// [`Executor::execute`] for a request that came in an engine family's own API: engines of that family get
    /// `native` as sent and answer in it (the response then carries [`NativeAnswer`]); others get `body`.
    pub async fn execute_native(
        &self,
        op: Operation,
        body: &[u8],
        head: &RequestHead<'_>,
        native: Option<Native<'_>>,
    ) -> Response {
        let needs_tokens = self.config.router.enable_pre_call_checks
            || matches!(self.config.router.routing_strategy, Strategy::UsageBased | Strategy::LatencyBased { .. });
        let mut run = Run {
            exec: self,
            op,
            body,
            head,
            prompt_tokens: if needs_tokens { estimate_prompt_tokens(body) } else { 0 },
            attempts: 0,
            retries: 0,
            fallbacks: 0,
            last_tier: None,
            classification: None,
            steps: Vec::new(),
            rng: fastrand::Rng::new(),
            inlined: None,
            native,
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
                (axum::response::IntoResponse::into_response(err), None)
            }
        };
        let route = match run.steps.len() {
            1 => std::mem::take(&mut run.steps[0]),
            _ => run.steps.join("; "),
        };
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
    /// The whole walk, depth first as LiteLLM nests fallbacks: the requested model with its retries; on
    /// failure its higher `order` tiers, then its configured fallbacks, each hop with its own retries and its
    /// own fallbacks, loop-safe, bounded by `max_fallbacks` and the attempt budget. The client gets the primary
    /// group's error, or the last error when order tiers were escalated (both as LiteLLM).
    async fn walk(&mut self) -> Result<(Response, usize), Error> {
        let router = &self.exec.config.router;
        let mut stack = vec![Hop { name: self.head.model.to_string(), order: None, depth: 0, via: None }];
        let mut tried: Vec<(String, Option<u32>)> = Vec::new();
        let mut primary: Option<Error> = None;
        let mut last: Option<Error> = None;
        let mut escalated = false;
        // Other groups tried as fallbacks, for the explanation the final error carries.
        let mut fallback_groups: Vec<String> = Vec::new();
        let mut primary_group: Option<String> = None;
        while let Some(hop) = stack.pop() {
            if self.attempts >= router.max_attempts {
                break;
            }
            let target = match router::resolve(&self.exec.config, self.op, &hop.name) {
                Ok(t) => t,
                Err(e) if hop.depth == 0 => return Err(e),
                Err(_) => continue,
            };
            // A fallback to a group already tried is skipped (loops end); an order hop only skips its own tier.
            if tried.iter().any(|(g, o)| g == target.group && (*o == hop.order || hop.order.is_none())) {
                continue;
            }
            tried.push((target.group.to_owned(), hop.order));
            if let Some(classifier) = target.classifier {
                // A complexity router is never called: it classifies the request and hands it to a tier's target,
                // which then goes through normal routing (its order, health, fallbacks keyed by it first).
                let messages = request_messages(self.body);
                let classification = classifier.classify(&messages);
                let Some(chosen) = classifier.route(&classification, &mut self.rng).map(str::to_owned) else {
                    return Err(Error::Internal(format!("complexity router {} has no model for its tier", hop.name)));
                };
                self.steps.push(describe_classification(&hop.name, &classification, &chosen));
                self.classification = Some(classification);
                stack.push(Hop { name: chosen, order: None, depth: hop.depth, via: Some(hop.name) });
                continue;
            }
            if let Some(semantic) = target.semantic {
                // A semantic router is never called either: the request's text picks the closest route.
                let choice = self.exec.semantic_route(semantic, self.body).await;
                self.steps.push(describe_semantic(&hop.name, &choice));
                stack.push(Hop { name: choice.model, order: None, depth: hop.depth, via: Some(hop.name) });
                continue;
            }
            if hop.depth > 0 {
                let tier = hop.order.map(|o| format!(" order {o}")).unwrap_or_default();
                self.steps.push(format!("fallback {}{tier}", hop.name));
            }
            self.fallbacks = hop.depth;
            let first = primary_group.get_or_insert_with(|| target.group.to_owned());
            if first != target.group && !fallback_groups.iter().any(|g| g == target.group) {
                fallback_groups.push(target.group.to_owned());
            }
            let err = match self.with_retries(&hop.name, &target, hop.order).await {
                Ok(ok) => return Ok(ok),
                Err(e) => e,
            };
            let failure = Failure::of(&err);
            let hops = if self.attempts >= router.max_attempts || hop.depth >= router.max_fallbacks {
                Vec::new()
            } else {
                self.next_hops(&hop, &target, &err, failure.as_ref())
            };
            escalated |= hops.iter().any(|h| h.name == hop.name);
            primary.get_or_insert_with(|| err.clone());
            last = Some(err);
            stack.extend(hops.into_iter().rev());
        }
        let err = if escalated { last } else { primary };
        let err = err.unwrap_or_else(|| Error::Internal("no attempt was made".into()));
        let group = primary_group.unwrap_or_else(|| self.head.model.to_string());
        Err(explain_fallbacks(err, &group, &fallback_groups))
    }

    /// Where a failed hop goes next: its group's higher `order` tiers (when the group has several and the error
    /// is not about the prompt), then the configured fallbacks for the error kind.
    fn next_hops(&self, hop: &Hop, target: &router::Target<'_>, err: &Error, failure: Option<&Failure>) -> Vec<Hop> {
        let config = &self.exec.config;
        let router = &config.router;
        let prompt_problem = matches!(err, Error::ContextWindowExceeded(_))
            || failure.is_some_and(|f| f.context_window || f.class == ErrorClass::ContentPolicyViolation);
        if client_fault(err, failure) || self.head.controls.disable_fallbacks {
            return Vec::new();
        }
        let depth = hop.depth + 1;
        let mut hops = Vec::new();
        let tiers = router::order_tiers(config, target.members);
        if tiers.len() >= 2 && !prompt_problem {
            // The level just tried: cooldowns may already have moved the hop past its first tier.
            let current = self.last_tier.or(hop.order).or(tiers.first().copied()).unwrap_or(0);
            let name = &hop.name;
            hops.extend(tiers.iter().filter(|&&o| o > current).map(|&o| Hop {
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
        let client_list = self.head.controls.fallbacks.as_deref().filter(|_| hop.depth == 0 && lists.is_none());
        let targets: &[String] = match lists {
            // The request's own `fallbacks` replace the configured chain, as LiteLLM's per-call override.
            None if client_list.is_some() => client_list.unwrap_or(&[]),
            // A configured context-window/content list without an entry for this group: the original error.
            Some(list) => lookup(list, &hop.name, target.group).map(|v| v.as_slice()).unwrap_or(&[]),
            None => lookup(&router.fallbacks, &hop.name, target.group)
                .or_else(|| hop.via.as_deref().and_then(|via| lookup(&router.fallbacks, via, via)))
                .or_else(|| lookup(&router.fallbacks, "*", "*"))
                .map(|v| v.as_slice())
                .unwrap_or(&router.default_fallbacks),
        };
        hops.extend(targets.iter().map(|t| Hop { name: t.clone(), order: None, depth, via: None }));
        hops
    }

    /// Tries one group (or one of its order tiers) with LiteLLM's retry rules.
    async fn with_retries(
        &mut self,
        name: &str,
        target: &router::Target<'_>,
        order: Option<u32>,
    ) -> Result<(Response, usize), Error> {
        let exec = self.exec;
        let config = &exec.config;
        let router = &config.router;
        let latency_ttl = match router.routing_strategy {
            Strategy::LatencyBased { ttl, .. } => Some(ttl),
            _ => None,
        };
        let mut avoid: Vec<usize> = Vec::new();
        let mut last_err: Option<Error> = None;
        let mut queue_deadline: Option<Instant> = None;
        // Armed when every candidate was busy: wakes when a slot frees up.
        let mut freed = None;
        self.retries = 0;
        self.last_tier = None;
        // The `order` tier of this request's first failed attempt here: an answer from a higher tier is an order
        // escalation, counted in `x-litellm-attempted-fallbacks` whether the failure was a 5xx (which LiteLLM
        // escalates with a hop) or a refused connection (which takes the host out, so the retry lands higher).
        let mut failed_tier: Option<u32> = None;
        loop {
            if self.attempts >= router.max_attempts {
                return Err(last_err.unwrap_or_else(|| budget_error(router.max_attempts)));
            }
            let now = exec.state.now();
            let mut views = exec.state.snapshot(target.members, now, latency_ttl);
            exec.mark_host_loading(target.members, &mut views);
            let ask = router::Ask { prompt_tokens: self.prompt_tokens, target_order: order, avoid: &avoid };
            let pick = match router::pick(config, target, &ask, &views, now, &mut self.rng) {
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
                    if tokio::time::timeout_at(deadline.into(), armed.as_mut()).await.is_err() {
                        return Err(no_candidate_error(config, target.group, NoCandidate::AllBusy));
                    }
                    continue;
                }
                Err(none) => return Err(last_err.unwrap_or_else(|| no_candidate_error(config, target.group, none))),
            };
            let index = pick.deployment;
            let d = &config.deployments[index];
            let step = describe(name, target.group, &pick, &exec.labels[index].step);
            self.last_tier = self.last_tier.max(pick.tier);
            self.attempts += 1;
            let Some(model) = config.engine_model(d, name) else {
                return Err(Error::invalid(
                    format!("{} serves the wildcard {:?}: request a model name that matches it", d.id, d.model_name),
                    Some("model"),
                ));
            };
            // Before the attempt is counted anywhere: a link the client sent that cannot be fetched is its error.
            let inlined = match self.inline_images_for(d).await {
                Ok(body) => body,
                Err(e) => {
                    self.steps.push(format!("{step} failed: {}", short(&e)));
                    return Err(e);
                }
            };
            let guard = exec.state.start(index, self.prompt_tokens, now);
            let marked = exec.state.model_routed(index, &model, now);
            // A host that must load the model first gets the time loading took it before, and some, to answer.
            let load_cost = target.members.iter().position(|&m| m == index).and_then(|p| views[p].load_cost);
            let patience = load_cost.filter(|_| marked).and_then(|s| Duration::try_from_secs_f64(s * 1.5).ok());
            // A request that finds such a load still running waits for the same load: it gets what is left of that
            // time (and its first byte, neither cold nor warm, teaches nothing).
            let joined = if marked { None } else { exec.load_in_progress(index) };
            let started = Instant::now();
            let until = patience.map(|p| exec.load_started(index, started + p));
            let body = inlined.as_deref().unwrap_or(self.body);
            let call = Call { op: self.op, deployment: d, model: &model, body, head: self.head, native: self.native };
            let result = exec.attempt(call, guard, patience.or(joined)).await;
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
                        exec.state.record_first_byte(index, started.elapsed(), marked);
                    }
                    if marked {
                        // The engine may have evicted another model to load this one: look now rather than at
                        // the next probe (the seed probes every 15 minutes).
                        exec.reprobe(d.host, now);
                    }
                    exec.state.record_success(index, started.elapsed(), max_samples, now);
                    exec.state.host_answered(index, &model, now);
                    self.steps.push(step);
                    if let (Some(from), Some(to)) = (failed_tier, pick.tier) {
                        let passed = router::order_tiers(config, target.members)
                            .iter()
                            .filter(|&&t| t > from && t <= to)
                            .count();
                        self.fallbacks += u32::try_from(passed).unwrap_or(0);
                    }
                    return Ok((response, index));
                }
                Err(err) => err,
            };
            self.steps.push(format!("{step} failed: {}", short(&err)));
            failed_tier = failed_tier.or(pick.tier);
            let now = exec.state.now();
            if marked {
                exec.state.load_failed(index, &model, now);
            }
            let Some(failure) = Failure::of(&err) else { return Err(err) };
            let counts = exec.state.record_failure(index, now);
            if failure.connect {
                if let Some(host) = d.host {
                    // Every deployment on the host is skipped for a while, not just this one.
                    let window = router.cooldown_time.max(PASSIVE_DOWN_MIN);
                    let until = now.saturating_add(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
                    exec.state.host_unreachable(host, &short(&err), now, until);
                }
            }
            let has_fallbacks = lookup(&router.fallbacks, name, target.group).is_some();
            match policy::cooldown(router, d, target.members.len(), has_fallbacks, &failure, counts) {
                Cooldown::No => {}
                Cooldown::Now(t) => exec.state.cool_down(index, t, cooldown_tag(&failure), now),
                Cooldown::IfCountExceeds { key, allowed, duration } => {
                    if exec.state.count_allowed_fail(index, key, duration, now) > allowed {
                        exec.state.cool_down(index, duration, cooldown_tag(&failure), now);
                    }
                }
            }
            if matches!(failure.status, 401 | 403) {
                avoid.push(index);
            }
            let views = exec.state.snapshot(target.members, now, latency_ttl);
            let available = target
                .members
                .iter()
                .zip(&views)
                .filter(|(i, v)| !avoid.contains(i) && v.cooldown_until <= now)
                .count();
            let (allowed, from_policy) =
                policy::retries_for(router, target.group, d, &failure, self.head.controls.num_retries);
            last_err = Some(err);
            if self.retries >= allowed
                || !policy::should_retry(router, &failure, target.members.len(), available, from_policy)
            {
                return Err(last_err.unwrap_or_else(|| Error::Internal("lost an error".into())));
            }
            let wait = policy::backoff(router, &failure, self.retries, target.members.len(), available, self.rng.f64());
            self.retries += 1;
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
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

/// A connection failure cools down with tag 0, so a successful probe can lift it; others keep their status.
fn cooldown_tag(failure: &Failure) -> u16 {
    if failure.connect {
        0
    } else {
        failure.status
    }
}

/// The fallback list for a failed hop: keyed by the name the client sent (LiteLLM's rule), else by the group.
fn lookup<'l>(list: &'l [(String, Vec<String>)], name: &str, group: &str) -> Option<&'l Vec<String>> {
    list.iter().find(|(k, _)| k == name).or_else(|| list.iter().find(|(k, _)| k == group)).map(|(_, v)| v)
}

/// One route step: `<name> -> <group> -> <tier> -> model_list[i] @ <host>`, and what was skipped. Built by
/// appending: it is made for every request.
fn describe(name: &str, group: &str, pick: &router::Pick, label: &str) -> String {
    let mut step = String::with_capacity(name.len() + group.len() + label.len() + 32);
    for part in [name, " -> ", group, " -> "] {
        step.push_str(part);
    }
    match pick.tier {
        Some(order) => {
            step.push_str("order ");
            step.push_str(itoa::Buffer::new().format(order));
        }
        None => step.push_str("unordered"),
    }
    step.push_str(" -> ");
    step.push_str(label);
    if !pick.skipped.is_empty() {
        let skipped: Vec<String> = pick.skipped.iter().map(|(i, why)| format!("model_list[{i}] {why}")).collect();
        step.push_str(&format!(" (skipped {})", skipped.join(", ")));
    }
    step
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

/// One route step for a semantic router's decision.
fn describe_semantic(router: &str, choice: &semantic::Choice) -> String {
    match (choice.score, &choice.fallback_reason) {
        (Some(score), _) => format!("{router} (semantic) -> {} (similarity {score:.3})", choice.model),
        (None, Some(why)) => format!("{router} (semantic) -> default {} ({why})", choice.model),
        (None, None) => format!("{router} (semantic) -> {}", choice.model),
    }
}

/// One route step for a complexity decision, with each dimension's contribution.
fn describe_classification(router: &str, c: &Classification, chosen: &str) -> String {
    let parts: Vec<String> =
        c.dimensions.iter().filter(|d| d.raw != 0.0).map(|d| format!("{} {:+.3}", d.name, d.weight * d.raw)).collect();
    let why = if c.no_user_text {
        "no user text".to_owned()
    } else if c.reasoning_override {
        format!("reasoning override; {}", parts.join(", "))
    } else {
        parts.join(", ")
    };
    format!("{router} -> complexity {} score {:.3} [{why}] -> {chosen}", c.tier, c.score)
}

fn budget_error(max: u32) -> Error {
    Error::NoDeployments {
        message: format!("llmux: the request used its attempt budget (router_settings.max_attempts = {max})"),
        all_cooling_down: false,
        retry_after: 1,
    }
}

/// LiteLLM's texts for "nothing to try" (clients grep them).
fn no_candidate_error(config: &Config, group: &str, none: NoCandidate) -> Error {
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

impl Executor {
    /// Where a semantic router sends this request body. Never fails: without user text, or when an embedding
    /// call fails, the router's default model is the answer.
    async fn semantic_route(&self, router: &semantic::SemanticRouter, body: &[u8]) -> semantic::Choice {
        let messages = request_messages(body);
        let Some(text) = semantic::last_user_text(&messages) else { return router.fallback("no user text") };
        let vectors = match self.prepare_semantic(router).await {
            Ok(v) => v,
            Err(e) => return router.fallback(&e),
        };
        match self.embed(&router.embedding_model, &[text.as_str()]).await {
            Ok(mut v) if v.len() == 1 => router.choose(&v.remove(0), vectors),
            Ok(v) => router.fallback(&format!("the embedding model returned {} vectors for 1 input", v.len())),
            Err(e) => router.fallback(&format!("embedding the request failed: {e}")),
        }
    }

    /// A semantic router's utterance vectors, embedded the first time (once per config).
    async fn prepare_semantic<'r>(&self, router: &'r semantic::SemanticRouter) -> Result<&'r [Vec<Vec<f32>>], String> {
        let embed = || async {
            self.embed(&router.embedding_model, &router.utterances())
                .await
                .map_err(|e| format!("embedding the utterances failed: {e}"))
        };
        router.vectors(embed).await
    }

    /// Embeds every semantic router's utterances now, so the first request does not wait for it; a failure is
    /// logged and retried by the first request that needs them.
    pub async fn prepare_semantic_routers(&self) {
        for d in &self.config.deployments {
            if let crate::config::Target::AutoRouter { semantic: Some(router), .. } = &d.target {
                match self.prepare_semantic(router).await {
                    Ok(_) => tracing::info!(
                        "semantic router {}: {} utterances embedded",
                        d.model_name,
                        router.utterances().len()
                    ),
                    Err(e) => tracing::warn!("semantic router {}: {e}; retried on its first request", d.model_name),
                }
            }
        }
    }

    /// Embeds `inputs` with the model name `model`, through llmux's own routing (order, health, fallbacks).
    async fn embed(&self, model: &str, inputs: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        #[derive(serde::Deserialize)]
        struct Embeddings {
            data: Vec<Item>,
        }
        #[derive(serde::Deserialize)]
        struct Item {
            embedding: Vec<f32>,
            #[serde(default)]
            index: usize,
        }
        let body =
            serde_json::to_vec(&serde_json::json!({"model": model, "input": inputs})).map_err(|e| e.to_string())?;
        let head = RequestHead::parse(&body, Operation::Embeddings).map_err(|e| e.to_string())?;
        // Boxed: this request runs through `execute`, which may reach a semantic router again.
        let response = Box::pin(self.execute(Operation::Embeddings, &body, &head)).await;
        let status = response.status();
        let bytes = http_body_util::Limited::new(response.into_body(), 64 * 1024 * 1024)
            .collect()
            .await
            .map_err(|e| format!("reading the embeddings: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "{model} answered {status}: {}",
                String::from_utf8_lossy(&bytes).chars().take(200).collect::<String>()
            ));
        }
        let mut parsed: Embeddings =
            serde_json::from_slice(&bytes).map_err(|e| format!("unreadable embeddings: {e}"))?;
        parsed.data.sort_by_key(|item| item.index);
        Ok(parsed.data.into_iter().map(|item| item.embedding).collect())
    }

    /// Deployment `index` was sent a request that loads its model, allowed to take until `until`.
    fn load_started(&self, index: usize, until: Instant) -> Instant {
        self.loading.lock().unwrap_or_else(|e| e.into_inner()).insert(index, until);
        until
    }

    /// The request that set off the load on deployment `index` (allowed until `until`) got its answer or failed.
    fn load_awaited(&self, index: usize, until: Instant) {
        let mut loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        if loading.get(&index) == Some(&until) {
            loading.remove(&index);
        }
    }

    /// Marks the views of `members` whose host is busy with a load llmux set off for another model (still
    /// awaited), so routing keeps other models off it meanwhile.
    fn mark_host_loading(&self, members: &[usize], views: &mut [router::DeploymentView]) {
        let loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        if loading.is_empty() {
            return;
        }
        let now = Instant::now();
        let deployments = &self.config.deployments;
        let model = |i: usize| deployments.get(i).and_then(|d| d.engine()).map(|e| e.upstream_model.as_str());
        for (&i, view) in members.iter().zip(views.iter_mut()) {
            let Some(host) = deployments.get(i).and_then(|d| d.host) else { continue };
            view.host_loading |= loading.iter().any(|(&j, until)| {
                *until > now && deployments.get(j).and_then(|d| d.host) == Some(host) && model(j) != model(i)
            });
        }
    }

    /// How much longer the load llmux set off on deployment `index` may take, while one is awaited.
    fn load_in_progress(&self, index: usize) -> Option<Duration> {
        let loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        loading.get(&index).map(|until| until.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
    }

    /// Probes `host` in the background if it is an Ollama or LM Studio host (which tell what is loaded, and so
    /// what a load evicted) and was not re-probed in the last two seconds.
    fn reprobe(&self, host: Option<usize>, now: u64) {
        let tells = |h: &crate::config::Host| h.ollama_base.is_some() || h.lm_studio;
        let Some(host) = host.filter(|&h| self.config.hosts.get(h).is_some_and(tells)) else {
            return;
        };
        if !self.state.claim_reprobe(host, now, 2_000) {
            return;
        }
        let (config, state, client) = (self.config.clone(), self.state.clone(), self.client.clone());
        tokio::spawn(async move { crate::health::probe_hosts(&config, &state, &client, std::iter::once(host)).await });
    }

    /// One call to one deployment. `guard` keeps it counted in flight until the answer is complete (for a
    /// stream: until its body ends or the client goes away); `load_time` is how long the engine may take to
    /// answer at all because it must load the model first.
    async fn attempt(
        &self,
        call: Call<'_>,
        guard: Option<OwnedInFlight>,
        load_time: Option<Duration>,
    ) -> Result<Response, Error> {
        let Call { deployment, head, .. } = call;
        let engine = deployment
            .engine()
            .ok_or_else(|| Error::Internal(format!("deployment {} has no engine", deployment.id)))?;
        let provider: &dyn Provider = engine.adapter().provider();
        let native = provider.native(&call);
        let upstream = provider.build_request(&call)?;
        let request = upstream.into_http();

        let router = &self.config.router;
        let asked = |secs: Option<f64>| secs.and_then(|s| Duration::try_from_secs_f64(s).ok());
        let total = asked(head.controls.timeout).or(deployment.timeout).or(router.timeout).unwrap_or(DEFAULT_TIMEOUT);
        let stream_timeout = asked(head.controls.stream_timeout)
            .or(deployment.stream_timeout)
            .or(router.stream_timeout)
            .unwrap_or(total);
        let first_byte = if head.stream { stream_timeout } else { total };
        // Never give up on a cold host before it had the time a load took it before.
        let first_byte = first_byte.max(load_time.unwrap_or_default());
        let started = Instant::now();
        let response = match tokio::time::timeout(first_byte, crate::upstream::send(&self.client, request)).await {
            Err(_) => {
                return Err(Error::Timeout(format!("engine at {} did not answer within {first_byte:?}", engine.host())))
            }
            Ok(Err(e)) => return Err(Error::Connect(connect_message(engine.host(), &e))),
            Ok(Ok(r)) => r,
        };
        let (parts, incoming) = response.into_parts();
        if !parts.status.is_success() {
            let remaining = total.saturating_sub(started.elapsed()).min(ERROR_BODY_TIMEOUT);
            let (bytes, cut) = error_excerpt(incoming, remaining).await;
            let mut err = provider.convert_error(parts.status, &parts.headers, &bytes);
            if cut {
                if let Error::Upstream { message, .. } = &mut err {
                    message.push_str(&format!(" [llmux: the engine's error body was cut at {MAX_ERROR_BODY} bytes]"));
                }
            }
            return Err(err);
        }
        if head.stream {
            let converter = provider.stream_converter(&call);
            let content_type = match &converter {
                Some(_) if native => HeaderValue::from_static("application/x-ndjson"),
                Some(_) => HeaderValue::from_static("text/event-stream"),
                None => {
                    parts.headers.get(CONTENT_TYPE).cloned().unwrap_or(HeaderValue::from_static("text/event-stream"))
                }
            };
            // The first chunk is awaited here, within the first-byte time: the client then gets the head and
            // that chunk in one write, and an engine that fails before it can still be failed over.
            let mut incoming = incoming;
            let deadline = tokio::time::Instant::from_std(started) + first_byte;
            let first = match tokio::time::timeout_at(deadline, incoming.frame()).await {
                Err(_) => {
                    let host = engine.host();
                    return Err(Error::Timeout(format!("engine at {host} sent no first chunk within {first_byte:?}")));
                }
                Ok(Some(Err(e))) => {
                    let host = engine.host();
                    return Err(Error::BadUpstreamResponse(format!(
                        "engine at {host} ended its stream before it began: {e}"
                    )));
                }
                Ok(Some(Ok(frame))) => Some(frame),
                Ok(None) => None,
            };
            let framing = if native { Framing::Ndjson } else { Framing::Sse };
            let stream =
                sse_stream(incoming, first, converter, stream_timeout, engine.host().to_owned(), guard, framing);
            let mut response = answer(Body::from_stream(stream), content_type);
            response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            if native {
                response.extensions_mut().insert(NativeAnswer);
            }
            return Ok(response);
        }
        let deadline = tokio::time::Instant::from_std(started) + total;
        if !native && provider.answer_unchanged(&call) {
            // Nothing to look inside: the answer goes through as it arrives, never held whole. Its first bytes
            // are awaited here, so an engine that fails before them can still be failed over.
            let content_type = parts.headers.get(CONTENT_TYPE).cloned();
            let body = PassBody::start(incoming, deadline, guard, engine.host()).await?;
            let content_type = content_type.unwrap_or(HeaderValue::from_static("application/json"));
            return Ok(answer(Body::new(body), content_type));
        }
        let limit = self.config.limits.max_answer_bytes;
        let (bytes, permit) = collect(incoming, deadline, engine, limit, &self.buffered).await?;
        let converted = provider.convert_response(&call, bytes)?;
        drop(permit);
        if let Some(guard) = &guard {
            guard.served();
            if let Some(load) = converted.load_duration {
                guard.loaded(load);
            }
        }
        // The converted answer stays counted until it has been sent.
        let held = self.hold(converted.body.len())?;
        let body = Held { body: http_body_util::Full::new(converted.body), _permit: held };
        let mut response = answer(Body::new(body), HeaderValue::from_static("application/json"));
        if native {
            response.extensions_mut().insert(NativeAnswer);
        }
        Ok(response)
    }
}

/// The SSE comment sent while a stream waits for its first byte (clients ignore comment lines).
const KEEPALIVE_COMMENT: &[u8] = b": keep-alive\n\n";

/// Serves a streamed request, answering 200 early with SSE keep-alive comments when no engine has started to
/// answer within `interval` (a cold model load can take a minute; reverse proxies cut idle connections sooner).
/// Failover still happens behind the comments; if every attempt fails, the stream ends with an SSE error event.
pub async fn execute_with_keepalive(exec: Arc<Executor>, op: Operation, body: Bytes, interval: Duration) -> Response {
    let mut run = Box::pin(async move {
        match RequestHead::parse(&body, op) {
            Ok(head) => exec.execute(op, &body, &head).await,
            Err(e) => axum::response::IntoResponse::into_response(e),
        }
    });
    tokio::select! {
        response = &mut run => return response,
        _ = tokio::time::sleep(interval) => {}
    }
    enum Phase<F> {
        Waiting(std::pin::Pin<Box<F>>),
        Streaming(axum::body::BodyDataStream),
        Done,
    }
    let stream = futures_util::stream::unfold(Phase::Waiting(run), move |phase| async move {
        match phase {
            Phase::Waiting(mut run) => {
                tokio::select! {
                    response = &mut run => {
                        let (parts, body) = response.into_parts();
                        if parts.status.is_success() {
                            // The headers went out with the first keep-alive: which deployment answered is said in
                            // a comment before the first chunk (clients ignore it; curl and logs show it).
                            let named = named_deployment(&parts.headers);
                            let mut data = body.into_data_stream();
                            match data.next().await {
                                Some(Ok(chunk)) => {
                                    let mut first = BytesMut::with_capacity(named.len() + chunk.len());
                                    first.extend_from_slice(&named);
                                    first.extend_from_slice(&chunk);
                                    Some((Ok::<Bytes, std::io::Error>(first.freeze()), Phase::Streaming(data)))
                                }
                                Some(Err(e)) => Some((Err(std::io::Error::other(e)), Phase::Done)),
                                None => None,
                            }
                        } else {
                            // The JSON error body becomes the stream's terminal error event.
                            let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                            let json = if bytes.is_empty() { Bytes::from_static(b"{}") } else { bytes };
                            let mut event = BytesMut::with_capacity(json.len() + 32);
                            event.extend_from_slice(b"data: ");
                            event.extend_from_slice(&json);
                            event.extend_from_slice(b"\n\n");
                            event.extend_from_slice(crate::providers::SSE_DONE);
                            Some((Ok(event.freeze()), Phase::Done))
                        }
                    }
                    _ = tokio::time::sleep(interval) => Some((Ok(Bytes::from_static(KEEPALIVE_COMMENT)), Phase::Waiting(run))),
                }
            }
            Phase::Streaming(mut data) => match data.next().await {
                Some(Ok(chunk)) => Some((Ok(chunk), Phase::Streaming(data))),
                Some(Err(e)) => Some((Err(std::io::Error::other(e)), Phase::Done)),
                None => None,
            },
            Phase::Done => None,
        }
    });
    let body = futures_util::stream::once(async { Ok(Bytes::from_static(KEEPALIVE_COMMENT)) }).chain(stream);
    let mut response = Response::new(Body::from_stream(body));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The SSE comment naming the deployment that answered a stream whose headers were already sent (empty when
/// none is known), also logged since no response header can carry it.
fn named_deployment(headers: &HeaderMap) -> Bytes {
    let Some(deployment) = headers.get(X_LLMUX_DEPLOYMENT).and_then(|v| v.to_str().ok()) else {
        return Bytes::new();
    };
    let route = headers.get(X_LLMUX_ROUTE).and_then(|v| v.to_str().ok()).unwrap_or("");
    tracing::info!(deployment, route, "stream answered after keep-alive comments");
    Bytes::from(format!(": x-llmux-deployment: {deployment}\n\n"))
}

/// An engine's answer for the client, its header map made big enough for what [`Executor::execute`] adds
/// (growing it is a rehash).
fn answer(body: Body, content_type: HeaderValue) -> Response {
    let mut headers = HeaderMap::with_capacity(12);
    headers.insert(CONTENT_TYPE, content_type);
    let mut response = Response::new(body);
    *response.headers_mut() = headers;
    response
}

/// A count header's value.
fn count(n: u32) -> HeaderValue {
    if n == 0 {
        HeaderValue::from_static("0")
    } else {
        HeaderValue::from(n)
    }
}

fn put(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if value.is_empty() {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

fn short(err: &Error) -> String {
    let text = err.to_string();
    let mut s: String = text.chars().take(120).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    format!("{} {}", err.status().as_u16(), s.replace(['\r', '\n'], " "))
}

fn connect_message(host: &str, err: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error as _;
    let mut cause = String::new();
    let mut source = err.source();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    let what = if err.is_connect() { "could not connect to" } else { "lost the connection to" };
    let text =
        if cause.is_empty() { format!("{what} engine at {host}") } else { format!("{what} engine at {host}: {cause}") };
    crate::redact::redact(&text)
}

impl Executor {
    /// `bytes` of the buffered-answer budget, or the 503 that says it is spent.
    fn hold(&self, bytes: usize) -> Result<tokio::sync::OwnedSemaphorePermit, Error> {
        let n = u32::try_from(bytes).unwrap_or(u32::MAX);
        self.buffered.clone().try_acquire_many_owned(n).map_err(|_| over_budget(&self.config))
    }
}

/// The 503 for a request whose answer would take llmux over its budget of buffered answers.
fn over_budget(config: &Config) -> Error {
    Error::Overloaded(format!(
        "llmux is holding as many engine answers as it may ({} MiB, llmux_settings.server.max_buffered_mb); try again shortly",
        config.limits.max_buffered_bytes / (1024 * 1024)
    ))
}

/// The error for an answer over `limit` bytes: the engine's fault, but not a lost connection (which would take
/// the host out of rotation).
fn too_large(engine: &EngineTarget, limit: usize) -> Error {
    Error::BadUpstreamResponse(format!(
        "engine answer larger than {limit} bytes (engine at {}; general_settings.max_response_size_mb)",
        engine.host()
    ))
}

/// Reads a whole engine answer by `deadline`, within `limit` bytes and the shared `budget` of buffered bytes
/// (held by the returned permit until the caller drops it). Stops reading as soon as either is exceeded.
async fn collect(
    mut body: Incoming,
    deadline: tokio::time::Instant,
    engine: &EngineTarget,
    limit: usize,
    budget: &Arc<tokio::sync::Semaphore>,
) -> Result<(Bytes, tokio::sync::OwnedSemaphorePermit), Error> {
    use http_body::Body as _;
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large(engine, limit));
    }
    let over = |engine: &EngineTarget| {
        Error::Overloaded(format!(
            "llmux is holding as many engine answers as it may (llmux_settings.server.max_buffered_mb); the answer of engine at {} was not read",
            engine.host()
        ))
    };
    let mut permit = budget.clone().try_acquire_many_owned(0).map_err(|_| over(engine))?;
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut total = 0usize;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err(Error::Timeout(format!("engine at {} did not finish its answer in time", engine.host())))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(Error::Connect(format!("reading the answer of engine at {} failed: {e}", engine.host())))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        total += data.len();
        if total > limit {
            return Err(too_large(engine, limit));
        }
        let more = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let Ok(extra) = budget.clone().try_acquire_many_owned(more) else { return Err(over(engine)) };
        permit.merge(extra);
        match (&mut joined, first.take()) {
            (Some(joined), _) => joined.extend_from_slice(&data),
            (None, None) => first = Some(data),
            (None, Some(head)) => {
                let mut buf = BytesMut::with_capacity(head.len() + data.len());
                buf.extend_from_slice(&head);
                buf.extend_from_slice(&data);
                joined = Some(buf);
            }
        }
    }
    let bytes = match joined {
        Some(joined) => joined.freeze(),
        None => first.unwrap_or_default(),
    };
    Ok((bytes, permit))
}

/// The first [`MAX_ERROR_BODY`] bytes of an engine's error body, read within `timeout` (what came by then, on a
/// timeout or a broken body), and whether there was more. The rest is never read: the connection is dropped.
async fn error_excerpt(mut body: Incoming, timeout: Duration) -> (Bytes, bool) {
    use http_body::Body as _;
    let mut out = BytesMut::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut cut = false;
    while out.len() < MAX_ERROR_BODY {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else { continue };
                let room = MAX_ERROR_BODY - out.len();
                cut |= data.len() > room;
                out.extend_from_slice(&data[..data.len().min(room)]);
            }
            Ok(None) => return (out.freeze(), cut),
            // What came is the message; a body that broke off or dribbles is not waited for.
            Ok(Some(Err(_))) | Err(_) => return (out.freeze(), !body.is_end_stream()),
        }
    }
    // Full: there is more unless the body says it ended.
    cut |= !body.is_end_stream();
    (out.freeze(), cut)
}

/// A whole answer that keeps its share of the buffered-answer budget until it has been sent.
struct Held {
    body: http_body_util::Full<Bytes>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A non-streamed answer passed through as the engine sends it: within the request's deadline, the
/// deployment counted in flight until its last byte (then told it was served). A failure after the first byte
/// can only end the client's response early, as with a stream.
struct PassBody {
    incoming: Incoming,
    first: Option<http_body::Frame<Bytes>>,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    guard: Option<OwnedInFlight>,
    host: String,
    done: bool,
}

impl PassBody {
    /// Waits for the first frame (before the deadline) and returns the body that serves it and the rest.
    async fn start(
        mut incoming: Incoming,
        deadline: tokio::time::Instant,
        guard: Option<OwnedInFlight>,
        host: &str,
    ) -> Result<PassBody, Error> {
        let first = match tokio::time::timeout_at(deadline, incoming.frame()).await {
            Err(_) => return Err(Error::Timeout(format!("engine at {host} did not finish its answer in time"))),
            Ok(Some(Err(e))) => {
                return Err(Error::Connect(format!("reading the answer of engine at {host} failed: {e}")))
            }
            Ok(Some(Ok(frame))) => Some(frame),
            Ok(None) => None,
        };
        let mut body = PassBody {
            incoming,
            first,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            guard,
            host: host.to_owned(),
            done: false,
        };
        if body.first.is_none() {
            body.finished();
        }
        Ok(body)
    }

    fn finished(&mut self) {
        self.done = true;
        if let Some(guard) = self.guard.take() {
            guard.served();
        }
    }
}

impl http_body::Body for PassBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::future::Future as _;
        use std::task::Poll;
        let this = &mut *self;
        if let Some(frame) = this.first.take() {
            if this.incoming.is_end_stream() {
                this.finished();
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.done = true;
            tracing::warn!("engine at {} did not finish its answer in time; the answer is cut", this.host);
            return Poll::Ready(Some(Err(std::io::Error::other("engine answer timed out"))));
        }
        match std::pin::Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.finished();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if this.incoming.is_end_stream() {
                    this.finished();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                tracing::warn!("engine at {} broke off its answer after it began: {e}", this.host);
                Poll::Ready(Some(Err(std::io::Error::other(e))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.first.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let first = self.first.as_ref().and_then(|f| f.data_ref()).map_or(0, |d| d.len() as u64);
        let rest = self.incoming.size_hint();
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(rest.lower() + first);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + first);
        }
        hint
    }
}

/// How a stream's events are framed, and so how a failure after its start is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// OpenAI's SSE: `data: {"error": …}` then `[DONE]`.
    Sse,
    /// An engine's own NDJSON passed through (Ollama's): a last `{"error": "…"}` line, as Ollama ends a failed one.
    Ndjson,
}

/// The line that ends a failed NDJSON stream.
fn ndjson_error(err: &Error) -> Bytes {
    let mut line = serde_json::to_vec(&err.body_in(crate::error::Dialect::Ollama)).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

struct StreamState {
    body: Incoming,
    /// A frame read before the stream was handed over, served first.
    first: Option<http_body::Frame<Bytes>>,
    /// Keeps the deployment counted in flight while the stream lasts; told when it was served whole.
    guard: Option<OwnedInFlight>,
    converter: Option<Box<dyn StreamConverter>>,
    idle: Duration,
    host: String,
    out: BytesMut,
    done: bool,
    framing: Framing,
}

/// The client's stream: each engine chunk is forwarded (or converted) as soon as it arrives. A failure after
/// the first byte ends the stream with an SSE error event and `[DONE]`.
fn sse_stream(
    body: Incoming,
    first: Option<http_body::Frame<Bytes>>,
    converter: Option<Box<dyn StreamConverter>>,
    idle: Duration,
    host: String,
    guard: Option<OwnedInFlight>,
    framing: Framing,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let state = StreamState { body, first, guard, converter, idle, host, out: BytesMut::new(), done: false, framing };
    futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            let next = match s.first.take() {
                Some(frame) => Ok(Some(Ok(frame))),
                None => tokio::time::timeout(s.idle, s.body.frame()).await,
            };
            let frame: Result<(), Error> = match next {
                Err(_) => Err(Error::Timeout(format!("engine at {} sent nothing for {:?}", s.host, s.idle))),
                Ok(None) => {
                    s.done = true;
                    if let Some(guard) = &s.guard {
                        guard.served();
                        if let Some(load) = s.converter.as_ref().and_then(|c| c.load_duration()) {
                            guard.loaded(load);
                        }
                    }
                    let conv = s.converter.as_mut()?;
                    match conv.finish(&mut s.out) {
                        Ok(()) => return (!s.out.is_empty()).then(|| (Ok(s.out.split().freeze()), s)),
                        Err(e) => Err(e),
                    }
                }
                Ok(Some(Err(e))) => Err(Error::Connect(format!("engine at {} broke off the stream: {e}", s.host))),
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Err(_) => continue,
                    Ok(data) => match s.converter.as_mut() {
                        None => return Some((Ok(data), s)),
                        Some(conv) => match conv.feed(&data, &mut s.out) {
                            Ok(()) if s.out.is_empty() => continue,
                            Ok(()) => return Some((Ok(s.out.split().freeze()), s)),
                            Err(e) => Err(e),
                        },
                    },
                },
            };
            if let Err(err) = frame {
                tracing::warn!("stream from {} failed after it started: {err}", s.host);
                s.done = true;
                let mut bytes = s.out.split();
                match s.framing {
                    Framing::Sse => bytes.extend_from_slice(&err.sse_event()),
                    Framing::Ndjson => bytes.extend_from_slice(&ndjson_error(&err)),
                }
                return Some((Ok(bytes.freeze()), s));
            }
        }
    })
}
