//! The residency simulation: load times, LRU eviction under a memory budget, `/api/ps` truth, probes that never
//! load, preload/unload, keep-alive expiry.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::{get, post};
use crate::{start, wait_stats};
use llmux_mock::{MockConfig, MockHandle, ResidencyConfig};

const GB: u64 = 1_000_000_000;

/// A host serving `a`, `b`, `c` (4 GB each) and `big` (12 GB), loading in `load_ms`, within `budget`.
fn host(budget: u64, load_ms: u64) -> MockConfig {
    let mut cfg = MockConfig::new("h", &["a", "b", "c", "big:70b"]);
    cfg.residency = Some(
        serde_json::from_value::<ResidencyConfig>(json!({
            "memory_budget": budget,
            "model_sizes": {"a": "4GB", "b": "4GB", "c": "4GB", "big:70b": "12GB"},
            "default_load_ms": load_ms,
        }))
        .unwrap(),
    );
    cfg
}

fn chat(model: &str) -> Value {
    json!({"model": model, "stream": false, "messages": [{"role": "user", "content": "hi"}]})
}

/// Sends a non-streamed Ollama chat; returns the answer and how long it took.
async fn timed_chat(mock: &MockHandle, body: &Value) -> (Value, Duration) {
    let t = Instant::now();
    let resp = post(mock.addr(), "/api/chat", body).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    (resp.json(), t.elapsed())
}

/// The names `/api/ps` lists, in its order.
async fn ps_names(mock: &MockHandle) -> Vec<String> {
    let v = get(mock.addr(), "/api/ps").await.json();
    v["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().to_owned()).collect()
}

/// Sorted, for comparisons that do not care about order.
async fn ps_set(mock: &MockHandle) -> Vec<String> {
    let mut names = ps_names(mock).await;
    names.sort();
    names
}

/// Waits (bounded) until `/api/ps` lists exactly `want` (sorted): a lease is released when the response body
/// is dropped, a moment after the client has read it.
async fn wait_ps(mock: &MockHandle, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let names = ps_set(mock).await;
        if names == want {
            return;
        }
        assert!(Instant::now() < deadline, "/api/ps never became {want:?}: {names:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn off_by_default() {
    let mock = start(MockConfig::new("h", &["a"])).await;
    let (v, took) = timed_chat(&mock, &chat("a")).await;
    assert!(took < Duration::from_millis(200));
    assert_eq!(v["load_duration"], 0);
    assert_eq!(ps_names(&mock).await, ["a"]);
    assert_eq!(mock.resident(), None);
    assert_eq!(mock.stats().loads, 0);
}

#[tokio::test]
async fn load_delay_on_first_request_only() {
    let mock = start(host(100 * GB, 300)).await;
    let (v, took) = timed_chat(&mock, &chat("a")).await;
    assert!(took >= Duration::from_millis(300), "cold request took {took:?}");
    assert!(v["load_duration"].as_u64().unwrap() >= 300_000_000, "{v}");
    assert!(v["total_duration"].as_u64().unwrap() >= 300_000_000, "{v}");

    let (v, took) = timed_chat(&mock, &chat("a")).await;
    assert!(took < Duration::from_millis(300), "warm request took {took:?}");
    assert!(v["load_duration"].as_u64().unwrap() < 100_000_000, "{v}");

    // The OpenAI-compatible routes load too (a streamed answer waits before its first byte), and embeddings.
    let t = Instant::now();
    let body = json!({"model": "b", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let resp = post(mock.addr(), "/v1/chat/completions", &body).await;
    assert_eq!(resp.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    let t = Instant::now();
    let resp = post(mock.addr(), "/api/embed", &json!({"model": "c", "input": "x"})).await;
    assert_eq!(resp.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(resp.json()["load_duration"].as_u64().unwrap() >= 300_000_000);
    let t = Instant::now();
    assert_eq!(post(mock.addr(), "/v1/embeddings", &json!({"model": "c", "input": "x"})).await.status, 200);
    assert!(t.elapsed() < Duration::from_millis(300));

    let stats = mock.stats();
    assert_eq!((stats.loads, stats.evictions), (3, 0));
    assert_eq!(stats.model_loads.get("a"), Some(&1));
}

#[tokio::test]
async fn concurrent_requests_share_one_load() {
    let mock = start(host(100 * GB, 300)).await;
    let t = Instant::now();
    let (ca, cb) = (chat("a"), chat("a"));
    let (x, y) = tokio::join!(timed_chat(&mock, &ca), timed_chat(&mock, &cb));
    assert!(x.1 >= Duration::from_millis(300) && y.1 >= Duration::from_millis(300));
    assert!(t.elapsed() < Duration::from_millis(600), "the second request waited for a second load");
    assert_eq!(mock.stats().loads, 1);
}

#[tokio::test]
async fn loads_happen_one_at_a_time() {
    let mock = start(host(100 * GB, 250)).await;
    let t = Instant::now();
    let (ca, cb) = (chat("a"), chat("b"));
    let (x, y) = tokio::join!(timed_chat(&mock, &ca), timed_chat(&mock, &cb));
    let (first, second) = if x.1 < y.1 { (x.1, y.1) } else { (y.1, x.1) };
    assert!(first >= Duration::from_millis(250));
    assert!(second >= Duration::from_millis(500), "second load did not queue behind the first: {second:?}");
    assert!(t.elapsed() >= Duration::from_millis(500));
    assert_eq!(mock.stats().loads, 2);
}

#[tokio::test]
async fn lru_eviction_under_the_budget() {
    // Room for two 4 GB models.
    let mock = start(host(9 * GB, 0)).await;
    timed_chat(&mock, &chat("a")).await;
    timed_chat(&mock, &chat("b")).await;
    wait_ps(&mock, &["a", "b"]).await;
    timed_chat(&mock, &chat("a")).await; // a is now the most recently used
    timed_chat(&mock, &chat("c")).await; // evicts b, the least recently used
    wait_ps(&mock, &["a", "c"]).await;
    let stats = mock.stats();
    assert_eq!((stats.loads, stats.evictions, stats.evicted_busy), (3, 1, 0), "the victim was idle");
    assert_eq!(mock.config().loaded, ["a", "c"], "the loaded knob follows the simulation");

    // A model needing all the memory evicts everything; one larger than the budget still loads, alone.
    timed_chat(&mock, &chat("big:70b")).await;
    wait_ps(&mock, &["big:70b"]).await;
    assert_eq!(mock.stats().evictions, 3);
    timed_chat(&mock, &chat("b")).await;
    wait_ps(&mock, &["b"]).await;
    assert_eq!(mock.stats().loads, 5);
}

#[tokio::test]
async fn max_loaded_models() {
    let mut cfg = host(100 * GB, 0);
    cfg.residency.as_mut().unwrap().max_loaded_models = Some(1);
    let mock = start(cfg).await;
    timed_chat(&mock, &chat("a")).await;
    timed_chat(&mock, &chat("b")).await;
    wait_ps(&mock, &["b"]).await;
    assert_eq!(mock.stats().evictions, 1);
}

#[tokio::test]
async fn a_model_in_use_is_not_evicted() {
    // Room for one model; `a` streams slowly while `b` is asked for.
    let mut cfg = host(5 * GB, 0);
    cfg.reply_tokens = Some(6);
    cfg.tokens_per_sec = 20.0; // ~300 ms
    let mock = start(cfg).await;
    let slow = json!({"model": "a", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let t = Instant::now();
    let (_, (_, b_took)) = tokio::join!(post(mock.addr(), "/api/chat", &slow), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        timed_chat(&mock, &chat("b")).await
    });
    assert!(b_took >= Duration::from_millis(200), "b was loaded while a was busy: {b_took:?}");
    assert!(t.elapsed() >= Duration::from_millis(300));
    wait_ps(&mock, &["b"]).await;
    let stats = mock.stats();
    assert_eq!((stats.evictions, stats.evicted_busy), (1, 1), "a was serving when b was asked for");
}

#[tokio::test]
async fn ps_reports_the_truth() {
    let mut cfg = host(100 * GB, 0);
    cfg.residency.as_mut().unwrap().keep_alive = llmux_mock::KeepAlive::For(Duration::from_secs(600));
    let mock = start(cfg).await;
    assert_eq!(get(mock.addr(), "/api/ps").await.json(), json!({"models": []}));
    timed_chat(&mock, &chat("big:70b")).await;
    let mut body = chat("a");
    body["keep_alive"] = json!(-1);
    timed_chat(&mock, &body).await;
    wait_ps(&mock, &["a", "big:70b"]).await;

    let v = get(mock.addr(), "/api/ps").await.json();
    let models = v["models"].as_array().unwrap();
    // Latest expiry first: `a` never expires.
    assert_eq!(models[0]["name"], "a");
    assert_eq!(models[0]["model"], "a");
    assert_eq!(models[0]["size"], 4 * GB);
    assert_eq!(models[0]["size_vram"], 4 * GB);
    assert!(models[0]["expires_at"].as_str().unwrap() > "2200", "{}", models[0]);
    assert_eq!(models[1]["name"], "big:70b");
    assert_eq!(models[1]["size"], 12 * GB);
    let expires = models[1]["expires_at"].as_str().unwrap();
    let year: u32 = expires[..4].parse().unwrap();
    assert!((2024..2200).contains(&year), "{expires}");
    for key in ["digest", "details", "context_length"] {
        assert!(!models[1][key].is_null(), "{key} missing");
    }
    // /api/tags reports every served model with its configured size.
    let tags = get(mock.addr(), "/api/tags").await.json();
    let size_of =
        |name: &str| tags["models"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap()["size"].clone();
    assert_eq!(size_of("c"), 4 * GB);
    assert_eq!(size_of("big:70b"), 12 * GB);

    let resident = mock.resident().unwrap();
    assert_eq!(resident.len(), 2);
    assert!(resident.iter().all(|m| !m.loading && m.in_use == 0));
}

#[tokio::test]
async fn probes_never_load() {
    let mock = start(host(100 * GB, 1_000)).await;
    let t = Instant::now();
    for path in ["/api/tags", "/api/ps", "/v1/models", "/v1/models/a", "/api/version", "/", "/health", "/props"] {
        assert_eq!(get(mock.addr(), path).await.status, 200, "{path}");
    }
    assert_eq!(post(mock.addr(), "/api/show", &json!({"model": "a"})).await.status, 200);
    // A request for a model the host does not serve loads nothing either.
    assert_eq!(post(mock.addr(), "/api/chat", &chat("nope")).await.status, 404);
    assert!(t.elapsed() < Duration::from_millis(1_000), "a probe waited for a load");
    assert!(ps_names(&mock).await.is_empty());
    let stats = mock.stats();
    assert_eq!((stats.loads, stats.evictions, stats.unloads), (0, 0, 0));
}

#[tokio::test]
async fn preload_and_unload() {
    let mock = start(host(100 * GB, 200)).await;
    // Ollama's documented preload: a generate with no prompt.
    let t = Instant::now();
    let resp = post(mock.addr(), "/api/generate", &json!({"model": "a"})).await;
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert_eq!(resp.json()["done_reason"], "load");
    wait_ps(&mock, &["a"]).await;
    // An empty chat preloads too.
    post(mock.addr(), "/api/chat", &json!({"model": "b", "messages": []})).await;
    wait_ps(&mock, &["a", "b"]).await;
    assert_eq!(mock.stats().loads, 2);

    // keep_alive 0 without a prompt unloads, at once, without loading anything.
    let t = Instant::now();
    let resp = post(mock.addr(), "/api/generate", &json!({"model": "a", "keep_alive": 0})).await;
    assert_eq!(resp.json()["done_reason"], "unload");
    let resp = post(mock.addr(), "/api/generate", &json!({"model": "c", "keep_alive": "0s"})).await;
    assert_eq!(resp.json()["done_reason"], "unload");
    assert!(t.elapsed() < Duration::from_millis(200), "an unload waited for a load");
    assert_eq!(ps_names(&mock).await, ["b"]);
    let stats = mock.stats();
    assert_eq!((stats.loads, stats.unloads), (2, 1));
}

#[tokio::test]
async fn keep_alive_expiry() {
    let mut cfg = host(100 * GB, 0);
    cfg.residency.as_mut().unwrap().keep_alive = llmux_mock::KeepAlive::For(Duration::from_millis(300));
    let mock = start(cfg).await;
    // The default keep-alive (300 ms), a request's own ("1h"), and 0 = unload once answered.
    timed_chat(&mock, &chat("a")).await;
    let mut long = chat("b");
    long["keep_alive"] = json!("1h");
    timed_chat(&mock, &long).await;
    let mut zero = chat("c");
    zero["keep_alive"] = json!(0);
    let (v, _) = timed_chat(&mock, &zero).await;
    assert_eq!(v["message"]["content"], "Hello from h (c).");
    wait_ps(&mock, &["a", "b"]).await;
    // a's keep-alive (300 ms here) runs out; b's hour does not.
    wait_ps(&mock, &["b"]).await;
    let stats = mock.stats();
    assert_eq!((stats.loads, stats.evictions, stats.unloads), (3, 0, 2));
    // An expired model loads again.
    timed_chat(&mock, &chat("a")).await;
    assert_eq!(mock.stats().loads, 4);
}

#[tokio::test]
async fn loaded_knob_seeds_and_reset_restores() {
    let mut cfg = host(100 * GB, 300);
    cfg.loaded = vec!["a".into()];
    let mock = start(cfg).await;
    assert_eq!(ps_names(&mock).await, ["a"]);
    let (_, took) = timed_chat(&mock, &chat("a")).await;
    assert!(took < Duration::from_millis(300), "a seeded model is warm");
    // Changing `loaded` over HTTP changes what is resident.
    let resp = post(mock.addr(), "/mock/config", &json!({"loaded": ["b"]})).await;
    assert_eq!(resp.status, 200);
    assert_eq!(ps_names(&mock).await, ["b"]);
    timed_chat(&mock, &chat("c")).await;
    wait_ps(&mock, &["b", "c"]).await;
    assert_eq!(get(mock.addr(), "/mock/stats").await.json()["loads"], 1);
    post(mock.addr(), "/mock/reset", &json!({})).await;
    assert_eq!(ps_names(&mock).await, ["a"]);
    assert_eq!(mock.stats().loads, 0);
    // Turning it off over HTTP goes back to the plain behaviour.
    post(mock.addr(), "/mock/config", &json!({"residency": null})).await;
    let (_, took) = timed_chat(&mock, &chat("c")).await;
    assert!(took < Duration::from_millis(300));
    assert_eq!(mock.resident(), None);
}

#[tokio::test]
async fn a_load_whose_client_hung_up_is_aborted_as_ollama_does() {
    let mock = start(host(100 * GB, 800)).await;
    // The client gives up after 200 ms, while the model is still loading.
    let body = chat("a");
    let request = post(mock.addr(), "/api/chat", &body);
    assert!(tokio::time::timeout(Duration::from_millis(200), request).await.is_err());
    let stats = wait_stats(&mock, |s| s.aborted_loads > 0).await;
    assert_eq!((stats.loads, stats.aborted_loads), (1, 1));
    assert!(ps_names(&mock).await.is_empty(), "the model is not loaded");
    // The next request pays the whole load again.
    let (_, took) = timed_chat(&mock, &chat("a")).await;
    assert!(took >= Duration::from_millis(800), "{took:?}");
    assert_eq!(mock.stats().loads, 2);
}
