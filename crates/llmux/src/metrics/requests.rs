//! The counters and histograms fed by finished requests: LiteLLM's series, with its names and labels (so
//! dashboards built for LiteLLM work), and llmux's own about routing. Every label is bounded: model names,
//! deployment ids, key aliases, status codes, reasons — never a request id, a key or prompt text.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::observe::{DeploymentFacts, Finished};

type Text = Arc<str>;

/// LiteLLM's latency buckets (seconds), so quantiles read the same on its dashboards.
pub(super) const LATENCY_BUCKETS: [f64; 35] = [
    0.005, 0.00625, 0.0125, 0.025, 0.05, 0.1, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5, 7.0,
    7.5, 8.0, 8.5, 9.0, 9.5, 10.0, 15.0, 20.0, 25.0, 30.0, 60.0, 120.0, 180.0, 240.0, 300.0,
];

/// Model load times (seconds): a small model in a second, a large one from disk in minutes.
const LOAD_BUCKETS: [f64; 12] = [0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0];

fn latency() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn load_time() -> Histogram {
    Histogram::new(LOAD_BUCKETS)
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Who asked, as LiteLLM labels it (a key's alias, never the key or its hash).
#[derive(Debug, Clone, Default, Hash, PartialEq, Eq)]
struct Who {
    api_key_alias: Option<Text>,
    team: Option<Text>,
    user: Option<Text>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProxyLabels {
    requested_model: Text,
    api_key_alias: Option<Text>,
    team: Option<Text>,
    user: Option<Text>,
    status_code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailedLabels {
    requested_model: Text,
    api_key_alias: Option<Text>,
    team: Option<Text>,
    user: Option<Text>,
    exception_status: u16,
    exception_class: &'static str,
}

/// The labels LiteLLM puts on a request's latency, tokens and spend.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: Text,
    model_id: Text,
    requested_model: Text,
    api_key_alias: Option<Text>,
    team: Option<Text>,
    user: Option<Text>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentLabels {
    requested_model: Text,
    litellm_model_name: Text,
    model_id: Text,
    api_base: Text,
    api_provider: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentFailureLabels {
    requested_model: Text,
    litellm_model_name: Text,
    model_id: Text,
    api_base: Text,
    api_provider: &'static str,
    exception_status: u16,
    exception_class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CooledLabels {
    litellm_model_name: Text,
    model_id: Text,
    api_base: Text,
    api_provider: &'static str,
    exception_status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FallbackLabels {
    requested_model: Text,
    fallback_model: Text,
    api_key_alias: Option<Text>,
    team: Option<Text>,
    exception_status: u16,
    exception_class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLatencyLabels {
    litellm_model_name: Text,
    model_id: Text,
    api_base: Text,
    api_provider: &'static str,
    api_key_alias: Option<Text>,
    team: Option<Text>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: &'static str,
    operation: &'static str,
    status_code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostModelLabels {
    host: Text,
    model: Text,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: Text,
}

/// Every series fed by finished requests.
pub(super) struct RequestMetrics {
    proxy_total: Family<ProxyLabels, Counter>,
    proxy_failed: Family<FailedLabels, Counter>,
    total_latency: Histograms<ModelLabels>,
    api_latency: Histograms<ModelLabels>,
    first_token: Histograms<ModelLabels>,
    queue_time: Histograms<ModelLabels>,
    input_tokens: Family<ModelLabels, Counter>,
    output_tokens: Family<ModelLabels, Counter>,
    total_tokens: Family<ModelLabels, Counter>,
    spend: Family<ModelLabels, Counter<f64, AtomicU64>>,
    requests: Family<ModelLabels, Counter>,
    llm_api_failed: Family<ModelLabels, Counter>,
    deployment_total: Family<DeploymentLabels, Counter>,
    deployment_success: Family<DeploymentLabels, Counter>,
    deployment_failure: Family<DeploymentFailureLabels, Counter>,
    cooled_down: Family<CooledLabels, Counter>,
    fallback_succeeded: Family<FallbackLabels, Counter>,
    fallback_failed: Family<FallbackLabels, Counter>,
    per_output_token: Histograms<TokenLatencyLabels>,
    by_protocol: Family<ProtocolLabels, Counter>,
    decisions: Family<ReasonLabels, Counter>,
    loads: Family<HostModelLabels, Counter>,
    load_seconds: Histograms<HostModelLabels>,
    queue_wait: Histograms<GroupLabels>,
}

impl RequestMetrics {
    /// The series, registered in `registry`.
    pub(super) fn new(registry: &mut Registry) -> RequestMetrics {
        let m = RequestMetrics {
            proxy_total: Family::default(),
            proxy_failed: Family::default(),
            total_latency: Family::new_with_constructor(latency),
            api_latency: Family::new_with_constructor(latency),
            first_token: Family::new_with_constructor(latency),
            queue_time: Family::new_with_constructor(latency),
            input_tokens: Family::default(),
            output_tokens: Family::default(),
            total_tokens: Family::default(),
            spend: Family::default(),
            requests: Family::default(),
            llm_api_failed: Family::default(),
            deployment_total: Family::default(),
            deployment_success: Family::default(),
            deployment_failure: Family::default(),
            cooled_down: Family::default(),
            fallback_succeeded: Family::default(),
            fallback_failed: Family::default(),
            per_output_token: Family::new_with_constructor(latency),
            by_protocol: Family::default(),
            decisions: Family::default(),
            loads: Family::default(),
            load_seconds: Family::new_with_constructor(load_time),
            queue_wait: Family::new_with_constructor(latency),
        };
        let r = registry;
        r.register(
            "litellm_proxy_total_requests_metric",
            "Total number of requests made to the proxy server",
            m.proxy_total.clone(),
        );
        r.register(
            "litellm_proxy_failed_requests_metric",
            "Total number of failed responses from proxy - the client did not get a success response",
            m.proxy_failed.clone(),
        );
        r.register(
            "litellm_request_total_latency_metric",
            "Total latency (seconds) for a request to the proxy",
            m.total_latency.clone(),
        );
        r.register(
            "litellm_llm_api_latency_metric",
            "Total latency (seconds) for a model's LLM API call",
            m.api_latency.clone(),
        );
        r.register(
            "litellm_llm_api_time_to_first_token_metric",
            "Time to first token for a model's LLM API call (streams)",
            m.first_token.clone(),
        );
        r.register(
            "litellm_request_queue_time_seconds",
            "Time spent queued for a free slot (seconds)",
            m.queue_time.clone(),
        );
        r.register(
            "litellm_input_tokens_metric",
            "Total number of input tokens from LLM requests",
            m.input_tokens.clone(),
        );
        r.register(
            "litellm_output_tokens_metric",
            "Total number of output tokens from LLM requests",
            m.output_tokens.clone(),
        );
        r.register(
            "litellm_total_tokens_metric",
            "Total number of input + output tokens from LLM requests",
            m.total_tokens.clone(),
        );
        r.register("litellm_spend_metric", "Total spend on LLM requests (USD)", m.spend.clone());
        r.register("litellm_requests_metric", "Total number of LLM calls answered, by model", m.requests.clone());
        r.register(
            "litellm_llm_api_failed_requests_metric",
            "Total number of failed LLM API calls",
            m.llm_api_failed.clone(),
        );
        r.register(
            "litellm_deployment_total_requests",
            "LLM Deployment Analytics - Total number of LLM API calls - success + failure",
            m.deployment_total.clone(),
        );
        r.register(
            "litellm_deployment_success_responses",
            "LLM Deployment Analytics - Total number of successful LLM API calls",
            m.deployment_success.clone(),
        );
        r.register(
            "litellm_deployment_failure_responses",
            "LLM Deployment Analytics - Total number of failed LLM API calls",
            m.deployment_failure.clone(),
        );
        r.register(
            "litellm_deployment_cooled_down",
            "LLM Deployment Analytics - Number of times a deployment has been cooled down",
            m.cooled_down.clone(),
        );
        r.register(
            "litellm_deployment_successful_fallbacks",
            "LLM Deployment Analytics - Number of successful fallback requests",
            m.fallback_succeeded.clone(),
        );
        r.register(
            "litellm_deployment_failed_fallbacks",
            "LLM Deployment Analytics - Number of failed fallback requests",
            m.fallback_failed.clone(),
        );
        r.register(
            "litellm_deployment_latency_per_output_token",
            "LLM Deployment Analytics - Latency per output token (seconds)",
            m.per_output_token.clone(),
        );
        r.register("llmux_requests", "Requests by client protocol, operation and status", m.by_protocol.clone());
        r.register(
            "llmux_routing_decisions",
            "Attempts by why routing chose their deployment (strategy, warm, fits, spill, fastest, cached, escalation, fallback, retry) and requests by complexity tier (complexity_SIMPLE, ...)",
            m.decisions.clone(),
        );
        r.register("llmux_model_loads", "Answers that had to load their model on the host first", m.loads.clone());
        r.register(
            "llmux_model_load_seconds",
            "Time to first byte of answers that loaded their model (the load and the first token)",
            m.load_seconds.clone(),
        );
        r.register(
            "llmux_queue_wait_seconds",
            "Time requests waited for a free slot, by model group",
            m.queue_wait.clone(),
        );
        m
    }

    /// Counts one finished request.
    pub(super) fn record(&self, r: &Finished) {
        let who = Who {
            api_key_alias: r.caller.key_alias.as_deref().map(Text::from),
            team: r.caller.team_id.as_deref().map(Text::from),
            user: r.caller.user_id.as_deref().map(Text::from),
        };
        // The name the client sent, when it named something llmux routes (an unknown name is not a label).
        let requested: Text = if r.group.is_some() { Text::from(r.requested.as_str()) } else { Text::from("") };
        self.by_protocol
            .get_or_create(&ProtocolLabels {
                protocol: r.protocol.as_str(),
                operation: r.operation,
                status_code: r.status,
            })
            .inc();
        self.proxy_total
            .get_or_create(&ProxyLabels {
                requested_model: requested.clone(),
                api_key_alias: who.api_key_alias.clone(),
                team: who.team.clone(),
                user: who.user.clone(),
                status_code: r.status,
            })
            .inc();
        if r.status >= 400 {
            self.proxy_failed
                .get_or_create(&FailedLabels {
                    requested_model: requested.clone(),
                    api_key_alias: who.api_key_alias.clone(),
                    team: who.team.clone(),
                    user: who.user.clone(),
                    exception_status: r.status,
                    exception_class: exception_class(r.status),
                })
                .inc();
        }
        if let Some(tier) = r.complexity_tier {
            self.decisions.get_or_create(&ReasonLabels { reason: complexity_reason(tier) }).inc();
        }
        self.attempts(r, &requested, &who);
        if r.fallbacks > 0 {
            let first_failure = r.attempts.iter().find_map(|a| a.status.filter(|_| a.error.is_some())).unwrap_or(0);
            let labels = FallbackLabels {
                requested_model: requested.clone(),
                fallback_model: r.group.as_deref().map(Text::from).unwrap_or_else(|| Text::from("")),
                api_key_alias: who.api_key_alias.clone(),
                team: who.team.clone(),
                exception_status: first_failure,
                exception_class: exception_class(first_failure),
            };
            let family = if r.status < 400 { &self.fallback_succeeded } else { &self.fallback_failed };
            family.get_or_create(&labels).inc();
        }
        if r.queue_wait_ms > 0 {
            let group = r.group.as_deref().map(Text::from).unwrap_or_else(|| Text::from(""));
            self.queue_wait.get_or_create(&GroupLabels { group }).observe(seconds(r.queue_wait_ms));
        }
        let Some(answered) = r.attempts.iter().rev().find(|a| a.error.is_none()) else {
            // Failed, or refused before any engine was called: the latency still counts (a request's whole).
            let labels = model_labels(None, &requested, &who);
            self.total_latency.get_or_create(&labels).observe(seconds(r.duration_ms));
            return;
        };
        let facts = &answered.facts;
        let labels = model_labels(Some(facts), &requested, &who);
        self.total_latency.get_or_create(&labels).observe(seconds(r.duration_ms));
        let api = api_latency_ms(r);
        self.api_latency.get_or_create(&labels).observe(seconds(api));
        if r.stream {
            if let Some(ttfb) = r.ttfb_ms {
                self.first_token.get_or_create(&labels).observe(seconds(ttfb));
            }
        }
        self.queue_time.get_or_create(&labels).observe(seconds(r.queue_wait_ms));
        self.requests.get_or_create(&labels).inc();
        self.input_tokens.get_or_create(&labels).inc_by(r.tokens_in);
        self.output_tokens.get_or_create(&labels).inc_by(r.tokens_out);
        self.total_tokens.get_or_create(&labels).inc_by(r.tokens_in.saturating_add(r.tokens_out));
        if r.cost_usd > 0.0 && r.cost_usd.is_finite() {
            self.spend.get_or_create(&labels).inc_by(r.cost_usd);
        }
        if r.tokens_out > 0 {
            let per_token = TokenLatencyLabels {
                litellm_model_name: facts.model.clone(),
                model_id: facts.id.clone(),
                api_base: facts.api_base.clone(),
                api_provider: facts.provider,
                api_key_alias: who.api_key_alias.clone(),
                team: who.team.clone(),
            };
            self.per_output_token.get_or_create(&per_token).observe(seconds(api) / r.tokens_out as f64);
        }
        if answered.cold {
            let labels = HostModelLabels { host: facts.host.clone(), model: facts.engine_model.clone() };
            self.loads.get_or_create(&labels).inc();
            if let Some(ttfb) = r.ttfb_ms {
                self.load_seconds.get_or_create(&labels).observe(seconds(ttfb.saturating_sub(r.queue_wait_ms)));
            }
        }
    }

    /// Counts every attempt on its deployment: calls, failures, cooldowns and why routing chose it.
    fn attempts(&self, r: &Finished, requested: &Text, who: &Who) {
        for a in &r.attempts {
            let f = &a.facts;
            self.decisions.get_or_create(&ReasonLabels { reason: a.reason }).inc();
            let deployment = DeploymentLabels {
                requested_model: requested.clone(),
                litellm_model_name: f.model.clone(),
                model_id: f.id.clone(),
                api_base: f.api_base.clone(),
                api_provider: f.provider,
            };
            self.deployment_total.get_or_create(&deployment).inc();
            if a.error.is_none() {
                self.deployment_success.get_or_create(&deployment).inc();
                continue;
            }
            let status = a.status.unwrap_or(0);
            self.deployment_failure
                .get_or_create(&DeploymentFailureLabels {
                    requested_model: requested.clone(),
                    litellm_model_name: f.model.clone(),
                    model_id: f.id.clone(),
                    api_base: f.api_base.clone(),
                    api_provider: f.provider,
                    exception_status: status,
                    exception_class: exception_class(status),
                })
                .inc();
            self.llm_api_failed.get_or_create(&model_labels(Some(f), requested, who)).inc();
            if a.cooled_down {
                self.cooled_down
                    .get_or_create(&CooledLabels {
                        litellm_model_name: f.model.clone(),
                        model_id: f.id.clone(),
                        api_base: f.api_base.clone(),
                        api_provider: f.provider,
                        exception_status: status,
                    })
                    .inc();
            }
        }
    }
}

fn model_labels(facts: Option<&Arc<DeploymentFacts>>, requested: &Text, who: &Who) -> ModelLabels {
    let empty = || Text::from("");
    ModelLabels {
        model: facts.map_or_else(empty, |f| f.model.clone()),
        model_id: facts.map_or_else(empty, |f| f.id.clone()),
        requested_model: requested.clone(),
        api_key_alias: who.api_key_alias.clone(),
        team: who.team.clone(),
        user: who.user.clone(),
    }
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// The answering engine's share of a request: its whole duration less the queue and the failed attempts
/// before it.
pub(super) fn api_latency_ms(r: &Finished) -> u64 {
    let failed: u64 = r.attempts.iter().filter(|a| a.error.is_some()).map(|a| a.duration_ms).sum();
    r.duration_ms.saturating_sub(r.queue_wait_ms).saturating_sub(failed)
}

/// The `llmux_routing_decisions` reason of a complexity tier.
fn complexity_reason(tier: &str) -> &'static str {
    match tier {
        "SIMPLE" => "complexity_SIMPLE",
        "MEDIUM" => "complexity_MEDIUM",
        "COMPLEX" => "complexity_COMPLEX",
        "REASONING" => "complexity_REASONING",
        _ => "complexity",
    }
}

/// The exception class LiteLLM names for an HTTP status (its OpenAI-style exception types).
pub(super) fn exception_class(status: u16) -> &'static str {
    match status {
        400 => "BadRequestError",
        401 => "AuthenticationError",
        403 => "PermissionDeniedError",
        404 => "NotFoundError",
        408 | 504 => "Timeout",
        413 => "BadRequestError",
        422 => "UnprocessableEntityError",
        429 => "RateLimitError",
        500 => "InternalServerError",
        502 => "APIConnectionError",
        503 => "ServiceUnavailableError",
        0 => "",
        _ => "APIError",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{Attempt, Caller, ClientProtocol, RequestId};

    fn attempt(error: Option<&str>, duration_ms: u64) -> Attempt {
        Attempt {
            deployment: 0,
            label: String::new(),
            group: "g".into(),
            facts: Default::default(),
            error: error.map(str::to_owned),
            status: Some(if error.is_some() { 503 } else { 200 }),
            started_ms: 0,
            duration_ms,
            reason: "strategy",
            cold: false,
            cooled_down: false,
        }
    }

    #[test]
    fn the_engine_latency_leaves_out_the_queue_and_failed_attempts() {
        let r = Finished {
            id: RequestId("x".into()),
            started_unix_ms: 0,
            protocol: ClientProtocol::OpenAi,
            operation: "chat",
            caller: Caller::default(),
            requested: "g".into(),
            group: Some("g".into()),
            deployment: Some(0),
            host: None,
            route: String::new(),
            attempts: vec![attempt(Some("503"), 120), attempt(None, 40)],
            status: 200,
            stream: false,
            ttfb_ms: Some(200),
            duration_ms: 400,
            queue_wait_ms: 30,
            tokens_in: 0,
            tokens_out: 0,
            tokens_estimated: false,
            cost_usd: 0.0,
            fallbacks: 0,
            retries: 1,
            complexity_tier: None,
            error: None,
        };
        assert_eq!(api_latency_ms(&r), 250);
    }

    #[test]
    fn statuses_are_named_as_litellm_names_its_exceptions() {
        assert_eq!(exception_class(429), "RateLimitError");
        assert_eq!(exception_class(503), "ServiceUnavailableError");
        assert_eq!(exception_class(401), "AuthenticationError");
        assert_eq!(exception_class(599), "APIError");
    }
}
