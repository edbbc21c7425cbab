//! Prompt-cache affinity and speed-aware placement against mock engines that model per-slot KV caches (a slot
//! remembers its last prompt; what it must read again is what it reports as `timings.prompt_n`) and prompt
//! reading and generation speeds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

mod common;

use std::collections::HashMap;

use llmux_mock::{MockConfig, MockHandle};
use serde_json::{json, Value};

/// An engine with `slots` KV-cache slots reading prompts at `prefill` tokens/s and writing at `decode`.
async fn engine(name: &str, slots: u32, prefill: f64, decode: f64) -> MockHandle {
    let mut config = MockConfig::new(name, &["q"]);
    config.slots = slots;
    config.prefill_tokens_per_sec = prefill;
    config.tokens_per_sec = decode;
    config.reply_tokens = Some(12);
    config.owned_by = "llamacpp".to_owned();
    common::mock_with(config).await
}

/// The engines as one group, probed every second (a probe sees each llama.cpp server's loaded model and slots).
fn group(engines: &[&MockHandle], extra: &str) -> String {
    let mut yaml =
        format!("{extra}general_settings: {{background_health_checks: true, health_check_interval: 1}}\nmodel_list:\n");
    for e in engines {
        yaml.push_str(&format!(
            "  - model_name: coding\n    litellm_params: {{model: openai/q, api_base: \"{}/v1\"}}\n",
            e.base_url()
        ));
    }
    yaml
}

/// Waits until a probe has seen every engine's `slots` slots (and so its loaded model).
async fn probed(llmux: &common::Llmux, slots: u32) {
    common::eventually("probes count the slots", std::time::Duration::from_secs(10), async || {
        let hosts = llmux.get("/health/hosts").await.json();
        hosts["hosts"].as_array().unwrap().iter().all(|h| h["slots"]["total"] == slots)
    })
    .await;
}

/// Turn `turn` (0-based) of agent session `session`: a long system prompt of its own, the earlier turns with
/// their answers, and a new question.
fn turn(session: usize, turn: usize) -> Value {
    let mut messages =
        vec![json!({"role": "system", "content": format!("Agent {session}. {}", "rules ".repeat(1_400))})];
    for t in 0..turn {
        messages.push(json!({"role": "user", "content": format!("step {t} of session {session}")}));
        messages.push(json!({"role": "assistant", "content": format!("did step {t}")}));
    }
    messages.push(json!({"role": "user", "content": format!("step {turn} of session {session}")}));
    json!({"model": "coding", "messages": messages})
}

/// Replays `sessions` sessions of `turns` turns, interleaved; returns which deployment served each turn.
async fn replay(llmux: &common::Llmux, sessions: usize, turns: usize) -> Vec<Vec<String>> {
    replay_turns(llmux, sessions, 0..turns).await
}

/// Replays turns `turns` of `sessions` sessions, interleaved; returns which deployment served each turn.
async fn replay_turns(llmux: &common::Llmux, sessions: usize, turns: std::ops::Range<usize>) -> Vec<Vec<String>> {
    let mut served = vec![Vec::new(); sessions];
    for t in turns {
        for (s, seen) in served.iter_mut().enumerate() {
            let reply = llmux.post("/v1/chat/completions", &turn(s, t).to_string()).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            seen.push(reply.header("x-litellm-model-id"));
        }
    }
    served
}

fn evaluated(engines: &[&MockHandle]) -> (u64, u64) {
    engines
        .iter()
        .map(|e| e.stats())
        .fold((0, 0), |(read, cached), s| (read + s.prompt_evaluated, cached + s.prompt_cached))
}

#[tokio::test]
async fn agent_sessions_stay_where_their_prompt_is_cached_and_engines_read_far_less() {
    let (a, b, c) =
        (engine("a", 2, 50_000.0, 0.0).await, engine("b", 2, 50_000.0, 0.0).await, engine("c", 2, 50_000.0, 0.0).await);
    let engines = [&a, &b, &c];
    let llmux = common::Llmux::start(&group(&engines, "")).await;
    probed(&llmux, 2).await;
    let served = replay(&llmux, 6, 5).await;
    let (read, cached) = evaluated(&engines);
    for e in &engines {
        e.reset();
    }
    // The same replay with llmux's placement off: LiteLLM's simple-shuffle alone.
    let blind = common::Llmux::start(&group(&engines, "router_settings: {residency_routing: false}\n")).await;
    probed(&blind, 2).await;
    replay(&blind, 6, 5).await;
    let (read_blind, _) = evaluated(&engines);
    assert!(read * 2 < read_blind, "prompt tokens read: {read} with affinity, {read_blind} without");
    assert!(cached > read, "most of the prompt came from the caches: {cached} cached, {read} read");
    // Once a session found a home it keeps it (a move happens only when its slot was taken by another session).
    let moves: usize = served.iter().map(|s| s.windows(2).filter(|w| w[0] != w[1]).count()).sum();
    assert!(moves <= 3, "sessions moved {moves} times: {served:?}");
}

#[tokio::test]
async fn sessions_outnumbering_the_slots_return_to_the_engine_that_keeps_their_prompt_in_host_memory() {
    // llama.cpp's host-memory prompt cache: a slot another session takes saves what it held, and gives it back
    // when that session returns. 8 sessions share 4 slots, so every later turn finds its slot taken.
    let kept = async |name: &str| {
        let mut config = MockConfig::new(name, &["q"]);
        (config.slots, config.kept_prompts, config.prefill_tokens_per_sec) = (2, 16, 50_000.0);
        config.reply_tokens = Some(12);
        config.owned_by = "llamacpp".to_owned();
        common::mock_with(config).await
    };
    let (a, b) = (kept("a").await, kept("b").await);
    let run = async |extra: &str| {
        for e in [&a, &b] {
            e.reset();
        }
        let llmux = common::Llmux::start(&group(&[&a, &b], extra)).await;
        probed(&llmux, 2).await;
        let mut served = replay_turns(&llmux, 8, 0..1).await;
        let (first, _) = evaluated(&[&a, &b]);
        for (all, later) in served.iter_mut().zip(replay_turns(&llmux, 8, 1..4).await) {
            all.extend(later);
        }
        let (read, cached) = evaluated(&[&a, &b]);
        (first, read - first, cached, served)
    };
    let (first, later, cached, served) = run("").await;
    // The first turns are read whole (8 × ~2,100 tokens); each of the 24 later turns reads its newest messages
    // only, its earlier prompt restored from the engine that kept it.
    assert!(first > 8 * 2_000 && later < first / 10, "first turns read {first}, later turns {later}");
    assert!(cached > 20 * 2_000, "{cached} cached");
    assert!(served.iter().all(|s| s.windows(2).all(|w| w[0] == w[1])), "a session moved: {served:?}");
    // Without affinity a session whose turn lands on the other engine is read again from the start.
    let (_, later_blind, _, _) = run("router_settings: {residency_routing: false}\n").await;
    assert!(later * 3 < later_blind, "later turns read {later} with affinity, {later_blind} without");
}

#[tokio::test]
async fn the_route_says_how_much_of_the_prompt_is_cached_and_a_busy_holder_shares_the_load() {
    let (a, b) = (engine("a", 4, 50_000.0, 0.0).await, engine("b", 4, 50_000.0, 0.0).await);
    let llmux = common::Llmux::start(&group(&[&a, &b], "")).await;
    probed(&llmux, 4).await;
    let first = llmux.post("/v1/chat/completions", &turn(0, 0).to_string()).await;
    let home = first.header("x-litellm-model-id");
    let second = llmux.post("/v1/chat/completions", &turn(0, 1).to_string()).await;
    assert_eq!(second.header("x-litellm-model-id"), home);
    let route = second.header("x-llmux-route");
    assert!(route.contains("prompt tokens cached]") && route.contains("prompt cached elsewhere"), "{route}");
    let facts = second.json();
    assert!(facts["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap() > 2_000, "{facts}");

    // The home engine is slow now: three long streams hold it while the session's next turn comes.
    let (home_engine, other) = if common::posts(&a).is_empty() { (&b, &a) } else { (&a, &b) };
    home_engine.set_config(|c| c.tokens_per_sec = 4.0);
    let mut held = Vec::new();
    for s in 10..13 {
        let body = json!({"model": home.clone(), "stream": true, "messages": [{"role": "user", "content": format!("long {s}")}]});
        held.push(llmux.stream_first_frame("/v1/chat/completions", &body.to_string()).await);
    }
    let before = common::posts(other).len();
    let third = llmux.post("/v1/chat/completions", &turn(0, 2).to_string()).await;
    assert_eq!(third.status, 200);
    let route = third.header("x-llmux-route");
    assert_ne!(third.header("x-litellm-model-id"), home, "{route}");
    assert!(route.contains("holds the prompt but is much busier"), "{route}");
    assert_eq!(common::posts(other).len(), before + 1);
    drop(held);
}

#[tokio::test]
async fn a_llama_server_gets_the_slot_holding_the_prompt() {
    let (a, b) = (engine("a", 3, 50_000.0, 0.0).await, engine("b", 3, 50_000.0, 0.0).await);
    let llmux = common::Llmux::start(&group(&[&a, &b], "")).await;
    probed(&llmux, 3).await;
    replay(&llmux, 4, 3).await;
    let mut slots: HashMap<String, Vec<u64>> = HashMap::new();
    for e in [&a, &b] {
        for r in common::posts(e) {
            let body = r.body;
            assert_eq!(body["cache_prompt"], true);
            let text = body["messages"][0]["content"].as_str().unwrap()[..8].to_owned();
            slots.entry(format!("{}:{text}", e.config().name)).or_default().push(body["id_slot"].as_u64().unwrap());
        }
    }
    assert_eq!(slots.values().map(Vec::len).sum::<usize>(), 12);
    for (session, used) in &slots {
        assert!(used.windows(2).all(|w| w[0] == w[1]), "{session} changed slots: {used:?}");
    }
    // Only the first turns were read whole (about 2,100 tokens each); every later turn found its slot holding
    // all but its newest messages.
    let (read, cached) = evaluated(&[&a, &b]);
    assert!(read < 4 * 2_200 && cached > 8 * 2_000, "{cached} cached, {read} read");
}

#[tokio::test]
async fn with_speeds_learned_the_quick_engine_takes_the_work_and_hosts_show_the_estimate() {
    let quick = engine("quick", 4, 40_000.0, 400.0).await;
    let slow = engine("slow", 4, 2_000.0, 40.0).await;
    let llmux = common::Llmux::start(&group(&[&quick, &slow], "")).await;
    probed(&llmux, 4).await;
    let learned = async || {
        let hosts = llmux.get("/health/hosts").await.json();
        hosts["hosts"].as_array().unwrap().iter().all(|h| h["deployments"][0]["decode_tokens_per_second"].is_number())
    };
    // Until both engines have answered once, routing has no speeds to compare: distinct prompts, no cache.
    let mut n = 0;
    while !learned().await {
        n += 1;
        assert!(n < 40, "speeds not learned after {n} requests");
        let body = json!({"model": "coding", "messages": [{"role": "user", "content": format!("warm-up {n} {}", "x".repeat(800))}]});
        assert_eq!(llmux.post("/v1/chat/completions", &body.to_string()).await.status, 200);
    }
    let hosts = llmux.get("/health/hosts").await.json();
    let by_name: HashMap<String, Value> = hosts["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["host"].as_str().unwrap().to_owned(), h["deployments"][0].clone()))
        .collect();
    let of = |m: &MockHandle| by_name.iter().find(|(k, _)| m.base_url().contains(k.as_str())).unwrap().1.clone();
    let (q, s) = (of(&quick), of(&slow));
    assert!(
        q["decode_tokens_per_second"].as_f64().unwrap() > 4.0 * s["decode_tokens_per_second"].as_f64().unwrap(),
        "{q} {s}"
    );
    assert!(q["expected_seconds"].as_f64().unwrap() < s["expected_seconds"].as_f64().unwrap(), "{q} {s}");

    let before = common::posts(&slow).len();
    for i in 0..8 {
        let body = json!({"model": "coding", "max_tokens": 12, "messages": [{"role": "user", "content": format!("task {i} {}", "y".repeat(2_000))}]});
        let reply = llmux.post("/v1/chat/completions", &body.to_string()).await;
        let route = reply.header("x-llmux-route");
        assert!(route.contains("slower: expected") && route.contains("[expected"), "{route}");
    }
    assert_eq!(common::posts(&slow).len(), before, "the slow engine got none of the work");
}
