//! Ollama clients in front of Ollama engines: the client's own request goes to the engine as sent — its model
//! name replaced, and the deployment's defaults (options, `keep_alive`, `think`, `format`) filled in where the
//! client set none — and the answer comes back as the engine wrote it: the engine's durations, `context`, every
//! field, nothing lost to a round trip through OpenAI's shape. Only `model` is put back to the name the client
//! asked for (as the translated path and Ollama itself answer).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::reply::{timings, tokens};
use super::request::{is_sampling, map_sampling, merge_object, NOT_OPTIONS};
use super::to_body;
use crate::config::EngineTarget;
use crate::error::Error;
use crate::observe::Tokens;
use crate::providers::{Converted, StreamConverter};
use crate::router::speed::Timings;

/// Deployment parameters that are Ollama request fields of their own rather than options.
const TOP_LEVEL: &[&str] = &["think", "format", "keep_alive"];

/// The engine body for the client's native `body`.
pub(super) fn request(body: &[u8], target: &EngineTarget, model: &str) -> Result<Bytes, Error> {
    let mut request: Map<String, Value> = crate::protocol::openai::parse_body(body)?;
    request.insert("model".into(), Value::String(model.to_owned()));
    let deployment = &target.extra_params;
    let mut defaults = Map::new();
    for (key, value) in deployment.iter().filter(|(_, v)| !v.is_null()) {
        map_sampling(&mut defaults, key, value);
    }
    for (key, value) in deployment.iter().filter(|(_, v)| !v.is_null()) {
        if key == "options" {
            merge_object(&mut defaults, value);
        } else if TOP_LEVEL.contains(&key.as_str()) {
            request.entry(key.clone()).or_insert_with(|| value.clone());
        } else if !NOT_OPTIONS.contains(&key.as_str()) && !is_sampling(key) {
            defaults.insert(key.clone(), value.clone());
        }
    }
    if let Some(keep_alive) = &target.keep_alive {
        request.entry("keep_alive").or_insert_with(|| keep_alive.clone());
    }
    if !defaults.is_empty() {
        let options = request.entry("options").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(options) = options {
            for (key, value) in defaults {
                options.entry(key).or_insert(value);
            }
        }
    }
    to_body(&request)
}

#[derive(Deserialize)]
struct Done {
    #[serde(default)]
    done: bool,
    #[serde(default)]
    load_duration: Option<u64>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    prompt_eval_duration: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    eval_duration: Option<u64>,
}

impl Done {
    fn tokens(&self) -> Option<Tokens> {
        tokens(self.prompt_eval_count, self.eval_count)
    }

    fn timings(&self) -> Option<Timings> {
        timings([self.prompt_eval_count, self.prompt_eval_duration, self.eval_count, self.eval_duration])
    }
}

/// The engine's whole answer, with the client's model name, and the load time it reports.
pub(super) fn response(body: Bytes, rename: &Rename) -> Converted {
    let done = serde_json::from_slice::<Done>(&body).ok();
    let load_duration = done.as_ref().and_then(|d| d.load_duration).map(Duration::from_nanos);
    let usage = done.as_ref().and_then(Done::tokens);
    let timings = done.as_ref().and_then(Done::timings);
    let mut out = BytesMut::with_capacity(body.len() + 16);
    rename.apply(&body, &mut out);
    Converted { body: out.freeze(), load_duration, usage, timings }
}

/// Puts the client's model name back in an answer line: the first `"model":"<engine's name>"` becomes
/// `"model":"<client's name>"` (Ollama writes it first on every line; a byte search, no parse per line).
#[derive(Debug, Default)]
pub(super) struct Rename {
    from: Vec<u8>,
    to: Vec<u8>,
}

impl Rename {
    /// From the engine's model name to the client's; nothing to do when they are the same.
    pub(super) fn new(engine: &str, client: &str) -> Rename {
        if engine == client {
            return Rename::default();
        }
        let quoted = |name: &str| serde_json::to_string(name).unwrap_or_default().into_bytes();
        let field = |name: &str| [b"\"model\":".as_slice(), &quoted(name)].concat();
        Rename { from: field(engine), to: field(client) }
    }

    fn apply(&self, line: &[u8], out: &mut BytesMut) {
        let at = (!self.from.is_empty()).then(|| memchr::memmem::find(line, &self.from)).flatten();
        match at {
            Some(i) => {
                out.extend_from_slice(&line[..i]);
                out.extend_from_slice(&self.to);
                out.extend_from_slice(&line[i + self.from.len()..]);
            }
            None => out.extend_from_slice(line),
        }
    }
}

/// Passes an NDJSON stream through line by line, with the client's model name, reading only the last line's
/// `load_duration` on the way (what a load cost is learned from).
#[derive(Debug, Default)]
pub(super) struct Tap {
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    load: Option<Duration>,
    usage: Option<Tokens>,
    timings: Option<Timings>,
    rename: Rename,
}

impl Tap {
    /// A tap putting back the client's model name.
    pub(super) fn new(rename: Rename) -> Tap {
        Tap { rename, ..Tap::default() }
    }

    fn look(&mut self, line: &[u8]) {
        // Only the last line says `"done":true`; the others are skipped without a parse.
        if !line.windows(6).any(|w| w == b"\"done\"") {
            return;
        }
        if let Ok(done) = serde_json::from_slice::<Done>(line) {
            if done.done {
                self.load = done.load_duration.map(Duration::from_nanos);
                self.usage = done.tokens();
                self.timings = done.timings();
            }
        }
    }
}

impl StreamConverter for Tap {
    fn feed(&mut self, chunk: &[u8], out: &mut BytesMut) -> Result<(), Error> {
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let line = if self.partial.is_empty() {
                std::borrow::Cow::Borrowed(&rest[..end + 1])
            } else {
                self.partial.extend_from_slice(&rest[..end + 1]);
                std::borrow::Cow::Owned(std::mem::take(&mut self.partial))
            };
            self.look(&line);
            self.rename.apply(&line, out);
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
        Ok(())
    }

    fn finish(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        let line = std::mem::take(&mut self.partial);
        self.look(&line);
        self.rename.apply(&line, out);
        Ok(())
    }

    fn load_duration(&self) -> Option<Duration> {
        self.load
    }

    fn usage(&self) -> Option<Tokens> {
        self.usage
    }

    fn timings(&self) -> Option<Timings> {
        self.timings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_pass_through_renamed_however_they_are_cut() {
        let stream = concat!(
            r#"{"model":"qwen3:8b","message":{"role":"assistant","content":"hi \"model\":\"qwen3:8b\""},"done":false}"#,
            "\n",
            r#"{"model":"qwen3:8b","done":true,"done_reason":"stop","load_duration":2500000000,"eval_count":3}"#,
            "\n"
        );
        let expected = stream.replace(r#"{"model":"qwen3:8b""#, r#"{"model":"coding:latest""#);
        for cut in 0..stream.len() {
            let mut tap = Tap::new(Rename::new("qwen3:8b", "coding:latest"));
            let mut out = BytesMut::new();
            tap.feed(&stream.as_bytes()[..cut], &mut out).unwrap();
            tap.feed(&stream.as_bytes()[cut..], &mut out).unwrap();
            tap.finish(&mut out).unwrap();
            assert_eq!(std::str::from_utf8(&out).unwrap(), expected, "cut at {cut}");
            assert_eq!(tap.load_duration(), Some(Duration::from_millis(2500)));
            assert_eq!(
                tap.usage(),
                Some(Tokens { input: 0, output: 3 }),
                "eval_count, no prompt_eval_count (a cached prompt)"
            );
        }
        let whole =
            response(Bytes::from_static(br#"{"done":true,"prompt_eval_count":5,"eval_count":3}"#), &Rename::default());
        assert_eq!(whole.usage, Some(Tokens { input: 5, output: 3 }));
    }
}
