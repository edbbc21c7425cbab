//! Fuzz targets for every parser and translator that reads bytes a client, an engine or a config file chose:
//! no input may make one panic (a panic in a request would kill its connection task; in config loading, the
//! reload). Errors are fine, panics are bugs.
//!
//! Engine: `arbtest` (random bytes through `arbitrary`), which runs on stable Rust inside `cargo test`, so CI
//! needs no nightly toolchain (cargo-fuzz's libFuzzer needs `-Z sanitizer`) and no AFL++ install. It is not
//! coverage-guided, so each target starts from a committed corpus of real inputs
//! (`tests/fuzz/corpus/<target>/`) and mutates them: byte edits, splices between seeds, and JSON-aware
//! replacement of any node by an arbitrary value (which reaches past the JSON parser into the translators).
//!
//! Every seed runs as-is first (the regression corpus). Then each target runs for `ARBTEST_BUDGET_MS`
//! (100 ms by default; `tests/run` gives each a few seconds). A failure prints the seed: rerun that target with
//! `ARBTEST_SEED=0x… cargo test -p llmux --test fuzz <target>`, then add the input to the corpus.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arbtest::arbitrary::{Result, Unstructured};
use bytes::BytesMut;
use serde_json::{Map, Value};

use llmux::config::{load, load_str, Config};
use llmux::error::Error;
use llmux::protocol::anthropic::Messages;
use llmux::protocol::ollama::{Ollama, Route};
use llmux::protocol::openai::{Operation, RequestHead};
use llmux::protocol::responses::{store::Store, Responses};
use llmux::protocol::translate::{Chunk, SseEvents, Translator};
use llmux::providers::{Adapter, Call};

// ----- the mutator -----

/// The committed seeds of `target`.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(!seeds.is_empty(), "{} has no seeds", dir.display());
    seeds
}

/// Text that parsers treat specially: JSON and SSE syntax, numbers at the edges, escapes, YAML syntax.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1e999",
    "-0.0",
    "18446744073709551616",
    "9007199254740993",
    "\"\"",
    "\\u0000",
    "\\ud800",
    "\\uDFFF",
    "\n",
    "\r\n",
    "\n\n",
    "data: ",
    "data: [DONE]\n\n",
    ": keep-alive\n\n",
    "event: ",
    "{}",
    "[]",
    "\"model\"",
    "\"messages\"",
    "\"content\"",
    "\"role\"",
    "\"tool_calls\"",
    "\"stream\"",
    "\"input\"",
    "\"type\"",
    "\"tools\"",
    "\"image_url\"",
    "\"images\"",
    "\"done\":true",
    "é",
    "\u{1F600}",
    "&a ",
    "*a",
    "<<: *a\n",
    "- ",
    "? ",
    "!!binary ",
    "os.environ/",
    "os.environ/FUZZ_KEY",
    "include: [inc.yaml]\n",
    "  ",
    "\t",
    "'",
    "|\n",
    ">-\n",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "#",
];

/// An arbitrary JSON value, at most `depth` levels deep.
fn arbitrary_json(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    let kind = if depth == 0 { u.int_in_range(0..=4)? } else { u.int_in_range(0..=6)? };
    Ok(match kind {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => match u.int_in_range(0..=2)? {
            0 => Value::from(u.arbitrary::<i64>()?),
            1 => Value::from(u.arbitrary::<u64>()?),
            _ => serde_json::Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
        },
        3 => Value::String(u.arbitrary()?),
        4 => Value::String(u.choose(TOKENS)?.trim_matches('"').to_owned()),
        5 => {
            let n = u.int_in_range(0..=4)?;
            Value::Array((0..n).map(|_| arbitrary_json(u, depth - 1)).collect::<Result<_>>()?)
        }
        _ => {
            let mut map = Map::new();
            for _ in 0..u.int_in_range(0..=4)? {
                let key = u.choose(TOKENS)?.trim_matches('"').to_owned();
                map.insert(key, arbitrary_json(u, depth - 1)?);
            }
            Value::Object(map)
        }
    })
}

/// Replaces one node of `value` (chosen by walking down at random) by an arbitrary value, or adds a field.
fn mutate_json(value: &mut Value, u: &mut Unstructured<'_>) -> Result<()> {
    let descend = u.ratio(3, 4)?;
    match value {
        Value::Object(map) if descend && !map.is_empty() => {
            let i = u.choose_index(map.len())?;
            if let Some((_, child)) = map.iter_mut().nth(i) {
                return mutate_json(child, u);
            }
        }
        Value::Array(items) if descend && !items.is_empty() => {
            let i = u.choose_index(items.len())?;
            return mutate_json(&mut items[i], u);
        }
        Value::Object(map) if u.ratio(1, 3)? => {
            let key = u.choose(TOKENS)?.trim_matches('"').to_owned();
            map.insert(key, arbitrary_json(u, 3)?);
            return Ok(());
        }
        _ => {}
    }
    *value = arbitrary_json(u, 3)?;
    Ok(())
}

/// One input for a target: a seed, edited a few times.
fn mutate(seeds: &[Vec<u8>], u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let mut data = u.choose(seeds)?.clone();
    // Structure-aware first: a JSON seed gets some nodes replaced, then is written out again.
    if let Ok(mut json) = serde_json::from_slice::<Value>(&data) {
        if u.ratio(2, 3)? {
            for _ in 0..u.int_in_range(1..=4)? {
                mutate_json(&mut json, u)?;
            }
            data = serde_json::to_vec(&json).unwrap_or(data);
            if u.ratio(3, 4)? {
                return Ok(data);
            }
        }
    }
    for _ in 0..u.int_in_range(0..=6)? {
        let len = data.len();
        match u.int_in_range(0..=6)? {
            0 if len > 0 => {
                let i = u.choose_index(len)?;
                data[i] ^= 1 << u.int_in_range(0..=7)?;
            }
            1 => {
                let at = u.int_in_range(0..=len)?;
                data.insert(at, u.arbitrary()?);
            }
            2 => {
                let at = u.int_in_range(0..=len)?;
                let token = u.choose(TOKENS)?.as_bytes();
                data.splice(at..at, token.iter().copied());
            }
            3 if len > 0 => {
                let start = u.choose_index(len)?;
                let end = u.int_in_range(start..=len.min(start + 64))?;
                data.drain(start..end);
            }
            4 if len > 0 => {
                // Repeat a slice (deep nesting, long strings).
                let start = u.choose_index(len)?;
                let end = u.int_in_range(start..=len.min(start + 32))?;
                let piece = data[start..end].to_vec();
                for _ in 0..u.int_in_range(1..=64)? {
                    data.splice(end..end, piece.iter().copied());
                }
            }
            5 => {
                // Splice in part of another seed.
                let other = u.choose(seeds)?;
                if !other.is_empty() {
                    let start = u.choose_index(other.len())?;
                    let end = u.int_in_range(start..=other.len())?;
                    let at = u.int_in_range(0..=len)?;
                    data.splice(at..at, other[start..end].iter().copied());
                }
            }
            _ => {
                let at = u.int_in_range(0..=len)?;
                data.truncate(at);
            }
        }
    }
    Ok(data)
}

/// `data` cut into arbitrary network chunks.
fn chunks<'a>(data: &'a [u8], u: &mut Unstructured<'_>) -> Result<Vec<&'a [u8]>> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = if u.is_empty() { rest.len() } else { u.int_in_range(1..=rest.len())? };
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
    }
    Ok(out)
}

/// Runs `target` on every seed, then on mutated seeds until the budget is spent; prints how many inputs ran.
fn fuzz(name: &str, mut target: impl FnMut(&[u8], &mut Unstructured<'_>) -> Result<()>) {
    let seeds = corpus(name);
    for seed in &seeds {
        let mut u = Unstructured::new(&[]);
        let _ = target(seed, &mut u);
    }
    let mut runs = 0u64;
    arbtest::arbtest(|u| {
        runs += 1;
        let input = mutate(&seeds, u)?;
        target(&input, u)
    })
    .size_max(4096)
    .run();
    eprintln!("fuzz {name}: {} seeds, {runs} mutated inputs, 0 crashes", seeds.len());
}

// ----- the targets -----

/// A config that routes the model names the corpora use.
fn config() -> Config {
    let yaml = "model_list:\n  - model_name: m\n    litellm_params: {model: ollama_chat/m, api_base: 'http://127.0.0.1:9'}\n  - model_name: g\n    litellm_params: {model: ollama/g, api_base: 'http://127.0.0.1:9'}\n  - model_name: e\n    litellm_params: {model: openai/e, api_base: 'http://127.0.0.1:9/v1'}\n";
    load_str(yaml, &|_| None).unwrap().0
}

#[test]
fn openai_request_head() {
    fuzz("openai_request_head", |body, u| {
        let op = *u.choose(&Operation::ALL).unwrap_or(&Operation::Chat);
        let _ = RequestHead::parse(body, op);
        Ok(())
    });
}

/// A translator's request, then (when it parsed) its answer and stream encoder fed arbitrary OpenAI answers.
fn translate(translator: &mut dyn Translator, body: &[u8], config: &Config, u: &mut Unstructured<'_>) -> Result<()> {
    if translator.request(body, config).is_err() {
        return Ok(());
    }
    let answers = corpus("openai_answer");
    let answer = mutate(&answers, u)?;
    let _ = translator.response(&answer);
    encode(translator, u)
}

/// Feeds a protocol's stream encoder arbitrary chunks, keep-alives, and an end or a failure.
fn encode(translator: &mut dyn Translator, u: &mut Unstructured<'_>) -> Result<()> {
    let seeds = corpus("openai_chunk");
    let mut encoder = translator.stream();
    let mut out = BytesMut::new();
    for _ in 0..u.int_in_range(0..=12)? {
        if u.ratio(1, 8)? {
            encoder.keepalive(&mut out);
            continue;
        }
        let bytes = mutate(&seeds, u)?;
        let Ok(chunk) = serde_json::from_slice::<Chunk>(&bytes) else { continue };
        if encoder.chunk(chunk, &mut out).is_err() {
            return Ok(());
        }
    }
    if u.ratio(1, 4)? {
        encoder.fail(&Error::invalid("fuzz", None), &mut out);
    } else {
        let _ = encoder.finish(&mut out);
    }
    Ok(())
}

#[test]
fn anthropic_messages() {
    let config = config();
    fuzz("anthropic_messages", |body, u| translate(&mut Messages::new(), body, &config, u));
}

#[test]
fn responses_api() {
    let config = config();
    let store = Arc::new(Store::new());
    fuzz("responses", |body, u| translate(&mut Responses::new(store.clone()), body, &config, u));
}

#[test]
fn ollama_routes() {
    let config = config();
    fuzz("ollama", |body, u| {
        let route = *u.choose(&[Route::Chat, Route::Generate, Route::Embed, Route::Embeddings])?;
        translate(&mut Ollama::new(route), body, &config, u)
    });
}

#[test]
fn openai_sse_events() {
    fuzz("openai_sse", |stream, u| {
        let mut events = SseEvents::default();
        for piece in chunks(stream, u)? {
            let _ = events.feed(piece);
        }
        Ok(())
    });
}

#[test]
fn ollama_ndjson_to_sse() {
    let config = config();
    let request = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    fuzz("ollama_ndjson", |stream, u| {
        let op = *u.choose(&Operation::ALL)?;
        let chat = u.arbitrary::<bool>()?;
        let Ok(head) = RequestHead::parse(request, op) else { return Ok(()) };
        let deployment = &config.deployments[0];
        let call = Call { op, deployment, model: "m", body: request, head: &head, native: None };
        let Some(mut converter) = Adapter::Ollama { chat }.provider().stream_converter(&call) else { return Ok(()) };
        let mut out = BytesMut::new();
        for piece in chunks(stream, u)? {
            if converter.feed(piece, &mut out).is_err() {
                return Ok(());
            }
        }
        let _ = converter.finish(&mut out);
        let _ = converter.load_duration();
        Ok(())
    });
}

#[test]
fn config_loading_with_includes_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("config.yaml");
    let include = dir.path().join("inc.yaml");
    let includes = corpus("config_include");
    let env = |name: &str| match name {
        "FUZZ_KEY" => Some("sk-fuzz".to_owned()),
        "FUZZ_BASE" => Some("http://127.0.0.1:9".to_owned()),
        "FUZZ_NUMBER" => Some("3".to_owned()),
        _ => None,
    };
    fuzz("config", |yaml, u| {
        let _ = load_str(&String::from_utf8_lossy(yaml), &env);
        std::fs::write(&main, yaml).unwrap();
        std::fs::write(&include, mutate(&includes, u)?).unwrap();
        let _ = load(&main);
        Ok(())
    });
}
