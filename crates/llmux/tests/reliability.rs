//! Retries, cooldowns, order escalation and fallbacks over real loopback HTTP, with faults injected into mock
//! engines: what a client sees and how many engine calls it cost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

mod common;

use std::time::Duration;

use common::*;
use llmux_mock::{Fault, MockConfig};

fn group(hosts: &[(&str, u32)], extra: &str) -> String {
    let mut yaml = format!("router_settings:\n  num_retries: 2\n{extra}\nmodel_list:\n");
    for (base, order) in hosts {
        yaml.push_str(&format!(
            "  - model_name: g\n    litellm_params: {{model: ollama_chat/m, api_base: \"{base}\", order: {order}}}\n"
        ));
    }
    yaml
}

fn chats(m: &llmux_mock::MockHandle) -> usize {
    m.requests().iter().filter(|r| r.path == "/api/chat").count()
}

#[tokio::test]
async fn a_5xx_order_one_is_retried_then_escalated_to_order_two() {
    let a = mock_with({
        let mut c = MockConfig::new("alpha", &["m"]);
        c.fault = Fault::status(503);
        c
    })
    .await;
    let b = mock("beta", &["m"]).await;
    let llmux = Llmux::start(&group(&[(&a.base_url(), 1), (&b.base_url(), 2)], "")).await;
    let reply = llmux.post("/v1/chat/completions", &chat_body("g", false)).await;
    assert_eq!(reply.status, 200, "{} / route: {}", reply.text(), reply.header("x-llmux-route"));
    assert!(reply.text().contains("beta"));
    // LiteLLM's rule: the tier's retries (2) go to order 1 first, then the order-2 hop.
    assert_eq!(chats(&a), 3, "route: {}", reply.header("x-llmux-route"));
    assert_eq!(chats(&b), 1);
    assert_eq!(reply.header("x-litellm-attempted-fallbacks"), "1");
}

fn faulty(name: &str, fault: Fault) -> MockConfig {
    let mut c = MockConfig::new(name, &["m", "big"]);
    c.fault = fault;
    c
}

#[tokio::test]
async fn a_dead_order_one_host_costs_one_failed_attempt_per_cooldown_window() {
    let a = mock("alpha", &["m"]).await;
    let b = mock("beta", &["m"]).await;
    let llmux = Llmux::start(&group(&[(&a.base_url(), 1), (&b.base_url(), 2)], "  cooldown_time: 30")).await;
    a.stop().await;
    let mut routes = Vec::new();
    for _ in 0..5 {
        let reply = llmux.post("/v1/chat/completions", &chat_body("g", false)).await;
        assert_eq!(reply.status, 200);
        assert!(reply.text().contains("beta"));
        routes.push(reply.header("x-llmux-route"));
    }
    assert!(routes[0].contains("model_list[0]") && routes[0].contains("failed: 502"), "{}", routes[0]);
    for route in &routes[1..] {
        assert!(!route.contains("failed"), "the dead host was tried again inside its cooldown: {route}");
        assert!(route.contains("model_list[0] host down"), "the whole host is out: {route}");
    }
    assert_eq!(chats(&b), 5);
}

#[tokio::test]
async fn a_429_with_retry_after_cools_the_deployment_for_that_long() {
    let a = mock_with(faulty("alpha", Fault::Status { status: 429, body: None, retry_after: Some(20) })).await;
    let b = mock("beta", &["m"]).await;
    let llmux = Llmux::start(&group(&[(&a.base_url(), 1), (&b.base_url(), 2)], "")).await;
    let first = llmux.post("/v1/chat/completions", &chat_body("g", false)).await;
    assert_eq!(first.status, 200);
    // The retry already lands on order 2: the 429 cooled order 1 down at once, no fallback hop needed; the
    // escalation to order 2 still counts as one (as it does after a 5xx or a refused connection).
    assert_eq!(first.header("x-litellm-attempted-retries"), "1");
    assert_eq!(first.header("x-litellm-attempted-fallbacks"), "1");
    let second = llmux.post("/v1/chat/completions", &chat_body("g", false)).await;
    let route = second.header("x-llmux-route");
    let secs: f64 = route
        .split("model_list[0] cooling down ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no cooldown in {route}"));
    assert!((18.0..=20.0).contains(&secs), "cooled for {secs}s, expected the engine's 20 s");
    assert_eq!(chats(&a), 1);
}

#[tokio::test]
async fn when_every_deployment_cools_down_clients_get_litellms_429() {
    let fault = Fault::Status { status: 429, body: None, retry_after: Some(30) };
    let a = mock_with(faulty("alpha", fault.clone())).await;
    let b = mock_with(faulty("beta", fault)).await;
    let llmux = Llmux::start(&group(&[(&a.base_url(), 1), (&b.base_url(), 1)], "")).await;
    let first = llmux.post("/v1/chat/completions", &chat_body("g", false)).await;
    assert_eq!(first.status, 429, "{}", first.text());
    let second = llmux.post("/v1/chat/completions", &chat_body("g", false)).await;
    assert_eq!(second.status, 429);
    let json = second.json();
    let message = json["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("No deployments available for selected model, Try again in 30 seconds. All deployments for selected model are in cooldown. Passed model=g. pre-call-checks=False, cooldown_list=['"),
        "{message}"
    );
    assert_eq!(json["error"]["type"], "all_deployments_in_cooldown");
    assert_eq!(second.header("retry-after"), "30");
    assert_eq!(chats(&a) + chats(&b), 2, "no engine call while everything cools down");
}

#[tokio::test]
async fn an_order_escalation_counts_as_one_fallback_whatever_the_failure() {
    // A 5xx: order 1's retries, then the order-2 hop.
    let failing = mock_with(faulty("alpha", Fault::status(500))).await;
    let b = mock("beta", &["m"]).await;
    let llmux = Llmux::start(&group(&[(&failing.base_url(), 1), (&b.base_url(), 2)], "")).await;
    let reply = llmux.post("/v1/chat/completions", &chat_body("g", false)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-litellm-attempted-fallbacks"), "1", "{}", reply.header("x-llmux-route"));
    // A refused connection: the host is taken out, so the retry itself lands on order 2. Still one escalation.
    let dead = mock("alpha", &["m"]).await;
    let llmux = Llmux::start(&group(&[(&dead.base_url(), 1), (&b.base_url(), 2)], "")).await;
    dead.stop().await;
    let reply = llmux.post("/v1/chat/completions", &chat_body("g", false)).await;
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains("beta"));
    assert_eq!(reply.header("x-litellm-attempted-fallbacks"), "1", "{}", reply.header("x-llmux-route"));
    // The next request finds order 1 already out: nothing of its own failed, nothing escalated.
    let reply = llmux.post("/v1/chat/completions", &chat_body("g", false)).await;
    assert_eq!(reply.header("x-litellm-attempted-fallbacks"), "0", "{}", reply.header("x-llmux-route"));
}

#[tokio::test]
async fn after_every_fallback_fails_the_error_says_what_was_tried_in_litellms_words() {
    let a = mock_with(faulty("alpha", Fault::status(500))).await;
    let b = mock_with(faulty("beta", Fault::status(503))).await;
    let llmux = Llmux::start(&fallback_yaml(&a.base_url(), &b.base_url(), "  num_retries: 0")).await;
    let reply = llmux.post("/v1/chat/completions", &chat_body("fast", false)).await;
    assert_eq!(reply.status, 500, "the primary group's error: {}", reply.text());
    let message = reply.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains(
            "\n\nLiteLLM: model group 'small' failed with the error above. Fallback model groups tried: ['big']"
        ),
        "{message:?}"
    );
    // No fallback configured for the group: the same sentence, and how to add one.
    let c = mock_with(faulty("gamma", Fault::status(503))).await;
    let llmux = Llmux::start(&group(&[(&c.base_url(), 1)], "")).await;
    let reply = llmux.post("/v1/chat/completions", &chat_body("g", false)).await;
    assert_eq!(reply.status, 503);
    let message = reply.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.ends_with("\n\nLiteLLM: model group 'g' failed with the error above. No fallback was attempted. To add one: router_settings.fallbacks: [{\"g\": [\"<another model group>\"]}]"),
        "{message:?}"
    );
    // A client's bad request is returned as it is.
    let d = mock_with(faulty("delta", Fault::status(400))).await;
    let llmux = Llmux::start(&group(&[(&d.base_url(), 1)], "")).await;
    let reply = llmux.post("/v1/chat/completions", &chat_body("g", false)).await;
    assert_eq!(reply.status, 400);
    assert!(!reply.text().contains("LiteLLM: model group"), "{}", reply.text());
}

fn fallback_yaml(a: &str, b: &str, extra: &str) -> String {
    format!(
        r#"
router_settings:
  model_group_alias: {{fast: small}}
  fallbacks:
    - fast: [big]
{extra}
model_list:
  - model_name: small
    litellm_params: {{model: ollama_chat/m, api_base: "{a}"}}
  - model_name: big
    litellm_params: {{model: ollama_chat/big, api_base: "{b}"}}
"#
    )
}

#[tokio::test]
async fn fallbacks_are_keyed_by_the_name_the_client_sent() {
    let a = mock_with(faulty("alpha", Fault::status(500))).await;
    let b = mock("beta", &["big"]).await;
    let llmux = Llmux::start(&fallback_yaml(&a.base_url(), &b.base_url(), "")).await;
    let via_alias = llmux.post("/v1/chat/completions", &chat_body("fast", false)).await;
    assert_eq!(via_alias.status, 200, "{}", via_alias.text());
    assert!(via_alias.text().contains("beta"));
    assert_eq!(via_alias.header("x-litellm-attempted-fallbacks"), "1");
    // The same group called by its own name has no fallback entry: LiteLLM's rule, the error comes back.
    let via_group = llmux.post("/v1/chat/completions", &chat_body("small", false)).await;
    assert_eq!(via_group.status, 500);
    let message = via_group.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("mock alpha: injected fault (HTTP 500)\n\nLiteLLM: model group 'small'"),
        "{message:?}"
    );
}

#[tokio::test]
async fn context_window_errors_go_to_context_window_fallbacks() {
    let too_long = Fault::Status {
        status: 400,
        body: Some(
            serde_json::json!({"error": {"message": "This model's maximum context length is 2048 tokens", "type": "invalid_request_error"}}),
        ),
        retry_after: None,
    };
    let a = mock_with(faulty("alpha", too_long)).await;
    let b = mock("beta", &["big"]).await;
    let extra = "  context_window_fallbacks:\n    - small: [big]";
    let llmux = Llmux::start(&fallback_yaml(&a.base_url(), &b.base_url(), extra)).await;
    let reply = llmux.post("/v1/chat/completions", &chat_body("small", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("beta"));
    assert_eq!(chats(&a), 1, "a context-window error is not retried on the same group");
}

#[tokio::test]
async fn pre_call_checks_send_long_prompts_to_the_bigger_window() {
    let a = mock("alpha", &["m"]).await;
    let b = mock("beta", &["big"]).await;
    let yaml = format!(
        r#"
router_settings:
  enable_pre_call_checks: true
  context_window_fallbacks:
    - small: [big]
model_list:
  - model_name: small
    litellm_params: {{model: ollama_chat/m, api_base: "{}"}}
    model_info: {{max_input_tokens: 50}}
  - model_name: big
    litellm_params: {{model: ollama_chat/big, api_base: "{}"}}
"#,
        a.base_url(),
        b.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    let long = serde_json::json!({"model": "small", "messages": [{"role": "user", "content": "word ".repeat(100)}]});
    let reply = llmux.post("/v1/chat/completions", &long.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("beta"));
    assert_eq!(chats(&a), 0, "the small model was never called with a prompt it cannot fit");
    let short = llmux.post("/v1/chat/completions", &chat_body("small", false)).await;
    assert!(short.text().contains("alpha"));
}

#[tokio::test]
async fn a_fallback_loop_ends() {
    let a = mock_with(faulty("alpha", Fault::status(500))).await;
    let b = mock_with(faulty("beta", Fault::status(502))).await;
    let extra = "  num_retries: 0\n  max_attempts: 50";
    let yaml = format!(
        "router_settings:\n{extra}\n  fallbacks:\n    - small: [big]\n    - big: [small]\nmodel_list:\n  - model_name: small\n    litellm_params: {{model: ollama_chat/m, api_base: \"{}\"}}\n  - model_name: big\n    litellm_params: {{model: ollama_chat/big, api_base: \"{}\"}}\n",
        a.base_url(),
        b.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    let reply = llmux.post("/v1/chat/completions", &chat_body("small", false)).await;
    // The primary group's error comes back, after each group was tried once.
    assert_eq!(reply.status, 500);
    assert_eq!((chats(&a), chats(&b)), (1, 1));
}

#[tokio::test]
async fn one_attempt_budget_bounds_a_5xx_storm() {
    let a = mock_with(faulty("alpha", Fault::status(503))).await;
    let b = mock_with(faulty("beta", Fault::status(503))).await;
    let mut yaml =
        "router_settings:\n  num_retries: 5\n  max_attempts: 4\n  fallbacks:\n    - g: [h, i]\nmodel_list:\n"
            .to_owned();
    for name in ["g", "h", "i"] {
        for base in [a.base_url(), b.base_url()] {
            yaml.push_str(&format!(
                "  - model_name: {name}\n    litellm_params: {{model: ollama_chat/m, api_base: \"{base}\"}}\n"
            ));
        }
    }
    let llmux = Llmux::start(&yaml).await;
    let reply = llmux.post("/v1/chat/completions", &chat_body("g", false)).await;
    assert_eq!(reply.status, 503);
    assert_eq!(chats(&a) + chats(&b), 4, "retries × fallbacks must not multiply past the budget");
}

#[tokio::test]
async fn a_hung_first_token_times_out_and_fails_over() {
    let a = mock_with(faulty("alpha", Fault::Hang)).await;
    let b = mock("beta", &["m"]).await;
    let yaml = group(&[(&a.base_url(), 1), (&b.base_url(), 2)], "  stream_timeout: 0.5");
    let llmux = Llmux::start(&yaml).await;
    let started = std::time::Instant::now();
    let (status, headers, frames) = llmux.stream("/v1/chat/completions", &chat_body("g", true)).await;
    assert_eq!(status, 200);
    assert!(stream_text(&sse_events(&frames)).contains("beta"));
    assert!(started.elapsed() >= Duration::from_millis(500));
    let route = headers.get("x-llmux-route").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(route.contains("failed: 408"), "{route}");
}

#[tokio::test]
async fn litellms_per_request_controls_are_honoured_and_never_reach_the_engine() {
    let a = mock_with(faulty("alpha", Fault::status(503))).await;
    let b = mock("beta", &["big"]).await;
    let pass = mock("gamma", &["p"]).await;
    let yaml = format!(
        "{}  - model_name: pass\n    litellm_params: {{model: openai/p, api_base: \"{}/v1\"}}\n",
        fallback_yaml(&a.base_url(), &b.base_url(), "  num_retries: 2"),
        pass.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    let body = |extra: &str| format!(r#"{{"model":"fast","messages":[{{"role":"user","content":"hi"}}],{extra}}}"#);
    // num_retries: 0 → one call on alpha; disable_fallbacks → the error, not beta.
    let reply = llmux.post("/v1/chat/completions", &body(r#""num_retries":0,"disable_fallbacks":true"#)).await;
    assert_eq!(reply.status, 503);
    assert_eq!(chats(&a), 1);
    assert_eq!(chats(&b), 0);
    // Client-side fallbacks replace the configured chain.
    let reply = llmux.post("/v1/chat/completions", &body(r#""num_retries":0,"fallbacks":["pass"]"#)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("gamma"));
    let sent = &pass.requests()[0].body;
    assert!(sent.get("fallbacks").is_none() && sent.get("num_retries").is_none(), "{sent}");
    assert_eq!(sent["model"], "p");
}

fn slow(name: &str, ms: u64) -> MockConfig {
    let mut c = MockConfig::new(name, &["m"]);
    c.latency_ms = ms;
    c
}

#[tokio::test]
async fn a_busy_slot_limited_engine_spills_to_the_next_candidate() {
    let a = mock_with(slow("alpha", 300)).await;
    let b = mock("beta", &["m"]).await;
    let yaml = format!(
        "model_list:\n  - model_name: g\n    litellm_params: {{model: ollama_chat/m, api_base: \"{}\", order: 1, max_parallel_requests: 1}}\n  - model_name: g\n    litellm_params: {{model: ollama_chat/m, api_base: \"{}\", order: 2}}\n",
        a.base_url(),
        b.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    let body = chat_body("g", false);
    let (first, second) = tokio::join!(llmux.post("/v1/chat/completions", &body), async {
        eventually("the first request reached alpha", Duration::from_secs(5), async || a.stats().in_flight > 0).await;
        llmux.post("/v1/chat/completions", &body).await
    });
    assert!(first.text().contains("alpha"));
    assert!(second.text().contains("beta"), "the second request piled onto the busy engine");
    assert!(second.header("x-llmux-route").contains("model_list[0] at max_parallel_requests"));
}

#[tokio::test]
async fn requests_queue_for_a_slot_and_give_up_after_queue_timeout() {
    let a = mock_with(slow("alpha", 400)).await;
    let yaml = |wait: &str| {
        format!(
            "router_settings:\n  queue_timeout: {wait}\nmodel_list:\n  - model_name: g\n    litellm_params: {{model: ollama_chat/m, api_base: \"{}\", max_parallel_requests: 1}}\n",
            a.base_url()
        )
    };
    let body = chat_body("g", false);
    let late = || async {
        eventually("the first request reached alpha", Duration::from_secs(5), async || a.stats().in_flight > 0).await;
    };
    // A generous queue: the second request waits its turn and is served by the same engine.
    let llmux = Llmux::start(&yaml("10")).await;
    let (first, second) = tokio::join!(llmux.post("/v1/chat/completions", &body), async {
        late().await;
        llmux.post("/v1/chat/completions", &body).await
    });
    assert_eq!((first.status.as_u16(), second.status.as_u16()), (200, 200));
    assert_eq!(a.stats().requests.get("/api/chat").copied(), Some(2));
    // A short queue: the second request is told to come back, not piled on.
    let llmux = Llmux::start(&yaml("0.1")).await;
    let (first, second) = tokio::join!(llmux.post("/v1/chat/completions", &body), async {
        late().await;
        llmux.post("/v1/chat/completions", &body).await
    });
    assert_eq!(first.status, 200);
    assert_eq!(second.status, 429);
    assert!(second.json()["error"]["message"].as_str().unwrap().contains("max_parallel_requests"));
}

/// Requests for `group` waiting for a free slot now, as the dashboard's fleet view counts them.
async fn queued(llmux: &Llmux, group: &str) -> u64 {
    let fleet = llmux.get("/ui/api/fleet").await.json();
    let groups = fleet["groups"].as_array().cloned().unwrap_or_default();
    groups.iter().find(|g| g["name"] == group).and_then(|g| g["queued"].as_u64()).unwrap_or(0)
}

#[tokio::test]
async fn a_freed_slot_goes_to_the_lowest_priority_waiting_then_the_earliest() {
    let a = mock_with(slow("alpha", 300)).await;
    let yaml = format!(
        r#"
router_settings:
  model_group_alias: {{voice: g}}
model_list:
  - model_name: g
    litellm_params: {{model: ollama_chat/m, api_base: "{}", max_parallel_requests: 1}}
llmux_settings:
  groups:
    voice: {{priority: -1}}
"#,
        a.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    // Each request is sent once the one before holds the slot or waits for it.
    let ask = |model: &'static str, text: &'static str, priority: Option<i64>, ahead: Option<u64>| {
        let (llmux, a) = (&llmux, &a);
        async move {
            if let Some(n) = ahead {
                eventually(&format!("{n} requests waiting"), Duration::from_secs(5), async || {
                    a.stats().in_flight > 0 && queued(llmux, "g").await == n
                })
                .await;
            }
            let mut body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]});
            if let Some(p) = priority {
                body["priority"] = p.into();
            }
            llmux.post("/v1/chat/completions", &body.to_string()).await
        }
    };
    // One request holds the only slot; two batch requests queue, then a voice command (its alias's default).
    let replies = tokio::join!(
        ask("g", "first", None, None),
        ask("g", "batch 1", Some(5), Some(0)),
        ask("g", "batch 2", Some(5), Some(1)),
        ask("voice", "voice", None, Some(2)),
    );
    for reply in [&replies.0, &replies.1, &replies.2, &replies.3] {
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let order: Vec<String> =
        posts(&a).iter().map(|r| r.body["messages"][0]["content"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(order, ["first", "voice", "batch 1", "batch 2"]);
    assert!(posts(&a).iter().all(|r| r.body.get("priority").is_none()), "priority is llmux's, not the engine's");
}

#[tokio::test]
async fn a_slow_first_token_gets_keep_alive_comments_and_still_fails_over() {
    let mut cold = MockConfig::new("alpha", &["m"]);
    cold.latency_ms = 900;
    let a = mock_with(cold).await;
    let b = mock_with(faulty("beta", Fault::status(500))).await;
    let yaml = |first: &str, second: &str| {
        format!(
            "router_settings:\n  stream_keepalive: 0.2\n  num_retries: 0\nmodel_list:\n  - model_name: g\n    litellm_params: {{model: ollama_chat/m, api_base: \"{first}\", order: 1}}\n  - model_name: g\n    litellm_params: {{model: ollama_chat/m, api_base: \"{second}\", order: 2}}\n"
        )
    };
    // A cold engine: comments first, then the answer.
    let llmux = Llmux::start(&yaml(&a.base_url(), &b.base_url())).await;
    let (status, _, frames) = llmux.stream("/v1/chat/completions", &chat_body("g", true)).await;
    assert_eq!(status, 200);
    let text: Vec<u8> = frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
    let text = String::from_utf8_lossy(&text);
    assert!(text.starts_with(": keep-alive\n\n: keep-alive\n\n"), "{text}");
    assert!(stream_text(&sse_events(&frames)).contains("alpha"));
    // The headers went out before any engine answered: a comment names the deployment before the first chunk.
    let named = format!(": x-llmux-deployment: model_list[0] ollama_chat/m @ {}\n\ndata: ", a.addr());
    assert!(text.trim_start_matches(": keep-alive\n\n").starts_with(&named), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
    // A failing first deployment behind the comments still fails over; when all fail, an error event ends it.
    let llmux = Llmux::start(&yaml(&b.base_url(), &a.base_url())).await;
    let (_, _, frames) = llmux.stream("/v1/chat/completions", &chat_body("g", true)).await;
    assert!(stream_text(&sse_events(&frames)).contains("alpha"));
    let c = mock_with({
        let mut c = faulty("gamma", Fault::status(500));
        c.latency_ms = 500;
        c
    })
    .await;
    let llmux = Llmux::start(&yaml(&c.base_url(), &b.base_url())).await;
    let (status, _, frames) = llmux.stream("/v1/chat/completions", &chat_body("g", true)).await;
    assert_eq!(status, 200, "headers were already sent");
    let events = sse_events(&frames);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(events[events.len() - 2].contains("\"error\""), "{events:?}");
}
