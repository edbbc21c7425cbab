//! The fault table in the README (between the `fault-table` markers), generated from these cases: each case injects one fault into a
//! mock engine behind a two-tier group (order 1 faulty, order 2 healthy, a fallback group behind) and records
//! what the client saw and how many engine calls it cost. The test fails when the document and the behaviour
//! disagree; `LLMUX_WRITE_FAULT_TABLE=1 cargo test -p llmux --test fault_table` rewrites that part of the README.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

mod common;

use common::*;
use llmux_mock::{Fault, MockConfig};

struct Case {
    fault: &'static str,
    inject: Fault,
    stream: bool,
    /// Stop the order-1 engine instead of injecting a fault.
    stopped: bool,
    /// Make the order-2 engine fail the same way too.
    both: bool,
}

const fn case(fault: &'static str, inject: Fault) -> Case {
    Case { fault, inject, stream: false, stopped: false, both: false }
}

fn cases() -> Vec<Case> {
    vec![
        Case { stopped: true, ..case("connection refused (host down)", Fault::None) },
        case("503 Service Unavailable", Fault::status(503)),
        case("500 Internal Server Error", Fault::status(500)),
        case("429 with retry-after: 20", Fault::Status { status: 429, body: None, retry_after: Some(20) }),
        case("404 model not found", Fault::status(404)),
        case("401 Unauthorized", Fault::status(401)),
        case("400 Bad Request", Fault::status(400)),
        case("hung: no answer (timeout 0.5 s)", Fault::Hang),
        case("malformed JSON answer", Fault::Malformed),
        Case { stream: true, ..case("stream dropped after 2 chunks", Fault::DropAfterChunks(2)) },
        Case { stream: true, ..case("stream dropped before its first chunk", Fault::DropAfterChunks(0)) },
        Case { both: true, ..case("503 on every deployment of the group", Fault::status(503)) },
        Case {
            both: true,
            ..case(
                "429 on every deployment of the group",
                Fault::Status { status: 429, body: None, retry_after: Some(30) },
            )
        },
    ]
}

fn engine(name: &str, fault: Fault) -> MockConfig {
    let mut c = MockConfig::new(name, &["m"]);
    c.fault = fault;
    c
}

/// Runs one case and returns its table row.
async fn run(case: &Case) -> String {
    let a = mock_with(engine("alpha", if case.stopped { Fault::None } else { case.inject.clone() })).await;
    let b = mock_with(engine("beta", if case.both { case.inject.clone() } else { Fault::None })).await;
    let c = mock_with(engine("gamma", Fault::None)).await;
    let yaml = format!(
        r#"
router_settings:
  timeout: 0.5
  stream_timeout: 0.3
  fallbacks:
    - g: [backup]
model_list:
  - model_name: g
    litellm_params: {{model: ollama_chat/m, api_base: "{}", order: 1}}
  - model_name: g
    litellm_params: {{model: ollama_chat/m, api_base: "{}", order: 2}}
  - model_name: backup
    litellm_params: {{model: ollama_chat/m, api_base: "{}"}}
"#,
        a.base_url(),
        b.base_url(),
        c.base_url()
    );
    if case.stopped {
        a.stop().await;
    }
    let llmux = Llmux::start(&yaml).await;
    let (route, outcome) = if case.stream {
        let (_, headers, frames) = llmux.stream("/v1/chat/completions", &chat_body("g", true)).await;
        let events = sse_events(&frames);
        let broke = events.iter().any(|e| e.contains("\"error\""));
        let text = stream_text(&events);
        let route = headers.get("x-llmux-route").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let outcome = if broke {
            format!("200, {} content chunks, then an SSE error event and `[DONE]`", text.split_inclusive(' ').count())
        } else {
            format!("200 from {}", host_of(&text))
        };
        (route, outcome)
    } else {
        let reply = llmux.post("/v1/chat/completions", &chat_body("g", false)).await;
        let outcome = if reply.status == 200 {
            let text = reply.json()["choices"][0]["message"]["content"].as_str().unwrap_or("").to_owned();
            format!("200 from {}", host_of(&text))
        } else {
            let json = reply.json();
            format!("{} `{}`", reply.status.as_u16(), json["error"]["type"].as_str().unwrap_or(""))
        };
        (reply.header("x-llmux-route"), outcome)
    };
    let calls = route.split("; ").filter(|step| step.contains(" @ ")).count();
    // A second request shows what the fault left behind (cooldowns).
    let again = llmux.post("/v1/chat/completions", &chat_body("g", false)).await;
    let again_calls = again.header("x-llmux-route").split("; ").filter(|step| step.contains(" @ ")).count();
    let plural = if again_calls == 1 { "" } else { "s" };
    let json = again.json();
    let next = if again.status == 200 {
        let text = json["choices"][0]["message"]["content"].as_str().unwrap_or("");
        format!("200 from {} ({again_calls} call{plural})", host_of(text))
    } else {
        let kind = json["error"]["type"].as_str().unwrap_or("");
        format!("{} `{kind}` ({again_calls} call{plural})", again.status.as_u16())
    };
    let mode = if case.stream { "stream" } else { "request" };
    format!("| {} | {mode} | {outcome} | {calls} | {next} |", case.fault)
}

fn host_of(text: &str) -> &'static str {
    ["alpha", "beta", "gamma"].into_iter().find(|h| text.contains(h)).map_or("?", |h| match h {
        "alpha" => "order 1",
        "beta" => "order 2",
        _ => "the fallback group",
    })
}

#[tokio::test]
async fn the_documented_fault_table_matches_behaviour() {
    let mut table = String::from(
        "Generated by `crates/llmux/tests/fault_table.rs`, which fails when this table and the behaviour disagree\n\
         (`LLMUX_WRITE_FAULT_TABLE=1 cargo test -p llmux --test fault_table` rewrites it). Setup: group `g` with an\n\
         `order: 1` deployment (the faulty engine) and an `order: 2` deployment, `fallbacks: [{g: [backup]}]`,\n\
         default `num_retries` (2), `timeout: 0.5`, `stream_timeout: 0.3`. \"Engine calls\" counts every attempt of\n\
         the first request, failed ones included; the last column is the next request, which shows any cooldown\n\
         left behind.\n\n\
         | Fault on the order-1 engine | Client | Client sees | Engine calls | Next request |\n\
         |---|---|---|---|---|\n",
    );
    for case in cases() {
        table.push_str(&run(&case).await);
        table.push('\n');
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&path).unwrap_or_default();
    let (start, end) = ("<!-- fault-table:start -->\n", "<!-- fault-table:end -->");
    let (Some(a), Some(b)) = (readme.find(start), readme.find(end)) else {
        panic!("README.md lacks the {start:?} … {end:?} markers");
    };
    let documented = &readme[a + start.len()..b];
    if std::env::var_os("LLMUX_WRITE_FAULT_TABLE").is_some() {
        let updated = format!("{}{table}{}", &readme[..a + start.len()], &readme[b..]);
        std::fs::write(&path, updated).unwrap();
    } else {
        assert_eq!(documented, table, "the README's fault table is stale: rerun with LLMUX_WRITE_FAULT_TABLE=1");
    }
}
