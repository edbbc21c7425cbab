//! Complexity-router classification cost per request (budget: ≤ 20 µs for a 2 KB prompt): a short home-assistant
//! command, a 2 KB prompt mixing prose and code, and an 8 KB one, each as a chat `messages` array with a system
//! prompt and a few earlier turns (the classifier walks back to the last user message).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use llmux::router::complexity::ComplexityRouter;
use serde_json::{json, Map, Value};

const PROSE: &str = "Our team maintains a service that ingests sensor readings from about two thousand devices in \
greenhouses. Lately the dashboards show gaps at night, and operators say the alerts arrive late. ";

const CODE: &str =
    "```python\nasync def ingest(queue, db):\n    while True:\n        batch = await queue.get()\n        \
try:\n            await db.insert_many(batch)\n        except Exception as error:\n            log.warning('retry %s', \
error)\n            await asyncio.sleep(1)\n```\n";

const ASK: &str = "First explain what could cause the gaps, then suggest how to restructure the ingestion so that \
throughput and latency stay predictable under load. Is the retry loop a problem? Should we batch differently? \
What about memory? Think it through step by step.";

/// A prompt of about `bytes` bytes: alternating prose and code, ending with the question.
fn prompt(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + ASK.len());
    let mut i = 0;
    while s.len() + ASK.len() < bytes {
        s.push_str(if i % 2 == 0 { PROSE } else { CODE });
        i += 1;
    }
    s.push_str(ASK);
    s
}

fn messages(user: &str) -> Vec<Value> {
    vec![
        json!({"role": "system", "content": "You are a helpful assistant for a small engineering team."}),
        json!({"role": "user", "content": "hello"}),
        json!({"role": "assistant", "content": "Hi! How can I help?"}),
        json!({"role": "user", "content": user}),
    ]
}

fn router() -> ComplexityRouter {
    let params = json!({
        "complexity_router_config": {"tiers": {"SIMPLE": "small", "MEDIUM": "medium", "COMPLEX": "large", "REASONING": "large"}},
        "complexity_router_default_model": "medium",
    });
    let map: Map<String, Value> = params.as_object().cloned().unwrap_or_default();
    let mut diags = llmux::config::Diagnostics::default();
    ComplexityRouter::from_params(&map, &|_| true, &mut diags).unwrap_or_else(|| panic!("config refused: {diags}"))
}

fn classify(c: &mut Criterion) {
    let router = router();
    let mut group = c.benchmark_group("complexity classify");
    let cases = [
        ("short command", "turn off the kitchen light".to_owned()),
        ("2 KB mixed prompt", prompt(2048)),
        ("8 KB mixed prompt", prompt(8192)),
    ];
    for (name, text) in cases {
        let body = messages(&text);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(format!("{name} ({} B)", text.len())), &body, |b, body| {
            b.iter(|| black_box(router.classify(black_box(body))).tier)
        });
    }
    group.finish();
}

criterion_group!(benches, classify);
criterion_main!(benches);
