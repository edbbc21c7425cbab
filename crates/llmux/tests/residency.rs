//! Loaded-model-aware routing against the mock's residency simulation (a memory budget per host, LRU eviction,
//! `/api/ps` telling the truth): probes never load a model, pinned models are preloaded and never evicted by
//! routing while another host can serve, and what llmux learns a load costs on each host decides between a busy
//! warm host and an idle cold one and how long a cold host may take to start a stream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

mod common;

use std::time::Duration;

use common::*;
use llmux_mock::{Fault, MockConfig, MockHandle, ResidencyConfig};

/// A simulated Ollama host with a 10 GB budget and 6 GB models: two cannot be loaded together.
fn sized(name: &str, models: &[&str]) -> MockConfig {
    let mut config = MockConfig::new(name, models);
    config.residency = Some(ResidencyConfig {
        memory_budget: Some(10_000_000_000),
        default_size: Some(6_000_000_000),
        default_load_ms: 50,
        ..ResidencyConfig::default()
    });
    config
}

async fn host(name: &str, models: &[&str]) -> MockHandle {
    mock_with(sized(name, models)).await
}

fn loaded(mock: &MockHandle) -> Vec<String> {
    mock.resident().unwrap_or_default().into_iter().filter(|m| !m.loading).map(|m| m.name).collect()
}

#[tokio::test]
async fn health_probes_never_load_a_model() {
    let a = host("a", &["m1", "m2"]).await;
    let yaml = format!(
        "model_list:\n  - model_name: g\n    litellm_params: {{model: ollama_chat/m1, api_base: \"{}\"}}\ngeneral_settings:\n  background_health_checks: true\n  health_check_interval: 1\n",
        a.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    // Two background rounds (the loop's first, and one asked for now).
    llmux.health_round(None).await;
    llmux.get("/health").await;
    llmux.get("/health/hosts").await;
    let stats = a.stats();
    assert!(stats.requests.get("/api/ps").copied().unwrap_or(0) >= 2, "probed: {:?}", stats.requests);
    assert_eq!(stats.loads, 0, "a probe loaded a model");
    assert!(loaded(&a).is_empty());
}

#[tokio::test]
async fn a_pinned_model_is_preloaded_and_routing_never_evicts_it_while_another_host_can_serve() {
    let a = host("a", &["keep", "other"]).await;
    let b = host("b", &["other"]).await;
    let yaml = format!(
        r#"
model_list:
  - model_name: keep
    litellm_params: {{model: ollama_chat/keep, api_base: "{a}"}}
  - model_name: other
    litellm_params: {{model: ollama_chat/other, api_base: "{a}"}}
  - model_name: other
    litellm_params: {{model: ollama_chat/other, api_base: "{b}"}}
router_settings:
  residency_routing: false
general_settings:
  background_health_checks: true
  health_check_interval: 1
llmux_settings:
  hosts:
    "{a}": {{memory_budget: 10GB, pinned: [keep]}}
"#,
        a = a.base_url(),
        b = b.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    // Preloaded at start-up, and seen resident by a probe.
    eventually("keep preloaded on a", Duration::from_secs(10), async || loaded(&a).contains(&"keep".to_owned())).await;
    llmux.health_round(None).await;
    let hosts = llmux.get("/health/hosts").await.json();
    let placement = &hosts["hosts"][0]["placement"];
    assert_eq!(placement["fits"], false, "keep + other need 12 GB of a 10 GB budget: {placement}");

    // Even residency-blind, no request for `other` goes to a: loading it there would evict the pinned model.
    for _ in 0..20 {
        let reply = llmux.post("/v1/chat/completions", &chat_body("other", false)).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(reply.header("x-llmux-deployment").starts_with("model_list[2]"), "{}", reply.header("x-llmux-route"));
    }
    assert_eq!(a.stats().evictions, 0);
    assert_eq!(loaded(&a), ["keep"]);
    // The pinned model is sent with keep_alive -1 so the engine never lets it expire.
    let reply = llmux.post("/v1/chat/completions", &chat_body("keep", false)).await;
    assert_eq!(reply.status, 200);
    let sent = a.requests().into_iter().rfind(|r| r.path == "/api/chat").unwrap();
    assert_eq!(sent.body["keep_alive"], -1);

    // With b gone, a is the only candidate left: the request is served there rather than refused.
    b.stop().await;
    let reply = llmux.post("/v1/chat/completions", &chat_body("other", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.header("x-llmux-deployment").starts_with("model_list[1]"));
}

#[tokio::test]
async fn a_load_is_followed_by_a_look_at_what_the_engine_evicted() {
    let a = host("a", &["m1", "m2"]).await;
    let yaml = format!(
        "model_list:\n  - model_name: one\n    litellm_params: {{model: ollama_chat/m1, api_base: \"{a}\"}}\n  - model_name: two\n    litellm_params: {{model: ollama_chat/m2, api_base: \"{a}\"}}\n",
        a = a.base_url()
    );
    // No background probes: only the probe after a load can tell llmux what the engine did.
    let llmux = Llmux::start(&yaml).await;
    let resident = || async {
        let hosts = llmux.get("/health/hosts").await.json();
        let models = hosts["hosts"][0]["resident_models"].as_array().cloned().unwrap_or_default();
        models.iter().map(|m| (m["model"].as_str().unwrap_or("").to_owned(), m["probed"] == true)).collect::<Vec<_>>()
    };
    assert_eq!(llmux.post("/v1/chat/completions", &chat_body("one", false)).await.status, 200);
    eventually("the probe after the load saw m1", Duration::from_secs(10), async || {
        a.stats().requests.contains_key("/api/ps")
    })
    .await;
    // Fixed: llmux re-probes a host after a load at most once per 2 s of its own (real) clock, and this test is
    // about the re-probe after the next load, which must fall outside that window; nothing outside shows it.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(resident().await, [("m1".to_owned(), true)]);
    // Loading m2 evicts m1 (6 + 6 GB > 10 GB): llmux learns it at once, not at the next probe interval.
    assert_eq!(llmux.post("/v1/chat/completions", &chat_body("two", false)).await.status, 200);
    assert_eq!(a.stats().evictions, 1);
    eventually("llmux learns m1 was evicted", Duration::from_secs(5), async || {
        resident().await == [("m2".to_owned(), true)]
    })
    .await;
}

/// A simulated Ollama host serving `m` with room for any number of models, where loading one takes `load_ms`.
fn roomy(name: &str, load_ms: u64) -> MockConfig {
    let mut config = MockConfig::new(name, &["m"]);
    config.residency = Some(ResidencyConfig { default_load_ms: load_ms, ..ResidencyConfig::default() });
    config
}

/// Unloads `model` from `mock` the way a user would, through Ollama's API (`keep_alive: 0`).
async fn unload(mock: &MockHandle, model: &str) {
    let body = serde_json::json!({"model": model, "keep_alive": 0}).to_string();
    let reply = Llmux::at(mock.addr()).post("/api/generate", &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(loaded(mock).is_empty(), "still loaded: {:?}", loaded(mock));
}

/// The models llmux believes loaded on `mock`'s host (`GET /health/hosts`).
async fn seen_loaded(llmux: &Llmux, mock: &MockHandle) -> Vec<String> {
    let hosts = llmux.get("/health/hosts").await.json();
    hosts["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["host"] == mock.base_url())
        .flat_map(|h| h["resident_models"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| m["model"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_busy_warm_host_loses_to_an_idle_cold_one_once_its_queue_outlasts_the_learned_load() {
    // a has m loaded and answers in 0.4 s; loading m on b takes 1 s.
    let mut warm = roomy("a", 0);
    warm.loaded = vec!["m".to_owned()];
    warm.latency_ms = 400;
    let a = mock_with(warm).await;
    let b = mock_with(roomy("b", 1_000)).await;
    let yaml = format!(
        r#"
model_list:
  - model_name: g
    litellm_params: {{model: ollama_chat/m, api_base: "{a}"}}
    model_info: {{id: on-a}}
  - model_name: g
    litellm_params: {{model: ollama_chat/m, api_base: "{b}"}}
    model_info: {{id: on-b}}
general_settings:
  background_health_checks: true
  health_check_interval: 1
"#,
        a = a.base_url(),
        b = b.base_url()
    );
    let llmux = Llmux::start(&yaml).await;

    // What loading costs on b is learned from streams (asked of b by its id): the first waits for the load, the
    // second finds the model loaded.
    for _ in 0..2 {
        let (status, _, frames) = llmux.stream("/v1/chat/completions", &chat_body("on-b", true)).await;
        assert_eq!(status, 200);
        assert!(stream_text(&sse_events(&frames)).starts_with("Hello from b"));
    }
    assert_eq!(b.stats().loads, 1);
    // a's latency (0.4 s) from one answer.
    assert_eq!(llmux.post("/v1/chat/completions", &chat_body("on-a", false)).await.status, 200);
    // m leaves b, and llmux sees it at the next probe: b is cold now, a warm.
    unload(&b, "m").await;
    eventually("llmux sees m loaded on a only", Duration::from_secs(10), async || {
        seen_loaded(&llmux, &b).await.is_empty() && !seen_loaded(&llmux, &a).await.is_empty()
    })
    .await;

    let to_group = async || {
        let reply = llmux.post("/v1/chat/completions", &chat_body("g", false)).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply
    };
    // Requests held on a (asked of a by its id), counted in flight until the test ends.
    let chats = |mock: &MockHandle| mock.stats().requests.get("/api/chat").copied().unwrap_or(0);
    let mut held = Vec::new();
    let mut hold_on_a = |n: u32| {
        a.set_config(|c| {
            c.fault = Fault::Hang;
            c.fault_times = Some(n);
        });
        let addr = llmux.addr;
        held.extend((0..n).map(|_| {
            tokio::spawn(async move { Llmux::at(addr).post("/v1/chat/completions", &chat_body("on-a", false)).await })
        }));
    };

    // An idle warm host wins over loading the model elsewhere.
    let reply = to_group().await;
    assert!(reply.header("x-llmux-deployment").starts_with("model_list[0]"), "{}", reply.header("x-llmux-route"));
    // So does a busy one whose queue (1 request × 0.4 s) is shorter than the load on b (1 s).
    let before = chats(&a);
    hold_on_a(1);
    eventually("a holds one request", Duration::from_secs(10), async || chats(&a) == before + 1).await;
    let reply = to_group().await;
    assert!(reply.header("x-llmux-deployment").starts_with("model_list[0]"), "{}", reply.header("x-llmux-route"));
    assert_eq!(b.stats().loads, 1, "b loaded the model while a could serve sooner");

    // With 5 requests on a (2 s of queue), loading the model on idle b is quicker.
    let before = chats(&a);
    hold_on_a(4);
    eventually("a holds five requests", Duration::from_secs(10), async || chats(&a) == before + 4).await;
    let reply = to_group().await;
    let route = reply.header("x-llmux-route");
    assert!(reply.header("x-llmux-deployment").starts_with("model_list[1]"), "{route}");
    assert!(route.contains("model_list[0] warm but busier than a load elsewhere"), "{route}");
    assert!(reply.json()["choices"][0]["message"]["content"].as_str().unwrap_or("").starts_with("Hello from b"));
    assert_eq!(b.stats().loads, 2);
    assert_eq!(chats(&a), before + 4, "nothing more went to a");
    for request in held {
        request.abort();
    }
}

/// llmux in front of one simulated Ollama host where loading `m` takes 2 s, with streams given 1 s to start and
/// no retry.
async fn slow_loading_host() -> (MockHandle, Llmux) {
    let mock = mock_with(roomy("c", 2_000)).await;
    let yaml = format!(
        r#"
model_list:
  - model_name: g
    litellm_params: {{model: ollama_chat/m, api_base: "{}"}}
router_settings:
  stream_timeout: 1
  num_retries: 0
general_settings:
  background_health_checks: true
  health_check_interval: 1
"#,
        mock.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    (mock, llmux)
}

/// [`slow_loading_host`] once llmux has learned what the load costs there, with the model unloaded again (and
/// llmux aware of it).
async fn slow_loading_host_learned() -> (MockHandle, Llmux) {
    let (mock, llmux) = slow_loading_host().await;
    // One stream allowed 30 s to start (the request's own stream_timeout) waits for the load, the next finds the
    // model loaded.
    let patient = serde_json::json!({
        "model": "g",
        "stream": true,
        "stream_timeout": 30,
        "messages": [{"role": "user", "content": "Say hello"}],
    })
    .to_string();
    for body in [patient, chat_body("g", true)] {
        let (status, _, frames) = llmux.stream("/v1/chat/completions", &body).await;
        assert_eq!(status, 200);
        assert_eq!(stream_text(&sse_events(&frames)), "Hello from c (m).");
    }
    assert_eq!(mock.stats().loads, 1);
    unload(&mock, "m").await;
    eventually("llmux sees m unloaded", Duration::from_secs(10), async || seen_loaded(&llmux, &mock).await.is_empty())
        .await;
    (mock, llmux)
}

/// What a client reading a stream whole sees: the status and the body as text.
async fn stream_whole(llmux: &Llmux) -> (http::StatusCode, String) {
    let (status, _, frames) = llmux.stream("/v1/chat/completions", &chat_body("g", true)).await;
    let body: Vec<u8> = frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A whole, successful chat stream from host c.
fn assert_complete(status: http::StatusCode, body: &str) {
    assert_eq!(status, 200, "{body}");
    let events: Vec<String> =
        body.split("\n\n").filter_map(|e| e.trim().strip_prefix("data: ").map(str::to_owned)).collect();
    assert_eq!(stream_text(&events), "Hello from c (m).", "{body}");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{body}");
    assert!(!body.contains("\"error\""), "{body}");
}

#[tokio::test]
async fn a_cold_host_gets_one_and_a_half_times_its_learned_load_to_start_a_stream() {
    // Nothing learned yet: the stream times out while the model loads.
    let (fresh, llmux) = slow_loading_host().await;
    let (status, body) = stream_whole(&llmux).await;
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("did not answer within 1s"), "{body}");
    assert!(!body.contains("Hello from"), "{body}");
    assert_eq!(fresh.stats().loads, 1);

    // The same host and config once the load was learned: the cold stream gets 1.5 × 2 s to start instead of 1 s,
    // and the user gets the whole answer.
    let (c, llmux) = slow_loading_host_learned().await;
    let (status, body) = stream_whole(&llmux).await;
    assert_complete(status, &body);
    assert_eq!(c.stats().loads, 2);
}

#[tokio::test]
async fn a_stream_that_finds_a_load_under_way_gets_as_long_to_start_as_the_one_that_set_it_off() {
    let (c, llmux) = slow_loading_host_learned().await;
    // The first stream sets off the load; the second, once the engine has it, is routed to a model llmux counts
    // as loading there, and waits for the same load.
    let first = stream_whole(&llmux);
    let second = async {
        eventually("the first stream reached the engine", Duration::from_secs(5), async || c.stats().in_flight > 0)
            .await;
        stream_whole(&llmux).await
    };
    let ((status, body), (second_status, second_body)) = tokio::join!(first, second);
    assert_complete(status, &body);
    assert_complete(second_status, &second_body);
    assert_eq!(c.stats().loads, 2, "one load for both");
}

#[tokio::test]
async fn the_load_time_ollama_reports_is_learned_from_a_plain_request() {
    let mock = mock_with(roomy("a", 600)).await;
    let yaml = format!(
        "model_list:\n  - model_name: g\n    litellm_params: {{model: ollama_chat/m, api_base: \"{}\"}}\n",
        mock.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    let learned = async || {
        let hosts = llmux.get("/health/hosts").await.json();
        hosts["hosts"][0]["deployments"][0]["load_seconds"].as_f64()
    };
    assert_eq!(learned().await, None, "nothing learned before the first load");
    // Not streamed, so no first byte to time: the engine's `load_duration` teaches the cost.
    assert_eq!(llmux.post("/v1/chat/completions", &chat_body("g", false)).await.status, 200);
    let cold = learned().await.expect("learned from load_duration");
    assert!((0.5..3.0).contains(&cold), "{cold}");
    // A warm answer reports a load of almost nothing: that is not a load and changes nothing.
    assert_eq!(llmux.post("/v1/chat/completions", &chat_body("g", false)).await.status, 200);
    assert_eq!(learned().await, Some(cold));
    assert_eq!(mock.stats().loads, 1);
}

#[tokio::test]
async fn a_load_that_would_evict_a_model_serving_a_request_waits_until_it_is_idle() {
    let mut config = sized("a", &["m1", "m2"]);
    config.latency_ms = 1_200;
    let a = mock_with(config).await;
    let yaml = format!(
        r#"
model_list:
  - model_name: g1
    litellm_params: {{model: ollama_chat/m1, api_base: "{a}"}}
  - model_name: g2
    litellm_params: {{model: ollama_chat/m2, api_base: "{a}"}}
general_settings:
  background_health_checks: true
  health_check_interval: 1
llmux_settings:
  hosts:
    "{a}": {{memory_budget: 10GB}}
"#,
        a = a.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    eventually("a probed", Duration::from_secs(10), async || {
        llmux.get("/health/hosts").await.json()["hosts"][0]["status"] == "up"
    })
    .await;
    // Requests for a model (its load included).
    let sent_for = |model: &str| {
        let sent =
            |r: &&llmux_mock::RecordedRequest| r.method == "POST" && r.path != "/api/show" && r.body["model"] == model;
        a.requests().iter().filter(sent).count()
    };
    let (body1, body2) = (chat_body("g1", false), chat_body("g2", false));
    let (first, second) = tokio::join!(llmux.post("/v1/chat/completions", &body1), async {
        eventually("the first request reached a", Duration::from_secs(5), async || a.stats().in_flight > 0).await;
        let second = llmux.post("/v1/chat/completions", &body2);
        tokio::pin!(second);
        // While m1 serves the first request, m2 (6 + 6 GB > 10 GB) is not sent to the host at all.
        let early = tokio::time::timeout(Duration::from_millis(500), &mut second).await;
        assert!(early.is_err(), "the second request did not wait");
        assert!(sent_for("m1") >= 1, "m1 was sent");
        assert_eq!(sent_for("m2"), 0, "m2 was sent to the host while m1 was serving");
        second.await
    });
    assert_eq!((first.status.as_u16(), second.status.as_u16()), (200, 200), "{}", second.text());
    assert_eq!(posts(&a).iter().filter(|r| r.path == "/api/chat").count(), 2);
}

#[tokio::test]
async fn without_declared_limits_the_budget_learned_from_an_eviction_keeps_a_serving_model_loaded() {
    let a = host("a", &["m1", "m2"]).await;
    let yaml = format!(
        "model_list:\n  - model_name: g1\n    litellm_params: {{model: ollama_chat/m1, api_base: \"{a}\"}}\n  - model_name: g2\n    litellm_params: {{model: ollama_chat/m2, api_base: \"{a}\"}}\ngeneral_settings: {{background_health_checks: true, health_check_interval: 1}}\n",
        a = a.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    let hosts = async || llmux.get("/health/hosts").await.json()["hosts"][0].clone();
    eventually("a probed", Duration::from_secs(10), async || hosts().await["status"] == "up").await;
    // The owner declared nothing. m1, then m2: the engine evicts m1 for m2 (6 + 6 GB > its 10 GB), and llmux
    // sees it in the next look at /api/ps.
    assert_eq!(llmux.post("/v1/chat/completions", &chat_body("g1", false)).await.status, 200);
    eventually("m1 seen loaded", Duration::from_secs(10), async || {
        hosts().await["resident_models"]
            .as_array()
            .is_some_and(|r| r.iter().any(|m| m["model"] == "m1" && m["probed"] == true))
    })
    .await;
    assert_eq!(hosts().await["learned_memory_budget"], serde_json::Value::Null, "nothing evicted yet");
    assert_eq!(llmux.post("/v1/chat/completions", &chat_body("g2", false)).await.status, 200);
    assert_eq!(a.stats().evictions, 1);
    eventually("the budget learned", Duration::from_secs(10), async || {
        hosts().await["learned_memory_budget"].as_u64().is_some_and(|b| (6_000_000_000..12_000_000_000).contains(&b))
    })
    .await;

    // Now m2 serves a slow request, and m1 (which would evict it) is not sent meanwhile: it waits.
    a.set_config(|c| c.latency_ms = 1_200);
    let m1_sent = || {
        a.requests().iter().filter(|r| r.method == "POST" && r.path != "/api/show" && r.body["model"] == "m1").count()
    };
    let before = m1_sent();
    let (body1, body2) = (chat_body("g1", false), chat_body("g2", false));
    let (first, second) = tokio::join!(llmux.post("/v1/chat/completions", &body2), async {
        eventually("m2's request reached a", Duration::from_secs(5), async || a.stats().in_flight > 0).await;
        let second = llmux.post("/v1/chat/completions", &body1);
        tokio::pin!(second);
        let early = tokio::time::timeout(Duration::from_millis(500), &mut second).await;
        assert!(early.is_err(), "the request for m1 did not wait");
        assert_eq!(m1_sent(), before, "m1 was sent to the host while m2 was serving");
        second.await
    });
    assert_eq!((first.status.as_u16(), second.status.as_u16()), (200, 200), "{}", second.text());
    assert_eq!(a.stats().evictions, 2, "m2 went only once idle");
}

#[tokio::test]
async fn a_cold_load_is_the_routers_own_and_survives_the_client_hanging_up() {
    let mut config = sized("a", &["m1"]);
    if let Some(r) = config.residency.as_mut() {
        r.default_load_ms = 1_200;
    }
    let a = mock_with(config).await;
    let yaml = format!(
        "router_settings: {{stream_keepalive: 0.2}}\ngeneral_settings: {{background_health_checks: true, health_check_interval: 1}}\nmodel_list:\n  - model_name: g\n    litellm_params: {{model: ollama_chat/m1, api_base: \"{}\", keep_alive: 600}}\n",
        a.base_url()
    );
    let llmux = Llmux::start(&yaml).await;
    eventually("a probe saw the host", Duration::from_secs(5), async || {
        llmux.get("/health/hosts").await.json()["hosts"][0]["last_probe_seconds_ago"].is_number()
    })
    .await;
    // A streaming client waits for the cold model, is told what it waits for, and hangs up before it is loaded.
    let body = r#"{"model": "g", "stream": true, "messages": [{"role": "user", "content": "hi"}]}"#;
    let (first, mut rest) = llmux.stream_first_frame("/v1/chat/completions", body).await;
    let mut seen = String::from_utf8_lossy(&first).into_owned();
    while !seen.contains(": loading m1 on ") {
        let frame = tokio::time::timeout(Duration::from_secs(3), http_body_util::BodyExt::frame(&mut rest)).await;
        let data = frame.unwrap().unwrap().unwrap().into_data().unwrap_or_default();
        seen.push_str(&String::from_utf8_lossy(&data));
    }
    drop(rest);
    // llmux's own preload carries the load through: the model is loaded, once, and never aborted.
    eventually("m1 loaded", Duration::from_secs(5), async || loaded(&a).contains(&"m1".to_owned())).await;
    let stats = a.stats();
    assert_eq!((stats.loads, stats.aborted_loads), (1, 0), "{stats:?}");
    let preload = preloads(&a).into_iter().next().expect("llmux preloaded the model");
    assert_eq!(preload.body["keep_alive"], 600, "the deployment's keep_alive");
    // The next request finds it loaded.
    let reply = llmux.post("/v1/chat/completions", &chat_body("g", false)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(a.stats().loads, 1);
}
