//! Health: one cheap probe per engine host per interval, never a generation (a probe must not load a model and
//! evict a warm one). Each engine family is asked what it has and what it holds loaded, in its own words:
//! Ollama (`/api/tags`, `/api/ps`, `/api/show` once per model), LM Studio (its model list with load state),
//! llama.cpp (`/v1/models` with `meta`, `/slots`) and any other OpenAI-compatible engine (`/models`). Results
//! feed routing through [`State`], together with what live traffic shows (a refused connection takes the host out
//! at once; an answer brings it back). A deployment may opt into a real generation probe
//! ([`generation`], LiteLLM's `health_check_model`).

mod generation;
mod lm_studio;
mod ollama;
mod openai;
mod placement;
pub mod wake;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;

use crate::config::{Config, Host};
use crate::providers::profile::ProbeKind;
use crate::state::{same_model, HostIx, ProbeOutcome, State};
use crate::upstream::HttpClient;

pub use ollama::{preload, preload_pinned};
pub use placement::{placement, AssignedModel, Placement};

/// Largest probe answer read.
const MAX_PROBE_BODY: usize = 8 * 1024 * 1024;

/// Probes every host now and then every `interval` (or at once when [`Rounds::run_now`] asks), until the task is
/// aborted (a reload starts the new config's loop).
pub async fn run(config: Arc<Config>, state: Arc<State>, client: HttpClient, interval: Duration, rounds: Arc<Rounds>) {
    let probed = config.hosts.iter().filter(|h| !h.probe_disabled).count();
    let generations = config.deployments.iter().filter(|d| d.health_check.is_some()).count();
    tracing::info!("background health checks: {probed} hosts and {generations} generation probes every {interval:?}");
    loop {
        rounds.started.fetch_add(1, Ordering::SeqCst);
        probe_all(&config, &state, &client).await;
        rounds.finished.send_modify(|n| *n += 1);
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = rounds.asked.notified() => {}
        }
    }
}

/// The health loop's timing seam: a round starts when the interval has passed or when someone asks for one now
/// (`POST /llmux/health/round`: a test, or an operator who wants a fresh view), and whoever asked can wait for
/// that round to finish instead of sleeping through an interval.
#[derive(Debug)]
pub struct Rounds {
    asked: tokio::sync::Notify,
    started: AtomicU64,
    finished: tokio::sync::watch::Sender<u64>,
}

impl Default for Rounds {
    fn default() -> Self {
        Rounds {
            asked: tokio::sync::Notify::new(),
            started: AtomicU64::new(0),
            finished: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Rounds {
    /// Asks the loop for a round now and waits until a round that began after the ask has finished (one under way
    /// finishes first: it may have read a host before the caller changed it). Returns how many rounds have
    /// finished. Waits for ever when no loop runs: callers bound it.
    pub async fn run_now(&self) -> u64 {
        let mut finished = self.finished.subscribe();
        let target = self.started.load(Ordering::SeqCst) + 1;
        self.asked.notify_one();
        let done = finished.wait_for(|n| *n >= target).await.map(|n| *n);
        done.unwrap_or(target)
    }
}

/// Probes every host once, concurrently, and records the results; then sends the generation probes of the
/// deployments that opted in, on hosts that answered.
pub async fn probe_all(config: &Config, state: &State, client: &HttpClient) {
    probe_hosts(config, state, client, 0..config.hosts.len()).await;
    generation::probe_deployments(config, state, client).await;
}

/// How long a failed probe keeps what it found: with health-check routing off, results are only reported and
/// never gate routing.
fn stale_after(config: &Config) -> Duration {
    if config.general.health_check_routing {
        config.general.health_check_staleness
    } else {
        Duration::ZERO
    }
}

/// Probes the hosts with these indices once, concurrently, and records the results.
pub async fn probe_hosts(config: &Config, state: &State, client: &HttpClient, hosts: impl Iterator<Item = usize>) {
    let stale_after = stale_after(config);
    let checks = hosts
        .filter_map(|i| config.hosts.get(i).map(|h| (i, h)))
        .filter(|(_, h)| !h.probe_disabled)
        .map(|(i, host)| async move { (i, probe(config, host, client, state, i).await) });
    for (i, outcome) in futures_util::future::join_all(checks).await {
        let host = &config.hosts[i];
        if let Some(why) = &outcome.failure {
            // A box that sleeps is expected not to answer: said once when it goes, not at every probe.
            if !(host.wake.is_some() && outcome.unreachable) {
                tracing::warn!("health check of {} failed: {why}", host.origin);
            } else if !state.asleep(HostIx(i)) {
                tracing::info!("{} does not answer ({why}): asleep until a request needs it", host.origin);
            }
        }
        let hold = if outcome.unreachable { unreachable_hold(config) } else { stale_after };
        state.probe_result(HostIx(i), &host.deployments, outcome, state.now(), hold);
    }
}

/// How long a probe that could not reach a host keeps it out of routing: whatever `enable_health_check_routing`
/// says (an unreachable host cannot answer a request either), until a re-probe finds it back.
fn unreachable_hold(config: &Config) -> Duration {
    config.general.health_check_staleness.max(UNREACHABLE_MIN_HOLD)
}

/// The shortest time an unreachable host stays out; the re-probe loop brings it back sooner when it answers.
const UNREACHABLE_MIN_HOLD: Duration = Duration::from_secs(30);
/// The first re-probe of a host found unreachable comes this soon …
const RECHECK_FIRST: Duration = Duration::from_secs(1);
/// … and the gap grows by half each time it is still down, to at most this: a host that answers again is
/// back in routing within it, and a refused connect every few seconds costs nothing.
const RECHECK_MAX: Duration = Duration::from_secs(3);

/// The gap before the next re-probe of a host that is still unreachable after one `gap` ago.
fn next_recheck(gap: Duration) -> Duration {
    (gap + gap / 2).min(RECHECK_MAX)
}

/// Whether a probe failure is an HTTP answer (an error status, an unreadable or cut-short body): the host is
/// reachable, which only `enable_health_check_routing` turns into "out of routing". Everything else (refused,
/// reset, DNS, no answer within the probe timeout) proves it unreachable.
pub fn answered_over_http(failure: &str) -> bool {
    failure.starts_with("status ")
        || failure.starts_with("unreadable answer")
        || failure == ANSWER_CUT_SHORT
        || failure == NO_ENDPOINT
}

/// A probe's failure text when the engine sent a status line but not its body.
const ANSWER_CUT_SHORT: &str = "the answer did not arrive";
/// A host with nothing to probe (a config matter, not a dead host).
const NO_ENDPOINT: &str = "no engine endpoint";

/// Re-probes `host`, ejected because it could not be reached, about every second and backing off to
/// [`RECHECK_MAX`] while it stays down, so it is back in rotation within seconds of answering again without a
/// client request paying for the check. Ends when the host answers (a probe's or a request's success lifts the
/// ejection) or when `state` is gone (a reload's new state runs its own loop).
pub async fn recheck_unreachable(config: Arc<Config>, state: std::sync::Weak<State>, client: HttpClient, host: usize) {
    let mut gap = RECHECK_FIRST;
    loop {
        tokio::time::sleep(gap).await;
        let Some(state) = state.upgrade() else { return };
        if !state.unreachable_now(HostIx(host), state.now()) {
            state.recheck_ended(HostIx(host));
            return;
        }
        let Some(h) = config.hosts.get(host) else {
            state.recheck_ended(HostIx(host));
            return;
        };
        if h.probe_disabled {
            // No probe for this host: a TCP connect is the cheapest proof that it is back.
            if connects(&h.origin, h.probe_timeout).await {
                let back = ProbeOutcome::default();
                state.probe_result(HostIx(host), &h.deployments, back, state.now(), Duration::ZERO);
            }
        } else {
            probe_hosts(&config, &state, &client, std::iter::once(host)).await;
        }
        if !state.unreachable_now(HostIx(host), state.now()) {
            tracing::info!("{} answers again: back in routing", h.origin);
            state.recheck_ended(HostIx(host));
            return;
        }
        gap = next_recheck(gap);
    }
}

/// Whether a TCP connection to the host of `origin` (`scheme://host:port`) opens within `timeout`.
async fn connects(origin: &str, timeout: Duration) -> bool {
    let Ok(uri) = origin.parse::<http::Uri>() else { return false };
    let Some(host) = uri.host().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned()) else {
        return false;
    };
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
    matches!(tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port))).await, Ok(Ok(_)))
}

/// One probe of one host (index `at` in `config.hosts`): the engine's model list, what it holds loaded, and
/// facts about models not seen before.
pub async fn probe(config: &Config, host: &Host, client: &HttpClient, state: &State, at: usize) -> ProbeOutcome {
    let started = Instant::now();
    let probe = Probe {
        client,
        authorization: host.authorization(),
        timeout: host.probe_timeout,
        transient_ok: config.general.health_check_ignore_transient_errors,
    };
    let found = match (&host.probe_base, host.profile.probe) {
        (Some(base), ProbeKind::Ollama) => {
            ollama::probe(&probe, config, host, base, state.model_facts(HostIx(at))).await
        }
        (Some(base), ProbeKind::LmStudio) => match lm_studio::probe(&probe, host).await {
            Some(found) => found,
            None => openai::probe(&probe, config, host, base).await,
        },
        (Some(base), ProbeKind::OpenAiModels) => openai::probe(&probe, config, host, base).await,
        (None, _) => Err(NO_ENDPOINT.to_owned()),
    };
    let latency = started.elapsed();
    match found {
        Err(failure) => {
            let unreachable = !answered_over_http(&failure);
            ProbeOutcome { failure: Some(failure), unreachable, latency, ..ProbeOutcome::default() }
        }
        Ok(found) if found.loading => ProbeOutcome { latency, ..found },
        Ok(found) => {
            let missing = missing(config, host, &found.available);
            ProbeOutcome { latency, missing, ..found }
        }
    }
}

/// Configured models the engine does not list (none when it lists nothing: it cannot say). A wildcard
/// deployment serves whatever the engine lists.
fn missing(config: &Config, host: &Host, available: &[String]) -> Vec<String> {
    let mut missing: Vec<String> = Vec::new();
    if available.is_empty() {
        return missing;
    }
    for &i in &host.deployments {
        let Some(engine) = config.deployments[i].engine() else { continue };
        let model = &engine.upstream_model;
        if !model.contains('*') && !available.iter().any(|a| same_model(a, model)) && !missing.contains(model) {
            missing.push(model.clone());
        }
    }
    missing
}

/// How one probe talks to its host.
#[derive(Clone)]
struct Probe<'a> {
    client: &'a HttpClient,
    /// The host's `Authorization` value (basic auth from its URL, else its key as a bearer token).
    authorization: Option<http::HeaderValue>,
    timeout: Duration,
    /// `health_check_ignore_transient_errors`: 429 and 408 count as "up, nothing learned".
    transient_ok: bool,
}

impl Probe<'_> {
    /// GETs and decodes a probe URL; 5xx, time-outs and connection failures are failures (429/408 too, unless
    /// transient errors are ignored, in which case the host counts as up with nothing learned).
    async fn get<T: for<'de> Deserialize<'de> + Default>(&self, url: &str) -> Result<T, String> {
        self.get_answer(url).await.map(Option::unwrap_or_default)
    }

    /// As [`Probe::get`], with `None` for an ignored transient error, where an empty answer would mislead.
    async fn get_answer<T: for<'de> Deserialize<'de>>(&self, url: &str) -> Result<Option<T>, String> {
        self.send(Request::get(url), Bytes::new()).await
    }

    /// POSTs a JSON body and decodes the answer; `None` for an ignored transient error (see [`Probe::get`]).
    async fn post_answer<T: for<'de> Deserialize<'de>>(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<Option<T>, String> {
        let request = Request::post(url).header(http::header::CONTENT_TYPE, "application/json");
        self.send(request, Bytes::from(body.to_string())).await
    }

    async fn send<T: for<'de> Deserialize<'de>>(
        &self,
        mut request: http::request::Builder,
        body: Bytes,
    ) -> Result<Option<T>, String> {
        if let Some(value) = &self.authorization {
            request = request.header(http::header::AUTHORIZATION, value.clone());
        }
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        let timeout = self.timeout;
        let response = match tokio::time::timeout(timeout, self.client.request(request)).await {
            Err(_) => return Err(format!("no answer within {timeout:?}")),
            Ok(Err(e)) => {
                use std::error::Error as _;
                let cause = e.source().map(|s| s.to_string()).unwrap_or_else(|| e.to_string());
                return Err(crate::redact::redact(&cause));
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if matches!(status.as_u16(), 408 | 429) && self.transient_ok {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(format!("status {status}"));
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_PROBE_BODY);
        let bytes = match tokio::time::timeout(timeout, body.collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            _ => return Err(ANSWER_CUT_SHORT.to_owned()),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("unreadable answer: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_failure_without_an_http_answer_proves_a_host_unreachable() {
        for http in
            ["status 400 Bad Request", "status 503 Service Unavailable", "unreadable answer: EOF", ANSWER_CUT_SHORT]
        {
            assert!(answered_over_http(http), "{http}");
        }
        for dead in ["Connection refused (os error 111)", "no answer within 5s", "dns error: failed to lookup"] {
            assert!(!answered_over_http(dead), "{dead}");
        }
    }

    #[tokio::test]
    async fn a_round_asked_for_starts_at_once_and_is_waited_for() {
        let config = Arc::new(crate::config::load_str("", &|_| None).map(|(c, _)| c).expect("config"));
        let state = Arc::new(State::new(&config));
        let rounds = Arc::new(Rounds::default());
        let client = crate::upstream::client().expect("client");
        let hour = Duration::from_secs(3600);
        let task = tokio::spawn(run(config, state, client, hour, rounds.clone()));
        let asked = async { (rounds.run_now().await, rounds.run_now().await) };
        let asked = tokio::time::timeout(Duration::from_secs(5), asked).await;
        task.abort();
        let (first, second) = asked.expect("a round asked for waits for no interval");
        assert!(first >= 1 && second > first, "{first} then {second}");
    }

    #[test]
    fn re_probes_start_at_a_second_and_back_off_to_three() {
        let gaps: Vec<u128> = std::iter::successors(Some(RECHECK_FIRST), |g| Some(next_recheck(*g)))
            .take(5)
            .map(|g| g.as_millis())
            .collect();
        assert_eq!(gaps, [1_000, 1_500, 2_250, 3_000, 3_000]);
    }
}
